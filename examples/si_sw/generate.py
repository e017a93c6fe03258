"""Generate the Stillinger-Weber silicon data set: rattled and strained 64-atom diamond cells.

Each of the ``--n`` cells (default 60) is the 2x2x2 conventional diamond supercell (64 atoms, a = 5.431 Å)
with a random symmetric strain (every component uniform in +-3 %) and every atom displaced by a Gaussian of
a per-cell width drawn uniformly in 0.02-0.1 Å.  Energies (eV), forces (eV/Å) and stresses (eV/Å³) are those
of miniff's own Stillinger-Weber silicon (:func:`miniff.potentials.stillinger_weber_si`, the 1985
parameters).  The file is extxyz; the first 50 cells are the training set of the benchmarks and the last 10
are held out.

    python generate.py [--n 60] [--seed 0] [--out si_sw.extxyz]
"""

import argparse

import numpy as np


def diamond_si(a=5.431, repeat=2):
    """Conventional diamond silicon repeated ``repeat`` times along each axis (an ``ase.Atoms``)."""
    from ase.build import bulk

    return bulk("Si", "diamond", a=a, cubic=True).repeat(repeat)


def make_cells(n=60, seed=0, strain=0.03, rattle=(0.02, 0.1)):
    """``n`` strained and rattled cells labelled with Stillinger-Weber (a list of ``ase.Atoms`` carrying a
    single-point calculator with ``energy``, ``forces`` and ``stress``)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from miniff.io import atoms_to_cell
    from miniff.kernel import NeighborWrapper
    from miniff.potentials import stillinger_weber_si

    rng = np.random.default_rng(seed)
    potentials = stillinger_weber_si()
    cutoff = max(p.cutoff for p in potentials)
    frames = []
    for _ in range(n):
        atoms = diamond_si()
        eps = rng.uniform(-strain, strain, size=(3, 3))
        eps = (eps + eps.T) / 2
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(scale=rng.uniform(*rattle), size=atoms.positions.shape)
        nw = NeighborWrapper(atoms_to_cell(atoms), cutoff=cutoff)
        result = nw.evaluate(potentials, grad=True, stress=True)
        atoms.calc = SinglePointCalculator(atoms, energy=float(result.energy), forces=-np.asarray(result.grad_nc),
                                           stress=np.asarray(result.stress))
        frames.append(atoms)
    return frames


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=60, help="number of cells (default 60)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="si_sw.extxyz", help="output file (default si_sw.extxyz)")
    args = p.parse_args(argv)
    from ase.io import write

    write(args.out, make_cells(args.n, args.seed), format="extxyz")
    print(f"wrote {args.n} cells to {args.out}")


if __name__ == "__main__":
    main()
