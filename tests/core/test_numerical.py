"""miniff.numerical: finite-difference helpers against closed-form derivatives."""

import numpy as np
import pytest
from support import make_nw

import miniff.potentials as P
from miniff.numerical import (
    numerical_descriptor_gradient,
    numerical_energy_gradient,
    numerical_forces,
    numerical_stress,
)


def _lj(r, eps=0.0104, sigma=3.4):
    return 4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6), 4 * eps * (6 * sigma**6 / r**7 - 12 * sigma**12 / r**13)


def test_forces_of_a_dimer(dimer):
    lj = P.lj_potential_family(epsilon=0.0104, sigma=3.4, a=2.5, tag="Ar-Ar")
    nw = make_nw(dimer, 8.5)
    _, dv = _lj(3.8)
    # the pair energy counts from both atoms: E = 2 V(r)
    expected = np.array([[2 * dv, 0, 0], [-2 * dv, 0, 0]])
    np.testing.assert_allclose(numerical_forces(nw, lj), expected, rtol=1e-7, atol=1e-12)
    per_atom = numerical_energy_gradient(nw, lj, resolving=True)
    assert per_atom.shape == (2, 2, 3)
    np.testing.assert_allclose(per_atom[0, 1], [dv, 0, 0], rtol=1e-7)


def test_stress_of_a_simple_cubic_crystal():
    """One atom per cubic cell, nearest neighbours only: sigma_xx = 2 V'(a) a / a^3 (ASE sign)."""
    a = 3.9
    lj = P.lj_potential_family(epsilon=0.0104, sigma=3.4, a=1.2, tag="Ar-Ar")  # cutoff 4.08 Å: 6 neighbours
    nw = make_nw((np.eye(3) * a, np.zeros((1, 3)), np.array(["Ar"]), (True,) * 3), 4.2)
    _, dv = _lj(a)
    expected = np.array([2 * dv * a / a**3] * 3 + [0, 0, 0])
    np.testing.assert_allclose(numerical_stress(nw, lj), expected, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(nw.stress(lj), expected, rtol=1e-12, atol=1e-15)


def test_descriptor_gradient_shape_and_restore(triclinic_box):
    nw = make_nw(triclinic_box, 3.5)
    d = [P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=1.0, tag="a-b")]
    before = nw.cartesian_row.copy()
    g = numerical_descriptor_gradient(nw, d)
    assert g.shape == (12, 1, 12, 3)
    np.testing.assert_array_equal(nw.cartesian_row, before)
    assert nw.pairs.cutoff == 3.5


def test_bad_step():
    nw = make_nw((np.eye(3) * 5, np.zeros((1, 3)), np.array(["a"]), (True,) * 3), 2.0)
    pot = P.on_site_potential_family(v0=1.0, tag="a")
    with pytest.raises(ValueError, match="eps must be a positive"):
        numerical_forces(nw, pot, eps=0.0)
    with pytest.raises(ValueError, match="eps must be a positive"):
        numerical_stress(nw, pot, eps=float("nan"))
