# cython: language_level=3
"""Chebyshev descriptors of miniff's compiled core (private): aenet's radial and angular Chebyshev expansions
(Artrith, Urban and Ceder, Phys. Rev. B 96, 014112 (2017)) with per-species weight tables (the "type spin"
channel), in batches sharing one cutoff and one centre species.

Radial, descriptor ``f`` of order ``n = order_f[f]`` and weight table ``c = c_f[f]``::

    value_f = sum_j w_c(j) T_n(2 r_ij / a - 1) f_c(r_ij)

angular, over unordered neighbour pairs ``j < k``::

    value_f = sum_{j<k} w_c(j) w_c(k) T_n(cos theta_jik) f_c(r_ij) f_c(r_ik)

``T_n`` the Chebyshev polynomials of the first kind, ``f_c`` the cosine cutoff. Same rules as ``weighted.pyx``
(whose argument checks it shares; the per-pair weight set-up of both is ``common.pxd``'s): prange over centre atoms, a pair's Jacobian written only by the thread owning
its centre atom (results independent of the thread count), pairs with ``d_p >= a`` or all weights 0 skipped.
The formulas are in miniff/potentials/chebyshev.py and docs/formulas.md.
"""

from libc.stdint cimport int32_t, int64_t
from cython.parallel cimport prange

from miniff._ext.common cimport RED_MAX_GROUP, _match, _weighted_pair, _weighted_pair_setup
from miniff._ext.weighted cimport _check_common, _check_pair_scratch
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["batch_chebyshev_radial_reduce", "batch_chebyshev_angular_reduce"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


cdef inline void _chebyshev(double x, int n_max, double* t, double* dt) noexcept nogil:
    """T_0..T_{n_max}(x) into t and their derivatives by x into dt (three-term recurrences)."""
    cdef int n
    t[0] = 1.0
    dt[0] = 0.0
    if n_max < 1:
        return
    t[1] = x
    dt[1] = 1.0
    for n in range(1, n_max):
        t[n + 1] = 2.0 * x * t[n] - t[n - 1]
        dt[n + 1] = 2.0 * t[n] + 2.0 * x * dt[n] - dt[n - 1]


cdef int _check_orders(const int32_t[::1] order_f, const int32_t[::1] cols, int n_max) except -1:
    cdef Py_ssize_t f
    if order_f.shape[0] != cols.shape[0]:
        raise ValueError("order_f and cols must have the same length")
    if n_max < 0 or n_max >= RED_MAX_GROUP:
        raise ValueError(f"n_max must be in [0, {RED_MAX_GROUP - 1}]")
    for f in range(order_f.shape[0]):
        if order_f[f] < 0 or order_f[f] > n_max:
            raise ValueError("order_f must lie in [0, n_max]")
    return 0


# ---------------------------------------------------------------------------------------------
# Radial: value_f = sum_j w_{c_f}(j) T_{n_f}(2 r / a - 1) f_c(r)
# ---------------------------------------------------------------------------------------------

cdef void _radial_atom(Py_ssize_t i, Py_ssize_t n, double a, const int32_t[::1] order_f, int n_max,
                       const int32_t[::1] cols, const int32_t[::1] c_f, const double[:, ::1] weight_cs,
                       const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                       const double[:, ::1] D_pc, const int32_t[::1] spec_n, double[:, ::1] values_nf,
                       double[:, ::1] jac_pf3, bint grad) noexcept nogil:
    cdef Py_ssize_t p, f, m, col
    cdef Py_ssize_t n_f = cols.shape[0]
    cdef double r, w, fc, dfc, t, ir
    cdef double dxdr = 2.0 / a
    cdef double acc[RED_MAX_GROUP]
    cdef double wc[RED_MAX_GROUP]
    cdef double tn[RED_MAX_GROUP]
    cdef double dtn[RED_MAX_GROUP]
    for f in range(n_f):
        acc[f] = 0.0
    for p in range(indptr[i], indptr[i + 1]):
        if not _weighted_pair(p, a, weight_cs, spec_n, j_p, d_p, n, wc, &fc, &dfc):
            continue
        r = d_p[p]
        _chebyshev(dxdr * r - 1.0, n_max, tn, dtn)
        ir = 1.0 / r
        for f in range(n_f):
            w = wc[c_f[f]]
            acc[f] += w * tn[order_f[f]] * fc
            if grad:
                t = w * (dtn[order_f[f]] * dxdr * fc + tn[order_f[f]] * dfc) * ir
                col = 3 * cols[f]
                for m in range(3):
                    jac_pf3[p, col + m] += t * D_pc[p, m]
    for f in range(n_f):
        values_nf[i, cols[f]] += acc[f]


def batch_chebyshev_radial_reduce(double a, const int32_t[::1] order_f, int n_max, const int32_t[::1] cols,
                                  const int32_t[::1] c_f, const double[:, ::1] weight_cs,
                                  const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                                  const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa,
                                  double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad, int n_threads):
    """Accumulate F <= 64 radial Chebyshev descriptors of the centre species ``sa`` sharing the cutoff ``a``.

    ``values_nf[i, cols[f]] += sum_j weight_cs[c_f[f], spec_n[j]] T_{order_f[f]}(2 r_ij / a - 1) f_c(r_ij)``
    and, with ``grad``, the derivative by every pair vector into ``jac_pf3[p, 3 cols[f] : 3 cols[f] + 3]``.
    ``n_max`` (<= 63) is the largest order; ``weight_cs`` [C, n_species] holds C <= 64 weight tables.
    """
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    _check_orders(order_f, cols, n_max)
    _check_common(indptr, j_p, d_p, D_pc, spec_n, cols, c_f, weight_cs, values_nf, jac_pf3, grad, n_threads)
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="guided"):
        if _match(spec_n[i], sa):
            _radial_atom(i, n, a, order_f, n_max, cols, c_f, weight_cs, indptr, j_p, d_p, D_pc, spec_n,
                         values_nf, jac_pf3, grad)


# ---------------------------------------------------------------------------------------------
# Angular over unordered neighbour pairs j < k:
# value_f = sum_{j<k} w_{c_f}(j) w_{c_f}(k) T_{n_f}(cos theta) f_c(r_ij) f_c(r_ik)
# ---------------------------------------------------------------------------------------------

cdef void _angular_atom(Py_ssize_t i, Py_ssize_t n, double a, const int32_t[::1] order_f, int n_max,
                        const int32_t[::1] cols, const int32_t[::1] c_f, const double[:, ::1] weight_cs,
                        const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                        const double[:, ::1] D_pc, const int32_t[::1] spec_n, double[:, ::1] f_p2,
                        double[:, ::1] u_pc, double[:, ::1] w_pc, int64_t[::1] sel_p, double[:, ::1] values_nf,
                        double[:, ::1] jac_pf3, bint grad) noexcept nogil:
    cdef Py_ssize_t p, p1, p2, x1, x2, f, m, col
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef Py_ssize_t n_f = cols.shape[0]
    cdef Py_ssize_t nsel = 0
    cdef double fc, dfc, c, ir1, ir2, f1, f2, df1, df2, ff, wf, t, dt, g1, g2, h1, h2
    cdef double u1[3]
    cdef double u2[3]
    cdef double tn[RED_MAX_GROUP]
    cdef double dtn[RED_MAX_GROUP]
    cdef double vacc[RED_MAX_GROUP]

    # usable pairs of atom i (inside the cutoff, a non-zero weight): unit vectors, weights, cutoff and derivative
    for p in range(p0, pe):
        if not _weighted_pair_setup(p, a, weight_cs, spec_n, j_p, d_p, D_pc, n, u_pc, w_pc, &fc, &dfc):
            continue
        f_p2[p, 0] = fc
        f_p2[p, 1] = dfc
        sel_p[p0 + nsel] = p
        nsel = nsel + 1

    for f in range(n_f):
        vacc[f] = 0.0
    for x1 in range(nsel):
        p1 = sel_p[p0 + x1]
        ir1 = 1.0 / d_p[p1]
        f1 = f_p2[p1, 0]
        df1 = f_p2[p1, 1]
        for m in range(3):
            u1[m] = u_pc[p1, m]
        for x2 in range(x1 + 1, nsel):
            p2 = sel_p[p0 + x2]
            ir2 = 1.0 / d_p[p2]
            f2 = f_p2[p2, 0]
            df2 = f_p2[p2, 1]
            for m in range(3):
                u2[m] = u_pc[p2, m]
            c = u1[0] * u2[0] + u1[1] * u2[1] + u1[2] * u2[2]
            _chebyshev(c, n_max, tn, dtn)
            ff = f1 * f2
            for f in range(n_f):
                wf = w_pc[p1, c_f[f]] * w_pc[p2, c_f[f]]
                t = tn[order_f[f]]
                vacc[f] += wf * t * ff
                if not grad:
                    continue
                dt = wf * dtn[order_f[f]] * ff  # d value / d cos
                g1 = wf * t * df1 * f2          # d value / d r_ij (at fixed cos)
                g2 = wf * t * f1 * df2
                # d cos / d D1 = (u2 - c u1) / r1, d cos / d D2 = (u1 - c u2) / r2
                h1 = dt * ir1
                h2 = dt * ir2
                col = 3 * cols[f]
                for m in range(3):
                    jac_pf3[p1, col + m] += g1 * u1[m] + h1 * (u2[m] - c * u1[m])
                    jac_pf3[p2, col + m] += g2 * u2[m] + h2 * (u1[m] - c * u2[m])
    for f in range(n_f):
        values_nf[i, cols[f]] += vacc[f]


def batch_chebyshev_angular_reduce(double a, const int32_t[::1] order_f, int n_max, const int32_t[::1] cols,
                                   const int32_t[::1] c_f, const double[:, ::1] weight_cs,
                                   const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                                   const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa,
                                   double[:, ::1] f_p2, double[:, ::1] u_pc, double[:, ::1] w_pc,
                                   int64_t[::1] sel_p, double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad,
                                   int n_threads):
    """Accumulate F <= 64 angular Chebyshev descriptors of the centre species ``sa`` sharing the cutoff ``a``.

    ``values_nf[i, cols[f]] += sum_{j<k} w(j) w(k) T_{order_f[f]}(cos theta_jik) f_c(r_ij) f_c(r_ik)`` with
    ``w = weight_cs[c_f[f], species]``, and with ``grad`` the derivative by every pair vector into ``jac_pf3``.
    ``f_p2`` [P, 2], ``u_pc`` [P, 3], ``w_pc`` [P, C] and ``sel_p`` [P] are scratch buffers.
    """
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    cdef Py_ssize_t n_pairs = j_p.shape[0]
    _check_orders(order_f, cols, n_max)
    if f_p2.shape[0] != n_pairs or f_p2.shape[1] != 2:
        raise ValueError("scratch buffers must have one row per pair")
    _check_pair_scratch(n_pairs, u_pc, w_pc, sel_p, weight_cs.shape[0])
    _check_common(indptr, j_p, d_p, D_pc, spec_n, cols, c_f, weight_cs, values_nf, jac_pf3, grad, n_threads)
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="guided"):
        if _match(spec_n[i], sa):
            _angular_atom(i, n, a, order_f, n_max, cols, c_f, weight_cs, indptr, j_p, d_p, D_pc, spec_n, f_p2,
                          u_pc, w_pc, sel_p, values_nf, jac_pf3, grad)
