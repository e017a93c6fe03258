"""The short reports printed at the end of a fit or a test: errors with units, next to the spread of the data.

:func:`error_table` computes, per data set and per structure group, the RMSE of the per-atom energies
(eV/atom), of the force components (eV/Å) and of the stress components (eV/Å³, when stresses are fitted)
together with the standard deviation of the reference values (the "spread": an RMSE is only good or bad
compared with it); :func:`format_table` turns it into lines in meV/atom, meV/Å and meV/Å³.
:func:`fit_summary` and :func:`errors_summary` are the texts of
:meth:`FitWorkflow.summary <miniff.fit.workflow.FitWorkflow.summary>` and
:meth:`OneShotWorkflow.summary <miniff.fit.apply.OneShotWorkflow.summary>`.  A charge fit reports charge errors
(e) per data set and species instead (:func:`charge_table`, :func:`charge_fit_summary`).
"""

import math

import numpy as np

__all__ = ["error_table", "format_table", "fit_summary", "progress_postfix", "errors_summary",
           "STOP_REASONS", "charge_table",
           "format_charge_table", "charge_fit_summary"]

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


def _stats(e_ref, e_pred, f_ref, f_pred, s_ref=None, s_pred=None):
    """RMSE and reference spread of per-atom energies (arrays [S], eV/atom), force components (eV/Å) and stress
    components (eV/Å³)."""
    out = {"n": len(e_ref)}
    if len(e_ref):
        out["energy_rmse"] = math.sqrt(float(np.mean((e_pred - e_ref) ** 2)))
        out["energy_spread"] = float(np.std(e_ref))
    for name, ref, pred in (("force", f_ref, f_pred), ("stress", s_ref, s_pred)):
        if ref is not None and len(ref):
            out[f"{name}_rmse"] = math.sqrt(float(np.mean((pred - ref) ** 2)))
            out[f"{name}_spread"] = float(np.std(ref))
    return out


def error_table(rows):
    """Errors and spreads of prediction sets.

    Parameters
    ----------
    rows : list of (label, dict)
        Per data set: ``energy_ref``, ``energy_pred`` (ndarray [S], eV/atom); optionally ``forces_ref``,
        ``forces_pred`` (lists of S arrays of force components, eV/Å; an empty array for a structure without
        reference forces), ``stress_ref``, ``stress_pred`` (lists of S arrays of stress components, eV/Å³; empty
        without a reference stress) and ``groups`` (a label per structure, or None).

    Returns
    -------
    list of (label, dict)
        Per set, then per group of that set (label ``"  <set>, group <g>"``): ``n`` (structures),
        ``energy_rmse``, ``energy_spread`` (eV/atom), ``force_rmse``, ``force_spread`` (eV/Å) when forces exist,
        ``stress_rmse``, ``stress_spread`` (eV/Å³) when stresses exist.
    """
    out = []
    for label, p in rows:
        e_ref, e_pred = np.asarray(p["energy_ref"], float), np.asarray(p["energy_pred"], float)
        f_ref, f_pred = p.get("forces_ref"), p.get("forces_pred")
        s_ref, s_pred = p.get("stress_ref"), p.get("stress_pred")

        def cat(items, sel):
            return None if items is None else np.concatenate([np.asarray(items[i], float).ravel() for i in sel] or
                                                             [np.zeros(0)])

        everything = range(len(e_ref))
        out.append((label, _stats(e_ref, e_pred, cat(f_ref, everything), cat(f_pred, everything),
                                  cat(s_ref, everything), cat(s_pred, everything))))
        groups = p.get("groups")
        if groups is not None and len(set(groups)) > 1:
            for g in sorted(set(groups)):
                sel = [i for i, x in enumerate(groups) if x == g]
                out.append((f"  {label}, group {g}", _stats(e_ref[sel], e_pred[sel], cat(f_ref, sel),
                                                              cat(f_pred, sel), cat(s_ref, sel), cat(s_pred, sel))))
    return out


def format_table(table):
    """Lines of an :func:`error_table` in meV/atom, meV/Å and meV/Å³ (RMSE, and the spread of the references)."""
    width = max([10] + [len(label) for label, _ in table]) + 2
    stress = any("stress_rmse" in s for _, s in table)
    lines = [f"{'':{width}s}{'cells':>6s}   {'energy RMSE (spread)':>28s}   {'force RMSE (spread)':>26s}"
             + (f"   {'stress RMSE (spread)':>28s}" if stress else "")]
    for label, s in table:
        energy = (f"{1000 * s['energy_rmse']:8.2f} ({1000 * s['energy_spread']:8.2f}) meV/atom"
                  if "energy_rmse" in s else "")
        force = (f"{1000 * s['force_rmse']:8.1f} ({1000 * s['force_spread']:7.1f}) meV/Å"
                 if "force_rmse" in s else "")
        line = f"{label:{width}s}{s['n']:6d}   {energy:>28s}   {force:>26s}"
        if stress:
            line += (f"   {1000 * s['stress_rmse']:8.3f} ({1000 * s['stress_spread']:7.3f}) meV/Å³"
                     if "stress_rmse" in s else "")
        lines.append(line.rstrip())
    if not any("force_rmse" in s for _, s in table):
        lines[0] = lines[0].replace("force RMSE (spread)", " " * 19 if stress else "").rstrip()
    return lines


def fit_summary(fit, table):
    """The end-of-fit text of a :class:`~miniff.fit.workflow.FitWorkflow` (after ``run``)."""
    return "\n".join(_fit_header(fit) + format_table(table))


def _fit_header(fit):
    """The first lines of an end-of-fit text: epochs, time, why it stopped, which epoch's networks are kept."""
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
    return lines


def errors_summary(tag, n_cells, table):
    """The text of a test stage: the errors of saved potentials on ``n_cells`` structures."""
    return "\n".join([f"test {tag}: {n_cells} structures"] + format_table(table))


def charge_table(rows):
    """Charge errors and spreads of prediction sets.

    Parameters
    ----------
    rows : list of (label, dict)
        Per data set: ``charges_ref``, ``charges_pred``: ``{species: ndarray [n_atoms_of_species]}`` (e).

    Returns
    -------
    list of (label, dict)
        Per set (all species), then per species (label ``"  <set>, <species>"``): ``n`` (atoms), ``charge_rmse``,
        ``charge_max`` and ``charge_spread`` (the standard deviation of the reference charges), e.
    """
    def stats(ref, pred):
        if not len(ref):
            return {"n": 0}
        d = pred - ref
        return {"n": len(ref), "charge_rmse": math.sqrt(float(np.mean(d**2))), "charge_max": float(np.abs(d).max()),
                "charge_spread": float(np.std(ref))}

    out = []
    for label, p in rows:
        species = sorted(p["charges_ref"])
        ref = {s: np.asarray(p["charges_ref"][s], float).ravel() for s in species}
        pred = {s: np.asarray(p["charges_pred"][s], float).ravel() for s in species}
        out.append((label, stats(np.concatenate([ref[s] for s in species] or [np.zeros(0)]),
                                 np.concatenate([pred[s] for s in species] or [np.zeros(0)]))))
        if len(species) > 1:
            out.extend((f"  {label}, {s}", stats(ref[s], pred[s])) for s in species)
    return out


def format_charge_table(table):
    """Lines of a :func:`charge_table` in e (RMSE, largest error, and the spread of the references)."""
    width = max([10] + [len(label) for label, _ in table]) + 2
    lines = [f"{'':{width}s}{'atoms':>7s}   {'charge RMSE (spread)':>24s}   {'max error':>10s}"]
    for label, s in table:
        if "charge_rmse" not in s:
            lines.append(f"{label:{width}s}{s['n']:7d}")
            continue
        lines.append(f"{label:{width}s}{s['n']:7d}   {s['charge_rmse']:10.4g} ({s['charge_spread']:8.4g}) e   "
                     f"{s['charge_max']:8.4g} e")
    return lines


def charge_fit_summary(fit, table):
    """The end-of-fit text of a :class:`~miniff.fit.charge_workflow.ChargeFitWorkflow` (after ``run``)."""
    return "\n".join(_fit_header(fit) + format_charge_table(table))


def progress_postfix(rec):
    """The progress bar's short text of an epoch record: losses and RMSEs (meV/atom, e, eV/Å)."""
    out = {"loss": f"{rec['loss']:.3g}"}
    if "loss_valid" in rec:
        out["val"] = f"{rec['loss_valid']:.3g}"
    if "energy_rmse" in rec:
        out["E"] = f"{1000 * rec['energy_rmse']:.2f}meV/at"
    if "charge_rmse" in rec:
        out["q"] = f"{rec['charge_rmse']:.4f}e"
    if "force_rmse" in rec:
        out["F"] = f"{rec['force_rmse']:.3f}eV/Å"
    return out
