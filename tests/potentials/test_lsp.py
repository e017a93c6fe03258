"""Local structural parameters (PyFit-FF's descriptors): values against a brute-force double sum over
neighbour pairs (numpy, scipy's Legendre polynomials), Jacobian against central differences, thread
independence, chunking, parameters and state dicts."""

import numpy as np
import pytest
from scipy.special import eval_legendre
from support import brute_force_pairs, dense_descriptor_jacobian, make_nw

import miniff.potentials as P
from miniff.numerical import numerical_descriptor_gradient

CUT, H = 4.2, 0.9


def _brute_force(system, tag, r0, sigma, order, asinh, a=CUT, h=H):
    """sum_{j in b} sum_{k in c} P_m(u_j . u_k) f(r_j) f(r_k) for every atom of species a (j = k included)."""
    vectors, frac, species, pbc = system
    xyz = frac @ vectors
    i_p, j_p, s_p, d_p = brute_force_pairs(vectors, xyz, a, pbc)
    sa, sb, sc = tag.split("-")
    out = np.zeros(len(frac))
    for i in range(len(frac)):
        if species[i] != sa:
            continue
        sel = i_p == i
        vec = xyz[j_p[sel]] + s_p[sel] @ vectors - xyz[i]
        r = d_p[sel]
        u = vec / r[:, None]
        f = np.exp(-((r - r0) ** 2) / sigma**2) / r0 * (r - a) ** 4 / (h**4 + (r - a) ** 4)
        inb = species[j_p[sel]] == sb
        inc = species[j_p[sel]] == sc
        cos = np.clip(u[inb] @ u[inc].T, -1.0, 1.0)
        out[i] = np.sum(eval_legendre(order, cos) * f[inb][:, None] * f[inc][None, :])
    return np.arcsinh(out) if asinh else out


@pytest.fixture
def box(rng):
    vectors = np.array([[5.6, 0.0, 0.0], [0.7, 5.4, 0.0], [-0.5, 0.8, 5.9]])
    return vectors, rng.random((12, 3)), np.array(["a", "b", "a"] * 4), (True, True, True)


def _set(tag="a-a-a", asinh=1, orders=range(5), centres=(1.8, 2.4, 3.1)):
    return [P.lsp_descriptor_family(a=CUT, h=H, r0=r0, sigma=0.9, order=m, asinh=asinh, tag=tag)
            for m in orders for r0 in centres]


@pytest.mark.parametrize("tag", ["a-a-a", "a-b-b", "a-a-b", "b-b-a"])
@pytest.mark.parametrize("asinh", [0, 1])
def test_values_equal_the_brute_force_double_sum(box, tag, asinh):
    nw = make_nw(box, CUT)
    descriptors = _set(tag, asinh)
    values, _ = P.eval_descriptors(nw, descriptors)
    for f, d in enumerate(descriptors):
        par = d.parameters
        expected = _brute_force(box, tag, par["r0"], par["sigma"], par["order"], asinh)
        np.testing.assert_allclose(values[:, f], expected, rtol=1e-11, atol=1e-13)
    assert np.any(values != 0)


def test_legendre_power_spectrum_is_not_negative(box):
    """With j = k included every order is a sum of squares (addition theorem)."""
    nw = make_nw(box, CUT)
    values, _ = P.eval_descriptors(nw, _set("a-a-a", asinh=0, orders=range(9)))
    assert values.min() >= -1e-12


@pytest.mark.parametrize("asinh", [0, 1])
def test_jacobian_matches_central_differences(box, asinh):
    nw = make_nw(box, CUT)
    descriptors = _set("a-a-b", asinh) + _set("b-a-a", asinh, orders=(0, 3))
    values, jac = P.eval_descriptors(nw, descriptors, grad=True)
    dense = dense_descriptor_jacobian(nw, jac)
    numerical = numerical_descriptor_gradient(nw, descriptors, eps=1e-5)
    assert np.abs(dense).max() > 1e-3
    np.testing.assert_allclose(dense, numerical, rtol=0, atol=1e-7 * np.abs(dense).max())


def test_one_by_one_equals_batch_and_threads_agree(rng):
    vectors = np.eye(3) * 8.0
    system = vectors, rng.random((60, 3)), np.array(["a", "b"] * 30), (True, True, True)
    nw = make_nw(system, CUT)
    descriptors = _set("a-a-b") + _set("b-b-b", orders=(1, 2))
    v1, j1 = P.eval_descriptors(nw, descriptors, grad=True, n_threads=1)
    v2, j2 = P.eval_descriptors(nw, descriptors, grad=True, n_threads=2)
    np.testing.assert_allclose(v2, v1, rtol=1e-12, atol=0)
    np.testing.assert_allclose(j2, j1, rtol=1e-12, atol=0)
    for f, d in enumerate(descriptors):
        e_n, g_pc = d.compute(nw, grad=True, n_threads=1)
        np.testing.assert_allclose(e_n, v1[:, f], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(g_pc, j1[:, f, :], rtol=1e-13, atol=1e-15)


def test_many_descriptors_are_chunked(box):
    """More than 64 descriptors and more than 16 distinct Gaussians per batch."""
    nw = make_nw(box, CUT)
    descriptors = _set("a-a-a", orders=range(4), centres=np.linspace(1.5, 4.0, 20))
    assert len(descriptors) == 80
    values, jac = P.eval_descriptors(nw, descriptors, grad=True)
    for f in (0, 17, 40, 63, 64, 79):
        e_n, g_pc = descriptors[f].compute(nw, grad=True)
        np.testing.assert_allclose(values[:, f], e_n, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(jac[:, f, :], g_pc, rtol=1e-13, atol=1e-15)


def test_parameters_are_checked():
    lsp = P.lsp_descriptor_family
    d = lsp(a=4.5, r0=2.0, order=3, tag="Si-Si-Si")
    assert d.parameters["h"] == 1.0 and d.parameters["sigma"] == 1.0 and d.parameters["asinh"] == 1
    assert d.cutoff == 4.5 and lsp(a=4.5, r0=2.0, order=0, asinh=False).parameters["asinh"] == 0
    with pytest.raises(ValueError, match="order"):
        lsp(a=4.5, r0=2.0, order=1.5)
    with pytest.raises(ValueError, match="order"):
        lsp(a=4.5, r0=2.0, order=9)
    with pytest.raises(ValueError, match="r0"):
        lsp(a=4.5, r0=0.0, order=1)
    with pytest.raises(ValueError, match="asinh"):
        lsp(a=4.5, r0=2.0, order=1, asinh=0.5)
    with pytest.raises(ValueError, match="Parameter 'a'"):
        lsp(a=-1.0, r0=2.0, order=1)


def test_state_dict_round_trip(box):
    nw = make_nw(box, CUT)
    d = P.lsp_descriptor_family(a=CUT, h=H, r0=2.2, sigma=0.8, order=2, tag="a-b-a")
    back = P.potential_from_state_dict(d.state_dict())
    np.testing.assert_array_equal(nw.eval(back, "kernel"), nw.eval(d, "kernel"))
