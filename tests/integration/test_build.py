"""The installation reports itself: version, OpenMP build, ``python -m miniff info`` / ``version``."""

import io
import os

from support import run_python

import miniff
from miniff._ext import threads as _parallel
from miniff._show_versions import versions_info


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


def test_cli_info_and_version(tmp_path):
    # cwd outside the source tree, so that "-m" never picks up an unbuilt source tree
    out = run_python(["-m", "miniff", "info"], tmp_path, check=True)
    assert "built with OpenMP" in out.stdout
    out = run_python(["-m", "miniff", "version"], tmp_path, check=True)
    assert out.stdout.strip() == miniff.__version__
