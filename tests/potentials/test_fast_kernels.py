"""The fast paths of the classical kernels (issue #9) against independent numpy references.

- SW3 and Behler 5x with angular moments, SW2 + SW3 fused in one pass (``NeighborWrapper.evaluate``): energies against a
  brute-force numpy sum over triplets, gradients against central finite differences of that numpy energy;
- SW2 integer exponents (repeated multiplication) and the ``pow`` fallback (non-integer or large p, q);
- pair potentials evaluated per atom without per-pair gradients (full-list gather) against the per-pair path
  and finite differences, including tags that are not symmetric;
- thread independence (1, 2, 3 threads) and input validation of the compiled entry points.
"""

import itertools

import numpy as np
import pytest
from support import (
    brute_force_pairs,
    central_difference,
    diamond,
    make_nw,
    reference_pair,
    reference_triple,
    separated_fractions,
)

import miniff.potentials as P
from miniff._ext import kernel_module as K
from miniff.numerical import numerical_energy_gradient
from miniff.potentials.backends import pair_only, plan_accumulation
from miniff.potentials.base import LocalPotential, pair_arrays

# --------------------------------------------------------------------------------------------- systems


def _two_species(seed=1, n=40, box=8.5):
    """Random two-species periodic box, no pair closer than 1.9 Å."""
    rng = np.random.default_rng(seed)
    vectors = np.array([[box, 0.0, 0.0], [0.7, box - 0.3, 0.0], [-0.4, 0.5, box + 0.2]])
    frac = separated_fractions(rng, vectors, n, 1.9)
    return vectors, frac, rng.choice(np.array(["a", "b"]), n), (True, True, True)


# --------------------------------------------------------------------------------------------- references


def _sw2_fn(r, eps, sigma, a, p, q, ga, gb):
    x = r / sigma
    return eps * ga * (gb * x ** (-p) - x ** (-q)) * np.exp(1.0 / (x - a))


def _sw3_fn(r1, r2, c, eps, sigma, lam, gamma, c0, a):
    return eps * lam * (c - c0) ** 2 * np.exp(gamma / (r1 / sigma - a) + gamma / (r2 / sigma - a))


def sw_energy_per_atom(vectors, cart, species, pair, triple):
    """Brute-force numpy SW: ``pair = (tag, params)`` of SW2, ``triple = (tag, params)`` of SW3 (miniff's
    per-atom convention: a pair term from its centre atom, the triplet term over ordered (j, k), j != k)."""
    (tag2, p2), (tag3, p3) = pair, triple
    cut2 = p2["a"] * p2["sigma"]
    cut3 = p3["a"] * p3["sigma"]
    i_p, j_p, s_p, _ = brute_force_pairs(vectors, cart, max(cut2, cut3))
    D = cart[j_p] + s_p @ vectors - cart[i_p]
    d = np.linalg.norm(D, axis=1)
    out = np.zeros(len(cart))
    sa, sb = tag2.split("-")
    for i, j, r in zip(i_p, j_p, d, strict=True):
        if species[i] == sa and species[j] == sb and r < cut2:
            out[i] += _sw2_fn(r, p2["epsilon"], p2["sigma"], p2["a"], p2["p"], p2["q"], p2["gauge_a"], p2["gauge_b"])
    ta, tb, tc = tag3.split("-")
    for i in range(len(cart)):
        if species[i] != ta:
            continue
        rows = np.nonzero((i_p == i) & (d < cut3))[0]
        for p1, p2_ in itertools.permutations(rows, 2):
            if species[j_p[p1]] != tb or species[j_p[p2_]] != tc:
                continue
            c = D[p1] @ D[p2_] / (d[p1] * d[p2_])
            out[i] += _sw3_fn(d[p1], d[p2_], c, p3["epsilon"], p3["sigma"], p3["l"], p3["gamma"], p3["cos_theta0"],
                              p3["a"])
    return out


SI2 = dict(epsilon=2.1683 / 2, sigma=2.0951, a=1.8, p=4.0, q=0.0, gauge_a=7.049556277, gauge_b=0.6022245584)
SI3 = dict(epsilon=2.1683, sigma=2.0951, l=21.0 / 2, gamma=1.2, cos_theta0=-1 / 3, a=1.8)


def _sw_pots(p2=SI2, p3=SI3, tag2="Si-Si", tag3="Si-Si-Si"):
    return [P.sw2_potential_family(tag=tag2, **p2), P.sw3_potential_family(tag=tag3, **p3)]


def _nw(system, cutoff=4.0, n_threads=1):
    return make_nw(system, cutoff, n_threads=n_threads)


# --------------------------------------------------------------------------------------------- SW


def test_sw_silicon_energy_and_gradient_match_numpy():
    """Fused SW2 + SW3 on noisy diamond: per-atom energies vs numpy, gradient vs finite differences of numpy."""
    vectors, frac, species, pbc = diamond(5.43, (1, 1, 2), noise=0.08, rng=0)
    pots = _sw_pots()
    nw = _nw((vectors, frac, species, pbc))
    res = nw.evaluate(pots)
    cart = frac @ vectors
    expected = sw_energy_per_atom(vectors, cart, species, ("Si-Si", SI2), ("Si-Si-Si", SI3))
    np.testing.assert_allclose(res.energy_n, expected, rtol=1e-11, atol=1e-11)
    assert abs(expected).max() > 1.0

    def total(x):
        return sw_energy_per_atom(vectors, x, species, ("Si-Si", SI2), ("Si-Si-Si", SI3)).sum()

    numerical = central_difference(total, cart, eps=1e-5)
    np.testing.assert_allclose(res.grad_nc, numerical, rtol=0, atol=1e-6 * np.abs(numerical).max())


def test_sw3_moments_with_many_neighbours():
    """A dense random box (tens of neighbours per atom) stresses the moment formula against the triplet sum."""
    species = np.random.default_rng(3).choice(np.array(["a", "b"]), 16)
    system = diamond(5.43, (1, 1, 2), noise=0.1, rng=3, species=species)  # 16 neighbours within 3.9 Å
    params = dict(epsilon=1.1, sigma=1.3, l=2.5, gamma=1.2, cos_theta0=-1 / 3, a=3.0)
    for tag in ("a-a-a", "a-b-b", "a-a-b", "b-a-b"):
        pot = P.sw3_potential_family(tag=tag, **params)
        nw = _nw(system, 4.0)
        expected = reference_triple(system, 3.9, tag,
                                    lambda r1, r2, c, v1, v2: _sw3_fn(r1, r2, c, 1.1, 1.3, 2.5, 1.2, -1 / 3, 3.0))
        got = nw.eval(pot, "kernel")
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-11 * np.abs(expected).max())
        assert np.abs(expected).max() > 0


def _b5x_fn(r1, r2, c, eta1, eta2, c0, eps, a):
    def g(r, eta):
        return np.exp(-eta * r * r) * 0.5 * (1 + np.cos(np.pi * r / a))

    return eps / 4 * (c - c0) ** 2 * (g(r1, eta1) * g(r2, eta2) + g(r1, eta2) * g(r2, eta1))


@pytest.mark.parametrize("tag", ["a-a-a", "a-b-b", "a-a-b", "b-a-b"])
def test_behler5x_moments_with_many_neighbours(tag):
    """Behler 5x (angular moments) on 16 neighbours per atom: values vs the numpy triplet sum, gradient vs
    central differences."""
    species = np.random.default_rng(4).choice(np.array(["a", "b"]), 16)
    system = diamond(5.43, (1, 1, 2), noise=0.1, rng=4, species=species)
    pot = P.behler5x_descriptor_family(a=3.9, eta1=0.05, eta2=0.4, cos_theta0=0.3, epsilon=1.7, tag=tag)
    nw = _nw(system, 4.0)
    expected = reference_triple(system, 3.9, tag,
                                lambda r1, r2, c, v1, v2: _b5x_fn(r1, r2, c, 0.05, 0.4, 0.3, 1.7, 3.9))
    np.testing.assert_allclose(nw.eval(pot, "kernel"), expected, rtol=1e-10, atol=1e-11 * np.abs(expected).max())
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(nw.grad(pot), numerical_energy_gradient(nw, pot, eps=1e-5), rtol=0,
                               atol=1e-6 * np.abs(nw.grad(pot)).max())


FUSED_CASES = {
    "silicon": (SI2, SI3, "Si-Si", "Si-Si-Si"),
    "other sigma and a": (dict(SI2, sigma=2.0, a=1.9), SI3, "Si-Si", "Si-Si-Si"),
    "non-integer p q": (dict(SI2, p=4.5, q=0.5), SI3, "Si-Si", "Si-Si-Si"),
    "mixed a-b + a-b-b": (SI2, SI3, "a-b", "a-b-b"),
    "mixed a-a + a-a-b": (SI2, SI3, "a-a", "a-a-b"),
    "mixed a-b + a-b-a": (dict(SI2, p=5.0, q=1.0), dict(SI3, a=1.75), "a-b", "a-b-a"),
    "not fused b-a + a-a-a": (SI2, SI3, "b-a", "a-a-a"),
}


@pytest.mark.parametrize("name", sorted(FUSED_CASES))
def test_fused_sw_equals_numpy_and_separate_potentials(name):
    p2, p3, tag2, tag3 = FUSED_CASES[name]
    species = None if tag2.startswith("Si") else np.array(["a", "b", "b", "a"] * 4)
    system = diamond(5.43, (1, 1, 2), noise=0.1, rng=5, species=species)
    vectors, frac, species, _ = system
    pots = _sw_pots(p2, p3, tag2, tag3)
    nw = _nw(system)
    assert (len(plan_accumulation(pots, nw)[0]) == 2) == (not name.startswith("not fused"))
    res = nw.evaluate(pots, stress=True)
    expected = sw_energy_per_atom(vectors, frac @ vectors, species, (tag2, p2), (tag3, p3))
    np.testing.assert_allclose(res.energy_n, expected, rtol=1e-11, atol=1e-11)
    assert np.abs(expected).max() > 0.1
    # the separate per-potential path (Contract 3 compute) gives the same gradient and stress
    indptr, j_p = pair_arrays(nw)[:2]
    i_p = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    g_nc = np.zeros((len(indptr) - 1, 3))
    for pot in pots:
        _, g_pc = pot.compute(nw, grad=True)
        np.add.at(g_nc, j_p, g_pc)
        np.add.at(g_nc, i_p, -g_pc)
    np.testing.assert_allclose(res.grad_nc, g_nc, rtol=0, atol=1e-11 * max(1.0, np.abs(g_nc).max()))
    stress = sum(nw.stress(p) for p in pots)
    np.testing.assert_allclose(res.stress, stress, rtol=0, atol=1e-12 * max(1.0, np.abs(stress).max()))


def test_fused_gradient_matches_central_differences():
    system = diamond(5.43, (1, 1, 1), noise=0.12, rng=7, species=np.array(["a", "b"] * 4))
    pots = _sw_pots(dict(SI2, p=4.5, q=0.5), SI3, "a-b", "a-b-b") + _sw_pots(SI2, SI3, "b-b", "b-a-a")
    nw = _nw(system)
    vectors, frac, species, _ = system

    def total(x):
        return sum(sw_energy_per_atom(vectors, x, species, (pots[k].tag, pr2), (pots[k + 1].tag, pr3)).sum()
                   for k, pr2, pr3 in ((0, dict(SI2, p=4.5, q=0.5), SI3), (2, SI2, SI3)))

    numerical = central_difference(total, frac @ vectors, eps=1e-5)
    got = nw.evaluate(pots).grad_nc
    np.testing.assert_allclose(got, numerical, rtol=0, atol=1e-6 * np.abs(numerical).max())


def test_sw_terms_at_the_cutoff_vanish_without_nan():
    """Pairs a hair inside the cutoff: exp(1/(x - a)) underflows; energy and gradient stay finite and 0."""
    cut = SI2["a"] * SI2["sigma"]
    vectors = np.eye(3) * 30.0
    cart = np.array([[5.0, 5.0, 5.0], [5.0 + cut * (1 - 1e-15), 5.0, 5.0], [5.0, 5.0 + cut * (1 - 1e-14), 5.0]])
    system = vectors, cart @ np.linalg.inv(vectors), np.array(["Si"] * 3), (False, False, False)
    nw = _nw(system, cut + 0.1)
    res = nw.evaluate(_sw_pots(), stress=True)
    assert np.isfinite(res.energy_n).all() and np.isfinite(res.grad_nc).all() and np.isfinite(res.stress).all()
    np.testing.assert_allclose(res.energy_n, 0, atol=1e-250)
    np.testing.assert_allclose(res.grad_nc, 0, atol=1e-250)


# --------------------------------------------------------------------------------------------- SW2 exponents


@pytest.mark.parametrize("p, q", [(4, 0), (12, 6), (7, 3), (4.5, 0.5), (3.0, 2.25), (70, 1), (0, 0)])
def test_sw2_exponents_fast_and_fallback(p, q):
    """Integer p, q use repeated multiplication, others (and above 64) pow(): both against numpy's power."""
    system = _two_species(seed=2)
    params = dict(epsilon=0.8, sigma=1.2, a=3.0, p=p, q=q, gauge_a=2.0, gauge_b=1.4)
    for tag in ("a-a", "a-b"):
        pot = P.sw2_potential_family(tag=tag, **params)
        nw = _nw(system)
        expected = reference_pair(system, 3.6, tag, lambda r: _sw2_fn(r, 0.8, 1.2, 3.0, p, q, 2.0, 1.4))
        np.testing.assert_allclose(nw.eval(pot, "kernel"), expected, rtol=1e-11,
                                   atol=1e-12 * np.abs(expected).max())
        assert np.abs(expected).max() > 0
        e_n, g_pc = pot.compute(nw, grad=True)
        # per-pair gradient against a numpy derivative of the same formula
        indptr, j_p, d_p, D_pc, spec = pair_arrays(nw)
        i_p = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        sa, sb = (nw.species_lookup[s] for s in tag.split("-"))
        sel = (spec[i_p] == sa) & (spec[j_p] == sb) & (d_p < 3.6)
        h = 1e-6
        args = (0.8, 1.2, 3.0, p, q, 2.0, 1.4)
        dfdr = (_sw2_fn(d_p + h, *args) - _sw2_fn(d_p - h, *args)) / (2 * h)
        expected_g = np.where(sel[:, None], dfdr[:, None] * D_pc / d_p[:, None], 0.0)
        np.testing.assert_allclose(g_pc, expected_g, rtol=0, atol=1e-7 * np.abs(expected_g).max())


# --------------------------------------------------------------------------------------------- pair gather path

PAIR_SETS = {
    "lj a-b only": [P.lj_potential_family(epsilon=0.02, sigma=1.1, a=3.2, tag="a-b")],
    "lj a-a + b-a": [P.lj_potential_family(epsilon=0.02, sigma=1.1, a=3.2, tag="a-a"),
                     P.lj_potential_family(epsilon=0.03, sigma=1.0, a=3.5, tag="b-a")],
    "sw2 b-a": [P.sw2_potential_family(tag="b-a", **dict(SI2, sigma=1.9))],
    "harmonic + lj": [P.harmonic_repulsion_potential_family(a=2.9, epsilon=0.7, tag="a-b"),
                      P.lj_potential_family(epsilon=0.01, sigma=1.2, a=3.0, tag="b-b")],
}


@pytest.mark.parametrize("name", sorted(PAIR_SETS))
def test_pair_gather_path_equals_per_pair_path(name):
    pots = PAIR_SETS[name]
    assert pair_only(pots)
    system = _two_species(seed=4, n=24, box=7.5)
    nw = _nw(system)
    direct = nw.evaluate(pots, stress=True, per_atom_stress=True)  # pair potentials only: per-atom gather
    e_n, g_nc, stress = _separate(nw, pots)  # each potential's per-pair gradients (Contract 3) + numpy
    np.testing.assert_allclose(direct.energy_n, e_n, rtol=1e-13, atol=1e-15)
    scale = np.abs(g_nc).max()
    assert scale > 0
    np.testing.assert_allclose(direct.grad_nc, g_nc, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(direct.stress, stress, rtol=0, atol=1e-12 * np.abs(stress).max())
    np.testing.assert_allclose(direct.stress_n.sum(axis=0), stress, rtol=0, atol=1e-12 * np.abs(stress).max())
    per_atom = _separate_per_atom_stress(nw, pots)
    np.testing.assert_allclose(direct.stress_n, per_atom, rtol=0, atol=1e-12 * np.abs(per_atom).max())
    np.testing.assert_allclose(nw.grad(pots), direct.grad_nc, rtol=0, atol=0)
    np.testing.assert_allclose(nw.stress(pots), direct.stress, rtol=1e-13, atol=0)
    np.testing.assert_allclose(nw.evaluate(pots).grad_nc, direct.grad_nc, rtol=0, atol=0)
    vectors, frac, species, _ = system
    expected = sum(reference_pair(system, p.cutoff, p.tag, _pair_formula(p)) for p in pots)
    np.testing.assert_allclose(direct.energy_n, expected, rtol=1e-11, atol=1e-12 * np.abs(expected).max())

    def total(x):  # vectorised brute force over all pairs
        i_p, j_p, s_p, _ = brute_force_pairs(vectors, x, max(p.cutoff for p in pots))
        r = np.linalg.norm(x[j_p] + s_p @ vectors - x[i_p], axis=1)
        out = 0.0
        for p in pots:
            sa, sb = p.tag.split("-")
            sel = (species[i_p] == sa) & (species[j_p] == sb) & (r < p.cutoff)
            out += _pair_formula(p)(r[sel]).sum()
        return out

    numerical = central_difference(total, frac @ vectors, eps=1e-5)
    np.testing.assert_allclose(direct.grad_nc, numerical, rtol=0, atol=1e-6 * np.abs(numerical).max())


def test_pair_gather_path_in_a_tiny_cell():
    """Cells smaller than the cutoff: atoms see their own images (pairs (i, i, S)), whose reverse is in the
    same row; the gathered gradients and stresses still equal the per-pair path."""
    vectors = np.array([[2.6, 0.0, 0.0], [0.5, 2.4, 0.0], [0.3, -0.4, 2.9]])
    system = vectors, np.array([[0.1, 0.2, 0.3], [0.6, 0.55, 0.8]]), np.array(["a", "b"]), (True, True, True)
    pots = [P.lj_potential_family(epsilon=0.02, sigma=1.1, a=3.2, tag="a-b"),
            P.harmonic_repulsion_potential_family(a=3.3, epsilon=0.7, tag="a-a"),
            P.sw2_potential_family(tag="b-a", **dict(SI2, sigma=1.9))]
    nw = _nw(system, 4.0)
    assert pair_only(pots)
    res = nw.evaluate(pots, stress=True, per_atom_stress=True)
    e_n, g_nc, stress = _separate(nw, pots)
    np.testing.assert_allclose(res.energy_n, e_n, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(res.grad_nc, g_nc, rtol=0, atol=1e-12 * np.abs(g_nc).max())
    np.testing.assert_allclose(res.stress, stress, rtol=0, atol=1e-12 * np.abs(stress).max())
    per_atom = _separate_per_atom_stress(nw, pots)
    np.testing.assert_allclose(res.stress_n, per_atom, rtol=0, atol=1e-12 * np.abs(per_atom).max())


def _separate_per_atom_stress(nw, pots):
    """Per-atom Voigt stress [N, 6]: each pair's virial grad_pc (x) D assigned to its centre atom (numpy)."""
    indptr, _, _, D_pc, _ = pair_arrays(nw)
    i_p = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    virial = np.zeros((len(indptr) - 1, 3, 3))
    for pot in pots:
        np.add.at(virial, i_p, pot.compute(nw, grad=True)[1][:, :, None] * D_pc[:, None, :])
    s = 0.5 * (virial + np.swapaxes(virial, 1, 2)) / nw.volume
    return np.stack([s[:, 0, 0], s[:, 1, 1], s[:, 2, 2], s[:, 1, 2], s[:, 0, 2], s[:, 0, 1]], axis=1)


def _pair_formula(pot):
    v = pot.get_all_parameters()
    name = pot.family.tag
    if name == "Lennard-Jones":
        return lambda r: 4 * v["epsilon"] * ((v["sigma"] / r) ** 12 - (v["sigma"] / r) ** 6)
    if name == "harmonic repulsion":
        return lambda r: v["epsilon"] * (r - v["a"]) ** 2 / (2 * v["a"] ** 2)
    return lambda r: _sw2_fn(r, v["epsilon"], v["sigma"], v["a"], v["p"], v["q"], v["gauge_a"], v["gauge_b"])


# --------------------------------------------------------------------------------------------- threads


@pytest.mark.parametrize("case", ["sw", "sw mixed", "lj", "behler5x"])
def test_threads_give_identical_results(case):
    system = diamond(5.43, (2, 2, 2), noise=0.1, rng=11,
                     species=None if case == "sw" else np.array(["a", "b", "b", "a"] * 16))
    if case == "sw":
        pots = _sw_pots()
    elif case == "sw mixed":
        pots = _sw_pots(SI2, SI3, "a-b", "a-b-b") + _sw_pots(SI2, SI3, "b-a", "b-a-b")
    elif case == "lj":
        pots = [P.lj_potential_family(epsilon=0.02, sigma=2.0, a=1.9, tag="a-b")]
    else:
        pots = [P.behler5x_descriptor_family(a=3.8, eta1=0.02, eta2=0.3, cos_theta0=0.25, tag="a-b-a")]
    results = []
    for n_threads in (1, 2, 3):
        nw = _nw(system, 4.0, n_threads=n_threads)
        results.append((nw.evaluate(pots), nw.evaluate(pots, stress=True, per_atom_stress=True)))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            for x, y in zip(a, b, strict=True):
                if x is not None:
                    np.testing.assert_allclose(y, x, rtol=1e-12, atol=0)


def test_pair_gradient_to_atoms_matches_numpy_for_any_thread_count():
    rng = np.random.default_rng(0)
    n = 50
    counts = rng.integers(0, 9, n)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    j_p = rng.integers(0, n, indptr[-1]).astype(np.int32)
    g_pc = rng.normal(size=(indptr[-1], 3))
    expected = np.zeros((n, 3))
    i_p = np.repeat(np.arange(n), counts)
    np.add.at(expected, j_p, g_pc)
    np.add.at(expected, i_p, -g_pc)
    outs = []
    for n_threads in (1, 2, 3, 7):
        out = np.zeros((n, 3))
        K.pair_gradient_to_atoms(indptr, j_p, g_pc, out, n_threads)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
        outs.append(out)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


# --------------------------------------------------------------------------------------------- validation


def test_compiled_entry_points_validate_their_inputs():
    indptr = np.array([0, 2, 3], dtype=np.int64)
    j_p = np.array([1, 1, 0], dtype=np.int32)
    D = np.array([[1.0, 0, 0], [0, 1.5, 0], [-1.0, 0, 0]])
    d = np.linalg.norm(D, axis=1)
    spec = np.zeros(2, dtype=np.int32)
    e = np.zeros(2)
    g = np.zeros((3, 3))
    lj = np.array([0.1, 1.0])
    with pytest.raises(ValueError, match="parameters"):
        K.pair_reduce(2, lj, 3.0, indptr, j_p, d, D, spec, 0, 0, e, g, True, 1)  # SW2 needs 9
    with pytest.raises(ValueError, match="non-decreasing"):
        K.pair_reduce(1, lj, 3.0, np.array([0, 4, 3], dtype=np.int64), j_p, d, D, spec, 0, 0, e, g, True, 1)
    with pytest.raises(ValueError, match="number of pairs"):
        K.pair_reduce(1, lj, 3.0, indptr, j_p, d[:2], D, spec, 0, 0, e, g, True, 1)
    with pytest.raises(ValueError, match="grad_pc"):
        K.pair_reduce(1, lj, 3.0, indptr, j_p, d, D, spec, 0, 0, e, g[:2], True, 1)
    with pytest.raises(ValueError, match="triplet family"):
        K.triple_reduce(1, lj, 3.0, indptr, j_p, d, D, spec, 0, 0, 0, e, g, True, 1)
    with pytest.raises(ValueError, match="j_p"):
        K.pair_gradient_to_atoms(indptr, np.array([1, 5, 0], dtype=np.int32), g, np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="out_nc"):
        K.pair_gradient_to_atoms(indptr, j_p, g, np.zeros((3, 3)), 1)
    # a neighbour index out of range is never read: it matches no species
    K.pair_reduce(1, lj, 3.0, indptr, np.array([1, 99, 0], dtype=np.int32), d, D, spec, 0, 0, e, g, True, 2)
    assert np.isfinite(e).all()


# --------------------------------------------------------------------------------------------- evaluation plan


class _Nested(LocalPotential):
    """A potential overriding only ``compute`` that evaluates other potentials through the wrapper inside
    (re-entrant use of the evaluation buffers)."""

    def __init__(self, inner):
        super().__init__({}, max(p.cutoff for p in inner), tag=None)
        self.inner = inner

    def compute(self, nw, grad=False, n_threads=None):
        nw.evaluate(self.inner, stress=True)  # uses (and must not clobber) the per-pair scratch
        parts = [p.compute(nw, grad=grad, n_threads=n_threads) for p in self.inner]
        return sum(e for e, _ in parts), (sum(g for _, g in parts) if grad else None)


def _separate(nw, pots):
    """Energies, atom gradients and stress of ``pots`` from each potential's own ``compute`` + numpy."""
    indptr, j_p, _, D_pc, _ = pair_arrays(nw)
    i_p = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    e_n = np.zeros(len(indptr) - 1)
    g_nc = np.zeros((len(indptr) - 1, 3))
    virial = np.zeros((3, 3))
    for pot in pots:
        e, g_pc = pot.compute(nw, grad=True)
        e_n += e
        np.add.at(g_nc, j_p, g_pc)
        np.add.at(g_nc, i_p, -g_pc)
        virial += g_pc.T @ D_pc
    s = 0.5 * (virial + virial.T) / nw.volume
    return e_n, g_nc, np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def test_mixed_jobs_reused_buffers_and_reentrant_evaluation():
    big = _nw(diamond(5.43, (2, 2, 2), noise=0.1, rng=1))
    big.evaluate(_sw_pots(), stress=True)  # leaves non-zero data in the shared per-pair buffer
    species = np.array(["a", "b", "b", "a"] * 4)
    nw = _nw(diamond(5.43, (1, 1, 2), noise=0.1, rng=2, species=species))
    lj = P.lj_potential_family(epsilon=0.01, sigma=2.0, a=1.9, tag="a-b")
    b5x = P.behler5x_descriptor_family(a=3.8, eta1=0.02, eta2=0.3, cos_theta0=0.25, tag="b-a-b")
    sw = _sw_pots(SI2, SI3, "a-b", "a-b-b")
    cases = [[lj] + sw, sw + [b5x, lj], [b5x] + sw, [lj, b5x], sw[::-1], [_Nested(sw), lj], sw + [_Nested([lj, b5x])]]
    for pots in cases:
        res = nw.evaluate(pots, stress=True)
        e_n, g_nc, stress = _separate(nw, pots)
        np.testing.assert_allclose(res.energy_n, e_n, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(res.grad_nc, g_nc, rtol=0, atol=1e-11 * np.abs(g_nc).max())
        np.testing.assert_allclose(res.stress, stress, rtol=0, atol=1e-12 * np.abs(stress).max())
        np.testing.assert_allclose(nw.evaluate(pots).grad_nc, res.grad_nc, rtol=0, atol=0)
        np.testing.assert_allclose(nw.grad(pots), res.grad_nc, rtol=0, atol=0)
