"""The README's main job (``python -m miniff.quickstart``): wall time, and time per epoch on the bundled data.

The job runs in a subprocess with a temporary working directory (fit of a Behler–Parrinello NN potential
with forces on the bundled Cu/Pt EMT data, then a relaxation). The time per epoch is the median of the
per-epoch times of the job's own log (``fit.jsonl``, cumulative ``time`` per epoch; the first epoch is
the warm-up). The wall time of the whole job is one run per profile (it is minutes long). Check: the job
exits with 0, writes its outputs, and its training loss at the last epoch is below the first.

The job runs in the environment a user has: the harness's ``OMP_WAIT_POLICY=PASSIVE`` (set for the
side-by-side comparisons with MPI peers) is removed from the subprocess unless the user had set it. With
sleeping threads, the fit's thousands of small torch operations on 2 threads each pay a wake-up (25 s instead
of 15 s for the main job on 2 cores).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks._runner import Row
from benchmarks._timing import median

OUTPUTS = ("cupt-nn.pt", "fit.jsonl", "parity.png")


def _user_env():
    """The environment of the job: this one with ``MPLBACKEND=Agg``, and ``OMP_WAIT_POLICY`` as the user had
    it before ``python -m benchmarks`` set it (see the module docstring)."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    if "MINIFF_BENCH_USER_OMP_WAIT_POLICY" in env:
        user = env.pop("MINIFF_BENCH_USER_OMP_WAIT_POLICY")
        if user:
            env["OMP_WAIT_POLICY"] = user
        else:
            env.pop("OMP_WAIT_POLICY", None)
    return env

def run(settings, quick_job=False, epochs=None):
    """Rows ``workflow-main-job`` (wall time) and ``workflow-epoch`` (median time per epoch).

    Parameters
    ----------
    settings : TimingSettings
        ``settings.warmup`` epochs of the log are skipped.
    quick_job : bool
        Run the job's ``--quick`` variant.
    epochs : int or None
        ``--epochs`` of the job (None: its default).
    """
    import importlib.util

    if importlib.util.find_spec("miniff.quickstart") is None:
        return [Row("workflow-main-job", 0, "miniff", status="not available yet",
                    note="miniff.quickstart does not exist yet")], {}
    cmd = [sys.executable, "-m", "miniff.quickstart", "--no-progress", "--out", "out"]
    cmd += ["--quick"] if quick_job else []
    cmd += [] if epochs is None else ["--epochs", str(epochs)]
    label = " ".join(["python -m miniff.quickstart", *cmd[4:]])
    with tempfile.TemporaryDirectory(prefix="miniff-bench-workflow-") as workdir:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=3600, env=_user_env())
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return [Row("workflow-main-job", 0, "miniff", status="error",
                        note=f"{label} exited {proc.returncode}: {proc.stderr[-300:]}")], {}
        out = os.path.join(workdir, "out")
        missing = [f for f in OUTPUTS if not os.path.exists(os.path.join(out, f))]
        with open(os.path.join(out, "fit.jsonl")) as f:
            log = [json.loads(line) for line in f if line.strip()]
    epochs_log = [e for e in log if e.get("epoch", 0) >= 1]
    cumulative = [0.0] + [float(e["time"]) for e in epochs_log]
    per_epoch = [b - a for a, b in zip(cumulative[:-1], cumulative[1:], strict=True)][settings.warmup:]
    loss_ok = len(log) >= 2 and log[-1]["loss"] < log[0]["loss"]
    ok = not missing and loss_ok
    detail = (f"exit 0, outputs {'complete' if not missing else 'missing ' + ', '.join(missing)}, "
              f"loss {log[0]['loss']:.4g} -> {log[-1]['loss']:.4g}")
    rows = [Row("workflow-main-job", 0, "miniff", median_s=wall, runs_s=[wall], check=ok, check_detail=detail,
                threads="OpenMP (default) + torch", note=f"{label}: one run (wall time of the whole job)")]
    if per_epoch:
        rows.append(Row("workflow-epoch", 0, "miniff", median_s=median(per_epoch), runs_s=per_epoch, check=ok,
                        check_detail=detail, threads="OpenMP (default) + torch",
                        note=f"median of {len(per_epoch)} epochs of {label} (bundled Cu/Pt data, energies + forces)"))
    return rows, {}
