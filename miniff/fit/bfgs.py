"""Full-batch BFGS with a dense inverse Hessian, for networks of up to a few thousand parameters.

For the small networks of Behler-Parrinello fits to small data sets (Amp's examples: 886 parameters) the dense
inverse Hessian approximation ``H`` (``n x n`` float64) is cheap to keep, and the full BFGS update converges in
far fewer evaluations than L-BFGS with a few hundred pairs (on Amp's Pt/Cu set with forces about 2 500 instead of
11 000-30 000).  The update is the textbook one (Nocedal and Wright, Numerical Optimization, eq. 6.17),

    H+ = H - rho (s (H y)^T + (H y) s^T) + (rho^2 y.H y + rho) s s^T,   rho = 1 / s.y,

applied in place with the BLAS symmetric rank-2 and rank-1 updates (``dsyr2``, ``dsyr``; one triangle of ``H``
is stored), so an iteration costs ``O(n^2)``.  ``H`` starts as ``(s.y / y.y) I`` at the first pair (eq. 6.20).
The line search, stopping rules, callback, ``converged_last`` and state handling are those of
:class:`~miniff.ml_util.CompactLBFGS`; the state (``H``) is part of :meth:`~torch.optim.Optimizer.state_dict`,
so checkpoints resume the same optimisation.
"""

import numpy as np
import torch
from scipy.linalg.blas import dsymv, dsyr, dsyr2

from miniff.fit.lbfgs import CURVATURE_EPS, CompactLBFGS

__all__ = ["DenseBFGS", "MAX_PARAMETERS"]

#: Largest parameter count :class:`DenseBFGS` accepts (its ``n x n`` float64 matrix is then 3.2 GB).
MAX_PARAMETERS = 20_000


class DenseBFGS(CompactLBFGS):
    """Full-batch BFGS (dense inverse Hessian, strong-Wolfe line search) for small networks.

    Parameters
    ----------
    params : iterable of torch.Tensor
        The parameters (at most :data:`MAX_PARAMETERS` numbers; the optimizer works in float64).
    max_iter, max_eval, tolerance_grad, tolerance_change, c1, c2, max_ls, callback
        As :class:`~miniff.ml_util.CompactLBFGS`.
    """

    def __init__(self, params, max_iter=100, max_eval=None, tolerance_grad=1e-12, tolerance_change=1e-14,
                 c1=1e-4, c2=0.9, max_ls=25, callback=None):
        super().__init__(params, max_iter=max_iter, max_eval=max_eval, history_size=1, tolerance_grad=tolerance_grad,
                         tolerance_change=tolerance_change, c1=c1, c2=c2, max_ls=max_ls, callback=callback)
        if self._n > MAX_PARAMETERS:
            raise ValueError(f"params: {self._n} parameters; DenseBFGS keeps an n x n matrix and takes at most "
                             f"{MAX_PARAMETERS} (use compact_lbfgs)")

    def _new_arrays(self):
        """``H``: C-ordered ``[n, n]`` float64, lower triangle valid (set at the first pair)."""
        return {"H": torch.zeros(self._n, self._n, dtype=torch.float64)}

    @staticmethod
    def _direction(h, g, m, wg=None):
        """``(-H g, None, None)`` (``-g`` before the first pair)."""
        if h["k"] == 0:
            return -g, None, None
        # the C-ordered H seen as its (Fortran-ordered) transpose: its upper triangle is H's lower one
        return dsymv(-1.0, h["H"].T, g, lower=0), None, None

    @staticmethod
    def _push(h, s, y, m, ys=None):
        """The BFGS update of ``H`` with the pair ``(s, y)`` (skipped when ``s.y`` is not positive enough);
        returns None (no products to carry)."""
        sy, yy = float(s @ y), float(y @ y)
        if not sy > CURVATURE_EPS * yy:
            return None
        hf = h["H"].T   # Fortran-ordered view: BLAS updates it in place
        if h["k"] == 0:
            hf.fill(0.0)
            np.fill_diagonal(hf, sy / yy)
        hy = dsymv(1.0, hf, y, lower=0)
        rho = 1.0 / sy
        hf = dsyr2(-rho, s, hy, a=hf, lower=0, overwrite_a=1)
        hf = dsyr(rho * rho * float(y @ hy) + rho, s, a=hf, lower=0, overwrite_a=1)
        h["H"] = hf.T
        h["k"] += 1
        return None

    @staticmethod
    def _reset(h):
        h["k"] = 0   # H restarts from the scaled identity at the next pair
        h["head"] = 0
