"""The neighbour search estimates the memory of every array before allocating and refuses clearly."""

import time

import numpy as np
import pytest

from miniff.kernel import Cell, NeighborWrapper
from miniff.neighbors.search import BYTES_PER_PAIR, build_pair_list, default_max_memory, estimate_search_bytes


def test_huge_cutoff_in_a_small_cell_is_refused_at_once():
    cell = Cell(np.eye(3) * 3.0, [[0.0, 0.0, 0.0]], ["a"])
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        NeighborWrapper(cell, cutoff=1000.0)
    assert time.perf_counter() - start < 5  # refused before building anything (not a timing test of speed)
    message = str(info.value)
    for text in ("cutoff=1000.0 Å", "GiB", "bin offsets", "max_memory"):
        assert text in message, message


@pytest.mark.parametrize("max_memory", [1e4, 1e5])
def test_the_limit_is_configurable(max_memory):
    cell = Cell(np.eye(3) * 3.0, [[0.0, 0.0, 0.0]], ["a"])
    with pytest.raises(ValueError, match=r"cutoff=20.0 Å would need about .* more than max_memory"):
        NeighborWrapper(cell, cutoff=20.0, max_memory=max_memory)
    nw = NeighborWrapper(cell, cutoff=20.0, max_memory=1e9)  # raising the limit builds the list
    assert nw.pairs.n_pairs > 1000
    with pytest.raises(ValueError, match="max_memory must be a positive number"):
        NeighborWrapper(cell, max_memory=0)
    with pytest.raises(ValueError, match="max_memory must be a positive number"):
        build_pair_list(np.zeros((1, 3)), np.eye(3), True, 1.0, max_memory=-1)
    with pytest.raises(TypeError, match="max_memory must be a positive number"):
        NeighborWrapper(cell, max_memory="abc")
    with pytest.raises(ValueError, match="max_pairs must be a positive number"):
        NeighborWrapper(cell, max_pairs=float("nan"))


@pytest.mark.parametrize("cutoff", [1e-300, 1e-9, 1e9, 1e300])
def test_cutoffs_outside_the_accepted_range(cutoff):
    cell = Cell(np.eye(3) * 3.0, [[0.0, 0.0, 0.0]], ["a"])
    with pytest.raises(ValueError, match=r"cutoff must lie between 1e-08 and 1e\+08 Å"):
        NeighborWrapper(cell, cutoff=cutoff)


def test_the_estimate_covers_the_pair_arrays_and_the_offsets(rng):
    # few atoms, many images: the offsets dominate; many atoms: the pairs dominate
    for n, length, cutoff in ((1, 2.0, 12.0), (40, 8.0, 5.0)):
        positions = rng.random((n, 3)) * length
        pairs = build_pair_list(positions, np.eye(3) * length, True, cutoff)
        actual = sum(a.nbytes for a in (pairs.j_p, pairs.S_pc, pairs.D_pc, pairs.d_p))
        assert actual == pairs.n_pairs * BYTES_PER_PAIR
        m = int(np.ceil(cutoff / length))  # at least one bin per cutoff along each axis
        estimate = estimate_search_bytes(n, pairs.n_pairs, (2 * m + 1) ** 3)
        assert estimate >= actual
    assert 0 < default_max_memory()


def test_a_dense_cluster_is_checked_against_the_exact_count(rng):
    # 400 atoms within 0.5 Å in a 100 Å box: the even-density estimate sees a few pairs, the count 159 600
    cell = Cell(np.eye(3) * 100.0, 0.5 + rng.random((400, 3)) / 200, ["a"] * 400)
    with pytest.raises(ValueError, match=r"cutoff=3.0 Å gives 159600 pairs for 400 atoms .* max_pairs=1e\+05"):
        NeighborWrapper(cell, cutoff=3.0, max_pairs=1e5)
    with pytest.raises(ValueError, match=r"159600 pairs .* max_memory=0.00\d+ GiB"):
        NeighborWrapper(cell, cutoff=3.0, max_memory=2e6)
    assert NeighborWrapper(cell, cutoff=3.0).pairs.n_pairs == 400 * 399
