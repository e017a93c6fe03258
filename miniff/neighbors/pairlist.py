"""The pair list: the one data structure every kernel of miniff consumes.

Naming follows matscipy/ASE: suffix ``_n`` per atom, ``_p`` per pair, ``_c``
Cartesian component. A pair ``p`` is an ordered pair (i, j, S) with
``D_pc[p] = r[j] + S_pc[p] @ cell - r[i]`` (Å) and ``d_p[p] = |D_pc[p]|``.
The list is *full*: both directions of every pair are present, sorted by the
centre atom ``i`` (CSR layout: the pairs of atom ``i`` are
``indptr[i]:indptr[i+1]``), and never contains the self pair (i, i, S=0).
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["PairList"]


@dataclass(frozen=True, eq=False)
class PairList:
    """A full neighbour list in CSR layout (see the module docstring).

    Attributes
    ----------
    indptr : ndarray of shape (n_atoms + 1,), int64
        Row pointer: pairs of centre atom ``i`` are ``indptr[i]:indptr[i + 1]``.
    j_p : ndarray of shape (n_pairs,), int32
        Neighbour atom index (0 .. n_atoms - 1, an atom of the unit cell).
    S_pc : ndarray of shape (n_pairs, 3), int32
        Integer lattice shift of the neighbour's periodic image.
    D_pc : ndarray of shape (n_pairs, 3), float64, Å
        Pair vector ``r[j] + S @ cell - r[i]``.
    d_p : ndarray of shape (n_pairs,), float64, Å
        Pair distance ``|D_pc|``; every value is strictly below ``cutoff``.
    cutoff : float, Å
        The cutoff the list was built with.

    Notes
    -----
    Lists built by :func:`miniff.neighbors.search.build_pair_list` hold ``j_p``, ``S_pc``, ``D_pc`` and ``d_p``
    as views of one memory block (writable, C-contiguous). When the last view of a block dies the
    block is kept for the next list of a similar size (at most two blocks, 1 GiB in all), which spares
    the page faults of fresh memory; ``miniff._ext.kernel_module.neighbor_pool(clear=True)``
    releases it.
    """

    indptr: np.ndarray
    j_p: np.ndarray
    S_pc: np.ndarray
    D_pc: np.ndarray
    d_p: np.ndarray
    cutoff: float

    @property
    def n_atoms(self):
        """Number of atoms (rows)."""
        return len(self.indptr) - 1

    @property
    def n_pairs(self):
        """Number of (directed) pairs."""
        return len(self.j_p)

    @property
    def i_p(self):
        """Centre atom of every pair, ndarray of shape (n_pairs,), int32 (computed on access)."""
        return np.repeat(np.arange(self.n_atoms, dtype=np.int32), np.diff(self.indptr))
