"""Parameters kept only for miniff 0.1.4 compatibility: a DeprecationWarning naming the parameter, pointing at
the caller, when given a value other than the default; silence for the defaults; once per job in job files."""

import inspect
import logging
import warnings

import numpy as np
import pytest

from miniff import ml, ml_util, potentials
from miniff.fit import compat
from miniff.fit.apply import SDWorkflow
from miniff.fit.base import Workflow
from miniff.fit.workflow import FitWorkflow
from miniff.io import read_cells, write_cells
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials.scalar import ScalarFunctionWrapper

SMALL = {"cells_subset": 8, "cutoff": 5.0, "test_set": 2,
         "default_descriptor_kwargs": {"n": 2, "three_point": False}, "nn_kwargs": {"n_internal": 3, "n_layers": 2}}

#: A value other than the default for every entry of compat.IGNORED.
NON_DEFAULT = {"units": "default", "units_are_known": True, "mpl_save_ext": "pdf", "parallel": True,
               "cuda": "auto", "plot_kwargs": {}, "save_policy": "every", "pool_kwargs": {"processes": 2}}

OWNERS = {"Workflow": Workflow.__init__, "FitWorkflow.prepare": FitWorkflow.prepare,
          "FitWorkflow.run": FitWorkflow.run, "SDWorkflow.run": SDWorkflow.run}


@pytest.fixture(scope="module")
def cells():
    return list(read_cells(str(ml_util.example_data_path())))[:10]


@pytest.fixture(scope="module")
def fitted(cells):
    return FitWorkflow(seed=0).prepare(cells, **SMALL)


@pytest.fixture
def relax():
    lj = potentials.lj_potential_family(epsilon=0.01, sigma=3.4, a=2.5, tag="Ar-Ar")
    cell = Cell(np.eye(3) * 12, np.array([[1.0, 1.0, 1.0], [4.9, 1.0, 1.0]]) / 12, ["Ar", "Ar"],
                meta={"pbc": (False, False, False)})
    return SDWorkflow().prepare([cell], potentials=[lj])


def _single(record):
    ours = [w for w in record if issubclass(w.category, DeprecationWarning)]
    assert len(ours) == 1, [str(w.message) for w in record]
    assert ours[0].filename == __file__, "the warning points at the caller"
    return str(ours[0].message)


def _call(owner, name, value, cells, fitted, relax):
    """Call ``owner`` with ``name=value`` from this file; return the warning records."""
    with pytest.warns(DeprecationWarning) as record:
        if owner == "Workflow":
            FitWorkflow(**{name: value})
        elif owner == "FitWorkflow.prepare":
            FitWorkflow(seed=0).prepare(cells, **SMALL, **{name: value})
        elif owner == "FitWorkflow.run":
            fitted.run(n_epochs=0, progress=False, **{name: value})
        else:
            relax.run(**{name: value})
    return record


def test_the_table_matches_the_signatures():
    for (owner, name), (defaults, why) in compat.IGNORED.items():
        default = inspect.signature(OWNERS[owner]).parameters[name].default
        assert default in defaults, (owner, name)
        assert why and not why.endswith(".")
        assert name in NON_DEFAULT


@pytest.mark.parametrize("owner, name", sorted(compat.IGNORED))
def test_each_ignored_parameter_warns_with_its_name(owner, name, cells, fitted, relax):
    message = _single(_call(owner, name, NON_DEFAULT[name], cells, fitted, relax))
    assert f": {name} is ignored: " in message and compat.PHRASE in message
    assert message.startswith({"Workflow": "FitWorkflow", "SDWorkflow.run": "SDWorkflow.run"}.get(owner, owner))


def test_defaults_do_not_warn(cells, fitted, relax):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wf = FitWorkflow(seed=0, units=None, units_are_known=False, mpl_save_ext="png")
        wf.prepare(cells, **SMALL, parallel=False, cuda=None, plot_kwargs=None)
        FitWorkflow(seed=0).prepare(cells, **SMALL, parallel=None, cuda=False)
        wf.run(n_epochs=0, progress=False, save_policy=None, plot_kwargs=None)
        relax.run(parallel=False, pool_kwargs=None)
        relax.run(parallel=None)


def test_cuda_errors_are_errors_not_warnings(cells):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="cuda"):
            FitWorkflow().prepare(cells, **SMALL, cuda=True)


def test_several_parameters_warn_in_order(cells):
    with pytest.warns(DeprecationWarning) as record:
        FitWorkflow(seed=0).prepare(cells, **SMALL, parallel=True, cuda="auto", plot_kwargs={"a": 1})
    assert [str(w.message).split(" is ignored")[0] for w in record] == [
        "FitWorkflow.prepare: parallel", "FitWorkflow.prepare: cuda", "FitWorkflow.prepare: plot_kwargs"]


def _descriptors():
    return {s: [potentials.behler2_descriptor_family(eta=0.5, r_sphere=1.5, a=5.0, tag=f"{s}-{t}")
                for t in ("Cu", "Pt")] for s in ("Cu", "Pt")}


def test_learn_cauldron_prefer_parallel(cells):
    nws = [NeighborWrapper(c, cutoff=5.0) for c in cells[:2]]
    with pytest.warns(DeprecationWarning) as record:
        ml.learn_cauldron(nws, _descriptors(), normalize=False, prefer_parallel=False)
    message = _single(record)
    assert "prefer_parallel=False sets n_threads=1" in message and "ignored" not in message
    assert compat.PHRASE in message
    for kwargs in ({"prefer_parallel": True}, {"prefer_parallel": False, "n_threads": 2}):
        with pytest.warns(DeprecationWarning) as record:
            ml.learn_cauldron(nws, _descriptors(), normalize=False, **kwargs)
        message = _single(record)
        assert f"prefer_parallel={kwargs['prefer_parallel']} is ignored" in message and compat.PHRASE in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ml.learn_cauldron(nws, _descriptors(), normalize=False, prefer_parallel=None)


def test_scalar_function_wrapper_prefer_parallel(cells):
    nw = NeighborWrapper(cells[0], cutoff=5.0)
    for value in (True, False):
        with pytest.warns(DeprecationWarning) as record:
            ScalarFunctionWrapper(nw, [], prefer_parallel=value)
        message = _single(record)
        assert "prefer_parallel is ignored" in message and compat.PHRASE in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ScalarFunctionWrapper(nw, [], prefer_parallel=None)


def _job(tmp_path, cells):
    write_cells(cells, tmp_path / "cells.extxyz")
    prepare = dict(SMALL, fn_cells=str(tmp_path / "cells.extxyz"), plot_kwargs={"live": True})
    run = {"n_epochs": 1, "progress": False, "plot_kwargs": {"live": True}, "save_fn": str(tmp_path / "p.pt")}
    return {"fit": {"init": {"seed": 0}, "prepare": prepare, "run": run},
            "fit:second": {"init": {"seed": 1}, "prepare": prepare, "run": dict(run, save_policy="every")}}


def test_job_runner_reports_each_deprecation_once(tmp_path, cells, caplog):
    description = _job(tmp_path, cells)
    with caplog.at_level(logging.WARNING, logger="miniff.workflow"), pytest.warns(DeprecationWarning) as record:
        done = ml_util.exec_workflows(description, where="job.yml")
    assert [wf.tag for wf in done] == ["fit", "fit:second"] and all(wf.epoch == 1 for wf in done)
    messages = [str(w.message) for w in record]
    assert [m.split(" is ignored")[0] for m in messages] == [
        "job.yml: FitWorkflow.prepare: plot_kwargs", "job.yml: FitWorkflow.run: plot_kwargs",
        "job.yml: FitWorkflow.run: save_policy"]
    assert all(w.filename == __file__ for w in record)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m.split(" is ignored")[0] for m in logged] == [
        "job.yml: fit: FitWorkflow.prepare: plot_kwargs", "job.yml: fit: FitWorkflow.run: plot_kwargs",
        "job.yml: fit:second: FitWorkflow.run: save_policy"]


def test_job_file_runs_to_the_end_under_an_error_filter(tmp_path, cells):
    import yaml

    path = tmp_path / "job.yml"
    path.write_text(yaml.safe_dump(_job(tmp_path, cells)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DeprecationWarning, match=r"job\.yml: FitWorkflow\.prepare: plot_kwargs is ignored"):
            ml_util.run_job_file(path)
    assert (tmp_path / "p.pt").exists(), "every stage ran before the deprecations were raised"


def test_other_warnings_pass_through_a_job(tmp_path, cells, monkeypatch):
    description = _job(tmp_path, cells)
    description["fit"]["run"] = {"n_epochs": 1, "progress": False}
    del description["fit"]["prepare"]["plot_kwargs"]
    del description["fit:second"]
    original = FitWorkflow.run

    def run(self, **kwargs):
        warnings.warn("something else", UserWarning, stacklevel=2)
        return original(self, **kwargs)

    monkeypatch.setattr(FitWorkflow, "run", run)
    with pytest.warns(UserWarning, match="something else") as record:
        ml_util.exec_workflows(description)
    assert not [w for w in record if issubclass(w.category, DeprecationWarning)]
