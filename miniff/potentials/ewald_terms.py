"""The three sums of the Ewald method on a ``NeighborWrapper``: real space, reciprocal space, self + background.

Used by the Ewald families (``miniff/potentials/ewald.py``). Every function takes the charges ``q_n [N]`` (e)
and returns per-atom quantities in eV, eV/Å (dE/dr), eV/e (dE/dq) and eV (virials ``[N, 3, 3]``); formulas in
``docs/formulas.md`` ("Ewald summation"). The real-space sum runs over the full pair list in the compiled
core (``ewald_real_reduce``), or, without a pair list, during the cell-list walk over the half stencil
(``ewald_real_search``, :func:`real_space_search`); the reciprocal sum over half of the k-vectors (``k`` and
``-k`` give equal terms) in the compiled core (``ewald_reciprocal``); the self and background terms are O(N)
numpy.
"""

import math
from typing import NamedTuple

import numpy as np

from miniff._ext import kernel_module as _k
from miniff.ewald import ewald_cutoffs
from miniff.neighbors.search import DEFAULT_MAX_PAIRS, prepared_search
from miniff.potentials.guards import COINCIDENT_DISTANCE, CoincidentAtomsError

__all__ = ["MAX_K_VECTORS", "KGrid", "charges_of", "check_periodic", "check_images", "half_grid", "k_vectors",
           "reciprocal_cutoff",
           "real_space", "real_space_search", "reciprocal_space", "self_terms", "LongRange"]

#: Largest number of (half-space) k-vectors a reciprocal sum may use (about 100 bytes each).
MAX_K_VECTORS = 4_000_000


class LongRange(NamedTuple):
    """Per-atom results of a term that is not a sum over pairs."""

    #: energies, shape (N,), eV
    energy_n: np.ndarray
    #: dE/dr, shape (N, 3), eV/Å, or None
    grad_nc: object
    #: dE/dq, shape (N,), eV/e, or None
    cgrad_n: object
    #: per-atom virials (sum to dE/d strain), shape (N, 3, 3), eV, or None
    virial_n: object
    #: the structure factor (Re S [K], Im S [K]) of a reciprocal sum, kept to add missing parts later, or None
    s_k: object = None


def charges_of(nw):
    """The charges ``nw.meta["charges"]`` as a checked float64 array ``[N]`` (e).

    Raises
    ------
    ValueError
        Missing, wrong length, or not finite (naming ``meta['charges']``).
    """
    meta = getattr(nw, "meta", None) or {}
    if "charges" not in meta or meta["charges"] is None:
        raise ValueError(
            "Ewald terms need charges: set cell.meta['charges'] to one charge (e) per atom "
            "(the ASE calculator takes atoms.get_initial_charges())"
        )
    try:
        q = np.ascontiguousarray(np.asarray(meta["charges"], dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise ValueError("meta['charges'] must be numbers, one per atom") from None
    n = int(nw.size)
    if len(q) != n:
        raise ValueError(f"meta['charges'] has {len(q)} values but the cell has {n} atoms")
    if not np.all(np.isfinite(q)):
        bad = np.flatnonzero(~np.isfinite(q))[:5].tolist()
        raise ValueError(f"meta['charges'] contains NaN or inf (atoms {bad})")
    return q


def check_periodic(nw, what):
    """Raise ``ValueError`` unless the wrapper is periodic along all three axes (needed by ``what``)."""
    pbc = np.asarray(getattr(nw, "pbc", (True, True, True)), dtype=bool)
    if not pbc.all():
        raise ValueError(
            f"{what} needs a cell periodic along all three axes (pbc={pbc.tolist()}): Ewald summation is "
            "defined for 3-D periodic systems. For a molecule, cluster or slab put it in a periodic box with "
            "enough vacuum (NeighborWrapper(cell, pbc=True)); the real-space term alone "
            "(ewald_real_potential_family) is a screened Coulomb pair sum usable without periodicity"
        )


def check_images(nw, a):
    """Raise ``ValueError`` when fixed replica counts (``NeighborWrapper(cell, x=...)``) cannot reach ``a``."""
    limit = getattr(nw, "image_limit", None)
    if limit is None:
        return
    vectors = np.asarray(nw.vectors, dtype=float)
    pbc = np.asarray(nw.pbc, dtype=bool)
    volume = abs(np.linalg.det(vectors))
    for ax in np.flatnonzero(pbc):
        h = volume / np.linalg.norm(np.cross(vectors[(ax + 1) % 3], vectors[(ax + 2) % 3]))
        need = math.ceil(a / h)
        if limit[ax] < need:
            raise ValueError(
                f"the real-space cutoff a={a} Å needs periodic images up to {need} along axis {ax}, but the "
                f"NeighborWrapper keeps only {int(limit[ax])} (x={list(2 * np.asarray(limit) + 1)}): use x=None "
                f"(images from the cutoff) or a smaller a"
            )


class KGrid(NamedTuple):
    """Half of the reciprocal lattice vectors of a cutoff: one of each ``k, -k``, in rows of equal (m0, m1) and
    consecutive m2."""

    #: integer coordinates ``k = m @ (2 pi inv(vectors).T)``, shape (K, 3), int32, sorted
    m_k3: np.ndarray
    #: the vectors, shape (K, 3), 1/Å
    k_kc: np.ndarray
    #: start of every row (equal m0 and m1, consecutive m2), shape (R + 1,), int64
    row_ptr: np.ndarray
    #: largest |m| per axis, shape (3,), int64
    mmax: np.ndarray
    #: reciprocal basis (rows b_d), shape (3, 3), 1/Å
    recip: np.ndarray


def _grid_of(m, vectors):
    """``KGrid`` of integer coordinates ``m`` [K, 3] (upper half, any order)."""
    recip = 2 * np.pi * np.linalg.inv(np.asarray(vectors, dtype=float)).T
    m = np.asarray(m, dtype=np.int64).reshape(-1, 3)
    m = m[np.lexsort((m[:, 2], m[:, 1], m[:, 0]))]
    if len(m):
        step = np.diff(m, axis=0)
        change = np.flatnonzero(np.any(step[:, :2] != 0, axis=1) | (step[:, 2] != 1)) + 1  # rows: consecutive m2
        row_ptr = np.concatenate([[0], change, [len(m)]]).astype(np.int64)
        mmax = np.abs(m).max(axis=0).astype(np.int64)
    else:
        row_ptr = np.zeros(1, dtype=np.int64)
        mmax = np.zeros(3, dtype=np.int64)
    return KGrid(np.ascontiguousarray(m, dtype=np.int32), np.ascontiguousarray(m @ recip, dtype=np.float64),
                 row_ptr, mmax, np.ascontiguousarray(recip))


def _upper(m):
    return (m[:, 0] > 0) | ((m[:, 0] == 0) & ((m[:, 1] > 0) | ((m[:, 1] == 0) & (m[:, 2] > 0))))


#: The latest grids of :func:`half_grid`, keyed by (cell vectors, k_cut): MD and relaxations ask for the same
#: grid at every step (at 1 000 ions building it costs about a sixth of the direct Ewald step).
_HALF_GRIDS = {}
_HALF_GRIDS_KEPT = 8


def half_grid(vectors, k_cut):
    """Reciprocal lattice vectors with ``0 < |k| < k_cut`` (1/Å), one of each pair ``k, -k`` (a ``KGrid``, its
    arrays read-only: the latest grids are kept and shared).

    Raises
    ------
    ValueError
        When more than ``MAX_K_VECTORS`` would be needed.
    """
    vectors = np.ascontiguousarray(vectors, dtype=float)
    key = (vectors.tobytes(), float(k_cut))
    grid = _HALF_GRIDS.get(key)
    if grid is None:
        grid = _build_half_grid(vectors, k_cut)
        for array in grid:
            array.flags.writeable = False
        if len(_HALF_GRIDS) >= _HALF_GRIDS_KEPT:
            _HALF_GRIDS.pop(next(iter(_HALF_GRIDS)))
        _HALF_GRIDS[key] = grid
    return grid


def _build_half_grid(vectors, k_cut):
    recip = 2 * np.pi * np.linalg.inv(vectors).T
    reach = np.floor(k_cut * np.linalg.norm(vectors, axis=1) / (2 * np.pi)).astype(np.int64)
    box = int(np.prod(2 * reach + 1))
    estimate = 4 / 3 * np.pi * k_cut**3 * abs(np.linalg.det(vectors)) / (2 * np.pi) ** 3 / 2
    if estimate > MAX_K_VECTORS or box > 20 * MAX_K_VECTORS:
        raise ValueError(
            f"a reciprocal cutoff of {k_cut:.4g} 1/Å needs about {estimate:.3g} k-vectors, more than the limit of "
            f"{MAX_K_VECTORS}: ask for a coarser accuracy, or use a smaller eta (with a larger real-space cutoff a)"
        )
    axes = [np.arange(0, reach[0] + 1), np.arange(-reach[1], reach[1] + 1), np.arange(-reach[2], reach[2] + 1)]
    m = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    m = m[_upper(m)]
    k = m @ recip
    return _grid_of(m[np.einsum("kc,kc->k", k, k) < k_cut * k_cut], vectors)


def _halve(grid, vectors):
    """``KGrid`` of one of each ``k, -k`` of a full grid (the wrapper's ``reciprocal_grid``)."""
    m = np.rint(np.asarray(grid, dtype=float) @ np.asarray(vectors, dtype=float).T / (2 * np.pi)).astype(np.int64)
    return _grid_of(m[_upper(m)], vectors)


def reciprocal_cutoff(nw, eta, q_n, scale, k_cut=None, accuracy=None):
    """The reciprocal cutoff (1/Å) of a reciprocal sum and where it came from (for error messages).

    In order of preference: ``k_cut``; the wrapper's ``reciprocal_cutoff`` (``NeighborWrapper(...,
    reciprocal_cutoff=...)``); the cutoff whose estimated error (``miniff.ewald.ewald_k_cutoff_error``) equals
    ``accuracy`` (eV). 0 when every charge is 0.

    Returns
    -------
    (k_cut float, source str, from_wrapper bool)
    """
    if k_cut is not None:
        return float(k_cut), f"k_cut={k_cut}", False
    if getattr(nw, "reciprocal_grid", None) is not None:
        return float(nw.reciprocal_cutoff), f"the wrapper's reciprocal_cutoff={nw.reciprocal_cutoff}", True
    vectors = np.asarray(nw.vectors, dtype=float)
    volume = abs(float(np.linalg.det(vectors)))
    charge = float(q_n @ q_n)
    if charge * abs(scale) == 0:
        return 0.0, "zero charges", False
    return ewald_cutoffs(eta, volume, charge, abs(scale), accuracy)[1], f"accuracy={accuracy} eV (eta={eta} 1/Å)", \
        False


def k_vectors(nw, eta, q_n, scale, k_cut=None, accuracy=None):
    """The half grid of k-vectors of a reciprocal sum, and its cutoff (see :func:`reciprocal_cutoff`).

    Returns
    -------
    (KGrid, k_cut float 1/Å)
    """
    vectors = np.asarray(nw.vectors, dtype=float)
    k_cut, source, from_wrapper = reciprocal_cutoff(nw, eta, q_n, scale, k_cut, accuracy)
    if from_wrapper:
        return _halve(nw.reciprocal_grid, vectors), k_cut
    if k_cut == 0:
        return _grid_of(np.zeros((0, 3)), vectors), 0.0
    key = (vectors.tobytes(), float(k_cut))
    cached = getattr(nw, "_ewald_k_grid", None)
    if cached is not None and cached[0] == key:
        return cached[1], float(k_cut)
    try:
        grid = half_grid(vectors, k_cut)
    except ValueError as e:
        raise ValueError(f"{source} cannot be reached: {e}") from None
    try:
        nw._ewald_k_grid = (key, grid)
    except AttributeError:
        pass
    return grid, float(k_cut)


def real_space(q_n, eta, a, scale, arrays, grad_pc, cgrad, n_threads, energy_n=None):
    """Real-space sum ``scale/2 sum_i sum_j q_i q_j erfc(eta r_ij) / r_ij`` over the pairs with ``r < a``.

    Parameters
    ----------
    arrays : KernelArrays
        Of the wrapper (``miniff.potentials.base.pair_arrays``).
    grad_pc : ndarray [P, 3] or None
        Per-pair gradients are added here (eV/Å).
    cgrad : bool
        Also return dE/dq.
    energy_n : ndarray [N] or None
        Energies are added here (else a new array).

    Returns
    -------
    (energy_n [N] eV, cgrad_n [N] eV/e or None)
    """
    indptr, j_p, d_p, D_pc, _ = arrays
    n = len(indptr) - 1
    if len(d_p):
        close = d_p < a
        if close.any() and float(d_p[close].min()) <= 0.0:
            p = int(np.flatnonzero(close & (d_p <= 0.0))[0])
            i = int(np.searchsorted(indptr, p, side="right") - 1)
            raise ValueError(f"atoms {i} and {int(j_p[p])} coincide (distance 0): the Coulomb energy is infinite")
    energy_n = np.zeros(n) if energy_n is None else energy_n
    cgrad_n = np.zeros(n) if cgrad else np.zeros(0)
    _k.ewald_real_reduce(q_n, float(eta), float(a), float(scale), indptr, j_p, d_p, D_pc, energy_n,
                         np.zeros((0, 3)) if grad_pc is None else grad_pc, grad_pc is not None, cgrad_n, cgrad,
                         n_threads)
    return energy_n, (cgrad_n if cgrad else None)


def real_space_search(nw, q_n, eta, a, scale, grad, virial, cgrad, n_threads):
    """The real-space sum of :func:`real_space` without a pair list: summed during the cell-list walk over the
    half stencil (every pair met once, Newton's third law), per atom.

    Parameters
    ----------
    nw : NeighborWrapper
        Positions, cell and periodicity (no image limit); its pair list is neither used nor built.
    q_n : ndarray [N]
        e.
    eta, a, scale : float
        1/Å, Å (cutoff), eV Å.
    grad, virial, cgrad : bool
        Also dE/dr [N, 3] (eV/Å), per-atom virials [N, 3, 3] (eV, half of every pair's to each atom, as the
        list path) and dE/dq [N] (eV/e).

    Returns
    -------
    LongRange
        Reproducible for a thread count; different thread counts differ by the order of floating-point sums.

    Raises
    ------
    CoincidentAtomsError
        (a ``ValueError``) two atoms closer than ``guards.COINCIDENT_DISTANCE``, naming them.
    """
    n = int(nw.size)
    energy_n = np.zeros(n)
    grad_nc = np.zeros((n, 3)) if grad else None
    virial_n9 = np.zeros((n, 9)) if virial else None
    cgrad_n = np.zeros(n) if cgrad else None
    coincident = None
    with prepared_search(nw.cartesian_row, nw.vectors, nw.pbc, float(a), None, n_threads,
                         getattr(nw, "max_pairs", DEFAULT_MAX_PAIRS), getattr(nw, "max_memory", None),
                         store_pairs=False) as inputs:
        if inputs is not None:
            coincident = _k.ewald_real_search(
                inputs.frac, inputs.xyz, inputs.wrap, inputs.vectors, inputs.n_bins, inputs.periodic,
                inputs.frac_min, inputs.width, _k.half_stencil(inputs.offsets), inputs.cutoff, inputs.n_threads,
                inputs.work, np.ascontiguousarray(q_n, dtype=np.float64), float(eta), float(scale), energy_n,
                grad_nc, virial_n9, cgrad_n, COINCIDENT_DISTANCE)
    if coincident is not None:
        i, j = coincident
        raise CoincidentAtomsError(
            f"coincident atoms: atoms {i} and {j} (or one of its periodic images) are less than "
            f"{COINCIDENT_DISTANCE:g} Å apart: the Coulomb energy is infinite. Remove the duplicate atoms")
    return LongRange(energy_n, grad_nc, cgrad_n, None if virial_n9 is None else virial_n9.reshape(n, 3, 3))


def reciprocal_space(q_n, r_nc, volume, grid, eta, scale, grad, cgrad, virial, n_threads, s_k=None):
    """Reciprocal sum ``(2 pi scale / V) sum_{k != 0} exp(-k^2 / (4 eta^2)) / k^2 |S(k)|^2`` per atom.

    Parameters
    ----------
    q_n : ndarray [N]
        e.
    r_nc : ndarray [N, 3]
        Cartesian positions, Å.
    volume : float
        Å³.
    grid : KGrid
        Half grid (one of each ``k, -k``).
    grad, cgrad, virial : bool
        Which per-atom quantities to compute.
    s_k : (ndarray [K], ndarray [K]) or None
        The structure factor of these charges, positions and grid, if already known (``LongRange.s_k``).

    Returns
    -------
    LongRange
    """
    n = len(q_n)
    k_kc = grid.k_kc
    k2 = np.einsum("kc,kc->k", k_kc, k_kc)
    # weight of one half-space vector (k and -k): 2 x 2 pi scale / V x exp(-k^2 / 4 eta^2) / k^2
    w_k = np.ascontiguousarray(4 * np.pi * scale / volume * np.exp(-k2 / (4 * eta * eta)) / k2)
    # d |k|-dependence / d strain: M = -1 + c_k k k, c_k = 2 (1/k^2 + 1/(4 eta^2))
    c_k = np.ascontiguousarray(2 * (1 / k2 + 1 / (4 * eta * eta)))
    have_sf = s_k is not None
    re_k, im_k = (np.empty(len(k_kc)), np.empty(len(k_kc))) if s_k is None else s_k
    r_nc = np.ascontiguousarray(r_nc, dtype=np.float64)
    energy_n = np.zeros(n)
    grad_nc = np.zeros((n, 3)) if grad else np.zeros((0, 3))
    cgrad_n = np.zeros(n) if cgrad else np.zeros(0)
    virial_n9 = np.zeros((n, 9)) if virial else np.zeros((0, 9))
    _k.ewald_reciprocal(np.ascontiguousarray(q_n, dtype=np.float64), r_nc, grid.recip, grid.m_k3, grid.row_ptr,
                        grid.mmax, w_k, c_k, re_k, im_k, have_sf, energy_n, grad_nc, grad, cgrad_n, cgrad, virial_n9,
                        virial, n_threads)
    return LongRange(energy_n, grad_nc if grad else None, cgrad_n if cgrad else None,
                     virial_n9.reshape(n, 3, 3) if virial else None, (re_k, im_k))


def self_terms(q_n, eta, volume, scale, cgrad, virial):
    """Self energy ``-scale eta / sqrt(pi) q_i^2`` and neutralising background ``-scale pi q_i Q / (2 eta^2 V)``.

    ``Q = sum q`` (the background is zero for a neutral cell). The background depends on the volume, so it has
    a virial ``-E_bg,i`` times the identity.

    Returns
    -------
    LongRange
        (no position gradient: these terms do not depend on positions)
    """
    total = float(q_n.sum())
    background_n = -scale * np.pi * q_n * total / (2 * eta * eta * volume)
    energy_n = -scale * eta / math.sqrt(math.pi) * q_n * q_n + background_n
    cgrad_n = None
    if cgrad:
        cgrad_n = -2 * scale * eta / math.sqrt(math.pi) * q_n - scale * np.pi * total / (eta * eta * volume)
    virial_n = None
    if virial:
        virial_n = -background_n[:, None, None] * np.eye(3)[None]
    return LongRange(energy_n, None, cgrad_n, virial_n)
