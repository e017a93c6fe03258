"""Seeded structures shared by every benchmark case, so that every tool sees identical inputs.

All generators return :class:`ase.Atoms` with positions wrapped into the (orthorhombic) box.
"""

import numpy as np

__all__ = [
    "SI_LATTICE",
    "SI_NOISE",
    "AR_LATTICE",
    "LJ_EPSILON",
    "LJ_SIGMA",
    "LJ_CUTOFF",
    "SEED",
    "si_diamond",
    "si_diamond_n",
    "fcc_argon",
    "fcc_argon_n",
]

#: Lattice constant of diamond silicon, Å.
SI_LATTICE = 5.43
#: Standard deviation of the Gaussian displacement added to every Si atom, Å.
SI_NOISE = 0.05
#: Lattice constant of fcc argon, Å.
AR_LATTICE = 5.26
#: Lennard-Jones parameters of argon: well depth (eV), sigma (Å), cutoff (Å).
LJ_EPSILON = 0.0104
LJ_SIGMA = 3.40
LJ_CUTOFF = 8.5
#: Default seed of the displacement noise.
SEED = 20261121


def _cubic_reps(n_atoms, per_cell):
    """Repetitions (k, k, k) of a cubic cell with ``per_cell`` atoms giving the atom count closest to ``n_atoms``."""
    k = max(1, int(round((n_atoms / per_cell) ** (1.0 / 3.0))))
    return (k, k, k)


def si_diamond(reps, noise=SI_NOISE, seed=SEED):
    """Diamond silicon supercell (a = 5.43 Å, 8 atoms per cubic cell) with Gaussian noise.

    Parameters
    ----------
    reps : tuple of 3 int
        Repetitions of the 8-atom conventional cell along x, y, z.
    noise : float
        Standard deviation of the random displacement of every atom, Å.
    seed : int
        Seed of the displacement noise (numpy ``default_rng``).

    Returns
    -------
    ase.Atoms
        ``8 * prod(reps)`` Si atoms, periodic, positions wrapped into the box.
    """
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=SI_LATTICE, cubic=True).repeat(tuple(int(r) for r in reps))
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=noise, size=atoms.positions.shape)
    atoms.wrap()
    return atoms


def si_diamond_n(n_atoms, noise=SI_NOISE, seed=SEED):
    """Cubic diamond Si supercell with about ``n_atoms`` atoms (exactly ``8 k**3``), see :func:`si_diamond`."""
    return si_diamond(_cubic_reps(n_atoms, 8), noise=noise, seed=seed)


def fcc_argon(reps):
    """Perfect fcc argon supercell (a = 5.26 Å, 4 atoms per cubic cell), periodic.

    Parameters
    ----------
    reps : tuple of 3 int
        Repetitions of the 4-atom conventional cell.

    Returns
    -------
    ase.Atoms
    """
    from ase.build import bulk

    atoms = bulk("Ar", "fcc", a=AR_LATTICE, cubic=True).repeat(tuple(int(r) for r in reps))
    atoms.wrap()
    return atoms


def fcc_argon_n(n_atoms):
    """Cubic fcc Ar supercell with about ``n_atoms`` atoms (exactly ``4 k**3``), see :func:`fcc_argon`."""
    return fcc_argon(_cubic_reps(n_atoms, 4))
