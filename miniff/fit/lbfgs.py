"""A full-batch L-BFGS optimizer for small networks: compact (matrix) form in numpy, strong-Wolfe line search.

``torch.optim.LBFGS`` applies its two-loop recursion with two small tensor operations per stored pair and
iteration, which costs more than evaluating a Behler-Parrinello network of a few hundred parameters; SciPy's
L-BFGS-B cannot keep its curvature history between calls or stop at a chosen evaluation.
:class:`CompactLBFGS` keeps the curvature pairs as rows of one ``[2 m, n]`` float64 array and applies the
inverse Hessian approximation in its compact form (Byrd, Nocedal and Schnabel, Math. Program. 63, 129 (1994)),

    H g = gamma g + S^T t - gamma Y^T q,   q = R^-1 (S g),   t = R^-T ((D + gamma Y Y^T) q - gamma Y g),

(``S``, ``Y``: the stored steps and gradient changes as rows, oldest first; ``R`` the upper triangle of
``S Y^T``, ``D`` its diagonal, ``gamma = s.y / y.y`` of the newest pair).  An iteration costs two products with
the ``[2 m, n]`` array (``W^T c`` for the direction, ``W y`` for the new Gram entries) instead of ``4 m`` vector
operations: ``W g`` is carried from one iteration to the next (``W g_new = W g + W y``) and ``Y s`` follows from
the Gram matrices.  The step length comes from a strong-Wolfe line search with
cubic interpolation (Nocedal and Wright, Numerical Optimization, algorithms 3.5 and 3.6).

The history persists across :meth:`~CompactLBFGS.step` calls (one call per epoch of a
:class:`~miniff.ml_util.FitWorkflow`) and lives in :meth:`~torch.optim.Optimizer.state_dict`, so that
checkpoints resume the same optimisation.  After every function evaluation the optimizer asks the closure
whether the fit has converged (``closure.converged_last()``, see :class:`~miniff.ml_util.SimpleClosure`) and
calls an optional ``callback`` (first); either can end the step at that very evaluation.
"""

import math

import numpy as np
import torch
from scipy.linalg.blas import dtrsv

__all__ = ["CompactLBFGS"]

#: Curvature pairs with ``s.y <= CURVATURE_EPS * y.y`` are not stored (they would make ``H`` indefinite).
CURVATURE_EPS = 2.2e-16


class _Stop(Exception):
    """Raised inside the line search when the closure or the callback asks to stop at this evaluation."""


class CompactLBFGS(torch.optim.Optimizer):
    """Full-batch L-BFGS with the compact inverse-Hessian form and a strong-Wolfe line search.

    Parameters
    ----------
    params : iterable of torch.Tensor
        The parameters (any floating dtype; the optimizer works in float64).
    max_iter : int
        Iterations per :meth:`step` (default 100).
    max_eval : int or None
        Function evaluations per :meth:`step` (default ``max_iter * 5 // 4``).
    history_size : int
        Stored curvature pairs ``m`` (default 100).  The cost per iteration grows like ``m x parameters``.
    tolerance_grad : float
        A step ends when the largest gradient component is at most this.
    tolerance_change : float
        A step ends when the loss or every parameter changes by less than this in an iteration.
    c1, c2 : float
        Sufficient decrease and curvature constants of the strong Wolfe conditions (``0 < c1 < c2 < 1``).
    max_ls : int
        Function evaluations per line search.
    callback : callable or None
        ``callback(closure) -> bool`` after every function evaluation (the closure's ``last_loss`` is fresh);
        a true result ends the step at that evaluation.  Not stored in :meth:`state_dict`.
    """

    def __init__(self, params, max_iter=100, max_eval=None, history_size=100, tolerance_grad=1e-12,
                 tolerance_change=1e-14, c1=1e-4, c2=0.9, max_ls=25, callback=None):
        for name, value in (("max_iter", max_iter), ("history_size", history_size), ("max_ls", max_ls)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if not isinstance(max_eval, (int, np.integer)) or max_eval < 1:
            raise ValueError(f"max_eval must be a positive integer or None, got {max_eval!r}")
        if not 0 < c1 < c2 < 1:
            raise ValueError(f"c1, c2 must satisfy 0 < c1 < c2 < 1, got {c1}, {c2}")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
        defaults = dict(max_iter=int(max_iter), max_eval=int(max_eval), history_size=int(history_size),
                        tolerance_grad=float(tolerance_grad), tolerance_change=float(tolerance_change),
                        c1=float(c1), c2=float(c2), max_ls=int(max_ls))
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("CompactLBFGS supports a single parameter group")
        self._params = list(self.param_groups[0]["params"])
        self._sizes = [p.numel() for p in self._params]
        self._n = int(sum(self._sizes))
        self.callback = callback
        #: Why the last :meth:`step` ended: "max_iter", "max_eval", "tolerance_grad", "tolerance_change",
        #: "line search", "converged" (the closure) or "callback".
        self.stop_reason = None

    def zero_grad(self, set_to_none=True):
        """Drop (or zero) the gradients of the parameters; the same as the base class, without its profiling hooks
        (they cost more than the work here: this runs once per function evaluation)."""
        for p in self._params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    # ------------------------------------------------------------------ parameters <-> flat vector
    def _get_x(self):
        return torch.cat([p.detach().reshape(-1).double() for p in self._params]).cpu().numpy()

    def _set_x(self, x):
        chunks = torch.from_numpy(x).to(self._params[0].device).split(self._sizes)
        with torch.no_grad():
            torch._foreach_copy_(self._params, [c.view_as(p) for c, p in zip(chunks, self._params, strict=True)])

    def _get_g(self):
        return torch.cat([p.grad.detach().reshape(-1).double() if p.grad is not None
                          else p.new_zeros(p.numel(), dtype=torch.float64)
                          for p in self._params]).cpu().numpy()

    # ------------------------------------------------------------------ history
    def _new_arrays(self):
        """The optimizer's arrays for a fresh state (name -> float64 tensor); subclasses keep other ones."""
        m = self.param_groups[0]["history_size"]
        return {"W": torch.zeros(2 * m, self._n, dtype=torch.float64), "SY": torch.zeros(m, m, dtype=torch.float64),
                "YY": torch.zeros(m, m, dtype=torch.float64)}

    def _history(self):
        """The state as numpy arrays (float64), created on first use (or when the arrays' shapes changed)."""
        st = self.state[self._params[0]]
        fresh = self._new_arrays()
        if any(key not in st or tuple(st[key].shape) != tuple(v.shape) for key, v in fresh.items()):
            st.clear()
            st.update(fresh, k=0, head=0, n_iter=0, func_evals=0)
        return {key: (np.asarray(v.cpu().numpy(), dtype=np.float64) if isinstance(v, torch.Tensor) else v)
                for key, v in st.items()}

    def _save_history(self, h):
        self.state[self._params[0]].update({key: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v)
                                            for key, v in h.items()})

    @staticmethod
    def _direction(h, g, m, wg=None):
        """``(d, yd, wg)``: the direction ``d = -H g`` (``-g`` without history), ``Y d`` (``y_j . d`` in
        chronological order, from the Gram matrices: no product with ``W``; None without history) and
        ``wg = W g`` (computed when not given)."""
        k = h["k"]
        if k == 0:
            return -g, None, None
        idx = _order_of(h, m)
        if wg is None:
            wg = _w_dot(h, m, g)
        a, b = wg[idx], wg[m + idx]
        sy, yy = h["SY"][:k, :k], h["YY"][:k, :k]
        gamma = sy[k - 1, k - 1] / yy[k - 1, k - 1]
        # sy.T's lower triangle is R^T (R = upper triangle of sy): solve R q = a, then R^T t = rhs
        q = dtrsv(sy.T, a, lower=1, trans=1)
        yy_q = yy @ q
        t = dtrsv(sy.T, np.diagonal(sy) * q + gamma * (yy_q - b), lower=1, trans=0)
        coef = np.zeros(2 * m)
        coef[idx] = t
        coef[m + idx] = -gamma * q
        out = _dot_w(h, m, coef)
        out += gamma * g
        # Y d = -(gamma Y g + Y S^T t - gamma Y Y^T q), with Y S^T = SY^T
        yd = -(gamma * b + sy.T @ t - gamma * yy_q)
        return np.negative(out, out=out), yd, wg

    @staticmethod
    def _push(h, s, y, m, ys=None):
        """Store the pair ``(s, y)`` in the oldest slot; return ``W' y`` (``W'`` with the new pair), or None
        (pair not stored) when its curvature ``s.y`` is not positive enough.

        ``W`` holds the pairs in circular slots; ``SY[i, j] = s_i . y_j`` and ``YY`` in chronological order.
        ``ys``: ``y_j . s`` of the stored pairs in chronological order, if known (else one more product).
        """
        sy_new, yy_new = float(s @ y), float(y @ y)
        if not sy_new > CURVATURE_EPS * yy_new:
            return None
        slot, w = h["head"], h["W"]
        if ys is None:
            ys = _w_dot(h, m, s)[m:][_order_of(h, m)]
        if h["k"] == m:   # drop the oldest pair
            for key in ("SY", "YY"):
                h[key][:-1, :-1] = h[key][1:, 1:].copy()
            ys = ys[1:]
        else:
            h["k"] += 1
        w[slot], w[m + slot] = s, y
        h["head"] = (slot + 1) % m
        k = h["k"]
        idx = _order_of(h, m)
        wy = _w_dot(h, m, y)
        h["SY"][k - 1, :k - 1] = ys        # s_new . y_j
        h["SY"][k - 1, k - 1] = sy_new
        h["SY"][:k, k - 1] = wy[idx]       # s_i . y_new
        h["YY"][k - 1, :k] = wy[m + idx]
        h["YY"][:k, k - 1] = wy[m + idx]
        return wy

    @staticmethod
    def _reset(h):
        h["k"] = 0
        h["head"] = 0

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, closure):
        """Run up to ``max_iter`` iterations; return the final loss (a 0-d float64 tensor).

        Parameters
        ----------
        closure : callable
            Zeroes the gradients (``optimizer.zero_grad()``), evaluates the loss, back-propagates and returns
            the loss tensor.  If it has a ``converged_last()`` method returning True, the step ends at that
            evaluation (the parameters stay there).
        """
        group = self.param_groups[0]
        m = group["history_size"]
        h = self._history()
        counter = {"evals": 0}
        stop_check = getattr(closure, "converged_last", None)

        def evaluate(x):
            self._set_x(x)
            with torch.enable_grad():
                loss = closure()
            f = float(loss.detach())
            counter["evals"] += 1
            h["func_evals"] += 1
            if not math.isfinite(f):
                raise RuntimeError(f"the loss is not finite ({f}) at a trial point of the line search")
            g = self._get_g()
            if self.callback is not None and self.callback(closure):
                self.stop_reason = "callback"
                raise _Stop(x, f, g)
            if stop_check is not None and stop_check():
                self.stop_reason = "converged"
                raise _Stop(x, f, g)
            return f, g

        x = self._get_x()
        wg = None   # W g for the current gradient, carried from one iteration to the next
        self.stop_reason = "max_iter"
        try:
            f, g = evaluate(x)
            for _ in range(group["max_iter"]):
                if np.max(np.abs(g)) <= group["tolerance_grad"]:
                    self.stop_reason = "tolerance_grad"
                    break
                d, yd, wg = self._direction(h, g, m, wg)
                gtd = float(g @ d)
                if not gtd < 0:  # not a descent direction: drop the history
                    self._reset(h)
                    d, yd, wg = -g, None, None
                    gtd = -float(g @ g)
                    if gtd == 0:  # the gradient underflows
                        self.stop_reason = "tolerance_grad"
                        break
                alpha0 = 1.0 if h["k"] else min(1.0, 1.0 / math.sqrt(-gtd))
                budget = group["max_eval"] - counter["evals"]
                if budget <= 0:
                    self.stop_reason = "max_eval"
                    break
                found = _strong_wolfe(lambda a, x=x, d=d: _phi(evaluate, x, d, a), f, gtd, alpha0, group["c1"],
                                      group["c2"], min(group["max_ls"], budget))
                h["n_iter"] += 1
                if found is None:
                    if budget < group["max_ls"]:   # the evaluation budget of the step ran out, not the search
                        self.stop_reason = "max_eval"
                        break
                    if h["k"] == 0:
                        self.stop_reason = "line search"
                        break
                    self._reset(h)   # retry along the steepest descent
                    wg = None
                    continue
                alpha, f_new, g_new = found
                s = alpha * d
                slot = h["head"]
                wy = self._push(h, s, g_new - g, m, None if yd is None else alpha * yd)
                if wy is None or wg is None:
                    wg = None
                else:   # W' g_new = W g + W' y on the kept rows; the new pair's rows directly
                    wg = wg + wy
                    wg[slot], wg[m + slot] = s @ g_new, (g_new - g) @ g_new
                change = abs(f_new - f)
                x, f, g = x + s, f_new, g_new
                if change < group["tolerance_change"] or np.max(np.abs(s)) <= group["tolerance_change"]:
                    self.stop_reason = "tolerance_change"
                    break
            self._set_x(x)
        except _Stop as stop:
            x, f, g = stop.args
        self._save_history(h)
        return torch.tensor(f, dtype=torch.float64)


def _order_of(h, m):
    return (h["head"] - h["k"] + np.arange(h["k"])) % m


def _filled(h, m):
    """The number of leading slots in use when they are ``0..k-1`` (the history has not wrapped), else None
    (every slot is in use): products with ``W`` then skip the empty rows."""
    k = h["k"]
    return k if k < m and h["head"] == k else None


def _w_dot(h, m, v):
    """``W v`` ([2m]; 0 on empty slots)."""
    k, w = _filled(h, m), h["W"]
    if k is None:
        return w @ v
    out = np.zeros(2 * m)
    out[:k] = w[:k] @ v
    out[m:m + k] = w[m:m + k] @ v
    return out


def _dot_w(h, m, coef):
    """``coef W`` ([n]) for ``coef`` [2m] that is 0 on empty slots."""
    k, w = _filled(h, m), h["W"]
    if k is None:
        return coef @ w
    return coef[:k] @ w[:k] + coef[m:m + k] @ w[m:m + k]


def _phi(evaluate, x, d, alpha):
    """Loss, gradient and directional derivative at ``x + alpha d``."""
    f, g = evaluate(x + alpha * d)
    return f, g, float(g @ d)


def _cubic_min(a1, f1, d1, a2, f2, d2, lo, hi):
    """Minimiser of the cubic through two points with slopes, clipped to ``[lo, hi]`` (bisection if none)."""
    t1 = d1 + d2 - 3 * (f1 - f2) / (a1 - a2)
    disc = t1 * t1 - d1 * d2
    if disc >= 0:
        t2 = math.copysign(math.sqrt(disc), a2 - a1)
        den = d2 - d1 + 2 * t2
        if den != 0:
            a = a2 - (a2 - a1) * (d2 + t2 - t1) / den
            if math.isfinite(a):
                return min(max(a, lo), hi)
    return 0.5 * (lo + hi)


def _strong_wolfe(phi, f0, d0, alpha, c1, c2, max_ls):
    """Step length satisfying the strong Wolfe conditions along a descent direction.

    ``phi(a) -> (f, g, g.d)``; ``f0``, ``d0`` the loss and directional derivative at ``a = 0``.  Returns
    ``(a, f, g)`` or None when ``max_ls`` evaluations found no point with sufficient decrease.
    """
    a_prev, f_prev, d_prev = 0.0, f0, d0
    best = None   # the lowest point with sufficient decrease, in case the search runs out of evaluations
    evals = 0
    while evals < max_ls:
        f, g, dd = phi(alpha)
        evals += 1
        armijo = f <= f0 + c1 * alpha * d0
        if armijo and (best is None or f < best[1]):
            best = (alpha, f, g)
        if not armijo or (evals > 1 and f >= f_prev):
            return _zoom(phi, f0, d0, (a_prev, f_prev, d_prev, None), (alpha, f, dd, g), c1, c2, max_ls - evals, best)
        if abs(dd) <= -c2 * d0:
            return alpha, f, g
        if dd >= 0:
            return _zoom(phi, f0, d0, (alpha, f, dd, g), (a_prev, f_prev, d_prev, None), c1, c2, max_ls - evals, best)
        a_next = _cubic_min(a_prev, f_prev, d_prev, alpha, f, dd, alpha + 0.01 * (alpha - a_prev), 10 * alpha)
        a_prev, f_prev, d_prev = alpha, f, dd
        alpha = a_next
    return best


def _zoom(phi, f0, d0, lo, hi, c1, c2, max_ls, best):
    """Shrink the bracket ``[lo, hi]`` (``lo`` has the lower loss) to a strong-Wolfe point."""
    for _ in range(max_ls):
        a_lo, f_lo, d_lo, _ = lo
        a_hi, f_hi, d_hi, _ = hi
        width = abs(a_hi - a_lo)
        if width < 1e-14 * max(1.0, abs(a_lo)):
            break
        left, right = min(a_lo, a_hi), max(a_lo, a_hi)
        a = _cubic_min(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi, left + 0.1 * width, right - 0.1 * width)
        f, g, dd = phi(a)
        armijo = f <= f0 + c1 * a * d0
        if armijo and (best is None or f < best[1]):
            best = (a, f, g)
        if not armijo or f >= f_lo:
            hi = (a, f, dd, g)
            continue
        if abs(dd) <= -c2 * d0:
            return a, f, g
        if dd * (a_hi - a_lo) >= 0:
            hi = lo
        lo = (a, f, dd, g)
    return best
