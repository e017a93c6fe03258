"""Small helpers for the correctness checks that precede every timing."""

import numpy as np

__all__ = ["close", "compare_arrays", "loglog_exponent"]


def close(a, b, rtol):
    """True when ``|a - b| <= rtol * max(|a|, |b|, tiny)``."""
    scale = max(abs(a), abs(b), 1e-300)
    return abs(a - b) <= rtol * scale


def compare_arrays(test, ref, atol, rtol=0.0):
    """Compare two arrays of the same shape.

    Returns
    -------
    ok : bool
    detail : str
        The largest absolute deviation and the tolerance.
    """
    test = np.asarray(test, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if test.shape != ref.shape:
        return False, f"shape {test.shape} != reference {ref.shape}"
    dev = np.abs(test - ref)
    tol = atol + rtol * np.abs(ref)
    worst = float(dev.max()) if dev.size else 0.0
    return bool(np.all(dev <= tol)), f"max |dev| {worst:.2e} (atol {atol:g}, rtol {rtol:g})"


def loglog_exponent(n_atoms, seconds):
    """Least-squares slope of log(time) against log(N); None with fewer than two points."""
    n = np.asarray(n_atoms, dtype=float)
    t = np.asarray(seconds, dtype=float)
    if len(n) < 2 or np.any(t <= 0):
        return None
    slope, _ = np.polyfit(np.log(n), np.log(t), 1)
    return float(slope)
