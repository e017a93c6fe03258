"""Regenerate the Pt/Cu EMT data set of Amp's manual example with ASE.

A Pt(110) slab (2x2x2, 7 Å vacuum) with two Cu atoms stacked above a top-layer Pt atom
is run through velocity-Verlet molecular dynamics with ASE's EMT calculator at 300 K;
20 frames (the start and then every 50 fs) are written per trajectory, with EMT
energies (eV) and the raw forces on all atoms (eV/Å, constraint not applied).

    python generate.py            # writes train.extxyz (seed 1) and valid.extxyz (seed 2)
"""

import argparse
import os
import tempfile
import warnings

import numpy as np
from ase import Atoms, units
from ase.build import fcc110
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io import write
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet


def build_slab():
    """Pt(110) 2x2x2 slab, 7 Å vacuum, two Cu atoms 2.5 and 5 Å above Pt atom 7."""
    slab = fcc110("Pt", (2, 2, 2), vacuum=7.0)
    top = slab[7].position
    adatoms = Atoms("Cu2", positions=[top + (0.0, 0.0, 2.5), top + (0.0, 0.0, 5.0)])
    slab.extend(adatoms)
    slab.set_constraint(FixAtoms(indices=[0, 2]))
    return slab


def snapshot(atoms):
    """A calculator-free copy carrying the EMT energy and unconstrained forces."""
    frame = atoms.copy()
    frame.set_constraint()
    frame.info.pop("adsorbate_info", None)  # a dict extxyz cannot store
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces(apply_constraint=False)
    frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
    return frame


def trajectory(seed, n_frames=20, steps_between=50, temperature_K=300.0):
    """Frames of one MD run started from the same slab with Maxwell-Boltzmann velocities."""
    atoms = build_slab()
    atoms.calc = EMT()
    frames = [snapshot(atoms)]
    with warnings.catch_warnings():
        # ASE >= 3.26 suggests thermalize_momenta; this call keeps Amp's exact velocities.
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=np.random.RandomState(seed))
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    for _ in range(n_frames - 1):
        dyn.run(steps_between)
        frames.append(snapshot(atoms))
    return frames


def write_atomic(frames, path):
    """Write extxyz through a temporary file so an interrupted run never leaves half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".extxyz.tmp")
    os.close(fd)
    try:
        write(tmp, frames, format="extxyz")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="output folder")
    args = parser.parse_args(argv)
    for name, seed in (("train", 1), ("valid", 2)):
        write_atomic(trajectory(seed), os.path.join(args.out, f"{name}.extxyz"))


if __name__ == "__main__":
    main()
