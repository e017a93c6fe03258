"""Central finite differences of energies and descriptors on a NeighborWrapper.

Reference implementations for tests and debugging: slow (two neighbour-list builds and evaluations
per displaced coordinate), but independent of the analytic gradients. The wrapper is displaced in
place and always restored (cell, coordinates and neighbour list) before returning. Every derivative
here uses the one central-difference rule :func:`miniff.util.central_differences`.

Units: eV, Å; forces eV/Å, stress eV/Å³ (ASE sign, Voigt ``xx yy zz yz xz xy``).
"""

import numpy as np

from miniff.neighbors.displacement import position_derivative, strain_derivative
from miniff.potentials.descriptors import eval_descriptors
from miniff.potentials.evaluate import numerical_energy_gradient, total

__all__ = [
    "numerical_forces",
    "numerical_energy_gradient",
    "numerical_stress",
    "numerical_descriptor_gradient",
]


def numerical_forces(nw, potentials, eps=1e-5, **kwargs):
    """Central-difference forces ``-dE/dr``, ``[N, 3]`` eV/Å (``eps`` in Å)."""
    return -numerical_energy_gradient(nw, potentials, eps=eps, **kwargs)


def numerical_stress(nw, potentials, eps=1e-6, ignore_missing_species=False, n_threads=None):
    """Central-difference stress ``(1/V) dE/d strain`` (symmetric strain), Voigt ``[6]`` eV/Å³.

    Parameters
    ----------
    nw : NeighborWrapper
        With distances computed.
    potentials : LocalPotential or list of LocalPotential
    eps : float
        Strain step (dimensionless).

    Returns
    -------
    ndarray of shape (6,), eV/Å³
    """
    volume = abs(np.linalg.det(np.asarray(nw.vectors, dtype=float)))

    def energy():
        return total(nw, potentials, ignore_missing_species=ignore_missing_species, n_threads=n_threads)

    return strain_derivative(nw, energy, eps) / volume


def numerical_descriptor_gradient(nw, descriptors, eps=1e-5, ignore_missing_species=False, n_threads=None):
    """Central-difference derivatives of descriptors by the atomic positions (dense, small systems only).

    Returns
    -------
    ndarray of shape (n_atoms, F, n_atoms, 3), 1/Å
        ``out[i, f, j] = d values_nf[i, f] / d r_j`` with ``values_nf`` from ``eval_descriptors``.
    """
    def values():
        return eval_descriptors(nw, descriptors, n_threads=n_threads, ignore_missing_species=ignore_missing_species)[0]

    return position_derivative(nw, values, eps)
