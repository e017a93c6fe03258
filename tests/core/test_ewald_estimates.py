"""miniff.ewald: the error estimates, the cutoffs solving them, and stat_cell."""

import math

import numpy as np
import pytest

from miniff.ewald import ewald_cutoffs, ewald_k_cutoff_error, ewald_real_cutoff_error, stat_cell
from miniff.kernel import Cell


def test_error_formulas():
    r, k, eta, v, c, s = 7.0, 2.1, 0.45, 321.0, 12.5, 14.4
    assert ewald_real_cutoff_error(r, eta, v, c, s) == pytest.approx(
        c / eta**2 / r**1.5 / math.sqrt(2 * v) * math.exp(-((eta * r) ** 2)) * s, rel=1e-14)
    assert ewald_k_cutoff_error(k, eta, v, c, s) == pytest.approx(
        c * 2 * eta / k * ((k * v) ** -0.5 + eta / math.pi) * math.exp(-((k / (2 * eta)) ** 2)) * s, rel=1e-14)
    assert ewald_real_cutoff_error(r, eta, v, c) == pytest.approx(ewald_real_cutoff_error(r, eta, v, c, s) / s)


@pytest.mark.parametrize("eps", [1e-3, 1e-7, 1e-12])
@pytest.mark.parametrize("eta", [0.2, 0.5, 1.3])
def test_cutoffs_solve_the_estimates(eta, eps):
    v, c, s = 500.0, 40.0, 14.399645
    r_cut, k_cut = ewald_cutoffs(eta, v, c, s, eps)
    assert ewald_real_cutoff_error(r_cut, eta, v, c, s) == pytest.approx(eps, rel=1e-8)
    assert ewald_k_cutoff_error(k_cut, eta, v, c, s) == pytest.approx(eps, rel=1e-8)
    # larger eta moves work from real to reciprocal space
    r2, k2 = ewald_cutoffs(2 * eta, v, c, s, eps)
    assert r2 < r_cut and k2 > k_cut


def test_cutoffs_of_an_uncharged_cell():
    assert ewald_cutoffs(0.5, 100.0, 0.0) == (0.0, 0.0)


@pytest.mark.parametrize("kwargs, name", [
    ({"eta": 0.0}, "eta"), ({"volume": -1.0}, "volume"), ({"charge": float("nan")}, "charge"),
    ({"eps": 0.0}, "eps"), ({"eta": "x"}, "eta"),
])
def test_cutoffs_bad_arguments(kwargs, name):
    args = {"eta": 0.5, "volume": 100.0, "charge": 2.0, "eps": 1e-6, **kwargs}
    with pytest.raises((ValueError, TypeError), match=name):
        ewald_cutoffs(**args)


def test_stat_cell():
    a = Cell(np.eye(3) * 2, [[0, 0, 0], [0.5, 0.5, 0.5]], ["x", "y"], meta={"charges": [1.5, -0.5]})
    b = Cell(np.eye(3) * 3, [[0, 0, 0]], ["x"], meta={"charges": [2.0]})
    assert stat_cell(a) == pytest.approx((8.0, 2.5))
    volume, charge = stat_cell([a, b])
    np.testing.assert_allclose(volume, [8.0, 27.0])
    np.testing.assert_allclose(charge, [2.5, 4.0])
    v1, c1 = stat_cell(a, squeeze=False)
    assert v1.shape == (1,) and c1.shape == (1,)
    with pytest.raises(ValueError, match=r"cells\[1\] has no meta\['charges'\]"):
        stat_cell([a, Cell(np.eye(3), [[0, 0, 0]], ["x"])])
    with pytest.raises(ValueError, match="has 1 values for 2 atoms"):
        stat_cell(Cell(np.eye(3), [[0, 0, 0], [0.5, 0, 0]], ["x", "x"], meta={"charges": [1.0]}))


@pytest.mark.parametrize("r_cut, eps", [(6.0, 1e-4), (10.0, 1e-8), (12.0, 1e-12)])
def test_eta_for_a_real_space_cutoff(r_cut, eps):
    from miniff.ewald import ewald_eta

    v, c, s = 800.0, 64.0, 14.399645
    eta = ewald_eta(r_cut, v, c, s, eps)
    assert ewald_real_cutoff_error(r_cut, eta, v, c, s) == pytest.approx(eps, rel=1e-8)
    assert ewald_cutoffs(eta, v, c, s, eps)[0] == pytest.approx(r_cut, rel=1e-8)  # consistent with ewald_cutoffs
    assert ewald_eta(r_cut, v, 0.0, s, eps) == 0.0
    with pytest.raises(ValueError, match="r_cut"):
        ewald_eta(-1.0, v, c, s, eps)
