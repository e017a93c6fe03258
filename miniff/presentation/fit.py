"""Plots that judge a fit: convergence curves, parity, error histograms and descriptor ranges.

Private: the public names are re-exported by :mod:`miniff.presentation`.
"""

import json
import os
from itertools import cycle

import numpy as np

from miniff.presentation.common import as_numpy, get_ax, set_label

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


def plot_convergence(y=None, append=True, ax=None, xlabel="Step", ylabel="Error", comment=None, grid=True,
                     labels=None, columns=None):
    """Plot error histories of a fit on a logarithmic y axis.

    Parameters
    ----------
    y : str, os.PathLike, dict or list of sequences, optional
        A fit log file (read with :func:`read_fit_log`, e.g. the JSON Lines log of
        :class:`miniff.ml_util.FitWorkflow`): its ``epoch``/``step`` column gives x and its RMSE and max-residual
        columns are drawn (else its MAE columns, else its loss columns; ``group_*`` columns only on request),
        validation columns (names containing ``valid`` or ``test``) dashed in the colour of their training
        column. Or a dict
        ``{label: sequence}``, or a list of sequences (0.1.4 style, labelled by ``labels``). None only
        formats the Axes.
    append : bool
        When a line with the same label is already on ``ax``, replace its data instead of adding a line (for
        refreshing a live plot).
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes by default.
    xlabel, ylabel : str or bool
        Axis labels; with a log file whose x column is ``epoch`` the default ``"Step"`` becomes ``"Epoch"``.
    comment : str, optional
        Text written in the upper right corner.
    grid : bool
        Draw a grid.
    labels : list of str, optional
        Labels of the sequences when ``y`` is a list.
    columns : list of str, optional
        Log columns to draw (default: every error column).

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = get_ax(ax)
    x = None
    styles = {}
    if y is None:
        series = {}
    elif isinstance(y, (str, os.PathLike)):
        x_name, x, series = _series_from_log(read_fit_log(y), columns)
        if xlabel == "Step" and x_name is not None:
            xlabel = x_name.capitalize()
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
    existing = {line.get_label(): line for line in ax.lines}
    for name, values in series.items():
        values = as_numpy(values, f"y[{name!r}]")
        xs = x if x is not None else np.arange(len(values))
        if append and str(name) in existing:
            existing[str(name)].set_data(xs, values)
        else:
            ax.plot(xs, values, label=str(name), **styles.get(name, {}))
    ax.set_yscale("log")
    ax.relim()
    ax.autoscale_view()
    set_label(ax, "x", xlabel, "Step")
    set_label(ax, "y", ylabel, "Error")
    if comment is not None:
        ax.text(0.98, 0.98, comment, transform=ax.transAxes, ha="right", va="top")
    if grid:
        ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize="small", ncol=2 if len(ax.lines) > 4 else 1)
    return ax


def _with_unit(label, unit_label):
    if isinstance(label, str) and unit_label:
        return f"{label} ({unit_label})"
    return label


def plot_diagonal(*args, replace=False, ax=None, xlabel="Reference", ylabel="Prediction", nmax=None,
                  unit_label=None, window=None, **kw):
    """Parity plot: predictions against reference values, with the black diagonal ``y = x``.

    Parameters
    ----------
    *args : array-like
        Pairs ``reference, prediction[, reference2, prediction2, ...]``; each array may have any shape
        (forces ``[N, 3]`` are flattened) and a pair must have equal sizes. Units are the caller's (e.g. eV).
    replace : bool
        Remove the points and the diagonal drawn by earlier calls on ``ax`` first.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes by default.
    xlabel, ylabel : str or bool
        Axis labels, followed by ``" (<unit_label>)"`` when ``unit_label`` is given.
    nmax : int, optional
        Draw only the ``nmax`` points of each pair with the largest ``|prediction - reference|``.
    unit_label : str, optional
        Unit shown in the labels, e.g. ``"eV/atom"``.
    window : tuple of float, optional
        ``(low, high)``: points are clipped into this range and both axes are limited to it.
    **kw
        Passed to :meth:`matplotlib.axes.Axes.scatter` (e.g. ``label``).

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
    ax = get_ax(ax)
    if replace:
        for artist in list(ax.collections) + [line for line in ax.lines if line.get_gid() == "miniff-diagonal"]:
            artist.remove()
    kw.setdefault("s", 9)
    lo, hi = np.inf, -np.inf
    for k in range(0, len(args), 2):
        ref = as_numpy(args[k], f"args[{k}]").ravel()
        pred = as_numpy(args[k + 1], f"args[{k + 1}]").ravel()
        if ref.shape != pred.shape:
            raise ValueError(f"pair {k // 2}: reference has {ref.size} values, prediction {pred.size}")
        if nmax is not None and ref.size > nmax:
            worst = np.argsort(np.abs(pred - ref))[-nmax:]
            ref, pred = ref[worst], pred[worst]
        if window is not None:
            ref, pred = np.clip(ref, *window), np.clip(pred, *window)
        ax.scatter(ref, pred, **kw)
        if ref.size:
            lo, hi = min(lo, ref.min(), pred.min()), max(hi, ref.max(), pred.max())
    for line in ax.lines:
        if line.get_gid() == "miniff-diagonal":
            old = line.get_xdata()
            lo, hi = min(lo, old[0]), max(hi, old[-1])
            line.remove()
    if window is not None:
        lo, hi = window
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], color="black", lw=1, gid="miniff-diagonal", zorder=0)
    if window is not None:
        ax.set_xlim(*window)
        ax.set_ylim(*window)
    set_label(ax, "x", _with_unit(xlabel, unit_label), "Reference")
    set_label(ax, "y", _with_unit(ylabel, unit_label), "Prediction")
    return ax


def plot_error_histogram(reference, prediction, bins=50, ax=None, unit_label=None, xlabel="Error",
                         ylabel="Count", stats=True, **kw):
    """Histogram of residuals ``prediction - reference``.

    Parameters
    ----------
    reference, prediction : array-like
        Arrays of equal size in the caller's unit (e.g. eV/atom, or forces ``[N, 3]`` in eV/Å, flattened).
    bins : int or sequence of float
        Passed to :meth:`matplotlib.axes.Axes.hist`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes by default.
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


def _rows(features, mask, argument):
    """Rows ``[n, D]`` of descriptor values from an array, a tensor or a per-point dataset."""
    if hasattr(features, "features") and hasattr(features, "mask"):
        if mask is None:
            mask = features.mask
        features = features.features
    values = as_numpy(features, argument)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim < 2:
        raise ValueError(f"{argument} must have shape (..., n_features), got {values.shape}")
    if mask is not None:
        m = as_numpy(mask, f"mask of {argument}").astype(bool)
        if m.shape != values.shape[:-1]:
            raise ValueError(f"mask of {argument} has shape {m.shape}, expected {values.shape[:-1]}")
        values = values[m]
    return values.reshape(-1, values.shape[-1])


def plot_descriptor_range(features, structure=None, ax=None, mask=None, labels=None, normalize=False,
                          xlabel="Descriptor", ylabel=True, **kw):
    """Show the span of every descriptor in the training data, optionally with one structure on top.

    Each descriptor gets a bar from its minimum to its maximum over the training atoms and a tick at its
    mean. The overlaid structure's values are drawn as dots: black inside the training span, red outside
    it. A red dot means the network is asked to extrapolate for that atom.

    Parameters
    ----------
    features : array-like of shape (..., n_features), or a per-point dataset
        Training descriptor values (e.g. ``[S, P, D]`` features of :class:`miniff.ml.PerPointDataset`, whose
        mask is then applied, or ``[N, D]`` values from :func:`miniff.potentials.eval_descriptors`).
    structure : array-like of shape (..., n_features), optional
        Descriptor values of the atoms of one structure.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes by default.
    mask : array-like of shape features.shape[:-1], optional
        True for rows of ``features`` that are real atoms.
    labels : list of str, optional
        Names of the descriptors (x tick labels).
    normalize : bool
        Map each descriptor so that its training span is [0, 1] (makes descriptors of different scale
        comparable).
    xlabel, ylabel : str or bool
        Axis labels; the default y label is ``"Descriptor value"`` (``"Scaled descriptor value"`` when
        normalised).
    **kw
        Passed to :meth:`matplotlib.axes.Axes.bar`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    train = _rows(features, mask, "features")
    if train.shape[0] == 0:
        raise ValueError("features holds no rows (all masked?)")
    n_f = train.shape[1]
    if labels is not None and len(labels) != n_f:
        raise ValueError(f"labels has {len(labels)} entries for {n_f} descriptors")
    lo, hi, mean = train.min(axis=0), train.max(axis=0), train.mean(axis=0)
    offset, scale = np.zeros(n_f), np.ones(n_f)
    if normalize:
        offset, scale = lo, np.where(hi > lo, hi - lo, 1.0)
    ax = get_ax(ax)
    x = np.arange(n_f)
    kw.setdefault("color", "C0")
    kw.setdefault("alpha", 0.4)
    kw.setdefault("width", 0.6)
    ax.bar(x, (hi - lo) / scale, bottom=(lo - offset) / scale, label="training range", **kw)
    ax.plot(x, (mean - offset) / scale, linestyle="none", marker="_", markersize=12, color="C0")
    if structure is not None:
        atoms = _rows(structure, None, "structure")
        if atoms.shape[1] != n_f:
            raise ValueError(f"structure has {atoms.shape[1]} descriptors, features has {n_f}")
        xs = np.broadcast_to(x, atoms.shape)
        outside = (atoms < lo) | (atoms > hi)
        ax.scatter(xs[~outside], ((atoms - offset) / scale)[~outside], s=12, color="black", label="structure")
        if outside.any():
            ax.scatter(xs[outside], ((atoms - offset) / scale)[outside], s=16, color="red",
                       label="outside training range")
    if labels is not None:
        ax.set_xticks(x, [str(label) for label in labels], rotation=90)
    set_label(ax, "x", xlabel, "Descriptor")
    set_label(ax, "y", ylabel, "Scaled descriptor value" if normalize else "Descriptor value")
    return ax
