"""Convergence of a fit: reading per-epoch fit logs and plotting error histories, one panel per unit.

Private: the public names are re-exported by :mod:`miniff.presentation`.
"""

import json
import os
from itertools import cycle

import numpy as np

from miniff.presentation.common import as_numpy, axes_list, legend_outside, panels_result, set_label

_X_COLUMNS = ("epoch", "step", "iteration")
_SKIP_COLUMNS = ("time", "wall", "seconds", "lr", "learning_rate")
_SPLIT_WORDS = ("validation", "valid", "val", "test", "train", "learn")
_VALIDATION_WORDS = ("validation", "valid", "val", "test")


def read_fit_log(path):
    """Read a per-epoch fit log into columns.

    Three layouts are understood: delimited text with a header line (comma, tab or whitespace separated; a
    leading ``#`` on the header is ignored, later lines starting with ``#`` are comments), JSON lines (one
    object per line) and a JSON list of objects.

    Parameters
    ----------
    path : str or os.PathLike
        The log file.

    Returns
    -------
    dict
        ``{column name: ndarray of shape (n_rows,)}`` in file order; entries that are not numbers become NaN.

    Raises
    ------
    ValueError
        If the file holds no header or no rows.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        rows = json.loads(stripped)
    elif stripped.startswith("{"):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = None
    if rows is not None:
        if not rows or not all(isinstance(row, dict) for row in rows):
            raise ValueError(f"{os.fspath(path)!r}: expected JSON objects, one per epoch")
        names = list(dict.fromkeys(k for row in rows for k in row))
        return {name: np.array([_to_float(row.get(name)) for row in rows]) for name in names}

    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{os.fspath(path)!r}: the fit log is empty")
    header = lines[0].lstrip("#").strip()
    sep = "," if "," in header else ("\t" if "\t" in header else None)
    names = [name.strip() for name in header.split(sep)]
    data = [[] for _ in names]
    for line in lines[1:]:
        if line.lstrip().startswith("#"):
            continue
        fields = [field.strip() for field in line.split(sep)]
        for k in range(len(names)):
            data[k].append(_to_float(fields[k]) if k < len(fields) else np.nan)
    if not data[0]:
        raise ValueError(f"{os.fspath(path)!r}: the fit log has a header but no rows")
    return {name: np.array(column) for name, column in zip(names, data, strict=True)}


def _to_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _metric_name(name):
    """A column name without its train/validation word: columns of one metric share a colour."""
    parts = [p for p in name.lower().replace("-", "_").split("_") if p not in _SPLIT_WORDS]
    return "_".join(parts)


def _is_validation(name):
    return any(p in _VALIDATION_WORDS for p in name.lower().replace("-", "_").split("_"))


def _series_from_log(columns, select):
    """Pick the x column and the error columns of a fit log."""
    lowered = {name.lower(): name for name in columns}
    x_name = next((lowered[c] for c in _X_COLUMNS if c in lowered), None)
    if select is not None:
        missing = [c for c in select if c not in columns]
        if missing:
            raise ValueError(f"columns {missing} are not in the fit log; it has {list(columns)}")
        names = list(select)
    else:
        candidates = [n for n in columns if n != x_name and not any(s in n.lower() for s in _SKIP_COLUMNS)]
        candidates = [n for n in candidates if not n.lower().startswith("group_")]
        names = [n for n in candidates if any(w in n.lower() for w in ("rmse", "max"))]
        names = names or [n for n in candidates if "mae" in n.lower()]
        names = names or [n for n in candidates if "loss" in n.lower()] or candidates
    x = columns[x_name] if x_name is not None else None
    return x_name, x, {name: columns[name] for name in names}



#: Unit of the columns of a fit log, by the quantity named in the column (``miniff.fit.log``).
_QUANTITY_UNITS = (("energy", "eV/atom"), ("force", "eV/Å"), ("loss", "normalised"))
_PANEL_LABELS = {"eV/atom": "Energy error (eV/atom)", "eV/Å": "Force error (eV/Å)", "normalised": "Loss (normalised)"}
_METRIC_WORDS = {"rmse": "RMSE", "mae": "MAE", "max": "max |error|"}


def _column_unit(name):
    """Display unit of a log column (``None`` when its name tells nothing)."""
    parts = name.lower().replace("-", "_").split("_")
    for word, unit in _QUANTITY_UNITS:
        if word in parts or f"{word}s" in parts:
            return unit
    return None


def _readable_label(name):
    """``"energy_rmse_valid"`` -> ``"validation energy RMSE"``; unknown layouts are returned unchanged."""
    parts = name.lower().replace("-", "_").split("_")
    quantity = next((w for w, _ in _QUANTITY_UNITS if w in parts or f"{w}s" in parts), None)
    if quantity is None:
        return name
    split = "validation" if any(p in _VALIDATION_WORDS for p in parts) else "training"
    group = None
    if parts[0] == "group" and len(parts) > 2:
        group, split = parts[1], "validation"  # group metrics of the fit log are on the validation set
    metric = next((_METRIC_WORDS[p] for p in parts if p in _METRIC_WORDS), "")
    text = " ".join(w for w in (split, quantity, metric) if w)
    return f"{text}, group {group}" if group else text


def _best_epoch(columns, x):
    """Epoch of the lowest validation loss (the networks a fit with a validation set keeps), or None."""
    if x is None or "loss_valid" not in columns:
        return None
    loss = np.asarray(columns["loss_valid"], dtype=float)
    if not np.isfinite(loss).any():
        return None
    return x[int(np.nanargmin(loss))]


def plot_convergence(y=None, append=True, ax=None, xlabel="Step", ylabel="Error", comment=None, grid=True,
                     labels=None, columns=None, best="auto"):
    """Plot error histories of a fit on logarithmic y axes, one panel per unit.

    The figure: with a fit log (e.g. the JSON Lines log of :class:`miniff.ml_util.FitWorkflow`), energy
    errors (eV/atom), force errors (eV/Å) and losses (normalised) each get their own panel, stacked with a
    shared epoch axis. Each quantity has one colour; training is a solid line, validation a dashed line in
    the same colour. Lines are labelled in words (``training energy RMSE``, ``validation force max |error|``) in a
    legend to the right of each panel. The epoch whose networks a fit keeps (lowest validation loss, see
    ``best``) is marked by a dotted vertical line, a dot on every curve and a note ("kept: epoch 12").
    Sequences (0.1.4 style) are drawn in one panel labelled ``ylabel``.

    Parameters
    ----------
    y : str, os.PathLike, dict or list of sequences, optional
        A fit log file (read with :func:`read_fit_log`): its ``epoch``/``step`` column gives x and its RMSE and
        max-residual columns are drawn (else its MAE columns, else its loss columns; ``group_*`` columns only
        on request through ``columns``); validation columns have ``valid`` or ``test`` in their names. Or a
        dict ``{label: sequence}``, or a list of sequences (labelled by ``labels``). None only formats the Axes.
    append : bool
        When a line with the same label is already on the Axes, replace its data instead of adding a line
        (refreshing a live plot).
    ax : matplotlib.axes.Axes or sequence of Axes, optional
        Where to draw: one Axes per panel (a single Axes when there is one unit). By default a new figure;
        never pyplot's current Axes.
    xlabel, ylabel : str or bool
        Axis labels; with a log whose x column is ``epoch`` the default ``"Step"`` becomes ``"Epoch"``. Panels of
        a known unit are labelled ``"Energy error (eV/atom)"``, ``"Force error (eV/Å)"`` and
        ``"Loss (normalised)"`` unless ``ylabel`` is a string other than ``"Error"`` and there is one panel.
    comment : str, optional
        Text written in the upper right corner of the first panel.
    grid : bool
        Draw a grid.
    labels : list of str, optional
        Labels of the sequences when ``y`` is a list.
    columns : list of str, optional
        Log columns to draw (default: every error column).
    best : "auto", number, None or False
        x value to mark as the kept epoch: ``"auto"`` takes the epoch of the lowest ``loss_valid`` of a log (the
        networks ``FitWorkflow.run`` keeps with its default ``restore_best=True``; no mark without a validation
        loss), a number marks that epoch, None/False marks nothing (e.g. for a run with ``restore_best=False``,
        which keeps the last epoch).

    Returns
    -------
    matplotlib.axes.Axes or ndarray of Axes
        The Axes, or one Axes per panel (top to bottom) when the log holds several units.

    Raises
    ------
    ValueError
        If ``ax`` does not hold one Axes per panel, or for unknown columns.
    """
    x = None
    styles = {}
    mark = None if best in (None, False) else best
    if y is None:
        series = {}
    elif isinstance(y, (str, os.PathLike)):
        log = read_fit_log(y)
        x_name, x, series = _series_from_log(log, columns)
        if xlabel == "Step" and x_name is not None:
            xlabel = x_name.capitalize()
        if best == "auto":
            mark = _best_epoch(log, x)
        metric_colors = {}
        colors = cycle(f"C{k}" for k in range(10))
        for name in series:
            metric = _metric_name(name)
            if metric not in metric_colors:
                metric_colors[metric] = next(colors)
            styles[name] = dict(color=metric_colors[metric], ls="--" if _is_validation(name) else "-")
    elif isinstance(y, dict):
        series = dict(y)
    else:
        seqs = list(y)
        if seqs and np.ndim(seqs[0]) == 0:
            seqs = [seqs]
        if labels is not None and len(labels) != len(seqs):
            raise ValueError(f"labels has {len(labels)} entries for {len(seqs)} sequences in y")
        names = labels if labels is not None else [f"#{k}" for k in range(len(seqs))]
        series = dict(zip(names, seqs, strict=True))
    if mark == "auto":
        mark = None
    from_log = isinstance(y, (str, os.PathLike))
    units = list(dict.fromkeys(_column_unit(n) if from_log else None for n in series)) or [None]
    axes = axes_list(ax, len(units), sharex=True)
    panel_of = dict(zip(units, axes, strict=True))
    for name, values in series.items():
        values = as_numpy(values, f"y[{name!r}]")
        xs = x if x is not None else np.arange(len(values))
        panel = panel_of[_column_unit(name) if from_log else None]
        label = _readable_label(str(name)) if from_log else str(name)
        existing = {line.get_label(): line for line in panel.lines}
        if append and label in existing:
            existing[label].set_data(xs, values)
        else:
            panel.plot(xs, values, label=label, **styles.get(name, {}))
    for k, (unit, panel) in enumerate(panel_of.items()):
        panel.set_yscale("log")
        _plain_log_labels(panel)
        panel.relim()
        panel.autoscale_view()
        if mark is not None:
            _mark_epoch(panel, mark)
        if x is not None and np.all(np.mod(x, 1) == 0):
            from matplotlib.ticker import MaxNLocator

            panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        set_label(panel, "x", xlabel if k == len(axes) - 1 else False, "Step")
        custom = isinstance(ylabel, str) and ylabel != "Error" and len(axes) == 1
        set_label(panel, "y", ylabel if custom or unit is None else _PANEL_LABELS[unit], "Error")
        if grid:
            panel.grid(True, which="both", alpha=0.3)
        if series:
            legend_outside(panel)
    if comment is not None:
        axes[0].text(0.98, 0.98, comment, transform=axes[0].transAxes, ha="right", va="top")
    return panels_result(axes)


def _mark_epoch(ax, epoch):
    """A dotted vertical line, a dot on every curve and a note at the kept epoch."""
    for line in [line for line in ax.lines if line.get_gid() == "miniff-best"]:
        line.remove()
    for text in [t for t in ax.texts if t.get_gid() == "miniff-best"]:
        text.remove()
    for line in list(ax.lines):
        xs, ys = (np.asarray(v, dtype=float) for v in line.get_data())
        hit = np.flatnonzero(xs == epoch)
        if hit.size:
            ax.plot([epoch], [ys[hit[0]]], "o", color=line.get_color(), ms=5, gid="miniff-best", label="_nolegend_")
    ax.axvline(epoch, color="0.4", ls=":", lw=1, gid="miniff-best", label="_nolegend_")
    low, high = ax.get_xlim()
    right_half = epoch > low + 0.6 * (high - low)
    ax.text(epoch, 0.98, f"kept: epoch {epoch:g} ", transform=ax.get_xaxis_transform(), va="top",
            ha="right" if right_half else "left", fontsize="small", color="0.3", gid="miniff-best",
            bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="none", alpha=0.8))


def _plain_log_labels(ax):
    """Tick labels of a log axis as plain numbers (``0.3``, ``2``) instead of ``3 x 10^-1``."""
    from matplotlib.ticker import FuncFormatter, LogFormatter

    class _Plain(LogFormatter):
        def __call__(self, x, pos=None):
            text = super().__call__(x, pos)
            return f"{x:g}" if text else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(_Plain(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
