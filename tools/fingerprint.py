"""Record a fixed set of evaluations through the public API, to compare two versions bit for bit.

Usage (from the root of the tree whose ``miniff`` you want to measure)::

    python tools/fingerprint.py OUT.npz            # record
    python tools/fingerprint.py --compare A.npz B.npz

Covers energies, gradients and stresses of classical potentials (LJ, SW, a general pair potential), the
values and per-pair Jacobian of Behler descriptors, an NN potential evaluated through ``NeighborWrapper`` and
through the ASE calculator, and one short seeded fit with forces. Used before and after refactors: a
refactor that changes no formula must change no bit.
"""

import argparse
import sys
import tempfile
import warnings

import numpy as np


def _silicon(k=2, noise=0.05, seed=0):
    from miniff.kernel import Cell

    base = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]], float)
    basis = np.concatenate([base, base + .25])
    grid = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3)
    frac = ((basis[None] + grid[:, None]).reshape(-1, 3)) / k
    rng = np.random.default_rng(seed)
    frac = frac + rng.normal(scale=noise / (5.43 * k), size=frac.shape)
    species = ["Si"] * len(frac)
    return Cell(np.diag([5.43 * k] * 3) @ (np.eye(3) + 0.01 * rng.normal(size=(3, 3))), frac, species)


def _binary(seed=1):
    from miniff.kernel import Cell

    rng = np.random.default_rng(seed)
    n = 24
    frac = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n] / 3
    frac = frac + rng.normal(scale=0.02, size=frac.shape)
    species = ["Cu" if i % 3 else "Pt" for i in range(n)]
    return Cell(np.eye(3) * 7.8 + 0.2 * rng.normal(size=(3, 3)), frac, species)


def record():
    from miniff import ml, potentials
    from miniff.kernel import NeighborWrapper

    out = {}
    si = _silicon()
    nw = NeighborWrapper(si, cutoff=5.0)
    sw = potentials.stillinger_weber_si()
    lj = potentials.lj_potential_family(epsilon=0.0104, sigma=2.2, a=2.0, tag="Si-Si")
    for name, pots in (("sw", sw), ("lj", [lj]), ("sw+lj", list(sw) + [lj])):
        out[f"{name}/eval"] = nw.eval(pots)
        out[f"{name}/total"] = np.asarray(nw.total(pots))
        out[f"{name}/grad"] = nw.grad(pots)
        out[f"{name}/stress"] = nw.stress(pots)
        out[f"{name}/stress_n"] = nw.stress(pots, per_atom=True)
    cupt = _binary()
    nw2 = NeighborWrapper(cupt, cutoff=5.0)
    descr = []
    for a in ("Cu", "Pt"):
        for b in ("Cu", "Pt"):
            for eta in (0.5, 1.0):
                descr.append(potentials.behler2_descriptor_family(eta=eta, r_sphere=1.5, a=5.0, tag=f"{a}-{b}"))
        descr.append(potentials.behler5_descriptor_family(eta=0.05, l=1.0, zeta=2.0, a=5.0, tag=f"{a}-Cu-Pt"))
        descr.append(potentials.behler4_descriptor_family(eta=0.05, l=-1.0, zeta=1.0, a=5.0, tag=f"{a}-Pt-Pt"))
    values, jac = potentials.eval_descriptors(nw2, descr, grad=True)
    out["descr/values"] = values
    out["descr/jac"] = jac
    out["descr/pairs_j"] = np.asarray(nw2.pairs.j_p)

    # One short seeded fit with forces, then its potentials through the wrapper and the ASE calculator.
    from miniff import ml_util

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml_util.FitWorkflow(seed=0)
        fit.prepare(str(ml_util.example_data_path()), cells_subset=16, cutoff=5.0, forces=True, test_set=0.25,
                    split_seed=0, default_descriptor_kwargs={"n": 3, "zeta": (1,), "eta3": 0.0},
                    nn_kwargs={"n_internal": 5, "n_layers": 2}, closure_kwargs={"w_gradients": 10.0})
        fit.run(n_epochs=3, save_fn=f"{tmp}/p.pt", progress=False)
        for name in ("learn", "test"):
            p = fit.predict(name)
            for key in ("energy_pred", "forces_pred"):
                out[f"fit/{name}/{key}"] = np.asarray(p[key])
        pots = ml.load_potentials(f"{tmp}/p.pt")
    out["nn/eval"] = nw2.eval(pots)
    out["nn/grad"] = nw2.grad(pots)
    out["nn/stress"] = nw2.stress(pots)

    from ase import Atoms

    from miniff.calculator import MiniffCalculator

    atoms = Atoms(symbols=list(cupt.values), scaled_positions=cupt.coordinates, cell=cupt.vectors, pbc=True)
    atoms.calc = MiniffCalculator(pots)
    out["calc/energy"] = np.asarray(atoms.get_potential_energy())
    out["calc/forces"] = atoms.get_forces()
    out["calc/stress"] = atoms.get_stress()
    atoms.positions += 0.01
    out["calc/forces2"] = atoms.get_forces()
    atoms.calc = MiniffCalculator(list(sw))
    si_atoms = Atoms(symbols=list(si.values), scaled_positions=si.coordinates, cell=si.vectors, pbc=True)
    si_atoms.calc = MiniffCalculator(list(sw))
    out["calc_sw/energy"] = np.asarray(si_atoms.get_potential_energy())
    out["calc_sw/forces"] = si_atoms.get_forces()
    out["calc_sw/stress"] = si_atoms.get_stress()
    return out


def compare(a, b):
    fa, fb = np.load(a), np.load(b)
    bad = 0
    for key in sorted(set(fa.files) | set(fb.files)):
        if key not in fa.files or key not in fb.files:
            print(f"{key}: only in one file")
            bad += 1
            continue
        x, y = fa[key], fb[key]
        same = x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
        if not same:
            diff = np.abs(x - y).max() if x.shape == y.shape else "shape"
            print(f"{key}: DIFFERENT (max |diff| {diff})")
            bad += 1
    print(f"{len(fa.files)} arrays compared, {bad} different")
    return 1 if bad else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--compare", action="store_true")
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.files)
    np.savez(args.files[0], **record())
    print(f"wrote {args.files[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
