# cython: language_level=3
"""Contractions of the sparse descriptor Jacobian of the fits (private): ``jacobian_contract`` (energy gradients
by the positions from dE/dF) and ``jacobian_contract_t`` (its transpose, dE/dF from position gradients), each one
pass over the stored entries without an ``[E, F]`` intermediate; and ``pair_contract``, the per-pair gradients of
K networks (a committee) from the per-pair Jacobian of ``eval_descriptors``, one pass over it for all K.

The entries are those of ``miniff.ml.jacobian.SparseJacobian``: sorted by sample (``ptr_s`` delimits the entries
of every sample), entry ``e`` of sample ``s`` links point ``point_e[e]`` (row ``s * n_points + point_e[e]`` of the
features) with atom ``atom_e[e]`` (row ``s * n_atoms + atom_e[e]`` of the positions) through ``values[e] [F, 3]``.
Every sample is done by one thread in entry order, so results do not depend on the thread count.
"""

from libc.stdint cimport int64_t
from cython.parallel cimport prange

from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["jacobian_contract", "jacobian_contract_t", "pair_contract"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext

ctypedef fused real:
    float
    double


cdef void _contract_sample(const int64_t* point_e, const int64_t* atom_e, const real* values, const real* g_rf,
                           real* out_ac, int64_t lo, int64_t hi, int64_t n_f) noexcept nogil:
    """``out_ac[atom_e[e]] += sum_d g_rf[point_e[e], d] values[e, d]`` for the entries lo..hi-1 of one sample
    (``g_rf`` and ``out_ac`` already offset to the sample's rows)."""
    cdef int64_t e, d, n4 = n_f - n_f % 4
    cdef const real* v
    cdef const real* g
    cdef real* o
    cdef real a0, a1, a2, b0, b1, b2, c0, c1, c2, d0, d1, d2
    for e in range(lo, hi):
        v = values + e * n_f * 3
        g = g_rf + point_e[e] * n_f
        a0 = a1 = a2 = b0 = b1 = b2 = c0 = c1 = c2 = d0 = d1 = d2 = 0
        for d in range(0, n4, 4):   # four independent sums per component: not bound by the FMA latency
            a0 = a0 + g[d] * v[3 * d]
            a1 = a1 + g[d] * v[3 * d + 1]
            a2 = a2 + g[d] * v[3 * d + 2]
            b0 = b0 + g[d + 1] * v[3 * d + 3]
            b1 = b1 + g[d + 1] * v[3 * d + 4]
            b2 = b2 + g[d + 1] * v[3 * d + 5]
            c0 = c0 + g[d + 2] * v[3 * d + 6]
            c1 = c1 + g[d + 2] * v[3 * d + 7]
            c2 = c2 + g[d + 2] * v[3 * d + 8]
            d0 = d0 + g[d + 3] * v[3 * d + 9]
            d1 = d1 + g[d + 3] * v[3 * d + 10]
            d2 = d2 + g[d + 3] * v[3 * d + 11]
        for d in range(n4, n_f):
            a0 = a0 + g[d] * v[3 * d]
            a1 = a1 + g[d] * v[3 * d + 1]
            a2 = a2 + g[d] * v[3 * d + 2]
        o = out_ac + atom_e[e] * 3
        o[0] = o[0] + ((a0 + b0) + (c0 + d0))
        o[1] = o[1] + ((a1 + b1) + (c1 + d1))
        o[2] = o[2] + ((a2 + b2) + (c2 + d2))


cdef void _contract_t_sample(const int64_t* point_e, const int64_t* atom_e, const real* values, const real* x_ac,
                             real* out_rf, int64_t lo, int64_t hi, int64_t n_f) noexcept nogil:
    """``out_rf[point_e[e], d] += sum_c values[e, d, c] x_ac[atom_e[e], c]`` for the entries lo..hi-1 of one
    sample (``x_ac`` and ``out_rf`` already offset to the sample's rows)."""
    cdef int64_t e, d
    cdef const real* v
    cdef real* o
    cdef real x0, x1, x2
    for e in range(lo, hi):
        v = values + e * n_f * 3
        x0 = x_ac[atom_e[e] * 3]
        x1 = x_ac[atom_e[e] * 3 + 1]
        x2 = x_ac[atom_e[e] * 3 + 2]
        o = out_rf + point_e[e] * n_f
        for d in range(n_f):
            o[d] = o[d] + (v[3 * d] * x0 + v[3 * d + 1] * x1 + v[3 * d + 2] * x2)


def jacobian_contract(const int64_t[::1] ptr_s, const int64_t[::1] point_e, const int64_t[::1] atom_e,
                      const real[:, :, ::1] values, const real[:, ::1] g_rf, real[:, ::1] out_ac, int64_t n_points,
                      int64_t n_atoms, int n_threads):
    """``out_ac[s * n_atoms + atom_e[e]] += sum_d g_rf[s * n_points + point_e[e], d] values[e, d, :]`` (private;
    indices are checked by ``miniff.ml.jacobian``).

    Parameters
    ----------
    ptr_s : [S + 1] entry offsets of the samples. point_e, atom_e : [E] point and atom of every entry.
    values : [E, F, 3] the Jacobian entries. g_rf : [S * n_points, F] dE/dF per point row.
    out_ac : output [S * n_atoms, 3], added to. n_threads : OpenMP team size.
    """
    cdef int64_t n_s = ptr_s.shape[0] - 1, n_f = values.shape[1], s
    if (values.shape[0] != point_e.shape[0] or atom_e.shape[0] != point_e.shape[0] or values.shape[2] != 3
            or g_rf.shape[1] != n_f or g_rf.shape[0] != n_s * n_points or out_ac.shape[0] != n_s * n_atoms
            or out_ac.shape[1] != 3 or ptr_s[n_s] != point_e.shape[0]):
        raise ValueError("jacobian_contract: array shapes disagree")
    if n_s == 0 or point_e.shape[0] == 0 or n_f == 0 or n_points == 0 or n_atoms == 0:
        return
    for s in prange(n_s, nogil=True, num_threads=n_threads, schedule="dynamic"):
        _contract_sample(&point_e[0], &atom_e[0], &values[0, 0, 0], &g_rf[s * n_points, 0],
                         &out_ac[s * n_atoms, 0], ptr_s[s], ptr_s[s + 1], n_f)


def jacobian_contract_t(const int64_t[::1] ptr_s, const int64_t[::1] point_e, const int64_t[::1] atom_e,
                        const real[:, :, ::1] values, const real[:, ::1] x_ac, real[:, ::1] out_rf, int64_t n_points,
                        int64_t n_atoms, int n_threads):
    """``out_rf[s * n_points + point_e[e], :] += values[e] @ x_ac[s * n_atoms + atom_e[e]]`` (private; the
    transpose of :func:`jacobian_contract`).

    Parameters
    ----------
    ptr_s, point_e, atom_e, values : as :func:`jacobian_contract`. x_ac : [S * n_atoms, 3] per atom row.
    out_rf : output [S * n_points, F], added to. n_threads : OpenMP team size.
    """
    cdef int64_t n_s = ptr_s.shape[0] - 1, n_f = values.shape[1], s
    if (values.shape[0] != point_e.shape[0] or atom_e.shape[0] != point_e.shape[0] or values.shape[2] != 3
            or out_rf.shape[1] != n_f or out_rf.shape[0] != n_s * n_points or x_ac.shape[0] != n_s * n_atoms
            or x_ac.shape[1] != 3 or ptr_s[n_s] != point_e.shape[0]):
        raise ValueError("jacobian_contract_t: array shapes disagree")
    if n_s == 0 or point_e.shape[0] == 0 or n_f == 0 or n_points == 0 or n_atoms == 0:
        return
    for s in prange(n_s, nogil=True, num_threads=n_threads, schedule="dynamic"):
        _contract_t_sample(&point_e[0], &atom_e[0], &values[0, 0, 0], &x_ac[s * n_atoms, 0],
                           &out_rf[s * n_points, 0], ptr_s[s], ptr_s[s + 1], n_f)


def pair_contract(const int64_t[::1] rows_p, const double[:, :, ::1] values_pfc, const double[:, :, ::1] g_rkf,
                  double[:, :, ::1] out_kpc, int n_threads):
    """``out_kpc[k, p, :] = sum_f g_rkf[rows_p[p], k, f] values_pfc[p, f, :]`` for the pairs with
    ``rows_p[p] >= 0``; the other pairs are left as they are (private; ``rows_p < g_rkf.shape[0]`` is checked by
    ``miniff.ml.potential.contract_pairs``).  Every pair is done by one thread: results do not depend on the
    thread count.

    Parameters
    ----------
    rows_p : [P] row of ``g_rkf`` of every pair's centre atom, -1 to skip the pair.
    values_pfc : [P, F, 3] the per-pair descriptor Jacobian. g_rkf : [R, K, F] dE/dF of K networks per row.
    out_kpc : output [K, P, 3]. n_threads : OpenMP team size.
    """
    cdef int64_t n_p = values_pfc.shape[0], n_f = values_pfc.shape[1], n_k = g_rkf.shape[1], p, k, f, r
    cdef double x0, x1, x2, g
    if (rows_p.shape[0] != n_p or values_pfc.shape[2] != 3 or g_rkf.shape[2] != n_f or out_kpc.shape[0] != n_k
            or out_kpc.shape[1] != n_p or out_kpc.shape[2] != 3):
        raise ValueError("pair_contract: array shapes disagree")
    if n_p == 0 or n_k == 0:
        return
    for p in prange(n_p, nogil=True, num_threads=n_threads, schedule="static"):
        r = rows_p[p]
        if r < 0:
            continue
        for k in range(n_k):
            x0 = 0.0
            x1 = 0.0
            x2 = 0.0
            for f in range(n_f):
                g = g_rkf[r, k, f]
                x0 = x0 + g * values_pfc[p, f, 0]
                x1 = x1 + g * values_pfc[p, f, 1]
                x2 = x2 + g * values_pfc[p, f, 2]
            out_kpc[k, p, 0] = x0
            out_kpc[k, p, 1] = x1
            out_kpc[k, p, 2] = x2
