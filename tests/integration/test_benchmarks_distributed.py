"""The ``distributed`` benchmark case runs on tiny sizes (1 and 2 ranks agree), its estimate follows the ring
all-reduce formula of docs/distributed.md, and its target is judged from the derived numbers (no timing asserted)."""

import sys

import pytest
from support import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))  # appended: an installed miniff still wins over the source tree

from benchmarks import _targets  # noqa: E402
from benchmarks._timing import Unavailable  # noqa: E402


def test_distributed_case_runs_on_tiny_sizes():
    from benchmarks import bench_distributed

    try:
        rows, derived = bench_distributed.run(None, n_structures=4, batch_size=2, epochs=1, ranks=(1, 2))
    except Unavailable as exc:
        pytest.skip(str(exc))
    assert [r.tool for r in rows] == ["miniff 1 rank", "miniff 2 ranks", "miniff 2 ranks, batch 2 per rank"]
    assert all(r.status == "ok" and r.check is True for r in rows)   # 2 ranks trained like 1 on the same batches
    assert derived["speedup_2_ranks_batch_per_rank"] > 0
    assert derived["allreduce_bytes"] % 8 == 0 and derived["batch_compute_s"] > 0
    assert derived["speedup_2_ranks"] > 0 and derived["allreduce_s_2_ranks_localhost"] > 0
    assert derived["cpu_speedup_2_ranks"] > 0   # CPU seconds of the busiest rank, 1 rank over 2


def test_estimate_is_the_ring_allreduce_formula():
    from benchmarks.bench_distributed import estimate_throughput

    # 8 ranks: 2 * 7 latency steps of 50 us, 2 * 7 / 8 * 35 200 bytes at 1.25 GB/s, a batch of 32 in 20 ms
    t_ar = 14 * 50e-6 + 1.75 * 35_200 / 1.25e9
    assert estimate_throughput(32, 0.02, 35_200, 8) == pytest.approx(32 / (0.02 / 8 + t_ar), rel=1e-12)
    assert estimate_throughput(32, 0.02, 35_200, 1) == pytest.approx(1600.0)


def test_distributed_target_is_judged_from_derived():
    judge = next(t[2] for t in _targets.TARGETS if t[0] == "23")
    def measured(per_rank, same_global, n=2000):
        return {"distributed": {"speedup_2_ranks_batch_per_rank": per_rank, "speedup_2_ranks": same_global,
                                "n_structures": n}}

    # judged in data-parallel use (the batch per rank); the same-global-batch speed-up is reported beside it
    text, verdict = judge([], measured(1.8, 1.4))
    assert verdict == "met" and "1.80x" in text and "1.40x at the same global batch" in text
    assert judge([], measured(1.6, 1.9))[1] == "not met"
    assert judge([], measured(1.9, 1.9, n=256))[1] == "not measured"
    assert judge([], {"distributed": {"speedup_2_ranks": 1.8, "n_structures": 2000}})[1] == "not measured"
    assert judge([], {})[1] == "not measured"
