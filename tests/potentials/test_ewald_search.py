"""The fast paths of the Ewald sums: erfc by table, the real-space sum without a pair list (cell-list walk over
the half stencil), the paired reciprocal sum against a brute-force numpy sum, the cached PME influence function."""

import math

import numpy as np
import pytest
from scipy.special import erfc

from miniff._ext import kernel_module as K
from miniff.ewald import ewald_cutoffs, stat_cell
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import ewald_real_potential_family, ewald_total_potential_family
from miniff.potentials import ewald_terms as T

from .test_ewald import random_ionic, rocksalt


def test_erfc_table_matches_scipy():
    x = np.concatenate([np.linspace(0.0, 9.0, 20001), np.random.default_rng(1).uniform(0, 8, 20000)])
    out = np.empty_like(x)
    K.erfc_table(x, out)
    np.testing.assert_allclose(out, erfc(x), rtol=1e-14, atol=0)  # exp(-x^2) alone: x^2 ulp
    with pytest.raises(ValueError, match="x must be >= 0"):
        K.erfc_table(np.array([-1.0]), np.empty(1))


@pytest.mark.parametrize("net", [0.0, 0.3])
def test_list_free_equals_the_list_path(rng, net):
    cell = random_ionic(rng, n=16, net=net, size=8.0)
    pot = ewald_total_potential_family(a=6.0, eta=0.45, k_cut=3.0)
    ref = NeighborWrapper(cell, cutoff=6.0).evaluate(pot, stress=True, per_atom_stress=True, n_threads=1)
    runs = []
    for n_threads in (1, 2, 3, 2):
        nw = NeighborWrapper(cell, n_threads=n_threads)
        runs.append(nw.evaluate(pot, stress=True, per_atom_stress=True))
        assert not nw.has_pairs  # no pair list was built
    for got in runs:
        np.testing.assert_allclose(got.energy_n, ref.energy_n, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got.grad_nc, ref.grad_nc, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(got.stress_n, ref.stress_n, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(got.stress, ref.stress, rtol=1e-11, atol=1e-12)
    np.testing.assert_array_equal(runs[1].grad_nc, runs[3].grad_nc)  # reproducible for a thread count
    assert runs[1].energy == runs[3].energy


def test_list_free_madelung_constant():
    cell = rocksalt(2.0)
    volume, charge = stat_cell(cell)
    a, k_cut = ewald_cutoffs(1.6, volume, charge, scale=1.0, eps=1e-13)
    pot = ewald_total_potential_family(a=a, eta=1.6, scale=1.0, k_cut=k_cut)
    nw = NeighborWrapper(cell)
    energy = nw.evaluate(pot).energy
    assert not nw.has_pairs
    assert abs(-energy / 4 - 1.747564594633) < 1e-9 * 1.75  # 4 ion pairs at r0 = 1


def test_list_free_forces_and_stress_by_central_differences(rng):
    cell = random_ionic(rng, n=8, net=0.4)
    pot = ewald_real_potential_family(a=5.0, eta=0.5)
    ev = NeighborWrapper(cell).evaluate(pot, stress=True)
    cart = cell.cartesian()
    h = 1e-5

    def energy(vectors, positions):
        moved = Cell(vectors, positions @ np.linalg.inv(vectors), cell.values, meta=dict(cell.meta))
        return NeighborWrapper(moved).evaluate(pot, grad=False).energy

    grad = np.zeros_like(cart)
    for i in range(len(cart)):
        for c in range(3):
            plus, minus = cart.copy(), cart.copy()
            plus[i, c] += h
            minus[i, c] -= h
            grad[i, c] = (energy(cell.vectors, plus) - energy(cell.vectors, minus)) / (2 * h)
    np.testing.assert_allclose(ev.grad_nc, grad, atol=1e-7)
    stress = np.zeros(6)
    volume = abs(np.linalg.det(cell.vectors))
    for v, (a, b) in enumerate(((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))):
        strain = np.zeros((3, 3))
        strain[a, b] = strain[b, a] = 1.0
        values = [energy(cell.vectors @ (np.eye(3) + t * strain), cart @ (np.eye(3) + t * strain)) for t in (h, -h)]
        stress[v] = (values[0] - values[1]) / (2 * h) / volume / (2 if a != b else 1)
    np.testing.assert_allclose(ev.stress, stress, atol=1e-8)


def test_list_free_refuses_coincident_atoms():
    cell = Cell(np.eye(3) * 5, [[0, 0, 0], [0, 0, 0], [0.5, 0.5, 0.5]], ["a", "a", "b"],
                meta={"charges": [1.0, 1.0, -2.0]})
    with pytest.raises(ValueError, match="coincident"):
        NeighborWrapper(cell).evaluate(ewald_total_potential_family(a=3.0, eta=0.8))


def test_paired_reciprocal_sum_equals_a_brute_force_sum(rng):
    """Every k-vector of the half grid summed one by one in numpy (energies, gradients, charge gradients,
    virials), on a triclinic cell whose rows of k-vectors are not symmetric in m2."""
    cell = random_ionic(rng, n=10, net=0.2, shear=0.35, size=7.0)
    q = np.asarray(cell.meta["charges"], dtype=float)
    r = cell.cartesian()
    volume = abs(np.linalg.det(cell.vectors))
    eta, scale = 0.7, 2.0
    grid = T.half_grid(cell.vectors, 3.2)
    got = T.reciprocal_space(q, r, volume, grid, eta, scale, True, True, True, 2)
    k = grid.k_kc
    k2 = (k * k).sum(axis=1)
    w = 4 * np.pi * scale / volume * np.exp(-k2 / (4 * eta * eta)) / k2
    phase = np.exp(1j * r @ k.T)  # [N, K]
    s_k = (q[:, None] * phase).sum(axis=0)
    t_nk = w[None] * np.real(phase * np.conj(s_k)[None])
    np.testing.assert_allclose(got.energy_n, q * t_nk.sum(axis=1), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got.cgrad_n, 2 * t_nk.sum(axis=1), rtol=1e-12, atol=1e-13)
    u_nk = w[None] * np.imag(np.conj(phase) * s_k[None])  # cos Im S - sin Re S
    np.testing.assert_allclose(got.grad_nc, 2 * q[:, None] * (u_nk @ k), rtol=1e-11, atol=1e-12)
    c_k = 2 * (1 / k2 + 1 / (4 * eta * eta))
    m_kab = c_k[:, None, None] * k[:, :, None] * k[:, None, :] - np.eye(3)[None]
    np.testing.assert_allclose(got.virial_n, q[:, None, None] * np.einsum("nk,kab->nab", t_nk, m_kab), rtol=1e-11,
                               atol=1e-12)
    np.testing.assert_allclose(got.s_k[0] + 1j * got.s_k[1], s_k, rtol=1e-12, atol=1e-12)
    assert math.isclose(got.energy_n.sum(), (w * np.abs(s_k) ** 2).sum(), rel_tol=1e-12)


def test_pme_influence_cache_keeps_cells_apart(rng):
    cells = [random_ionic(rng, n=8, size=s) for s in (6.0, 7.0)]
    pot = ewald_total_potential_family(a=4.0, eta=0.7, method="pme", mesh=16, order=6)
    first = [NeighborWrapper(c, cutoff=4.0).evaluate(pot, stress=True) for c in cells]
    again = [NeighborWrapper(c, cutoff=4.0).evaluate(pot, stress=True) for c in reversed(cells)][::-1]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.grad_nc, b.grad_nc)
        np.testing.assert_array_equal(a.stress, b.stress)
    assert first[0].energy != first[1].energy


def test_predicted_charges_keep_the_list_path(rng):
    """The charge wrapper needs the pair list (descriptors, chain rule): a wrapper without one is not summed
    list-free (it builds its list on demand when it has a cutoff)."""
    from miniff.potentials import ewald_charge_wrapper_potential_family, on_site_potential_family
    from miniff.potentials.evaluate import _list_free

    cell = random_ionic(rng, n=8)
    pot = ewald_charge_wrapper_potential_family(
        descriptors=[on_site_potential_family(v0=0.9, tag="a"), on_site_potential_family(v0=-0.9, tag="b")],
        charge_middleware=None, a=5.0, eta=0.6, k_cut=3.0)
    nw = NeighborWrapper(cell)
    assert _list_free(nw, pot, False, None, True, False) is None
    mixed = [ewald_total_potential_family(a=5.0, eta=0.6, k_cut=3.0), pot]
    assert _list_free(nw, mixed, False, None, True, False) is None
