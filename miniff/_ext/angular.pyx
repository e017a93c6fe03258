# cython: language_level=3
"""Batched angular (Behler type 4/5) descriptors of miniff's compiled core (private): triplet loops
(``batch_triple_reduce``) and, for type 5 with integer zeta, angular moments (``batch_moment_reduce``).

Same rules as ``pair.pyx``: prange over centre atoms, a pair's outputs written only by the thread owning its
centre atom, accumulation into preallocated outputs, validation in Python (miniff/potentials/backends.py).
"""

from libc.math cimport exp, sqrt, pow
from libc.stdint cimport int32_t, int64_t
from cython.parallel cimport prange

from miniff._ext.common cimport (
    RED_BATCH_BEHLER4, RED_MAX_GROUP, RED_MOM_E, RED_MOM_Z, _angular, _match, _cosine_cutoff,
)
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["batch_triple_reduce", "batch_moment_reduce"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


# ---------------------------------------------------------------------------------------------
# Batched Behler 4/5 angular descriptors sharing one cutoff a
# value_f = pref_f (1 + l cos)^zeta  g_e(r1) g_e(r2) [g_e(r3)],  g_e(r) = exp(-eta_e r^2) f_c(r)
# ---------------------------------------------------------------------------------------------

cdef void _batch_triple_atom(Py_ssize_t i, int fam, double a,
                             const double[::1] eta_e, const double[::1] l_k, const double[::1] zeta_k,
                             const int32_t[::1] izeta_k, const int32_t[::1] e_f, const int32_t[::1] k_f,
                             const double[::1] pref_f, const int32_t[::1] cols,
                             const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                             const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sb, int sc,
                             double[:, ::1] g_pe, double[:, ::1] dg_pe, double[:, ::1] u_pc, int64_t[::1] sel_p,
                             double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad) noexcept nogil:
    cdef Py_ssize_t p, p1, p2, x1, x2, start, e, k, f, col, m
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef Py_ssize_t n_e = eta_e.shape[0]
    cdef Py_ssize_t n_k = l_k.shape[0]
    cdef Py_ssize_t n_f = cols.shape[0]
    cdef Py_ssize_t nb = 0, nc = 0, off_c
    cdef bint same = sb == sc
    cdef bint b4 = fam == RED_BATCH_BEHLER4
    cdef double r, fc, dfc, ex, r1, ir1, ir2, r3, c, v, t, pa, dvdc, dv1, dv2, dv3, a1, b1, a2, b2
    cdef double fc3, dfc3, ang_v, ang_d, g2, dg2
    cdef double u1[3]
    cdef double u2[3]
    cdef double w[3]
    cdef double lg1[RED_MAX_GROUP]
    cdef double ldg1[RED_MAX_GROUP]
    cdef double gg[RED_MAX_GROUP]
    cdef double rr1[RED_MAX_GROUP]
    cdef double rr2[RED_MAX_GROUP]
    cdef double rr3[RED_MAX_GROUP]
    cdef double ang[RED_MAX_GROUP]
    cdef double dang[RED_MAX_GROUP]
    cdef double h3[RED_MAX_GROUP]
    cdef double dh3[RED_MAX_GROUP]
    cdef double vacc[RED_MAX_GROUP]
    cdef double sa1[RED_MAX_GROUP]
    cdef double sb1[3 * RED_MAX_GROUP]
    cdef int32_t s

    # usable pairs of atom i: unit vectors, radial factors, compact lists (all owned by atom i)
    for p in range(p0, pe):
        r = d_p[p]
        if r >= a:
            continue
        s = spec_n[j_p[p]]
        if not (_match(s, sb) or _match(s, sc)):
            continue
        for m in range(3):
            u_pc[p, m] = D_pc[p, m] / r
        _cosine_cutoff(r, a, &fc, &dfc)
        for e in range(n_e):
            ex = exp(-eta_e[e] * r * r)
            g_pe[p, e] = ex * fc
            dg_pe[p, e] = ex * (dfc - 2.0 * eta_e[e] * r * fc)
        if _match(s, sb):
            sel_p[p0 + nb] = p
            nb = nb + 1
    if same:
        off_c = p0
        nc = nb
    else:
        off_c = p0 + nb
        for p in range(p0, pe):
            if d_p[p] < a and _match(spec_n[j_p[p]], sc):
                sel_p[off_c + nc] = p
                nc = nc + 1

    for f in range(n_f):
        vacc[f] = 0.0
    for e in range(n_e):
        h3[e] = 1.0
        dh3[e] = 0.0
        rr3[e] = 0.0
    w[0] = 0.0
    w[1] = 0.0
    w[2] = 0.0
    dv3 = 0.0
    for x1 in range(nb):
        p1 = sel_p[p0 + x1]
        r1 = d_p[p1]
        ir1 = 1.0 / r1
        for m in range(3):
            u1[m] = u_pc[p1, m]
        for e in range(n_e):
            lg1[e] = g_pe[p1, e]
            ldg1[e] = dg_pe[p1, e]
        if grad:
            for f in range(n_f):
                sa1[f] = 0.0
                sb1[3 * f] = 0.0
                sb1[3 * f + 1] = 0.0
                sb1[3 * f + 2] = 0.0
        start = x1 + 1 if same else 0
        for x2 in range(start, nc):
            p2 = sel_p[off_c + x2]
            if b4:
                for m in range(3):
                    w[m] = D_pc[p2, m] - D_pc[p1, m]
                r3 = sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2])
                if r3 >= a:
                    continue
                for m in range(3):
                    w[m] = w[m] / r3
                _cosine_cutoff(r3, a, &fc3, &dfc3)
                for e in range(n_e):
                    ex = exp(-eta_e[e] * r3 * r3)
                    h3[e] = ex * fc3
                    dh3[e] = ex * (dfc3 - 2.0 * eta_e[e] * r3 * fc3)
            for m in range(3):
                u2[m] = u_pc[p2, m]
            c = u1[0] * u2[0] + u1[1] * u2[1] + u1[2] * u2[2]
            for e in range(n_e):
                g2 = g_pe[p2, e]
                gg[e] = lg1[e] * g2 * h3[e]
                if grad:
                    dg2 = dg_pe[p2, e]
                    rr1[e] = ldg1[e] * g2 * h3[e]
                    rr2[e] = lg1[e] * dg2 * h3[e]
                    if b4:
                        rr3[e] = lg1[e] * g2 * dh3[e]
            for k in range(n_k):
                _angular(1.0 + l_k[k] * c, l_k[k], zeta_k[k], izeta_k[k], &ang_v, &ang_d)
                ang[k] = ang_v
                dang[k] = ang_d
            if not grad:
                for f in range(n_f):
                    vacc[f] += (pref_f[f] * gg[e_f[f]]) * ang[k_f[f]]
                continue
            ir2 = 1.0 / d_p[p2]
            for f in range(n_f):
                e = e_f[f]
                k = k_f[f]
                col = 3 * cols[f]
                t = pref_f[f] * gg[e]
                pa = pref_f[f] * ang[k]
                vacc[f] += t * ang[k]
                dvdc = t * dang[k]
                dv1 = pa * rr1[e]
                dv2 = pa * rr2[e]
                a1 = dv1 - dvdc * c * ir1
                b1 = dvdc * ir1
                a2 = dv2 - dvdc * c * ir2
                b2 = dvdc * ir2
                sa1[f] += a1
                if b4:
                    dv3 = pa * rr3[e]
                for m in range(3):
                    sb1[3 * f + m] += b1 * u2[m] - dv3 * w[m]
                    jac_pf3[p2, col + m] += a2 * u2[m] + b2 * u1[m] + dv3 * w[m]
        if grad:
            for f in range(n_f):
                col = 3 * cols[f]
                for m in range(3):
                    jac_pf3[p1, col + m] += sa1[f] * u1[m] + sb1[3 * f + m]
    for f in range(n_f):
        values_nf[i, cols[f]] += vacc[f]


def batch_triple_reduce(int fam, double a, const double[::1] eta_e, const double[::1] l_k,
                        const double[::1] zeta_k, const int32_t[::1] izeta_k, const int32_t[::1] e_f,
                        const int32_t[::1] k_f, const double[::1] pref_f, const int32_t[::1] cols,
                        const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                        const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb, int sc,
                        double[:, ::1] g_pe, double[:, ::1] dg_pe, double[:, ::1] u_pc, int64_t[::1] sel_p,
                        double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad, int n_threads):
    """Accumulate F <= 64 Behler type 4/5 descriptors sharing the cutoff ``a``.

    Descriptor ``f`` uses radial exponent ``eta_e[e_f[f]]``, angular pair
    ``(l_k, zeta_k)[k_f[f]]`` (``izeta_k`` >= 0 for integer zeta, else -1),
    prefactor ``pref_f[f]`` (``2^(1 - zeta) epsilon``, times 2 when ``sb == sc``:
    each unordered neighbour pair is visited once) and output column ``cols[f]``.
    ``g_pe``/``dg_pe`` [P, n_eta], ``u_pc`` [P, 3] and ``sel_p`` [P] are scratch
    buffers. At most 64 descriptors, 64 distinct eta and 64 distinct (l, zeta).
    """
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="guided"):
        if _match(spec_n[i], sa):
            _batch_triple_atom(i, fam, a, eta_e, l_k, zeta_k, izeta_k, e_f, k_f, pref_f, cols,
                               indptr, j_p, d_p, D_pc, spec_n, sb, sc, g_pe, dg_pe, u_pc, sel_p,
                               values_nf, jac_pf3, grad)


# ---------------------------------------------------------------------------------------------
# Behler type 5 with integer zeta through angular moments (linear in the number of neighbours)
#
# (1 + l cos)^zeta = sum_n C(zeta, n) l^n cos^n and cos^n of (j, k) = sum_{|alpha| = n} w_alpha u_j^alpha
# u_k^alpha (multinomial weights w), so with moments M_alpha = sum_j g(r_j) u_j^alpha
#   sum_{j != k} (1 + l cos_jk)^zeta g_j g_k = sum_n C l^n sum_alpha w_alpha M_alpha^2 - sum_j g_j^2 sum_n C l^n
# (the last term removes j == k; with two neighbour species b != c it is M^b . M^c and no diagonal).
# The derivative by a pair vector follows from d(g u^alpha)/dD = (g' - n g / r) u^alpha u + (g / r) grad_u u^alpha.
# Monomials are ordered by degree; tables (degree, weight, parent/axis recursion, index of alpha + e_m)
# come from Python.
# ---------------------------------------------------------------------------------------------

cdef enum:
    RED_MOM_M = 165    # monomials up to degree RED_MOM_Z = 8


cdef void _moment_atom(Py_ssize_t i, double a, const double[::1] eta_e, const double[:, ::1] coefn_fn,
                       const double[::1] sumcoef_f, const int32_t[::1] nmono_f, const int32_t[::1] e_f,
                       const int32_t[::1] cols, const int32_t[::1] deg_m, const double[::1] w_m,
                       const int32_t[::1] parent_m, const int32_t[::1] axis_m, const int32_t[:, ::1] plus_m3,
                       const double[:, ::1] gw_m3, const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                       const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sb, int sc,
                       double[:, ::1] g_pe, double[:, ::1] dg_pe, double[:, ::1] u_pc,
                       double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad) noexcept nogil:
    cdef Py_ssize_t p, e, f, al, be, m, n, q, col
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef Py_ssize_t n_e = eta_e.shape[0]
    cdef Py_ssize_t n_f = cols.shape[0]
    cdef Py_ssize_t nm = deg_m.shape[0]
    cdef int zmax = deg_m[nm - 1]
    cdef Py_ssize_t z1 = zmax + 1
    cdef Py_ssize_t nm_low = zmax * (zmax + 1) * (zmax + 2) // 6  # monomials of degree < zmax
    cdef Py_ssize_t b3
    cdef bint same = sb == sc
    cdef bint inb, inc
    cdef double r, ir, fc, dfc, ex, g, dg, acc, t, fac, coef, rad
    cdef double u[3]
    cdef double gr[3]
    cdef double Mb[RED_MOM_E * RED_MOM_M]
    cdef double Mc[RED_MOM_E * RED_MOM_M]
    cdef double Wb[RED_MOM_E * RED_MOM_M]
    cdef double Wc[RED_MOM_E * RED_MOM_M]
    cdef double Gb[RED_MOM_E * RED_MOM_M * 3]
    cdef double Gc[RED_MOM_E * RED_MOM_M * 3]
    cdef double diag[RED_MOM_E]
    cdef double mono[RED_MOM_M]
    cdef double P1[RED_MOM_E * (RED_MOM_Z + 1)]
    cdef double P2[RED_MOM_E * (RED_MOM_Z + 1) * 3]
    cdef double* Mo
    cdef double* W
    cdef double* G
    cdef int32_t s

    for q in range(n_e * nm):
        Mb[q] = 0.0
        Mc[q] = 0.0
    for e in range(n_e):
        diag[e] = 0.0
    # pass 1: per-pair factors and monomials, moments of the b and c neighbours
    for p in range(p0, pe):
        r = d_p[p]
        if r >= a:
            continue
        s = spec_n[j_p[p]]
        inb = _match(s, sb)
        inc = _match(s, sc)
        if not (inb or inc):
            continue
        for m in range(3):
            u[m] = D_pc[p, m] / r
            u_pc[p, m] = u[m]
        _cosine_cutoff(r, a, &fc, &dfc)
        mono[0] = 1.0
        for al in range(1, nm):
            mono[al] = mono[parent_m[al]] * u[axis_m[al]]
        for e in range(n_e):
            ex = exp(-eta_e[e] * r * r)
            g = ex * fc
            g_pe[p, e] = g
            dg_pe[p, e] = ex * (dfc - 2.0 * eta_e[e] * r * fc)
            if inb:
                diag[e] += g * g
                for al in range(nm):
                    Mb[e * nm + al] += g * mono[al]
            if inc and not same:
                for al in range(nm):
                    Mc[e * nm + al] += g * mono[al]
    if same:
        for q in range(n_e * nm):
            Mc[q] = Mb[q]
    # values
    for f in range(n_f):
        e = e_f[f]
        acc = 0.0
        for al in range(nmono_f[f]):
            acc = acc + coefn_fn[f, deg_m[al]] * w_m[al] * Mb[e * nm + al] * Mc[e * nm + al]
        if same:
            acc = acc - sumcoef_f[f] * diag[e]
        values_nf[i, cols[f]] += acc
    if not grad:
        return
    # W = w * (other moments), G[beta, m] = w_{beta + e_m} alpha_m M_{beta + e_m} (gw_m3 = w alpha_m):
    # b pairs see M^c, c pairs see M^b
    for e in range(n_e):
        for al in range(nm):
            Wb[e * nm + al] = w_m[al] * Mc[e * nm + al]
            Wc[e * nm + al] = w_m[al] * Mb[e * nm + al]
        for al in range(nm_low):
            for m in range(3):
                be = plus_m3[al, m]
                Gb[(e * nm + al) * 3 + m] = gw_m3[al, m] * Mc[e * nm + be]
                Gc[(e * nm + al) * 3 + m] = gw_m3[al, m] * Mb[e * nm + be]
    # pass 2: gradients by every usable pair vector
    for p in range(p0, pe):
        r = d_p[p]
        if r >= a:
            continue
        s = spec_n[j_p[p]]
        inb = _match(s, sb)
        inc = _match(s, sc)
        if not (inb or inc):
            continue
        ir = 1.0 / r
        for m in range(3):
            u[m] = u_pc[p, m]
        mono[0] = 1.0
        for al in range(1, nm):
            mono[al] = mono[parent_m[al]] * u[axis_m[al]]
        if inb:
            W = &Wb[0]
            G = &Gb[0]
        else:
            W = &Wc[0]
            G = &Gc[0]
        fac = 2.0 if same else 1.0
        for q in range(n_e * z1):
            P1[q] = 0.0
            P2[3 * q] = 0.0
            P2[3 * q + 1] = 0.0
            P2[3 * q + 2] = 0.0
        for al in range(nm_low):
            t = mono[al]
            n = deg_m[al]
            for e in range(n_e):
                P1[e * z1 + n] += W[e * nm + al] * t
                b3 = (e * z1 + n + 1) * 3
                q = (e * nm + al) * 3
                P2[b3] += G[q] * t
                P2[b3 + 1] += G[q + 1] * t
                P2[b3 + 2] += G[q + 2] * t
        for al in range(nm_low, nm):
            t = mono[al]
            for e in range(n_e):
                P1[e * z1 + zmax] += W[e * nm + al] * t
        for f in range(n_f):
            e = e_f[f]
            g = g_pe[p, e]
            dg = dg_pe[p, e]
            gr[0] = 0.0
            gr[1] = 0.0
            gr[2] = 0.0
            rad = 0.0
            for n in range(deg_m[nmono_f[f] - 1] + 1):
                coef = coefn_fn[f, n] * fac
                rad = rad + coef * (dg - n * g * ir) * P1[e * z1 + n]
                for m in range(3):
                    gr[m] += coef * g * ir * P2[(e * z1 + n) * 3 + m]
            if same:
                rad = rad - 2.0 * sumcoef_f[f] * g * dg
            col = 3 * cols[f]
            for m in range(3):
                jac_pf3[p, col + m] += rad * u[m] + gr[m]


def batch_moment_reduce(double a, const double[::1] eta_e, const double[:, ::1] coefn_fn,
                        const double[::1] sumcoef_f, const int32_t[::1] nmono_f, const int32_t[::1] e_f,
                        const int32_t[::1] cols, const int32_t[::1] deg_m, const double[::1] w_m,
                        const int32_t[::1] parent_m, const int32_t[::1] axis_m, const int32_t[:, ::1] plus_m3,
                        const double[:, ::1] gw_m3, const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                        const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb, int sc,
                        double[:, ::1] g_pe, double[:, ::1] dg_pe, double[:, ::1] u_pc,
                        double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad, int n_threads):
    """Accumulate Behler type 5 descriptors with integer zeta <= 8 through angular moments.

    ``coefn_fn[f, n] = 2^(1 - zeta) epsilon C(zeta, n) l^n`` (0 for n > zeta),
    ``sumcoef_f[f] = sum_n coefn_fn[f, n]``, ``nmono_f[f]`` monomials of degree <= zeta_f,
    ``e_f[f]`` index into ``eta_e`` (at most 4 distinct), output column ``cols[f]``;
    ``plus_m3[al, m]`` index of monomial al + e_m, ``gw_m3[al, m]`` = its weight times its exponent of m.
    ``g_pe``/``dg_pe`` [P, n_eta] and ``u_pc`` [P, 3] are scratch.
    """
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="guided"):
        if _match(spec_n[i], sa):
            _moment_atom(i, a, eta_e, coefn_fn, sumcoef_f, nmono_f, e_f, cols, deg_m, w_m, parent_m, axis_m,
                         plus_m3, gw_m3, indptr, j_p, d_p, D_pc, spec_n, sb, sc, g_pe, dg_pe, u_pc,
                         values_nf, jac_pf3, grad)
