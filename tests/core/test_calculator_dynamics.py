"""Relaxation and molecular dynamics through MiniffCalculator (ASE optimisers, filters, Verlet)."""

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from threadpoolctl import threadpool_limits

from miniff.calculator import MiniffCalculator
from miniff.potentials import stillinger_weber_si

# Published Stillinger-Weber silicon (Stillinger & Weber 1985): diamond lattice constant 5.431 Å,
# cohesive energy 2 epsilon = 4.3366 eV/atom.
SW_A = 5.431
SW_E = -2 * 2.1683
NT = 1  # small systems: one OpenMP thread (no thread start-up cost on busy CI machines)


def test_bfgs_relaxes_perturbed_supercell_to_ideal_energy():
    atoms = bulk("Si", "diamond", a=SW_A, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.08, seed=11)
    atoms.calc = MiniffCalculator(stillinger_weber_si(), n_threads=NT)
    assert atoms.get_potential_energy() / len(atoms) > SW_E + 1e-3
    with BFGS(atoms, logfile=None) as opt:
        assert opt.run(fmax=1e-5, steps=200)
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(SW_E, abs=2e-4)
    assert np.abs(atoms.get_forces()).max() < 1e-5


def test_cell_relaxation_reaches_sw_lattice_constant():
    atoms = bulk("Si", "diamond", a=5.33, cubic=True)
    atoms.set_cell(atoms.cell.array @ [[1, 0.01, 0], [0, 1, 0], [0, 0, 1.01]], scale_atoms=True)
    atoms.rattle(0.02, seed=12)
    atoms.calc = MiniffCalculator(stillinger_weber_si(), n_threads=NT)
    # The filter's 3x3 matrix functions go through scipy/BLAS: one BLAS thread keeps them cheap on busy machines.
    with threadpool_limits(1, user_api="blas"), BFGS(FrechetCellFilter(atoms), logfile=None) as opt:
        assert opt.run(fmax=1e-4, steps=100)
    lengths = atoms.cell.cellpar()[:3]
    angles = atoms.cell.cellpar()[3:]
    np.testing.assert_allclose(lengths, SW_A, atol=0.002)
    np.testing.assert_allclose(angles, 90.0, atol=0.05)
    # FrechetCellFilter converges the virial per atom: |stress| < fmax * N / V
    np.testing.assert_allclose(atoms.get_stress(), 0.0, atol=1e-4 * len(atoms) / atoms.get_volume())


def test_nve_energy_conservation_64_atoms():
    """VelocityVerlet, 1 fs steps: total energy drift below 1e-4 eV/atom over 2000 steps."""
    atoms = bulk("Si", "diamond", a=SW_A, cubic=True).repeat((2, 2, 2))
    assert len(atoms) == 64
    masses = atoms.get_masses()[:, None]
    momenta = np.random.default_rng(7).normal(size=(64, 3)) * np.sqrt(masses * units.kB * 600.0)
    atoms.set_momenta(momenta - momenta.sum(axis=0) * masses / masses.sum())  # no centre-of-mass drift
    atoms.calc = calc = MiniffCalculator(stillinger_weber_si(), skin=0.5, n_threads=NT)
    e0 = atoms.get_total_energy()
    energies = []
    with VelocityVerlet(atoms, timestep=1.0 * units.fs, logfile=None) as md:
        md.attach(lambda: energies.append(atoms.get_total_energy()), interval=100)
        md.run(2000)
    drift = np.abs(np.array(energies) - e0).max() / len(atoms)
    assert drift < 1e-4
    assert atoms.get_temperature() > 100  # it really moved
    assert calc.n_builds < 200  # the Verlet skin was used
