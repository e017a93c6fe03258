"""Smooth particle-mesh Ewald (method="pme") against the direct reciprocal sum and finite differences."""

import numpy as np
import pytest

from miniff.kernel import NeighborWrapper
from miniff.numerical import numerical_forces, numerical_stress
from miniff.potentials import charge_gradient, ewald_k_potential_family, ewald_total_potential_family

from .test_ewald import converged, random_ionic, rocksalt


def test_error_falls_with_mesh_and_order(rng):
    cell = random_ionic(rng, n=8, net=0.5)
    nw = NeighborWrapper(cell, cutoff=5.0)
    direct = nw.evaluate(ewald_k_potential_family(eta=0.5, scale=1.0, k_cut=6.0), stress=True)
    errors = {}
    for mesh in (16, 32):
        for order in (4, 6, 8):
            pme = ewald_k_potential_family(eta=0.5, scale=1.0, method="pme", mesh=mesh, order=order)
            ev = nw.evaluate(pme, stress=True, per_atom_stress=True)
            errors[mesh, order] = max(abs(ev.energy - direct.energy), np.abs(ev.grad_nc - direct.grad_nc).max(),
                                      np.abs(ev.stress - direct.stress).max())
            np.testing.assert_allclose(ev.stress_n.sum(axis=0), ev.stress, atol=1e-13)
    for order in (4, 6, 8):
        assert errors[32, order] < errors[16, order] / 4
    for mesh in (16, 32):
        assert errors[mesh, 8] < errors[mesh, 6] / 10 < errors[mesh, 4] / 100
    assert errors[32, 8] < 1e-9


def test_madelung_constant_with_the_mesh():
    cell = rocksalt(2.0)
    pot, nw = converged(cell, 1.6)
    pme = ewald_total_potential_family(a=pot.parameters["a"], eta=1.6, scale=1.0, method="pme", mesh=32, order=10)
    assert -nw.total(pme) / 4 == pytest.approx(1.747564594633, rel=1e-9)


@pytest.mark.parametrize("net", [0.0, 0.8])
def test_forces_stress_and_charge_gradient_are_derivatives_of_the_mesh_energy(rng, net):
    cell = random_ionic(rng, n=8, net=net)
    pot = ewald_total_potential_family(a=5.0, eta=0.6, method="pme", mesh=(18, 20, 24), order=6)
    nw = NeighborWrapper(cell, cutoff=5.0)
    ev = nw.evaluate(pot, stress=True)
    np.testing.assert_allclose(-ev.grad_nc, numerical_forces(nw, pot, eps=1e-5), atol=2e-6)
    np.testing.assert_allclose(ev.stress, numerical_stress(nw, pot, eps=1e-6), atol=2e-7)
    q0 = np.array(cell.meta["charges"], dtype=float)
    numeric = []
    for i in range(len(q0)):
        values = []
        for sign in (1, -1):
            nw.meta["charges"] = q0 + sign * 1e-5 * (np.arange(len(q0)) == i)
            values.append(nw.total(pot))
        numeric.append((values[0] - values[1]) / 2e-5)
    nw.meta["charges"] = q0
    np.testing.assert_allclose(charge_gradient(nw, pot), numeric, atol=1e-6)


def test_bad_mesh_parameters():
    with pytest.raises(ValueError, match="'method' must be one of"):
        ewald_k_potential_family(eta=0.5, method="p3m", mesh=16)
    with pytest.raises(ValueError, match="'order'"):
        ewald_k_potential_family(eta=0.5, method="pme", mesh=16, order=5)
    with pytest.raises(ValueError, match="'mesh'"):
        ewald_k_potential_family(eta=0.5, method="pme", mesh=4, order=6)
    with pytest.raises(ValueError, match="'mesh'"):
        ewald_k_potential_family(eta=0.5, method="pme", mesh=(16, 16))


def test_state_dict_keeps_the_mesh():
    from miniff.potentials import potential_from_state_dict

    pot = ewald_total_potential_family(a=5.0, eta=0.5, method="pme", mesh=(16, 18, 20), order=8)
    back = potential_from_state_dict(pot.state_dict())
    assert np.array_equal(back.parameters["mesh"], [16, 18, 20]) and back.parameters["order"] == 8


@pytest.mark.parametrize("order", [4, 6, 12])
def test_compiled_spline_weights(rng, order):
    from miniff._ext import kernel_module as K
    from miniff.potentials.ewald_mesh import _weights_reference

    u = np.ascontiguousarray(rng.uniform(-5, 40, (50, 3)))
    first = np.empty((50, 3), dtype=np.int64)
    w = np.empty((50, 3, order))
    dw = np.empty((50, 3, order))
    K.pme_weights(u, order, first, w, dw, 2)
    for c in range(3):
        f_ref, w_ref, dw_ref = _weights_reference(u[:, c], order)
        np.testing.assert_array_equal(first[:, c], f_ref)
        np.testing.assert_allclose(w[:, c], w_ref, atol=1e-10)  # the explicit sum cancels at high order
        np.testing.assert_allclose(dw[:, c], dw_ref, atol=1e-9)
    np.testing.assert_allclose(w.sum(axis=2), 1.0, rtol=1e-13)  # partition of unity
    np.testing.assert_allclose(dw.sum(axis=2), 0.0, atol=1e-13)


def test_mesh_serial_equals_openmp(rng):
    cell = random_ionic(rng, n=16, net=0.3, size=8.0)
    pot = ewald_total_potential_family(a=5.0, eta=0.6, method="pme", mesh=24, order=6)
    nw = NeighborWrapper(cell, cutoff=5.0)
    one = nw.evaluate(pot, stress=True, per_atom_stress=True, n_threads=1)
    two = nw.evaluate(pot, stress=True, per_atom_stress=True, n_threads=2)
    np.testing.assert_array_equal(one.energy_n, two.energy_n)
    np.testing.assert_array_equal(one.grad_nc, two.grad_nc)
    np.testing.assert_array_equal(one.stress_n, two.stress_n)
