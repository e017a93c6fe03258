"""eval_descriptors (batched descriptors, Contract 3): values and per-pair Jacobian against one-by-one
evaluation and central finite differences, thread independence, chunking, and smoothness at the cutoff."""

import numpy as np
import pytest
from support import dense_descriptor_jacobian, make_nw

import miniff.potentials as P
from miniff.numerical import numerical_descriptor_gradient

A = 3.7


def _descriptors():
    """A mix of batchable groups (shared cutoff/tag) and one-by-one families."""
    out = [P.behler2_descriptor_family(a=A, eta=2.0, r_sphere=r, tag="a-b") for r in (1.0, 2.0, 3.0)]
    out += [P.behler2_descriptor_family(a=3.0, eta=0.5, r_sphere=0.0, tag="a-b"),
            P.sigmoid_descriptor_family(a=A, dr=0.3, r0=2.0, tag="b-b")]
    out += [P.behler5_descriptor_family(a=A, eta=eta, l=l, zeta=z, tag="a-a-a")
            for eta in (0.005, 0.05) for z in (1, 4) for l in (-1, 1)]
    out += [P.behler5_descriptor_family(a=A, eta=0.1, l=1, zeta=2.5, epsilon=0.5, tag="a-b-a"),
            P.behler4_descriptor_family(a=A, eta=0.02, l=1, zeta=2, tag="b-a-b"),
            P.behler4_descriptor_family(a=A, eta=0.05, l=-1, zeta=1, tag="b-a-b"),
            P.behler5x_descriptor_family(a=A, eta1=0.01, eta2=0.2, cos_theta0=0.1, tag="a-b-b"),
            P.general_pair_potential_family(f=lambda r: np.cos(r), df_dr=lambda r: -np.sin(r), a=2.5, tag="b-a")]
    return out


@pytest.fixture
def box(rng):
    vectors = np.array([[6.0, 0.0, 0.0], [0.8, 5.7, 0.0], [-0.6, 0.9, 6.2]])
    return vectors, rng.random((14, 3)), np.array(["a", "b"] * 7), (True, True, True)


def test_values_and_jacobian_match_one_by_one(box):
    nw = make_nw(box, 4.0)
    descriptors = _descriptors()
    values, jac = P.eval_descriptors(nw, descriptors, grad=True)
    assert values.shape == (14, len(descriptors)) and jac.shape == (nw.pairs.n_pairs, len(descriptors), 3)
    for f, d in enumerate(descriptors):
        e_n, g_pc = d.compute(nw, grad=True)
        np.testing.assert_allclose(values[:, f], nw.eval(d, "kernel"), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(jac[:, f, :], g_pc, rtol=1e-12, atol=1e-14)
    values_only, none = P.eval_descriptors(nw, descriptors)
    assert none is None
    np.testing.assert_array_equal(values_only, values)


def test_jacobian_matches_central_differences(box):
    nw = make_nw(box, 4.0)
    descriptors = _descriptors()
    values, jac = P.eval_descriptors(nw, descriptors, grad=True)
    dense = dense_descriptor_jacobian(nw, jac)
    numerical = numerical_descriptor_gradient(nw, descriptors, eps=1e-5)
    np.testing.assert_allclose(dense, numerical, rtol=0, atol=1e-7 * np.abs(dense).max())


def test_threads_give_identical_descriptors(rng):
    vectors = np.eye(3) * 9.0
    system = vectors, rng.random((80, 3)), np.array(["a", "b"] * 40), (True, True, True)
    nw = make_nw(system, 4.0)
    v1, j1 = P.eval_descriptors(nw, _descriptors(), grad=True, n_threads=1)
    v2, j2 = P.eval_descriptors(nw, _descriptors(), grad=True, n_threads=2)
    np.testing.assert_allclose(v2, v1, rtol=1e-12, atol=0)
    np.testing.assert_allclose(j2, j1, rtol=1e-12, atol=0)


def test_more_than_64_distinct_parameters_are_chunked(box):
    nw = make_nw(box, 4.0)
    descriptors = [P.behler5_descriptor_family(a=A, eta=0.001 * k, l=1, zeta=1 + k % 70, tag="a-a-b")
                   for k in range(70)]
    values, jac = P.eval_descriptors(nw, descriptors, grad=True)
    for f in (0, 63, 64, 69):
        e_n, g_pc = descriptors[f].compute(nw, grad=True)
        np.testing.assert_allclose(values[:, f], e_n, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(jac[:, f], g_pc, rtol=1e-12, atol=1e-300)


def test_missing_species_and_bad_input(box):
    nw = make_nw(box, 4.0)
    d = [P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=0.0, tag="a-Zr"),
         P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=0.0, tag="a-b")]
    with pytest.raises(KeyError, match="'Zr'"):
        P.eval_descriptors(nw, d)
    values, _ = P.eval_descriptors(nw, d, ignore_missing_species=True)
    np.testing.assert_array_equal(values[:, 0], 0)
    assert np.abs(values[:, 1]).max() > 0
    with pytest.raises(ValueError, match="exceeds the neighbour list cutoff"):
        P.eval_descriptors(nw, [P.behler2_descriptor_family(a=6.0, eta=1.0, r_sphere=0.0, tag="a-b")])
    with pytest.raises(TypeError, match=r"descriptors\[0\] must be a LocalPotential"):
        P.eval_descriptors(nw, ["behler"])


@pytest.mark.parametrize("descriptor", [
    P.behler2_descriptor_family(a=A, eta=0.3, r_sphere=1.0, tag="x-x"),
    P.sigmoid_descriptor_family(a=A, dr=0.5, r0=1.0, tag="x-x"),
    P.behler4_descriptor_family(a=A, eta=0.01, l=1, zeta=2, tag="x-x-x"),
    P.behler5_descriptor_family(a=A, eta=0.01, l=1, zeta=2, tag="x-x-x"),
    P.behler5x_descriptor_family(a=A, eta1=0.01, eta2=0.1, cos_theta0=-0.5, tag="x-x-x"),
])
def test_descriptors_are_smooth_at_the_cutoff(descriptor):
    """Value and slope of a neighbour's contribution vanish as its distance approaches the cutoff."""
    vectors = np.eye(3) * 20.0

    def probe(r):
        # atom 0 at the origin of a non-periodic box, atom 1 close by, atom 2 at distance r along z
        cart = np.array([[5.0, 5.0, 5.0], [6.2, 5.3, 5.0], [5.0, 5.0, 5.0 + r]])
        nw = make_nw((vectors, cart / 20.0, np.array(["x"] * 3), (False,) * 3), 4.0)
        values, jac = P.eval_descriptors(nw, [descriptor], grad=True)
        return values[0, 0], np.abs(jac).max()

    inside = probe(A - 0.2)
    for delta in (1e-3, 1e-4):
        v_near, _ = probe(A - delta)
        v_far, _ = probe(A + 1e-9)
        # value: continuous, the jump vanishes like delta^2 (cosine cutoff)
        assert abs(v_near - v_far) <= 50 * delta**2 * (1 + abs(inside[0]))
    # slope: the derivative by the far atom's distance vanishes like delta
    h = 1e-7
    slope = (probe(A - 1e-4 + h)[0] - probe(A - 1e-4 - h)[0]) / (2 * h)
    assert abs(slope) < 1e-2 * (1 + abs(inside[0]))


@pytest.mark.parametrize("tag", ["a-a-a", "a-b-a", "b-a-a"])
def test_moment_and_triplet_kernels_agree(box, tag):
    """Integer-zeta Behler 5 goes through angular moments; the triplet loop must give the same numbers."""
    nw = make_nw(box, 4.0)
    descriptors = [P.behler5_descriptor_family(a=A, eta=eta, l=l, zeta=z, epsilon=0.8, tag=tag)
                   for eta in (0.0, 0.03, 0.3) for l in (-1.0, 0.4, 1.0) for z in (0, 1, 3, 8)]
    values, jac = P.eval_descriptors(nw, descriptors, grad=True)
    backend = descriptors[0].family.backend
    values_t = np.zeros_like(values)
    jac_t = np.zeros_like(jac)
    items = list(enumerate(descriptors))
    codes = descriptors[0].species_codes(nw)
    from miniff.potentials.base import pair_arrays

    backend._batch_triplets(items, codes, A, pair_arrays(nw, A), values_t, jac_t.reshape(len(jac), -1), True, 1)
    scale = np.abs(values_t).max(axis=0) + 1e-300
    np.testing.assert_allclose(values / scale, values_t / scale, rtol=0, atol=1e-12)
    jscale = np.abs(jac_t).max(axis=(0, 2)) + 1e-300
    np.testing.assert_allclose(jac / jscale[:, None], jac_t / jscale[:, None], rtol=0, atol=1e-11)


def test_moment_kernel_with_many_neighbours_per_atom(rng):
    """About 75 neighbours per atom: the moment kernel's first pass works through several chunks of pairs (32
    per chunk) and must agree with the triplet loop; three species so that some neighbours are in neither
    neighbour species of a tag. The threads give identical results."""
    vectors = np.eye(3) * 9.0
    system = vectors, rng.random((80, 3)), np.array(["a", "b", "c", "a"] * 20), (True, True, True)
    cut = 5.5
    nw = make_nw(system, cut)
    assert np.diff(nw.pairs.indptr).min() > 64
    from miniff.potentials.base import pair_arrays

    for tag in ("a-a-a", "a-b-c", "b-a-a"):
        descriptors = [P.behler5_descriptor_family(a=cut, eta=eta, l=l, zeta=z, tag=tag)
                       for eta in (0.01, 0.2) for l in (-1.0, 1.0) for z in (1, 4)]
        values, jac = P.eval_descriptors(nw, descriptors, grad=True, n_threads=1)
        v2, j2 = P.eval_descriptors(nw, descriptors, grad=True, n_threads=2)
        np.testing.assert_array_equal(v2, values)
        np.testing.assert_array_equal(j2, jac)
        values_t = np.zeros_like(values)
        jac_t = np.zeros_like(jac)
        backend = descriptors[0].family.backend
        backend._batch_triplets(list(enumerate(descriptors)), descriptors[0].species_codes(nw), cut,
                                pair_arrays(nw, cut), values_t, jac_t.reshape(len(jac), -1), True, 1)
        assert np.abs(values_t).max() > 0
        scale = np.abs(values_t).max(axis=0) + 1e-300
        np.testing.assert_allclose(values / scale, values_t / scale, rtol=0, atol=1e-12)
        jscale = np.abs(jac_t).max(axis=(0, 2)) + 1e-300
        np.testing.assert_allclose(jac / jscale[:, None], jac_t / jscale[:, None], rtol=0, atol=1e-11)


def test_behler2_values_equal_numpy_over_the_whole_cutoff_range(rng):
    """The compiled exp and cosine cutoff (written without library calls so that the loops vectorise) against
    numpy's exp and cos, for distances from 0.4 Å to the cutoff and exponents down to the kernels' floor."""
    vectors = np.eye(3) * 8.0
    system = vectors, rng.random((40, 3)), np.array(["a"] * 40), (False, False, False)
    cut = 6.0
    nw = make_nw(system, cut)
    pairs = nw.pairs
    params = [(0.0, 0.0), (0.5, 1.0), (2.0, 3.3), (30.0, 0.0)]
    descriptors = [P.behler2_descriptor_family(a=cut, eta=eta, r_sphere=rs, tag="a-a") for eta, rs in params]
    values, jac = P.eval_descriptors(nw, descriptors, grad=True)
    r = np.asarray(pairs.d_p)
    D = np.asarray(pairs.D_pc).reshape(-1, 3)
    i_p = np.asarray(pairs.i_p)
    inside = r < cut
    assert inside.sum() > 100 and r[inside].max() > 0.99 * cut
    fc = np.where(inside, 0.5 * (1.0 + np.cos(np.pi * r / cut)), 0.0)
    dfc = np.where(inside, -0.5 * np.pi / cut * np.sin(np.pi * r / cut), 0.0)
    for f, (eta, rs) in enumerate(params):
        x = -eta * (r - rs) ** 2
        ex = np.where(x < -700.0, 0.0, np.exp(x))
        expected = np.bincount(i_p, ex * fc, minlength=len(values))
        np.testing.assert_allclose(values[:, f], expected, rtol=1e-13, atol=1e-300)
        dv = ex * (dfc - 2.0 * eta * (r - rs) * fc)
        g_pc = (dv / r)[:, None] * D
        # fc is 1 + cos(...) near the cutoff: numpy's value there has an absolute error of ~1e-16
        np.testing.assert_allclose(jac[:, f, :], g_pc, rtol=1e-12, atol=1e-15 * max(1.0, np.abs(g_pc).max()))


def test_no_neighbour_list_is_a_clear_error():
    from miniff.kernel import Cell, NeighborWrapper

    nw = NeighborWrapper(Cell(np.eye(3) * 5, [[0, 0, 0], [0.5, 0.5, 0.5]], ["a", "a"]))
    with pytest.raises(ValueError, match="compute_distances"):
        P.eval_descriptors(nw, [P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=0.0, tag="a-a")])
    with pytest.raises(ValueError, match="compute_distances"):
        nw.total(P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=0.0, tag="a-a"))


def test_pooled_jacobian_blocks_are_reused_and_zeroed(rng):
    """The Jacobian lives in a pooled block that the next call reuses (``kernel_module.pooled_empty``): blocks
    left full of NaN by dropped Jacobians give exactly the results of fresh memory, for calls of different sizes,
    whichever sweep zeroes the rows (of every centre species): the fused Behler-2 + moment sweep, the Behler-2
    sweep alone or a zeroing sweep of its own."""
    from miniff._ext import kernel_module

    systems = [make_nw((np.eye(3) * edge, rng.random((n, 3)), np.array(["a", "b"] * (n // 2)), (True,) * 3), 4.0)
               for n, edge in ((80, 9.0), (50, 8.0), (30, 7.0), (80, 9.0))]
    # Behler 2 fused with the moment kernel's sweep; no Behler-2 / sigmoid group; Behler 2 with an angular batch
    # that has no moment chunk (Behler 4 triplets)
    sets = [_descriptors(), _descriptors()[5:], _descriptors()[:3] + _descriptors()[14:16]]
    limit = kernel_module.neighbor_pool()[1]
    try:
        kernel_module.neighbor_pool(limit=0)  # the references in fresh memory
        reference = [[P.eval_descriptors(nw, d, grad=True) for nw in systems] for d in sets]
        kernel_module.neighbor_pool(limit=limit, clear=True)
        reused, last = 0, None
        for k, descriptors in enumerate(sets):
            for m, nw in enumerate(systems):
                values, jac = P.eval_descriptors(nw, descriptors, grad=True)
                np.testing.assert_array_equal(values, reference[k][m][0])
                np.testing.assert_array_equal(jac, reference[k][m][1])
                reused += jac.ctypes.data == last
                last = jac.ctypes.data
                jac.fill(np.nan)
                del jac
        assert reused >= 2  # a dropped block backed the next Jacobian
    finally:
        kernel_module.neighbor_pool(limit=limit)
