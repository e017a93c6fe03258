"""The fitting examples of ``examples/`` (Amp's Pt/Cu set, PyFit-FF's silicon sets) in a shortened form.

The job files are run as written except for size (a few structures, a few epochs) and output paths; the full
runs are benchmarks (``python -m benchmarks.fitting_seeds``), not tests.  Errors are recomputed here with numpy
from the saved potentials' predictions.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from support import REPO_ROOT

ROOT = REPO_ROOT
EXAMPLES = ROOT / "examples"
AMP = EXAMPLES / "amp_ptcu"
PYFIT = EXAMPLES / "pyfit_si"
JOBS = [AMP / "fit_energy.yml", AMP / "fit_forces.yml", PYFIT / "fit_si.yml", PYFIT / "fit_si_full.yml"]

# energy-only data sets warn that they carry no forces; that is expected here


def _job(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _short_epochs(fit, max_iter=20):
    """Epochs of ``max_iter`` optimizer iterations (the jobs run up to 1000 per epoch)."""
    closure_kwargs = fit["prepare"].setdefault("closure_kwargs", {})
    closure_kwargs["optimizer_kwargs"] = dict(closure_kwargs.get("optimizer_kwargs") or {}, max_iter=max_iter)


def _shorten(description, root, out, n_epochs=3, **prepare):
    """Absolute data paths (``fn_cells_root``), outputs in ``out``, fewer and shorter epochs; no checkpoint."""
    fit = description["fit"]
    fit["prepare"]["fn_cells_root"] = str(root)
    fit["prepare"].pop("checkpoint", None)
    fit["prepare"].update(prepare)
    _short_epochs(fit)
    fit["run"].update(n_epochs=n_epochs, progress=False, save_fn=str(out / "pot.pt"), log_file=str(out / "fit.jsonl"))
    return description


def _read_log(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_files_are_valid(path):
    from miniff.ml_util import validate_description

    description = _job(path)
    validate_description(description, where=str(path))
    fn = description["fit"]["prepare"]["fn_cells"]
    for name in fn if isinstance(fn, list) else [fn]:
        assert (path.parent / name).is_file(), name


@pytest.mark.parametrize("name, data, n_train, n_valid, held_out",
                         [("fit_si.yml", "si_dataset.extxyz", 512, 120, 168),
                          ("fit_si_full.yml", "si_dataset_full.extxyz", 3115, 733, 431)])
def test_pyfit_split_holds_out_groups(name, data, n_train, n_valid, held_out):
    """The written split is PyFit-FF's: held-out groups dropped, the rest shuffled, n_valid validate."""
    import importlib.util

    import ase.io

    spec = importlib.util.spec_from_file_location("make_jobs", PYFIT / "make_jobs.py")
    make_jobs = importlib.util.module_from_spec(spec)
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in examples/
    try:
        spec.loader.exec_module(make_jobs)
    finally:
        sys.dont_write_bytecode = dont_write
    prepare = _job(PYFIT / name)["fit"]["prepare"]
    order, kept = prepare["cells_order"], prepare["cells_subset"]
    groups = [a.info["group"] for a in ase.io.read(PYFIT / data, index=":")]
    assert sorted(order) == list(range(len(groups)))
    assert kept == n_train + n_valid and prepare["test_set"] == n_valid
    assert len(groups) - kept == held_out
    assert not {groups[i] for i in order[:kept]} & set(make_jobs.HELD_OUT)
    assert {groups[i] for i in order[kept:]} <= set(make_jobs.HELD_OUT)
    assert order[:kept] != sorted(order[:kept])  # shuffled


def test_amp_energy_job_short(tmp_path):
    """Energy-only Amp job on 6 + 6 frames: the loss falls, the potentials and the log are written, and the
    logged validation RMSE is the one of the saved potentials' predictions."""
    import ase.io

    from miniff.calculator import MiniffCalculator
    from miniff.ml_util import exec_workflows

    description = _shorten(_job(AMP / "fit_energy.yml"), AMP, tmp_path, n_epochs=3, cells_index="0:6", test_set=6)
    wf = exec_workflows(description, rtn=False)
    log = _read_log(tmp_path / "fit.jsonl")
    assert [r["epoch"] for r in log] == list(range(len(log))) and len(log) >= 2
    assert log[-1]["loss"] < log[0]["loss"]
    assert log[-1]["energy_rmse"] < log[0]["energy_rmse"]
    assert sum(p.numel() for n in wf.nn for p in n.parameters()) == 886  # Amp's count: 2 x (441 + slope, intercept)
    assert (tmp_path / "pot.pt").is_file()

    frames = ase.io.read(AMP / "valid.extxyz", index="0:6")
    calc = MiniffCalculator(str(tmp_path / "pot.pt"))
    pred, ref = [], []
    for atoms in frames:
        ref.append(atoms.get_potential_energy() / len(atoms))
        atoms.calc = calc
        pred.append(atoms.get_potential_energy() / len(atoms))
    rmse = float(np.sqrt(np.mean((np.array(pred) - np.array(ref)) ** 2)))
    assert rmse == pytest.approx(log[-1]["energy_rmse_valid"], rel=1e-6, abs=1e-9)


def test_amp_forces_job_cli(tmp_path):
    """The force job through ``python -m miniff`` from a folder holding the data (relative paths), shortened."""
    for name in ("train.extxyz", "valid.extxyz"):
        shutil.copy(AMP / name, tmp_path / name)
    description = _job(AMP / "fit_forces.yml")
    fit = description["fit"]
    fit["prepare"].update(cells_index="0:4", test_set=4)
    _short_epochs(fit)
    fit["run"].update(n_epochs=2, progress=False)
    (tmp_path / "job.yml").write_text(yaml.safe_dump(description, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "miniff", "job.yml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in (fit["run"]["save_fn"], fit["run"]["log_file"], fit["prepare"]["checkpoint"]):
        assert (tmp_path / name).is_file(), name
    log = _read_log(tmp_path / fit["run"]["log_file"])
    assert log[-1]["loss"] < log[0]["loss"]
    assert "force_rmse" in log[-1] and "force_rmse_valid" in log[-1]


def test_pyfit_job_short(tmp_path):
    """The silicon job on the first 40 structures of its split order (never BCC): the loss falls."""
    from miniff.ml_util import exec_workflows

    description = _shorten(_job(PYFIT / "fit_si.yml"), PYFIT, tmp_path, n_epochs=3, cells_subset=40, test_set=8)
    wf = exec_workflows(description, rtn=False)
    assert "GRP-BCC-P-UNPERTURBED+ISO" not in {c.meta.get("group") for c in wf.cells}
    assert len(wf.datasets["learn"]) == 32 and len(wf.datasets["test"]) == 8
    assert sum(p.numel() for n in wf.nn for p in n.parameters()) == 785
    log = _read_log(tmp_path / "fit.jsonl")
    assert log[-1]["loss"] < log[0]["loss"]
    assert (tmp_path / "pot.pt").is_file()


def test_benchmark_fit_case_and_report(tmp_path):
    """The benchmark's fit driver on a short budget: the curve is recorded, the report and plot are written."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    from benchmarks.fitting_seeds import fit_case, write_report

    r = fit_case("pyfit_si", seed=0, budget=2.0, cells_subset=60, test_set=12, curve_points=5)
    assert r["n_train"] == 48 and r["n_valid"] == 12 and r["n_parameters"] == 785
    assert r["time_total"] >= r["time_prepare"] > 0
    assert r["curve"] and all(np.isfinite(p["valid_e"]) for p in r["curve"])
    assert r["curve"][-1]["train_e"] < r["curve"][0]["train_e"]
    report = write_report([r], tmp_path)
    assert "pyfit_si" in report.read_text()
    assert (tmp_path / "fitting_pyfit_si.png").stat().st_size > 0


def test_benchmark_summary_uses_amp_measured_here(tmp_path, monkeypatch):
    """With ``amp_peer_results.json`` the summary compares with Amp's measured seeds (median, mean, range computed
    here from the numbers written), and the table keeps the first TABLE_SEEDS seeds."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    import json

    from benchmarks import fitting_seeds

    peer = tmp_path / "amp_peer_results.json"
    runs = [{"seed": k, "forces": False, "valid_e": v, "train_e": 0.001, "time_train": 4.0, "time_fit": t,
             "fingerprints_cached": k > 0, "time_fingerprints": 2.0 if k == 0 else 0.01}
            for k, v, t in zip(range(3), [0.020, 0.040, 0.090], [4.0, 5.0, 6.0], strict=True)]
    runs.append({"seed": 0, "forces": True, "valid_e": 0.5, "valid_f": 16.0, "train_e": 0.02, "train_f": 0.03,
                 "time_train": 300.0})
    peer.write_text(json.dumps({"meta": {}, "runs": runs}))
    monkeypatch.setattr(fitting_seeds, "PEER_AMP", peer)
    assert [r["seed"] for r in fitting_seeds.peer_runs("amp_energy")] == [0, 1, 2]
    assert fitting_seeds.peer_runs("pyfit_si") == []
    mine = [{"case": "amp_energy", "seed": s, "budget": 30.0, "target": {"energy_rmse": 0.001}, "time_prepare": 0.1,
             "time_total": 0.3, "time_to_target": 0.25, "n_eval": 90, "n_parameters": 886, "train_e": 0.00099,
             "valid_e": v, "curve": []} for s, v in zip(range(7), [0.03, 0.05, 0.04, 0.06, 0.02, 0.07, 0.01],
                                                          strict=True)]
    text = fitting_seeds.write_report(mine, tmp_path).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| amp_energy | ")]
    assert len(rows) == fitting_seeds.TABLE_SEEDS + 2   # per-seed rows, the summary row, the time quantiles
    summary = rows[-2]
    assert "| 0–6 |" in summary
    assert "40, mean 40 (10–70) / 40, mean 50 (20–90) (3 seeds run here)" in summary
    assert fitting_seeds._seed_text([0, 1, 2, 5, 7, 8]) == "0–2, 5, 7–8"
    # Amp's time per seed = its fit + the fingerprints of the first (uncached) run: 6, 7, 8 s
    assert fitting_seeds.peer_times(fitting_seeds.peer_runs("amp_energy")) == [6.0, 7.0, 8.0]
    quantiles = [line for line in text.splitlines() if line.startswith("| amp_energy | 7, 3 |")]
    assert quantiles and "| 0.25 s / 7.0 s = 0.036 |" in quantiles[0] and "0.25 s / 8.0 s = 0.031 |" in quantiles[0]
