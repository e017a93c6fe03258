# cython: language_level=3
"""Fused neighbour search and pair-potential pass of miniff's compiled core (private): ``pair_search_reduce``.

For sets of plain pair potentials (harmonic, Lennard-Jones, SW2) the energies, the per-atom gradient and the
per-atom virials are summed while the cell list is walked, without storing a pair list: memory O(N) instead
of O(pairs), and no pass writing and re-reading the pairs. The grid, the candidates of a bin and the
distance test are those of the neighbour search (``neighbors.pxd``); the pair terms are ``_pair_term`` of
``common.pxd``, as in ``pair.pyx``'s per-atom gather.
"""

# Work split: OpenMP over bins (dynamic schedule); every atom is the centre of its own row, owned by the
# thread of its bin, which writes only that atom's outputs (the list is *full*: pair (i, j) is seen from i
# and from j), so results do not depend on the number of threads. For each atom the hits of the distance
# test (candidate order: the bin offsets in lexicographic order, atoms of a bin by index) are copied into a
# per-thread scratch (vector, distance, species), then every term runs over that scratch exactly as
# ``_pair_atom_direct`` runs over a row of the list.

from libc.math cimport sqrt
from libc.stdint cimport int64_t, int32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from cython.parallel cimport prange

import numpy as np

from miniff._ext.common cimport (
    RED_PAIR_HARMONIC, RED_PAIR_LJ, RED_PAIR_SW2, PairConst, PairSums, _match, _pair_const, _pair_term, _sums_add,
    _sums_store,
)
from miniff._ext.neighbors cimport (
    _NLGrid, _NLThr, _nl_free, _nl_gather, _nl_pieces, _nl_reserve, _nl_setup, miniff_nl_select,
)
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED, omp_get_thread_num

__all__ = ["pair_search_reduce", "MAX_PAIR_TERMS"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext

cdef enum:
    _MAX_TERMS = 64

#: Largest number of pair terms of one call.
MAX_PAIR_TERMS = _MAX_TERMS


cdef struct _Terms:
    int n
    PairConst k[_MAX_TERMS]
    double cut[_MAX_TERMS]
    int sa[_MAX_TERMS]
    int sb[_MAX_TERMS]


cdef struct _Scratch:
    # hits of the current atom: pair vector, squared distance, neighbour species (capacity cap)
    double* dx
    double* dy
    double* dz
    double* r2
    int32_t* sj
    int64_t cap
    # first coincident pair met by the thread: original indices (-1: none)
    int64_t coincident_i
    int64_t coincident_j


cdef int _scratch_reserve(_Scratch* sc, int64_t need) noexcept nogil:
    if need <= sc.cap:
        return 0
    free(sc.dx)
    free(sc.dy)
    free(sc.dz)
    free(sc.r2)
    free(sc.sj)
    sc.cap = need if need > 2 * sc.cap else 2 * sc.cap
    sc.dx = <double*> malloc(sc.cap * sizeof(double))
    sc.dy = <double*> malloc(sc.cap * sizeof(double))
    sc.dz = <double*> malloc(sc.cap * sizeof(double))
    sc.r2 = <double*> malloc(sc.cap * sizeof(double))
    sc.sj = <int32_t*> malloc(sc.cap * sizeof(int32_t))
    if sc.dx == NULL or sc.dy == NULL or sc.dz == NULL or sc.r2 == NULL or sc.sj == NULL:
        sc.cap = 0
        return 1
    return 0


cdef void _atom_terms(const _Terms* terms, int64_t i, int32_t si, const _Scratch* sc, int64_t nh,
                      double* energy_n, double* grad_nc, double* vir_n9) noexcept nogil:
    """Every term at atom ``i`` (species ``si``) over its ``nh`` hits in ``sc``: as ``_pair_atom_direct``."""
    cdef int kt, wt, sa, sb
    cdef int64_t h
    cdef int32_t sj
    cdef bint ia, ib
    cdef double f, g, r, r2, ir2, s6, c0, c1, cut2
    cdef bint lj
    cdef PairSums a
    for kt in range(terms.n):
        sa = terms.sa[kt]
        sb = terms.sb[kt]
        ia = _match(si, sa)
        ib = _match(si, sb)
        if not (ia or ib):
            continue
        cut2 = terms.cut[kt] * terms.cut[kt]
        lj = terms.k[kt].fam == RED_PAIR_LJ
        c0 = terms.k[kt].c0
        c1 = terms.k[kt].c1
        memset(&a, 0, sizeof(PairSums))
        for h in range(nh):
            r2 = sc.r2[h]
            if r2 >= cut2:
                continue
            sj = sc.sj[h]
            wt = 0
            if ia and (sb < 0 or sj == sb):
                wt = 1
            if ib and (sa < 0 or sj == sa):
                wt = wt + 2
            if wt == 0:
                continue
            if lj:  # _pair_term's Lennard-Jones from r^2 (no square root): the same formula
                ir2 = 1.0 / r2
                s6 = c1 * ir2
                s6 = s6 * s6 * s6
                g = c0 * (6.0 * s6 - 12.0 * s6 * s6) * ir2
                f = c0 * (s6 * s6 - s6)
            else:
                r = sqrt(r2)
                f = _pair_term(&terms.k[kt], r, 1.0 / r, &g)
            _sums_add(&a, wt, f, g, sc.dx[h], sc.dy[h], sc.dz[h], vir_n9 != NULL)
        _sums_store(&a, i, energy_n, grad_nc, vir_n9)


cdef void _bin_terms(_NLGrid* g, _Scratch* scratch, const _Terms* terms, const int32_t* spec_n, bint one_species,
                     double r2_coincident, int64_t flat, int tid, double* energy_n, double* grad_nc,
                     double* vir_n9) noexcept nogil:
    """The pair terms of every atom of bin ``flat`` (thread ``tid``); ``one_species``: every atom has the species
    code of the first (neighbours' species are not looked up); pairs with ``r^2 <= r2_coincident`` are not
    evaluated and the first is recorded (``r2_coincident`` < 0: none)."""
    cdef _NLThr* th = &g.thr[tid]
    cdef _Scratch* sc = &scratch[tid]
    cdef int64_t s, a, c, t, nh, k, n_cand = 0, self_c
    cdef int n_pieces, p
    cdef double xi, yi, zi, dx, dy, dz, r2
    cdef int32_t* hits
    cdef int64_t s_begin = g.bin_start[flat], s_end = g.bin_start[flat + 1]
    if s_begin == s_end or th.failed:
        return
    n_pieces = _nl_pieces(g, th, flat, &n_cand)
    if n_cand >= 2147483647 or _nl_reserve(th, n_cand + 1) or _scratch_reserve(sc, n_cand + 1):
        th.failed = 1
        return
    _nl_gather(th, g, n_pieces, s_begin, s_end)
    hits = th.hits
    for s in range(s_begin, s_end):
        xi = g.px[s]
        yi = g.py[s]
        zi = g.pz[s]
        nh = miniff_nl_select(th.cx, th.cy, th.cz, th.n_c, xi, yi, zi, g.rc2, hits)
        self_c = s + th.self_off if th.has_self else -1
        k = 0
        p = 0
        for a in range(nh):
            c = hits[a]
            if c == self_c:
                continue
            dx = th.cx[c] - xi
            dy = th.cy[c] - yi
            dz = th.cz[c] - zi
            r2 = dx * dx + dy * dy + dz * dz
            if r2 <= r2_coincident or not one_species:  # the neighbour's index is needed (p only advances)
                while c >= th.pc_c0[p + 1]:
                    p = p + 1
                t = th.pc_t0[p] + c - th.pc_c0[p]
            if r2 <= r2_coincident:
                if sc.coincident_i < 0:
                    sc.coincident_i = g.sorted_index[s]
                    sc.coincident_j = g.sorted_index[t]
                continue
            sc.dx[k] = dx
            sc.dy[k] = dy
            sc.dz[k] = dz
            sc.r2[k] = r2
            sc.sj[k] = spec_n[0] if one_species else spec_n[g.sorted_index[t]]
            k = k + 1
        _atom_terms(terms, g.sorted_index[s], spec_n[g.sorted_index[s]], sc, k, energy_n, grad_nc, vir_n9)


def pair_search_reduce(const double[:, ::1] frac, const double[:, ::1] xyz, const int32_t[:, ::1] shift,
                       const double[:, ::1] vectors, const int[::1] n_bins, const int[::1] periodic,
                       const double[::1] frac_min, const double[::1] bin_width, const int[:, ::1] offsets,
                       double cutoff, int n_threads, unsigned char[::1] work, const int32_t[::1] spec_n,
                       const int32_t[::1] fam_k, const double[:, ::1] par_k, const double[::1] cutoff_k,
                       const int32_t[::1] sa_k, const int32_t[::1] sb_k, double[::1] energy_n,
                       double[:, ::1] grad_nc=None, double[:, ::1] virial_n9=None, double coincident=0.0):
    """Pair terms summed during the cell-list walk, without a pair list (private; the search arguments are
    those of ``neighbors.neighbor_search`` with no image limit, prepared by ``miniff.neighbors.search``).

    Term ``k`` is family ``fam_k[k]`` (a plain pair family code) with parameters ``par_k[k, :]`` (as
    ``pair_reduce_atoms``), cutoff ``cutoff_k[k] <= cutoff`` (Å) and species tag ``sa_k[k]-sb_k[k]`` (codes of
    ``spec_n`` [N] int32 >= 0, or -1 for any). Accumulates (``+=``) per-atom energies ``energy_n`` [N] (eV),
    dE/dr ``grad_nc`` [N, 3] (eV/Å) and per-atom virials ``virial_n9`` [N, 9] (eV), each when given.

    Pairs closer than ``coincident`` (Å; negative: no check, zero: exactly coincident atoms) are not evaluated.

    Returns
    -------
    None, or ``(i, j)``: the original indices of two atoms closer than ``coincident`` (nothing was accumulated
    for that pair; the caller raises).
    """
    cdef int64_t n = frac.shape[0]
    cdef int64_t nb_total, fb
    cdef int tid, kt, n_terms = fam_k.shape[0]
    cdef _NLGrid g
    cdef _Terms terms
    cdef _Scratch* scratch = NULL
    image_limit = np.full(3, -1, dtype=np.intc)
    if n_terms > _MAX_TERMS:
        raise ValueError(f"at most {_MAX_TERMS} pair terms per call, got {n_terms}")
    if (par_k.shape[0] != n_terms or cutoff_k.shape[0] != n_terms or sa_k.shape[0] != n_terms
            or sb_k.shape[0] != n_terms or spec_n.shape[0] != n or energy_n.shape[0] != n
            or (n_terms and par_k.shape[1] < 9)):
        raise ValueError("pair_search_reduce: inconsistent term or atom arrays")
    if grad_nc is not None and (grad_nc.shape[0] != n or grad_nc.shape[1] != 3):
        raise ValueError("grad_nc must have shape (n_atoms, 3)")
    if virial_n9 is not None and (virial_n9.shape[0] != n or virial_n9.shape[1] != 9):
        raise ValueError("virial_n9 must have shape (n_atoms, 9)")
    terms.n = n_terms
    for kt in range(n_terms):
        if fam_k[kt] != RED_PAIR_HARMONIC and fam_k[kt] != RED_PAIR_LJ and fam_k[kt] != RED_PAIR_SW2:
            raise ValueError(f"unknown pair family code {fam_k[kt]}")
        if not (0.0 < cutoff_k[kt] <= cutoff):
            raise ValueError(f"term {kt}: cutoff {cutoff_k[kt]} outside (0, {cutoff}]")
        if sa_k[kt] < -1 or sb_k[kt] < -1:
            raise ValueError(f"term {kt}: species codes must be >= -1")
        terms.k[kt] = _pair_const(fam_k[kt], &par_k[kt, 0])
        terms.cut[kt] = cutoff_k[kt]
        terms.sa[kt] = sa_k[kt]
        terms.sb[kt] = sb_k[kt]
    if n == 0 or offsets.shape[0] == 0 or n_terms == 0:
        return None
    if n_threads < 1:
        n_threads = 1
    cdef const int32_t* pspec = &spec_n[0]
    cdef double* pe = &energy_n[0]
    cdef double* pg = &grad_nc[0, 0] if grad_nc is not None else NULL
    cdef double* pv = &virial_n9[0, 0] if virial_n9 is not None else NULL
    cdef int[::1] no_limit = image_limit
    nb_total = <int64_t> n_bins[0] * n_bins[1] * n_bins[2]
    cdef double r2_coincident = coincident * coincident if coincident >= 0.0 else -1.0
    cdef bint one_species = True
    for fb in range(1, n):
        if spec_n[fb] != spec_n[0]:
            one_species = False
            break
    g.thr = NULL
    try:
        keep = _nl_setup(&g, frac, xyz, shift, vectors, n_bins, periodic, frac_min, bin_width, offsets, no_limit,
                         cutoff, n_threads, work)
        scratch = <_Scratch*> malloc(n_threads * sizeof(_Scratch))
        if scratch == NULL:
            raise MemoryError("pair search: cannot allocate thread buffers")
        for tid in range(n_threads):
            scratch[tid].dx = scratch[tid].dy = scratch[tid].dz = scratch[tid].r2 = NULL
            scratch[tid].sj = NULL
            scratch[tid].cap = 0
            scratch[tid].coincident_i = -1
            scratch[tid].coincident_j = -1
        with nogil:
            for fb in prange(nb_total, num_threads=n_threads, schedule="dynamic", chunksize=32):
                _bin_terms(&g, scratch, &terms, pspec, one_species, r2_coincident, fb, omp_get_thread_num(), pe, pg,
                           pv)
        for tid in range(n_threads):
            if g.thr[tid].failed:
                raise MemoryError("pair search: out of memory")
        for tid in range(n_threads):
            if scratch[tid].coincident_i >= 0:
                return int(scratch[tid].coincident_i), int(scratch[tid].coincident_j)
        return None
    finally:
        if scratch != NULL:
            for tid in range(n_threads):
                free(scratch[tid].dx)
                free(scratch[tid].dy)
                free(scratch[tid].dz)
                free(scratch[tid].r2)
                free(scratch[tid].sj)
            free(scratch)
        _nl_free(&g, n_threads)
