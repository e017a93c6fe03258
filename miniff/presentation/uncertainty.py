"""Committee uncertainty: the per-atom force spread against the per-atom force error.

Private: the public names are re-exported by :mod:`miniff.presentation`.
"""

import numpy as np

from miniff.presentation.common import as_numpy, get_ax

__all__ = ["plot_spread_vs_error"]


def _binned_rms(x, y, n_bins):
    """Geometric bins of ``x`` (positive) with at least 5 points: (bin centres, RMS of ``y`` per bin)."""
    edges = np.geomspace(x.min(), x.max(), n_bins + 1)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)
    centres, rms = [], []
    for b in range(n_bins):
        sel = which == b
        if sel.sum() >= 5:
            centres.append(np.sqrt(edges[b] * edges[b + 1]))
            rms.append(np.sqrt(np.mean(y[sel] ** 2)))
    return np.array(centres), np.array(rms)


def plot_spread_vs_error(calibration, force_error=None, factor=None, ax=None, n_bins=10, label=None, **kw):
    """Per-atom committee force spread (x) against the committee mean's per-atom force error (y), log-log.

    The figure: one translucent dot per atom, the diagonal ``error = spread`` (a calibrated committee's
    points straddle it), the RMS error in geometric bins of the spread (a line with markers: it should rise
    along the diagonal), and a box with the number of atoms, the Spearman rank correlation and the calibration
    factor applied.  Both axes in eV/Å.

    Parameters
    ----------
    calibration : CommitteeCalibration or array-like of shape (A,)
        The result of :func:`miniff.ml.calibrate_committee` (its raw ``forces_std``, ``force_error``,
        ``factor`` and ``spearman`` are used), or the raw per-atom spreads (eV/Å); then ``force_error`` is
        needed.
    force_error : array-like of shape (A,), optional
        Per-atom force errors (eV/Å), when ``calibration`` is an array.
    factor : float, optional
        Multiplies the spread before plotting (default: the calibration's factor, or 1 for arrays).
    ax : matplotlib Axes, optional
        Draw here (default: a new figure).
    n_bins : int
        Bins of the binned RMS line.
    label : str, optional
        Legend label of the dots.
    **kw
        Passed to ``ax.scatter`` of the dots.

    Returns
    -------
    matplotlib Axes
    """
    if hasattr(calibration, "forces_std") and hasattr(calibration, "force_error"):
        spread, error = as_numpy(calibration.forces_std, "forces_std"), as_numpy(calibration.force_error,
                                                                                   "force_error")
        factor = calibration.factor if factor is None else factor
        rho = calibration.spearman
    else:
        if force_error is None:
            raise ValueError("force_error: needed when calibration is an array of spreads")
        spread, error = as_numpy(calibration, "calibration"), as_numpy(force_error, "force_error")
        rho = None
    factor = 1.0 if factor is None else float(factor)
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
    spread, error = spread.ravel() * factor, error.ravel()
    if spread.shape != error.shape or not spread.size:
        raise ValueError(f"the spreads ({spread.size}) and errors ({error.size}) must be equal, non-empty sets")
    if rho is None and np.ptp(spread) > 0 and np.ptp(error) > 0:
        from scipy.stats import spearmanr

        rho = float(spearmanr(spread, error)[0])
    ok = (spread > 0) & (error > 0) & np.isfinite(spread) & np.isfinite(error)   # a log plot shows positives
    spread, error = spread[ok], error[ok]
    if not spread.size:
        raise ValueError("no atom has a positive spread and error: nothing to draw on log axes")
    ax = get_ax(ax, figsize=(5, 5))
    kw.setdefault("s", 6)
    kw.setdefault("alpha", 0.35)
    ax.scatter(spread, error, label=label if label is not None else "atoms", **kw)
    low = min(spread.min(), error.min())
    high = max(spread.max(), error.max())
    ax.plot([low, high], [low, high], color="black", lw=1, label="error = spread")
    centres, rms = _binned_rms(spread, error, n_bins) if spread.max() > spread.min() else ([], [])
    if len(centres):
        ax.plot(centres, rms, "o-", color="C3", label="RMS error per spread bin")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = np.log10(high / low) + 0.35
    subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0,) if decades <= 6 else None
    for axis, scale in ((ax.xaxis, ax.set_xscale), (ax.yaxis, ax.set_yscale)):
        scale("log")   # plain numbers at 1, 2, 5 x 10^n over up to two decades, at 10^n up to six
        if subs is None:
            continue
        axis.set_major_locator(LogLocator(subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlim(low / 1.5, high * 1.5)
    ax.set_ylim(low / 1.5, high * 1.5)
    ax.set_aspect("equal")
    scaled = f"{factor:.3g} x " if factor != 1 else ""
    ax.set_xlabel(f"Committee force spread, {scaled}std (eV/Å)")
    ax.set_ylabel("Force error of the mean (eV/Å)")
    lines = [f"N = {spread.size} atoms"]
    if rho is not None and np.isfinite(rho):
        lines.append(f"Spearman ρ = {rho:.2f}")
    lines.append(f"calibration factor {factor:.3g}")
    ax.text(0.02, 0.98, "\n".join(lines), transform=ax.transAxes, ha="left", va="top", fontsize="small",
            bbox=dict(boxstyle="round", facecolor="white", alpha=0.8, edgecolor="0.8"))
    ax.legend(loc="lower right", fontsize="small")
    return ax
