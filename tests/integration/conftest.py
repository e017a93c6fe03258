"""The documentation build, shared by the docs and tutorial tests (built once per test session)."""

import os
import subprocess
import sys
from collections import namedtuple

import pytest
from support import REPO_ROOT

DocsBuild = namedtuple("DocsBuild", "html executed")


@pytest.fixture(scope="session")
def docs_build(tmp_path_factory):
    """``sphinx-build -W`` of ``docs/`` (executing the tutorials and the gallery) into a scratch folder.

    Returns the HTML folder and the folder of the executed notebooks (myst-nb's ``jupyter_execute``).
    """
    out = tmp_path_factory.mktemp("docs")
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the notebooks are small and the test machine is shared
    env.pop("MPLBACKEND", None)  # the notebook kernels draw inline figures
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(out / "doctrees"),
           str(REPO_ROOT / "docs"), str(out / "html")]
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    return DocsBuild(out / "html", out / "jupyter_execute")
