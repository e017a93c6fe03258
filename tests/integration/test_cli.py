"""``python -m miniff``: exit codes and messages (subprocesses run outside the source tree)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "miniff", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_missing_data_file_exits_nonzero(tmp_path):
    (tmp_path / "job.yml").write_text(yaml.safe_dump({"fit": {"prepare": {"fn_cells": "nowhere.extxyz"}}}))
    out = _run(["job.yml"], tmp_path)
    assert out.returncode != 0
    assert "nowhere.extxyz" in out.stderr and "Traceback" not in out.stderr


def test_typo_and_missing_job_file(tmp_path, monkeypatch, capsys):
    from miniff.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.yml").write_text(yaml.safe_dump({"fit": {"prepare": {"fn_cells": "x", "n_epochs": 3}}}))
    assert main(["job.yml"]) != 0
    assert "unknown key 'n_epochs'" in capsys.readouterr().err
    assert main(["absent.yml"]) != 0
    assert "absent.yml" in capsys.readouterr().err


def test_usage_names_the_program_as_it_was_run(monkeypatch, capsys):
    from miniff import cli

    for argv0, prog in (("/usr/local/bin/miniff", "miniff"), ("/x/miniff/__main__.py", "python -m miniff")):
        monkeypatch.setattr(sys, "argv", [argv0])
        with pytest.raises(SystemExit):
            cli.main(["--help"])
        assert capsys.readouterr().out.startswith(f"usage: {prog} ")
        with pytest.raises(SystemExit):
            cli.main(["quickstart", "--help"])
        out = capsys.readouterr().out
        assert out.startswith(f"usage: {prog} quickstart ") and "``" not in out


def test_info_in_an_unbuilt_source_folder_advises_leaving_it(tmp_path):
    import shutil

    import miniff

    # a copy of the source folder without the compiled core, with the cwd (hence the copy) first on sys.path
    package = Path(miniff.__file__).parent
    shutil.copytree(package, tmp_path / "miniff", ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.c"))
    (tmp_path / "setup.py").write_text("# stand-in\n")
    proc = subprocess.run([sys.executable, "-m", "miniff", "info"], capture_output=True, text=True, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    assert "run it from another folder" in proc.stdout and "bash tools/build.sh" in proc.stdout
    assert "pip install ." not in proc.stdout and "__init__.py" not in proc.stdout  # no directory listing


def _job(tmp_path, fit_extra=None, run_extra=None):
    """A small fit + test job on LJ data (train.extxyz: 12 cells, the last 4 validate; test.extxyz: 4 cells)."""
    from miniff.io import write_cells
    from tests.support import LJ_RC, lj_cells

    cells = lj_cells(16, seed=11)
    write_cells(cells[:12], tmp_path / "train.extxyz")
    write_cells(cells[12:], tmp_path / "test.extxyz")
    prepare = {"fn_cells": "train.extxyz", "cells_order": None, "test_set": 4, "forces": True, "cutoff": LJ_RC,
               "default_descriptor_kwargs": {"n": 4, "three_point": False}, "nn_kwargs": {"n_internal": 4}}
    prepare.update(fit_extra or {})
    run = {"n_epochs": 3, "save_fn": "fit.pt"}
    run.update(run_extra or {})
    job = {"fit": {"init": {"seed": 0}, "prepare": prepare, "run": run},
           "test-direct": {"prepare": {"fn_cells": "test.extxyz", "potentials": "fit.pt"}}}
    (tmp_path / "job.yml").write_text(yaml.safe_dump(job, sort_keys=False))
    return cells


def _rmse_of_saved_potential(path, cells):
    """Per-atom energy and force-component RMSEs (meV/atom, meV/Å) of a saved potential, computed here."""
    import numpy as np

    from miniff.kernel import NeighborWrapper
    from miniff.ml_util import load_potentials

    pots = load_potentials(path)
    de, df = [], []
    for c in cells:
        nw = NeighborWrapper(c, cutoff=max(p.cutoff for p in pots))
        de.append((float(nw.total(pots)) - c.meta["total-energy"]) / c.size)
        df.append((-np.asarray(nw.grad(pots)) - c.meta["forces"]).ravel())
    return 1000 * np.sqrt(np.mean(np.square(de))), 1000 * np.sqrt(np.mean(np.concatenate(df) ** 2))


def _row(text, label):
    """(energy RMSE, force RMSE) printed on the summary line starting with ``label``."""
    line = next(x for x in text.splitlines() if x.startswith(label) and "meV" in x)
    numbers = [float(x) for x in line.replace("(", " ").replace(")", " ").split()
               if x.replace(".", "", 1).isdigit()]
    return numbers[1], numbers[3]   # cells, E, E spread, F, F spread


def test_job_prints_summaries_that_match_the_saved_potential(tmp_path, monkeypatch, capsys):
    import pytest

    from miniff.cli import main

    monkeypatch.chdir(tmp_path)
    cells = _job(tmp_path)
    assert main(["job.yml"]) == 0
    out = capsys.readouterr()
    assert "fit fit: 3 epochs" in out.out and "stopped: " in out.out and "networks of epoch" in out.out
    assert "energy RMSE (spread)" in out.out and "meV/atom" in out.out and "meV/Å" in out.out
    assert "test test-direct: 4 structures" in out.out
    assert "\r" not in out.err   # no progress bar without -v
    # validation row of the fit and the test stage agree with RMSEs recomputed from the saved potential
    e_val, f_val = _rmse_of_saved_potential(tmp_path / "fit.pt", cells[8:12])
    assert _row(out.out, "validation") == (pytest.approx(e_val, abs=0.006), pytest.approx(f_val, abs=0.06))
    e_test, f_test = _rmse_of_saved_potential(tmp_path / "fit.pt", cells[12:])
    assert _row(out.out, "test ") == (pytest.approx(e_test, abs=0.006), pytest.approx(f_test, abs=0.06))
    e_train, f_train = _rmse_of_saved_potential(tmp_path / "fit.pt", cells[:8])
    assert _row(out.out, "training") == (pytest.approx(e_train, abs=0.006), pytest.approx(f_train, abs=0.06))
    # -q: nothing on stdout; -v: progress bars (and info logging) on stderr
    assert main(["-q", "job.yml"]) == 0
    assert capsys.readouterr().out == ""
    (tmp_path / "fit.pt").unlink()
    assert main(["-v", "job.yml"]) == 0
    err = capsys.readouterr().err
    assert "fit fit:" in err and "epoch/s" in err   # the tqdm bar


def test_summary_table_equals_rmse_of_the_saved_potential(tmp_path, monkeypatch):
    import pytest

    from miniff import ml_util
    from miniff.io import read_cells

    monkeypatch.chdir(tmp_path)
    _job(tmp_path)
    # the structures as the fit read them (the files round the positions, which the sharp shifted radial
    # functions of the default descriptors resolve at this tolerance)
    cells = list(read_cells(str(tmp_path / "train.extxyz"))) + list(read_cells(str(tmp_path / "test.extxyz")))
    fit, test = ml_util.run_job_file("job.yml", run_defaults={"summary": False})
    table = dict(fit.summary_table)
    for label, sel in (("training", cells[:8]), ("validation", cells[8:12])):
        e, f = _rmse_of_saved_potential(tmp_path / "fit.pt", sel)
        assert 1000 * table[label]["energy_rmse"] == pytest.approx(e, rel=1e-7)
        assert 1000 * table[label]["force_rmse"] == pytest.approx(f, rel=1e-7)
    e, f = _rmse_of_saved_potential(tmp_path / "fit.pt", cells[12:])
    assert 1000 * dict(test.summary_table)["test"]["energy_rmse"] == pytest.approx(e, rel=1e-7)
    assert 1000 * dict(test.summary_table)["test"]["force_rmse"] == pytest.approx(f, rel=1e-7)


def test_job_file_errors_name_the_key_and_type(tmp_path, monkeypatch, capsys):
    from miniff.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    cases = [({"cutoff": "abc"}, None, "fit.prepare.cutoff: expected a number (Å), got a string 'abc'"),
             ({"test_set": "twenty"}, None, "fit.prepare.test_set: expected a fraction (0.1), a count (20) or a file"),
             ({"closure_kwargs": [1, 2]}, None, "fit.prepare.closure_kwargs: expected a mapping"),
             ({"forces": "yes"}, None, "fit.prepare.forces: expected true or false, got a string 'yes'"),
             ({"checkpoint": "ckpt"}, None, "fit.prepare.checkpoint: 'ckpt' is a folder"),
             (None, {"n_epochs": 2.5}, "fit.run.n_epochs: expected an integer, got a number 2.5"),
             # values checked by the workflow itself still name the stage and the section
             ({"nn_kwargs": {"n_internal": "abc"}}, None, "job.yml: fit.prepare: n_internal must be an int"),
             (None, {"select_best": "energy2"}, "job.yml: fit.run: select_best must be one of")]
    for prepare, run, message in cases:
        _job(tmp_path, prepare, run)
        assert main(["job.yml"]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
