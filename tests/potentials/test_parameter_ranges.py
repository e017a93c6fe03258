"""Family parameters are refused (naming the parameter) when float64 cannot evaluate the formula."""

import numpy as np
import pytest

import miniff.potentials as P
from miniff.kernel import Cell, NeighborWrapper

BAD = [
    (P.behler2_descriptor_family, dict(a=3, eta=1e200, r_sphere=1e200), "eta"),
    (P.behler2_descriptor_family, dict(a=3, eta=1.0, r_sphere=-1e51), "r_sphere"),
    (P.behler4_descriptor_family, dict(a=3, eta=0.1, l=1, zeta=1e30), "zeta"),
    (P.behler5_descriptor_family, dict(a=3, eta=0.1, l=1, zeta=1001), "zeta"),
    (P.sw2_potential_family, dict(epsilon=1, sigma=1, a=2.5, p=1e30, q=0, gauge_a=1, gauge_b=1), "p"),
    (P.sw2_potential_family, dict(epsilon=1, sigma=1, a=2.5, p=4, q=101, gauge_a=1, gauge_b=1), "q"),
    (P.sw2_potential_family, dict(epsilon=1e154, sigma=1, a=2.5, p=4, q=0, gauge_a=1, gauge_b=1), "epsilon"),
    (P.sw3_potential_family, dict(epsilon=1, sigma=1, l=1e200, gamma=1, cos_theta0=0, a=2.5), "l"),
    (P.lj_potential_family, dict(epsilon=1e300, sigma=1, a=2.5), "epsilon"),
    (P.harmonic_repulsion_potential_family, dict(a=3, epsilon=float("nan")), "epsilon"),
    (P.sigmoid_descriptor_family, dict(a=3, dr=1.0, r0=float("inf")), "r0"),
]


@pytest.mark.parametrize("family, params, name", BAD, ids=[f"{b[0].tag}-{b[2]}" for b in BAD])
def test_out_of_range_parameters_are_refused(family, params, name):
    with pytest.raises(ValueError, match=f"Parameter '{name}'"):
        family(tag="a-a-a" if family.coordination == 3 else "a-a", **params)


LIMITS = [
    (P.behler2_descriptor_family, dict(a=3, eta=1e50, r_sphere=1e50)),
    (P.behler2_descriptor_family, dict(a=3, eta=1e50, r_sphere=0)),
    (P.behler4_descriptor_family, dict(a=3, eta=0, l=1, zeta=1000)),
    (P.behler5_descriptor_family, dict(a=3, eta=1e50, l=-1, zeta=1000, epsilon=1e50)),
    (P.behler5x_descriptor_family, dict(a=3, eta1=1e50, eta2=0, cos_theta0=1, epsilon=1e50)),
    (P.sigmoid_descriptor_family, dict(a=3, dr=1e-100, r0=-1e50)),
    (P.sw2_potential_family, dict(epsilon=1e50, sigma=1, a=2.9, p=100, q=100, gauge_a=1e50, gauge_b=1e50)),
    (P.sw3_potential_family, dict(epsilon=1e50, sigma=1, l=1e50, gamma=1e50, cos_theta0=0, a=2.9)),
    (P.lj_potential_family, dict(epsilon=1e50, sigma=1, a=2.9)),
]


@pytest.mark.parametrize("family, params", LIMITS, ids=[b[0].tag for b in LIMITS])
def test_accepted_extremes_evaluate_to_finite_numbers(family, params):
    rng = np.random.default_rng(1)
    nw = NeighborWrapper(Cell(np.eye(3) * 4.0, rng.random((6, 3)), ["a"] * 6), cutoff=3.0)
    assert nw.pairs.d_p.min() > 0.3
    pot = family(tag="a-a-a" if family.coordination == 3 else "a-a", **params)
    ev = nw.evaluate(pot, stress=True)
    assert np.isfinite(ev.energy) and np.isfinite(ev.grad_nc).all() and np.isfinite(ev.stress).all()
    values, jac = P.eval_descriptors(nw, [pot], grad=True)
    assert np.isfinite(values).all() and np.isfinite(jac).all()


@pytest.mark.parametrize("family, kwargs, name", [
    (P.general_pair_potential_family, dict(f=lambda r: r * np.nan, df_dr=lambda r: r), "f"),
    (P.general_pair_potential_family, dict(f=lambda r: r, df_dr=lambda r: np.where(r > 1, np.inf, 0.0)), "df_dr"),
    (P.general_triple_potential_family, dict(f=lambda r1, r2, c: np.where(c > 2, 0.0, np.nan), df_dr1=lambda r1: 0 * r1,
                                            df_dr2=lambda r1: 0 * r1, df_dt=lambda r1: 0 * r1), "f"),
])
def test_python_callables_returning_nan_are_named(family, kwargs, name):
    rng = np.random.default_rng(2)
    nw = NeighborWrapper(Cell(np.eye(3) * 4.0, rng.random((6, 3)), ["a"] * 6), cutoff=3.0)
    pot = family(a=2.5, tag="a-a-a" if family.coordination == 3 else "a-a", **kwargs)
    with pytest.raises(ValueError, match=f"parameter '{name}' returned .* non-finite"):
        nw.evaluate(pot)


def test_non_numeric_cutoff_is_named():
    with pytest.raises(TypeError, match="cutoff must be a number"):
        P.LocalPotential({}, "abc")
