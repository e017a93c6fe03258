"""Parity plots and error histograms: how predictions compare with reference values.

Private: the public names are re-exported by :mod:`miniff.presentation`.
"""

import weakref

import numpy as np

from miniff.presentation.common import as_numpy, axes_list, get_ax, panels_result, set_label

# Statistics of the series drawn on each parity Axes (several calls may draw into one Axes).
_PARITY_STATS = weakref.WeakKeyDictionary()
# Colour of each group on each parity Axes (the same group has the same colour in every series).
_GROUP_COLORS = weakref.WeakKeyDictionary()
_DIAGONAL = "miniff-diagonal"
_STATS_TEXT = "miniff-parity-stats"


def _with_unit(label, unit_label):
    if isinstance(label, str) and unit_label:
        return f"{label} ({unit_label})"
    return label


def parity_statistics(reference, prediction):
    """RMSE, MAE and number of points of ``prediction - reference``.

    Parameters
    ----------
    reference, prediction : array-like
        Equal sizes, any shape (flattened), the caller's unit.

    Returns
    -------
    dict
        ``{"rmse": float, "mae": float, "n": int}`` in the unit of the inputs (NaN errors for no points).
    """
    ref = as_numpy(reference, "reference").ravel()
    pred = as_numpy(prediction, "prediction").ravel()
    if ref.shape != pred.shape:
        raise ValueError(f"reference has {ref.size} values but prediction has {pred.size}")
    err = pred - ref
    if not err.size:
        return {"rmse": float("nan"), "mae": float("nan"), "n": 0}
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "n": int(err.size)}


def _group_labels(groups, shape, k):
    """Group label of every point of a pair whose reference has ``shape`` (flattened)."""
    g = np.asarray(groups, dtype=object)
    if g.shape == shape:
        return g.ravel()
    if g.ndim == 1 and len(shape) >= 1 and g.shape[0] == shape[0]:
        return np.repeat(g, int(np.prod(shape[1:], dtype=int)))
    raise ValueError(f"groups[{k}] has shape {g.shape}; expected {shape} or ({shape[0] if shape else 0},)")


def _write_stats(ax, unit_label):
    """The RMSE / MAE / N of every series on ``ax`` in its upper left corner."""
    for text in [t for t in ax.texts if t.get_gid() == _STATS_TEXT]:
        text.remove()
    entries = _PARITY_STATS.get(ax, [])
    if not entries:
        return
    unit = f" {unit_label}" if unit_label else ""
    lines = []
    for label, st in entries:
        lines.append(f"{label}: N = {st['n']}" if label else f"N = {st['n']}")
        lines.append(f"  RMSE {st['rmse']:.3g}, MAE {st['mae']:.3g}{unit}")
    ax.text(0.02, 0.98, "\n".join(lines), transform=ax.transAxes, ha="left", va="top", fontsize="small",
            gid=_STATS_TEXT, bbox=dict(boxstyle="round", facecolor="white", alpha=0.8, edgecolor="0.8"))


def plot_diagonal(*args, replace=False, ax=None, xlabel="Reference", ylabel="Prediction", nmax=None,
                  unit_label=None, window=None, groups=None, stats=True, **kw):
    """Parity plot: predictions against reference values, with the diagonal ``y = x``.

    The figure: one dot per value (x: reference, y: prediction, both labelled with ``unit_label``), the black
    diagonal, equal scales and limits on both axes (a square plot), and, with ``stats``, a box in the upper left
    corner giving the RMSE, the MAE and the number of points of every series drawn on the Axes (calls that
    draw into the same Axes add lines to the box). Dots are semi-transparent (``alpha=0.5`` unless given) so
    a series drawn later does not hide an earlier one; give each series a ``label`` (e.g. ``"training"``,
    ``"validation"``) and a ``marker``. With ``groups`` each group gets its own colour and legend entry.

    Parameters
    ----------
    *args : array-like
        Pairs ``reference, prediction[, reference2, prediction2, ...]``; each array may have any shape
        (forces ``[N, 3]`` are flattened) and a pair must have equal sizes. Units are the caller's (e.g. eV).
    replace : bool
        Remove the points, statistics and the diagonal drawn by earlier calls on ``ax`` first.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    xlabel, ylabel : str or bool
        Axis labels, followed by ``" (<unit_label>)"`` when ``unit_label`` is given.
    nmax : int, optional
        Draw only the ``nmax`` points of each pair with the largest ``|prediction - reference|`` (the
        statistics still use every point).
    unit_label : str, optional
        Unit shown in the labels and the statistics, e.g. ``"eV/atom"``.
    window : tuple of float, optional
        ``(low, high)``: points are clipped into this range and both axes are limited to it.
    groups : sequence, optional
        One group label per point of each pair: a list with one entry per pair, each of the reference's shape
        or of its first dimension (e.g. one structure group per force row). Colours the dots by group.
    stats : bool
        Write RMSE, MAE and N of each series on the plot.
    **kw
        Passed to :meth:`matplotlib.axes.Axes.scatter` (e.g. ``label``, ``marker``, ``color``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    if len(args) == 0 or len(args) % 2:
        raise ValueError(f"plot_diagonal expects pairs of arrays (reference, prediction), got {len(args)} arrays")
    if nmax is not None and (not isinstance(nmax, (int, np.integer)) or nmax < 1):
        raise ValueError(f"nmax must be a positive integer, got {nmax!r}")
    if window is not None and (len(window) != 2 or not window[0] < window[1]):
        raise ValueError(f"window must be (low, high) with low < high, got {window!r}")
    n_pairs = len(args) // 2
    if groups is not None and (isinstance(groups, str) or len(groups) != n_pairs):
        raise ValueError(f"groups must hold one sequence per (reference, prediction) pair ({n_pairs})")
    ax = get_ax(ax)
    if replace:
        for artist in list(ax.collections) + [line for line in ax.lines if line.get_gid() == _DIAGONAL]:
            artist.remove()
        _PARITY_STATS.pop(ax, None)
        _GROUP_COLORS.pop(ax, None)
    kw.setdefault("s", 9)
    kw.setdefault("alpha", 0.5)
    kw.setdefault("linewidths", 0)
    label = kw.pop("label", None)
    lo, hi = np.inf, -np.inf
    for k in range(0, len(args), 2):
        ref_in = as_numpy(args[k], f"args[{k}]")
        pred = as_numpy(args[k + 1], f"args[{k + 1}]").ravel()
        ref = ref_in.ravel()
        if ref.shape != pred.shape:
            raise ValueError(f"pair {k // 2}: reference has {ref.size} values, prediction {pred.size}")
        group_of = None if groups is None else _group_labels(groups[k // 2], ref_in.shape, k // 2)
        if stats:
            _PARITY_STATS.setdefault(ax, []).append((label, parity_statistics(ref, pred)))
        if nmax is not None and ref.size > nmax:
            worst = np.argsort(np.abs(pred - ref))[-nmax:]
            ref, pred = ref[worst], pred[worst]
            group_of = None if group_of is None else group_of[worst]
        if window is not None:
            ref, pred = np.clip(ref, *window), np.clip(pred, *window)
        if group_of is None:
            ax.scatter(ref, pred, label=label if k == 0 else None, **kw)
        else:
            colors = _GROUP_COLORS.setdefault(ax, {})
            for g in sorted(set(group_of), key=str):
                sel = group_of == g
                color = colors.setdefault(g, f"C{len(colors) % 10}")
                ax.scatter(ref[sel], pred[sel], label=f"{label}: {g}" if label else str(g), **{**kw, "color": color})
        if ref.size:
            lo, hi = min(lo, ref.min(), pred.min()), max(hi, ref.max(), pred.max())
    for line in ax.lines:
        if line.get_gid() == _DIAGONAL:
            old = line.get_xdata()
            lo, hi = min(lo, old[0]), max(hi, old[-1])
            line.remove()
    if window is not None:
        lo, hi = window
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], color="black", lw=1, gid=_DIAGONAL, zorder=0, label="_nolegend_")
        pad = 0.0 if window is not None else 0.04 * ((hi - lo) or 1.0)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal", adjustable="box")
    set_label(ax, "x", _with_unit(xlabel, unit_label), "Reference")
    set_label(ax, "y", _with_unit(ylabel, unit_label), "Prediction")
    if stats:
        _write_stats(ax, unit_label)
    return ax


#: Panels of :func:`plot_parity`: (key prefix in a prediction dict, title, unit).
_PARITY_PANELS = (("energy", "Energy per atom", "eV/atom"), ("forces", "Force components", "eV/Å"))
_SERIES_STYLE = ({"marker": "o", "color": "C0"}, {"marker": "^", "color": "C1"}, {"marker": "s", "color": "C2"})


def plot_parity(predictions, ax=None, groups=None, energy_unit_label="eV/atom", force_unit_label="eV/Å"):
    """Parity plots of a fit: energies per atom and force components, one panel each.

    The figure: side by side, predicted against reference energies per atom and force components (panels for
    the quantities present), each square with its diagonal, axes labelled with units, a box giving RMSE, MAE
    and N of every series, and a legend in the lower right corner (below the diagonal, where no point of a
    good fit lies). Series are semi-transparent and differ in colour and marker
    (training blue dots, validation orange triangles drawn on top).

    Parameters
    ----------
    predictions : dict
        ``{series label: prediction dict}``, e.g. ``{"training": fit.predict("learn"), "validation":
        fit.predict("test")}``; a prediction dict has ``energy_ref``/``energy_pred`` (eV/atom, ``[S]``) and
        optionally ``forces_ref``/``forces_pred`` (eV/Å, any shape) as returned by
        :meth:`miniff.ml_util.FitWorkflow.predict`.
    ax : sequence of matplotlib.axes.Axes, optional
        One Axes per panel; a new figure by default.
    groups : dict, optional
        ``{series label: one group label per structure}`` (e.g. ``fit.groups`` mapped to the series): colours
        the energy panel by group.
    energy_unit_label, force_unit_label : str
        Units written on the axes (the values are not converted).

    Returns
    -------
    matplotlib.axes.Axes or ndarray of Axes
        One Axes per panel (energy, then forces).
    """
    if not isinstance(predictions, dict) or not predictions:
        raise TypeError("predictions must be a non-empty dict {label: prediction dict}")
    for label, p in predictions.items():
        if not isinstance(p, dict) or "energy_ref" not in p or "energy_pred" not in p:
            raise ValueError(f"predictions[{label!r}] must be a dict with 'energy_ref' and 'energy_pred'")
    with_forces = all("forces_ref" in p and "forces_pred" in p for p in predictions.values())
    panels = _PARITY_PANELS if with_forces else _PARITY_PANELS[:1]
    units = {"energy": energy_unit_label, "forces": force_unit_label}
    axes = axes_list(ax, len(panels), rows=False, figsize=(5.2 * len(panels), 5.6))
    for (key, title, _), panel in zip(panels, axes, strict=True):
        for k, (label, p) in enumerate(predictions.items()):
            style = dict(_SERIES_STYLE[k % len(_SERIES_STYLE)])
            g = None
            if key == "energy" and groups is not None and groups.get(label) is not None:
                g = [groups[label]]
                style.pop("color")
            plot_diagonal(p[f"{key}_ref"], p[f"{key}_pred"], ax=panel, unit_label=units[key], label=label,
                          groups=g, s=14 if key == "energy" else 6, **style)
        panel.set_title(title)
        panel.legend(loc="lower right", fontsize="small", markerscale=1.5)
    return panels_result(axes)


def plot_error_histogram(reference, prediction, bins=50, ax=None, unit_label=None, xlabel="Error",
                         ylabel="Count", stats=True, **kw):
    """Histogram of residuals ``prediction - reference``.

    The figure: bars counting residuals per bin (x: error in ``unit_label``, y: count) and, with ``stats``,
    the RMSE and the largest absolute residual written in the upper right corner.

    Parameters
    ----------
    reference, prediction : array-like
        Arrays of equal size in the caller's unit (e.g. eV/atom, or forces ``[N, 3]`` in eV/Å, flattened).
    bins : int or sequence of float
        Passed to :meth:`matplotlib.axes.Axes.hist`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    unit_label : str, optional
        Unit shown in the x label (``"Error (<unit_label>)"``).
    xlabel, ylabel : str or bool
        Axis labels.
    stats : bool
        Write the RMSE and the maximal absolute residual in the upper right corner.
    **kw
        Passed to :meth:`matplotlib.axes.Axes.hist`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ref = as_numpy(reference, "reference").ravel()
    pred = as_numpy(prediction, "prediction").ravel()
    if ref.shape != pred.shape:
        raise ValueError(f"reference has {ref.size} values but prediction has {pred.size}")
    if ref.size == 0:
        raise ValueError("reference and prediction are empty")
    ax = get_ax(ax)
    err = pred - ref
    ax.hist(err, bins=bins, **kw)
    set_label(ax, "x", _with_unit(xlabel, unit_label), "Error")
    set_label(ax, "y", ylabel, "Count")
    if stats:
        unit = f" {unit_label}" if unit_label else ""
        rmse = float(np.sqrt(np.mean(err**2)))
        text = f"RMSE {rmse:.3g}{unit}\nmax |error| {np.abs(err).max():.3g}{unit}"
        ax.text(0.98, 0.98, text, transform=ax.transAxes, ha="right", va="top")
    return ax


