# cython: language_level=3
"""Local structural parameters of miniff's compiled core (private; Purja Pun & Mishin, PyFit-FF's
descriptors): ``batch_lsp_reduce``, values and per-pair Jacobian through angular moments.

Same rules as ``pair.pyx``: prange over centre atoms, one thread per atom, accumulate into zeroed outputs,
per-pair Jacobian written only by the centre atom's thread.
"""

# For a centre atom i, neighbours j of species b and k of species c (j = k included when both match):
#
#     gt(i) = sum_j sum_k P_m(u_j . u_k) f(r_j) f(r_k),   f(r) = exp(-(r - r0)^2 / sigma^2) / r0 * fc(r),
#     fc(r) = (r - rc)^4 / (h^4 + (r - rc)^4) for r < rc, else 0,
#
# and the descriptor is asinh(gt) (or gt itself). With the monomials u^al (|al| <= L) and the moments
# M_b[al] = sum_{j in b} f(r_j) u_j^al, the double sum is sum_al A[m, |al|] w_al M_b[al] M_c[al], where
# A[m, n] is the coefficient of x^n in P_m and w_al = |al|! / (al_x! al_y! al_z!): O(pairs) instead of O(pairs^2).

from libc.math cimport exp, sqrt, asinh
from libc.stdint cimport int32_t, int64_t
from cython.parallel cimport prange

import numpy as np

from miniff._ext.common cimport LSP_MAX_ORDER, LSP_MAX_RADIAL, RED_MAX_GROUP, _match
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["batch_lsp_reduce"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


cdef enum:
    LSP_MAX_MONO = 165    # monomials of degree <= LSP_MAX_ORDER = 8


cdef inline void _lsp_cutoff(double r, double rc, double h4, double* fc, double* dfc) noexcept nogil:
    cdef double t = r - rc
    cdef double x = t * t * t * t
    cdef double den = h4 + x
    fc[0] = x / den
    dfc[0] = h4 * 4.0 * t * t * t / (den * den)


cdef void _lsp_atom(Py_ssize_t i, double rc, double h4, const double[::1] r0_e, const double[::1] isig2_e,
                    const double[:, ::1] coef_fn, const int32_t[::1] e_f, const int32_t[::1] asinh_f,
                    const int32_t[::1] cols, const int32_t[::1] deg_m, const double[::1] w_m,
                    const int32_t[::1] parent_m, const int32_t[::1] axis_m, const int32_t[:, ::1] plus_m3,
                    const double[:, ::1] gw_m3, const int64_t[::1] indptr, const int32_t[::1] j_p,
                    const double[::1] d_p, const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sb, int sc,
                    double[:, ::1] g_pe, double[:, ::1] dg_pe, double[:, ::1] u_pc,
                    double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad) noexcept nogil:
    cdef Py_ssize_t p, e, f, al, k, x, col
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef Py_ssize_t n_e = r0_e.shape[0]
    cdef Py_ssize_t n_f = cols.shape[0]
    cdef Py_ssize_t nm = deg_m.shape[0]
    cdef int lmax = deg_m[nm - 1]
    cdef bint same = sb == sc
    cdef bint inb, inc
    cdef double r, fc, dfc, ex, t, g, gt, s, G, hu, acc
    cdef double u[3]
    cdef double H[3]
    cdef double Mb[LSP_MAX_RADIAL * LSP_MAX_MONO]
    cdef double Mc[LSP_MAX_RADIAL * LSP_MAX_MONO]
    cdef double K[LSP_MAX_RADIAL * LSP_MAX_MONO]
    cdef double mono[LSP_MAX_MONO]
    cdef double Gk[LSP_MAX_RADIAL * (LSP_MAX_ORDER + 1)]
    cdef double Hk[LSP_MAX_RADIAL * (LSP_MAX_ORDER + 1) * 3]
    cdef double scale_f[RED_MAX_GROUP]
    cdef int32_t sp

    for k in range(n_e * nm):
        Mb[k] = 0.0
        Mc[k] = 0.0
    # pass 1: radial factors, unit vectors and the moments of the b and c neighbours
    for p in range(p0, pe):
        r = d_p[p]
        if r >= rc:
            continue
        sp = spec_n[j_p[p]]
        inb = _match(sp, sb)
        inc = _match(sp, sc)
        if not (inb or inc):
            continue
        for x in range(3):
            u[x] = D_pc[p, x] / r
            u_pc[p, x] = u[x]
        _lsp_cutoff(r, rc, h4, &fc, &dfc)
        mono[0] = 1.0
        for al in range(1, nm):
            mono[al] = mono[parent_m[al]] * u[axis_m[al]]
        for e in range(n_e):
            t = r - r0_e[e]
            ex = exp(-t * t * isig2_e[e]) / r0_e[e]
            g = ex * fc
            g_pe[p, e] = g
            dg_pe[p, e] = ex * (dfc - 2.0 * t * isig2_e[e] * fc)
            if inb:
                for al in range(nm):
                    Mb[e * nm + al] += g * mono[al]
            if inc and not same:
                for al in range(nm):
                    Mc[e * nm + al] += g * mono[al]
    if same:
        for k in range(n_e * nm):
            Mc[k] = Mb[k]
    # values: gt_f = sum_al A[m_f, |al|] w_al Mb[e_f, al] Mc[e_f, al]
    for f in range(n_f):
        e = e_f[f]
        gt = 0.0
        for al in range(nm):
            gt = gt + coef_fn[f, deg_m[al]] * w_m[al] * Mb[e * nm + al] * Mc[e * nm + al]
        col = cols[f]
        if asinh_f[f]:
            values_nf[i, col] += asinh(gt)
            scale_f[f] = 1.0 / sqrt(1.0 + gt * gt)
        else:
            values_nf[i, col] += gt
            scale_f[f] = 1.0
    if not grad:
        return
    # pass 2: d gt / d D_p = sum_al A w_al K_al d(g u^al)/dD_p with K = [p in b] Mc + [p in c] Mb
    for p in range(p0, pe):
        r = d_p[p]
        if r >= rc:
            continue
        sp = spec_n[j_p[p]]
        inb = _match(sp, sb)
        inc = _match(sp, sc)
        if not (inb or inc):
            continue
        for x in range(3):
            u[x] = u_pc[p, x]
        mono[0] = 1.0
        for al in range(1, nm):
            mono[al] = mono[parent_m[al]] * u[axis_m[al]]
        for k in range(n_e * nm):
            K[k] = (Mc[k] if inb else 0.0) + (Mb[k] if inc else 0.0)
        # per radial and degree: G[e, n] = sum_{|al| = n} w K u^al, H[e, n] = sum_{|al| = n} w K grad_u(u^al)
        for k in range(n_e * (lmax + 1)):
            Gk[k] = 0.0
            Hk[3 * k] = 0.0
            Hk[3 * k + 1] = 0.0
            Hk[3 * k + 2] = 0.0
        for e in range(n_e):
            for al in range(nm):
                k = e * (lmax + 1) + deg_m[al]
                Gk[k] += w_m[al] * K[e * nm + al] * mono[al]
                if deg_m[al] < lmax:
                    for x in range(3):
                        Hk[3 * (k + 1) + x] += gw_m3[al, x] * K[e * nm + plus_m3[al, x]] * mono[al]
        for f in range(n_f):
            e = e_f[f]
            G = 0.0
            H[0] = 0.0
            H[1] = 0.0
            H[2] = 0.0
            for k in range(lmax + 1):
                acc = coef_fn[f, k]
                if acc != 0.0:
                    G = G + acc * Gk[e * (lmax + 1) + k]
                    for x in range(3):
                        H[x] = H[x] + acc * Hk[3 * (e * (lmax + 1) + k) + x]
            hu = H[0] * u[0] + H[1] * u[1] + H[2] * u[2]
            s = scale_f[f]
            g = g_pe[p, e] / r
            col = 3 * cols[f]
            for x in range(3):
                jac_pf3[p, col + x] += s * (dg_pe[p, e] * G * u[x] + g * (H[x] - hu * u[x]))


def batch_lsp_reduce(double rc, double h, const double[::1] r0_e, const double[::1] sigma_e,
                     const double[:, ::1] coef_fn, const int32_t[::1] e_f, const int32_t[::1] asinh_f,
                     const int32_t[::1] cols, const int32_t[::1] deg_m, const double[::1] w_m,
                     const int32_t[::1] parent_m, const int32_t[::1] axis_m, const int32_t[:, ::1] plus_m3,
                     const double[:, ::1] gw_m3, const int64_t[::1] indptr, const int32_t[::1] j_p,
                     const double[::1] d_p, const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb,
                     int sc, double[:, ::1] g_pe, double[:, ::1] dg_pe, double[:, ::1] u_pc,
                     double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad, int n_threads):
    """Accumulate local structural parameters (the module comment of ``miniff/_ext/lsp.pyx``).

    ``r0_e``/``sigma_e`` [E <= 16] distinct radial functions (Å); per descriptor f (at most 64):
    ``coef_fn[f, n]`` = coefficient of x^n in its Legendre polynomial (n <= L = the largest monomial degree
    <= 8), ``e_f[f]`` its radial function, ``asinh_f[f]`` 1 to output asinh, ``cols[f]`` its output column.
    Monomial tables as from ``miniff.potentials.backends.monomial_tables(L)``. ``g_pe``/``dg_pe`` [P, E] and
    ``u_pc`` [P, 3] are scratch. The caller checks every size.
    """
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    cdef double h4 = h * h * h * h
    cdef double[::1] isig2_e = 1.0 / (np.asarray(sigma_e) ** 2)
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="guided"):
        if _match(spec_n[i], sa):
            _lsp_atom(i, rc, h4, r0_e, isig2_e, coef_fn, e_f, asinh_f, cols, deg_m, w_m, parent_m, axis_m,
                      plus_m3, gw_m3, indptr, j_p, d_p, D_pc, spec_n, sb, sc, g_pe, dg_pe, u_pc, values_nf,
                      jac_pf3, grad)
