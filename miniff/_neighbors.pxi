# Cell-list neighbour search. Included by _kernel.pyx.
#
# The Python front end (miniff/_neighbors.py) validates everything, wraps the atoms
# along periodic axes, chooses the bin grid and the list of bin offsets to visit
# (already pruned to offsets whose bins can hold a pair closer than the cutoff),
# then calls ``neighbor_search`` once. Here:
#
# 1. every atom gets a bin (parallelepipeds along the lattice directions) and the
#    atoms are counting-sorted by bin, so that the atoms of one bin are contiguous
#    in memory (positions copied in that order for locality);
# 2. search (parallel over bins): for a bin, the neighbour bins at the given offsets
#    are resolved once (periodic axes wrap and give the integer image shift,
#    non-periodic axes stop at the grid edge); every atom of the bin is compared
#    with the atoms of those bins and its pairs are appended to the buffer of the
#    thread as compact (neighbour, bin offset) records, one contiguous run per atom;
# 3. prefix sum of the per-atom counts -> CSR row pointer; output pass (parallel
#    over atoms): each row is expanded (j, S, D, d, with exactly the arithmetic of
#    the search), sorted by (j, S) and written to the output arrays.
#
# Compact records (8 bytes per pair) keep the temporary memory, and the page
# faults that come with it, small.
#
# Each row is produced by one thread in a fixed order and then sorted, so the
# result does not depend on the number of threads.

from libc.math cimport floor, sqrt
from libc.stdint cimport int64_t, int32_t
from libc.stdlib cimport malloc, calloc, realloc, free
from cython.parallel cimport prange
from miniff._openmp cimport omp_get_thread_num

import numpy as _np_nl


cdef struct _NLBuf:
    int32_t* ents        # [cap, 2]: neighbour position t (bin order), bin offset index k
    int64_t size
    int64_t cap
    int failed
    int64_t* nb_flat     # workspace [n_offsets]: neighbour bin (flat index)
    int* nb_k            # [n_offsets] its offset index
    int* nb_q            # [n_offsets, 3] its image shift
    double* nb_vec       # [n_offsets, 3] its Cartesian shift q @ vectors
    int32_t* keys        # output-pass scratch [max_row, 4]: j, S
    double* vals         # [max_row, 4]: D, d^2
    int* perm            # [max_row]


cdef struct _NLGrid:
    int nb0
    int nb1
    int nb2
    int periodic0
    int periodic1
    int periodic2
    int n_offsets
    int limited
    int lim0
    int lim1
    int lim2
    double rc2
    double* vec          # [3, 3] cell rows
    int* offsets         # [n_offsets, 3] bin offsets
    int64_t* bin_start   # [n_bins + 1]
    int64_t* flat_bin    # [N] bin of every atom (original order)
    int* rank            # [N] position of every atom in bin order
    double* sorted_xyz   # [N, 3] wrapped Cartesian positions in bin order
    int* sorted_index    # [N] original index of the atoms in bin order
    int* sorted_shift    # [N, 3] wrap offsets o (r = r_wrapped + o @ cell) in bin order
    int* row_thread      # [N] thread buffer holding the row of atom i
    int64_t* row_start   # [N] start of the row in that buffer
    int64_t* row_count   # [N] its length
    _NLBuf* bufs         # [n_threads]


cdef inline int _nl_wrap(int n, int nb, int periodic, int* q) noexcept nogil:
    """Wrap bin coordinate n into [0, nb); q receives the image count. Returns -1 when outside."""
    cdef int qq
    if n >= 0 and n < nb:
        q[0] = 0
        return n
    q[0] = 0
    if not periodic:
        return -1
    if n >= 0:
        qq = n // nb
    else:
        qq = -((-n + nb - 1) // nb)
    q[0] = qq
    return n - qq * nb


cdef int _nl_reserve(_NLBuf* b, int64_t extra) noexcept nogil:
    """Make room for ``extra`` more records in a thread buffer; 0 on success."""
    cdef int64_t need = b.size + extra
    cdef int64_t cap
    cdef int32_t* ents
    if need <= b.cap:
        return 0
    cap = b.cap * 2
    if cap < need:
        cap = need
    if cap < 1024:
        cap = 1024
    ents = <int32_t*> realloc(b.ents, cap * 2 * sizeof(int32_t))
    if ents == NULL:
        return 1
    b.ents = ents
    b.cap = cap
    return 0


cdef inline void _nl_shift(_NLGrid* g, int k, int c0, int c1, int c2, int* q, double* sv) noexcept nogil:
    """Image shift q [3] and its Cartesian vector sv [3] of bin offset k from bin (c0, c1, c2)."""
    cdef double* v = g.vec
    _nl_wrap(c0 + g.offsets[3 * k], g.nb0, g.periodic0, &q[0])
    _nl_wrap(c1 + g.offsets[3 * k + 1], g.nb1, g.periodic1, &q[1])
    _nl_wrap(c2 + g.offsets[3 * k + 2], g.nb2, g.periodic2, &q[2])
    sv[0] = q[0] * v[0] + q[1] * v[3] + q[2] * v[6]
    sv[1] = q[0] * v[1] + q[1] * v[4] + q[2] * v[7]
    sv[2] = q[0] * v[2] + q[1] * v[5] + q[2] * v[8]


cdef void _nl_bin(_NLGrid* g, int64_t flat, int tid) noexcept nogil:
    """Find the pairs of every atom of bin ``flat`` (thread ``tid``)."""
    cdef _NLBuf* b = &g.bufs[tid]
    cdef int c0, c1, c2, k, q0, q1, q2, b0, b1, b2, n_nb = 0, kk, kidx
    cdef int64_t s, t, t0, t1, nf, start, size, most
    cdef int i, oi0, oi1, oi2
    cdef double xi, yi, zi, sx, sy, sz, dx, dy, dz, r2
    cdef double* v = g.vec
    cdef int64_t s_begin = g.bin_start[flat], s_end = g.bin_start[flat + 1]
    cdef double rc2 = g.rc2
    cdef double* pos = g.sorted_xyz
    cdef int* ssh = g.sorted_shift
    cdef int64_t* bstart = g.bin_start
    cdef int limited = g.limited
    cdef int lim0 = g.lim0, lim1 = g.lim1, lim2 = g.lim2
    cdef int32_t* ents
    if s_begin == s_end or b.failed:
        return
    c2 = <int> (flat % g.nb2)
    c1 = <int> ((flat // g.nb2) % g.nb1)
    c0 = <int> (flat // (<int64_t> g.nb2 * g.nb1))
    # resolve the neighbour bins once for the whole bin
    most = 0
    for k in range(g.n_offsets):
        b0 = _nl_wrap(c0 + g.offsets[3 * k], g.nb0, g.periodic0, &q0)
        if b0 < 0:
            continue
        b1 = _nl_wrap(c1 + g.offsets[3 * k + 1], g.nb1, g.periodic1, &q1)
        if b1 < 0:
            continue
        b2 = _nl_wrap(c2 + g.offsets[3 * k + 2], g.nb2, g.periodic2, &q2)
        if b2 < 0:
            continue
        nf = (<int64_t> b0 * g.nb1 + b1) * g.nb2 + b2
        if bstart[nf] == bstart[nf + 1]:
            continue
        most += bstart[nf + 1] - bstart[nf]
        b.nb_flat[n_nb] = nf
        b.nb_k[n_nb] = k
        b.nb_q[3 * n_nb] = q0
        b.nb_q[3 * n_nb + 1] = q1
        b.nb_q[3 * n_nb + 2] = q2
        b.nb_vec[3 * n_nb] = q0 * v[0] + q1 * v[3] + q2 * v[6]
        b.nb_vec[3 * n_nb + 1] = q0 * v[1] + q1 * v[4] + q2 * v[7]
        b.nb_vec[3 * n_nb + 2] = q0 * v[2] + q1 * v[5] + q2 * v[8]
        n_nb = n_nb + 1
    for s in range(s_begin, s_end):
        if _nl_reserve(b, most):
            b.failed = 1
            return
        ents = b.ents
        size = b.size
        start = size
        xi = pos[3 * s]
        yi = pos[3 * s + 1]
        zi = pos[3 * s + 2]
        oi0 = ssh[3 * s]
        oi1 = ssh[3 * s + 1]
        oi2 = ssh[3 * s + 2]
        for kk in range(n_nb):
            nf = b.nb_flat[kk]
            kidx = b.nb_k[kk]
            q0 = b.nb_q[3 * kk]
            q1 = b.nb_q[3 * kk + 1]
            q2 = b.nb_q[3 * kk + 2]
            sx = b.nb_vec[3 * kk] - xi
            sy = b.nb_vec[3 * kk + 1] - yi
            sz = b.nb_vec[3 * kk + 2] - zi
            t0 = bstart[nf]
            t1 = bstart[nf + 1]
            for t in range(t0, t1):
                dx = pos[3 * t] + sx
                dy = pos[3 * t + 1] + sy
                dz = pos[3 * t + 2] + sz
                r2 = dx * dx + dy * dy + dz * dz
                if r2 >= rc2:
                    continue
                if t == s and q0 == 0 and q1 == 0 and q2 == 0:
                    continue
                if limited:
                    b0 = q0 - ssh[3 * t] + oi0
                    b1 = q1 - ssh[3 * t + 1] + oi1
                    b2 = q2 - ssh[3 * t + 2] + oi2
                    if b0 > lim0 or b0 < -lim0 or b1 > lim1 or b1 < -lim1 or b2 > lim2 or b2 < -lim2:
                        continue
                ents[2 * size] = <int32_t> t
                ents[2 * size + 1] = kidx
                size = size + 1
        b.size = size
        i = g.sorted_index[s]
        g.row_thread[i] = tid
        g.row_start[i] = start
        g.row_count[i] = size - start


cdef inline int _nl_before(int32_t* a, int32_t* c) noexcept nogil:
    """(j, S) of entry a sorts before entry c."""
    if a[0] != c[0]:
        return a[0] < c[0]
    if a[1] != c[1]:
        return a[1] < c[1]
    if a[2] != c[2]:
        return a[2] < c[2]
    return a[3] < c[3]


cdef void _nl_write_row(_NLGrid* g, int i, int64_t out, int sort_rows, int tid, int32_t* j_out, int32_t* s_out,
                        double* d_out, double* dist_out) noexcept nogil:
    """Expand the records of atom i (same arithmetic as the search), sort by (j, S), write the row."""
    cdef _NLBuf* own = &g.bufs[tid]
    cdef _NLBuf* b = &g.bufs[g.row_thread[i]]
    cdef int n = <int> g.row_count[i]
    cdef int32_t* ents = b.ents + 2 * g.row_start[i]
    cdef int32_t* keys = own.keys
    cdef double* vals = own.vals
    cdef int* perm = own.perm
    cdef int s = g.rank[i]
    cdef int64_t flat = g.flat_bin[i]
    cdef int c0, c1, c2, a, c, tmp, t, k
    cdef int q[3]
    cdef double sv[3]
    cdef double xi, yi, zi, sx, sy, sz, dx, dy, dz
    cdef double* pos = g.sorted_xyz
    cdef int* ssh = g.sorted_shift
    cdef int64_t e, o
    c2 = <int> (flat % g.nb2)
    c1 = <int> ((flat // g.nb2) % g.nb1)
    c0 = <int> (flat // (<int64_t> g.nb2 * g.nb1))
    xi = pos[3 * s]
    yi = pos[3 * s + 1]
    zi = pos[3 * s + 2]
    for a in range(n):
        t = ents[2 * a]
        k = ents[2 * a + 1]
        _nl_shift(g, k, c0, c1, c2, q, sv)
        sx = sv[0] - xi
        sy = sv[1] - yi
        sz = sv[2] - zi
        dx = pos[3 * t] + sx
        dy = pos[3 * t + 1] + sy
        dz = pos[3 * t + 2] + sz
        keys[4 * a] = g.sorted_index[t]
        keys[4 * a + 1] = q[0] - ssh[3 * t] + ssh[3 * s]
        keys[4 * a + 2] = q[1] - ssh[3 * t + 1] + ssh[3 * s + 1]
        keys[4 * a + 3] = q[2] - ssh[3 * t + 2] + ssh[3 * s + 2]
        vals[4 * a] = dx
        vals[4 * a + 1] = dy
        vals[4 * a + 2] = dz
        vals[4 * a + 3] = dx * dx + dy * dy + dz * dz
        perm[a] = a
    if sort_rows:
        for a in range(1, n):
            tmp = perm[a]
            c = a
            while c > 0 and _nl_before(keys + 4 * tmp, keys + 4 * perm[c - 1]):
                perm[c] = perm[c - 1]
                c = c - 1
            perm[c] = tmp
    for a in range(n):
        e = perm[a]
        o = out + a
        j_out[o] = keys[4 * e]
        s_out[3 * o] = keys[4 * e + 1]
        s_out[3 * o + 1] = keys[4 * e + 2]
        s_out[3 * o + 2] = keys[4 * e + 3]
        d_out[3 * o] = vals[4 * e]
        d_out[3 * o + 1] = vals[4 * e + 1]
        d_out[3 * o + 2] = vals[4 * e + 2]
        dist_out[o] = sqrt(vals[4 * e + 3])


cdef void _nl_free(_NLGrid* g, int n_threads) noexcept:
    cdef int tid
    if g.bufs == NULL:
        return
    for tid in range(n_threads):
        free(g.bufs[tid].ents)
        free(g.bufs[tid].nb_flat)
        free(g.bufs[tid].nb_k)
        free(g.bufs[tid].nb_q)
        free(g.bufs[tid].nb_vec)
        free(g.bufs[tid].keys)
        free(g.bufs[tid].vals)
        free(g.bufs[tid].perm)
    free(g.bufs)
    g.bufs = NULL


def neighbor_search(double[:, ::1] frac, double[:, ::1] xyz, int[:, ::1] shift, double[:, ::1] vectors,
                    int[::1] n_bins, int[::1] periodic, double[::1] frac_min, double[::1] bin_width,
                    const int[:, ::1] offsets, int[::1] image_limit, double cutoff, int n_threads, bint sort_rows,
                    int64_t capacity_hint=0):
    """Cell-list neighbour search (private; arguments are validated by ``miniff._neighbors``).

    Parameters
    ----------
    frac : [N, 3] fractional coordinates used for binning (wrapped into [0, 1) on periodic axes).
    xyz : [N, 3] Cartesian positions matching ``frac`` (``frac @ vectors``), Å.
    shift : [N, 3] int32 wrap offsets o: the caller's position is ``xyz + o @ vectors``.
    vectors : [3, 3] cell rows, Å.
    n_bins : [3] bins per axis; periodic : [3] 0/1; frac_min, bin_width : [3] bin origin and width
        in fractional units (bin of a coordinate f is floor((f - frac_min) / bin_width), clamped).
    offsets : [K, 3] bin offsets to visit.
    image_limit : [3] largest |S| kept per axis, or negative for no limit.
    cutoff : Å. n_threads : OpenMP team size. sort_rows : sort every row by (j, S).
    capacity_hint : expected number of pairs (pre-sizes the thread buffers).

    Returns
    -------
    indptr [N+1] int64, j [P] int32, S [P, 3] int32, D [P, 3] float64 (relative to the
    caller's positions), d [P] float64.
    """
    cdef int n = frac.shape[0]
    cdef int i, a, c, tid
    cdef int64_t nb_total = <int64_t> n_bins[0] * n_bins[1] * n_bins[2]
    cdef int64_t p, total, fb, max_row
    cdef int n_off = offsets.shape[0]
    cdef _NLGrid g
    cdef double f
    cdef int failed = 0
    indptr_arr = _np_nl.zeros(n + 1, dtype=_np_nl.int64)
    cdef int64_t[::1] indptr = indptr_arr
    if n == 0 or n_off == 0:
        return (indptr_arr, _np_nl.zeros(0, _np_nl.int32), _np_nl.zeros((0, 3), _np_nl.int32),
                _np_nl.zeros((0, 3)), _np_nl.zeros(0))
    if n_threads < 1:
        n_threads = 1
    bin_start_arr = _np_nl.zeros(nb_total + 1, dtype=_np_nl.int64)
    sorted_xyz_arr = _np_nl.empty((n, 3), dtype=_np_nl.float64)
    sorted_index_arr = _np_nl.empty(n, dtype=_np_nl.int32)
    sorted_shift_arr = _np_nl.empty((n, 3), dtype=_np_nl.int32)
    rank_arr = _np_nl.empty(n, dtype=_np_nl.int32)
    flat_bin_arr = _np_nl.empty(n, dtype=_np_nl.int64)
    row_thread_arr = _np_nl.zeros(n, dtype=_np_nl.int32)
    row_start_arr = _np_nl.zeros(n, dtype=_np_nl.int64)
    row_count_arr = _np_nl.zeros(n, dtype=_np_nl.int64)
    vec_arr = _np_nl.ascontiguousarray(vectors, dtype=_np_nl.float64)
    cdef int64_t[::1] bin_start = bin_start_arr
    cdef double[:, ::1] sorted_xyz = sorted_xyz_arr
    cdef int[::1] sorted_index = sorted_index_arr
    cdef int[:, ::1] sorted_shift = sorted_shift_arr
    cdef int[::1] rank = rank_arr
    cdef int64_t[::1] flat_bin = flat_bin_arr
    cdef int[::1] row_thread = row_thread_arr
    cdef int64_t[::1] row_start = row_start_arr
    cdef int64_t[::1] row_count = row_count_arr
    cdef double[:, ::1] vec = vec_arr
    cdef int64_t[::1] fill_ptr = _np_nl.empty(nb_total, dtype=_np_nl.int64)

    with nogil:
        # 1. bins and counting sort by bin (stable: atoms of a bin keep their index order)
        for i in range(n):
            fb = 0
            for a in range(3):
                f = (frac[i, a] - frac_min[a]) / bin_width[a]
                c = <int> floor(f)
                if c < 0:
                    c = 0
                elif c >= n_bins[a]:
                    c = n_bins[a] - 1
                fb = fb * n_bins[a] + c
            flat_bin[i] = fb
            bin_start[fb + 1] += 1
        for p in range(nb_total):
            bin_start[p + 1] += bin_start[p]
            fill_ptr[p] = bin_start[p]
        for i in range(n):
            p = fill_ptr[flat_bin[i]]
            fill_ptr[flat_bin[i]] = p + 1
            sorted_index[p] = i
            rank[i] = <int> p
            for a in range(3):
                sorted_xyz[p, a] = xyz[i, a]
                sorted_shift[p, a] = shift[i, a]

    g.nb0 = n_bins[0]
    g.nb1 = n_bins[1]
    g.nb2 = n_bins[2]
    g.periodic0 = periodic[0]
    g.periodic1 = periodic[1]
    g.periodic2 = periodic[2]
    g.n_offsets = n_off
    g.limited = image_limit[0] >= 0 or image_limit[1] >= 0 or image_limit[2] >= 0
    g.lim0 = image_limit[0] if image_limit[0] >= 0 else 2147483647
    g.lim1 = image_limit[1] if image_limit[1] >= 0 else 2147483647
    g.lim2 = image_limit[2] if image_limit[2] >= 0 else 2147483647
    g.rc2 = cutoff * cutoff
    g.vec = &vec[0, 0]
    g.offsets = <int*> &offsets[0, 0]
    g.bin_start = &bin_start[0]
    g.flat_bin = &flat_bin[0]
    g.rank = &rank[0]
    g.sorted_xyz = &sorted_xyz[0, 0]
    g.sorted_index = &sorted_index[0]
    g.sorted_shift = &sorted_shift[0, 0]
    g.row_thread = &row_thread[0]
    g.row_start = &row_start[0]
    g.row_count = &row_count[0]
    g.bufs = <_NLBuf*> calloc(n_threads, sizeof(_NLBuf))
    if g.bufs == NULL:
        raise MemoryError("neighbour search: cannot allocate thread buffers")
    try:
        for tid in range(n_threads):
            g.bufs[tid].nb_flat = <int64_t*> malloc(n_off * sizeof(int64_t))
            g.bufs[tid].nb_k = <int*> malloc(n_off * sizeof(int))
            g.bufs[tid].nb_q = <int*> malloc(3 * n_off * sizeof(int))
            g.bufs[tid].nb_vec = <double*> malloc(3 * n_off * sizeof(double))
            if (g.bufs[tid].nb_flat == NULL or g.bufs[tid].nb_k == NULL or g.bufs[tid].nb_q == NULL
                    or g.bufs[tid].nb_vec == NULL):
                raise MemoryError("neighbour search: cannot allocate thread buffers")
            if capacity_hint > 0 and _nl_reserve(&g.bufs[tid], capacity_hint // n_threads + 1024):
                raise MemoryError("neighbour search: cannot allocate thread buffers")
        # 2. search, parallel over bins
        for fb in prange(nb_total, nogil=True, num_threads=n_threads, schedule="dynamic", chunksize=8):
            _nl_bin(&g, fb, omp_get_thread_num())
        for tid in range(n_threads):
            if g.bufs[tid].failed:
                raise MemoryError("neighbour search: out of memory while collecting pairs")
        max_row = 0
        with nogil:
            for i in range(n):
                indptr[i + 1] = indptr[i] + row_count[i]
                if row_count[i] > max_row:
                    max_row = row_count[i]
        total = indptr[n]
        j_arr = _np_nl.empty(total, dtype=_np_nl.int32)
        s_arr = _np_nl.empty((total, 3), dtype=_np_nl.int32)
        d_arr = _np_nl.empty((total, 3), dtype=_np_nl.float64)
        dist_arr = _np_nl.empty(total, dtype=_np_nl.float64)
        if total == 0:
            return indptr_arr, j_arr, s_arr, d_arr, dist_arr
        # 3. output pass, parallel over atoms, with scratch per thread
        for tid in range(n_threads):
            g.bufs[tid].keys = <int32_t*> malloc(4 * (max_row + 1) * sizeof(int32_t))
            g.bufs[tid].vals = <double*> malloc(4 * (max_row + 1) * sizeof(double))
            g.bufs[tid].perm = <int*> malloc((max_row + 1) * sizeof(int))
            if g.bufs[tid].keys == NULL or g.bufs[tid].vals == NULL or g.bufs[tid].perm == NULL:
                raise MemoryError("neighbour search: cannot allocate the output scratch")
        _nl_write_all(&g, n, &indptr[0], sort_rows, j_arr, s_arr, d_arr, dist_arr, n_threads)
        return indptr_arr, j_arr, s_arr, d_arr, dist_arr
    finally:
        _nl_free(&g, n_threads)


cdef void _nl_write_all(_NLGrid* g, int n, int64_t* indptr, int sort_rows, int32_t[::1] j_arr,
                        int32_t[:, ::1] s_arr, double[:, ::1] d_arr, double[::1] dist_arr, int n_threads) noexcept:
    cdef int i
    cdef int32_t* j_ptr = &j_arr[0]
    cdef int32_t* s_ptr = &s_arr[0, 0]
    cdef double* d_ptr = &d_arr[0, 0]
    cdef double* dist_ptr = &dist_arr[0]
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        _nl_write_row(g, i, indptr[i], sort_rows, omp_get_thread_num(), j_ptr, s_ptr, d_ptr, dist_ptr)


def rows_dot3(const double[:, ::1] a, const double[:, ::1] m, double[:, ::1] out, int n_threads):
    """out[n] = a[n] @ m for a [N, 3], m [3, 3] (private helper of miniff.util.rows_dot3)."""
    cdef int64_t n = a.shape[0], k
    cdef double m00 = m[0, 0], m01 = m[0, 1], m02 = m[0, 2]
    cdef double m10 = m[1, 0], m11 = m[1, 1], m12 = m[1, 2]
    cdef double m20 = m[2, 0], m21 = m[2, 1], m22 = m[2, 2]
    cdef double x, y, z
    if n_threads < 1 or n < 100000:
        n_threads = 1
    for k in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        x = a[k, 0]
        y = a[k, 1]
        z = a[k, 2]
        out[k, 0] = x * m00 + y * m10 + z * m20
        out[k, 1] = x * m01 + y * m11 + z * m21
        out[k, 2] = x * m02 + y * m12 + z * m22


def pair_vectors(const int64_t[::1] indptr, const int32_t[::1] j_p, const int32_t[:, ::1] S_pc,
                 const double[:, ::1] xyz, const double[:, ::1] vectors, double[:, ::1] D_pc, double[::1] d_p,
                 int n_threads):
    """D_pc[p] = xyz[j] + S @ vectors - xyz[i], d_p = |D_pc| for a fixed pair topology (private)."""
    cdef int n = indptr.shape[0] - 1
    cdef int i, j
    cdef int64_t p
    cdef double s0, s1, s2, dx, dy, dz
    if n_threads < 1:
        n_threads = 1
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        for p in range(indptr[i], indptr[i + 1]):
            j = j_p[p]
            s0 = S_pc[p, 0]
            s1 = S_pc[p, 1]
            s2 = S_pc[p, 2]
            dx = xyz[j, 0] - xyz[i, 0] + s0 * vectors[0, 0] + s1 * vectors[1, 0] + s2 * vectors[2, 0]
            dy = xyz[j, 1] - xyz[i, 1] + s0 * vectors[0, 1] + s1 * vectors[1, 1] + s2 * vectors[2, 1]
            dz = xyz[j, 2] - xyz[i, 2] + s0 * vectors[0, 2] + s1 * vectors[1, 2] + s2 * vectors[2, 2]
            D_pc[p, 0] = dx
            D_pc[p, 1] = dy
            D_pc[p, 2] = dz
            d_p[p] = sqrt(dx * dx + dy * dy + dz * dz)
