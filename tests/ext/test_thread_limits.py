"""n_threads is checked at the Python boundary of every entry point (never a crash in the compiled core)."""

import numpy as np
import pytest

import miniff.potentials as P
from miniff._ext.threads import MAX_N_THREADS, check_n_threads, effective_n_threads
from miniff.kernel import Cell, NeighborWrapper
from miniff.neighbors.search import build_pair_list

LJ = P.lj_potential_family(epsilon=1.0, sigma=1.0, a=2.5, tag="a-a")
B2 = P.behler2_descriptor_family(a=2.5, eta=1.0, r_sphere=0.0, tag="a-a")
BAD = [
    (100000, ValueError, "maximum of 1024"),
    (2**40, ValueError, "maximum of 1024"),
    (-(2**40), ValueError, "maximum of 1024"),
    (0, ValueError, "n_threads=0"),
    (2.0, TypeError, "must be an int"),
    ("4", TypeError, "must be an int"),
    (True, TypeError, "must be an int"),
]


def _cell():
    rng = np.random.default_rng(0)
    return Cell(np.eye(3) * 5.0, rng.random((6, 3)), ["a"] * 6)


def _entry_points(n_threads):
    nw = NeighborWrapper(_cell(), cutoff=2.6)
    yield lambda: NeighborWrapper(_cell(), cutoff=2.6, n_threads=n_threads)
    yield lambda: build_pair_list(np.zeros((2, 3)), np.eye(3) * 5, True, 2.0, n_threads=n_threads)
    yield lambda: nw.total(LJ, n_threads=n_threads)
    yield lambda: nw.evaluate(LJ, stress=True, n_threads=n_threads)
    yield lambda: LJ.compute(nw, grad=True, n_threads=n_threads)
    yield lambda: P.eval_descriptors(nw, [B2], grad=True, n_threads=n_threads)
    yield lambda: nw.relax(LJ, n_threads=n_threads)


@pytest.mark.parametrize("value, error, text", BAD, ids=[repr(b[0])[:12] for b in BAD])
def test_bad_thread_counts_are_refused_naming_the_argument(value, error, text):
    for call in _entry_points(value):
        with pytest.raises(error, match="n_threads") as info:
            call()
        assert text in str(info.value)


def test_the_wrapper_attribute_is_checked_when_used():
    nw = NeighborWrapper(_cell(), cutoff=2.6)
    nw.n_threads = 10**6
    with pytest.raises(ValueError, match=r"n_threads=1000000 exceeds the maximum of 1024 threads"):
        nw.total(LJ)


def test_accepted_counts():
    assert check_n_threads(None) is None
    assert check_n_threads(np.int64(3)) == 3 and type(check_n_threads(np.int64(3))) is int
    assert effective_n_threads(-1) >= 1
    nw = NeighborWrapper(_cell(), cutoff=2.6)
    reference = nw.total(LJ, n_threads=1)
    assert nw.total(LJ, n_threads=MAX_N_THREADS) == pytest.approx(reference, rel=1e-12)
    assert NeighborWrapper(_cell(), cutoff=2.6, n_threads=MAX_N_THREADS).pairs.n_pairs == nw.pairs.n_pairs
