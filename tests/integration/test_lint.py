"""The code base passes ruff with the project's configuration (pyproject.toml)."""

import shutil
import subprocess

import pytest
from support import REPO_ROOT


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is part of the test extra; not installed here")
def test_ruff_clean():
    out = subprocess.run(["ruff", "check", "miniff", "tests", "benchmarks", "setup.py"], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
