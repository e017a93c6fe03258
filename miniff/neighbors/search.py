"""Neighbour search front end: validation, bin grid, then two compiled calls.

The search itself is a cell list (``neighbor_search`` in ``miniff/_ext/neighbors.pyx``). This module
checks the arguments and prepares the search:

- ``neighbor_prepare`` (compiled, parallel) checks that the positions are finite and wraps them into
  the cell along periodic axes (the integer wrap offsets are handed to the search so that the shifts
  ``S`` it reports refer to the positions *as given*);
- the cell is cut into bins along the lattice directions; a bin's thickness along axis ``a`` is
  measured perpendicular to the other two lattice vectors (plane spacing ``h_a = V / |b x c|``), so
  any triclinic cell works; non-periodic axes are binned over the atoms' extent only;
- the list of bin offsets to visit is computed once and pruned to the offsets whose bins can hold
  a pair closer than the cutoff (the exact minimum distance between two bins); it stays in
  lexicographic order, which the search relies on (its rows then sort by ``(j, S)`` cheaply).
"""

import contextlib
import functools
import itertools
import math
import os
from typing import NamedTuple

import numpy as np

from miniff._ext import kernel_module
from miniff._ext.threads import effective_n_threads
from miniff.neighbors.pairlist import PairList

__all__ = ["DEFAULT_MAX_PAIRS", "SearchInputs", "build_pair_list", "default_max_memory", "estimate_pairs",
           "estimate_search_bytes", "normalize_pbc", "plane_spacings", "prepared_search"]

#: Default refusal threshold on the estimated number of (directed) pairs (about 10 GB of list).
DEFAULT_MAX_PAIRS = 200_000_000

#: Bytes per directed pair of a ``PairList``: j (int32), S (3 int32), D (3 float64), d (float64).
BYTES_PER_PAIR = 4 + 12 + 24 + 8
#: Bytes per bin offset while the offsets are enumerated and pruned (int32 grid, mask, kept copy).
BYTES_PER_OFFSET = 12 + 1 + 12


def default_max_memory():
    """Default memory limit of one neighbour search (bytes): half of the physical memory (8 GiB if unknown)."""
    try:
        return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return 8.0 * 2**30


def estimate_search_bytes(n_atoms, n_pairs, n_offsets):
    """Memory (bytes) a neighbour search allocates, every array counted.

    Parameters
    ----------
    n_atoms : int
    n_pairs : float
        Estimated number of directed pairs (:func:`estimate_pairs`).
    n_offsets : int
        Bin offsets to enumerate (before pruning).

    Returns
    -------
    float
        The pair arrays (``BYTES_PER_PAIR`` each), the bin offsets (``BYTES_PER_OFFSET`` each), the per-atom
        scratch and the row pointer.
    """
    return float(n_pairs) * BYTES_PER_PAIR + float(n_offsets) * BYTES_PER_OFFSET + 160.0 * n_atoms + 1e4


def _check_limit(name, value):
    """A positive limit (``max_pairs``, ``max_memory``) as a float, naming ``name`` in errors."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {value!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def _gib(nbytes):
    return f"{nbytes / 2**30:.3g} GiB"

# Bins per cutoff length: bins are at least cutoff / _BINS_PER_CUTOFF thick.
_BINS_PER_CUTOFF = 1.0
# At most this many bins per atom (sparse clusters, huge empty boxes), never fewer than _MIN_BIN_CAP.
_BINS_PER_ATOM = 2.0
_MIN_BIN_CAP = 64
# With n_threads=None, at least this many atoms per thread.
_ATOMS_PER_THREAD = 2000
# Count pass with the fill loop itself instead of the vectorised count (tests; the search switches to
# it by itself should the two passes ever disagree).
_EXACT_COUNT = False


def normalize_pbc(pbc, name="pbc"):
    """Return periodic boundary conditions as a ``[3]`` bool array.

    Parameters
    ----------
    pbc : bool or sequence of 3 bools
    name : str
        Argument name used in error messages.
    """
    arr = np.asarray(pbc)
    if arr.ndim == 0:
        arr = np.repeat(arr, 3)
    if arr.shape != (3,):
        raise ValueError(f"{name} must be a bool or three bools, got shape {np.shape(pbc)}")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.integer) or not np.all((arr == 0) | (arr == 1)):
            raise TypeError(f"{name} must be a bool or three bools, got {pbc!r}")
        arr = arr.astype(bool)
    return arr.copy()


def plane_spacings(vectors):
    """Distances between lattice planes ``h_a = V / |b x c|``, ``[3]`` Å.

    Parameters
    ----------
    vectors : ndarray [3, 3]
        Cell vectors (rows), Å.
    """
    volume = abs(np.linalg.det(vectors))
    out = np.empty(3)
    for a in range(3):
        out[a] = volume / np.linalg.norm(np.cross(vectors[(a + 1) % 3], vectors[(a + 2) % 3]))
    return out


def _check_cutoff(cutoff):
    try:
        cutoff = float(cutoff)
    except (TypeError, ValueError):
        raise TypeError(f"cutoff must be a number, got {type(cutoff).__name__}") from None
    if not np.isfinite(cutoff) or cutoff <= 0:
        raise ValueError(f"cutoff must be a finite positive number (Å), got {cutoff}")
    if not MIN_CUTOFF <= cutoff <= MAX_CUTOFF:
        raise ValueError(f"cutoff must lie between {MIN_CUTOFF:g} and {MAX_CUTOFF:g} Å, got {cutoff:g}")
    return cutoff


#: Accepted range of cutoffs, Å (outside it bin counts and volumes overflow; no physics lives there).
MIN_CUTOFF, MAX_CUTOFF = 1e-8, 1e8


def estimate_pairs(n_atoms, vectors, pbc, cutoff, extent=None):
    """Rough number of directed pairs a cutoff will produce (used to refuse absurd requests).

    Periodic systems: ``N * (N / V) * 4/3 pi rc^3``. Along non-periodic axes the cell thickness is
    replaced by the atoms' extent plus the cutoff. The estimate is capped by the number of atoms
    times the number of periodic images within reach.

    Parameters
    ----------
    n_atoms : int
    vectors : ndarray [3, 3], Å
    pbc : ndarray [3] bool
    cutoff : float, Å
    extent : ndarray [3] or None
        Extent of the atoms along every axis in fractional units (only non-periodic axes used).
    """
    if n_atoms == 0:
        return 0.0
    h = plane_spacings(vectors)
    volume = abs(np.linalg.det(vectors))
    n_images = 1.0
    for a in range(3):
        if pbc[a]:
            n_images *= 2 * math.ceil(cutoff / h[a]) + 1
        else:
            thickness = (extent[a] if extent is not None else 1.0) * h[a] + cutoff
            volume *= thickness / h[a]
    per_atom = n_atoms / volume * 4.0 / 3.0 * math.pi * cutoff**3
    per_atom = min(per_atom, n_atoms * n_images - 1)
    return float(n_atoms * per_atom)


#: Below this many (atom, bin offset) combinations pruning costs more than the distance checks it saves.
_PRUNE_MIN_WORK = 200_000


def _bin_offsets(m, widths_c, n_atoms=None):
    """Pruned bin offsets (see :func:`_prune_offsets`); cached, since MD and relaxations repeat them.

    Pruning only removes bins that cannot hold neighbours, so it is skipped where it does not pay:
    touching bins (``m <= 1``) and small systems (``n_atoms`` x offsets below ``_PRUNE_MIN_WORK``).
    The offsets are in lexicographic order (the search relies on it).
    """
    m = tuple(int(x) for x in m)
    n_offsets = int(np.prod([2 * mm + 1 for mm in m]))
    if max(m) <= 1 or (n_atoms is not None and n_atoms * n_offsets < _PRUNE_MIN_WORK):
        out = _offset_grid(m)
        out.setflags(write=False)
        return out
    return _cached_offsets(m, np.ascontiguousarray(widths_c, dtype=float).tobytes())


def _offset_grid(m):
    """All offsets ``|k_a| <= m_a``, ``[prod(2 m + 1), 3]`` int32, in lexicographic order."""
    grid = np.indices(tuple(2 * mm + 1 for mm in m), dtype=np.int32).reshape(3, -1).T
    return np.ascontiguousarray(grid - np.array(m, dtype=np.int32))


@functools.lru_cache(maxsize=64)
def _cached_offsets(m, widths_bytes):
    grid = _offset_grid(m)
    widths_c = np.frombuffer(widths_bytes, dtype=float).reshape(3, 3)
    chunk = 65536
    keep = np.concatenate([_prune_offsets(grid[s : s + chunk], widths_c) for s in range(0, len(grid), chunk)])
    out = np.ascontiguousarray(grid[keep])
    out.setflags(write=False)
    return out


def _prune_offsets(k, widths_c):
    """Mask of the bin offsets ``k`` [K, 3] whose bins can hold points closer than 1 (in units of rc).

    ``widths_c`` [3, 3]: rows are the bin edge vectors divided by the cutoff. The minimum distance
    between bins ``c`` and ``c + k`` is ``min |(k + v) @ widths_c|`` over ``v`` in ``[-1, 1]^3``; the
    minimum of this convex quadratic is found exactly by trying every active set (each coordinate
    free, at -1 or at +1) and keeping the feasible candidates.
    """
    k = np.asarray(k, dtype=float)
    g = widths_c @ widths_c.T
    best = np.full(len(k), np.inf)
    for combo in itertools.product((None, -1.0, 1.0), repeat=3):
        free = [a for a in range(3) if combo[a] is None]
        fixed = [a for a in range(3) if combo[a] is not None]
        x = k.copy()
        for a in fixed:
            x[:, a] = k[:, a] + combo[a]
        feasible = np.ones(len(k), dtype=bool)
        if free:
            gff = g[np.ix_(free, free)]
            rhs = -(x[:, fixed] @ g[np.ix_(fixed, free)]) if fixed else np.zeros((len(k), len(free)))
            try:
                xf = np.linalg.solve(gff, rhs.T).T
            except np.linalg.LinAlgError:  # pragma: no cover - gff is positive definite
                continue
            v = xf - k[:, free]
            feasible = np.all(np.abs(v) <= 1.0 + 1e-12, axis=1)
            x[:, free] = xf
        value = np.einsum("ka,ab,kb->k", x, g, x)
        best = np.where(feasible, np.minimum(best, value), best)
    return best < (1.0 + 1e-9) ** 2


def _grid(lo, hi, h, pbc, cutoff, n_atoms):
    """Choose the bin grid: (n_bins [3] int32, frac_min [3], width [3] fractional, extent [3]).

    ``lo``, ``hi``: [3] smallest and largest wrapped fractional coordinate of the atoms (only the
    non-periodic axes are used: there the bins span the atoms, elsewhere the cell).
    """
    fmin = np.where(pbc, 0.0, lo) if n_atoms else np.zeros(3)
    extent = np.where(pbc, 1.0, hi - lo) if n_atoms else np.ones(3)
    length = extent * h  # Å spanned by the bins along every axis (perpendicular)
    cap = max(_MIN_BIN_CAP, _BINS_PER_ATOM * n_atoms)
    thickness = cutoff / _BINS_PER_CUTOFF
    while True:
        # slightly fewer bins when the length is an exact multiple, so that bins are thicker than
        # cutoff / _BINS_PER_CUTOFF and the offsets reach no further than needed
        n_bins = np.maximum(1, np.floor(length / thickness * (1 - 1e-9))).astype(np.int64)
        if np.prod(n_bins.astype(float)) <= cap:
            break
        thickness *= 1.25
    width = np.where(extent > 0, extent / n_bins, 1.0)
    return n_bins.astype(np.int32), fmin, width, extent


def build_pair_list(positions, vectors, pbc, cutoff, image_limit=None, n_threads=None,
                    max_pairs=DEFAULT_MAX_PAIRS, sort=True, max_memory=None):
    """Full neighbour list of atoms in a (partly) periodic cell.

    Parameters
    ----------
    positions : ndarray [N, 3]
        Cartesian positions, Å; they need not lie inside the cell.
    vectors : ndarray [3, 3]
        Cell vectors (rows), Å.
    pbc : bool or sequence of 3 bools
        Periodic axes. Non-periodic axes are never wrapped and have ``S = 0``.
    cutoff : float
        Pairs with ``d < cutoff`` (Å) are kept.
    image_limit : sequence of 3 ints or None
        Largest ``|S_a|`` kept along every axis (``None``: no limit, images follow from the cutoff).
    n_threads : int or None
        OpenMP threads (``miniff._ext.threads.effective_n_threads`` rules).
    max_pairs : float
        Refuse (``ValueError``) when the estimated number of pairs exceeds this.
    sort : bool
        Sort every row by ``(j, S)`` (deterministic, identical for any thread count either way).
    max_memory : float or None
        Refuse (``ValueError``, before allocating anything large) when the estimated memory of all arrays the
        search builds (:func:`estimate_search_bytes`: pair arrays, bin offsets, scratch) exceeds this many
        bytes; None: :func:`default_max_memory` (half of the physical memory).

    Returns
    -------
    PairList
        With ``D_pc = positions[j] + S @ vectors - positions[i]``.
    """
    n = len(positions)
    with prepared_search(positions, vectors, pbc, cutoff, image_limit, n_threads, max_pairs, max_memory) as inputs:
        if inputs is None:
            return PairList(indptr=np.zeros(n + 1, dtype=np.int64), j_p=np.zeros(0, np.int32),
                            S_pc=np.zeros((0, 3), np.int32), D_pc=np.zeros((0, 3)), d_p=np.zeros(0),
                            cutoff=_check_cutoff(cutoff))
        try:
            indptr, j_p, S_pc, D_pc, d_p = kernel_module.neighbor_search(*inputs, bool(sort), inputs.work,
                                                                         _EXACT_COUNT, inputs.max_total)
        except ValueError as error:
            if type(error).__name__ != "TooManyPairs":
                raise
            count = int(error.args[0])
            raise ValueError(
                f"cutoff={inputs.cutoff} Å gives {count} pairs for {n} atoms (the atoms are denser than their cell "
                f"suggests), {_gib(count * BYTES_PER_PAIR)} of pair arrays: more than max_pairs={inputs.max_pairs:.3g} "
                f"or max_memory={_gib(inputs.max_memory)}; use a smaller cutoff, or raise the limits with "
                f"NeighborWrapper(..., max_pairs=..., max_memory=bytes)"
            ) from None
    return PairList(indptr=indptr, j_p=j_p, S_pc=S_pc, D_pc=D_pc, d_p=d_p, cutoff=inputs.cutoff)


class SearchInputs(NamedTuple):
    """The arguments of the compiled cell-list walk (``neighbor_search``, ``pair_search_reduce``), prepared.

    Iterating gives the positional arguments of the compiled calls up to ``n_threads``; ``work`` is their
    scratch memory (valid inside the :func:`prepared_search` block only).
    """

    #: fractional coordinates wrapped along periodic axes, (N, 3)
    frac: np.ndarray
    #: the matching Cartesian positions, (N, 3), Å
    xyz: np.ndarray
    #: integer wrap offsets: the caller's position is ``xyz + wrap @ vectors``, (N, 3) int32
    wrap: np.ndarray
    #: cell rows, (3, 3), Å
    vectors: np.ndarray
    #: bins per axis, (3,) int32
    n_bins: np.ndarray
    #: periodic axes, (3,) int 0/1
    periodic: np.ndarray
    #: lower corner of the bin grid, fractional, (3,)
    frac_min: np.ndarray
    #: bin widths, fractional, (3,)
    width: np.ndarray
    #: bin offsets to visit, (K, 3) int32, lexicographic order
    offsets: np.ndarray
    #: largest |S| per axis, (3,) int32, or negative for none
    image_limit: np.ndarray
    #: Å
    cutoff: float
    #: OpenMP team size
    n_threads: int
    #: scratch (uint8) of the compiled call
    work: np.ndarray
    #: largest pair count whose arrays fit the limits (``neighbor_search``'s ``max_total``)
    max_total: int
    #: the limits checked (pairs, bytes)
    max_pairs: float
    max_memory: float

    def __iter__(self):
        return iter(tuple.__getitem__(self, slice(0, 12)))


@contextlib.contextmanager
def prepared_search(positions, vectors, pbc, cutoff, image_limit=None, n_threads=None, max_pairs=DEFAULT_MAX_PAIRS,
                    max_memory=None, store_pairs=True):
    """Validate, wrap and bin for one cell-list walk; yields :class:`SearchInputs`, or None without atoms.

    Arguments as :func:`build_pair_list`; ``store_pairs=False`` (a walk that keeps no pair list, like the fused
    pair-potential pass) leaves the pair arrays out of the memory estimate. The scratch memory (``work``) is
    taken from the pool of this module for the duration of the block.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float64)
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if vectors.shape != (3, 3):
        raise ValueError(f"vectors must have shape (3, 3), got {vectors.shape}")
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {positions.shape}")
    pbc = normalize_pbc(pbc)
    cutoff = _check_cutoff(cutoff)
    n = len(positions)
    if n >= 2**31 - 1:
        raise ValueError(f"too many atoms for int32 indices: {n}")
    vectors, inverse, h = _cell_geometry(vectors.tobytes())
    if image_limit is None:
        limit = _NO_LIMIT
    else:
        limit = np.asarray(image_limit, dtype=np.int64)
        if limit.shape != (3,) or np.any(limit < 0):
            raise ValueError(f"image_limit must be three non-negative ints, got {image_limit!r}")
        limit = np.where(pbc, limit, 0).astype(np.int32)
    max_memory = _check_limit("max_memory", default_max_memory() if max_memory is None else max_memory)
    max_pairs = _check_limit("max_pairs", max_pairs)
    threads = effective_n_threads(n_threads)
    if n_threads is None:  # automatic: small systems are not worth waking threads for
        threads = max(1, min(threads, n // _ATOMS_PER_THREAD))
    periodic = pbc.astype(np.intc)
    work = _take_work(60 * n + kernel_module.neighbor_work_bytes(n, max(_MIN_BIN_CAP, int(_BINS_PER_ATOM * n))))
    try:
        yield _prepare(positions, vectors, inverse, h, pbc, periodic, cutoff, limit, threads, max_pairs, max_memory,
                       store_pairs, work)
    finally:
        _give_work(work)


def _prepare(positions, vectors, inverse, h, pbc, periodic, cutoff, limit, threads, max_pairs, max_memory,
             store_pairs, work):
    """Wrap the positions, plan the bins and check the limits (:func:`prepared_search` with its checks done)."""
    n = len(positions)
    if n == 0:
        return None
    frac_w = work[: 24 * n].view(np.float64).reshape(n, 3)
    xyz = work[24 * n : 48 * n].view(np.float64).reshape(n, 3)
    wrap = work[48 * n : 60 * n].view(np.int32).reshape(n, 3)
    bounds = np.empty(6)
    status = kernel_module.neighbor_prepare(positions, inverse, vectors, periodic, frac_w, xyz, wrap, bounds, threads)
    if status == 1:
        raise ValueError("positions contain NaN or inf")
    if status == 2:
        raise ValueError("positions are too far outside the cell (more than 2**29 cell lengths)")
    # the plan depends on the atoms only through their extent along non-periodic axes
    lo = tuple(0.0 if pbc[a] else float(bounds[a]) for a in range(3))
    hi = tuple(0.0 if pbc[a] else float(bounds[3 + a]) for a in range(3))
    plan = _plan if not pbc.all() else _cached_plan
    n_bins, fmin, width, estimate, m, widths_c = plan(vectors.tobytes(), tuple(bool(p) for p in pbc), cutoff, n,
                                                     lo, hi)  # a SearchPlan
    if estimate > max_pairs:  # before the offsets, whose number grows like the cube of the cutoff
        raise ValueError(
            f"cutoff={cutoff} Å would give about {estimate:.3g} pairs for {n} atoms, more than "
            f"max_pairs={max_pairs:.3g}; use a smaller cutoff or raise max_pairs"
        )
    n_offsets = math.prod(2 * mm + 1 for mm in m)
    nbytes = estimate_search_bytes(n, estimate if store_pairs else 0, n_offsets)
    if nbytes > max_memory:  # before the offsets and the pair arrays are allocated
        raise ValueError(
            f"cutoff={cutoff} Å would need about {_gib(nbytes)} of memory for the neighbour list of {n} atoms "
            f"(about {estimate:.3g} pairs and {n_offsets:.3g} bin offsets in a cell whose planes are "
            f"{', '.join(f'{x:.3g}' for x in h)} Å apart), more than max_memory={_gib(max_memory)}; use a smaller "
            f"cutoff or a larger cell (a supercell), or raise the limit with NeighborWrapper(..., max_memory=bytes) "
            f"(build_pair_list(..., max_memory=bytes))"
        )
    offsets = _bin_offsets(m, widths_c, n)
    # the estimate assumes evenly spread atoms; the exact count (before the pair arrays exist) is checked too
    max_total = int(min(max_pairs, max(0.0, max_memory - estimate_search_bytes(n, 0, len(offsets))) / BYTES_PER_PAIR))
    return SearchInputs(frac_w, xyz, wrap, vectors, n_bins, periodic, fmin, width, offsets, limit, cutoff, threads,
                        work[60 * n :], max_total, max_pairs, max_memory)


#: Scratch of the last search, reused by the next one (fresh memory costs a page fault per 4 kB).
#: A list used as a stack: pop and append are atomic, so concurrent searches never share a buffer.
_WORK = []
#: Scratch larger than this (bytes) is not kept between calls.
_WORK_KEEP = 256 * 2**20


def _take_work(nbytes):
    """A uint8 scratch buffer of at least ``nbytes`` (the kept one when large enough)."""
    try:
        work = _WORK.pop()
    except IndexError:
        work = None
    if work is None or len(work) < nbytes:
        work = np.empty(nbytes, dtype=np.uint8)
    return work


def _give_work(work):
    """Keep ``work`` for the next search (only one buffer, at most ``_WORK_KEEP`` bytes)."""
    if len(work) <= _WORK_KEEP and not _WORK:
        _WORK.append(work)


_NO_LIMIT = np.full(3, -1, dtype=np.int32)
_NO_LIMIT.setflags(write=False)


def _readonly(*arrays):
    for arr in arrays:
        arr.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=32)
def _cell_geometry(vectors_bytes):
    """Checked cell: (vectors [3, 3], inverse [3, 3], plane spacings h [3] Å), read-only and cached.

    Raises ValueError for non-finite or singular vectors (errors are not cached).
    """
    vectors = np.frombuffer(vectors_bytes, dtype=np.float64).reshape(3, 3).copy()
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or inf")
    volume = abs(np.linalg.det(vectors))
    scale = np.prod(np.linalg.norm(vectors, axis=1))
    if scale == 0 or volume <= 1e-10 * scale:
        raise ValueError("vectors are singular (zero volume)")
    return _readonly(vectors, np.ascontiguousarray(np.linalg.inv(vectors)), plane_spacings(vectors))


class SearchPlan(NamedTuple):
    """The bin grid of one cell-list search (arrays read-only)."""

    #: bins per axis, shape (3,), int32
    n_bins: np.ndarray
    #: fractional coordinate of the grid's lower corner, shape (3,)
    frac_min: np.ndarray
    #: bin width in fractional units, shape (3,)
    width: np.ndarray
    #: estimated number of pairs
    estimate: float
    #: reach of the cutoff in bins per axis
    reach: tuple
    #: bin edge vectors divided by the cutoff (rows), shape (3, 3)
    widths_c: np.ndarray


def _plan(vectors_bytes, pbc, cutoff, n, lo, hi):
    """The :class:`SearchPlan` of a cell, cutoff and atom count.

    ``lo``, ``hi``: extent of the atoms along non-periodic axes (fractional; ignored on periodic ones).
    ``widths_c``: bin edge vectors divided by the cutoff (rows), the input of :func:`_bin_offsets`.
    """
    vectors, _, h = _cell_geometry(vectors_bytes)
    pbc = np.array(pbc, dtype=bool)
    n_bins, fmin, width, extent = _grid(np.array(lo), np.array(hi), h, pbc, cutoff, n)
    estimate = estimate_pairs(n, vectors, pbc, cutoff, extent)
    # fractional reach of the cutoff in bins; non-periodic axes never need more than the grid
    reach = cutoff / (h * width)
    m = np.ceil(reach * (1 + 1e-12) + 1e-12).astype(np.int64)
    m = np.where(pbc, m, np.minimum(m, n_bins - 1))
    widths_c = (width[:, None] * vectors) / cutoff
    n_bins, fmin, width, widths_c = _readonly(n_bins, np.ascontiguousarray(fmin), np.ascontiguousarray(width),
                                              widths_c)
    return SearchPlan(n_bins, fmin, width, estimate, tuple(int(x) for x in m), widths_c)


#: fully periodic cells: the plan depends on the cell, the cutoff and N only (MD, relaxations, benchmarks)
_cached_plan = functools.lru_cache(maxsize=32)(_plan)
