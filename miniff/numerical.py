"""Central finite differences of energies and descriptors on a NeighborWrapper.

Reference implementations for tests and debugging: slow (two neighbour-list builds and evaluations
per displaced coordinate), but independent of the analytic gradients. The wrapper is displaced in
place and always restored (cell, coordinates and neighbour list) before returning.
Units: eV, Å; forces eV/Å, stress eV/Å³ (ASE sign, Voigt ``xx yy zz yz xz xy``).
"""

import numpy as np

__all__ = [
    "numerical_forces",
    "numerical_energy_gradient",
    "numerical_stress",
    "numerical_descriptor_gradient",
]


def _check_eps(eps):
    eps = float(eps)
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite step (Å or strain), got {eps}")
    return eps


class _Displacer:
    """Moves the atoms / strains the cell of ``nw`` and restores it afterwards."""

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
        self.nw.set_cell_cartesian(cartesian, normalize=False)
        self.nw.compute_distances(self.cutoff)

    def strain(self, x_cc):
        """Deform cell and atoms by ``x_cc`` (row vectors: ``v -> v @ x``)."""
        cell = self.cell.copy()
        new = type(cell)(self.vectors @ x_cc, cell.coordinates, cell.values, cell.meta)
        self.nw.set_cell(new, normalize=False)
        self.nw.set_cell_cartesian(self.cartesian @ x_cc, normalize=False)
        self.nw.compute_distances(self.cutoff)

    def restore(self):
        self.nw.set_cell(self.cell.copy(), normalize=False)
        self.nw.set_cell_cartesian(self.cartesian, normalize=False)
        self.nw.compute_distances(self.cutoff)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False


def _central(f, x0, eps, apply):
    """Central differences of ``f()`` (any array shape) by every entry of ``x0`` (``apply(x)`` sets x)."""
    x0 = np.array(x0, dtype=float)
    out = None
    flat = x0.reshape(-1)
    for k in range(flat.size):
        x = flat.copy()
        x[k] += eps
        apply(x.reshape(x0.shape))
        fp = np.asarray(f(), dtype=float)
        x[k] -= 2 * eps
        apply(x.reshape(x0.shape))
        fm = np.asarray(f(), dtype=float)
        if out is None:
            out = np.zeros(fp.shape + (flat.size,))
        out[..., k] = (fp - fm) / (2 * eps)
    return out.reshape(out.shape[:-1] + x0.shape)


def numerical_energy_gradient(nw, potentials, eps=1e-5, resolving=False, ignore_missing_species=False,
                              n_threads=None):
    """Central-difference gradient of the energy by the atomic positions.

    Parameters
    ----------
    nw : NeighborWrapper
        With distances computed.
    potentials : LocalPotential or list of LocalPotential
    eps : float
        Displacement step, Å.
    resolving : bool
        False: ``d E_total / d r`` ``[N, 3]``; True: ``d E_i / d r_j`` ``[N, N, 3]`` (per-atom energies).

    Returns
    -------
    ndarray, eV/Å
    """
    eps = _check_eps(eps)
    with _Displacer(nw) as disp:
        def f():
            e = nw.eval(potentials, "kernel", squeeze=False, ignore_missing_species=ignore_missing_species,
                        n_threads=n_threads).sum(axis=0)
            return e if resolving else e.sum()

        return _central(f, disp.cartesian, eps, disp.positions)


def numerical_forces(nw, potentials, eps=1e-5, **kwargs):
    """Central-difference forces ``-dE/dr``, ``[N, 3]`` eV/Å (``eps`` in Å)."""
    return -numerical_energy_gradient(nw, potentials, eps=eps, **kwargs)


def numerical_stress(nw, potentials, eps=1e-6, ignore_missing_species=False, n_threads=None):
    """Central-difference stress ``(1/V) dE/d strain`` (symmetric strain), Voigt ``[6]`` eV/Å³.

    Parameters
    ----------
    eps : float
        Strain step (dimensionless).
    """
    eps = _check_eps(eps)
    volume = abs(np.linalg.det(np.asarray(nw.vectors, dtype=float)))
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    out = np.zeros(6)
    with _Displacer(nw) as disp:
        for k, (a, b) in enumerate(voigt):
            energies = []
            for sign in (1, -1):
                x = np.eye(3)
                if a == b:
                    x[a, a] += sign * eps
                else:
                    x[a, b] += sign * eps / 2
                    x[b, a] += sign * eps / 2
                disp.strain(x)
                energies.append(nw.total(potentials, ignore_missing_species=ignore_missing_species,
                                         n_threads=n_threads))
            out[k] = (energies[0] - energies[1]) / (2 * eps) / volume
    return out


def numerical_descriptor_gradient(nw, descriptors, eps=1e-5, ignore_missing_species=False, n_threads=None):
    """Central-difference derivatives of descriptors by the atomic positions (dense, small systems only).

    Returns
    -------
    ndarray of shape (n_atoms, F, n_atoms, 3), 1/Å
        ``out[i, f, j] = d values_nf[i, f] / d r_j`` with ``values_nf`` from ``eval_descriptors``.
    """
    from miniff.potentials.descriptors import eval_descriptors

    eps = _check_eps(eps)
    with _Displacer(nw) as disp:
        def f():
            return eval_descriptors(nw, descriptors, n_threads=n_threads,
                                    ignore_missing_species=ignore_missing_species)[0]

        return _central(f, disp.cartesian, eps, disp.positions)
