"""The default optimiser of ``relax``: L-BFGS with a maximum displacement per step.

scipy's minimisers take their first line-search step from the size of the gradient; from a strongly
compressed start (forces of 1e8 eV/Å) that step throws atoms beyond the cutoff, where the energy is zero and
the optimiser happily stops. :func:`minimize_max_step` instead

- builds the L-BFGS direction (two-loop recursion, the last ``memory`` steps, initial inverse curvature from
  the last step pair, or ``max_step / |g|`` before the first one);
- scales the step so that no atom (no row of 3 variables) moves farther than ``max_step`` (the trust radius);
- accepts a step only when the energy decreases (Armijo condition; energy changes below the float64
  resolution of the energy count as no increase), halving it otherwise (and falling back to steepest descent
  after repeated failures), so atoms are never thrown over a barrier;
- stops when the largest force on an atom (row norm of the gradient) is at most ``fmax``.
"""

import numpy as np

__all__ = ["MaxStepResult", "minimize_max_step"]


class MaxStepResult(dict):
    """Result of :func:`minimize_max_step` (the attributes of ``scipy.optimize.OptimizeResult`` used by miniff):
    ``x``, ``fun``, ``jac``, ``success``, ``message``, ``nit``, ``nfev``."""

    __getattr__ = dict.__getitem__


def _two_loop(g, s_list, y_list, h0):
    """Inverse-Hessian (L-BFGS) times ``g``."""
    q = g.copy()
    alphas = []
    for s, y in zip(reversed(s_list), reversed(y_list), strict=True):
        rho = 1.0 / float(y @ s)
        a = rho * float(s @ q)
        alphas.append((a, rho))
        q -= a * y
    r = h0 * q
    for (s, y), (a, rho) in zip(zip(s_list, y_list, strict=True), reversed(alphas), strict=True):
        b = rho * float(y @ r)
        r += s * (a - b)
    return r


def minimize_max_step(fun_grad, x0, max_step, fmax, row_scale=1.0, maxiter=10000, memory=20, callback=None):
    """Minimise ``fun_grad(x) -> (f, g)`` with L-BFGS steps of bounded length.

    Parameters
    ----------
    fun_grad : callable
        ``x [n] -> (energy float, gradient [n])``; ``n`` a multiple of 3 (rows = atoms).
    x0 : ndarray [n]
    max_step : float
        Largest displacement of one row (atom) per step, in the units of ``x`` times ``row_scale`` (Å).
    fmax : float
        Converged when the largest row norm of the gradient divided by ``row_scale`` is at most this (eV/Å).
    row_scale : float
        Length (Å) of a unit of ``x``.
    maxiter : int
        Largest number of accepted steps.
    memory : int
        Step pairs kept by L-BFGS.
    callback : callable or None
        Called with ``x`` after every accepted step.

    Returns
    -------
    MaxStepResult
    """
    x = np.array(x0, dtype=float)
    e, g = fun_grad(x)
    g = np.array(g, dtype=float)
    nfev = 1
    s_list, y_list = [], []
    h0 = None
    limit = max_step / row_scale  # in units of x
    message = f"reached maxiter={maxiter} steps"
    success = False
    failures = 0
    nit = 0

    def largest_force(grad):
        return float(np.sqrt((grad.reshape(-1, 3) ** 2).sum(axis=1)).max()) / row_scale if grad.size else 0.0

    while True:
        f_now = largest_force(g)
        if f_now <= fmax:
            success, message = True, f"largest force {f_now:.3g} eV/Å <= fmax={fmax:g} eV/Å"
            break
        if nit >= maxiter:
            break
        if h0 is None:
            d = -g * (limit / max(float(np.abs(g).max()), 1e-300))
        else:
            d = -_two_loop(g, s_list, y_list, h0)
            if float(d @ g) >= 0:  # not a descent direction: forget the curvature
                s_list, y_list = [], []
                d = -g * h0
        longest = float(np.sqrt((d.reshape(-1, 3) ** 2).sum(axis=1)).max())
        if longest > limit:
            d *= limit / longest
        slope = float(d @ g)
        resolution = 1e-13 * max(1.0, abs(e))  # energy changes below this are round-off
        alpha = 1.0
        for _ in range(30):
            x_new = x + alpha * d
            e_new, g_new = fun_grad(x_new)
            nfev += 1
            g_new = np.array(g_new, dtype=float)
            if np.isfinite(e_new) and (e_new <= e + 1e-4 * alpha * slope
                                       or (e_new <= e + resolution and largest_force(g_new) < f_now)):
                break
            alpha *= 0.5
        else:
            failures += 1
            if failures > 3 or h0 is None:
                message = "no step lowers the energy (the gradient may not match the energy)"
                break
            s_list, y_list, h0 = [], [], None  # restart from steepest descent
            continue
        s, y = x_new - x, g_new - g
        sy = float(s @ y)
        if sy > 1e-12 * float(np.sqrt((s @ s) * (y @ y))):
            s_list.append(s)
            y_list.append(y)
            if len(s_list) > memory:
                s_list.pop(0)
                y_list.pop(0)
            h0 = sy / float(y @ y)
        elif h0 is None:
            h0 = alpha * limit / max(float(np.abs(g).max()), 1e-300)
        x, e, g = x_new, e_new, g_new
        failures = 0
        nit += 1
        if callback is not None:
            callback(x)
    return MaxStepResult(x=x, fun=e, jac=g, success=success, message=message, nit=nit, nfev=nfev)
