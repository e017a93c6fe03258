"""Every built-in family and tag against a direct numpy implementation of its formula (the per-atom formulas of
0.1.4: pair terms counted from both atoms with no 1/2, triplet terms over ordered neighbour pairs j != k; the case
tables are ``support.PAIR_CASES`` / ``support.TRIPLE_CASES``), plus parameter validation, state dicts and the module
helpers."""

import math

import numpy as np
import pytest
from support import PAIR_CASES, TRIPLE_CASES, fc, make_nw, reference_pair, reference_triple

import miniff.potentials as P


@pytest.fixture
def two_species_cluster(cluster):
    vectors, frac, _, pbc = cluster
    frac = (frac - 0.5) * 0.7 + 0.5  # a bit denser, so that every triplet family has terms
    return vectors, frac, np.array(["a", "b", "a", "a", "b", "b", "a", "b", "a"]), pbc


@pytest.fixture
def tiny_cell():
    """Two atoms in a cell smaller than the cutoffs: every atom sees many images of itself."""
    vectors = np.array([[2.6, 0.0, 0.0], [0.5, 2.4, 0.0], [0.3, -0.4, 2.9]])
    return vectors, np.array([[0.1, 0.2, 0.3], [0.6, 0.55, 0.8]]), np.array(["a", "b"]), (True, True, True)


@pytest.fixture(params=["periodic", "cluster", "tiny"])
def system(request, triclinic_box, two_species_cluster, tiny_cell):
    return {"periodic": triclinic_box, "cluster": two_species_cluster, "tiny": tiny_cell}[request.param]


@pytest.mark.parametrize("name", sorted(PAIR_CASES))
@pytest.mark.parametrize("tag", ["a-a", "a-b", "b-a"])
def test_pair_family_matches_numpy(system, name, tag):
    family, params, cutoff, f = PAIR_CASES[name]
    pot = family(tag=tag, **params)
    assert pot.cutoff == pytest.approx(cutoff, rel=1e-14)
    nw = make_nw(system, 4.0)
    expected = reference_pair(system, cutoff, tag, f)
    got = nw.eval(pot, "kernel")
    assert got.shape == (len(system[2]),)
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-12 * (1 + np.abs(expected).max()))
    if len(system[2]) > 2:  # (the tiny cell has no same-species pair inside the shortest cutoffs)
        assert np.abs(expected).max() > 0, "the test system must exercise the potential"


@pytest.mark.parametrize("name", sorted(TRIPLE_CASES))
@pytest.mark.parametrize("tag", ["a-a-a", "a-b-a", "a-a-b", "b-b-a"])
def test_triple_family_matches_numpy(system, name, tag):
    family, params, cutoff, f = TRIPLE_CASES[name]
    pot = family(tag=tag, **params)
    nw = make_nw(system, 4.0)
    expected = reference_triple(system, cutoff, tag, f)
    got = nw.eval(pot, "kernel")
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-12 * (1 + np.abs(expected).max()))
    if len(system[2]) > 2:  # (the tiny cell has no same-species pair inside the shortest cutoffs)
        assert np.abs(expected).max() > 0, "the test system must exercise the potential"


@pytest.mark.parametrize("name", ["sw3", "behler4", "behler5", "behler5x"])
def test_triple_tag_order_of_neighbours_does_not_matter(triclinic_box, name):
    family, params, _, _ = TRIPLE_CASES[name]
    nw = make_nw(triclinic_box, 4.0)
    e1 = nw.eval(family(tag="a-a-b", **params), "kernel")
    e2 = nw.eval(family(tag="a-b-a", **params), "kernel")
    np.testing.assert_allclose(e1, e2, rtol=1e-12, atol=1e-15)


def test_on_site(triclinic_box):
    nw = make_nw(triclinic_box, 3.0)
    e = nw.eval(P.on_site_potential_family(v0=-1.25, tag="b"), "kernel")
    np.testing.assert_array_equal(e, np.where(triclinic_box[2] == "b", -1.25, 0.0))
    np.testing.assert_array_equal(nw.grad(P.on_site_potential_family(v0=3.0, tag="a")), 0.0)


def test_general_pair_accepts_single_argument_callables(triclinic_box):
    nw = make_nw(triclinic_box, 4.0)
    pot = P.general_pair_potential_family(f=lambda r: r**2, df_dr=lambda r: 2 * r, a=3.0, tag="a-b")
    np.testing.assert_allclose(nw.eval(pot, "kernel"), reference_pair(triclinic_box, 3.0, "a-b", lambda r: r**2),
                               rtol=1e-12)


def test_tag_none_means_species_code_zero(triclinic_box):
    nw = make_nw(triclinic_box, 4.0)
    params = PAIR_CASES["behler2"][1]
    np.testing.assert_allclose(nw.eval(P.behler2_descriptor_family(**params), "kernel"),
                               nw.eval(P.behler2_descriptor_family(tag="a-a", **params), "kernel"), rtol=0)


# ---------------------------------------------------------------------------------------------- parameters


def test_missing_parameter_is_named():
    with pytest.raises(ValueError, match="'eta' is missing"):
        P.behler2_descriptor_family(a=3.0, r_sphere=1.0)
    with pytest.raises(ValueError, match="'sigma' is missing"):
        P.lj_potential_family(epsilon=1.0, a=2.5)


@pytest.mark.parametrize("family, params, bad", [
    (P.lj_potential_family, dict(epsilon=1.0, sigma=1.0, a=1.0), "'a'"),
    (P.lj_potential_family, dict(epsilon=1.0, sigma=-1.0, a=2.5), "'sigma'"),
    (P.behler2_descriptor_family, dict(a=-3.0, eta=1.0, r_sphere=0.0), "'a'"),
    (P.behler2_descriptor_family, dict(a=3.0, eta=-1.0, r_sphere=0.0), "'eta'"),
    (P.behler5_descriptor_family, dict(a=3.0, eta=1.0, l=2.0, zeta=1), "'l'"),
    (P.sigmoid_descriptor_family, dict(a=3.0, dr=0.0, r0=1.0), "'dr'"),
    (P.behler5x_descriptor_family, dict(a=3.0, eta1=1.0, eta2=1.0, cos_theta0=-1.5), "'cos_theta0'"),
])
def test_out_of_bounds_parameter_is_rejected(family, params, bad):
    with pytest.raises(ValueError, match=f"{bad}.*out of bounds"):
        family(**params)


def test_nan_and_inf_parameters_are_rejected():
    with pytest.raises(ValueError, match="'eta' is NaN"):
        P.behler2_descriptor_family(a=3.0, eta=float("nan"), r_sphere=0.0)
    with pytest.raises(ValueError, match="'epsilon' is NaN"):
        P.lj_potential_family(epsilon=float("nan"), sigma=1.0, a=2.5)
    with pytest.raises(ValueError, match="'r_sphere' must be finite"):
        P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=float("inf"))


def test_unknown_and_non_numeric_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown parameter.*'etta'"):
        P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=0.0, etta=2.0)
    with pytest.raises(TypeError, match="'eta' must be a real number"):
        P.behler2_descriptor_family(a=3.0, eta="1", r_sphere=0.0)


def test_bad_tags_are_rejected():
    b2 = P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=0.0)
    with pytest.raises(ValueError, match="tag 'a-b-c' has 3 species but this potential needs 2"):
        b2.copy(tag="a-b-c")
    with pytest.raises(TypeError, match="tag must be a string"):
        P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=0.0, tag=3)


def test_copy_keeps_parameters_and_changes_tag():
    d = P.sigmoid_descriptor_family(r0=10.0, dr=0.1, a=1.0)
    c = d.copy(tag="a-a")
    assert d.tag is None and c.tag == "a-a"
    assert c.parameters == d.parameters and c.parameters is not d.parameters
    assert c.family is d.family and c.cutoff == d.cutoff == 1.0
    assert c.copy().tag == "a-a"


@pytest.mark.parametrize("pot", [
    P.lj_potential_family(epsilon=0.01, sigma=3.4, a=2.5, tag="Ar-Ar"),
    P.sw2_potential_family(epsilon=1.0, sigma=2.0, a=1.8, p=4, q=0, tag="Si-Si"),
    P.behler5_descriptor_family(a=5.0, eta=0.05, l=-1, zeta=4, tag="a-b-a"),
    P.on_site_potential_family(v0=-3.0, tag="x"),
    P.harmonic_repulsion_potential_family(a=2.0, epsilon=1.0),
])
def test_state_dict_round_trip(pot):
    data = pot.state_dict()
    assert set(data) == {"tag", "parameters", "ptag"}
    assert data["tag"] == pot.family.tag and data["ptag"] == pot.tag
    back = P.potential_from_state_dict(data)
    assert type(back) is type(pot)
    assert back.get_all_parameters() == pot.get_all_parameters()
    assert back.cutoff == pot.cutoff and back.tag == pot.tag
    assert P.LocalPotential.from_state_dict(data).get_all_parameters() == pot.get_all_parameters()
    assert P.known_families[data["tag"]] is pot.family


def test_state_dict_errors():
    data = P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=0.0).state_dict()
    with pytest.raises(ValueError, match="unknown keys.*'extra'"):
        P.potential_from_state_dict({**data, "extra": 1})
    with pytest.raises(KeyError, match="unknown potential family 'nope'"):
        P.potential_from_state_dict({**data, "tag": "nope"})
    with pytest.raises(TypeError, match="data must be a dict"):
        P.potential_from_state_dict([data])
    with pytest.raises(ValueError, match="no .*family"):
        P.LocalPotential({"x": 1.0}, 1.0).state_dict()


def test_scaled_potential_attributes():
    lj = P.lj_potential_family(epsilon=0.0104, sigma=3.4, a=2.5)
    assert isinstance(lj, P.ScaledLocalPotential)
    assert lj.epsilon == 0.0104 and lj.sigma == 3.4 and "epsilon" not in lj.parameters
    assert lj.cutoff == pytest.approx(8.5)
    assert lj.get_all_parameters() == {"a": 2.5, "epsilon": 0.0104, "sigma": 3.4}
    with pytest.raises(ValueError, match="'sigma' is missing"):
        P.ScaledLocalPotential({"epsilon": 1.0, "a": 2.5}, 2.5)


def test_sw2_gauge_rule_reproduces_published_silicon_constants():
    pot = P.sw2_potential_family(epsilon=1.0, sigma=1.0, a=1.8, p=4, q=0)
    assert pot.parameters["gauge_a"] == pytest.approx(7.049556277, rel=1e-9)
    assert pot.parameters["gauge_b"] == pytest.approx(0.6022245584, rel=1e-9)


def test_sw2_gauge_rule_places_the_minimum(dimer):
    pot = P.sw2_potential_family(epsilon=0.5, sigma=1.7, a=2.2, p=5, q=1, min_at=(1.3, -2.0), tag="Ar-Ar")
    x = np.linspace(1.0, 2.1, 20001)
    par = pot.parameters
    reduced = par["gauge_a"] * (par["gauge_b"] * x ** -5 - x ** -1) * np.exp(1 / (x - 2.2))
    assert x[np.argmin(reduced)] == pytest.approx(1.3, abs=1e-4)
    assert reduced.min() == pytest.approx(-2.0, rel=1e-7)
    with pytest.raises(ValueError, match="min_at"):
        P.sw2_potential_family(epsilon=0.5, sigma=1.7, a=2.2, p=5, q=1, min_at=(3.0, -1.0))


# ---------------------------------------------------------------------------------------------- helpers


def test_cutoff_helpers_and_exp():
    r = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(P.sine_cutoff_fn(r, 3.0), [1, 0.75, 0.25, 0, 0], atol=1e-15)
    h = 1e-6
    np.testing.assert_allclose(P.sine_cutoff_fp(r[:3] + 0.5, 3.0),
                               (P.sine_cutoff_fn(r[:3] + 0.5 + h, 3.0) - P.sine_cutoff_fn(r[:3] + 0.5 - h, 3.0))
                               / (2 * h), rtol=1e-8)
    np.testing.assert_allclose(P.exp_fn(r, 0.3), np.exp(-0.3 * r**2))


def test_behler2_p2_and_turning_point():
    a, eta, rs = 5.0, 0.7, 1.0
    r = np.linspace(0.5, 4.5, 9)
    h = 1e-4

    def g(x):
        return np.exp(-eta * (x - rs) ** 2) * fc(x, a)

    np.testing.assert_allclose(P.behler2_p2(r, a, eta, rs), (g(r + h) - 2 * g(r) + g(r - h)) / h**2, rtol=1e-6,
                               atol=1e-8)
    for r_sphere in (0.0, rs):
        t = P.behler_turning_point(a, eta, r_sphere)
        assert 0 < t < a / 2
        assert abs(P.behler2_p2(t, a, eta, r_sphere)) < 1e-8
    # for r_sphere = 0 the single inflection of the Gaussian is near 1/sqrt(2 eta) (the cutoff shifts it a bit)
    assert P.behler_turning_point(a, eta, 0.0) == pytest.approx(1 / np.sqrt(2 * eta), rel=0.1)
    assert P.behler_turning_point(a, 0.0, rs) == a / 2


def test_stillinger_weber_si_parameters():
    pair, triple = P.stillinger_weber_si()
    assert pair.tag == "Si-Si" and triple.tag == "Si-Si-Si"
    assert pair.epsilon == pytest.approx(2.1683 / 2) and triple.parameters["l"] == pytest.approx(10.5)
    assert pair.cutoff == pytest.approx(1.8 * 2.0951) == triple.cutoff
    assert math.isclose(P.stillinger_weber_si(solve_gauge=True)[0].parameters["gauge_b"], 0.6022245584, rel_tol=1e-9)
