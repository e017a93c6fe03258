"""``NeighborWrapper``: a cell, its neighbour list and the 0.1.4 compatibility views of it."""

import itertools
import warnings

import numpy as np

from miniff._ext import kernel_module
from miniff._ext.threads import auto_n_threads, check_n_threads
from miniff.neighbors import analysis
from miniff.neighbors.cell import Cell
from miniff.neighbors.pairlist import PairList
from miniff.neighbors.search import DEFAULT_MAX_PAIRS, _check_cutoff, _check_limit, build_pair_list, normalize_pbc
from miniff.neighbors.species import SpeciesEncoder
from miniff.util import lattice_up_to_radius, rows_dot3

__all__ = ["NeighborWrapper", "parse_replicas"]


def parse_replicas(x):
    """Validate the per-axis replica counts ``x`` of :class:`NeighborWrapper`.

    Returns
    -------
    ndarray [3] int or None
        ``None`` for automatic images; otherwise counts, ``0`` normalised to ``1``.

    Raises
    ------
    ValueError
        Negative or even (>= 2) counts, or not one/three integers.
    """
    if x is None:
        return None
    arr = np.asarray(x)
    if arr.ndim == 0:
        arr = np.repeat(arr, 3)
    if arr.shape != (3,) or arr.dtype.kind not in "iu":
        if arr.shape == (3,) and arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"x must be None, an int or three ints (replica counts per axis), got {x!r}")
    if np.any(arr < 0) or np.any((arr > 1) & (arr % 2 == 0)):
        raise ValueError(
            f"x must hold odd replica counts (1 = the box alone, 3 = images -1..1, 5 = -2..2, ...), got {x!r}"
        )
    return np.maximum(arr.astype(np.int64), 1)


class NeighborWrapper(SpeciesEncoder):
    """A structure with its neighbour list.

    This is the neighbour-list layer's class; ``miniff.kernel.NeighborWrapper`` (defined in
    ``miniff.potentials.wrapper``) adds the evaluation of potentials (``eval``, ``total``, ``grad``, ...).

    Parameters
    ----------
    cell : Cell
        The structure (copied).
    x : None, int or three ints
        Replica counts per axis. ``None`` (default): periodic images follow from the cutoff along the
        periodic axes, for any cutoff. An odd count ``n`` keeps the images ``-(n-1)/2 .. (n-1)/2`` of
        that axis, so ``1`` means the box alone (the axis is not periodic) and ``(1, 1, 1)`` is an
        isolated box. ``0`` is accepted as ``1`` (0.1.4 spelling). Even counts raise ``ValueError``.
        For backward compatibility a bool here is taken as ``normalize`` (0.1.4's second positional
        parameter) with a ``DeprecationWarning``.
    pbc : bool or three bools
        Periodic axes (default all). An axis with ``x == 1`` is not periodic whatever ``pbc`` says.
    cutoff : float or None
        If given, the neighbour list is computed at once (Å).
    normalize : bool
        Wrap fractional coordinates into [0, 1) along periodic axes.
    reciprocal_cutoff : float or None
        If given, :meth:`compute_reciprocal_grid` is called (1/Å).
    n_threads : int or None
        Default OpenMP thread count for the neighbour search and the kernels called through this wrapper
        (a positive int up to ``miniff.kernel.MAX_N_THREADS`` = 1024, a negative count from the cores, or None).
    max_pairs : float
        Refuse cutoffs whose estimated pair count exceeds this (default ``DEFAULT_MAX_PAIRS``).
    max_memory : float or None
        Refuse cutoffs whose neighbour search would need more memory than this many bytes (every array counted,
        image offsets included; default None: half of the physical memory).

    Attributes
    ----------
    cell : Cell
        The private copy (wrapped when ``normalize``).
    cartesian_row : ndarray [N, 3]
        Cartesian positions (Å) the pair vectors refer to: ``D = r[j] + S @ vectors - r[i]``.
    pbc : ndarray [3] bool
        The periodic axes actually used.
    cutoff : float or None
        Å.
    pairs : PairList
        The full neighbour list (after :meth:`compute_distances`).
    species, spec_encoded_row, species_lookup
        From :class:`SpeciesEncoder`.
    """

    #: default refusal threshold on the estimated number of pairs
    default_max_pairs = DEFAULT_MAX_PAIRS

    def __init__(self, cell, x=None, *, pbc=True, cutoff=None, normalize=True, reciprocal_cutoff=None,
                 n_threads=None, max_pairs=None, max_memory=None):
        if isinstance(x, (bool, np.bool_)):
            warnings.warn(
                "passing normalize as the second positional argument of NeighborWrapper is deprecated; "
                "the second argument is now the replica count x (use normalize=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            normalize, x = bool(x), None
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a miniff.kernel.Cell, got {type(cell).__name__}")
        self.x = parse_replicas(x)
        pbc = normalize_pbc(pbc)
        if self.x is not None:
            pbc = pbc & (self.x > 1)
        self.pbc = pbc
        self.n_threads = check_n_threads(n_threads)
        self.max_pairs = _check_limit("max_pairs", self.default_max_pairs if max_pairs is None else max_pairs)
        self.max_memory = None if max_memory is None else _check_limit("max_memory", max_memory)
        self.cutoff = None
        self.reciprocal_cutoff = None
        self.reciprocal_grid = None
        self._pairs = None
        self._pairs_fresh = False
        self.set_cell(cell, normalize=normalize)
        if cutoff is not None:
            self.compute_distances(cutoff)
        if reciprocal_cutoff is not None:
            self.compute_reciprocal_grid(reciprocal_cutoff)

    # --- pass-through -----------------------------------------------------------------------------------------
    @property
    def size(self):
        """Number of atoms."""
        return self.cell.size

    @property
    def volume(self):
        """Cell volume, Å³."""
        return self.cell.volume

    @property
    def vectors(self):
        """Cell vectors ``[3, 3]`` (rows), Å."""
        return self.cell.vectors

    @property
    def coordinates(self):
        """Fractional coordinates ``[N, 3]``."""
        return self.cell.coordinates

    @property
    def values(self):
        """Species labels ``[N]``."""
        return self.cell.values

    @property
    def meta(self):
        """The cell's metadata dict (writable)."""
        return self.cell.meta

    @meta.setter
    def meta(self, value):
        self.cell.meta = value

    @property
    def image_limit(self):
        """Largest ``|S|`` per axis for explicit replica counts ``x``, or None (automatic)."""
        if self.x is None:
            return None
        return (self.x - 1) // 2

    # --- cell -------------------------------------------------------------------------------------------------
    def _wrap(self, coordinates):
        """Wrap fractional ``coordinates`` [N, 3] (a float64 array of this wrapper's, not the caller's) into
        [0, 1) along periodic axes, in place (no copy: they come from ``Cell.copy`` or a fresh transform)."""
        if np.all(self.pbc):
            coordinates -= np.floor(coordinates)
            np.copyto(coordinates, 0.0, where=coordinates >= 1.0)  # -1e-17 - floor(-1e-17) rounds to 1.0
        elif np.any(self.pbc):
            for a in np.flatnonzero(self.pbc):
                column = coordinates[:, a]
                column -= np.floor(column)
                np.copyto(column, 0.0, where=column >= 1.0)
        return coordinates

    def _invalidate(self):
        self._pairs = None
        self._pairs_fresh = False
        self._compat = {}

    def set_cell(self, cell, normalize=True):
        """Replace the structure (copied); the list is rebuilt on next use with the same cutoff.

        Parameters
        ----------
        cell : Cell
        normalize : bool
            Wrap fractional coordinates into [0, 1) along periodic axes.
        """
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a miniff.kernel.Cell, got {type(cell).__name__}")
        cell = cell.copy()
        if normalize:
            cell.coordinates = self._wrap(cell.coordinates)
        self.cell = cell
        self.cartesian_row = cell.cartesian()
        SpeciesEncoder.__init__(self, cell.values)
        self._invalidate()
        if self.reciprocal_cutoff is not None:
            self.compute_reciprocal_grid(self.reciprocal_cutoff)

    def set_cell_cartesian(self, cartesian, normalize=True):
        """Move the atoms to new Cartesian positions (the list is rebuilt on next use).

        Parameters
        ----------
        cartesian : array-like [N, 3] or [3N]
            Å.
        normalize : bool
            Wrap into the cell along periodic axes; ``cartesian_row`` always matches ``cell``.
        """
        cartesian = np.asarray(cartesian, dtype=float)
        if cartesian.size != 3 * self.size:
            raise ValueError(f"cartesian must have {self.size} x 3 values, got shape {cartesian.shape}")
        cartesian = cartesian.reshape(self.size, 3)
        if not np.all(np.isfinite(cartesian)):
            raise ValueError("cartesian contains NaN or inf")
        coordinates = self.cell.transform_from_cartesian(cartesian)
        if normalize:
            coordinates = self._wrap(coordinates)
            self.cartesian_row = rows_dot3(coordinates, self.cell.vectors)
        else:
            self.cartesian_row = cartesian.copy()
        self.cell.coordinates = coordinates
        self._invalidate()

    def set_cutoff(self, cutoff=None, x=None, pbc=True):
        """Set the cutoff (Å) and the periodicity (``x`` and ``pbc`` as in the constructor)."""
        self.x = parse_replicas(x)
        pbc = normalize_pbc(pbc)
        if self.x is not None:
            pbc = pbc & (self.x > 1)
        self.pbc = pbc
        self.cutoff = None if cutoff is None else _check_cutoff(cutoff)
        self._invalidate()

    # --- the list ---------------------------------------------------------------------------------------------
    def compute_distances(self, cutoff=None):
        """Build the full neighbour list ``pairs`` for ``cutoff`` (Å; default: the current cutoff).

        Returns
        -------
        PairList
        """
        if cutoff is None:
            cutoff = self.cutoff
        if cutoff is None:
            raise ValueError("no cutoff: pass compute_distances(cutoff) or construct with cutoff=...")
        cutoff = _check_cutoff(cutoff)
        if self._pairs is not None and self._pairs_fresh and cutoff == self.cutoff:
            return self._pairs  # already built for these positions and this cutoff
        self._pairs = build_pair_list(
            self.cartesian_row,
            self.cell.vectors,
            self.pbc,
            cutoff,
            image_limit=self.image_limit,
            n_threads=self.n_threads,
            max_pairs=self.max_pairs,
            max_memory=getattr(self, "max_memory", None),
        )
        self._pairs_fresh = True
        self.cutoff = cutoff
        self._compat = {}
        return self._pairs

    @property
    def pairs(self):
        """The :class:`PairList` (rebuilt lazily after the cell changed, if a cutoff is set)."""
        if self._pairs is None:
            if self.cutoff is None:
                raise ValueError("no neighbour list: call compute_distances(cutoff) first")
            self.compute_distances(self.cutoff)
        return self._pairs

    @property
    def has_pairs(self):
        """True when a neighbour list is available without recomputation."""
        return self._pairs is not None

    def refresh_pair_vectors(self, cartesian):
        """Keep the pair topology (i, j, S) and recompute ``D_pc``, ``d_p`` for new positions.

        Used with a Verlet skin: pairs may then be longer than ``cutoff``; coordinates are not wrapped
        (``S`` refers to the positions as given).

        Parameters
        ----------
        cartesian : array-like [N, 3]
            New Cartesian positions, Å.
        """
        pairs = self.pairs
        cartesian = np.asarray(cartesian, dtype=float)
        if cartesian.shape != (self.size, 3):
            raise ValueError(f"cartesian must have shape ({self.size}, 3), got {cartesian.shape}")
        if not np.all(np.isfinite(cartesian)):
            raise ValueError("cartesian contains NaN or inf")
        cartesian = np.ascontiguousarray(cartesian)
        D_pc = np.empty((pairs.n_pairs, 3))
        d_p = np.empty(pairs.n_pairs)
        threads = auto_n_threads(self.n_threads, pairs.n_pairs)
        kernel_module.pair_vectors(pairs.indptr, pairs.j_p, pairs.S_pc, cartesian,
                                   np.ascontiguousarray(self.cell.vectors), D_pc, d_p, threads)
        self.cartesian_row = cartesian.copy()
        self.cell.coordinates = self.cell.transform_from_cartesian(cartesian)
        self._pairs = PairList(pairs.indptr, pairs.j_p, pairs.S_pc, D_pc, d_p, pairs.cutoff)
        self._pairs_fresh = False  # same (i, j, S) topology at new positions: not a fresh search
        self._compat = {}

    # --- 0.1.4 compatibility views (built on first access) -----------------------------------------------------
    def _image_ranges(self):
        if self.x is not None:
            return [int(r) for r in self.image_limit]
        S = self.pairs.S_pc
        if len(S) == 0:
            return [0, 0, 0]
        return [int(r) for r in np.abs(S).max(axis=0)]

    def _image_grid(self):
        if "images" not in self._compat:
            ranges = self._image_ranges()
            grid = np.array(list(itertools.product(*(range(-r, r + 1) for r in ranges))), dtype=np.int64)
            self._compat["images"] = (ranges, grid)
        return self._compat["images"]

    @property
    def shift_vectors(self):
        """Cartesian image shifts ``[n_images, 3]`` (Å); the zero shift is at ``n_images // 2``."""
        return self._image_grid()[1] @ self.cell.vectors

    @property
    def cartesian_col(self):
        """Positions of all atoms in all images ``[N * n_images, 3]`` (image-major), Å. O(N * images)."""
        return (self.shift_vectors[:, None, :] + self.cartesian_row[None, :, :]).reshape(-1, 3)

    @property
    def sparse_pair_distances(self):
        """``scipy.sparse.csr_matrix [N, N * n_images]`` of pair distances (0.1.4 layout).

        Column ``image * N + j`` where ``image`` indexes :attr:`shift_vectors`.
        """
        if "csr" not in self._compat:
            from scipy.sparse import csr_matrix

            pairs = self.pairs
            ranges, grid = self._image_grid()
            n = self.size
            span = np.array([2 * r + 1 for r in ranges], dtype=np.int64)
            S = pairs.S_pc.astype(np.int64) + np.array(ranges, dtype=np.int64)
            image = (S[:, 0] * span[1] + S[:, 1]) * span[2] + S[:, 2]
            columns = image * n + pairs.j_p
            n_cols = n * len(grid)
            index_dtype = np.int32 if max(n_cols, pairs.n_pairs) < 2**31 - 1 else np.int64
            matrix = csr_matrix(
                (pairs.d_p, columns.astype(index_dtype), pairs.indptr.astype(index_dtype)), shape=(n, n_cols)
            )
            matrix.sort_indices()
            self._compat["csr"] = matrix
        return self._compat["csr"]

    # --- reciprocal space -------------------------------------------------------------------------------------
    def compute_reciprocal_grid(self, reciprocal_cutoff):
        """Non-zero reciprocal lattice vectors shorter than ``reciprocal_cutoff`` (1/Å) -> ``reciprocal_grid``."""

        reciprocal_cutoff = float(reciprocal_cutoff)
        if not np.isfinite(reciprocal_cutoff) or reciprocal_cutoff <= 0:
            raise ValueError(f"reciprocal_cutoff must be a finite positive number, got {reciprocal_cutoff}")
        vectors = 2 * np.pi * np.linalg.inv(self.cell.vectors).T
        self.reciprocal_grid = lattice_up_to_radius(reciprocal_cutoff, vectors, cover=False, zero=False)
        self.reciprocal_cutoff = reciprocal_cutoff
        return self.reciprocal_grid

    # --- analysis ---------------------------------------------------------------------------------------------
    def pair_reduction_function(self, f, fmt="{}-{}"):
        """Apply ``f(d, code1, code2)`` to the distances of every unordered species pair (see ``miniff.kernel``)."""
        return analysis.pair_reduction_function(self, f, fmt=fmt)

    def rdf(self, r, sigma, fmt="{}-{}"):
        """Gaussian-smeared radial distribution functions per species pair (see ``miniff.kernel.rdf``)."""
        return analysis.rdf(self, r, sigma, fmt=fmt)

    def adf(self, theta, sigma, cutoff, fmt="{}-[{},{}]"):
        """Gaussian-smeared bond-angle distributions (see ``miniff.kernel.adf``)."""
        return analysis.adf(self, theta, sigma, cutoff, fmt=fmt)

    def __repr__(self):
        state = f"{self.pairs.n_pairs} pairs, cutoff={self.cutoff}" if self._pairs is not None else "no list"
        return f"NeighborWrapper({self.size} atoms, pbc={self.pbc.tolist()}, {state})"
