"""Do stresses in the fit improve the elastic constants?  Fits to the Stillinger-Weber silicon set with and without
stresses, then the bulk modulus and C11, C12, C44 of each NN next to Stillinger-Weber's own.

    python elastic.py [--seeds 0,1] [--epochs 30] [--fits plain,default] [--out elastic.json]

Data: ``generate.py`` (60 rattled and strained 64-atom cells; the first 50 train, the last 10 are held out).
Fits (``--fits``): ``plain`` = the defaults of ``FitWorkflow.prepare(forces=True)``, ``default`` = the same with
``stress=True`` (the default stress weight), a number = that stress weight; for every seed (the seed of the
network initialisation).

Elastic constants (GPa) of a model: the lattice constant ``a0`` where the stress of the 8-atom cubic diamond
cell vanishes, then central differences of the stress over strains of +-0.5 % (``C11``, ``C12`` from
``eps_xx``; ``C44`` from the shear ``eps_yz = eps_zy``), each strained cell with its atoms relaxed at fixed
shape (the internal relaxation matters for ``C44``); ``B = (C11 + 2 C12) / 3``.
"""

import argparse
import json
import time
from pathlib import Path

import generate
import numpy as np

EV_A3_TO_GPA = 160.21766208  # 1 eV/Å³ in GPa
STRAIN = 0.005


def _wrapper(a, strain, cutoff):
    from miniff.io import atoms_to_cell
    from miniff.kernel import NeighborWrapper

    atoms = generate.diamond_si(a=a, repeat=1)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return NeighborWrapper(atoms_to_cell(atoms), cutoff=cutoff)


def relaxed_stress(potentials, a, strain=None):
    """Voigt stress (eV/Å³) of the strained 8-atom cell after relaxing the atoms at fixed cell."""
    cutoff = max(p.cutoff for p in potentials)
    nw = _wrapper(a, np.zeros((3, 3)) if strain is None else strain, cutoff)
    nw.relax(potentials, inplace=True, fmax=1e-7)
    nw.compute_distances(cutoff)
    return np.asarray(nw.stress(potentials))


def lattice_constant(potentials, guess=5.431):
    """The cubic lattice constant (Å) of zero stress."""
    import scipy.optimize

    return scipy.optimize.brentq(lambda a: relaxed_stress(potentials, a)[0], 0.97 * guess, 1.03 * guess,
                                 xtol=1e-8)


def elastic_constants(potentials):
    """``{"a0": Å, "C11", "C12", "C44", "B": GPa}`` of cubic diamond silicon."""
    a0 = lattice_constant(potentials)
    out = {"a0": a0}
    for name, (i, j), voigt in (("C11", (0, 0), 0), ("C12", (0, 0), 1), ("C44", (1, 2), 3)):
        eps = np.zeros((3, 3))
        eps[i, j] = eps[j, i] = STRAIN
        ds = relaxed_stress(potentials, a0, eps)[voigt] - relaxed_stress(potentials, a0, -eps)[voigt]
        # sigma_v = C_vw e_w with engineering shear strain e_4 = 2 eps_yz
        out[name] = ds / (2 * STRAIN * (2 if i != j else 1)) * EV_A3_TO_GPA
    out["B"] = (out["C11"] + 2 * out["C12"]) / 3
    return out


def stress_rmse(potentials, frames):
    """RMSE (meV/Å³) of the potentials' stresses against those of ``frames`` (the evaluation path)."""
    from miniff.io import atoms_to_cell
    from miniff.kernel import NeighborWrapper

    cutoff = max(p.cutoff for p in potentials)
    diff = [NeighborWrapper(atoms_to_cell(a), cutoff=cutoff).stress(potentials) - a.get_stress() for a in frames]
    return 1000 * float(np.sqrt(np.mean(np.square(diff))))


def fit(frames, seed, w_stress, epochs):
    """A default force fit; ``w_stress``: None = no stress, "default" = ``stress=True``, a number = that weight.
    Returns (potentials, record)."""
    from miniff import ml_util

    fit = ml_util.FitWorkflow(seed=seed)
    options = {} if w_stress in (None, "default") else {"closure_kwargs": {"w_stress": float(w_stress)}}
    fit.prepare(frames, forces=True, stress=w_stress is not None, test_set=10, cells_order=None, **options)
    t0 = time.perf_counter()
    fit.run(n_epochs=epochs, progress=False, summary=False)
    wall = time.perf_counter() - t0
    m = fit.metrics("test")
    rec = {"seed": seed, "w_stress": fit.closure.loss_function_kwargs.get("w_stress", 0), "epochs": fit.epoch,
           "run_s": round(wall, 1),
           "energy_meV_atom": round(1000 * m["energy_rmse"], 2), "force_meV_A": round(1000 * m["force_rmse"], 1)}
    potentials = fit.build_potentials()
    rec["stress_meV_A3"] = round(stress_rmse(potentials, frames[-10:]), 3)   # held out, with or without stress fit
    return potentials, rec


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1", help="network seeds, comma-separated (default 0,1)")
    p.add_argument("--epochs", type=int, default=30, help="epoch limit of each fit (default 30)")
    p.add_argument("--fits", default="plain,default", help="plain (no stress), default (stress=True) or stress "
                   "weights, comma-separated (default plain,default)")
    p.add_argument("--out", default="elastic.json", help="results file (default elastic.json)")
    args = p.parse_args(argv)
    from miniff.potentials import stillinger_weber_si

    frames = generate.make_cells(60, 0)
    reference = elastic_constants(stillinger_weber_si())
    print("Stillinger-Weber", json.dumps({k: round(v, 4) for k, v in reference.items()}), flush=True)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for w_stress in [None if f == "plain" else f for f in args.fits.split(",")]:
            potentials, rec = fit(frames, seed, w_stress, args.epochs)
            rec.update({k: round(v, 4) for k, v in elastic_constants(potentials).items()})
            rec["max_rel_error"] = round(max(abs(rec[k] / reference[k] - 1) for k in ("C11", "C12", "C44", "B")), 4)
            rows.append(rec)
            print(json.dumps(rec), flush=True)
    Path(args.out).write_text(json.dumps({"stillinger_weber": reference, "fits": rows}, indent=1))


if __name__ == "__main__":
    main()
