"""The installation reports itself: version, OpenMP build, thread rules, build errors."""

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import miniff
from miniff._ext import threads as _parallel
from miniff._show_versions import versions_info

CWD = str(Path(miniff.__file__).parent.parent)


def test_version_is_a_string():
    assert isinstance(miniff.__version__, str) and miniff.__version__[0].isdigit()


def test_openmp_build_reports_itself():
    # gcc with libgomp is on every machine this project builds on, so the build must have OpenMP
    # unless the developer opted out explicitly.
    if os.environ.get("MINIFF_NO_OPENMP"):
        assert not _parallel.openmp_enabled()
    else:
        assert _parallel.openmp_enabled()
    info = versions_info()
    assert info["openmp"] is _parallel.openmp_enabled()
    assert info["threads"] == _parallel.effective_n_threads()


def test_show_versions_prints_dependencies_and_threads():
    buf = io.StringIO()
    miniff.show_versions(file=buf)
    text = buf.getvalue()
    for word in ("miniff", "numpy", "torch", "ase", "built with OpenMP", "effective threads"):
        assert word in text


def _run(args, **kw):
    # cwd is the installed package's parent so that "-m" never picks up an unbuilt source tree.
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=CWD, **kw)


def test_cli_info_and_version():
    out = _run(["-m", "miniff", "info"], check=True)
    assert "built with OpenMP" in out.stdout
    out = _run(["-m", "miniff", "version"], check=True)
    assert out.stdout.strip() == miniff.__version__


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


def test_omp_num_threads_is_honoured():
    code = "from miniff._ext.threads import effective_n_threads as f, openmp_enabled as o; print(f() if o() else 1)"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = _run(["-c", code], check=True, env=env)
    assert out.stdout.strip() == "1"


def test_missing_compiled_core_explains_how_to_build(tmp_path):
    # Copy the pure-Python sources (no compiled module) and import from there.
    src = Path(miniff.__file__).parent
    dst = tmp_path / "miniff"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    code = "import miniff.kernel"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode != 0
    assert "ImportError" in out.stderr
    assert "pip install" in out.stderr and "build_ext --inplace" in out.stderr


def test_auto_n_threads_serial_for_small_work_and_explicit_counts_honoured():
    default = _parallel.effective_n_threads()
    assert _parallel.auto_n_threads(None, 10) == 1
    assert _parallel.auto_n_threads(None, 10**9) == default
    if _parallel.openmp_enabled():
        assert _parallel.auto_n_threads(2, 10) == 2
    with pytest.raises(ValueError, match="n_threads"):
        _parallel.auto_n_threads(0, 10)
