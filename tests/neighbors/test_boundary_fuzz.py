"""Fuzz test of the neighbour-list and evaluation boundary: random shapes, dtypes, cells, periodicity, cutoffs
and thread counts give either a clear ValueError/TypeError or a result equal to a brute-force reference; never
NaN, a crash or a hang."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import brute_force_pairs_anywhere

import miniff.potentials as P
from miniff.kernel import Cell, NeighborWrapper
from miniff.neighbors.search import build_pair_list

EPS, SIGMA, A = 0.3, 0.9, 2.2  # Lennard-Jones of the evaluation checks (cutoff A * SIGMA = 1.98 Å)
LJ = P.lj_potential_family(epsilon=EPS, sigma=SIGMA, a=A, tag="a-a")
ETA = 0.7  # Behler-2 descriptor with the same cutoff as LJ
B2 = P.behler2_descriptor_family(a=A * SIGMA, eta=ETA, r_sphere=0.0, tag="a-a")
CLEAR = (ValueError, TypeError)


def _lj(d):
    return 4 * EPS * ((SIGMA / d) ** 12 - (SIGMA / d) ** 6)


def _lj_prime(d):
    return 4 * EPS * (-12 * SIGMA**12 / d**13 + 6 * SIGMA**6 / d**7)


@st.composite
def inputs(draw):
    """Valid inputs with at most one thing broken (so that half the examples reach the comparison)."""
    broken = draw(st.sampled_from([None] * 6 + ["shape", "dtype", "vectors", "special", "cutoff", "threads"]))
    n = draw(st.integers(0, 6))
    shape = draw(st.sampled_from([(n, 2), (n,), (n, 3, 1)])) if broken == "shape" else (n, 3)
    dtype = draw(st.sampled_from(["float32", "int64", "bool", "complex128", "object"] if broken == "dtype"
                                 else ["float64"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kinds = ["flat", "singular", "nan", "wrong shape"] if broken == "vectors" else ["cubic", "triclinic"]
    kind = draw(st.sampled_from(kinds))
    scale = draw(st.floats(1.0, 6.0))
    vectors = {"cubic": np.eye(3) * scale,
               "triclinic": scale * (np.eye(3) + 0.4 * rng.uniform(-1, 1, (3, 3))),
               "flat": np.diag([scale, scale, 1e-12 * scale]),
               "singular": np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]]) * scale,
               "nan": np.full((3, 3), np.nan),
               "wrong shape": np.eye(2)}[kind]
    frac = rng.uniform(-0.5, 1.5, size=shape)
    if broken == "special" and n:
        special = draw(st.sampled_from(["nan", "inf", "duplicate", "huge"]))
        if special == "duplicate" and n >= 2:
            frac[1] = frac[0]  # coincident atoms: a clear error
        else:
            frac.flat[0] = {"nan": np.nan, "inf": np.inf, "huge": 1e12, "duplicate": 0.5}[special]
    if dtype == "int64":
        frac = np.round(frac).astype(dtype)
    elif dtype == "bool":
        frac = frac > 0.5
    else:
        frac = frac.astype(dtype)
    pbc = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
    cutoff = draw(st.sampled_from([0.0, -1.0, np.nan, np.inf, "abc", None]) if broken == "cutoff"
                  else st.floats(0.3, 4.5))
    n_threads = draw(st.sampled_from([0, 10**6, 2.5, "2"] if broken == "threads" else [None, 1, 2, -1]))
    return vectors, frac, pbc, cutoff, n_threads


def _same_pairs(pairs, reference, cutoff):
    """The list equals the brute-force reference, up to pairs whose distance ties with the cutoff in float64
    (the search computes the same distance from wrapped positions, a few ulp apart)."""
    i, j, s, d = reference
    found = {(a, b, *c): x for a, b, c, x in zip(pairs.i_p.tolist(), pairs.j_p.tolist(), pairs.S_pc.tolist(),
                                                  pairs.d_p.tolist(), strict=True)}
    expected = {(a, b, *c): x for a, b, c, x in zip(i.tolist(), j.tolist(), s.tolist(), d.tolist(), strict=True)}
    tie = 1e-9 * max(1.0, cutoff)
    for key in set(found) ^ set(expected):
        x = found.get(key, expected.get(key))
        assert abs(x - cutoff) <= tie, f"pair {key} at {x} Å (cutoff {cutoff} Å) only in one list"
    for key in set(found) & set(expected):
        assert abs(found[key] - expected[key]) <= 1e-12 * max(1.0, expected[key]), key
    return [k for k in expected if k in found]


def _clear(error):
    assert isinstance(error, CLEAR), f"unexpected {type(error).__name__}: {error}"
    assert str(error), "an error without a message"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs())
def test_pair_list_and_evaluation_boundary(case):
    vectors, frac, pbc, cutoff, n_threads = case
    try:
        cell = Cell(vectors, frac, ["a"] * len(frac))
        nw = NeighborWrapper(cell, pbc=pbc, cutoff=cutoff, normalize=False, n_threads=n_threads)
        pairs = nw.pairs
        ev = nw.evaluate(LJ, grad=True, ignore_missing_species=True) if nw.cutoff >= LJ.cutoff else None
        desc = P.eval_descriptors(nw, [B2], ignore_missing_species=True)[0] if ev is not None else None
    except Exception as error:  # noqa: BLE001 - the point is which errors come out
        _clear(error)
        return
    cart = np.asarray(cell.coordinates, dtype=float) @ np.asarray(cell.vectors, dtype=float)
    if len(cart) == 0:  # (the brute-force reference would enumerate every image of a thin empty cell)
        assert len(pairs.j_p) == 0 and (ev is None or ev.energy == 0.0)
        return
    i, j, s, d = brute_force_pairs_anywhere(cell.vectors, cart, float(cutoff), nw.pbc)
    _same_pairs(pairs, (i, j, s, d), float(cutoff))
    if ev is None:
        return
    assert np.isfinite(ev.energy) and np.isfinite(ev.grad_nc).all()
    near = d < LJ.cutoff
    if np.any(np.abs(d - LJ.cutoff) <= 1e-9 * LJ.cutoff):
        return  # a pair ties with the potential's cutoff: either answer is right
    D = cart[j] + s @ np.asarray(cell.vectors, dtype=float) - cart[i]
    energy = _lj(d[near]).sum()
    grad = np.zeros_like(cart)
    g = (_lj_prime(d[near]) / d[near])[:, None] * D[near]
    np.add.at(grad, j[near], g)
    np.add.at(grad, i[near], -g)
    scale = 1 + np.abs(_lj(d[near])).sum()
    assert abs(ev.energy - energy) <= 1e-9 * scale
    rc = A * SIGMA
    values = np.zeros(len(cart))
    np.add.at(values, i[near], np.exp(-ETA * d[near] ** 2) * 0.5 * (1 + np.cos(np.pi * d[near] / rc)))
    np.testing.assert_allclose(desc[:, 0], values, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ev.grad_nc, grad, rtol=1e-8, atol=1e-9 * (1 + np.abs(g).sum()))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 5), st.sampled_from([(3, 3), (3,), (4, 3), (3, 2)]),
       st.sampled_from(["float64", "int32", "float32", "object", "str"]),
       st.one_of(st.floats(0.1, 3.0), st.sampled_from([0.0, np.nan, -2.0, "x"])),
       st.one_of(st.booleans(), st.just((True, False)), st.just((1, 0, 2)), st.just("yes")),
       st.integers(0, 2**32 - 1))
def test_build_pair_list_boundary(n, vshape, dtype, cutoff, pbc, seed):
    rng = np.random.default_rng(seed)
    positions = rng.uniform(-3, 6, (n, 3)).astype(dtype if dtype != "str" else object)
    if dtype == "str":
        positions = positions.astype(str)
    vectors = (np.eye(3) * 3 + rng.uniform(-0.5, 0.5, (3, 3)))[: vshape[0], : vshape[-1]] if len(vshape) == 2 \
        else np.ones(3)
    try:
        pairs = build_pair_list(positions, vectors, pbc, cutoff, n_threads=1)
    except Exception as error:  # noqa: BLE001
        _clear(error)
        return
    i, j, s, d = brute_force_pairs_anywhere(vectors, np.asarray(positions, dtype=float), cutoff,
                                            np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)))
    _same_pairs(pairs, (i, j, s, d), float(cutoff))
