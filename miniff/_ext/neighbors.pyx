# cython: language_level=3
"""Cell-list neighbour search of miniff's compiled core (private): ``neighbor_search`` and the size of its
scratch (``neighbor_work_bytes``). Positions are prepared by ``prepare.pyx``; the output arrays come from the
memory pool of ``pairpool.pyx`` (``pairpool.pxd``).
"""

# The Python front end (miniff/neighbors/search.py) validates shapes and the cell, then makes two
# compiled calls:
#
# ``neighbor_prepare`` (parallel over atoms): fractional coordinates, finiteness check, wrapping
# into [0, 1) along periodic axes (integer wrap offsets o kept, so that the shifts S reported
# refer to the positions as given), wrapped Cartesian positions and the fractional extent of the
# atoms (the bin grid of non-periodic axes spans the atoms only).
#
# ``neighbor_search`` (scratch memory handed in by the caller, reused between calls):
#
# 1. every atom gets a bin (parallelepipeds along the lattice directions, parallel) and the atoms
#    are counting-sorted by bin (serial, stable), positions copied in that order (x, y, z arrays);
# 2. the bin offsets to visit (pruned by the front end, lexicographic order) are grouped in
#    *columns*: for a given (k0, k1) the visited k2 form one interval, and the bins
#    (c0 + k0, c1 + k1, c2 + k2) of an interval are contiguous in bin order, so a column is one
#    contiguous range of atoms (split into pieces only where it crosses a periodic boundary, each
#    piece with its image shift q). For a bin, the atoms of its pieces are gathered once, shift
#    added, into per-thread candidate arrays shared by all atoms of the bin;
# 3. count pass (parallel over bins): vectorised (SSE2) count of the candidates closer than the
#    cutoff for every atom; prefix sum -> CSR row pointer; the output arrays are allocated with
#    their exact size in one block taken from a small pool (no growth, no copy, no zero fill and,
#    in steady state, no page faults);
# 4. fill pass (parallel over bins): the same distance test selects the hits (same IEEE operations
#    as the count, checked: a disagreement, which only a compiler fusing multiply-adds differently
#    could cause, makes the search count again with the fill loop itself), the hits are sorted by
#    (j, S) in a small per-thread scratch and written straight into the final arrays.
#
# Each row is produced by one thread in a fixed order and then sorted, so the result does not
# depend on the number of threads (sort=False: the fixed candidate order, also thread independent).

from libc.math cimport sqrt
from libc.stdint cimport int64_t, int32_t, uint64_t, uintptr_t
from libc.string cimport memset
from libc.stdlib cimport malloc, calloc, free
from cython.parallel cimport prange

import numpy as np

from miniff._ext.common cimport _nl_align
from miniff._ext.pairpool cimport nl_pair_arrays
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED, omp_get_thread_num

__all__ = ["neighbor_search", "neighbor_work_bytes", "TooManyPairs"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


cdef inline int _nl_wrap(int n, int nb, int periodic, int* q) noexcept nogil:
    """Wrap bin coordinate n into [0, nb); q receives the image count. Returns -1 when outside."""
    cdef int qq
    q[0] = 0
    if n >= 0 and n < nb:
        return n
    if not periodic:
        return -1
    if n >= 0:
        qq = n // nb
    else:
        qq = -((-n + nb - 1) // nb)
    q[0] = qq
    return n - qq * nb


cdef inline void _nl_add_piece(_NLGrid* g, _NLThr* th, int np, int64_t t0, int64_t t1, int q0, int q1,
                               int q2) noexcept nogil:
    cdef double* v = g.vec
    th.pc_t0[np] = t0
    th.pc_t1[np] = t1
    th.pc_q[3 * np] = q0
    th.pc_q[3 * np + 1] = q1
    th.pc_q[3 * np + 2] = q2
    th.pc_zero[np] = q0 == 0 and q1 == 0 and q2 == 0
    th.pc_v[3 * np] = q0 * v[0] + q1 * v[3] + q2 * v[6]
    th.pc_v[3 * np + 1] = q0 * v[1] + q1 * v[4] + q2 * v[7]
    th.pc_v[3 * np + 2] = q0 * v[2] + q1 * v[5] + q2 * v[8]


cdef int _nl_pieces(_NLGrid* g, _NLThr* th, int64_t flat, int64_t* n_cand) noexcept nogil:
    """Resolve the pieces of bin ``flat``; returns their number, n_cand = atoms they hold."""
    cdef int c0, c1, c2, kc, k2, b0, b1, b2, q0, q1, q2, np = 0, cur_q2 = 0, cur_b2 = -2
    cdef int64_t base, t0, t1, cand = 0, run_t0 = 0, run_t1 = 0
    cdef int64_t* bstart = g.bin_start
    cdef int* col = g.col
    cdef int run = 0
    c2 = <int> (flat % g.nb2)
    c1 = <int> ((flat // g.nb2) % g.nb1)
    c0 = <int> (flat // (<int64_t> g.nb2 * g.nb1))
    if (c0 >= g.m0 and c0 + g.m0 < g.nb0 and c1 >= g.m1 and c1 + g.m1 < g.nb1
            and c2 >= g.m2lo and c2 + g.m2hi < g.nb2):
        # interior bin: every column is one contiguous range with no image shift
        for kc in range(g.n_cols):
            t0 = bstart[flat + g.col_dlo[kc]]
            t1 = bstart[flat + g.col_dhi[kc] + 1]
            if t1 > t0:
                _nl_add_piece(g, th, np, t0, t1, 0, 0, 0)
                np = np + 1
                cand = cand + t1 - t0
        n_cand[0] = cand
        return np
    for kc in range(g.n_cols):
        b0 = _nl_wrap(c0 + col[4 * kc], g.nb0, g.periodic0, &q0)
        if b0 < 0:
            continue
        b1 = _nl_wrap(c1 + col[4 * kc + 1], g.nb1, g.periodic1, &q1)
        if b1 < 0:
            continue
        base = (<int64_t> b0 * g.nb1 + b1) * g.nb2
        run = 0
        for k2 in range(col[4 * kc + 2], col[4 * kc + 3] + 1):
            b2 = _nl_wrap(c2 + k2, g.nb2, g.periodic2, &q2)
            if b2 < 0:
                continue
            t0 = bstart[base + b2]
            t1 = bstart[base + b2 + 1]
            if run and q2 == cur_q2 and b2 == cur_b2 + 1:
                run_t1 = t1  # extends the current run (contiguous bins, same image)
            else:
                if run and run_t1 > run_t0:
                    _nl_add_piece(g, th, np, run_t0, run_t1, q0, q1, cur_q2)
                    np = np + 1
                    cand = cand + run_t1 - run_t0
                run = 1
                run_t0 = t0
                run_t1 = t1
                cur_q2 = q2
            cur_b2 = b2
        if run and run_t1 > run_t0:
            _nl_add_piece(g, th, np, run_t0, run_t1, q0, q1, cur_q2)
            np = np + 1
            cand = cand + run_t1 - run_t0
    n_cand[0] = cand
    return np


cdef void _nl_gather(_NLThr* th, _NLGrid* g, int n_pieces, int64_t s_begin, int64_t s_end) noexcept nogil:
    """Copy the atoms of the pieces (image shift added) into the candidate arrays of the thread.

    Piece p occupies candidates pc_c0[p] .. pc_c0[p + 1] - 1 (its atom t0 + k at candidate pc_c0[p] + k).
    """
    cdef int p
    cdef int64_t t, t0, t1, c = 0
    cdef double vx, vy, vz
    cdef const double* px = g.px
    cdef const double* py = g.py
    cdef const double* pz = g.pz
    cdef double* cx = th.cx
    cdef double* cy = th.cy
    cdef double* cz = th.cz
    cdef int64_t* c0 = th.pc_c0
    cdef int has_self = 0
    cdef int64_t self_off = 0
    for p in range(n_pieces):
        vx = th.pc_v[3 * p]
        vy = th.pc_v[3 * p + 1]
        vz = th.pc_v[3 * p + 2]
        t0 = th.pc_t0[p]
        t1 = th.pc_t1[p]
        c0[p] = c
        if th.pc_zero[p] and t0 <= s_begin and s_end <= t1:
            self_off = c - t0
            has_self = 1
        miniff_nl_gather(px + t0, py + t0, pz + t0, t1 - t0, vx, vy, vz, cx + c, cy + c, cz + c)
        c = c + t1 - t0
    c0[n_pieces] = c
    th.n_c = c
    th.self_off = self_off
    th.has_self = has_self


cdef int64_t _nl_scan(_NLGrid* g, _NLThr* th, int64_t s) noexcept nogil:
    """Candidate indices (ascending) of the pairs of the atom at bin-order position s -> th.hits.

    Returns their number. The distance test is ``miniff_nl_select`` (th.hits holds one slot more than
    the candidates); the atom itself is dropped, then, with an image limit, the shifts beyond it.
    """
    cdef int64_t c, a, nh = 0, nc = th.n_c, self_c = s + th.self_off
    cdef int p, q0, q1, q2
    cdef int32_t t
    cdef double xi = g.px[s], yi = g.py[s], zi = g.pz[s], rc2 = g.rc2
    cdef double* cx = th.cx
    cdef double* cy = th.cy
    cdef double* cz = th.cz
    cdef int32_t* hits = th.hits
    cdef int32_t* ssh = g.sorted_shift
    nh = miniff_nl_select(cx, cy, cz, nc, xi, yi, zi, rc2, hits)
    if th.has_self:  # drop the atom itself (distance 0)
        for c in range(nh):
            if hits[c] == self_c:
                for a in range(c + 1, nh):
                    hits[a - 1] = hits[a]
                nh = nh - 1
                break
    if g.limited:
        c = nh
        nh = 0
        p = 0
        for c in range(c):
            while hits[c] >= th.pc_c0[p + 1]:
                p = p + 1
            t = <int32_t> (th.pc_t0[p] + hits[c] - th.pc_c0[p])
            q0 = th.pc_q[3 * p] - ssh[3 * t] + ssh[3 * s]
            q1 = th.pc_q[3 * p + 1] - ssh[3 * t + 1] + ssh[3 * s + 1]
            q2 = th.pc_q[3 * p + 2] - ssh[3 * t + 2] + ssh[3 * s + 2]
            if (q0 > g.lim0 or q0 < -g.lim0 or q1 > g.lim1 or q1 < -g.lim1
                    or q2 > g.lim2 or q2 < -g.lim2):
                continue
            hits[nh] = hits[c]
            nh = nh + 1
    return nh


cdef void _nl_sort_keys(uint64_t* keys, uint64_t* tmp, int64_t n) noexcept nogil:
    """Sort keys[:n]: insertion sort on runs of 16, then bottom-up merges (tmp: scratch [n])."""
    cdef int64_t lo, hi, a, c, width, mid, i, j, k
    cdef uint64_t x
    cdef uint64_t* src = keys
    cdef uint64_t* dst = tmp
    cdef uint64_t* sw
    for lo in range(0, n, 16):
        hi = lo + 16
        if hi > n:
            hi = n
        for a in range(lo + 1, hi):
            x = keys[a]
            c = a
            while c > lo and x < keys[c - 1]:
                keys[c] = keys[c - 1]
                c = c - 1
            keys[c] = x
    width = 16
    while width < n:
        lo = 0
        while lo < n:
            mid = lo + width
            if mid > n:
                mid = n
            hi = lo + 2 * width
            if hi > n:
                hi = n
            i = lo
            j = mid
            k = lo
            while i < mid and j < hi:
                if src[j] < src[i]:
                    dst[k] = src[j]
                    j = j + 1
                else:
                    dst[k] = src[i]
                    i = i + 1
                k = k + 1
            while i < mid:
                dst[k] = src[i]
                i = i + 1
                k = k + 1
            while j < hi:
                dst[k] = src[j]
                j = j + 1
                k = k + 1
            lo = hi
        sw = src
        src = dst
        dst = sw
        width = width * 2
    if src != keys:
        for a in range(n):
            keys[a] = src[a]


cdef int _nl_reserve(_NLThr* th, int64_t need) noexcept nogil:
    """Scratch for ``need`` candidates of one bin; 0 on success."""
    cdef int64_t cap
    if need <= th.cap:
        return 0
    cap = th.cap * 2
    if cap < need:
        cap = need
    if cap < 64:
        cap = 64
    free(th.cx)
    free(th.cy)
    free(th.cz)
    free(th.hits)
    free(th.keys)
    free(th.keys2)
    free(th.hit_t)
    free(th.hit_p)
    th.cx = <double*> malloc(cap * sizeof(double))
    th.cy = <double*> malloc(cap * sizeof(double))
    th.cz = <double*> malloc(cap * sizeof(double))
    th.hits = <int32_t*> malloc(cap * sizeof(int32_t))
    th.keys = <uint64_t*> malloc(cap * sizeof(uint64_t))
    th.keys2 = <uint64_t*> malloc(cap * sizeof(uint64_t))
    th.hit_t = <int32_t*> malloc(cap * sizeof(int32_t))
    th.hit_p = <int32_t*> malloc(cap * sizeof(int32_t))
    if (th.cx == NULL or th.cy == NULL or th.cz == NULL or th.hits == NULL
            or th.keys == NULL or th.keys2 == NULL
            or th.hit_t == NULL or th.hit_p == NULL):
        th.cap = 0
        return 1
    th.cap = cap
    return 0


cdef void _nl_bin(_NLGrid* g, int64_t flat, int tid, int fill) noexcept nogil:
    """Count (fill=0) or write (fill=1) the rows of every atom of bin ``flat``."""
    cdef _NLThr* th = &g.thr[tid]
    cdef int64_t s, nh, a, c, o, n_cand = 0, i, row, t
    cdef int n_pieces, p
    cdef int32_t oi0, oi1, oi2
    cdef const int32_t* ssh = g.sorted_shift
    cdef const int32_t* sidx = g.sorted_index
    cdef int32_t* jo = g.j_out
    cdef int32_t* so = g.s_out
    cdef double* do = g.d_out
    cdef double* dd = g.dist_out
    cdef double xi, yi, zi, dx, dy, dz
    cdef const double* cx
    cdef const double* cy
    cdef const double* cz
    cdef const int* pq
    cdef const int64_t* pt0
    cdef const int64_t* pc0
    cdef int32_t* hits
    cdef int32_t* hit_t
    cdef int32_t* hit_p
    cdef uint64_t* keys
    cdef int64_t e
    cdef int64_t s_begin = g.bin_start[flat], s_end = g.bin_start[flat + 1]
    if s_begin == s_end or th.failed:
        return
    n_pieces = _nl_pieces(g, th, flat, &n_cand)
    if n_cand >= 2147483647 or _nl_reserve(th, n_cand + 1):  # candidate indices are int32
        th.failed = 1
        return
    _nl_gather(th, g, n_pieces, s_begin, s_end)
    th.n_pieces = n_pieces
    hits = th.hits
    keys = th.keys
    hit_t = th.hit_t
    hit_p = th.hit_p
    cx = th.cx
    cy = th.cy
    cz = th.cz
    pq = th.pc_q
    pt0 = th.pc_t0
    pc0 = th.pc_c0
    for s in range(s_begin, s_end):
        i = sidx[s]
        if not fill:
            if g.exact_count or g.limited or not th.has_self:
                g.row_count[i] = _nl_scan(g, th, s)
            else:
                g.row_count[i] = miniff_nl_count(cx, cy, cz, th.n_c, g.px[s], g.py[s], g.pz[s], g.rc2) - 1
            continue
        nh = _nl_scan(g, th, s)
        o = g.indptr[i]
        row = g.indptr[i + 1] - o
        if nh != row:
            th.failed = 2
            return
        oi0 = ssh[3 * s]
        oi1 = ssh[3 * s + 1]
        oi2 = ssh[3 * s + 2]
        xi = g.px[s]
        yi = g.py[s]
        zi = g.pz[s]
        if g.sort_rows and nh > 1:
            # the candidates are in the lexicographic order of the bin offsets, so for equal j the
            # candidate (hence hit) order is the order of S: sorting (j, hit index) sorts by (j, S)
            p = 0
            for a in range(nh):
                c = hits[a]
                while c >= pc0[p + 1]:
                    p = p + 1
                t = pt0[p] + c - pc0[p]
                hit_t[a] = <int32_t> t
                hit_p[a] = p
                keys[a] = ((<uint64_t> sidx[t]) << 32) | <uint64_t> a
            _nl_sort_keys(keys, th.keys2, nh)
            for a in range(nh):
                e = <int64_t> (keys[a] & (<uint64_t> 0xffffffff))
                c = hits[e]
                t = hit_t[e]
                p = hit_p[e]
                jo[o] = <int32_t> (keys[a] >> 32)
                so[3 * o] = pq[3 * p] - ssh[3 * t] + oi0
                so[3 * o + 1] = pq[3 * p + 1] - ssh[3 * t + 1] + oi1
                so[3 * o + 2] = pq[3 * p + 2] - ssh[3 * t + 2] + oi2
                dx = cx[c] - xi
                dy = cy[c] - yi
                dz = cz[c] - zi
                do[3 * o] = dx
                do[3 * o + 1] = dy
                do[3 * o + 2] = dz
                dd[o] = sqrt(dx * dx + dy * dy + dz * dz)
                o = o + 1
        else:
            p = 0
            for a in range(nh):
                c = hits[a]
                while c >= pc0[p + 1]:
                    p = p + 1
                t = pt0[p] + c - pc0[p]
                jo[o] = sidx[t]
                so[3 * o] = pq[3 * p] - ssh[3 * t] + oi0
                so[3 * o + 1] = pq[3 * p + 1] - ssh[3 * t + 1] + oi1
                so[3 * o + 2] = pq[3 * p + 2] - ssh[3 * t + 2] + oi2
                dx = cx[c] - xi
                dy = cy[c] - yi
                dz = cz[c] - zi
                do[3 * o] = dx
                do[3 * o + 1] = dy
                do[3 * o + 2] = dz
                dd[o] = sqrt(dx * dx + dy * dy + dz * dz)
                o = o + 1


cdef void _nl_pass(_NLGrid* g, int64_t nb_total, int n_threads, int fill) noexcept nogil:
    cdef int64_t fb
    for fb in prange(nb_total, num_threads=n_threads, schedule="dynamic", chunksize=32):
        _nl_bin(g, fb, omp_get_thread_num(), fill)


cdef void _nl_free(_NLGrid* g, int n_threads) noexcept:
    cdef int tid
    if g.thr == NULL:
        return
    for tid in range(n_threads):
        free(g.thr[tid].pc_t0)
        free(g.thr[tid].pc_t1)
        free(g.thr[tid].pc_q)
        free(g.thr[tid].pc_v)
        free(g.thr[tid].pc_zero)
        free(g.thr[tid].pc_c0)
        free(g.thr[tid].hits)
        free(g.thr[tid].cx)
        free(g.thr[tid].cy)
        free(g.thr[tid].cz)
        free(g.thr[tid].keys)
        free(g.thr[tid].keys2)
        free(g.thr[tid].hit_t)
        free(g.thr[tid].hit_p)
    free(g.thr)
    g.thr = NULL


def neighbor_work_bytes(int64_t n, int64_t n_bins_total):
    """Bytes of the ``work`` scratch of ``neighbor_search`` for N atoms and this many bins (private)."""
    return int(64 + _nl_align(8 * (n_bins_total + 1)) + _nl_align(24 * n) + _nl_align(4 * n) + _nl_align(12 * n)
               + _nl_align(8 * n) + _nl_align(8 * n))


class TooManyPairs(ValueError):
    """The count pass of ``neighbor_search`` found more pairs than ``max_total`` (argument: the count)."""


def neighbor_search(const double[:, ::1] frac, const double[:, ::1] xyz, const int32_t[:, ::1] shift,
                    const double[:, ::1] vectors, const int[::1] n_bins, const int[::1] periodic,
                    const double[::1] frac_min, const double[::1] bin_width, const int[:, ::1] offsets,
                    const int[::1] image_limit, double cutoff, int n_threads, bint sort_rows,
                    unsigned char[::1] work, bint exact_count=False, int64_t max_total=-1):
    """Cell-list neighbour search (private; arguments are validated by ``miniff.neighbors.search``).

    Parameters
    ----------
    frac : [N, 3] fractional coordinates used for binning (wrapped into [0, 1) on periodic axes).
    xyz : [N, 3] Cartesian positions matching ``frac`` (``frac @ vectors``), Å.
    shift : [N, 3] int32 wrap offsets o: the caller's position is ``xyz + o @ vectors``.
    vectors : [3, 3] cell rows, Å.
    n_bins : [3] bins per axis (product < 2**31); periodic : [3] 0/1; frac_min, bin_width : [3] bin
        origin and width in fractional units (bin of a coordinate f is floor((f - frac_min) / bin_width),
        clamped).
    offsets : [K, 3] bin offsets to visit, lexicographically sorted, |k_a| < 2**20 (non-periodic axes:
        |k_a| < n_bins[a]).
    image_limit : [3] largest |S| kept per axis, or negative for no limit.
    cutoff : Å. n_threads : OpenMP team size. sort_rows : sort every row by (j, S).
    work : scratch of at least ``neighbor_work_bytes(N, prod(n_bins))`` bytes (contents ignored).
    exact_count : count with the same loop as the fill pass (slower; the default vectorised count
        is used unless the two passes ever disagree, which a compiler contracting floating-point
        operations differently in the two loops could cause).
    max_total : refuse (``TooManyPairs``, a ValueError, with the count as its argument) when the count pass
        finds more pairs than this, before the pair arrays are allocated; negative: no limit.

    Returns
    -------
    indptr [N+1] int64, j [P] int32, S [P, 3] int32, D [P, 3] float64 (relative to the
    caller's positions), d [P] float64.
    """
    cdef int64_t n = frac.shape[0]
    cdef int64_t i, total, nb_total
    cdef int tid
    cdef _NLGrid g
    indptr_arr = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] indptr = indptr_arr
    indptr[0] = 0
    if n == 0 or offsets.shape[0] == 0:
        indptr_arr[:] = 0
        return (indptr_arr, np.zeros(0, np.int32), np.zeros((0, 3), np.int32),
                np.zeros((0, 3)), np.zeros(0))
    if n_threads < 1:
        n_threads = 1
    g.thr = NULL
    try:
        keep = _nl_setup(&g, frac, xyz, shift, vectors, n_bins, periodic, frac_min, bin_width, offsets,
                         image_limit, cutoff, n_threads, work)
        nb_total = <int64_t> n_bins[0] * n_bins[1] * n_bins[2]
        g.sort_rows = sort_rows
        g.exact_count = exact_count
        g.indptr = &indptr[0]
        while True:
            # 2. count pass
            with nogil:
                _nl_pass(&g, nb_total, n_threads, 0)
            for tid in range(n_threads):
                if g.thr[tid].failed:
                    raise MemoryError("neighbour search: out of memory")
            with nogil:
                for i in range(n):
                    indptr[i + 1] = indptr[i] + g.row_count[i]
            total = indptr[n]
            if max_total >= 0 and total > max_total:
                raise TooManyPairs(int(total))
            if total == 0:
                return (indptr_arr, np.zeros(0, np.int32), np.zeros((0, 3), np.int32),
                        np.zeros((0, 3)), np.zeros(0))
            j_arr, s_arr, d_arr, dist_arr = nl_pair_arrays(total)
            # 3. fill pass
            _nl_fill(&g, nb_total, n_threads, j_arr, s_arr, d_arr, dist_arr)
            mismatch = False
            for tid in range(n_threads):
                if g.thr[tid].failed == 1:
                    raise MemoryError("neighbour search: out of memory")
                if g.thr[tid].failed:
                    mismatch = True
                    g.thr[tid].failed = 0
            if not mismatch:
                return indptr_arr, j_arr, s_arr, d_arr, dist_arr
            if g.exact_count:  # pragma: no cover - the same loop cannot disagree with itself
                raise RuntimeError("neighbour search: the count and fill passes disagree")
            g.exact_count = 1  # count again with the fill loop itself
    finally:
        _nl_free(&g, n_threads)


cdef tuple _nl_setup(_NLGrid* g, const double[:, ::1] frac, const double[:, ::1] xyz, const int32_t[:, ::1] shift,
                     const double[:, ::1] vectors, const int[::1] n_bins, const int[::1] periodic,
                     const double[::1] frac_min, const double[::1] bin_width, const int[:, ::1] offsets,
                     const int[::1] image_limit, double cutoff, int n_threads, unsigned char[::1] work):
    """Steps 1 and 2 of the search for ``g`` (arguments as ``neighbor_search``; N > 0, offsets not empty,
    n_threads >= 1): columns of offsets, bins, atoms counting-sorted by bin, per-thread piece buffers.

    ``g.thr`` is allocated here (free it with ``_nl_free`` also after an error, once ``g.thr`` was set to NULL
    before the call); the returned tuple holds arrays ``g`` points into: keep it alive while ``g`` is used.
    ``sort_rows``, ``exact_count`` and ``indptr`` of ``g`` are left to the caller.
    """
    cdef int64_t n = frac.shape[0]
    cdef int64_t i, p, fb
    if (frac.shape[1] != 3 or xyz.shape[0] != n or xyz.shape[1] != 3 or shift.shape[0] != n or shift.shape[1] != 3
            or vectors.shape[0] != 3 or vectors.shape[1] != 3 or n_bins.shape[0] != 3 or periodic.shape[0] != 3
            or frac_min.shape[0] != 3 or bin_width.shape[0] != 3 or offsets.shape[1] != 3
            or image_limit.shape[0] != 3 or n_bins[0] < 1 or n_bins[1] < 1 or n_bins[2] < 1
            or n < 1 or offsets.shape[0] < 1 or n_threads < 1):
        raise ValueError("neighbor_search: inconsistent arguments")
    cdef int a, c, tid, kc, n_cols, max_pieces
    cdef int64_t nb_total = <int64_t> n_bins[0] * n_bins[1] * n_bins[2]
    cdef int n_off = offsets.shape[0]
    cdef double f
    # columns of offsets: runs of consecutive k2 with the same (k0, k1)
    col_arr = np.empty((n_off, 4), dtype=np.intc)
    cdef int[:, ::1] col = col_arr
    n_cols = 0
    for kc in range(n_off):
        if (n_cols > 0 and offsets[kc, 0] == col[n_cols - 1, 0] and offsets[kc, 1] == col[n_cols - 1, 1]
                and offsets[kc, 2] == col[n_cols - 1, 3] + 1):
            col[n_cols - 1, 3] = offsets[kc, 2]
        else:
            col[n_cols, 0] = offsets[kc, 0]
            col[n_cols, 1] = offsets[kc, 1]
            col[n_cols, 2] = offsets[kc, 2]
            col[n_cols, 3] = offsets[kc, 2]
            n_cols = n_cols + 1
    dlo_arr = np.empty(n_cols, dtype=np.int64)
    dhi_arr = np.empty(n_cols, dtype=np.int64)
    cdef int64_t[::1] dlo = dlo_arr
    cdef int64_t[::1] dhi = dhi_arr
    g.m0 = g.m1 = g.m2lo = g.m2hi = 0
    for kc in range(n_cols):
        dlo[kc] = (<int64_t> col[kc, 0] * n_bins[1] + col[kc, 1]) * n_bins[2] + col[kc, 2]
        dhi[kc] = (<int64_t> col[kc, 0] * n_bins[1] + col[kc, 1]) * n_bins[2] + col[kc, 3]
        g.m0 = max(g.m0, abs(col[kc, 0]))
        g.m1 = max(g.m1, abs(col[kc, 1]))
        g.m2lo = max(g.m2lo, -col[kc, 2])
        g.m2hi = max(g.m2hi, col[kc, 3])
    # at most one piece per offset
    max_pieces = n_off

    # scratch carved from ``work`` (reused between calls by the caller): no page faults, no zero fill
    if work.shape[0] < neighbor_work_bytes(n, nb_total):
        raise ValueError("neighbour search: work buffer too small")
    cdef char* wp = <char*> &work[0]
    wp = <char*> ((<uintptr_t> wp + 63) & ~(<uintptr_t> 63))
    cdef int64_t* bin_start = <int64_t*> wp
    wp += _nl_align(8 * (nb_total + 1))
    cdef double* sx = <double*> wp
    wp += _nl_align(24 * n)
    cdef int32_t* sorted_index = <int32_t*> wp
    wp += _nl_align(4 * n)
    cdef int32_t* sorted_shift = <int32_t*> wp
    wp += _nl_align(12 * n)
    cdef int64_t* flat_bin = <int64_t*> wp
    wp += _nl_align(8 * n)
    cdef int64_t* row_count = <int64_t*> wp
    memset(bin_start, 0, (nb_total + 1) * sizeof(int64_t))
    cdef int bin_threads = n_threads if n >= 50000 else 1

    with nogil:
        # 1. bins (parallel), counting sort by bin (stable: atoms of a bin keep their index order)
        for i in prange(n, num_threads=bin_threads, schedule="static"):
            fb = 0
            for a in range(3):
                f = (frac[i, a] - frac_min[a]) / bin_width[a]
                if f < 0.0:
                    c = 0
                elif f >= n_bins[a]:
                    c = n_bins[a] - 1
                else:
                    c = <int> f
                fb = fb * n_bins[a] + c
            flat_bin[i] = fb
        for i in range(n):
            bin_start[flat_bin[i] + 1] += 1
        for p in range(nb_total):
            bin_start[p + 1] += bin_start[p]
        # scatter with bin_start[b] as the fill pointer of bin b, then shift back
        for i in range(n):
            fb = flat_bin[i]
            p = bin_start[fb]
            bin_start[fb] = p + 1
            sorted_index[p] = <int32_t> i
            sx[p] = xyz[i, 0]
            sx[n + p] = xyz[i, 1]
            sx[2 * n + p] = xyz[i, 2]
            sorted_shift[3 * p] = shift[i, 0]
            sorted_shift[3 * p + 1] = shift[i, 1]
            sorted_shift[3 * p + 2] = shift[i, 2]
        for p in range(nb_total, 0, -1):
            bin_start[p] = bin_start[p - 1]
        bin_start[0] = 0

    g.nb0 = n_bins[0]
    g.nb1 = n_bins[1]
    g.nb2 = n_bins[2]
    g.periodic0 = periodic[0]
    g.periodic1 = periodic[1]
    g.periodic2 = periodic[2]
    g.n_cols = n_cols
    g.col = &col[0, 0]
    g.col_dlo = &dlo[0]
    g.col_dhi = &dhi[0]
    g.limited = image_limit[0] >= 0 or image_limit[1] >= 0 or image_limit[2] >= 0
    g.lim0 = image_limit[0] if image_limit[0] >= 0 else 2147483647
    g.lim1 = image_limit[1] if image_limit[1] >= 0 else 2147483647
    g.lim2 = image_limit[2] if image_limit[2] >= 0 else 2147483647
    g.sort_rows = 0
    g.rc2 = cutoff * cutoff
    g.vec = <double*> &vectors[0, 0]
    g.bin_start = bin_start
    g.px = sx
    g.py = sx + n
    g.pz = sx + 2 * n
    g.exact_count = 0
    g.sorted_index = sorted_index
    g.sorted_shift = sorted_shift
    g.row_count = row_count
    g.indptr = NULL
    g.thr = <_NLThr*> calloc(n_threads, sizeof(_NLThr))
    if g.thr == NULL:
        raise MemoryError("neighbour search: cannot allocate thread buffers")
    for tid in range(n_threads):
        g.thr[tid].pc_t0 = <int64_t*> malloc(max_pieces * sizeof(int64_t))
        g.thr[tid].pc_t1 = <int64_t*> malloc(max_pieces * sizeof(int64_t))
        g.thr[tid].pc_q = <int*> malloc(3 * max_pieces * sizeof(int))
        g.thr[tid].pc_v = <double*> malloc(3 * max_pieces * sizeof(double))
        g.thr[tid].pc_zero = <int*> malloc(max_pieces * sizeof(int))
        g.thr[tid].pc_c0 = <int64_t*> malloc((max_pieces + 1) * sizeof(int64_t))
        if (g.thr[tid].pc_t0 == NULL or g.thr[tid].pc_t1 == NULL or g.thr[tid].pc_q == NULL
                or g.thr[tid].pc_v == NULL or g.thr[tid].pc_zero == NULL or g.thr[tid].pc_c0 == NULL):
            raise MemoryError("neighbour search: cannot allocate thread buffers")
    return col_arr, dlo_arr, dhi_arr


cdef void _nl_fill(_NLGrid* g, int64_t nb_total, int n_threads, int32_t[::1] j_arr, int32_t[:, ::1] s_arr,
                   double[:, ::1] d_arr, double[::1] dist_arr) noexcept:
    g.j_out = &j_arr[0]
    g.s_out = &s_arr[0, 0]
    g.d_out = &d_arr[0, 0]
    g.dist_out = &dist_arr[0]
    with nogil:
        _nl_pass(g, nb_total, n_threads, 1)


cdef int _check_half_stencil(const int[:, ::1] offsets, str caller) except -1:
    """Raise ValueError (naming ``caller``) unless ``offsets`` [n, 3] are a half stencil: every offset
    ``k >= (0, 0, 0)`` lexicographically, (0, 0, 0) among them (the walks that meet every pair once)."""
    cdef Py_ssize_t fb
    cdef bint has_zero = False
    for fb in range(offsets.shape[0]):
        if (offsets[fb, 0] < 0 or (offsets[fb, 0] == 0 and (offsets[fb, 1] < 0
                or (offsets[fb, 1] == 0 and offsets[fb, 2] < 0)))):
            raise ValueError(f"{caller}: offsets must be the half stencil (k >= (0, 0, 0))")
        has_zero = has_zero or (offsets[fb, 0] == 0 and offsets[fb, 1] == 0 and offsets[fb, 2] == 0)
    if not has_zero:
        raise ValueError(f"{caller}: the half stencil must contain (0, 0, 0)")
    return 0
