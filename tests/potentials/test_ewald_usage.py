"""Ewald terms everywhere other potentials go (eval layouts, sums, relax, ASE, state dicts) and bad input."""

import numpy as np
import pytest
from ase import Atoms

from miniff.calculator import MiniffCalculator
from miniff.ewald import ewald_cutoffs, stat_cell
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import (
    ewald_k_potential_family,
    ewald_real_potential_family,
    ewald_self_potential_family,
    ewald_total_potential_family,
    harmonic_repulsion_potential_family,
    lj_potential_family,
    potential_from_state_dict,
)
from miniff.potentials.ewald import DEFAULT_ACCURACY
from miniff.potentials.ewald_terms import MAX_K_VECTORS
from miniff.units import COULOMB

from .test_ewald import random_ionic, rocksalt


def nacl(a=5.64, rattle=0.0, rng=None):
    cell = rocksalt(a)
    if rattle:
        cell.coordinates = cell.coordinates + rng.normal(0, rattle / a, cell.coordinates.shape)
    return cell


def test_eval_layouts_and_sums_with_short_range(rng):
    cell = random_ionic(rng, n=6, net=0.0)
    ewald = ewald_total_potential_family(a=6.0, eta=0.5, k_cut=2.5)
    lj = lj_potential_family(epsilon=0.01, sigma=2.0, a=2.5, tag="a-b")
    nw = NeighborWrapper(cell, cutoff=6.0)
    per_atom = nw.eval(ewald)
    assert per_atom.shape == (6,)
    assert nw.total(ewald) == pytest.approx(per_atom.sum(), rel=1e-13)
    assert nw.total([ewald, lj]) == pytest.approx(nw.total(ewald) + nw.total(lj), rel=1e-13)
    np.testing.assert_allclose(nw.grad([ewald, lj]), nw.grad(ewald) + nw.grad(lj), atol=1e-12)
    np.testing.assert_allclose(nw.stress([ewald, lj]), nw.stress(ewald) + nw.stress(lj), atol=1e-12)
    np.testing.assert_allclose(nw.eval(ewald, "kernel_gradient", resolving=False), nw.grad(ewald), atol=1e-12)
    np.testing.assert_allclose(nw.eval(ewald, "kernel_numgrad", resolving=False), nw.grad(ewald), atol=1e-5)
    with pytest.raises(ValueError, match="resolving=False"):
        nw.eval(ewald, "kernel_gradient")
    with pytest.raises(ValueError, match="resolving=False"):
        nw.eval(ewald, "kernel_cgradient")
    assert np.all(nw.eval([ewald, lj], "kernel_cgradient", resolving=False)[1] == 0)


def test_real_space_alone_has_per_atom_gradients(rng):
    cell = random_ionic(rng, n=4)
    real = ewald_real_potential_family(a=4.0, eta=0.6)
    nw = NeighborWrapper(cell, cutoff=4.0)
    dense = nw.eval(real, "kernel_gradient")
    np.testing.assert_allclose(dense.sum(axis=0), nw.grad(real), atol=1e-12)


def test_reciprocal_grid_sources(rng):
    """k_cut on the potential, else the wrapper's reciprocal_cutoff, else automatic from accuracy."""
    cell = random_ionic(rng, n=6, net=0.3)
    eta = 0.6
    on_wrapper = NeighborWrapper(cell, cutoff=5.0, reciprocal_cutoff=2.7)
    explicit = NeighborWrapper(cell, cutoff=5.0)
    assert on_wrapper.total(ewald_k_potential_family(eta=eta)) == pytest.approx(
        explicit.total(ewald_k_potential_family(eta=eta, k_cut=2.7)), rel=1e-13)
    volume, charge = stat_cell(cell)
    for accuracy in (1e-4, 1e-9):
        k_cut = ewald_cutoffs(eta, volume, charge, COULOMB, accuracy)[1]
        auto = explicit.total(ewald_k_potential_family(eta=eta, accuracy=accuracy))
        assert auto == pytest.approx(explicit.total(ewald_k_potential_family(eta=eta, k_cut=k_cut)), rel=1e-14)
        tight = explicit.total(ewald_k_potential_family(eta=eta, k_cut=3 * k_cut))
        assert abs(auto - tight) < 10 * accuracy
    assert ewald_k_potential_family(eta=eta).parameters["accuracy"] is None  # DEFAULT_ACCURACY then
    assert DEFAULT_ACCURACY == 1e-7


def test_state_dict_round_trip():
    pot = ewald_total_potential_family(a=7.0, eta=0.4, accuracy=1e-6)
    back = potential_from_state_dict(pot.state_dict())
    assert back.family is ewald_total_potential_family
    assert back.get_all_parameters() == pot.get_all_parameters()
    for family in (ewald_real_potential_family, ewald_k_potential_family, ewald_self_potential_family):
        p = family(**{k: v for k, v in {"a": 5.0, "eta": 0.5}.items() if k in family.parameters})
        assert potential_from_state_dict(p.state_dict()).family is family


def test_relax_nacl_with_repulsion(rng):
    """Rattled NaCl with Ewald + a Na-Cl repulsion relaxes back to the rock-salt sites (zero forces)."""
    cell = nacl(5.64, rattle=0.08, rng=rng)
    ewald = ewald_total_potential_family(a=8.0, eta=0.4, accuracy=1e-8)
    rep = [harmonic_repulsion_potential_family(a=3.2, epsilon=40.0, tag=t) for t in ("na-cl", "cl-na")]
    nw = NeighborWrapper(cell, cutoff=8.0)
    start = nw.total([ewald] + rep)
    final = nw.relax([ewald] + rep, method="L-BFGS-B", fmax=1e-4)
    assert final.meta["total-energy"] < start
    assert np.abs(final.meta["forces"]).max() < 1e-3
    cart = final.cartesian()
    d = cart[:, None] - cart[None]
    frac = d @ np.linalg.inv(final.vectors)
    d = (frac - np.round(frac)) @ final.vectors
    nearest = np.sort(np.linalg.norm(d, axis=-1), axis=1)[:, 1]
    np.testing.assert_allclose(nearest, nearest[0], rtol=1e-3)  # every ion back on a perfect lattice


def test_ase_calculator_takes_initial_charges(rng):
    cell = random_ionic(rng, n=8, net=0.4)
    pot = ewald_total_potential_family(a=7.0, eta=0.5, accuracy=1e-8)
    atoms = Atoms(["Na", "Cl"] * 4, scaled_positions=cell.coordinates, cell=cell.vectors, pbc=True)
    atoms.set_initial_charges(cell.meta["charges"])
    atoms.calc = MiniffCalculator(pot)
    nw = NeighborWrapper(cell, cutoff=7.0)
    ev = nw.evaluate(pot, stress=True)
    assert atoms.get_potential_energy() == pytest.approx(ev.energy, rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), -ev.grad_nc, atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(), ev.stress, atol=1e-11)
    np.testing.assert_allclose(atoms.get_potential_energies().sum(), ev.energy, rtol=1e-12)
    atoms.set_initial_charges(2 * cell.meta["charges"])  # energy is quadratic in the charges
    assert atoms.get_potential_energy() == pytest.approx(4 * ev.energy, rel=1e-9)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("charges, match", [
    (None, r"meta\['charges'\]"),
    ([1.0, -1.0], "has 2 values but the cell has 8 atoms"),
    ([1.0, -1.0, np.nan, 1, -1, 1, -1, 0], "NaN"),
])
@pytest.mark.parametrize("family", ["real", "k", "self", "total"])
def test_bad_charges(charges, match, family):
    cell = rocksalt(2.0)
    if charges is None:
        del cell.meta["charges"]
    else:
        cell.meta["charges"] = charges
    pot = {"real": ewald_real_potential_family(a=2.0, eta=1.0), "k": ewald_k_potential_family(eta=1.0),
           "self": ewald_self_potential_family(eta=1.0), "total": ewald_total_potential_family(a=2.0, eta=1.0)}
    nw = NeighborWrapper(cell, cutoff=2.0)
    with pytest.raises(ValueError, match=match):
        nw.total(pot[family])


def test_non_periodic_cell_with_k_space_term():
    cell = rocksalt(2.0)
    nw = NeighborWrapper(cell, pbc=(True, True, False), cutoff=2.0)
    for pot in (ewald_k_potential_family(eta=1.0), ewald_total_potential_family(a=2.0, eta=1.0),
                ewald_self_potential_family(eta=1.0)):
        with pytest.raises(ValueError, match="periodic along all three axes.*vacuum"):
            nw.total(pot)
    assert np.isfinite(nw.total(ewald_real_potential_family(a=2.0, eta=1.0)))  # a screened pair sum is fine
    atoms = Atoms(["Na", "Cl"], positions=[[0, 0, 0], [2.8, 0, 0]], pbc=False)
    atoms.set_initial_charges([1, -1])
    atoms.calc = MiniffCalculator(ewald_total_potential_family(a=5.0, eta=0.5))
    with pytest.raises(ValueError, match="periodic along all three axes"):
        atoms.get_potential_energy()


def test_cutoff_the_images_cannot_cover():
    nw = NeighborWrapper(rocksalt(2.0), (3, 3, 3), cutoff=5.0)
    with pytest.raises(ValueError, match=r"a=5.0 Å needs periodic images up to 3"):
        nw.total(ewald_real_potential_family(a=5.0, eta=1.0))


def test_unreachable_accuracy():
    nw = NeighborWrapper(rocksalt(20.0), cutoff=2.0)
    with pytest.raises(ValueError, match=rf"accuracy=1e-300 eV .* cannot be reached: .* limit of {MAX_K_VECTORS}"):
        nw.total(ewald_k_potential_family(eta=3.0, accuracy=1e-300))
    with pytest.raises(ValueError, match="k_cut=1000.0 cannot be reached"):
        nw.total(ewald_k_potential_family(eta=3.0, k_cut=1000.0))


def test_bad_parameters():
    with pytest.raises(ValueError, match="tag must be None"):
        ewald_total_potential_family(a=2.0, eta=1.0, tag="na-cl")
    with pytest.raises(ValueError, match=r"k_cut must be a positive number or None \(finite, > 0\)"):
        ewald_k_potential_family(eta=1.0, k_cut=-1.0)
    with pytest.raises(ValueError, match=r"accuracy must be a positive number or None \(finite, > 0\)"):
        ewald_k_potential_family(eta=1.0, accuracy=float("nan"))
    with pytest.raises(TypeError, match="accuracy must be a positive number"):
        ewald_k_potential_family(eta=1.0, accuracy="tight")
    with pytest.raises(ValueError, match="'eta'"):
        ewald_self_potential_family(eta=0.0)
    with pytest.raises(ValueError, match="Parameter 'a' is missing"):
        ewald_total_potential_family(eta=1.0)


def test_coincident_atoms():
    cell = Cell(np.eye(3) * 4, [[0, 0, 0], [0, 0, 0]], ["a", "b"], meta={"charges": [1.0, -1.0]})
    try:
        nw = NeighborWrapper(cell, cutoff=3.0)
    except ValueError as e:  # the neighbour search may refuse coincident atoms first
        assert "coincid" in str(e) or "same position" in str(e)
        return
    with pytest.raises(ValueError, match="coincide"):
        nw.total(ewald_real_potential_family(a=3.0, eta=1.0))


def test_cell_from_ase_takes_initial_charges():
    atoms = Atoms(["Na", "Cl"], scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * 3.0, pbc=True)
    atoms.set_initial_charges([0.8, -0.8])
    cell = Cell.from_ase(atoms)
    np.testing.assert_array_equal(cell.meta["charges"], [0.8, -0.8])
    pot = ewald_total_potential_family(a=6.0, eta=0.7, accuracy=1e-9)
    atoms.calc = MiniffCalculator(pot)
    assert atoms.get_potential_energy() == pytest.approx(NeighborWrapper(cell, cutoff=6.0).total(pot), rel=1e-12)


def test_cell_relaxation_reaches_the_analytic_lattice_constant():
    """NaCl with Ewald + Na-Cl harmonic repulsion: E(r) = -4 M s / r + 48 eps (r - a)^2 / (2 a^2) for the
    nearest-neighbour distance r of the 8-ion cube; the relaxed cell must sit at dE/dr = 0."""
    from scipy.optimize import brentq

    eps, a_rep = 40.0, 3.2
    pots = [ewald_total_potential_family(a=8.0, eta=0.4, accuracy=1e-9)]
    pots += [harmonic_repulsion_potential_family(a=a_rep, epsilon=eps, tag=t) for t in ("na-cl", "cl-na")]
    nw = NeighborWrapper(rocksalt(5.0), cutoff=8.0)
    out = nw.relax(pots, relax_cell=True, method="L-BFGS-B", fmax=1e-6)
    r_eq = brentq(lambda r: 4 * 1.747564594633 * COULOMB / r**2 + 48 * eps * (r - a_rep) / a_rep**2, 2.5, a_rep)
    np.testing.assert_allclose(np.diag(out.vectors), 2 * r_eq, rtol=1e-6)
    np.testing.assert_allclose(out.meta["stress"], 0, atol=1e-6)


def test_cached_reciprocal_pass_follows_moves_and_charge_changes(rng):
    """Small moves (the calculator only refreshes its pair vectors) and in-place charge edits are seen."""
    cell = random_ionic(rng, n=8, net=0.2)
    pot = ewald_total_potential_family(a=6.0, eta=0.5, accuracy=1e-8)
    atoms = Atoms(["Na", "Cl"] * 4, scaled_positions=cell.coordinates, cell=cell.vectors, pbc=True)
    atoms.set_initial_charges(cell.meta["charges"])
    calc = MiniffCalculator(pot, skin=1.0)
    atoms.calc = calc
    atoms.get_forces()
    for _ in range(3):
        atoms.positions += rng.normal(0, 0.02, atoms.positions.shape)
        moved = Cell(atoms.cell.array, atoms.get_scaled_positions(), cell.values,
                     meta={"charges": cell.meta["charges"]})
        ev = NeighborWrapper(moved, cutoff=6.0).evaluate(pot, stress=True)
        np.testing.assert_allclose(atoms.get_forces(), -ev.grad_nc, atol=1e-9)
        np.testing.assert_allclose(atoms.get_stress(), ev.stress, atol=1e-10)
    assert calc.n_builds == 1  # the moves stayed within the skin: pair vectors refreshed, not rebuilt
    nw = NeighborWrapper(cell, cutoff=6.0)
    before = nw.total(pot)
    nw.meta["charges"] *= 2  # the same array, edited in place
    assert nw.total(pot) == pytest.approx(4 * before, rel=1e-9)


@pytest.mark.parametrize("ext", ["json", "pt"])
def test_potentials_files_keep_ewald_terms(tmp_path, ext, rng):
    from miniff.ml import load_potentials, save_potentials
    from miniff.potentials import (
        behler2_descriptor_family,
        ewald_charge_wrapper_potential_family,
        on_site_potential_family,
    )

    pots = [ewald_total_potential_family(a=5.0, eta=0.5, method="pme", mesh=(16, 18, 20), order=8),
            ewald_real_potential_family(a=5.0, eta=0.5, scale=1.0),
            ewald_charge_wrapper_potential_family(descriptors=[on_site_potential_family(v0=0.5, tag="a"),
                                                               behler2_descriptor_family(a=4.0, eta=0.3, r_sphere=2.0,
                                                                                         tag="a-b")], a=5.0, eta=0.5)]
    path = tmp_path / f"ewald.{ext}"
    save_potentials(pots, path)
    back = load_potentials(path)
    nw = NeighborWrapper(random_ionic(rng, n=6), cutoff=5.0)
    for p, b in zip(pots, back, strict=True):
        assert type(b) is type(p)
        assert nw.total(b) == pytest.approx(nw.total(p), rel=1e-14)
