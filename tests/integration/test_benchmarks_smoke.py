"""The benchmark harness (``benchmarks/``, not part of the package) runs on tiny sizes and writes valid JSON.

Timings are never asserted; agreement between tools and the layout of ``results.json`` are.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import REPO_ROOT

ROOT = REPO_ROOT
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # appended: an installed miniff still wins over the source tree

from benchmarks import _flops, _report, _structures, _targets, _timing  # noqa: E402
from benchmarks._checks import loglog_exponent  # noqa: E402
from benchmarks._runner import Row, run_comparison  # noqa: E402
from benchmarks.bench_lammps import read_sw_file  # noqa: E402

ROW_FIELDS = {
    "case": str, "n_atoms": int, "tool": str, "status": str, "median_s": (float, type(None)),
    "ratio": (float, type(None)), "peak_mem_mb": (float, type(None)), "python_peak_mb": (float, type(None)),
    "check": (bool, type(None)), "check_detail": str, "threads": str, "runs_s": list, "note": str,
}
STATUSES = {"ok", "missing", "not available yet", "skipped", "error"}


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """Run ``python -m benchmarks run --profile smoke --only neighbors,lammps`` once, outside the tree."""
    out_dir = tmp_path_factory.mktemp("bench")
    output = out_dir / "results.json"
    code = (f"import sys; sys.path.append({str(ROOT)!r}); from benchmarks.__main__ import main; "
            f"sys.exit(main(['run', '--profile', 'smoke', '--only', 'neighbors,lammps', '--output', {str(output)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=out_dir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(output.read_text()), proc.stdout


def test_smoke_run_writes_documented_json(smoke_results):
    results, stdout = smoke_results
    assert results["schema"] == 1 and results["profile"] == "smoke"
    assert results["cases"] == ["neighbors", "lammps"]
    assert results["repeat"] >= 5
    env = results["environment"]
    assert env["date"].endswith("UTC")
    assert env["machine"]["cores"] >= 1 and env["machine"]["cpu_model"]
    assert set(env["threads"]) >= {"OMP_NUM_THREADS", "torch_num_threads", "miniff"}
    assert env["versions"]["numpy"] == np.__version__
    assert {t["issue"] for t in results["targets"]} == {"3", "4", "5", "7", "9", "19", "21", "22", "23", "24", "26"}
    assert all(t["verdict"] in {"met", "not met", "not measured"} for t in results["targets"])
    rows = results["rows"]
    assert {r["case"] for r in rows} >= {"neighbors"}
    for row in rows:
        assert set(row) == set(ROW_FIELDS), row
        for key, kind in ROW_FIELDS.items():
            assert isinstance(row[key], kind), (key, row)
        assert row["status"] in STATUSES, row
        if row["status"] == "ok":
            assert row["median_s"] > 0 and len(row["runs_s"]) == results["repeat"]
            assert row["median_s"] == pytest.approx(float(np.median(row["runs_s"])))
    tools = {r["tool"] for r in rows if r["case"] == "neighbors"}
    assert tools == {"miniff", "vesin", "matscipy", "ase", "scipy-ckdtree"}  # missing peers are rows, not gaps
    assert "median ms" in stdout and "neighbors" in stdout


def test_smoke_neighbor_lists_agree(smoke_results):
    """Every neighbour-list tool that ran found the same pairs as ASE (count and sum of distances)."""
    rows = [r for r in smoke_results[0]["rows"] if r["case"] == "neighbors" and r["status"] == "ok"]
    assert any(r["tool"] == "ase" for r in rows)
    assert all(r["check"] is True for r in rows), [(r["tool"], r["check_detail"]) for r in rows]


def test_smoke_lammps_energies_agree(smoke_results):
    """Where LAMMPS and miniff both ran, the SW and LJ energies agreed (the check compares them to 1e-8)."""
    rows = [r for r in smoke_results[0]["rows"] if r["case"].startswith("lammps") and r["status"] == "ok"]
    if not any(r["tool"] == "lammps" for r in rows):
        pytest.skip("LAMMPS is not installed (its rows say 'missing')")
    assert all(r["check"] is True for r in rows), [(r["tool"], r["check_detail"]) for r in rows]


def test_committee_cost_case_checks_the_mean_of_the_members():
    from benchmarks import bench_uncertainty

    rows, derived = bench_uncertainty.run(_timing.TimingSettings(warmup=0, repeat=5), sizes=[64], calibrate=False)
    assert [r.tool for r in rows] == ["miniff", "one member"] and derived == {}
    assert all(r.status == "ok" and r.check is True for r in rows), [(r.tool, r.status, r.check_detail) for r in rows]
    assert rows[1].ratio > 0


def test_interleaving_rotates_order_and_records_errors():
    calls = []

    def make(name, fail=False):
        def run():
            calls.append(name)
            if fail:
                raise RuntimeError("boom")

        return run

    times, errors = _timing.time_interleaved({"a": make("a"), "b": make("b"), "c": make("c", fail=True)},
                                             _timing.TimingSettings(warmup=1, repeat=5))
    assert calls[:4] == ["a", "b", "c", "b"]  # round 2 starts with the second tool
    assert len(times["a"]) == len(times["b"]) == 5 and times["c"] == []
    assert "RuntimeError: boom" in errors["c"]


def test_run_comparison_ratios_checks_and_unavailable():
    def factory(value):
        return lambda: (lambda: value)

    def missing():
        raise _timing.Unavailable("missing", "pip install nothing")

    def check(outputs):
        return {t: (v == outputs["miniff"], "equal") for t, v in outputs.items()}

    rows = run_comparison("demo", 3, {"miniff": factory(1), "peer": factory(2), "absent": missing}, check,
                          _timing.TimingSettings(warmup=0, repeat=5), memory=False)
    by_tool = {r.tool: r for r in rows}
    assert by_tool["miniff"].check is True and by_tool["peer"].check is False
    assert by_tool["absent"].status == "missing" and by_tool["absent"].note == "pip install nothing"
    assert by_tool["miniff"].ratio == 1.0
    assert by_tool["peer"].ratio == pytest.approx(by_tool["miniff"].median_s / by_tool["peer"].median_s)


def test_memory_measurement_sees_numpy_allocation():
    peak_mb, py_peak_mb = _timing.measure_memory(lambda: np.ones(8 * 2**20).sum())  # 64 MiB
    assert py_peak_mb >= 60
    assert peak_mb is None or peak_mb >= 50


def test_loglog_exponent_of_power_laws():
    n = np.array([1e3, 8e3, 64e3])
    assert loglog_exponent(n, 2e-6 * n) == pytest.approx(1.0)
    assert loglog_exponent(n, 1e-9 * n**2) == pytest.approx(2.0)
    assert loglog_exponent([1000], [1.0]) is None


def test_structures_are_seeded_and_noisy():
    a = _structures.si_diamond((2, 2, 2))
    b = _structures.si_diamond((2, 2, 2))
    assert len(a) == 64 and np.array_equal(a.positions, b.positions)
    perfect = _structures.si_diamond((2, 2, 2), noise=0.0)
    box = np.diag(np.array(a.cell))
    delta = a.positions - perfect.positions
    delta -= box * np.round(delta / box)  # undo wrapping
    assert 0.03 < delta.std() < 0.07  # 0.05 Å Gaussian noise
    assert len(_structures.si_diamond_n(1000)) == 1000 and len(_structures.fcc_argon_n(32000)) == 32000
    assert np.allclose(np.diag(np.array(_structures.fcc_argon((1, 1, 1)).cell)), 5.26)


def test_read_sw_file(tmp_path):
    path = tmp_path / "Si.sw"
    path.write_text("# comment\nSi Si Si 2.1683 2.0951 1.80 21.0 1.20 -0.333333333333\n"
                    "   7.049556277 0.6022245584 4.0 0.0 0.0\n")
    sw = read_sw_file(path)
    assert sw["epsilon"] == 2.1683 and sw["lambda"] == 21.0 and sw["A"] == 7.049556277 and sw["q"] == 0.0


def _row(case, tool, n, median_s, ratio=None, check=True):
    return Row(case, n, tool, median_s=median_s, ratio=ratio, check=check).to_dict()


def test_targets_verdicts():
    rows = [_row("neighbors", "miniff", 8000, 0.006, 1.0), _row("neighbors", "vesin", 8000, 0.007, 6 / 7),
            _row("neighbors", "miniff", 64000, 0.07, 1.0), _row("neighbors", "vesin", 64000, 0.05, 1.4),
            _row("lammps-sw", "miniff", 64000, 0.02, 1.0), _row("lammps-sw", "lammps", 64000, 0.025, 0.8,
                                                                  check=False)]
    derived = {"neighbors": {"exponent": {"miniff": 1.05}}}
    verdicts = {t["target"]: t["verdict"] for t in _targets.evaluate_targets(rows, derived)}
    texts = [t[1] for t in _targets.TARGETS]
    assert verdicts[texts[0]] == "not met"  # 1.4 > 1.0 at 64k
    assert verdicts[texts[1]] == "met"  # floor 1.5
    assert verdicts[texts[2]] == "met"  # exponent 1.05
    assert verdicts[texts[3]] == "not measured"  # no 1M row
    assert verdicts["SW total + grad <= 1.0 x LAMMPS at 64k"] == "not met"  # fast, but the energy check failed
    assert all(verdicts[t] == "not measured" for t in texts if "flop bound" in t or "LJ" in t)
    rows += [_row("descriptors", "miniff", 8000, 0.010, 1.0), _row("descriptors", "flop bound", 8000, 0.002, 5.0),
             _row("descriptors-grad", "miniff", 8000, 0.02, 1.0),
             _row("descriptors-grad", "flop bound", 8000, 0.004, 5.0)]
    big = _row("lj-energy-forces-stress", "miniff", 1_000_000, 1.2)
    big["peak_mem_mb"] = 900.0
    rows.append(big)
    verdicts = {t["target"]: t["verdict"] for t in _targets.evaluate_targets(rows, derived)}
    assert verdicts["descriptor values <= 4 x the flop bound at 8k"] == "not met"  # 5 > 4
    assert verdicts["descriptor values + Jacobian <= 6 x the flop bound at 8k"] == "met"  # 5 <= 6
    assert verdicts["1M-atom LJ energy + forces + stress <= 1.5 s and <= 1.5 GB"] == "met"
    big["peak_mem_mb"] = 3700.0
    verdicts = {t["target"]: t["verdict"] for t in _targets.evaluate_targets(rows, derived)}
    assert verdicts["1M-atom LJ energy + forces + stress <= 1.5 s and <= 1.5 GB"] == "not met"
    threads_17 = ">= 1.7x speed-up from 1 to 2 threads (descriptor values + Jacobian)"
    threads_18 = ">= 1.8x speed-up from 1 to 2 threads (descriptor values + Jacobian, 8k)"
    assert verdicts[threads_17] == verdicts[threads_18] == "not measured"
    derived["descriptors"] = {"speedup_1_to_2_threads": 1.75}
    verdicts = {t["target"]: t["verdict"] for t in _targets.evaluate_targets(rows, derived)}
    assert (verdicts[threads_17], verdicts[threads_18]) == ("met", "not met")


def test_flop_count_of_the_descriptor_set():
    # Two atoms with one neighbour each and one atom with three: P = 5 directed pairs, T = 3 unordered
    # neighbour pairs (all of the third atom's).
    assert _flops.neighbour_counts([0, 1, 2, 5]) == (5, 3)
    g2 = [(2.0, 1.0), (2.0, 2.0)]
    g5 = [(0.1, 1.0, 1.0), (0.1, 4.0, -1.0), (0.2, 1.0, 1.0)]
    # per pair: 10 + 6 x 2 (G2) + 3 x 2 (distinct eta); per neighbour pair: 7 + 2 + (4 + 6 + 4)
    assert _flops.descriptor_flops(5, 3, g2, g5) == 5 * 28 + 3 * 23
    # + per pair 4 + 7 x 2 + 3 x 2, per neighbour pair 15 + 19 x 3
    assert _flops.descriptor_flops(5, 3, g2, g5, jacobian=True) == 5 * (28 + 24) + 3 * (23 + 72)
    assert _flops.float64_peak(size=64, repeat=1) > 0


def test_report_table_and_readme_block(tmp_path):
    rows = [_row("neighbors", "miniff", 1000, 0.001, 1.0),
            Row("neighbors", 1000, "vesin", status="missing", note="pip install vesin").to_dict()]
    results = {"profile": "smoke", "rows": rows, "derived": {}, "targets": [],
               "environment": {"date": "2026-01-01 00:00 UTC", "machine": {"cpu_model": "cpu", "cores": 2},
                               "threads": {"OMP_NUM_THREADS": None, "torch_num_threads": 2, "miniff": {}},
                               "versions": {"numpy": "2"}}}
    table = _report.format_table(rows)
    assert "missing: pip install vesin" in table and "1" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{_report.README_BEGIN}\nold\n{_report.README_END}\ntail\n")
    _report.update_readme(str(readme), results)
    text = readme.read_text()
    assert "old" not in text and "| neighbors | 1000 | miniff |" in text and text.endswith("tail\n")
    _report.write_json(results, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["rows"][1]["status"] == "missing"


def test_unbuilt_source_folder_falls_back_to_the_installed_package(tmp_path):
    # A repository root whose miniff/ has no compiled core: the harness must measure an importable, built
    # miniff instead of reporting every row as unavailable.
    fake = tmp_path / "miniff"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "kernel.py").write_text("raise ImportError('compiled core not built')\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); sys.path.append({str(ROOT)!r}); "
            "from benchmarks.__main__ import locate_miniff; "
            f"print(locate_miniff(root={str(tmp_path)!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    location = proc.stdout.strip().splitlines()[-1]
    assert not location.startswith(str(tmp_path))
    assert (Path(location) / "kernel.py").is_file()


def test_a_miniff_row_that_did_not_run_fails_the_command(monkeypatch, tmp_path, capsys):
    from benchmarks import __main__ as cli

    rows = [_row("neighbors", "miniff", 64, 1e-3), _row("neighbors", "vesin", 64, 1e-3),
            Row("descriptors", 64, "miniff", status="not available yet", note="gone").to_dict()]
    monkeypatch.setattr(cli, "locate_miniff", lambda: tmp_path)
    monkeypatch.setattr(cli, "run_cases", lambda profile, cases: {
        "rows": rows, "derived": {}, "targets": [], "environment": {}, "wall_s": 0.0})
    code = cli.main(["run", "--profile", "smoke", "--output", str(tmp_path / "r.json")])
    assert code == 1
    err = capsys.readouterr().err
    assert "1 miniff row(s) did not run" in err and "descriptors" in err and "gone" in err
    assert [r["tool"] for r in cli.failed_miniff_rows(rows)] == ["miniff"]
    rows[2]["status"] = "ok"
    assert cli.main(["run", "--profile", "smoke", "--output", str(tmp_path / "r.json")]) == 0


def test_update_keeps_the_other_cases_of_the_results_file(monkeypatch, tmp_path, capsys):
    """``run --update``: rows of row-cases this run did not measure and derived numbers of cases it did not run
    are kept from the file; the rest is replaced; targets are judged on the union; a bad file stops the run
    before it starts."""
    import json

    from benchmarks import RESULTS_SCHEMA
    from benchmarks import __main__ as cli

    out = tmp_path / "r.json"
    old_rows = [_row("neighbors", "miniff", 64, 2e-3), _row("neighbors", "vesin", 64, 1e-3),
                _row("committee-cost", "miniff", 64, 9.0)]
    out.write_text(json.dumps({"schema": RESULTS_SCHEMA, "cases": ["neighbors", "uncertainty"], "rows": old_rows,
                               "derived": {"neighbors": {"x": 1}, "uncertainty": {"calibration": {"spearman": 0.1}}},
                               "environment": {"date": "old"}, "targets": [], "wall_s": 1.0}))
    new_rows = [_row("committee-cost", "miniff", 64, 1.0), _row("committee-cost", "one member", 64, 1.0)]
    calls = []

    def fake_run(profile, cases):
        calls.append(cases)
        return {"schema": RESULTS_SCHEMA, "cases": cases, "rows": new_rows,
                "derived": {"uncertainty": {"calibration": {"spearman": 0.8}}}, "targets": [],
                "environment": {"date": "new"}, "wall_s": 0.0}

    monkeypatch.setattr(cli, "locate_miniff", lambda: tmp_path)
    monkeypatch.setattr(cli, "run_cases", fake_run)
    assert cli.main(["run", "--profile", "smoke", "--only", "uncertainty", "--update", "--output", str(out)]) == 0
    got = json.loads(out.read_text())
    assert sorted((r["case"], r["tool"], r["median_s"]) for r in got["rows"]) == [
        ("committee-cost", "miniff", 1.0), ("committee-cost", "one member", 1.0),
        ("neighbors", "miniff", 2e-3), ("neighbors", "vesin", 1e-3)]
    assert got["derived"] == {"neighbors": {"x": 1}, "uncertainty": {"calibration": {"spearman": 0.8}}}
    assert got["cases"] == ["neighbors", "uncertainty"]
    assert got["updated"] == [{"kept_cases": ["neighbors"], "kept_from": "old", "new_cases": ["uncertainty"],
                               "new_date": "new"}]
    spearman = [t for t in got["targets"] if "Spearman" in t["target"]]
    assert spearman[0]["verdict"] == "met"
    # without --update the file holds this run only
    assert cli.main(["run", "--profile", "smoke", "--only", "uncertainty", "--output", str(out)]) == 0
    assert {r["case"] for r in json.loads(out.read_text())["rows"]} == {"committee-cost"}
    # a corrupt file: exit code 2 naming the option, nothing run, the file untouched
    out.write_text("{not json")
    n_calls = len(calls)
    assert cli.main(["run", "--profile", "smoke", "--only", "uncertainty", "--update", "--output", str(out)]) == 2
    assert "--update" in capsys.readouterr().err and len(calls) == n_calls and out.read_text() == "{not json"


@pytest.mark.slow
def test_learning_efficiency_runs_and_writes_its_results(tmp_path, monkeypatch):
    """A tiny learning-efficiency run: both curves start from the same fit, the active curves (default rule and
    a compared one, warm-started refits) grow by the workflow's selection, a known random curve is reused
    instead of refitted, and the results file and plot are written."""
    import json

    from benchmarks import bench_uncertainty

    monkeypatch.setattr(bench_uncertainty, "LEARNING_FIT", {"cutoff": 5.0,
                                                            "default_descriptor_kwargs": {"n": 2, "left": 0.8},
                                                            "nn_kwargs": {"n_internal": 3, "n_layers": 1}})
    monkeypatch.setattr(bench_uncertainty, "LEARNING_VARIANTS", bench_uncertainty.LEARNING_VARIANTS[-2:])
    monkeypatch.setattr(bench_uncertainty, "LEARNING_TEMPERATURES", (600,))
    runs = bench_uncertainty.learning_efficiency(seeds=(0,), n_initial=4, step=2, n_random=(4, 8), max_active=6,
                                                 n_epochs=1, pool_per_trajectory=5, held_per_trajectory=1,
                                                 compare=("spread",), warm_start=True, progress=False,
                                                 random_curves={0: {"8": 1e-9}})   # a known, unreachable target
    (run,) = runs
    assert run["active"][4] == run["random"][4] == run["active_spread"][4]    # the same first fit
    assert run["random"][8] == 1e-9 and run["active_labelled_to_match_random"] is None
    assert set(run["active"]) == {4, 6} and len(run["active_trajectories"]) == 2
    path = bench_uncertainty.write_learning_results(runs, {"smoke": True, "seeds": [0]}, tmp_path)
    data = json.loads(path.read_text())
    assert data["runs"][0]["seed"] == 0 and "active_spread" in data["runs"][0]
    assert bench_uncertainty._random_curves(path)[0] == {"4": run["random"][4], "8": 1e-9}
    runs, settings = bench_uncertainty._merge([path, path])
    assert settings["seeds"] == [0, 0] and len(runs) == 2
    assert (tmp_path / bench_uncertainty.LEARNING_PLOT).stat().st_size > 0


def test_learning_efficiency_held_out_trajectories_share_the_pool_cells():
    """With ``cell_seed`` a held-out trajectory has the Pt sites and vacancy of the pool trajectory of that seed
    (same symbols, same atom count) but its own rattle and noise; without it, its own cell."""
    import numpy as np

    from benchmarks import bench_uncertainty

    variant = bench_uncertainty.LEARNING_VARIANTS[-1]   # Cu5Pt3 with a vacancy
    pool = bench_uncertainty._alloy_frames(variant, 1, 300, 100, every=1)[0]
    held = bench_uncertainty._alloy_frames(variant, 1, 300, 500, every=1, cell_seed=100)[0]
    assert held.get_chemical_symbols() == pool.get_chemical_symbols()
    assert np.allclose(held.cell.array, pool.cell.array)
    assert not np.allclose(held.positions, pool.positions)
    again = bench_uncertainty._alloy_frames(variant, 1, 300, 100, every=1)[0]   # deterministic
    assert np.array_equal(again.positions, pool.positions)


def test_learning_efficiency_held_out_frames_span_the_pool_time_window():
    """The held-out frames of a trajectory are spread over the pool's time window (the last ones at the same MD
    step): taking only the first frames would sample the heating from the rattled lattice alone."""
    import pytest

    from benchmarks import bench_uncertainty

    for pool, held in ((12, 12), (12, 3), (36, 12), (5, 1)):
        every = bench_uncertainty._held_every(pool, held)
        assert every * held == pool * 10   # last held-out frame at the pool's last step (10 steps per frame)
    for bad in (0, 121):
        with pytest.raises(ValueError, match="held_per_trajectory"):
            bench_uncertainty._held_every(12, bad)


def test_learning_efficiency_command_refuses_bad_arguments(tmp_path):
    """The learning-efficiency command names a bad argument (argparse exit 2) before any MD or fit."""
    import os

    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    (tmp_path / "bad.json").write_text('{"x": 1}')
    for args, message in ((["--held", "0"], "--held must be at least 1"), (["--step", "-2"], "--step must be"),
                          (["--pool", "2", "--held", "21"], "--held must be at most"),
                          (["--members", "1"], "--members must be at least 2"),
                          (["--random-from", str(tmp_path / "missing.json")], "--random-from"),
                          (["--random-from", str(tmp_path / "bad.json")], "--random-from")):
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_uncertainty", *args, "--out-dir",
                               str(tmp_path)], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
