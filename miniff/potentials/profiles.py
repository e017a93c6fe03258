"""Energy profiles: total energies on a grid of structures (strains, displacements)."""

import itertools

import numpy as np

from miniff.neighbors.wrapper import NeighborWrapper
from miniff.potentials.evaluate import total

__all__ = ["profile", "profile_strain", "profile_directed_strain"]


def _as_list(potentials):
    if isinstance(potentials, (list, tuple)):
        return list(potentials)
    return [potentials]


def profile(potentials, f, *args, **kwargs):
    """Total energies on a grid of structures.

    Parameters
    ----------
    potentials : LocalPotential or list
    f : callable
        ``f(*point) -> Cell`` for every point of ``itertools.product(*args)``.
    *args : sequences
        Grid axes.
    **kwargs
        Passed to :class:`NeighborWrapper` (not ``cutoff``: it is the largest potential cutoff).

    Returns
    -------
    ndarray, shape ``tuple(len(a) for a in args)``
        Total energies, eV.
    """
    if "cutoff" in kwargs:
        raise TypeError("profile computes the cutoff from the potentials: do not pass cutoff")
    potentials = _as_list(potentials)
    cutoff = max(float(p.cutoff) for p in potentials)
    out = np.empty(tuple(len(a) for a in args))
    for index, point in zip(itertools.product(*(range(len(a)) for a in args)), itertools.product(*args), strict=True):
        nw = NeighborWrapper(f(*point), cutoff=cutoff, **kwargs)
        out[index] = total(nw, potentials, ignore_missing_species=True)
    return out


def profile_strain(potentials, cell, *args, **kwargs):
    """Total energies (eV) while the cell vectors are scaled: ``args[i]`` are factors of vector ``i``."""
    if len(args) > 3:
        raise ValueError(f"at most three strain axes, got {len(args)}")

    def build(*factors):
        c = cell.copy()
        scale = np.ones(3)
        scale[: len(factors)] = factors
        c.vectors = c.vectors * scale[:, None]
        return c

    return profile(potentials, build, *args, **kwargs)


def profile_directed_strain(potentials, cell, strain, direction, **kwargs):
    """Total energies (eV) for vectors scaled by ``direction * s + (1 - direction)`` for ``s`` in ``strain``."""
    direction = np.asarray(direction, dtype=float)
    if direction.shape != (3,):
        raise ValueError(f"direction must have three components, got shape {direction.shape}")

    def build(s):
        c = cell.copy()
        c.vectors = c.vectors * (direction * s + 1 - direction)[:, None]
        return c

    return profile(potentials, build, strain, **kwargs)
