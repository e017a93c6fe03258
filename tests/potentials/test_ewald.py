"""Ewald families against published lattice constants, brute-force sums and finite differences."""

import math

import numpy as np
import pytest

from miniff.ewald import ewald_cutoffs, stat_cell
from miniff.kernel import Cell, NeighborWrapper
from miniff.numerical import numerical_forces, numerical_stress
from miniff.potentials import (
    charge_gradient,
    ewald_k_potential_family,
    ewald_real_potential_family,
    ewald_self_potential_family,
    ewald_total_potential_family,
)
from miniff.units import COULOMB

TIGHT = 1e-13  # accuracy (energy, e²/Å with scale=1) for the lattice constants


def converged(cell, eta, eps=TIGHT, scale=1.0):
    """An Ewald-total potential whose real and k cutoffs both have estimated errors ``eps``, and its wrapper."""
    volume, charge = stat_cell(cell)
    a, k_cut = ewald_cutoffs(eta, volume, charge, scale=scale, eps=eps)
    pot = ewald_total_potential_family(a=a, eta=eta, scale=scale, k_cut=k_cut)
    return pot, NeighborWrapper(cell, cutoff=a)


def rocksalt(a=2.0, primitive=False):
    if primitive:
        vectors = a / 2 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
        return Cell(vectors, [[0, 0, 0], [0.5, 0.5, 0.5]], ["na", "cl"], meta={"charges": [1.0, -1.0]})
    fcc = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    coords = np.concatenate([fcc, fcc + [0.5, 0, 0]]) % 1
    return Cell(np.eye(3) * a, coords, ["na"] * 4 + ["cl"] * 4, meta={"charges": [1.0] * 4 + [-1.0] * 4})


def cscl(a=1.0):
    return Cell(np.eye(3) * a, [[0, 0, 0], [0.5, 0.5, 0.5]], ["cs", "cl"], meta={"charges": [1.0, -1.0]})


def zincblende(a=1.0):
    vectors = a / 2 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    return Cell(vectors, [[0, 0, 0], [0.25, 0.25, 0.25]], ["zn", "s"], meta={"charges": [1.0, -1.0]})


def random_ionic(rng, n=8, net=0.0, shear=0.3, size=6.0):
    """A rattled triclinic cell of ``n`` ions (charges +-1.2 with total ``net``), atoms >= 1.2 Å apart."""
    vectors = np.eye(3) * size + rng.uniform(-shear, shear, (3, 3)) * size
    while True:
        frac = rng.uniform(0, 1, (n, 3))
        cart = frac @ vectors
        d = cart[:, None] - cart[None]
        d = d.reshape(-1, 3) @ np.linalg.inv(vectors)
        d = (d - np.round(d)) @ vectors
        dist = np.linalg.norm(d, axis=1).reshape(n, n) + np.eye(n) * 10
        if dist.min() > 1.2:
            break
    q = np.array([1.2, -1.2] * (n // 2)) + net / n
    return Cell(vectors, frac, ["a", "b"] * (n // 2), meta={"charges": q})


# ----------------------------------------------------------------------------- published constants


@pytest.mark.parametrize("eta", [0.9, 1.6, 2.5])
@pytest.mark.parametrize(
    "make, r0, madelung",
    [
        (lambda: rocksalt(2.0), 1.0, 1.747564594633),
        (lambda: rocksalt(2.0, primitive=True), 1.0, 1.747564594633),
        (lambda: cscl(1.0), math.sqrt(3) / 2, 1.762674773071),
        (lambda: zincblende(1.0), math.sqrt(3) / 4, 1.638055053),
    ],
    ids=["NaCl", "NaCl-primitive", "CsCl", "zincblende"],
)
def test_madelung_constants(make, r0, madelung, eta):
    cell = make()
    pot, nw = converged(cell, eta / r0)
    pairs = cell.size // 2
    # E per ion pair = -M q^2 / r0
    assert -nw.total(pot) * r0 / pairs == pytest.approx(madelung, rel=1e-9)


@pytest.mark.parametrize(
    "vectors, alpha",
    [
        (0.5 * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]], dtype=float), 1.79185851),  # bcc
        (0.5 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float), 1.79174723),  # fcc
        (np.eye(3), 1.76011888),  # simple cubic
    ],
    ids=["bcc", "fcc", "sc"],
)
@pytest.mark.parametrize("eta", [1.5, 3.0])
def test_charged_lattice_in_background(vectors, alpha, eta):
    """One ion per cell in a neutralising background: E per ion = -alpha / (2 r_ws), r_ws the Wigner-Seitz
    radius."""
    cell = Cell(vectors, [[0.1, 0.2, 0.3]], ["x"], meta={"charges": [1.0]})
    pot, nw = converged(cell, eta)
    r_ws = (3 * abs(np.linalg.det(vectors)) / (4 * np.pi)) ** (1 / 3)
    assert -2 * nw.total(pot) * r_ws == pytest.approx(alpha, rel=2e-8)


def test_default_scale_is_coulomb_in_ev():
    cell = rocksalt(2 * 2.82)  # NaCl, r0 = 2.82 Å
    volume, charge = stat_cell(cell)
    a, k_cut = ewald_cutoffs(0.4, volume, charge, scale=COULOMB, eps=1e-9)
    pot = ewald_total_potential_family(a=a, eta=0.4, k_cut=k_cut)
    assert pot.parameters["scale"] == pytest.approx(14.399645, rel=1e-7)
    energy = NeighborWrapper(cell, cutoff=a).total(pot)
    assert energy / 4 == pytest.approx(-1.747564594633 * 14.3996454784 / 2.82, rel=1e-9)


# ----------------------------------------------------------------------------- independent brute force


def brute_real(cell, eta, a):
    """Real-space sum by explicit images (numpy)."""
    vectors = np.asarray(cell.vectors)
    cart = cell.cartesian()
    q = np.asarray(cell.meta["charges"], dtype=float)
    h = abs(np.linalg.det(vectors)) / np.linalg.norm(np.cross(vectors[[1, 2, 0]], vectors[[2, 0, 1]]), axis=1)
    reach = np.ceil(a / h).astype(int) + 1
    shifts = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    energy = np.zeros(len(q))
    for s in shifts @ vectors:
        d = np.linalg.norm(cart[None, :, :] + s - cart[:, None, :], axis=-1)
        ok = (d < a) & (d > 0)
        term = np.where(ok, q[:, None] * q[None, :] * np.vectorize(math.erfc)(eta * d) / (2 * np.where(ok, d, 1)), 0)
        energy += term.sum(axis=1)
    return energy


def brute_reciprocal(cell, eta, k_cut):
    vectors = np.asarray(cell.vectors)
    cart = cell.cartesian()
    q = np.asarray(cell.meta["charges"], dtype=float)
    recip = 2 * np.pi * np.linalg.inv(vectors).T
    reach = np.ceil(k_cut * np.linalg.norm(vectors, axis=1) / (2 * np.pi)).astype(int) + 1
    m = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    k = m @ recip
    k2 = (k**2).sum(1)
    keep = (k2 > 0) & (k2 < k_cut**2)
    k, k2 = k[keep], k2[keep]
    phase = np.exp(1j * cart @ k.T)  # [N, K]
    s = q @ phase
    volume = abs(np.linalg.det(vectors))
    return 2 * np.pi / volume * np.real(q[:, None] * phase * np.conj(s)[None]) @ (np.exp(-k2 / (4 * eta**2)) / k2)


def test_parts_match_brute_force(rng):
    cell = random_ionic(rng, n=6, net=0.6)
    eta, a, k_cut = 0.7, 5.5, 3.0
    nw = NeighborWrapper(cell, cutoff=a)
    real = ewald_real_potential_family(a=a, eta=eta, scale=1.0)
    recip = ewald_k_potential_family(eta=eta, scale=1.0, k_cut=k_cut)
    self_ = ewald_self_potential_family(eta=eta, scale=1.0)
    np.testing.assert_allclose(nw.eval(real), brute_real(cell, eta, a), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nw.eval(recip), brute_reciprocal(cell, eta, k_cut), rtol=1e-11, atol=1e-13)
    q = np.asarray(cell.meta["charges"])
    volume = abs(np.linalg.det(cell.vectors))
    expect = -eta / math.sqrt(math.pi) * q**2 - math.pi * q * q.sum() / (2 * eta**2 * volume)
    np.testing.assert_allclose(nw.eval(self_), expect, rtol=1e-13)
    total = ewald_total_potential_family(a=a, eta=eta, scale=1.0, k_cut=k_cut)
    np.testing.assert_allclose(nw.eval(total), nw.eval([real, recip, self_]).sum(0), rtol=1e-13, atol=1e-14)


# ----------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("net", [0.0, 0.9])
def test_total_does_not_depend_on_eta(rng, net):
    cell = random_ionic(rng, n=8, net=net)
    energies = [converged(cell, eta, eps=1e-11)[1].total(converged(cell, eta, eps=1e-11)[0])
                for eta in (0.35, 0.6, 1.0)]
    np.testing.assert_allclose(energies, energies[0], rtol=1e-9)


def test_symmetric_sites_have_no_force_and_isotropic_stress():
    cell = rocksalt(2.0)
    pot, nw = converged(cell, 1.5)
    ev = nw.evaluate(pot, stress=True)
    assert np.abs(ev.grad_nc).max() < 1e-12
    np.testing.assert_allclose(ev.energy_n, ev.energy / 8, rtol=1e-12)
    # E is -8 M / (2 L) in a cube of side L: stress = (1/V) dE/d strain = -E / (3 V) on the diagonal
    np.testing.assert_allclose(ev.stress[:3], -ev.energy / (3 * 8.0), rtol=1e-10)
    np.testing.assert_allclose(ev.stress[3:], 0, atol=1e-12)


def test_translation_invariance(rng):
    cell = random_ionic(rng, n=8, net=0.5)
    pot, nw = converged(cell, 0.6, eps=1e-10)
    ev = nw.evaluate(pot, stress=True)
    shifted = cell.copy()
    shifted.coordinates = (shifted.coordinates + [0.37, -0.21, 0.55]) % 1
    ev2 = NeighborWrapper(shifted, cutoff=pot.cutoff).evaluate(pot, stress=True)
    assert ev2.energy == pytest.approx(ev.energy, rel=1e-11)
    np.testing.assert_allclose(ev2.grad_nc, ev.grad_nc, atol=1e-8)
    np.testing.assert_allclose(ev2.stress, ev.stress, atol=1e-9)


# ----------------------------------------------------------------------------- derivatives


@pytest.mark.parametrize("net", [0.0, 1.1])
def test_forces_and_stress_match_finite_differences(rng, net):
    cell = random_ionic(rng, n=8, net=net)
    pot, nw = converged(cell, 0.6, eps=1e-10, scale=COULOMB)
    ev = nw.evaluate(pot, stress=True, per_atom_stress=True)
    np.testing.assert_allclose(-ev.grad_nc, numerical_forces(nw, pot, eps=1e-5), atol=2e-6)
    np.testing.assert_allclose(ev.stress, numerical_stress(nw, pot, eps=1e-6), atol=2e-7)
    np.testing.assert_allclose(ev.stress_n.sum(0), ev.stress, atol=1e-12)
    np.testing.assert_allclose(nw.grad(pot), ev.grad_nc, atol=1e-12)
    np.testing.assert_allclose(nw.stress(pot), ev.stress, atol=1e-12)


@pytest.mark.parametrize("part", ["real", "k", "self"])
def test_each_part_gradient_and_stress(rng, part):
    cell = random_ionic(rng, n=6, net=0.7)
    eta, a, k_cut = 0.8, 4.5, 3.5
    pot = {"real": ewald_real_potential_family(a=a, eta=eta),
           "k": ewald_k_potential_family(eta=eta, k_cut=k_cut),
           "self": ewald_self_potential_family(eta=eta)}[part]
    nw = NeighborWrapper(cell, cutoff=a)
    ev = nw.evaluate(pot, stress=True)
    np.testing.assert_allclose(-ev.grad_nc, numerical_forces(nw, pot, eps=1e-5), atol=2e-6)
    np.testing.assert_allclose(ev.stress, numerical_stress(nw, pot, eps=1e-6), atol=2e-7)


def test_charge_gradient_matches_finite_differences(rng):
    cell = random_ionic(rng, n=6, net=0.4)
    eta, a, k_cut = 0.8, 5.0, 3.5
    pots = [ewald_total_potential_family(a=a, eta=eta, k_cut=k_cut), ewald_real_potential_family(a=a, eta=eta),
            ewald_k_potential_family(eta=eta, k_cut=k_cut), ewald_self_potential_family(eta=eta)]
    nw = NeighborWrapper(cell, cutoff=a)
    q0 = np.array(cell.meta["charges"], dtype=float)
    for pot in pots:
        analytic = charge_gradient(nw, pot)
        numeric = np.zeros_like(q0)
        for i in range(len(q0)):
            values = []
            for sign in (1, -1):
                q = q0.copy()
                q[i] += sign * 1e-5
                nw.meta["charges"] = q
                values.append(nw.total(pot))
            numeric[i] = (values[0] - values[1]) / 2e-5
        nw.meta["charges"] = q0
        np.testing.assert_allclose(analytic, numeric, atol=1e-7)
        np.testing.assert_allclose(nw.eval(pot, "kernel_cgradient", resolving=False), analytic, rtol=1e-14)


def test_serial_equals_openmp(rng):
    cell = random_ionic(rng, n=16, net=0.3, size=8.0)
    pot, nw = converged(cell, 0.5, eps=1e-8)
    one = nw.evaluate(pot, stress=True, per_atom_stress=True, n_threads=1)
    two = nw.evaluate(pot, stress=True, per_atom_stress=True, n_threads=2)
    np.testing.assert_array_equal(one.energy_n, two.energy_n)
    np.testing.assert_array_equal(one.grad_nc, two.grad_nc)
    np.testing.assert_array_equal(one.stress_n, two.stress_n)
    np.testing.assert_array_equal(charge_gradient(nw, pot, n_threads=1), charge_gradient(nw, pot, n_threads=2))
