"""miniff.util helpers against direct numpy references."""

import itertools

import numpy as np
import pytest

from miniff import util


def test_num_grad_matches_analytic(rng):
    a = rng.normal(size=(2, 3))
    x0 = rng.normal(size=3)

    def f(x, scale):
        return scale * np.array([np.sum(np.sin(x)), x @ a[0]])

    g = util.num_grad(f, x0, 2.0)
    assert g.shape == (2, 3)
    np.testing.assert_allclose(g[0], 2.0 * np.cos(x0), rtol=1e-6)
    np.testing.assert_allclose(g[1], 2.0 * a[0], rtol=1e-8)
    g2 = util.num_grad(lambda scale, x: np.sum(x**2) * scale, x0, x_name="x", scale=3.0)
    np.testing.assert_allclose(g2, 6.0 * x0, rtol=1e-7)
    with pytest.raises(ValueError, match="x_name"):
        util.num_grad(f, x0, 1.0, x_name="x")
    with pytest.raises(ValueError, match="eps"):
        util.num_grad(f, x0, 1.0, eps=0)


def test_diag1():
    a = np.arange(6.0).reshape(2, 3)
    out = util.diag1(a)
    assert out.shape == (2, 3, 3)
    for k in range(2):
        np.testing.assert_array_equal(out[k], np.diag(a[k]))


def test_masked_unique_numpy2():
    data = np.ma.masked_array([[3, 1, 7], [1, 9, 3]], mask=[[False, False, True], [False, True, False]])
    unique = util.masked_unique(data)
    np.testing.assert_array_equal(unique, [1, 3])
    unique, inverse = util.masked_unique(data, return_inverse=True, fill_value=-1)
    assert inverse.shape == (2, 3)
    np.testing.assert_array_equal(inverse.mask, data.mask)
    np.testing.assert_array_equal(unique[inverse.compressed()], data.compressed())
    np.testing.assert_array_equal(inverse.data[data.mask], [-1, -1])


def test_dict_reduce():
    out = util.dict_reduce([{"a": 1, "b": 2}, {"a": 3}], sum)
    assert out == {"a": 4, "b": 2}
    mean = util.dict_reduce([{"x": np.ones(2)}, {"x": np.zeros(2)}], lambda v: np.mean(v, axis=0))
    np.testing.assert_array_equal(mean["x"], [0.5, 0.5])


def test_cartesian():
    out = util.cartesian([[1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(out, list(itertools.product([1, 2], [3, 4, 5])))


def test_lattice_up_to_radius(rng):
    vecs = np.array([[3.0, 0.0, 0.0], [1.0, 2.5, 0.0], [0.5, -0.3, 4.0]])
    pts = util.lattice_up_to_radius(6.0, vecs)
    brute = np.array(list(itertools.product(range(-8, 9), repeat=3))) @ vecs
    brute = brute[np.linalg.norm(brute, axis=1) < 6.0]
    assert len(pts) == len(brute)
    assert {tuple(np.round(p, 9)) for p in pts} == {tuple(np.round(p, 9)) for p in brute}
    no_zero = util.lattice_up_to_radius(6.0, vecs, zero=False)
    assert len(no_zero) == len(pts) - 1 and np.all(np.linalg.norm(no_zero, axis=1) > 0)
    cover = util.lattice_up_to_radius(6.0, vecs, cover=True)
    # covering: every pair of points of the cell closer than the radius is reached by one of the shifts
    a, b = rng.random((2, 50, 3)) @ vecs
    for x, y in zip(a, b, strict=True):
        ref = np.min(np.linalg.norm(y + brute - x, axis=1))
        got = np.min(np.linalg.norm(y + cover - x, axis=1))
        assert got <= ref + 1e-12
    with pytest.raises(ValueError, match="radius"):
        util.lattice_up_to_radius(-1.0, vecs)
    with pytest.raises(ValueError, match="lattice_vecs"):
        util.lattice_up_to_radius(1.0, np.eye(2))


def test_default_logger():
    logger = util.default_logger("miniff-test-logger")
    n = len(logger.handlers)
    assert util.default_logger("miniff-test-logger") is logger and len(logger.handlers) == n == 1
