# The inner steps of the batched triplet loops (j, k neighbours of a centre atom i) shared by the Behler 4/5
# kernel (angular.pyx) and the element-weighted angular kernel (weighted.pyx): one implementation of the
# radial products, the angular factors, the per-descriptor accumulation of values and Jacobian, and the final
# write of the first neighbour's Jacobian. Everything is inline, so cimporting this file creates no runtime
# dependency between the modules.
#
# Descriptor f of a batch: value_f = sum over (j, k) of wf[f] (1 + l_k cos)^zeta_k G_e(j) G_e(k) [H_e(jk)],
# with e = e_f[f], k = k_f[f], G_e the per-pair radial factor (g_pe [P, n_e]) and H_e the optional factor of the
# j-k distance (``has3``: Behler 4, weighted angular). Pair 1 is j (loop x1), pair 2 is k (loop x2); the
# Jacobian of pair 2 is written at once, that of pair 1 accumulated in ``sa1`` (along u1) and ``sb1``
# (3 per descriptor) and written by ``_triplet_flush`` after its inner loop.

from libc.math cimport sqrt
from libc.stdint cimport int32_t

from miniff._ext.common cimport _angular


cdef inline double _triplet_r3(const double[:, ::1] D_pc, Py_ssize_t p1, Py_ssize_t p2, double a,
                               double* w) noexcept nogil:
    """Distance r3 from neighbour j (pair p1) to k (pair p2); when r3 < a, ``w`` gets the unit vector j -> k."""
    cdef Py_ssize_t m
    cdef double r3
    for m in range(3):
        w[m] = D_pc[p2, m] - D_pc[p1, m]
    r3 = sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2])
    if r3 < a:
        for m in range(3):
            w[m] = w[m] / r3
    return r3


cdef inline void _triplet_radial(Py_ssize_t n_e, const double* lg1, const double* ldg1, const double* g2,
                                 const double* dg2, const double* h3, const double* dh3, bint has3, bint grad,
                                 double* gg, double* rr1, double* rr2, double* rr3) noexcept nogil:
    """Radial products per eta e: gg = G1 G2 H3 and, with ``grad``, its derivatives by r1, r2 (and r3)."""
    cdef Py_ssize_t e
    for e in range(n_e):
        gg[e] = lg1[e] * g2[e] * h3[e]
        if grad:
            rr1[e] = ldg1[e] * g2[e] * h3[e]
            rr2[e] = lg1[e] * dg2[e] * h3[e]
            if has3:
                rr3[e] = lg1[e] * g2[e] * dh3[e]


cdef inline void _triplet_angles(Py_ssize_t n_k, const double[::1] l_k, const double[::1] zeta_k,
                                 const int32_t[::1] izeta_k, double c, double* ang, double* dang) noexcept nogil:
    """(1 + l_k c)^zeta_k and its derivative by c for every angular pair k."""
    cdef Py_ssize_t k
    cdef double v, dv
    for k in range(n_k):
        _angular(1.0 + l_k[k] * c, l_k[k], zeta_k[k], izeta_k[k], &v, &dv)
        ang[k] = v
        dang[k] = dv


cdef inline void _triplet_values(Py_ssize_t n_f, const int32_t[::1] e_f, const int32_t[::1] k_f, const double* wf,
                                 const double* gg, const double* ang, double* vacc) noexcept nogil:
    """Values only: vacc[f] += wf[f] gg[e_f] ang[k_f]."""
    cdef Py_ssize_t f
    for f in range(n_f):
        vacc[f] += (wf[f] * gg[e_f[f]]) * ang[k_f[f]]


cdef inline void _triplet_terms(Py_ssize_t n_f, const int32_t[::1] e_f, const int32_t[::1] k_f, const double* wf,
                                const int32_t[::1] cols, const double* gg, const double* rr1, const double* rr2,
                                const double* rr3, const double* ang, const double* dang, double c, double ir1,
                                double ir2, const double* u1, const double* u2, const double* w3, bint has3,
                                double* vacc, double* sa1, double* sb1, double* jac2) noexcept nogil:
    """Values and Jacobian: vacc as ``_triplet_values``; the derivative by pair 2's vector added to its
    Jacobian row ``jac2`` (3 columns per descriptor, at 3 cols[f]); pair 1's part into ``sa1``, ``sb1``.
    ``u1``, ``u2``: unit vectors of the pairs, ``ir1``, ``ir2`` their inverse lengths, ``w3`` the unit vector
    from j to k (only with ``has3``)."""
    cdef Py_ssize_t f, e, k, m, col
    cdef double t, pa, dvdc, a1, b1, a2, b2
    cdef double dv3 = 0.0
    for f in range(n_f):
        e = e_f[f]
        k = k_f[f]
        col = 3 * cols[f]
        t = wf[f] * gg[e]
        pa = wf[f] * ang[k]
        vacc[f] += t * ang[k]
        dvdc = t * dang[k]
        a1 = pa * rr1[e] - dvdc * c * ir1
        b1 = dvdc * ir1
        a2 = pa * rr2[e] - dvdc * c * ir2
        b2 = dvdc * ir2
        sa1[f] += a1
        if has3:
            dv3 = pa * rr3[e]
            for m in range(3):
                sb1[3 * f + m] += b1 * u2[m] - dv3 * w3[m]
                jac2[col + m] += a2 * u2[m] + b2 * u1[m] + dv3 * w3[m]
        else:
            for m in range(3):
                sb1[3 * f + m] += b1 * u2[m]
                jac2[col + m] += a2 * u2[m] + b2 * u1[m]


cdef inline double _triplet_first(Py_ssize_t p1, Py_ssize_t n_e, Py_ssize_t n_f, const double[::1] d_p,
                                  const double[:, ::1] u_pc, const double[:, ::1] g_pe, const double[:, ::1] dg_pe,
                                  double* u1, double* lg1, double* ldg1, double* sa1, double* sb1,
                                  bint grad) noexcept nogil:
    """Load pair 1 (``p1``) before its inner loop: its unit vector and radial factors (rows of the per-pair
    scratch), cleared Jacobian sums (with ``grad``); returns 1 / r1."""
    cdef Py_ssize_t e, f, m
    for m in range(3):
        u1[m] = u_pc[p1, m]
    for e in range(n_e):
        lg1[e] = g_pe[p1, e]
        ldg1[e] = dg_pe[p1, e]
    if not grad:
        return 1.0 / d_p[p1]
    for f in range(n_f):
        sa1[f] = 0.0
        sb1[3 * f] = 0.0
        sb1[3 * f + 1] = 0.0
        sb1[3 * f + 2] = 0.0
    return 1.0 / d_p[p1]


cdef inline void _triplet_flush(Py_ssize_t n_f, const int32_t[::1] cols, const double* sa1, const double* sb1,
                                const double* u1, double* jac1) noexcept nogil:
    """Add pair 1's accumulated Jacobian to its row ``jac1``."""
    cdef Py_ssize_t f, m, col
    for f in range(n_f):
        col = 3 * cols[f]
        for m in range(3):
            jac1[col + m] += sa1[f] * u1[m] + sb1[3 * f + m]
