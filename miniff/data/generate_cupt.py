"""Generate ``cupt_emt.extxyz``: the Cu/Pt example data set bundled with miniff.

The reference energies and forces come from ASE's effective-medium theory (EMT) calculator, which is
cheap and good enough to make a realistic fitting problem.  Three groups of structures (``group`` in the
``info`` of every frame) are produced:

``slab``
    A 2x2x3 Pt(100) slab with two Cu adatoms (14 atoms), frames of a Langevin MD run at 600 K.
``bulk``
    Rattled 8-atom fcc Cu/Pt alloys (random composition), strained by up to +-4 %.
``surface``
    A 2x2x3 Cu(111) slab with one Pt substitution (12 atoms), rattled.

Every frame is fully periodic (the slabs carry 12 Å of vacuum, more than any cutoff used here) and has at
most 16 atoms.  Energies are in eV, forces in eV/Å.  Run ``python generate_cupt.py [output]``; the
output is deterministic for a given ASE version (the seed is fixed below).
"""

import sys

import numpy as np
from ase import Atom, units
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.md.langevin import Langevin

SEED = 20261121
N_SLAB, N_BULK, N_SURFACE = 50, 30, 20


def _snapshot(atoms, group):
    """A copy of ``atoms`` carrying EMT energy and forces and the group label."""
    frame = atoms.copy()
    frame.pbc = True
    frame.calc = EMT()
    energy = frame.get_potential_energy()
    forces = frame.get_forces()
    frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
    frame.info["group"] = group
    return frame


def slab_frames(rng, n):
    """Langevin MD frames of Pt(100) with two Cu adatoms."""
    atoms = fcc100("Pt", size=(2, 2, 3), vacuum=6.0)
    top = atoms.positions[:, 2].max()
    a = atoms.cell[0, 0] / 2
    atoms.info.pop("adsorbate_info", None)
    atoms.append(Atom("Cu", (0.5 * a, 0.5 * a, top + 1.9)))
    atoms.append(Atom("Cu", (1.5 * a, 1.5 * a, top + 1.9)))
    atoms.pbc = (True, True, False)
    atoms.calc = EMT()
    kt = 600 * units.kB
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * kt))
    dyn = Langevin(atoms, 5 * units.fs, temperature_K=600, friction=0.02, fixcm=False, rng=rng)
    frames = []
    for _ in range(n):
        dyn.run(10)
        frames.append(_snapshot(atoms, "slab"))
    return frames


def bulk_frames(rng, n):
    """Random 8-atom Cu/Pt fcc alloys, strained and rattled."""
    frames = []
    for _ in range(n):
        n_pt = int(rng.integers(0, 9))
        a = 3.61 + (3.92 - 3.61) * n_pt / 8
        atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((2, 1, 1))
        symbols = np.array(["Cu"] * 8)
        symbols[rng.permutation(8)[:n_pt]] = "Pt"
        atoms.set_chemical_symbols(symbols.tolist())
        strain = np.eye(3) + rng.uniform(-0.04, 0.04, size=(3, 3))
        atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
        atoms.rattle(0.06, seed=int(rng.integers(2**31)))
        frames.append(_snapshot(atoms, "bulk"))
    return frames


def surface_frames(rng, n):
    """Rattled Cu(111) slabs with one Pt atom in the top layer."""
    frames = []
    for _ in range(n):
        atoms = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
        atoms.info.pop("adsorbate_info", None)
        top = np.argsort(atoms.positions[:, 2])[-4:]
        atoms[int(rng.choice(top))].symbol = "Pt"
        atoms.rattle(0.07, seed=int(rng.integers(2**31)))
        frames.append(_snapshot(atoms, "surface"))
    return frames


def main(path="cupt_emt.extxyz"):
    """Write all frames to ``path`` (extended XYZ)."""
    rng = np.random.default_rng(SEED)
    frames = slab_frames(rng, N_SLAB) + bulk_frames(rng, N_BULK) + surface_frames(rng, N_SURFACE)
    order = rng.permutation(len(frames))
    write(path, [frames[i] for i in order], format="extxyz")
    return len(frames)


if __name__ == "__main__":
    print(main(*sys.argv[1:]), "frames written")
