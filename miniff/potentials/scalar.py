"""``ScalarFunctionWrapper``: a NeighborWrapper seen as a scalar function of the flat coordinates (0.1.4 API)."""

import warnings

import numpy as np

from miniff.potentials.evaluate import gradient, total

__all__ = ["ScalarFunctionWrapper"]


class ScalarFunctionWrapper:
    """Total energy and gradient as functions of the flattened Cartesian coordinates, for scipy.

    Parameters
    ----------
    nw : NeighborWrapper
        With a cutoff (its neighbour list is rebuilt at every new point, same cutoff).
    potentials : LocalPotential or list
    normalize : bool
        Wrap the coordinates into the cell at every new point.
    prefer_parallel : None or bool
        Accepted for 0.1.4 compatibility and ignored (threads follow ``nw.n_threads``); a value other than
        None emits a DeprecationWarning.
    cell_logger : callable or None
        Called with :meth:`get_current_cell` after every new point.

    Raises
    ------
    ValueError
        If ``nw`` has neither a neighbour list nor a cutoff.
    """

    def __init__(self, nw, potentials, normalize=True, prefer_parallel=None, cell_logger=None):
        if nw.cutoff is None:
            raise ValueError("nw has no neighbour list: call nw.compute_distances(cutoff) first")
        if cell_logger is not None and not callable(cell_logger):
            raise TypeError(f"cell_logger must be callable or None, got {type(cell_logger).__name__}")
        if prefer_parallel is not None:
            warnings.warn("ScalarFunctionWrapper: prefer_parallel is ignored: the threads follow nw.n_threads (set "
                          "them with NeighborWrapper(..., n_threads=...)) (prefer_parallel is accepted only for "
                          "miniff 0.1.4 compatibility and will be removed)", DeprecationWarning, stacklevel=2)
        self.nw = nw
        self.potentials = potentials
        self.normalize = normalize
        self.prefer_parallel = prefer_parallel
        self.cell_logger = cell_logger
        self._key = None
        self._energy = None
        self._grad = None

    def maybe_update(self, x):
        """Move the atoms to ``x`` ([3N] or [N, 3], Å) unless already there."""
        x = np.asarray(x, dtype=float)
        if x.size != 3 * self.nw.size:
            raise ValueError(f"x must have {3 * self.nw.size} values, got {x.size}")
        key = x.tobytes()
        if key == self._key:
            return False
        if not np.all(np.isfinite(x)):
            raise ValueError("x contains NaN or inf")
        self.nw.set_cell_cartesian(x.reshape(-1, 3), normalize=self.normalize)
        self.nw.compute_distances()
        self._key = key
        self._energy = None
        self._grad = None
        if self.cell_logger is not None:
            self.cell_logger(self.get_current_cell())
        return True

    def _current_energy(self):
        if self._energy is None:
            self._energy = float(total(self.nw, self.potentials))
        return self._energy

    def _current_grad(self):
        if self._grad is None:
            self._grad = np.asarray(gradient(self.nw, self.potentials), dtype=float).reshape(-1)
        return self._grad

    def f(self, x):
        """Total energy at ``x``, eV."""
        self.maybe_update(x)
        return self._current_energy()

    def g(self, x):
        """Gradient of the total energy at ``x``, flattened ``[3N]``, eV/Å."""
        self.maybe_update(x)
        return self._current_grad()

    def get_current_cell(self):
        """A copy of the current cell with ``meta["total-energy"]`` (eV) and ``meta["forces"]`` ([N, 3] eV/Å)."""
        cell = self.nw.cell.copy()
        cell.meta["total-energy"] = self._current_energy()
        cell.meta["forces"] = -self._current_grad().reshape(-1, 3)
        return cell
