"""The particle mesh chosen from a requested accuracy, and method="auto" (direct sum or mesh by size), against
converged direct Ewald sums."""

import numpy as np
import pytest

import miniff.ewald as E
from miniff.ewald import ewald_cutoffs, pme_error, pme_mesh, stat_cell
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import ewald_k_potential_family, ewald_total_potential_family
from miniff.units import COULOMB

from .test_ewald import random_ionic


def rattled_rocksalt(rng, reps=2, rattle=0.15, shear=0.15, a=5.64):
    """Rock salt (+-1 e) of reps^3 conventional cells, sheared (triclinic) and rattled."""
    fcc = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    basis = np.concatenate([fcc, fcc + [0.5, 0, 0]]) % 1
    grid = np.array([[i, j, k] for i in range(reps) for j in range(reps) for k in range(reps)])
    frac = ((grid[:, None, :] + basis[None]) / reps).reshape(-1, 3)
    vectors = np.eye(3) * a * reps + rng.uniform(-shear, shear, (3, 3)) * a
    cart = frac @ vectors + rng.normal(0, rattle, frac.shape)
    species = np.array((["na"] * 4 + ["cl"] * 4) * len(grid))
    return Cell(vectors, cart @ np.linalg.inv(vectors), species,
                meta={"charges": np.where(species == "na", 1.0, -1.0)})


def direct_reference(nw, eta):
    """The reciprocal part by the direct sum with a k cutoff whose estimated error is 1e-13 eV."""
    volume, charge = stat_cell(nw.cell)
    k_cut = ewald_cutoffs(eta, volume, charge, COULOMB, 1e-13)[1]
    return nw.evaluate(ewald_k_potential_family(eta=eta, k_cut=k_cut, method="ewald"), stress=True)


CELLS = {"rocksalt": lambda rng: rattled_rocksalt(rng), "charged": lambda rng: random_ionic(rng, n=8, net=0.6)}


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("order, accuracy", [(4, 1e-3), (4, 1e-4), (6, 1e-3), (6, 1e-5), (6, 1e-7), (8, 1e-5),
                                             (8, 1e-7)])   # order 4 at 1e-7 needs ~400^3 points
def test_mesh_from_accuracy_meets_it(rng, name, order, accuracy):
    cell = CELLS[name](rng)
    nw = NeighborWrapper(cell, cutoff=3.0)
    eta = 0.4
    pot = ewald_k_potential_family(eta=eta, method="pme", order=order, accuracy=accuracy)
    plan = pot.reciprocal_plan(nw)
    assert plan["method"] == "pme" and plan["order"] == order
    assert plan["estimated_error"] <= accuracy
    ev, ref = nw.evaluate(pot, stress=True), direct_reference(nw, eta)
    assert abs(ev.energy - ref.energy) <= accuracy
    # the mesh is not wastefully fine: 20 % fewer points per axis would miss the accuracy by the estimate
    if min(plan["mesh"]) > 1.25 * E.fft_size(order):   # (unless it is the smallest mesh of that order)
        coarser = (0.8 * np.array(plan["mesh"])).astype(int)
        volume, charge = stat_cell(cell)
        assert pme_error(coarser, order, eta, cell.vectors, charge, COULOMB) > accuracy


def test_estimate_bounds_the_measured_error(rng):
    """The (safety-scaled) estimate is above the measured energy error for a range of meshes and orders."""
    cell = rattled_rocksalt(rng)
    nw = NeighborWrapper(cell, cutoff=3.0)
    volume, charge = stat_cell(cell)
    ref = direct_reference(nw, 0.5)
    ratios = []
    for order in (4, 6, 8):
        for mesh in (12, 16, 24, 32):
            err = abs(nw.total(ewald_k_potential_family(eta=0.5, method="pme", mesh=mesh, order=order)) - ref.energy)
            estimate = pme_error(mesh, order, 0.5, cell.vectors, charge, COULOMB)
            assert err <= estimate
            ratios.append(estimate / err)
    assert np.median(ratios) < 30  # and not uselessly pessimistic


def test_auto_switches_to_the_mesh_by_size(rng, monkeypatch):
    cell = rattled_rocksalt(rng)   # 64 ions
    nw = NeighborWrapper(cell, cutoff=8.0)
    eta, accuracy = 0.45, 1e-6
    pot = ewald_total_potential_family(a=8.0, eta=eta, accuracy=accuracy)
    assert pot.parameters["method"] == "auto"
    assert pot.reciprocal_plan(nw)["method"] == "ewald"       # 64 < PME_MIN_ATOMS
    direct = nw.evaluate(pot, stress=True)
    monkeypatch.setattr(E, "PME_MIN_ATOMS", 64)
    assert pot.reciprocal_plan(nw)["method"] == "ewald"       # here the mesh would cost more
    monkeypatch.setattr(E, "PME_COST_RATIO", 1e-3)            # (a machine where mesh points are cheap)
    plan = pot.reciprocal_plan(nw)
    assert plan["method"] == "pme" and plan["estimated_error"] <= accuracy
    mesh = nw.evaluate(pot, stress=True)
    volume, charge = stat_cell(cell)
    real_error = E.ewald_real_cutoff_error(8.0, eta, volume, charge, COULOMB)
    assert abs(mesh.energy - direct.energy) <= 2 * accuracy + 2 * real_error
    np.testing.assert_allclose(mesh.grad_nc, direct.grad_nc, atol=1e-4)
    # a k_cut or a wrapper's reciprocal grid means the direct sum, a mesh the particle mesh
    assert ewald_total_potential_family(a=8.0, eta=eta, k_cut=3.0).reciprocal_plan(nw)["method"] == "ewald"
    assert NeighborWrapper(cell, cutoff=8.0, reciprocal_cutoff=3.0).cell is not None
    assert pot.reciprocal_plan(NeighborWrapper(cell, cutoff=8.0, reciprocal_cutoff=3.0))["method"] == "ewald"
    monkeypatch.setattr(E, "PME_MIN_ATOMS", 10**9)
    assert ewald_total_potential_family(a=8.0, eta=eta, mesh=24).reciprocal_plan(nw)["method"] == "pme"


def test_ewald_method_rule():
    n = E.PME_MIN_ATOMS
    assert E.ewald_method(n - 1, n_k=10**6, mesh_points=1) == "ewald"
    assert E.ewald_method(n, n_k=10**6, mesh_points=1) == "pme"
    assert E.ewald_method(n, n_k=100, mesh_points=100 * n / E.PME_COST_RATIO * 1.01) == "ewald"
    assert E.ewald_method(n, n_k=100, mesh_points=100 * n / E.PME_COST_RATIO * 0.99) == "pme"
    assert E.ewald_method(10**6) == "ewald"
    assert E.ewald_method(10**6, k_cut=2.0, n_k=10**6, mesh_points=1) == "ewald"
    assert E.ewald_method(10, mesh=32) == "pme"


def test_k_vector_count(rng):
    from miniff.potentials.ewald_terms import half_grid

    cell = rattled_rocksalt(rng, reps=3)
    assert len(half_grid(cell.vectors, 3.0).k_kc) == pytest.approx(E.k_vector_count(3.0, cell.volume), rel=0.05)


def test_fft_size():
    assert [E.fft_size(n) for n in (1, 7, 11, 17, 97, 128, 131)] == [1, 8, 12, 18, 100, 128, 135]


def test_unreachable_accuracy_names_it(rng, monkeypatch):
    from miniff.potentials import ewald_mesh

    cell = rattled_rocksalt(rng)
    volume, charge = stat_cell(cell)
    with pytest.raises(ValueError, match="accuracy: 1e-12 cannot be reached"):
        pme_mesh(0.4, cell.vectors, charge, COULOMB, eps=1e-12, order=4, max_points=20**3)
    monkeypatch.setattr(ewald_mesh, "MAX_MESH_POINTS", 16**3)
    pot = ewald_k_potential_family(eta=0.4, method="pme", accuracy=1e-9)
    with pytest.raises(ValueError, match="accuracy"):
        NeighborWrapper(cell, cutoff=3.0).total(pot)
    with pytest.raises(ValueError, match="order"):
        pme_error(4, 6, 0.4, cell.vectors, charge)
    with pytest.raises(ValueError, match="eps"):
        pme_mesh(0.4, cell.vectors, charge, eps=-1.0)
