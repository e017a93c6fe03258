"""Displacing the atoms or straining the cell of a ``NeighborWrapper`` and putting it back.

The finite-difference references (``miniff.numerical`` and ``eval(..., "kernel_numgrad")``) move the
structure of a wrapper in place, rebuild its list at the same cutoff, evaluate, and restore it.
"""

import numpy as np

from miniff.util import central_differences

__all__ = ["Displacement", "position_derivative", "strain_derivative", "VOIGT_PAIRS"]

#: Cartesian index pairs of the Voigt order ``xx yy zz yz xz xy``.
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


class Displacement:
    """Moves the atoms / strains the cell of ``nw`` and restores cell, positions and list on exit.

    Parameters
    ----------
    nw : NeighborWrapper
        With a neighbour list (its cutoff is kept for every rebuild).
    """

    def __init__(self, nw):
        pairs = getattr(nw, "pairs", None)
        if pairs is None:
            raise ValueError("the NeighborWrapper has no pair list: call nw.compute_distances(cutoff) first")
        self.nw = nw
        self.cutoff = pairs.cutoff
        self.cell = nw.cell.copy()
        self.cartesian = np.array(nw.cartesian_row, dtype=float)
        self.vectors = np.array(nw.vectors, dtype=float)

    def positions(self, cartesian):
        """Put the atoms at ``cartesian`` ([N, 3] Å, not wrapped) and rebuild the list."""
        self.nw.set_cell_cartesian(cartesian, normalize=False)
        self.nw.compute_distances(self.cutoff)

    def strain(self, x_cc):
        """Deform cell and atoms by ``x_cc`` [3, 3] (row vectors: ``v -> v @ x``) and rebuild the list."""
        cell = self.cell.copy()
        new = type(cell)(self.vectors @ x_cc, cell.coordinates, cell.values, cell.meta)
        self.nw.set_cell(new, normalize=False)
        self.nw.set_cell_cartesian(self.cartesian @ x_cc, normalize=False)
        self.nw.compute_distances(self.cutoff)

    def restore(self):
        """Back to the structure of construction time."""
        self.nw.set_cell(self.cell.copy(), normalize=False)
        self.nw.set_cell_cartesian(self.cartesian, normalize=False)
        self.nw.compute_distances(self.cutoff)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False


def position_derivative(nw, f, eps):
    """Central differences of ``f()`` (any array shape) by the Cartesian positions of ``nw``.

    Parameters
    ----------
    nw : NeighborWrapper
        Restored afterwards.
    f : callable
        ``f() -> array`` evaluated on ``nw`` as it is (after the displacement).
    eps : float
        Step, Å.

    Returns
    -------
    ndarray, shape ``f().shape + (n_atoms, 3)``, (units of f)/Å
    """
    with Displacement(nw) as disp:
        def at(cartesian):
            disp.positions(cartesian)
            return f()

        return central_differences(at, disp.cartesian, eps)


def strain_derivative(nw, f, eps):
    """Central differences of the number ``f()`` by the six symmetric strains (Voigt ``xx yy zz yz xz xy``).

    A shear strain ``e`` moves both off-diagonal entries by ``e / 2``.

    Returns
    -------
    ndarray of shape (6,), (units of f) per unit strain
    """
    eps = float(eps)
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite strain step, got {eps}")
    out = np.zeros(6)
    with Displacement(nw) as disp:
        for k, (a, b) in enumerate(VOIGT_PAIRS):
            values = []
            for sign in (1, -1):
                x = np.eye(3)
                if a == b:
                    x[a, a] += sign * eps
                else:
                    x[a, b] += sign * eps / 2
                    x[b, a] += sign * eps / 2
                disp.strain(x)
                values.append(f())
            out[k] = (values[0] - values[1]) / (2 * eps)
    return out
