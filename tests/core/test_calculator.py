"""MiniffCalculator against ASE's Lennard-Jones, ASE's finite differences and fresh evaluations."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.calculators.lj import LennardJones
from ase.neighborlist import neighbor_list

from miniff.calculator import MiniffCalculator, UnknownSpeciesError
from miniff.potentials import lj_potential_family, stillinger_weber_si

EPS, SIG, RC = 0.0104, 3.4, 8.5  # argon, eV and Å; RC = 2.5 sigma

# Tolerances: ASE's LJ is an independent implementation of the same formula, so energies and forces
# agree to float rounding. Finite differences (ASE fd, step 1e-4 Å / 1e-5 strain, O(h^2) error) agree to
# about 1e-6 eV/Å (forces) and 1e-7 eV/Å^3 (stress) for these potentials.
FD_FORCE_ATOL = 2e-6
# Small systems: one OpenMP thread avoids thread start-up costs on busy CI machines (thread-count
# independence is tested separately below).
NT = 1
FD_STRESS_ATOL = 2e-7


def _lj():
    # miniff counts a pair from both atoms (no 1/2): half of ASE's epsilon gives the same total.
    return [lj_potential_family(epsilon=EPS / 2, sigma=SIG, a=RC / SIG, tag="Ar-Ar")]


def _ase_lj_unshifted(atoms):
    """ASE's LennardJones (no smoothing) energy with its cutoff shift removed, plus its other results."""
    ref = atoms.copy()
    ref.calc = LennardJones(epsilon=EPS, sigma=SIG, rc=RC, smooth=False)
    e0 = 4 * EPS * ((SIG / RC) ** 12 - (SIG / RC) ** 6)  # ASE subtracts this from every pair inside rc
    i = neighbor_list("i", ref, RC)
    n_pairs = np.bincount(i, minlength=len(atoms))  # both directions, like ASE's bothways list
    energies = ref.get_potential_energies() + 0.5 * e0 * n_pairs
    return ref, energies


def _sw_si_strained(rng):
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
    strain = np.array([[1.02, 0.03, -0.01], [0.0, 0.99, 0.04], [0.02, -0.03, 1.01]])
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    return atoms


def _check_lj(atoms):
    atoms.calc = MiniffCalculator(_lj())
    ref, energies = _ase_lj_unshifted(atoms)
    np.testing.assert_allclose(atoms.get_potential_energies(), energies, rtol=1e-12, atol=1e-13)
    assert atoms.get_potential_energy() == pytest.approx(energies.sum(), rel=1e-12, abs=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(energies.sum(), rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), rtol=1e-10, atol=1e-12)
    if atoms.pbc.all():
        np.testing.assert_allclose(atoms.get_stress(), ref.get_stress(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(atoms.get_stresses(), ref.get_stresses(), rtol=1e-10, atol=1e-14)


def test_lj_equals_ase_on_fcc_argon(fcc_ar, rng):
    vectors, frac, species, pbc = fcc_ar
    atoms = Atoms(list(species), scaled_positions=frac, cell=vectors, pbc=pbc).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=3)
    _check_lj(atoms)
    # the ideal crystal: forces vanish by symmetry
    ideal = Atoms(list(species), scaled_positions=frac, cell=vectors, pbc=pbc)
    ideal.calc = MiniffCalculator(_lj())
    np.testing.assert_allclose(ideal.get_forces(), 0.0, atol=1e-12)


def test_lj_equals_ase_on_cluster_and_slab(cluster, rng):
    vectors, frac, _, pbc = cluster
    atoms = Atoms(["Ar"] * len(frac), positions=(frac @ vectors) * 2.2, pbc=False)  # no cell at all
    _check_lj(atoms)
    slab = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    slab.rattle(0.05, seed=4)
    slab.pbc = (True, False, True)
    _check_lj(slab)
    slab.calc = MiniffCalculator(_lj())
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        slab.get_stress()


@pytest.mark.parametrize("kind", ["sw", "sw+lj"])
def test_forces_and_stress_match_finite_differences(rng, kind):
    atoms = _sw_si_strained(rng)
    pots = stillinger_weber_si()
    if kind == "sw+lj":  # mixed families add up
        atoms.symbols[[1, 5]] = "Ge"
        pots = stillinger_weber_si() + [lj_potential_family(epsilon=0.05, sigma=2.2, a=2.0, tag="Ge-Si"),
                                        lj_potential_family(epsilon=0.05, sigma=2.2, a=2.0, tag="Si-Ge")]
    atoms.calc = MiniffCalculator(pots, n_threads=NT)
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    np.testing.assert_allclose(forces, calculate_numerical_forces(atoms, eps=1e-4), atol=FD_FORCE_ATOL)
    np.testing.assert_allclose(stress, calculate_numerical_stress(atoms, eps=1e-5), atol=FD_STRESS_ATOL)
    np.testing.assert_allclose(atoms.get_stresses().sum(axis=0), stress, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(atoms.get_potential_energies().sum(), atoms.get_potential_energy(), rtol=1e-13)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-10)


def test_sw_silicon_ideal_energy():
    """Published SW value: diamond Si at a = 5.431 Å has -4.3366 eV/atom (2 x epsilon)."""
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms.calc = MiniffCalculator(stillinger_weber_si())
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(-2 * 2.1683, abs=2e-4)
    np.testing.assert_allclose(atoms.get_forces(), 0.0, atol=1e-10)


def _tiny_nn_potentials():
    """A small random Behler-Parrinello network for Si (radial + angular descriptors), float64."""
    import torch

    from miniff import ml
    from miniff.potentials import behler2_descriptor_family, behler5_descriptor_family

    descriptors = [behler2_descriptor_family(a=4.2, eta=eta, r_sphere=0.0, tag="Si-Si") for eta in (0.3, 0.8)]
    descriptors += [behler5_descriptor_family(a=4.2, eta=0.1, l=lam, zeta=2.0, tag="Si-Si-Si") for lam in (1.0, -1.0)]
    gen = torch.Generator().manual_seed(0)
    nn = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).to(torch.float64)
    with torch.no_grad():
        for p in nn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    return [ml.NNPotential(nn, descriptors, tag="Si")]


@pytest.mark.parametrize("mixed", [False, True])
def test_nn_potential_forces_and_stress_match_finite_differences(rng, mixed):
    atoms = _sw_si_strained(rng)
    pots = _tiny_nn_potentials() + (stillinger_weber_si() if mixed else [])
    atoms.calc = MiniffCalculator(pots, n_threads=NT)
    np.testing.assert_allclose(atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-4), atol=FD_FORCE_ATOL)
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-5), atol=FD_STRESS_ATOL)
    np.testing.assert_allclose(atoms.get_stresses().sum(axis=0), atoms.get_stress(), rtol=1e-12, atol=1e-15)


def test_potentials_from_file(tmp_path, rng):
    from miniff import ml

    pots = _tiny_nn_potentials() + stillinger_weber_si()
    path = tmp_path / "pots.json"
    ml.save_potentials(pots, path)
    atoms = _sw_si_strained(rng)
    e_ref, f_ref, s_ref = _fresh(atoms, pots)
    atoms.calc = MiniffCalculator(str(path))
    assert atoms.get_potential_energy() == pytest.approx(e_ref, rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), f_ref, atol=1e-11)
    np.testing.assert_allclose(atoms.get_stress(), s_ref, atol=1e-13)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        MiniffCalculator(bad)


# ----------------------------------------------------------------------------- Verlet skin


def _fresh(atoms, pots, **kw):
    b = atoms.copy()
    b.calc = MiniffCalculator(pots, n_threads=NT, **kw)
    return b.get_potential_energy(), b.get_forces(), (b.get_stress() if b.pbc.all() else None)


@pytest.mark.parametrize("pbc", [True, (True, False, True), False])
def test_skin_reuse_matches_fresh_calculator(rng, pbc):
    """Many small moves (reuse) and drift across the box boundary (atoms leave the cell)."""
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms.rattle(0.03, seed=5)
    atoms.pbc = pbc
    pots = stillinger_weber_si()
    calc = MiniffCalculator(pots, skin=0.6, n_threads=NT)
    atoms.calc = calc
    drift = np.array([0.07, -0.05, 0.09])
    for _ in range(20):
        atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape) + drift
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        e_ref, f_ref, s_ref = _fresh(atoms, pots)
        assert e == pytest.approx(e_ref, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(f, f_ref, rtol=1e-10, atol=1e-11)
        if s_ref is not None:
            np.testing.assert_allclose(atoms.get_stress(), s_ref, rtol=1e-10, atol=1e-13)
    frac = atoms.get_scaled_positions(wrap=False)
    assert (frac < 0).any() or (frac >= 1).any(), "the test should move atoms out of the box"
    assert 1 < calc.n_builds < 20, "the list should be both reused and rebuilt"


def test_moving_back_to_the_build_positions():
    """Regression: returning to the positions of the last build must refresh the pair vectors too."""
    atoms = _sw_si_strained(np.random.default_rng(3))
    pots = stillinger_weber_si()
    atoms.calc = MiniffCalculator(pots, n_threads=NT)
    f0 = atoms.get_forces()
    atoms.positions[2] += [0.05, -0.02, 0.01]
    atoms.get_forces()
    atoms.positions[2] -= [0.05, -0.02, 0.01]
    np.testing.assert_allclose(atoms.get_forces(), f0, atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), _fresh(atoms, pots)[2], atol=1e-14)
    assert atoms.calc.n_builds == 1


def test_rebuild_on_cell_numbers_and_pbc_change():
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    pots = stillinger_weber_si()
    atoms.calc = calc = MiniffCalculator(pots)
    atoms.get_forces()
    for change in ("cell", "pbc", "repeat"):
        if change == "cell":
            atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=True)
        elif change == "pbc":
            atoms.pbc = (True, True, False)
        else:
            atoms = atoms.repeat((1, 1, 2))
            atoms.calc = calc
        e_ref, f_ref, _ = _fresh(atoms, pots)
        assert atoms.get_potential_energy() == pytest.approx(e_ref, rel=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), f_ref, atol=1e-11)


def test_energy_only_then_forces_then_stress_are_consistent():
    atoms = _sw_si_strained(np.random.default_rng(1))
    atoms.calc = MiniffCalculator(stillinger_weber_si(), skin=0.3)
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    s = atoms.get_stress()
    e_ref, f_ref, s_ref = _fresh(atoms, stillinger_weber_si())
    assert e == pytest.approx(e_ref, rel=1e-13)
    np.testing.assert_allclose(f, f_ref, atol=1e-12)
    np.testing.assert_allclose(s, s_ref, atol=1e-14)


def test_thread_count_does_not_change_results():
    atoms = _sw_si_strained(np.random.default_rng(2)).repeat((2, 1, 1))
    out = []
    for n in (1, 2):
        atoms.calc = MiniffCalculator(stillinger_weber_si(), n_threads=n)
        out.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-12)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out[0][2], out[1][2], rtol=1e-12, atol=1e-15)


def test_edge_cases_empty_atoms_and_on_site_only():
    from miniff.potentials import on_site_potential_family

    empty = Atoms("", cell=np.eye(3) * 5.0, pbc=True)
    empty.calc = MiniffCalculator(stillinger_weber_si(), n_threads=NT)
    assert empty.get_potential_energy() == 0.0
    assert empty.get_forces().shape == (0, 3)
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms.calc = MiniffCalculator([on_site_potential_family(v0=-1.5, tag="Si")], skin=0.0, n_threads=NT)
    assert atoms.get_potential_energy() == pytest.approx(-1.5 * len(atoms))
    np.testing.assert_array_equal(atoms.get_forces(), 0.0)
    np.testing.assert_array_equal(atoms.get_stress(), 0.0)


def test_top_level_import():
    import miniff

    assert miniff.MiniffCalculator is MiniffCalculator


# ----------------------------------------------------------------------------- bad input


def test_property_not_implemented():
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms.calc = MiniffCalculator(stillinger_weber_si())
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_magnetic_moment()
    with pytest.raises(PropertyNotImplementedError):
        atoms.calc.get_property("dipole", atoms)
    mol = Atoms("Si3", positions=[[0, 0, 0], [2.3, 0, 0], [0, 2.3, 0]])
    mol.calc = MiniffCalculator(stillinger_weber_si())
    assert np.isfinite(mol.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError, match="stress"):
        mol.get_stress()


def test_unknown_species_named():
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms.symbols[3] = "C"
    atoms.calc = MiniffCalculator(stillinger_weber_si())
    with pytest.raises(UnknownSpeciesError, match=r"\['C'\]"):
        atoms.get_potential_energy()
    with pytest.raises(KeyError, match="'C'"):
        atoms.get_forces()


def test_species_map_and_case_insensitive_labels():
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    e_ref = _fresh(atoms, stillinger_weber_si())[0]
    atoms.calc = MiniffCalculator(stillinger_weber_si(species="si"))
    assert atoms.get_potential_energy() == pytest.approx(e_ref, rel=1e-13)
    atoms.calc = MiniffCalculator(stillinger_weber_si(species="x"), species_map={"Si": "x"})
    assert atoms.get_potential_energy() == pytest.approx(e_ref, rel=1e-13)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="potentials"):
        MiniffCalculator([])
    with pytest.raises(TypeError, match=r"potentials\[1\]"):
        MiniffCalculator([stillinger_weber_si()[0], "lj"])
    with pytest.raises(ValueError, match="skin"):
        MiniffCalculator(stillinger_weber_si(), skin=-0.1)
    with pytest.raises(ValueError, match="skin"):
        MiniffCalculator(stillinger_weber_si(), skin=float("nan"))
    with pytest.raises(TypeError, match="skin"):
        MiniffCalculator(stillinger_weber_si(), skin="big")
    with pytest.raises(ValueError, match="n_threads"):
        MiniffCalculator(stillinger_weber_si(), n_threads=0)
    with pytest.raises(TypeError, match="species_map"):
        MiniffCalculator(stillinger_weber_si(), species_map=["Si"])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        MiniffCalculator(tmp_path / "missing.json")
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms.calc = MiniffCalculator(stillinger_weber_si())
    atoms.positions[0, 1] = np.nan
    with pytest.raises(ValueError, match="positions"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("kind", ["lj", "sw"])
def test_results_are_the_evaluation_path_bit_for_bit(kind):
    """The calculator evaluates through ``NeighborWrapper.evaluate`` (the one evaluation path): its forces and
    stresses equal the wrapper's to the last bit, also after a skin refresh of the pair vectors."""
    from miniff.io.atoms import complete_vectors
    from miniff.kernel import Cell, NeighborWrapper

    rng = np.random.default_rng(7)
    if kind == "lj":
        atoms, pots = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2), _lj()
    else:
        atoms, pots = bulk("Si", "diamond", a=5.431, cubic=True), list(stillinger_weber_si())
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    atoms.calc = MiniffCalculator(pots, skin=0.5, n_threads=NT)
    for _ in range(2):
        forces, stress, stresses = atoms.get_forces(), atoms.get_stress(), atoms.get_stresses()
        calc = atoms.calc
        nw = calc._nw  # the wrapper whose pair vectors the calculator refreshed
        ev = nw.evaluate(pots, grad=True, per_atom_stress=True, n_threads=NT)
        np.testing.assert_array_equal(forces, -ev.grad_nc)
        np.testing.assert_array_equal(stresses, ev.stress_n)
        np.testing.assert_array_equal(stress, ev.stress_n.sum(axis=0))
        # and a wrapper built from scratch at these positions agrees to rounding
        vectors = complete_vectors(atoms.cell.array, atoms.pbc, atoms.positions)
        fresh = NeighborWrapper(Cell(vectors, np.linalg.solve(vectors.T, atoms.positions.T).T,
                                     atoms.get_chemical_symbols()), cutoff=max(p.cutoff for p in pots))
        np.testing.assert_allclose(forces, -fresh.grad(pots), atol=1e-12)
        atoms.positions += 0.02  # within the skin: the next step refreshes the pair vectors
    assert atoms.calc.n_builds == 1
