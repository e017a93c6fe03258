"""No silent stall: stall detection, line-search resets, the final reason, select_best."""

import warnings

import numpy as np
import pytest
import torch

from miniff import ml_util
from miniff.fit.lbfgs import CompactLBFGS
from miniff.fit.monitor import LINE_SEARCH_RETRIES, STALL_EPOCHS, FitStallWarning
from tests.support import lj_cells, radial_basis


@pytest.fixture(scope="module")
def cells():
    return lj_cells(16, seed=4)


def _workflow(cells, **closure_kwargs):
    wf = ml_util.FitWorkflow(seed=0)
    # sigmoid networks (the fit default is tanh): the cases below (a line search that runs out of its 2 evaluations
    # yet moves, ...) are constructed with them
    wf.prepare(cells, descriptors=radial_basis(4), forces=True, test_set=4,
               nn_kwargs={"n_internal": 3, "activation": "sigmoid"}, closure_kwargs=closure_kwargs)
    return wf


def test_optimizer_that_does_not_move_stalls_at_once(cells, capsys):
    wf = _workflow(cells, optimizer="sgd", optimizer_kwargs={"lr": 0.0})
    with pytest.warns(FitStallWarning, match=r"stalled at epoch 1: the optimizer returned without changing.*try"):
        wf.run(n_epochs=20, progress=False)
    assert wf.stop_reason == "stalled" and wf.epoch == 1
    assert "stopped: stalled" in capsys.readouterr().out   # the final reason is printed


def test_slow_decrease_stalls_after_the_window(cells):
    # SGD with a tiny step: the loss decreases, by far less than the tolerance over the window
    wf = _workflow(cells, optimizer="sgd", optimizer_kwargs={"lr": 1e-9})
    with pytest.warns(FitStallWarning, match=f"less than 0.01 % over the last {STALL_EPOCHS} epochs"):
        wf.run(n_epochs=50, progress=False, summary=False)
    losses = [r["loss"] for r in wf.history]
    assert wf.stop_reason == "stalled" and wf.epoch == STALL_EPOCHS
    assert losses[-1] < losses[0] and min(losses[1:]) > (1 - 1e-4) * losses[0]   # independent check of the rule
    # the rule's window and tolerance are settings: a large tolerance window never ends this fit
    wf = _workflow(cells, optimizer="sgd", optimizer_kwargs={"lr": 1e-9})
    wf.run(n_epochs=STALL_EPOCHS + 2, progress=False, summary=False, stall_epochs=None)
    assert wf.stop_reason == "n_epochs" and wf.epoch == STALL_EPOCHS + 2


def test_converging_fit_is_not_a_stall(cells):
    wf = _workflow(cells)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitStallWarning)
        wf.run(n_epochs=3, progress=False, summary=False)
    assert wf.stop_reason in ("n_epochs", "optimizer: tolerance_change")
    assert type(wf.closure.optimizer).__name__ == "CompactLBFGS"   # the "auto" optimizer


class _FailsOnce(CompactLBFGS):
    """Reports a failed line search without moving on the first step of the first instance only."""

    instances = 0

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        type(self).instances += 1
        self._fail = type(self).instances == 1

    def step(self, closure):
        if self._fail:
            self._fail = False
            self.stop_reason = "line search"
            return torch.tensor(0.0)
        return super().step(closure)


def test_failed_line_search_drops_the_history_and_goes_on(cells):
    _FailsOnce.instances = 0
    wf = _workflow(cells, optimizer=_FailsOnce, optimizer_kwargs={"max_iter": 5})
    first = wf.closure.optimizer
    wf.run(n_epochs=4, progress=False, summary=False)
    assert wf.closure.optimizer is not first and _FailsOnce.instances == 2   # a fresh optimizer after epoch 1
    assert wf.stop_reason == "n_epochs" and wf.epoch == 4
    assert wf.history[-1]["loss"] < wf.history[1]["loss"]


def test_repeated_line_search_failures_end_the_fit_with_a_warning(cells):
    # c1 close to 1 and one evaluation per search: no trial point ever has sufficient decrease
    wf = _workflow(cells, optimizer="compact_lbfgs", optimizer_kwargs={"c1": 0.99, "c2": 0.999, "max_ls": 1,
                                                                       "max_iter": 3})
    with pytest.warns(FitStallWarning, match=f"line search failed in {LINE_SEARCH_RETRIES} epochs in a row"):
        wf.run(n_epochs=20, progress=False, summary=False)
    assert wf.stop_reason == "line search failed" and wf.epoch == LINE_SEARCH_RETRIES


def test_small_evaluation_budget_is_not_a_line_search_failure(cells):
    # BFGS with max_iter=2 has 2 evaluations per step: the search runs out of budget, the fit goes on
    wf = _workflow(cells, optimizer="bfgs", optimizer_kwargs={"max_iter": 2})
    wf.run(n_epochs=4, progress=False, summary=False)
    assert wf.stop_reason == "n_epochs" and wf.epoch == 4
    assert wf.closure.optimizer.stop_reason != "line search"
    assert wf.history[-1]["loss"] < wf.history[0]["loss"]


@pytest.mark.parametrize("select_best, key", [("loss", "loss_valid"), ("energy", "energy_rmse_valid"),
                                              ("forces", "force_rmse_valid")])
def test_select_best(cells, select_best, key, capsys):
    wf = _workflow(cells, optimizer_kwargs={"max_iter": 3})
    wf.run(n_epochs=6, progress=False, select_best=select_best)
    values = [r[key] for r in wf.history]
    best = int(np.argmin(values))
    assert wf.best["epoch"] == wf.history[best]["epoch"] and wf.best_epoch_info[0] == wf.history[best]["epoch"]
    words = {"loss": "loss", "energy": "energy RMSE", "forces": "force RMSE"}[select_best]
    assert f"networks of epoch {wf.history[best]['epoch']} (lowest validation {words})" in capsys.readouterr().out
    # the restored networks are those of that epoch
    assert wf.metrics("test")[key.replace("_valid", "")] == pytest.approx(values[best], rel=1e-9) \
        if key != "loss_valid" else True


def test_select_best_errors(cells):
    wf = _workflow(cells)
    with pytest.raises(ValueError, match="select_best"):
        wf.run(n_epochs=1, select_best="validation")
    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(cells, descriptors=radial_basis(4), test_set=4, nn_kwargs={"n_internal": 3})
    with pytest.raises(ValueError, match="select_best: 'forces' needs a force fit"):
        wf.run(n_epochs=1, select_best="forces")
    with pytest.raises(ValueError, match="stall_epochs"):
        wf.run(n_epochs=1, stall_epochs=0)
