"""Neighbour lists: NeighborWrapper and the compiled cell-list search against independent references."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import brute_force_pairs, brute_force_pairs_anywhere

from miniff.kernel import Cell, NeighborWrapper, PairList


def ours(nw):
    pairs = nw.pairs
    return pairs.i_p, pairs.j_p, pairs.S_pc, pairs.d_p


def assert_same_pairs(nw, ref, positions=None, context=""):
    i, j, s, d = ours(nw)
    ri, rj, rs, rd = ref
    assert len(i) == len(ri), f"{context}: {len(i)} pairs, reference {len(ri)}"
    np.testing.assert_array_equal(i, ri, err_msg=context)
    np.testing.assert_array_equal(j, rj, err_msg=context)
    np.testing.assert_array_equal(s, rs, err_msg=context)
    np.testing.assert_allclose(d, rd, rtol=1e-12, atol=1e-12, err_msg=context)
    positions = nw.cartesian_row if positions is None else positions
    D = positions[j] + s @ nw.vectors - positions[i]
    np.testing.assert_allclose(nw.pairs.D_pc, D, rtol=0, atol=1e-10, err_msg=context)


def make(vectors, frac, species=None, **kwargs):
    species = ["a"] * len(frac) if species is None else species
    return NeighborWrapper(Cell(vectors, frac, species), **kwargs)


# --- against brute force and ASE -------------------------------------------------------------------------------

vectors_strategy = st.lists(st.floats(-2.5, 2.5), min_size=9, max_size=9).map(
    lambda v: np.diag([4.0, 4.5, 5.0]) + np.reshape(v, (3, 3))
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    vectors=vectors_strategy,
    n=st.integers(1, 12),
    cutoff=st.floats(0.5, 9.0),
    pbc=st.lists(st.booleans(), min_size=3, max_size=3),
    seed=st.integers(0, 2**31),
    normalize=st.booleans(),
)
def test_random_triclinic_matches_brute_force(vectors, n, cutoff, pbc, seed, normalize):
    if abs(np.linalg.det(vectors)) < 5.0:
        return
    rng = np.random.default_rng(seed)
    frac = rng.random((n, 3)) * 1.6 - 0.3  # partly outside [0, 1)
    nw = make(vectors, frac, pbc=pbc, normalize=normalize, cutoff=cutoff)
    ref = brute_force_pairs_anywhere(vectors, nw.cartesian_row, cutoff, pbc)
    assert_same_pairs(nw, ref, context=f"pbc={pbc} rc={cutoff}")
    if not normalize:
        np.testing.assert_allclose(nw.cartesian_row, frac @ vectors, atol=1e-12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    vectors=vectors_strategy,
    x=st.lists(st.sampled_from([1, 3, 5]), min_size=3, max_size=3),
    cutoff=st.floats(1.0, 12.0),
    seed=st.integers(0, 2**31),
)
def test_explicit_replica_counts_match_filtered_brute_force(vectors, x, cutoff, seed):
    if abs(np.linalg.det(vectors)) < 5.0:
        return
    frac = np.random.default_rng(seed).random((4, 3))
    nw = make(vectors, frac, x=x, cutoff=cutoff)
    pbc = np.array(x) > 1
    assert nw.pbc.tolist() == pbc.tolist()
    i, j, s, d = brute_force_pairs_anywhere(vectors, nw.cartesian_row, cutoff, pbc)
    keep = np.all(np.abs(s) <= (np.array(x) - 1) // 2, axis=1)
    assert_same_pairs(nw, (i[keep], j[keep], s[keep], d[keep]), context=f"x={x} rc={cutoff}")


def test_matches_ase_neighbor_list(triclinic_box):
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    vectors, frac, species, pbc = triclinic_box
    for cutoff, pbc in [(3.0, (True, True, True)), (7.5, (True, False, True)), (11.0, (False, True, True))]:
        atoms = Atoms("H" * len(frac), scaled_positions=frac, cell=vectors, pbc=pbc)
        ai, aj, aS, ad = neighbor_list("ijSd", atoms, cutoff)
        order = np.lexsort((aS[:, 2], aS[:, 1], aS[:, 0], aj, ai))
        nw = make(vectors, frac, species, pbc=pbc, cutoff=cutoff)
        ref = (ai[order], aj[order], aS[order], ad[order])
        assert_same_pairs(nw, ref, positions=atoms.positions, context=f"ase rc={cutoff} pbc={pbc}")


@pytest.mark.parametrize("prune", [False, True], ids=["unpruned", "pruned"])
def test_cutoff_larger_than_twice_the_shortest_height(rng, monkeypatch, prune):
    if prune:  # small systems skip the bin-offset pruning; force it so that it is tested too
        monkeypatch.setattr("miniff.neighbors.search._PRUNE_MIN_WORK", 0)
    vectors = np.array([[2.0, 0.0, 0.0], [0.7, 2.2, 0.0], [0.3, -0.4, 2.5]])
    frac = rng.random((3, 3))
    cutoff = 6.1  # > 2x every plane spacing
    nw = make(vectors, frac, cutoff=cutoff)
    assert_same_pairs(nw, brute_force_pairs_anywhere(vectors, nw.cartesian_row, cutoff, True))


@pytest.mark.parametrize("prune", [False, True], ids=["unpruned", "pruned"])
def test_very_skewed_cell(rng, monkeypatch, prune):
    if prune:
        monkeypatch.setattr("miniff.neighbors.search._PRUNE_MIN_WORK", 0)
    vectors = np.array([[5.0, 0.0, 0.0], [4.6, 0.6, 0.0], [4.4, 0.3, 0.8]])
    frac = rng.random((5, 3))
    nw = make(vectors, frac, cutoff=2.2)
    assert_same_pairs(nw, brute_force_pairs_anywhere(vectors, nw.cartesian_row, 2.2, True))


@pytest.mark.parametrize("pbc", [(True, True, False), (True, False, False), (False, True, False)])
def test_slabs_and_wires(rng, pbc):
    vectors = np.array([[4.0, 0.0, 0.0], [1.0, 3.8, 0.0], [0.5, 0.2, 9.0]])
    frac = rng.random((10, 3))
    nw = make(vectors, frac, pbc=pbc, cutoff=4.5)
    assert nw.pbc.tolist() == list(pbc)
    assert_same_pairs(nw, brute_force_pairs_anywhere(vectors, nw.cartesian_row, 4.5, pbc))
    assert np.all(nw.pairs.S_pc[:, ~np.array(pbc)] == 0)


def test_non_periodic_cluster_is_not_wrapped(cluster):
    vectors, frac, species, pbc = cluster
    nw = make(vectors, frac, species, pbc=False, cutoff=3.0)
    np.testing.assert_allclose(nw.coordinates, frac)  # outside [0, 1) and kept
    positions = frac @ vectors
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    i, j = np.nonzero((d < 3.0) & ~np.eye(len(d), dtype=bool))
    np.testing.assert_array_equal(nw.pairs.i_p, i)
    np.testing.assert_array_equal(nw.pairs.j_p, j)
    assert np.all(nw.pairs.S_pc == 0)


def test_one_atom_cell_counts_fcc_shells():
    a = 4.0
    vectors = np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    nw = make(vectors, [[0.1, 0.2, 0.3]], cutoff=a * 1.01)
    # fcc shells: 12 at a/sqrt2, 6 at a, none in between
    assert nw.pairs.n_pairs == 18
    np.testing.assert_allclose(np.sort(nw.pairs.d_p), [a / np.sqrt(2)] * 12 + [a] * 6)


def test_atoms_on_box_faces():
    vectors = np.eye(3) * 3.0
    frac = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.5], [0.5, 1.0, 0.0], [-0.0, 0.5, 1.0]])
    for normalize in (True, False):
        nw = make(vectors, frac, cutoff=2.9, normalize=normalize)
        ref = brute_force_pairs_anywhere(vectors, nw.cartesian_row, 2.9, True)
        assert_same_pairs(nw, ref)
    assert np.all((nw.coordinates >= 0) & (nw.coordinates <= 1))
    wrapped = make(vectors, frac, cutoff=2.9)
    assert np.all((wrapped.coordinates >= 0) & (wrapped.coordinates < 1))


def test_seed_tutorial_box_alone(rng):
    """The seed tutorial: NeighborWrapper(cell, (1, 1, 1)) is the box alone."""
    r = rng.random((100, 3))
    a = 0.2
    cell = Cell(np.eye(3), r, ["a"] * len(r))
    nw = NeighborWrapper(cell, (1, 1, 1))
    nw.compute_distances(a)
    d = np.linalg.norm(r[:, None, :] - r[None, :, :], axis=-1)
    expected = int((d < a).sum()) - len(r)
    assert len(nw.sparse_pair_distances.data) == expected
    assert nw.sparse_pair_distances.shape == (100, 100)
    assert not nw.pbc.any()


def test_replica_counts_limit_images(rng):
    vectors = np.eye(3) * 2.0
    frac = rng.random((2, 3))
    nw = make(vectors, frac, x=(3, 1, 5), cutoff=5.0)
    assert nw.pbc.tolist() == [True, False, True]
    S = nw.pairs.S_pc
    assert np.abs(S[:, 0]).max() == 1 and np.all(S[:, 1] == 0) and np.abs(S[:, 2]).max() == 2
    ref = brute_force_pairs_anywhere(vectors, nw.cartesian_row, 5.0, (True, False, True))
    keep = (np.abs(ref[2][:, 0]) <= 1) & (np.abs(ref[2][:, 2]) <= 2)
    assert_same_pairs(nw, tuple(r[keep] for r in ref))
    assert nw.shift_vectors.shape == (15, 3)
    np.testing.assert_array_equal(nw.shift_vectors[7], 0)


def test_normalize_positional_bool_is_deprecated(fcc_ar):
    vectors, frac, species, _ = fcc_ar
    with pytest.warns(DeprecationWarning, match="normalize"):
        nw = NeighborWrapper(Cell(vectors, frac + 1.5, species), False, cutoff=3.0)
    np.testing.assert_allclose(nw.coordinates, frac + 1.5)
    assert nw.pbc.all()


# --- invariants ------------------------------------------------------------------------------------------------


def test_invariants(triclinic_box, rng):
    vectors, frac, species, _ = triclinic_box
    nw = make(vectors, frac, species, cutoff=4.0)
    pairs = nw.pairs
    assert isinstance(pairs, PairList)
    assert pairs.indptr.dtype == np.int64 and pairs.j_p.dtype == np.int32 and pairs.S_pc.dtype == np.int32
    assert pairs.D_pc.shape == (pairs.n_pairs, 3) and pairs.d_p.shape == (pairs.n_pairs,)
    np.testing.assert_allclose(np.linalg.norm(pairs.D_pc, axis=1), pairs.d_p, rtol=1e-14)
    assert np.all(pairs.d_p < 4.0) and np.all(pairs.d_p > 0)
    # symmetric: (i, j, S) present iff (j, i, -S)
    fwd = set(zip(pairs.i_p.tolist(), pairs.j_p.tolist(), map(tuple, pairs.S_pc.tolist()), strict=True))
    bwd = set(zip(pairs.j_p.tolist(), pairs.i_p.tolist(), map(tuple, (-pairs.S_pc).tolist()), strict=True))
    assert fwd == bwd
    np.testing.assert_array_equal(np.bincount(pairs.i_p, minlength=12), np.bincount(pairs.j_p, minlength=12))


def _distance_multiset(nw):
    pairs = nw.pairs
    return sorted(zip(pairs.i_p.tolist(), np.round(pairs.d_p, 9).tolist(), strict=True))


def test_translation_rotation_permutation_invariance(triclinic_box, rng):
    vectors, frac, species, _ = triclinic_box
    base = make(vectors, frac, species, cutoff=4.5)
    reference = _distance_multiset(base)
    # translation (wrapping happens inside)
    moved = make(vectors, frac + np.array([0.31, -0.77, 2.4]), species, cutoff=4.5)
    assert _distance_multiset(moved) == reference
    # rotation of the whole system
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotated = make(vectors @ q.T, frac, species, cutoff=4.5)
    assert _distance_multiset(rotated) == reference
    # permutation
    perm = rng.permutation(len(frac))
    permuted = make(vectors, frac[perm], species[perm], cutoff=4.5)
    got = sorted((int(perm[i]), d) for i, d in _distance_multiset(permuted))
    assert got == reference


def test_rows_sorted_and_deterministic(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    nw = make(vectors, frac, species, cutoff=6.0)
    pairs = nw.pairs
    key = np.lexsort((pairs.S_pc[:, 2], pairs.S_pc[:, 1], pairs.S_pc[:, 0], pairs.j_p, pairs.i_p))
    np.testing.assert_array_equal(key, np.arange(pairs.n_pairs))


@pytest.mark.parametrize("pbc", [True, (True, False, True), False])
def test_serial_equals_two_threads(rng, pbc):
    vectors = np.array([[9.0, 0.0, 0.0], [2.0, 8.5, 0.0], [-1.0, 1.5, 9.5]])
    frac = rng.random((400, 3)) * 1.2 - 0.1
    one = make(vectors, frac, pbc=pbc, cutoff=3.5, n_threads=1, normalize=False).pairs
    two = make(vectors, frac, pbc=pbc, cutoff=3.5, n_threads=2, normalize=False).pairs
    for name in ("indptr", "j_p", "S_pc"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    np.testing.assert_allclose(one.D_pc, two.D_pc, rtol=1e-12, atol=0)
    np.testing.assert_allclose(one.d_p, two.d_p, rtol=1e-12, atol=0)


def test_larger_system_against_ase(rng):
    from ase.build import bulk
    from ase.neighborlist import neighbor_list

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((3, 3, 3))
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    nw = NeighborWrapper(Cell.from_ase(atoms), cutoff=5.0, normalize=False)
    ai, aj, aS, ad = neighbor_list("ijSd", atoms, 5.0)
    order = np.lexsort((aS[:, 2], aS[:, 1], aS[:, 0], aj, ai))
    assert_same_pairs(nw, (ai[order], aj[order], aS[order], ad[order]), positions=atoms.positions)


# --- wrapper state ---------------------------------------------------------------------------------------------


def test_contract_attributes(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    cell = Cell(vectors, frac + 1.0, species, meta={"k": 1})
    nw = NeighborWrapper(cell, cutoff=3.0, n_threads=1)
    np.testing.assert_allclose(nw.cartesian_row, nw.cell.cartesian())
    np.testing.assert_allclose(nw.coordinates, frac, atol=1e-12)
    assert nw.pbc.dtype == bool and nw.pbc.shape == (3,)
    assert nw.cutoff == 3.0 and nw.n_threads == 1
    assert nw.species.tolist() == ["a", "b"] and nw.species_lookup == {"a": 0, "b": 1}
    assert nw.spec_encoded_row.dtype == np.int32
    np.testing.assert_array_equal(nw.species[nw.spec_encoded_row], species)
    assert nw.size == 12 and nw.volume == pytest.approx(abs(np.linalg.det(vectors)))
    assert nw.meta == {"k": 1}
    nw.meta["e"] = 2.0
    assert nw.cell.meta["e"] == 2.0 and "e" not in cell.meta
    np.testing.assert_array_equal(nw.vectors, vectors)


def test_set_cell_cartesian_keeps_row_consistent(triclinic_box, rng):
    vectors, frac, species, _ = triclinic_box
    nw = make(vectors, frac, species, cutoff=3.5)
    new = frac @ vectors + rng.normal(scale=0.3, size=(12, 3)) + vectors[0] * 1.0
    nw.set_cell_cartesian(new)
    np.testing.assert_allclose(nw.cartesian_row, nw.cell.cartesian())
    assert np.all((nw.coordinates >= 0) & (nw.coordinates < 1))
    assert_same_pairs(nw, brute_force_pairs_anywhere(vectors, nw.cartesian_row, 3.5, True))
    lattice_steps = (nw.cartesian_row - new) @ np.linalg.inv(vectors)
    np.testing.assert_allclose(lattice_steps, np.round(lattice_steps), atol=1e-9)
    nw.set_cell_cartesian(new, normalize=False)
    np.testing.assert_allclose(nw.cartesian_row, new)
    assert_same_pairs(nw, brute_force_pairs_anywhere(vectors, new, 3.5, True))


def test_set_cell_replaces_structure(triclinic_box, fcc_ar):
    vectors, frac, species, _ = triclinic_box
    nw = make(vectors, frac, species, cutoff=4.0)
    v2, f2, s2, _ = fcc_ar
    nw.set_cell(Cell(v2, f2 - 0.5, s2))
    assert nw.size == 4 and nw.species.tolist() == ["Ar"]
    np.testing.assert_allclose(nw.cartesian_row, nw.cell.cartesian())
    assert nw.pairs.n_pairs == 4 * 12  # rebuilt lazily with the same cutoff, fcc nearest neighbours


def test_refresh_pair_vectors(triclinic_box, rng):
    vectors, frac, species, _ = triclinic_box
    nw = make(vectors, frac, species, cutoff=3.0)
    before = nw.pairs
    moved = nw.cartesian_row + rng.normal(scale=0.05, size=(12, 3))
    nw.refresh_pair_vectors(moved)
    after = nw.pairs
    np.testing.assert_array_equal(after.j_p, before.j_p)
    np.testing.assert_array_equal(after.S_pc, before.S_pc)
    D = moved[after.j_p] + after.S_pc @ vectors - moved[after.i_p]
    np.testing.assert_allclose(after.D_pc, D, atol=1e-12)
    np.testing.assert_allclose(after.d_p, np.linalg.norm(D, axis=1), atol=1e-12)
    np.testing.assert_allclose(nw.cartesian_row, moved)
    with pytest.raises(ValueError, match="cartesian"):
        nw.refresh_pair_vectors(moved[:3])


def test_compute_distances_reuses_a_current_list_and_rebuilds_after_refresh(triclinic_box, rng):
    vectors, frac, species, _ = triclinic_box
    nw = make(vectors, frac, species, cutoff=3.0)
    first = nw.pairs
    assert nw.compute_distances() is first  # same positions and cutoff: nothing to redo
    assert nw.compute_distances(3.0) is first
    assert nw.compute_distances(2.5) is not first
    moved = nw.cartesian_row + rng.normal(scale=0.3, size=(12, 3))
    nw.refresh_pair_vectors(moved)
    fresh = nw.compute_distances(2.5)  # a refreshed (stale-topology) list must be searched again
    i, j, S, d = brute_force_pairs(vectors, moved, 2.5)
    assert fresh.n_pairs == len(d)
    np.testing.assert_allclose(np.sort(fresh.d_p), np.sort(d), atol=1e-12)


def test_compatibility_views(fcc_ar):
    vectors, frac, species, _ = fcc_ar
    nw = make(vectors, frac, species, cutoff=4.0)
    m = nw.sparse_pair_distances
    n_images = len(nw.shift_vectors)
    assert m.shape == (4, 4 * n_images)
    np.testing.assert_array_equal(nw.shift_vectors[n_images // 2], 0)
    assert nw.cartesian_col.shape == (4 * n_images, 3)
    rows, cols = m.nonzero()
    d = np.linalg.norm(nw.cartesian_col[cols] - nw.cartesian_row[rows], axis=1)
    np.testing.assert_allclose(m.data, d, rtol=1e-12)
    assert m.nnz == nw.pairs.n_pairs == 4 * 12
    assert m.indices.dtype == np.int32 and m.indptr.dtype == np.int32


def test_empty_and_no_pairs():
    nw = make(np.eye(3) * 10, np.zeros((0, 3)), [], cutoff=2.0)
    assert nw.pairs.n_pairs == 0 and nw.pairs.indptr.tolist() == [0]
    nw = make(np.eye(3) * 10, [[0.1, 0.1, 0.1], [0.6, 0.6, 0.6]], pbc=False, cutoff=1.0)
    assert nw.pairs.n_pairs == 0 and nw.pairs.indptr.tolist() == [0, 0, 0]


# --- bad input -------------------------------------------------------------------------------------------------


def test_bad_input(fcc_ar):
    vectors, frac, species, _ = fcc_ar
    cell = Cell(vectors, frac, species)
    with pytest.raises(ValueError, match="cutoff"):
        NeighborWrapper(cell, cutoff=0.0)
    with pytest.raises(ValueError, match="cutoff"):
        NeighborWrapper(cell, cutoff=-1.0)
    with pytest.raises(ValueError, match="cutoff"):
        NeighborWrapper(cell, cutoff=np.nan)
    with pytest.raises(ValueError, match="cutoff"):
        NeighborWrapper(cell, cutoff=np.inf)
    with pytest.raises(TypeError, match="cutoff"):
        NeighborWrapper(cell, cutoff="big")
    with pytest.raises(ValueError, match="no cutoff"):
        NeighborWrapper(cell).compute_distances()
    with pytest.raises(ValueError, match="no neighbour list"):
        NeighborWrapper(cell).pairs  # noqa: B018
    with pytest.raises(ValueError, match="x must"):
        NeighborWrapper(cell, (2, 1, 1))
    with pytest.raises(ValueError, match="x must"):
        NeighborWrapper(cell, (1, -1, 1))
    with pytest.raises(ValueError, match="x must"):
        NeighborWrapper(cell, (1, 1))
    with pytest.raises(ValueError, match="pbc"):
        NeighborWrapper(cell, pbc=(True, False))
    with pytest.raises(TypeError, match="cell"):
        NeighborWrapper(frac)
    with pytest.raises(ValueError, match="max_pairs"):
        NeighborWrapper(cell, max_pairs=0)
    nw = NeighborWrapper(cell, cutoff=3.0)
    with pytest.raises(ValueError, match="cartesian"):
        nw.set_cell_cartesian(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        nw.set_cell_cartesian(np.full((4, 3), np.nan))


def test_too_many_pairs_is_refused_before_allocating(fcc_ar):
    vectors, frac, species, _ = fcc_ar
    cell = Cell(vectors, frac, species)
    with pytest.raises(ValueError, match=r"cutoff=.* about .* pairs.*max_pairs"):
        NeighborWrapper(cell, cutoff=1000.0)
    with pytest.raises(ValueError, match="max_pairs"):
        NeighborWrapper(cell, cutoff=20.0, max_pairs=1000)
    assert NeighborWrapper(cell, cutoff=20.0, max_pairs=1e6).pairs.n_pairs > 1000


def test_build_pair_list_validation():
    from miniff.neighbors.search import build_pair_list

    with pytest.raises(ValueError, match="vectors"):
        build_pair_list(np.zeros((2, 3)), np.eye(2), True, 1.0)
    with pytest.raises(ValueError, match="vectors"):
        build_pair_list(np.zeros((2, 3)), np.full((3, 3), np.nan), True, 1.0)
    with pytest.raises(ValueError, match="singular"):
        build_pair_list(np.zeros((2, 3)), np.zeros((3, 3)), True, 1.0)
    with pytest.raises(ValueError, match="positions"):
        build_pair_list(np.zeros((2, 2)), np.eye(3), True, 1.0)
    with pytest.raises(ValueError, match="positions"):
        build_pair_list(np.array([[0, 0, np.inf]]), np.eye(3), True, 1.0)
    with pytest.raises(ValueError, match="image_limit"):
        build_pair_list(np.zeros((2, 3)), np.eye(3), True, 1.0, image_limit=(1, 1))
    with pytest.raises(ValueError, match="too far"):
        build_pair_list(np.array([[0, 0, 1e12]]), np.eye(3), True, 1.0)


def test_refresh_pair_vectors_serial_equals_two_threads(rng):
    vectors = np.array([[9.0, 0.0, 0.0], [2.0, 8.5, 0.0], [-1.0, 1.5, 9.5]])
    frac = rng.random((300, 3))
    moved = frac @ vectors + rng.normal(scale=0.1, size=(300, 3))
    out = []
    for threads in (1, 2):
        nw = make(vectors, frac, cutoff=3.0, n_threads=threads)
        nw.refresh_pair_vectors(moved)
        out.append(nw.pairs)
    np.testing.assert_allclose(out[0].D_pc, out[1].D_pc, rtol=1e-12, atol=0)
    np.testing.assert_allclose(out[0].d_p, out[1].d_p, rtol=1e-12, atol=0)


def test_rows_dot3_matches_numpy_for_any_thread_count(rng):
    from miniff._ext import kernel_module
    from miniff.util import rows_dot3

    a = rng.normal(size=(120_000, 3))
    m = rng.normal(size=(3, 3))
    np.testing.assert_allclose(rows_dot3(a, m), a @ m, rtol=1e-12, atol=1e-12)
    one, two = np.empty_like(a), np.empty_like(a)
    kernel_module.rows_dot3(a, m, one, 1)
    kernel_module.rows_dot3(a, m, two, 2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(rows_dot3(a[:, :2], m[:2]), a[:, :2] @ m[:2])  # other shapes: numpy


# --- cell-list internals: interior bins, count/fill passes, reused memory ---------------------------------------


def _pair_arrays(pairs):
    return {name: getattr(pairs, name).copy() for name in ("indptr", "j_p", "S_pc", "D_pc", "d_p")}


def _assert_identical(a, b, context=""):
    for name in ("indptr", "j_p", "S_pc", "D_pc", "d_p"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=f"{context}: {name}")


def _dense_triclinic(rng, n=900):
    """Many bins per axis (so that interior bins, boundary bins and wrapped columns all occur)."""
    vectors = np.array([[19.0, 0.0, 0.0], [3.0, 18.0, 0.0], [-2.0, 2.5, 20.0]])
    return vectors, rng.random((n, 3)) @ vectors


@pytest.mark.parametrize("pbc", [True, (True, False, True), (False, False, True)])
def test_many_bins_match_brute_force(rng, pbc):
    from miniff.neighbors.search import build_pair_list

    vectors, positions = _dense_triclinic(rng, 500)
    positions = positions + rng.normal(scale=3.0, size=positions.shape)  # some atoms outside the cell
    i, j, s, d = brute_force_pairs_anywhere(vectors, positions, 3.3, pbc)
    for threads in (1, 2):
        pairs = build_pair_list(positions, vectors, pbc, 3.3, n_threads=threads)
        np.testing.assert_array_equal(pairs.i_p, i)
        np.testing.assert_array_equal(pairs.j_p, j)
        np.testing.assert_array_equal(pairs.S_pc, s)
        np.testing.assert_allclose(pairs.d_p, d, rtol=1e-12, atol=1e-12)
        D = positions[j] + s @ vectors - positions[i]
        np.testing.assert_allclose(pairs.D_pc, D, rtol=0, atol=1e-10)
        assert np.all(pairs.d_p < 3.3)


@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("image_limit", [None, (1, 0, 2)])
def test_many_bins_serial_equals_two_threads(rng, sort, image_limit):
    from miniff.neighbors.search import build_pair_list

    vectors, positions = _dense_triclinic(rng, 1500)
    one = build_pair_list(positions, vectors, True, 4.0, n_threads=1, sort=sort, image_limit=image_limit)
    two = build_pair_list(positions, vectors, True, 4.0, n_threads=2, sort=sort, image_limit=image_limit)
    _assert_identical(_pair_arrays(one), _pair_arrays(two), f"sort={sort} limit={image_limit}")
    if not sort:  # the same pairs as the sorted list, row by row
        ref = build_pair_list(positions, vectors, True, 4.0, n_threads=1, image_limit=image_limit)
        np.testing.assert_array_equal(one.indptr, ref.indptr)
        key = np.lexsort((one.S_pc[:, 2], one.S_pc[:, 1], one.S_pc[:, 0], one.j_p, one.i_p))
        np.testing.assert_array_equal(one.j_p[key], ref.j_p)
        np.testing.assert_array_equal(one.S_pc[key], ref.S_pc)
        np.testing.assert_array_equal(one.D_pc[key], ref.D_pc)


def test_exact_count_pass_gives_the_same_list(rng, monkeypatch):
    """The fallback count (the fill loop itself) and the vectorised count agree."""
    from miniff.neighbors.search import build_pair_list

    vectors, positions = _dense_triclinic(rng)
    fast = _pair_arrays(build_pair_list(positions, vectors, True, 3.7, n_threads=2))
    monkeypatch.setattr("miniff.neighbors.search._EXACT_COUNT", True)
    exact = _pair_arrays(build_pair_list(positions, vectors, True, 3.7, n_threads=2))
    _assert_identical(fast, exact, "exact count")


def test_reused_memory_gives_the_same_lists(rng):
    """Scratch and output blocks are reused between calls of different sizes; live lists stay intact."""
    from miniff._ext import kernel_module
    from miniff.neighbors.search import build_pair_list

    big_vectors, big_positions = _dense_triclinic(rng, 1500)
    small_vectors = np.array([[9.0, 0.0, 0.0], [2.0, 8.5, 0.0], [-1.0, 1.5, 9.5]])
    small_positions = rng.random((200, 3)) @ small_vectors
    cases = [(big_positions, big_vectors, 4.0), (small_positions, small_vectors, 3.0),
             (big_positions, big_vectors, 3.0), (small_positions, small_vectors, 5.5)]
    limit = kernel_module.neighbor_pool()[1]
    try:
        kernel_module.neighbor_pool(limit=0)  # fresh memory for every call
        fresh = [_pair_arrays(build_pair_list(p, v, True, rc, n_threads=2)) for p, v, rc in cases]
        kernel_module.neighbor_pool(limit=limit)
        kept = []
        for _ in range(2):
            for (p, v, rc), ref in zip(cases, fresh, strict=True):
                pairs = build_pair_list(p, v, True, rc, n_threads=2)
                _assert_identical(_pair_arrays(pairs), ref, f"N={len(p)} rc={rc}")
                kept.append((pairs, ref))
            del pairs
            kept = kept[-1:]  # drop all lists but one: their blocks go back to the pool
        for pairs, ref in kept:  # a list that stayed alive was never overwritten
            _assert_identical(_pair_arrays(pairs), ref, "kept list")
        assert kernel_module.neighbor_pool()[0] > 0
    finally:
        kernel_module.neighbor_pool(limit=limit)
    assert kernel_module.neighbor_pool(clear=True)[0] == 0


def test_concurrent_searches_from_python_threads(rng):
    """Searches running at the same time (the GIL is released) never share scratch memory."""
    from concurrent.futures import ThreadPoolExecutor

    from miniff.neighbors.search import build_pair_list

    systems = [_dense_triclinic(np.random.default_rng(seed), 600 + 300 * seed) for seed in range(4)]
    refs = [_pair_arrays(build_pair_list(p, v, True, 3.5, n_threads=1)) for v, p in systems]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            results = list(pool.map(lambda vp: _pair_arrays(build_pair_list(vp[1], vp[0], True, 3.5, n_threads=1)),
                                    systems))
            for got, ref in zip(results, refs, strict=True):
                _assert_identical(got, ref, "threads")


def test_pair_arrays_are_writable_and_independent(fcc_ar):
    vectors, frac, species, _ = fcc_ar
    pairs = make(vectors, frac, species, cutoff=6.0).pairs
    for name in ("j_p", "S_pc", "D_pc", "d_p"):
        arr = getattr(pairs, name)
        assert arr.flags.writeable and arr.flags.c_contiguous, name
    assert pairs.j_p.dtype == np.int32 and pairs.S_pc.dtype == np.int32 and pairs.indptr.dtype == np.int64
    before = pairs.D_pc.copy()
    pairs.d_p[:] = -1.0
    pairs.S_pc[:] = 7
    np.testing.assert_array_equal(pairs.D_pc, before)


def test_pair_list_memory_is_traced(rng):
    """The pair arrays live outside numpy's allocator; tracemalloc still accounts for them."""
    import tracemalloc

    from miniff._ext import kernel_module
    from miniff.neighbors.search import build_pair_list

    vectors, positions = _dense_triclinic(rng)
    kernel_module.neighbor_pool(clear=True)
    tracemalloc.start()
    try:
        pairs = build_pair_list(positions, vectors, True, 3.7, n_threads=1)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current >= 48 * pairs.n_pairs


def test_compiled_search_rejects_inconsistent_arguments():
    from miniff._ext import kernel_module

    n = 4
    frac, xyz = np.zeros((n, 3)), np.zeros((n, 3))
    wrap = np.zeros((n, 3), dtype=np.int32)
    ok = dict(n_bins=np.ones(3, dtype=np.intc), work=np.zeros(kernel_module.neighbor_work_bytes(n, 1), np.uint8))

    def search(n_bins=ok["n_bins"], work=ok["work"], xyz=xyz):
        return kernel_module.neighbor_search(frac, xyz, wrap, np.eye(3), n_bins, np.ones(3, dtype=np.intc),
                                             np.zeros(3), np.ones(3), np.zeros((1, 3), dtype=np.intc),
                                             np.full(3, -1, dtype=np.intc), 1.0, 1, True, work)

    indptr, j_p, _, _, d_p = search()  # four atoms at one point: every other atom is a neighbour at d = 0
    assert indptr.tolist() == [0, 3, 6, 9, 12] and j_p[:3].tolist() == [1, 2, 3] and not d_p.any()
    with pytest.raises(ValueError, match="work buffer"):
        search(work=np.zeros(8, np.uint8))
    with pytest.raises(ValueError, match="inconsistent"):
        search(n_bins=np.zeros(3, dtype=np.intc))
    with pytest.raises(ValueError, match="inconsistent"):
        search(xyz=np.zeros((n + 1, 3)))
    with pytest.raises(ValueError, match="inconsistent"):
        kernel_module.neighbor_prepare(xyz, np.eye(3), np.eye(3), np.ones(3, dtype=np.intc), np.zeros((n - 1, 3)),
                                       xyz.copy(), wrap, np.zeros(6), 1)
