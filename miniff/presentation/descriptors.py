"""Plots of descriptor data: the training range of every descriptor and the sensitivity of a fitted potential.

Private: the public names are re-exported by :mod:`miniff.presentation`.
"""

import numpy as np

from miniff.presentation.common import as_numpy, axes_list, get_ax, legend_outside, panels_result, set_label


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

    The figure: for each descriptor (x), a translucent bar from its minimum to its maximum over the training
    atoms and a dash at its mean; the overlaid structure's values are dots, black inside the training span,
    red outside it (a red dot means the network is asked to extrapolate for that atom). A legend to the
    right names every mark; the y range has margins, so values at or below zero stay visible.

    Parameters
    ----------
    features : array-like of shape (..., n_features), or a per-point dataset
        Training descriptor values (e.g. ``[S, P, D]`` features of :class:`miniff.ml.PerPointDataset`, whose
        mask is then applied, or ``[N, D]`` values from :func:`miniff.potentials.eval_descriptors`).
    structure : array-like of shape (..., n_features), optional
        Descriptor values of the atoms of one structure.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
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
    if ax is None:  # room for the rotated descriptor names and the legend
        longest = max((len(str(label)) for label in labels), default=0) if labels is not None else 0
        ax = get_ax(None, figsize=(max(6.4, 4.0 + 0.32 * n_f), 3.6 + 0.075 * longest))
    x = np.arange(n_f)
    kw.setdefault("color", "C0")
    kw.setdefault("alpha", 0.4)
    kw.setdefault("width", 0.6)
    handles = []
    bars = ax.bar(x, (hi - lo) / scale, bottom=(lo - offset) / scale, label="training range (min to max)", **kw)
    handles.append(bars)
    for patch in bars:
        patch.sticky_edges.y.clear()  # no axis limit exactly at a bar end: dots there stay whole
    handles += ax.plot(x, (mean - offset) / scale, linestyle="none", marker="_", markersize=14, markeredgewidth=2,
            color="C0", label="training mean")
    if structure is not None:
        atoms = _rows(structure, None, "structure")
        if atoms.shape[1] != n_f:
            raise ValueError(f"structure has {atoms.shape[1]} descriptors, features has {n_f}")
        xs = np.broadcast_to(x, atoms.shape)
        outside = (atoms < lo) | (atoms > hi)
        handles.append(ax.scatter(xs[~outside], ((atoms - offset) / scale)[~outside], s=12, color="black",
                                  zorder=3, label="structure, inside the training range"))
        if outside.any():
            handles.append(ax.scatter(xs[outside], ((atoms - offset) / scale)[outside], s=16, color="red", zorder=3,
                       label="outside training range"))
    ax.margins(y=0.05)
    ax.autoscale_view()
    if labels is not None:
        ax.set_xticks(x, [str(label) for label in labels], rotation=90)
    set_label(ax, "x", xlabel, "Descriptor")
    set_label(ax, "y", ylabel, "Scaled descriptor value" if normalize else "Descriptor value")
    legend_outside(ax, handles, [h.get_label() for h in handles])
    return ax


def plot_descriptor_sensitivity(sensitivity, ax=None, top=None, xlabel=True, forces=False, **kw):
    """Bar chart ranking the descriptors of each species by their sensitivity (most influential on top).

    The figure: one panel per species (side by side), one horizontal bar per descriptor, longest on top, of
    length ``mean |dE_i/dG_f| * std(G_f)`` in eV (see :mod:`miniff.ml.sensitivity`), labelled with the
    descriptor's tag and parameters; the panel title gives the species and its number of atoms. Descriptors
    at the bottom with (near) zero bars barely change the energies and are candidates for pruning.

    Parameters
    ----------
    sensitivity : dict or DescriptorSensitivity
        The result of :func:`miniff.ml.descriptor_sensitivity` (``{species: DescriptorSensitivity}``), or one
        entry of it.
    ax : matplotlib.axes.Axes or sequence of Axes, optional
        One Axes per species; a new figure by default.
    top : int, optional
        Show only the ``top`` most influential descriptors of each species.
    xlabel : bool or str
        True draws ``"Sensitivity (eV)"`` (``"Force sensitivity (eV/Å)"`` with ``forces``).
    forces : bool
        Rank and draw the force sensitivity ``S^F_f`` (eV/Å) instead (computed with
        ``descriptor_sensitivity(..., forces=True)``).
    **kw
        Passed to :meth:`matplotlib.axes.Axes.barh`.

    Returns
    -------
    matplotlib.axes.Axes or ndarray of Axes
        One Axes per species, in sorted species order.
    """
    if hasattr(sensitivity, "sensitivity") and hasattr(sensitivity, "species"):
        sensitivity = {sensitivity.species: sensitivity}
    if not isinstance(sensitivity, dict) or not sensitivity:
        raise TypeError("sensitivity must be the dict returned by miniff.ml.descriptor_sensitivity")
    if top is not None and (not isinstance(top, (int, np.integer)) or top < 1):
        raise ValueError(f"top must be a positive integer, got {top!r}")
    items = sorted(sensitivity.items())
    height = max(len(s.labels) if top is None else min(top, len(s.labels)) for _, s in items)
    axes = axes_list(ax, len(items), rows=False, figsize=(4.8 * len(items), 1.2 + 0.28 * height))
    kw.setdefault("color", "C0")
    for (species, result), panel in zip(items, axes, strict=True):
        order = result.ranking(forces=forces)
        if top is not None:
            order = order[:top]
        values = as_numpy(result.force_sensitivity if forces else result.sensitivity, "sensitivity")[order]
        y = np.arange(len(order))[::-1]
        panel.barh(y, values, **kw)
        panel.set_yticks(y, [result.labels[k] for k in order], fontsize="small")
        panel.set_title(f"{species} ({result.n_atoms} atoms)")
        set_label(panel, "x", xlabel, "Force sensitivity (eV/Å)" if forces else "Sensitivity (eV)")
        panel.grid(True, axis="x", alpha=0.3)
    return panels_result(axes)
