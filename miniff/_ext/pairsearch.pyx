# cython: language_level=3
"""Fused neighbour search and pair-potential pass of miniff's compiled core (private): ``pair_search_reduce``.

For sets of plain pair potentials (harmonic, Lennard-Jones, SW2) the energies, the per-atom gradient and the
per-atom virials are summed while the cell list is walked, without storing a pair list: memory O(N) instead
of O(pairs), and no pass writing and re-reading the pairs. The grid, the candidates of a bin and the
distance test are those of the neighbour search (``neighbors.pxd``); the pair terms are ``_pair_term`` of
``common.pxd``, as in ``pair.pyx``'s per-atom gather.
"""

# Work split (Newton's third law, as LAMMPS' half lists): the caller passes the *half* stencil, the bin
# offsets k >= (0, 0, 0) in lexicographic order; within the own bin (k = 0) atom i takes the atoms after it.
# Every pair (i, j, image) is then met once, from one of its two atoms, and its terms are added to both:
# half the distance tests and half the pair terms of a full walk. Bins are split among threads statically
# (contiguous blocks, fixed for a given thread count) and every thread adds into its own buffers, indexed
# in bin order; the buffers are then summed in thread order. Results are therefore reproducible for a
# given thread count and differ between thread counts only by the order of floating-point sums. For each
# atom the hits of the distance test (candidate order: the bin offsets in lexicographic order, atoms of a
# bin by index) are copied into a per-thread scratch (vector, distance, species, bin-order position), then
# every term runs over that scratch.

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

__all__ = ["pair_search_reduce", "half_stencil", "MAX_PAIR_TERMS"]

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
    int64_t* tj      # neighbour's position in bin order
    double* f        # Lennard-Jones energy and g = f'(r) / r of every hit (one term at a time)
    double* g
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
    free(sc.tj)
    free(sc.f)
    free(sc.g)
    sc.cap = need if need > 2 * sc.cap else 2 * sc.cap
    sc.dx = <double*> malloc(sc.cap * sizeof(double))
    sc.dy = <double*> malloc(sc.cap * sizeof(double))
    sc.dz = <double*> malloc(sc.cap * sizeof(double))
    sc.r2 = <double*> malloc(sc.cap * sizeof(double))
    sc.sj = <int32_t*> malloc(sc.cap * sizeof(int32_t))
    sc.tj = <int64_t*> malloc(sc.cap * sizeof(int64_t))
    sc.f = <double*> malloc(sc.cap * sizeof(double))
    sc.g = <double*> malloc(sc.cap * sizeof(double))
    if (sc.dx == NULL or sc.dy == NULL or sc.dz == NULL or sc.r2 == NULL or sc.sj == NULL or sc.tj == NULL
            or sc.f == NULL or sc.g == NULL):
        sc.cap = 0
        return 1
    return 0


cdef inline void _lj_hits(double c0, double c1, const double* r2_h, double* f_h, double* g_h,
                          int64_t nh) noexcept nogil:
    """Lennard-Jones f = c0 (s^12 - s^6) and g = f'(r) / r = c0 (6 s^6 - 12 s^12) / r^2 (s^2 = c1 / r^2) of
    ``nh`` squared distances (a loop the compiler vectorises; same operations as ``_pair_term``)."""
    cdef int64_t h
    cdef double ir2, s6
    for h in range(nh):
        ir2 = 1.0 / r2_h[h]
        s6 = c1 * ir2
        s6 = s6 * s6 * s6
        g_h[h] = c0 * (6.0 * s6 - 12.0 * s6 * s6) * ir2
        f_h[h] = c0 * (s6 * s6 - s6)


cdef void _atom_terms(const _Terms* terms, int64_t s, int32_t si, const _Scratch* sc, int64_t nh,
                      double* e_t, double* g_t, double* v_t) noexcept nogil:
    """Every term of the pairs of the atom at bin-order position ``s`` (species ``si``) with its ``nh`` hits in
    ``sc`` (each pair met once), added to both atoms in this thread's buffers: energies ``e_t`` [N], dE/dr
    ``g_t`` [N, 3] and virials ``v_t`` [N, 6] (xx, yy, zz, xy, xz, yz; NULL: not wanted), in bin order.

    From atom i's side, bit 1 of ``wt`` marks the pair as i's own term (i matches the first species of the
    tag, j the second) and bit 2 as j's own term; the energy and virial of a pair go to the atoms owning it,
    the gradient to both atoms once per owner."""
    cdef int kt, wt, sa, sb
    cdef int64_t h, t
    cdef int32_t sj
    cdef bint ia, ib
    cdef double f, g, gj, r, r2, ir2, s6, c0, c1, cut2, dx, dy, dz
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
        if lj:  # _pair_term's Lennard-Jones from r^2 (no square root), every hit at once: a loop without branches
            _lj_hits(c0, c1, sc.r2, sc.f, sc.g, nh)
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
            if lj:
                f = sc.f[h]
                g = sc.g[h]
            else:
                r = sqrt(r2)
                f = _pair_term(&terms.k[kt], r, 1.0 / r, &g)
            dx = sc.dx[h]
            dy = sc.dy[h]
            dz = sc.dz[h]
            _sums_add(&a, wt, f, g, dx, dy, dz, v_t != NULL)
            t = sc.tj[h]
            gj = g + g if wt == 3 else g
            g_t[3 * t] += gj * dx
            g_t[3 * t + 1] += gj * dy
            g_t[3 * t + 2] += gj * dz
            if wt & 2:
                e_t[t] += f
                if v_t != NULL:
                    v_t[6 * t] += g * dx * dx
                    v_t[6 * t + 1] += g * dy * dy
                    v_t[6 * t + 2] += g * dz * dz
                    v_t[6 * t + 3] += g * dx * dy
                    v_t[6 * t + 4] += g * dx * dz
                    v_t[6 * t + 5] += g * dy * dz
        e_t[s] += a.e
        g_t[3 * s] -= a.gx
        g_t[3 * s + 1] -= a.gy
        g_t[3 * s + 2] -= a.gz
        if v_t != NULL:
            v_t[6 * s] += a.vxx
            v_t[6 * s + 1] += a.vyy
            v_t[6 * s + 2] += a.vzz
            v_t[6 * s + 3] += a.vxy
            v_t[6 * s + 4] += a.vxz
            v_t[6 * s + 5] += a.vyz


cdef void _bin_terms(_NLGrid* g, _Scratch* scratch, const _Terms* terms, const int32_t* spec_n, bint one_species,
                     double r2_coincident, int64_t flat, int tid, double* e_t, double* g_t,
                     double* v_t) noexcept nogil:
    """The pairs of every atom of bin ``flat`` over the half stencil (thread ``tid``, its buffers ``e_t``,
    ``g_t``, ``v_t``); ``one_species``: every atom has the species code of the first; pairs with
    ``r^2 <= r2_coincident`` are not evaluated and the first is recorded (``r2_coincident`` < 0: none)."""
    cdef _NLThr* th = &g.thr[tid]
    cdef _Scratch* sc = &scratch[tid]
    cdef int64_t s, a, c, t, nh, k, n_cand = 0, self_c, self_lo
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
    if not th.has_self:  # the stencil lacks offset (0, 0, 0): cannot happen with prepared offsets
        th.failed = 2
        return
    hits = th.hits
    self_lo = s_begin + th.self_off
    for s in range(s_begin, s_end):
        xi = g.px[s]
        yi = g.py[s]
        zi = g.pz[s]
        nh = miniff_nl_select(th.cx, th.cy, th.cz, th.n_c, xi, yi, zi, g.rc2, hits)
        self_c = s + th.self_off
        k = 0
        p = 0
        for a in range(nh):
            c = hits[a]
            if self_lo <= c <= self_c:  # own bin, same image: only the atoms after this one
                continue
            while c >= th.pc_c0[p + 1]:
                p = p + 1
            t = th.pc_t0[p] + c - th.pc_c0[p]
            dx = th.cx[c] - xi
            dy = th.cy[c] - yi
            dz = th.cz[c] - zi
            r2 = dx * dx + dy * dy + dz * dz
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
            sc.tj[k] = t
            k = k + 1
        _atom_terms(terms, s, spec_n[g.sorted_index[s]], sc, k, e_t, g_t, v_t)


cdef void _reduce_threads(const _NLGrid* g, int64_t n, int n_threads, const double* e_b, const double* g_b,
                          const double* v_b, double* energy_n, double* grad_nc, double* vir_n9) noexcept nogil:
    """Sum the per-thread buffers (bin order; thread order) into the outputs (original order, ``+=``)."""
    cdef int64_t s, i, o
    cdef int tid
    cdef double e, gx, gy, gz, vxx, vyy, vzz, vxy, vxz, vyz
    for s in prange(n, num_threads=n_threads, schedule="static"):
        i = g.sorted_index[s]
        e = 0.0
        gx = 0.0
        gy = 0.0
        gz = 0.0
        vxx = 0.0
        vyy = 0.0
        vzz = 0.0
        vxy = 0.0
        vxz = 0.0
        vyz = 0.0
        for tid in range(n_threads):
            o = tid * n + s
            e = e + e_b[o]
            gx = gx + g_b[3 * o]
            gy = gy + g_b[3 * o + 1]
            gz = gz + g_b[3 * o + 2]
            if v_b != NULL:
                vxx = vxx + v_b[6 * o]
                vyy = vyy + v_b[6 * o + 1]
                vzz = vzz + v_b[6 * o + 2]
                vxy = vxy + v_b[6 * o + 3]
                vxz = vxz + v_b[6 * o + 4]
                vyz = vyz + v_b[6 * o + 5]
        energy_n[i] += e
        if grad_nc != NULL:
            grad_nc[3 * i] += gx
            grad_nc[3 * i + 1] += gy
            grad_nc[3 * i + 2] += gz
        if vir_n9 != NULL:
            vir_n9[9 * i] += vxx
            vir_n9[9 * i + 1] += vxy
            vir_n9[9 * i + 2] += vxz
            vir_n9[9 * i + 3] += vxy
            vir_n9[9 * i + 4] += vyy
            vir_n9[9 * i + 5] += vyz
            vir_n9[9 * i + 6] += vxz
            vir_n9[9 * i + 7] += vyz
            vir_n9[9 * i + 8] += vzz


def half_stencil(offsets):
    """The stencil of ``pair_search_reduce``, which meets every pair once: the offsets ``k >= (0, 0, 0)``
    (lexicographic order) of the stencil ``offsets`` [K, 3] made symmetric (``k`` kept when ``k`` or ``-k``
    is in it), and ``(0, 0, 0)``; a new contiguous [K', 3] int32 array in lexicographic order."""
    k = np.asarray(offsets, dtype=np.intc).reshape(-1, 3)
    k = np.concatenate([k, -k, np.zeros((1, 3), dtype=np.intc)])
    keep = (k[:, 0] > 0) | ((k[:, 0] == 0) & ((k[:, 1] > 0) | ((k[:, 1] == 0) & (k[:, 2] >= 0))))
    return np.ascontiguousarray(np.unique(k[keep], axis=0), dtype=np.intc)


def pair_search_reduce(const double[:, ::1] frac, const double[:, ::1] xyz, const int32_t[:, ::1] shift,
                       const double[:, ::1] vectors, const int[::1] n_bins, const int[::1] periodic,
                       const double[::1] frac_min, const double[::1] bin_width, const int[:, ::1] offsets,
                       double cutoff, int n_threads, unsigned char[::1] work, const int32_t[::1] spec_n,
                       const int32_t[::1] fam_k, const double[:, ::1] par_k, const double[::1] cutoff_k,
                       const int32_t[::1] sa_k, const int32_t[::1] sb_k, double[::1] energy_n,
                       double[:, ::1] grad_nc=None, double[:, ::1] virial_n9=None, double coincident=0.0):
    """Pair terms summed during the cell-list walk, without a pair list (private; the search arguments are
    those of ``neighbors.neighbor_search`` with no image limit, prepared by ``miniff.neighbors.search``,
    except ``offsets``: the half stencil, the offsets ``k >= (0, 0, 0)`` in lexicographic order, see
    ``half_stencil``).

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
    cdef double* pe_b
    cdef double* pg_b
    cdef double* pv_b
    cdef double[::1] e_view, g_view, v_view
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
    cdef bint has_zero = False
    for fb in range(offsets.shape[0]):
        if (offsets[fb, 0] < 0 or (offsets[fb, 0] == 0 and (offsets[fb, 1] < 0
                or (offsets[fb, 1] == 0 and offsets[fb, 2] < 0)))):
            raise ValueError("pair_search_reduce: offsets must be the half stencil (k >= (0, 0, 0))")
        has_zero = has_zero or (offsets[fb, 0] == 0 and offsets[fb, 1] == 0 and offsets[fb, 2] == 0)
    if not has_zero:
        raise ValueError("pair_search_reduce: the half stencil must contain (0, 0, 0)")
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
            scratch[tid].tj = NULL
            scratch[tid].f = NULL
            scratch[tid].g = NULL
            scratch[tid].cap = 0
            scratch[tid].coincident_i = -1
            scratch[tid].coincident_j = -1
        # per-thread buffers in bin order (calloc'd pages: touched first by the thread that fills them)
        e_buf = np.zeros(n_threads * n)
        g_buf = np.zeros(n_threads * n * 3)
        v_buf = np.zeros(n_threads * n * 6) if virial_n9 is not None else None
        e_view = e_buf
        g_view = g_buf
        pe_b = &e_view[0]
        pg_b = &g_view[0]
        pv_b = NULL
        if v_buf is not None:
            v_view = v_buf
            pv_b = &v_view[0]
        with nogil:
            for fb in prange(nb_total, num_threads=n_threads, schedule="static"):
                tid = omp_get_thread_num()
                _bin_terms(&g, scratch, &terms, pspec, one_species, r2_coincident, fb, tid, pe_b + tid * n,
                           pg_b + 3 * tid * n, (pv_b + 6 * tid * n) if pv_b != NULL else NULL)
        for tid in range(n_threads):
            if g.thr[tid].failed == 2:
                raise RuntimeError("pair search: the bin offsets lack (0, 0, 0) (internal error)")
            if g.thr[tid].failed:
                raise MemoryError("pair search: out of memory")
        with nogil:
            _reduce_threads(&g, n, n_threads, pe_b, pg_b, pv_b, pe, pg, pv)
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
                free(scratch[tid].tj)
                free(scratch[tid].f)
                free(scratch[tid].g)
            free(scratch)
        _nl_free(&g, n_threads)
