"""The code base passes ruff with the project's configuration (pyproject.toml)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is part of the test extra; not installed here")
def test_ruff_clean():
    out = subprocess.run(["ruff", "check", "miniff", "tests", "benchmarks", "setup.py"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
