"""When a fit stops, and which epoch's networks it keeps: stall detection, line-search retries, best state.

:class:`FitMonitor` is consulted by :meth:`FitWorkflow.run <miniff.fit.workflow.FitWorkflow.run>` after every
epoch.  The rules, in the order they are applied:

- **line search**: an optimizer step that ends because its line search found no point of sufficient decrease
  (``optimizer.stop_reason == "line search"``) drops the optimizer's history (a fresh optimizer) and the fit
  goes on; after :data:`LINE_SEARCH_RETRIES` such epochs in a row without progress the fit stops with
  ``stop_reason = "line search failed"`` and a :class:`FitStallWarning`.
- **stall**: the fit stops with ``stop_reason = "stalled"`` and a :class:`FitStallWarning` saying what to try
  when the optimizer returned without changing any parameter (``"optimizer: tolerance_grad"`` instead, without
  a warning, when the gradient is within the optimizer's ``tolerance_grad``: the fit has converged), or when
  the lowest training loss of the last ``stall_epochs`` epochs (default :data:`STALL_EPOCHS`) is not lower
  than the lowest loss before them by more than the relative ``stall_tolerance`` (default
  :data:`STALL_TOLERANCE`), i.e. when
  ``min(last window) > (1 - stall_tolerance) * min(before)``.

The best state (restored at the end with ``restore_best``) is the epoch with the lowest value of the
``select_best`` criterion (:data:`SELECT_BEST`): the validation loss (``"loss"``), the validation energy RMSE
(``"energy"``) or the validation force RMSE (``"forces"``); training values when there is no validation set.
"""

import math
import warnings

import torch

__all__ = ["FitMonitor", "FitStallWarning", "STALL_EPOCHS", "STALL_TOLERANCE", "LINE_SEARCH_RETRIES",
           "SELECT_BEST", "STALL_ADVICE"]

#: Epochs of the window of the stall rule.
STALL_EPOCHS = 5
#: Relative decrease of the training loss that the last :data:`STALL_EPOCHS` epochs must achieve.
STALL_TOLERANCE = 1e-4
#: Epochs in a row whose line search fails (after dropping the optimizer's history) before the fit stops.
LINE_SEARCH_RETRIES = 3
#: ``select_best`` -> (the record key without the ``_valid`` suffix, the words used in summaries).
SELECT_BEST = {"loss": ("loss", "loss"), "energy": ("energy_rmse", "energy RMSE"),
               "forces": ("force_rmse", "force RMSE")}
#: What to try when a fit stalls (part of the warning).
STALL_ADVICE = ("try closure_kwargs optimizer: bfgs (networks up to a few thousand parameters) or compact_lbfgs, "
                "more evaluations per epoch (optimizer_kwargs max_iter), a different force weight "
                "(closure_kwargs w_gradients), or check that the reference energies and forces agree")


class FitStallWarning(UserWarning):
    """A fit ended because its loss stopped decreasing or its line searches kept failing."""


def _parameters(networks):
    return torch.cat([p.detach().reshape(-1) for n in networks for p in n.parameters()]).clone()


def _gradient_vanished(optimizer):
    """Whether the stored parameter gradients are within the optimizer's ``tolerance_grad`` (a converged fit that
    an optimizer such as ``torch.optim.LBFGS`` leaves without a step)."""
    group = optimizer.param_groups[0]
    tol = group.get("tolerance_grad")
    grads = [p.grad.reshape(-1) for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return tol is not None and bool(grads) and float(torch.cat(grads).abs().max()) <= tol


class FitMonitor:
    """Stall, line-search and best-state bookkeeping of one :meth:`~miniff.fit.workflow.FitWorkflow.run`.

    Parameters
    ----------
    select_best : {"loss", "energy", "forces"}
        Criterion of the best state (see the module docstring).
    forces : bool
        Whether forces are fitted (``"forces"`` needs them).
    stall_epochs : int or None
        Window of the stall rule, epochs (None: never stop for a slow decrease; an optimizer that does not move
        the parameters still stops the fit).
    stall_tolerance : float
        Relative decrease the window must achieve (>= 0).
    """

    def __init__(self, select_best="loss", forces=False, stall_epochs=STALL_EPOCHS, stall_tolerance=STALL_TOLERANCE):
        if select_best not in SELECT_BEST:
            raise ValueError(f"select_best must be one of {list(SELECT_BEST)}, got {select_best!r}")
        if select_best == "forces" and not forces:
            raise ValueError("select_best: 'forces' needs a force fit (prepare(forces=True))")
        if stall_epochs is not None and (isinstance(stall_epochs, bool) or not isinstance(stall_epochs, int)
                                         or stall_epochs < 1):
            raise ValueError(f"stall_epochs must be None or a positive integer, got {stall_epochs!r}")
        if isinstance(stall_tolerance, bool) or not isinstance(stall_tolerance, (int, float)) \
                or not 0 <= stall_tolerance < 1:
            raise ValueError(f"stall_tolerance must be a number in [0, 1), got {stall_tolerance!r}")
        self.select_best = select_best
        self.stall_epochs = stall_epochs
        self.stall_tolerance = float(stall_tolerance)
        self.line_search_failures = 0
        self.resets = 0
        self._before = None

    # ------------------------------------------------------------------ best state
    def best_value(self, rec):
        """The ``select_best`` value of an epoch record (validation value when the record has one)."""
        key = SELECT_BEST[self.select_best][0]
        return rec.get(key + "_valid", rec.get(key, math.nan))

    def best_reason(self, validation=True):
        """Words for the summary: ``"lowest validation energy RMSE"``..."""
        return f"lowest {'validation' if validation else 'training'} {SELECT_BEST[self.select_best][1]}"

    # ------------------------------------------------------------------ stops
    def before_epoch(self, networks):
        """Remember the parameters before an epoch (to tell whether the optimizer moved them)."""
        self._before = _parameters(networks)

    def after_epoch(self, workflow, history):
        """The stop reason after the epoch just recorded (None: go on); resets the optimizer after a failed line
        search.  ``history`` holds the records, the last one being this epoch's."""
        optimizer_stop = getattr(workflow.closure.optimizer, "stop_reason", None)
        losses = [r["loss"] for r in history]
        moved = self._before is None or not torch.equal(self._before, _parameters(workflow.nn))
        progress = len(losses) < 2 or losses[-1] < (1 - self.stall_tolerance) * min(losses[:-1])
        if optimizer_stop == "line search":
            self.line_search_failures = 0 if progress else self.line_search_failures + 1
            if self.line_search_failures >= LINE_SEARCH_RETRIES:
                warnings.warn(f"fit {workflow.tag}: stopped at epoch {workflow.epoch}: the optimizer's line search "
                              f"failed in {LINE_SEARCH_RETRIES} epochs in a row (its history dropped after each); "
                              f"{STALL_ADVICE}", FitStallWarning, stacklevel=4)
                return "line search failed"
            workflow.log.info("epoch %d: line search failed; optimizer history dropped", workflow.epoch)
            workflow.closure.optimizer_init()
            self.resets += 1
            return None
        self.line_search_failures = 0
        reason = None
        if not moved:
            if _gradient_vanished(workflow.closure.optimizer):
                return "optimizer: tolerance_grad"
            reason = "the optimizer returned without changing the parameters"
        elif self.stall_epochs is not None and len(losses) > self.stall_epochs:
            window, before = losses[-self.stall_epochs:], losses[:-self.stall_epochs]
            if min(window) > (1 - self.stall_tolerance) * min(before):
                reason = (f"the training loss decreased by less than {100 * self.stall_tolerance:g} % over the "
                          f"last {self.stall_epochs} epochs (loss {losses[-1]:.4g})")
        if reason is None:
            return None
        warnings.warn(f"fit {workflow.tag}: stalled at epoch {workflow.epoch}: {reason}; {STALL_ADVICE}",
                      FitStallWarning, stacklevel=4)
        return "stalled"
