"""Thread rules of the compiled core (``miniff._ext.threads``): explicit counts, OMP_NUM_THREADS, the automatic
serial choice for small work."""

import os

import pytest
from support import run_python

from miniff._ext import threads as _parallel


def test_effective_n_threads_rules():
    cores = _parallel.available_cores()
    with pytest.raises(ValueError, match="n_threads"):
        _parallel.effective_n_threads(0)
    with pytest.raises(TypeError, match="n_threads"):
        _parallel.effective_n_threads(1.5)
    if _parallel.openmp_enabled():
        assert _parallel.effective_n_threads(3) == 3
        assert _parallel.effective_n_threads(-1) == cores
        assert _parallel.effective_n_threads(-1000) == 1
    else:
        assert _parallel.effective_n_threads(3) == 1


def test_omp_num_threads_is_honoured(tmp_path):
    code = "from miniff._ext.threads import effective_n_threads as f, openmp_enabled as o; print(f() if o() else 1)"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = run_python(["-c", code], tmp_path, check=True, env=env)
    assert out.stdout.strip() == "1"


def test_auto_n_threads_serial_for_small_work_and_explicit_counts_honoured():
    default = _parallel.effective_n_threads()
    assert _parallel.auto_n_threads(None, 10) == 1
    assert _parallel.auto_n_threads(None, 10**9) == default
    if _parallel.openmp_enabled():
        assert _parallel.auto_n_threads(2, 10) == 2
    with pytest.raises(ValueError, match="n_threads"):
        _parallel.auto_n_threads(0, 10)
