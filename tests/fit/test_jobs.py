"""YAML jobs: validation (typos named with a suggestion), fail-fast data checks, fit -> test -> relax stages."""

import numpy as np
import pytest
import yaml

from miniff import ml_util
from miniff.kernel import Cell


def _write_job(path, description):
    path.write_text(yaml.safe_dump(description, sort_keys=False))
    return path


def test_typo_in_prepare_is_named_with_suggestion(tmp_path):
    job = _write_job(tmp_path / "job.yml", {"fit": {"prepare": {"fn_cell": "data.extxyz"}}})
    match = r"fit\.prepare: unknown key 'fn_cell' \(did you mean 'fn_cells'\?\)"
    with pytest.raises(ml_util.JobFileError, match=match):
        ml_util.run_job_file(job)


@pytest.mark.parametrize("description, match", [
    ({"fitt": {}}, r"unknown stage 'fitt' \(did you mean 'fit'\?\)"),
    ({"fit": {"prepar": {}}}, r"unknown section 'prepar' \(did you mean 'prepare'\?\)"),
    ({"fit": {"run": {"n_epoch": 3}, "prepare": {"fn_cells": "x"}}}, r"fit\.run: unknown key 'n_epoch'"),
    ({"fit": {"init": {"sed": 1}, "prepare": {"fn_cells": "x"}}}, r"fit\.init: unknown key 'sed' \(did you mean"),
    ({"test-direct": {"run": {}}}, r"'prepare' section"),
    ({"test-relax": {"prepare": {"potentials": "a.pt"}}}, r"missing required key\(s\) \['fn_cells'\]"),
    ([1, 2], "expected a mapping"),
])
def test_invalid_descriptions(description, match):
    with pytest.raises(ml_util.JobFileError, match=match):
        ml_util.exec_workflows(description)


def test_missing_files_fail_before_any_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="job file"):
        ml_util.run_job_file(tmp_path / "absent.yml")
    data = ml_util.example_data_path()
    # the second stage's data file is missing: nothing runs (no fit output appears)
    description = {"fit": {"prepare": {"fn_cells": str(data)}, "run": {"n_epochs": 1, "save_fn": "p.pt"}},
                   "test-direct": {"prepare": {"fn_cells": "missing.extxyz", "potentials": "p.pt"}}}
    with pytest.raises(FileNotFoundError, match="missing.extxyz"):
        ml_util.exec_workflows(description)
    assert not (tmp_path / "p.pt").exists()
    (tmp_path / "bad.yml").write_text("fit: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        ml_util.run_job_file(tmp_path / "bad.yml")


def _dimer_cells(n, rng):
    """Periodic boxes with an Ar pair (energies from a Morse curve) and forces."""
    cells = []
    for _ in range(n):
        d = rng.uniform(3.4, 4.6)
        x = np.exp(-1.3 * (d - 3.8))
        e = 0.012 * (x * x - 2 * x)
        f = 0.012 * (2 * x * x - 2 * x) * 1.3  # -dE/dd; positive = repulsive
        cart = np.array([[1.0, 1.0, 1.0], [1.0 + d, 1.0, 1.0]])
        cells.append(Cell(np.eye(3) * 12, cart / 12, ["Ar", "Ar"],
                          meta={"total-energy": e, "forces": np.array([[-f, 0, 0], [f, 0, 0]]),
                                "pbc": (False, False, False)}))
    return cells


def test_job_file_fit_test_relax(tmp_path, monkeypatch, rng):
    from miniff.io import write_cells

    monkeypatch.chdir(tmp_path)
    write_cells(_dimer_cells(16, rng), tmp_path / "train.extxyz")
    write_cells(_dimer_cells(3, rng), tmp_path / "more.extxyz")
    job = {
        "fit": {"init": {"seed": 0},
                "prepare": {"fn_cells": "train.extxyz", "cutoff": 6.0, "test_set": 0.2, "forces": True,
                            "default_descriptor_kwargs": {"n": 5, "left": 0.8, "three_point": False},
                            "nn_kwargs": {"n_internal": 4, "n_layers": 2},
                            "closure_kwargs": {"optimizer_kwargs": {"max_iter": 5}}, "checkpoint": "fit.ckpt"},
                "run": {"n_epochs": 2, "save_fn": "learn.pt", "log_file": "fit.jsonl", "progress": False}},
        "test-direct": {"prepare": {"fn_cells": "more.extxyz", "potentials": "learn.pt"},
                        "run": {"fn_output": "predicted.extxyz"}},
        "test-relax": {"prepare": {"fn_cells": "more.extxyz", "potentials": "learn.pt", "cells_subset": 1}},
    }
    fit, test, relax = ml_util.run_job_file(_write_job(tmp_path / "job.yml", job))
    assert (tmp_path / "learn.pt").exists() and (tmp_path / "fit.ckpt").exists()
    assert len(ml_util.read_fit_log(tmp_path / "fit.jsonl")["epoch"]) == 3
    # the one-shot errors agree with a direct evaluation of the fitted networks' predictions
    pots = ml_util.load_potentials("learn.pt")
    from miniff.kernel import NeighborWrapper

    de = [(NeighborWrapper(c, cutoff=6.0, pbc=False).total(pots) - c.meta["reference-energy"]) / c.size
          for c in test.cells_result]
    assert test.errors["energy_rmse"] == pytest.approx(np.sqrt(np.mean(np.square(de))), rel=1e-8)
    assert "force_rmse" in test.errors
    from miniff.io import read_cells

    back = read_cells(tmp_path / "predicted.extxyz")
    assert len(back) == 3 and "predicted-energy" in back[0].meta
    # relaxation lowers the energy of every cell and leaves small forces
    assert len(relax.cells_result) == 1
    for before, after in zip(relax.cells_nw, relax.cells_result, strict=True):
        e0 = NeighborWrapper(relax.cells[relax.cells_nw.index(before)], cutoff=6.0, pbc=False).total(pots)
        assert after.meta["total-energy"] <= e0 + 1e-9
        assert np.abs(after.meta["forces"]).max() < 1e-3
    # re-running the same job resumes from the finished checkpoint: no new epochs
    again = ml_util.run_job_file(tmp_path / "job.yml")[0]
    assert again.resumed_from == 2 and again.epoch == 2


def test_cells_json_and_ase_db_sources(tmp_path, rng):
    from miniff.io import write_cells

    cells = _dimer_cells(3, rng)
    Cell.save(cells, str(tmp_path / "cells.json"))
    write_cells(cells, tmp_path / "cells.db")
    wf = ml_util.OneShotWorkflow()
    for source in ("cells.json", "cells.db"):
        loaded = wf.load_cells(source, root=str(tmp_path))
        assert len(loaded) == 3
        for a, b in zip(cells, loaded, strict=True):
            np.testing.assert_allclose(a.cartesian(), b.cartesian(), atol=1e-10)
            assert b.meta["total-energy"] == pytest.approx(a.meta["total-energy"], rel=1e-12)
    with pytest.raises(FileNotFoundError, match="no file matches"):
        wf.load_cells("*.nothing", root=str(tmp_path))


def test_documented_job_example_is_valid():
    import miniff.fit.jobs as jobs

    text = jobs.__doc__.split("::")[1].split("\n\n")[1]
    description = yaml.safe_load(text)
    assert list(description) == ["fit", "test-direct", "test-relax", "fit-minibatch"]
    jobs.validate_description(description)  # raises on any unknown key
