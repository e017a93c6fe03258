"""The short reports printed at the end of a fit or a test: errors with units, next to the spread of the data.

:func:`error_table` computes, per data set and per structure group, the RMSE of the per-atom energies
(eV/atom) and of the force components (eV/Å) together with the standard deviation of the reference values
(the "spread": an RMSE is only good or bad compared with it); :func:`format_table` turns it into lines in
meV/atom and meV/Å.  :func:`fit_summary` and :func:`errors_summary` are the texts of
:meth:`FitWorkflow.summary <miniff.fit.workflow.FitWorkflow.summary>` and
:meth:`OneShotWorkflow.summary <miniff.fit.apply.OneShotWorkflow.summary>`.
"""

import math

import numpy as np

__all__ = ["error_table", "format_table", "fit_summary", "errors_summary", "STOP_REASONS"]

#: Explanations of ``FitWorkflow.stop_reason`` values in summaries.
STOP_REASONS = {
    "n_epochs": "the epoch limit was reached",
    "converged": "the convergence criteria were met",
    "early stopping": "no better validation value for early_stopping epochs",
    "non-finite loss": "the loss became NaN or infinite",
    "after_epoch": "after_epoch asked to stop",
    "stalled": "the loss stopped decreasing: see the warning",
    "line search failed": "the optimizer's line search failed repeatedly: see the warning",
    "optimizer: tolerance_grad": "the loss gradient is below the optimizer's tolerance_grad",
    "optimizer: tolerance_change": "the loss changed by less than the optimizer's tolerance_change",
}


def _stats(e_ref, e_pred, f_ref, f_pred):
    """RMSE and reference spread of per-atom energies (arrays [S], eV/atom) and force components (eV/Å)."""
    out = {"n": len(e_ref)}
    if len(e_ref):
        out["energy_rmse"] = math.sqrt(float(np.mean((e_pred - e_ref) ** 2)))
        out["energy_spread"] = float(np.std(e_ref))
    if f_ref is not None and len(f_ref):
        out["force_rmse"] = math.sqrt(float(np.mean((f_pred - f_ref) ** 2)))
        out["force_spread"] = float(np.std(f_ref))
    return out


def error_table(rows):
    """Errors and spreads of prediction sets.

    Parameters
    ----------
    rows : list of (label, dict)
        Per data set: ``energy_ref``, ``energy_pred`` (ndarray [S], eV/atom); optionally ``forces_ref``,
        ``forces_pred`` (lists of S arrays of force components, eV/Å; an empty array for a structure without
        reference forces) and ``groups`` (a label per structure, or None).

    Returns
    -------
    list of (label, dict)
        Per set, then per group of that set (label ``"  <set>, group <g>"``): ``n`` (structures),
        ``energy_rmse``, ``energy_spread`` (eV/atom), ``force_rmse``, ``force_spread`` (eV/Å) when forces exist.
    """
    out = []
    for label, p in rows:
        e_ref, e_pred = np.asarray(p["energy_ref"], float), np.asarray(p["energy_pred"], float)
        f_ref, f_pred = p.get("forces_ref"), p.get("forces_pred")

        def cat(items, sel):
            return None if items is None else np.concatenate([np.asarray(items[i], float).ravel() for i in sel] or
                                                             [np.zeros(0)])

        everything = range(len(e_ref))
        out.append((label, _stats(e_ref, e_pred, cat(f_ref, everything), cat(f_pred, everything))))
        groups = p.get("groups")
        if groups is not None and len(set(groups)) > 1:
            for g in sorted(set(groups)):
                sel = [i for i, x in enumerate(groups) if x == g]
                out.append((f"  {label}, group {g}", _stats(e_ref[sel], e_pred[sel], cat(f_ref, sel),
                                                              cat(f_pred, sel))))
    return out


def format_table(table):
    """Lines of an :func:`error_table` in meV/atom and meV/Å (RMSE, and the spread of the references)."""
    width = max([10] + [len(label) for label, _ in table]) + 2
    lines = [f"{'':{width}s}{'cells':>6s}   {'energy RMSE (spread)':>28s}   {'force RMSE (spread)':>26s}"]
    for label, s in table:
        energy = (f"{1000 * s['energy_rmse']:8.2f} ({1000 * s['energy_spread']:8.2f}) meV/atom"
                  if "energy_rmse" in s else "")
        force = (f"{1000 * s['force_rmse']:8.1f} ({1000 * s['force_spread']:7.1f}) meV/Å"
                 if "force_rmse" in s else "")
        lines.append(f"{label:{width}s}{s['n']:6d}   {energy:>28s}   {force:>26s}".rstrip())
    if not any("force_rmse" in s for _, s in table):
        lines[0] = lines[0].replace("force RMSE (spread)", "").rstrip()
    return lines


def fit_summary(fit, table):
    """The end-of-fit text of a :class:`~miniff.fit.workflow.FitWorkflow` (after ``run``)."""
    reason = fit.stop_reason
    n_run = fit.epoch - (fit.resumed_from or 0)
    lines = [f"fit {fit.tag}: {fit.epoch} epochs ({n_run} in this run) in {fit.wall_time:.1f} s; "
             f"stopped: {reason} ({STOP_REASONS.get(reason, reason)})"]
    if reason == "n_epochs" and len(fit.history) > 1 and fit.history[-1]["loss"] < 0.99 * fit.history[-2]["loss"]:
        lines[0] += "; the loss was still decreasing: more epochs may help"
    best = getattr(fit, "best_epoch_info", None)
    if best is not None:
        lines.append(f"networks of epoch {best[0]} ({best[1]})")
    if getattr(fit, "ran_on", None):
        lines.append(f"ran on {fit.ran_on}")
    lines.extend(format_table(table))
    return "\n".join(lines)


def errors_summary(tag, n_cells, table):
    """The text of a test stage: the errors of saved potentials on ``n_cells`` structures."""
    return "\n".join([f"test {tag}: {n_cells} structures"] + format_table(table))
