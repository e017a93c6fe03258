"""The "Fit your own data" page runs, as a reader would run it, on a small data set."""

import os
import re
import subprocess
import sys
from pathlib import Path

from support import REPO_ROOT

import miniff

PAGE = REPO_ROOT / "docs" / "fit-your-data.md"


def test_fit_your_data_page_runs(tmp_path):
    text = PAGE.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5, "the page lost its examples"
    script = "\n".join(blocks)
    # the one change: 14 cells (4 held out, 10 fitted of which 1 validates) and 2 epochs
    small, n = re.subn(r"^N_CELLS, N_EPOCHS = .*$", "N_CELLS, N_EPOCHS = 14, 2", script, flags=re.M)
    assert n == 1
    small = small.replace("frames[-10:]", "frames[-4:]").replace("frames[:-10]", "frames[:-4]")
    (tmp_path / "page.py").write_text(small, encoding="utf-8")
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    # the miniff under test (installed, or the in-place build when the tests run from the source tree)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(miniff.__file__).resolve().parent.parent),
                                         env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("fit fit: 2 epochs") == 2   # the Python fit and the job's fit print their summaries
    assert "test test-direct: 4 structures" in out and "held out:" in out and "energy drift" in out
    assert "Traceback" not in proc.stderr
