"""The compiled core loader (``miniff._ext``): without the compiled module, importing says how to build it."""

import os
import shutil
from pathlib import Path

from support import run_python

import miniff


def test_missing_compiled_core_explains_how_to_build(tmp_path):
    # Copy the pure-Python sources (no compiled module) and import from there.
    src = Path(miniff.__file__).parent
    dst = tmp_path / "miniff"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    code = "import miniff.kernel"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = run_python(["-c", code], tmp_path, env=env)
    assert out.returncode != 0
    assert "ImportError" in out.stderr
    assert "pip install" in out.stderr and "build_ext --inplace" in out.stderr
