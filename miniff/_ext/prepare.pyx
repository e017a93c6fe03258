# cython: language_level=3
"""Positions before the neighbour search and small Cartesian helpers of miniff's compiled core (private):
``neighbor_prepare`` (finite check, wrapping into the cell, extent), ``rows_dot3`` and ``pair_vectors``.
"""

from libc.math cimport floor, sqrt, fabs, isfinite
from libc.stdint cimport int64_t, int32_t
from cython.parallel cimport prange

import numpy as np

from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["neighbor_prepare", "rows_dot3", "pair_vectors"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


cdef int _nl_prepare_chunk(const double* pos, const double* inv, const double* vec, const int* periodic,
                           double* frac, double* xyz, int32_t* shift, double* ext, int64_t lo,
                           int64_t hi) noexcept nogil:
    """Wrap atoms lo..hi-1 (see ``neighbor_prepare``); ext [6] receives their min / max fractional coordinates."""
    cdef int64_t k
    cdef int a, status = 0
    cdef double f[3]
    cdef double w[3]
    cdef double x, y, z
    for a in range(3):
        ext[a] = 1e300
        ext[3 + a] = -1e300
    for k in range(lo, hi):
        x = pos[3 * k]
        y = pos[3 * k + 1]
        z = pos[3 * k + 2]
        if not (isfinite(x) and isfinite(y) and isfinite(z)):
            return 1
        for a in range(3):
            f[a] = x * inv[a] + y * inv[3 + a] + z * inv[6 + a]
            w[a] = 0.0
            if periodic[a]:
                w[a] = floor(f[a])
                if fabs(w[a]) >= 536870912.0:  # |S| = |q - o_j + o_i| must fit in int32
                    status = 2
                    w[a] = 0.0
                f[a] = f[a] - w[a]
                if f[a] >= 1.0:  # floor rounding at -1e-17 and the like
                    f[a] = f[a] - 1.0
                    w[a] = w[a] + 1.0
            frac[3 * k + a] = f[a]
            shift[3 * k + a] = <int32_t> w[a]
            if f[a] < ext[a]:
                ext[a] = f[a]
            if f[a] > ext[3 + a]:
                ext[3 + a] = f[a]
        xyz[3 * k] = x - (w[0] * vec[0] + w[1] * vec[3] + w[2] * vec[6])
        xyz[3 * k + 1] = y - (w[0] * vec[1] + w[1] * vec[4] + w[2] * vec[7])
        xyz[3 * k + 2] = z - (w[0] * vec[2] + w[1] * vec[5] + w[2] * vec[8])
    return status


def neighbor_prepare(const double[:, ::1] positions, const double[:, ::1] inverse, const double[:, ::1] vectors,
                     const int[::1] periodic, double[:, ::1] frac, double[:, ::1] xyz, int32_t[:, ::1] shift,
                     double[::1] extent, int n_threads):
    """Wrap positions for the search (private; shapes are checked by ``miniff.neighbors.search``).

    Parameters
    ----------
    positions : [N, 3] Cartesian positions, Å. inverse : [3, 3] inverse of ``vectors`` (rows, Å).
    periodic : [3] 0/1.
    frac, xyz, shift : outputs [N, 3]: wrapped fractional coordinates (in [0, 1) along periodic axes),
        wrapped Cartesian positions (Å) and the int32 wrap offsets o with positions = xyz + o @ vectors.
    extent : output [6]: minimum and maximum wrapped fractional coordinate along every axis.
    n_threads : OpenMP team size (1 below 50 000 atoms).

    Returns
    -------
    int: 0 on success, 1 when a position is NaN or infinite, 2 when a position lies more than
    2**29 cell lengths outside the cell.
    """
    cdef int64_t n = positions.shape[0], chunk, lo, hi
    cdef int n_chunks, ch, a, status = 0
    if (positions.shape[1] != 3 or inverse.shape[0] != 3 or inverse.shape[1] != 3 or vectors.shape[0] != 3
            or vectors.shape[1] != 3 or periodic.shape[0] != 3 or frac.shape[0] != n or frac.shape[1] != 3
            or xyz.shape[0] != n or xyz.shape[1] != 3 or shift.shape[0] != n or shift.shape[1] != 3
            or extent.shape[0] != 6):
        raise ValueError("neighbor_prepare: inconsistent array shapes")
    extent[0] = extent[1] = extent[2] = 0.0
    extent[3] = extent[4] = extent[5] = 0.0
    if n == 0:
        return 0
    if n_threads < 1 or n < 50000:
        n_threads = 1
    n_chunks = n_threads
    chunk = (n + n_chunks - 1) // n_chunks
    ext_arr = np.empty((n_chunks, 6))
    bad_arr = np.zeros(n_chunks, dtype=np.intc)
    cdef double[:, ::1] ext = ext_arr
    cdef int[::1] bad = bad_arr
    for ch in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static", chunksize=1):
        lo = ch * chunk
        hi = lo + chunk
        if hi > n:
            hi = n
        bad[ch] = _nl_prepare_chunk(&positions[0, 0], &inverse[0, 0], &vectors[0, 0], &periodic[0], &frac[0, 0],
                                    &xyz[0, 0], &shift[0, 0], &ext[ch, 0], lo, hi)
    for ch in range(n_chunks):
        if bad[ch] == 1:
            return 1
        if bad[ch] == 2:
            status = 2
        for a in range(3):
            if ch == 0 or ext[ch, a] < extent[a]:
                extent[a] = ext[ch, a]
            if ch == 0 or ext[ch, 3 + a] > extent[3 + a]:
                extent[3 + a] = ext[ch, 3 + a]
    return status


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
