"""The ``store`` benchmark case runs on tiny sizes, and its targets are judged from rows (no timing asserted)."""

import sys

import pytest
from support import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))  # appended: an installed miniff still wins over the source tree

from benchmarks import _targets  # noqa: E402
from benchmarks._timing import Unavailable  # noqa: E402


def test_store_case_runs_on_tiny_sizes():
    from benchmarks import bench_store

    try:
        rows, derived = bench_store.run(None, n_structures=4, batch_sizes=[2], memory_counts=[], workers=(1,))
    except Unavailable as exc:
        pytest.skip(str(exc))
    cases = {r.case for r in rows}
    assert cases == {"store-prepare", "store-warm", "store-train"}
    assert all(r.status == "ok" and r.check is not False for r in rows)
    assert derived["warm_percent_of_cold"] > 0


def test_store_targets_are_judged_from_rows():
    def row(n, mb, tool="miniff store"):
        return {"case": "store-memory", "n_atoms": 64 * n, "tool": tool, "status": "ok", "peak_mem_mb": mb}

    judge = {t[1]: t[2] for t in _targets.TARGETS if t[0] == "22"}
    memory = next(f for k, f in judge.items() if "memory" in k)
    warm = next(f for k, f in judge.items() if "warm" in k)
    assert memory([row(1000, 240.0), row(10000, 250.0)], {})[1] == "met"
    assert memory([row(1000, 240.0), row(10000, 900.0)], {})[1] == "not met"
    assert memory([row(1000, 240.0)], {})[1] == "not measured"
    assert warm([], {"store": {"warm_percent_of_cold": 3.0}}) == ("3.0 %", "met")
    assert warm([], {"store": {"warm_percent_of_cold": 9.0}})[1] == "not met"
    assert warm([], {})[1] == "not measured"
