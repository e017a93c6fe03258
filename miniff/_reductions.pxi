# Pair and triplet reductions of potentials and descriptors. Included by _kernel.pyx.
#
# Every kernel loops (OpenMP ``prange``) over centre atoms ``i`` and the pairs
# ``p = indptr[i] .. indptr[i + 1] - 1`` of the CSR pair list (DEVELOPING.md,
# Contract 1). Work for atom ``i`` is done by one thread in a fixed order, and
# a pair's gradient is only written by the thread owning its centre atom, so
# results do not depend on the number of threads. Outputs are *accumulated*
# (``+=``) into preallocated, zero-initialised arrays; the Python callers
# validate everything before the call. Pairs with ``d_p >= cutoff`` of the
# potential are skipped (the list may be longer: Verlet skin).
#
# Species selection: ``sa`` centre, ``sb``/``sc`` neighbours (int32 codes of
# ``spec_n``); ``-1`` matches every species.
#
# Gradients are per pair: ``grad_pc[p] = d energy_n[i_p] / d D_pc[p]``.

from libc.math cimport exp, cos, sin, sqrt, pow, M_PI
from libc.stdint cimport int32_t, int64_t
from cython.parallel cimport prange

# Family codes shared with miniff/_families.py (keep in sync).
cdef enum:
    RED_PAIR_HARMONIC = 0
    RED_PAIR_LJ = 1
    RED_PAIR_SW2 = 2
    RED_FC_BEHLER2 = 10
    RED_FC_SIGMOID = 11
    RED_TRIPLE_SW3 = 20
    RED_TRIPLE_BEHLER5X = 21
    RED_BATCH_BEHLER5 = 30
    RED_BATCH_BEHLER4 = 31
    RED_MAX_GROUP = 64


cdef inline bint _match(int32_t s, int want) noexcept nogil:
    return want < 0 or s == want


cdef inline void _cosine_cutoff(double r, double a, double* fc, double* dfc) noexcept nogil:
    """f_c(r) = (1 + cos(pi r / a)) / 2 and its derivative (r < a assumed)."""
    cdef double x = M_PI / a
    fc[0] = 0.5 * (1.0 + cos(x * r))
    dfc[0] = -0.5 * x * sin(x * r)


# ---------------------------------------------------------------------------------------------
# Pair families without a cosine cutoff (harmonic repulsion, Lennard-Jones, Stillinger-Weber 2)
# ---------------------------------------------------------------------------------------------

cdef inline void _pair_fn(int fam, const double* par, double r, double* f, double* df) noexcept nogil:
    """Value and radial derivative of one pair term (eV, eV/Å)."""
    cdef double t, s6, x, xa, e, bp, xq, dt
    if fam == RED_PAIR_HARMONIC:
        # par: a, epsilon
        t = r - par[0]
        f[0] = par[1] * t * t / (2.0 * par[0] * par[0])
        df[0] = par[1] * t / (par[0] * par[0])
    elif fam == RED_PAIR_LJ:
        # par: epsilon, sigma
        s6 = par[1] / r
        s6 = s6 * s6 * s6
        s6 = s6 * s6
        f[0] = 4.0 * par[0] * (s6 * s6 - s6)
        df[0] = 4.0 * par[0] * (6.0 * s6 - 12.0 * s6 * s6) / r
    elif fam == RED_PAIR_SW2:
        # par: epsilon, sigma, a, p, q, gauge_a, gauge_b
        x = r / par[1]
        xa = x - par[2]
        e = exp(1.0 / xa)
        bp = par[6] * pow(x, -par[3])
        xq = pow(x, -par[4])
        t = bp - xq
        dt = (-par[3] * bp + par[4] * xq) / x
        f[0] = par[0] * par[5] * t * e
        df[0] = par[0] * par[5] * e * (dt - t / (xa * xa)) / par[1]
    else:
        f[0] = 0.0
        df[0] = 0.0


cdef void _pair_atom(Py_ssize_t i, int fam, const double* par, double cutoff,
                     const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                     const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sb,
                     double[::1] energy_n, double[:, ::1] grad_pc, bint grad) noexcept nogil:
    cdef Py_ssize_t p
    cdef double r, f, df, e = 0.0
    for p in range(indptr[i], indptr[i + 1]):
        r = d_p[p]
        if r >= cutoff or not _match(spec_n[j_p[p]], sb):
            continue
        _pair_fn(fam, par, r, &f, &df)
        e = e + f
        if grad:
            df = df / r
            grad_pc[p, 0] += df * D_pc[p, 0]
            grad_pc[p, 1] += df * D_pc[p, 1]
            grad_pc[p, 2] += df * D_pc[p, 2]
    energy_n[i] += e


def pair_reduce(int fam, const double[::1] par, double cutoff,
                const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb,
                double[::1] energy_n, double[:, ::1] grad_pc, bint grad, int n_threads):
    """Accumulate a pair family's per-atom energies [N] and per-pair gradients [P, 3]."""
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    cdef const double* ppar = &par[0]
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="guided"):
        if _match(spec_n[i], sa):
            _pair_atom(i, fam, ppar, cutoff, indptr, j_p, d_p, D_pc, spec_n, sb, energy_n, grad_pc, grad)


# ---------------------------------------------------------------------------------------------
# Batched pair descriptors sharing one cosine cutoff a: value = h(r) * f_c(r)
# ---------------------------------------------------------------------------------------------

cdef inline void _fc_pair_fn(int fam, const double* par, double r, double* h, double* dh) noexcept nogil:
    cdef double t, e
    if fam == RED_FC_BEHLER2:
        # par: eta, r_sphere
        t = r - par[1]
        e = exp(-par[0] * t * t)
        h[0] = e
        dh[0] = -2.0 * par[0] * t * e
    elif fam == RED_FC_SIGMOID:
        # par: r0, dr
        e = exp((r - par[0]) / par[1])
        h[0] = 1.0 / (1.0 + e)
        if e > 1e300:
            dh[0] = 0.0
        else:
            dh[0] = -e / ((1.0 + e) * (1.0 + e) * par[1])
    else:
        h[0] = 0.0
        dh[0] = 0.0


cdef void _batch_pair_atom(Py_ssize_t i, int fam, const double[:, ::1] par, const int32_t[::1] cols, double a,
                           const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                           const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sb,
                           double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad) noexcept nogil:
    cdef Py_ssize_t p, f, c
    cdef Py_ssize_t nf = cols.shape[0]
    cdef double r, fc, dfc, h, dh, ux, uy, uz, dv
    for p in range(indptr[i], indptr[i + 1]):
        r = d_p[p]
        if r >= a or not _match(spec_n[j_p[p]], sb):
            continue
        _cosine_cutoff(r, a, &fc, &dfc)
        ux = D_pc[p, 0] / r
        uy = D_pc[p, 1] / r
        uz = D_pc[p, 2] / r
        for f in range(nf):
            _fc_pair_fn(fam, &par[f, 0], r, &h, &dh)
            c = cols[f]
            values_nf[i, c] += h * fc
            if grad:
                dv = dh * fc + h * dfc
                jac_pf3[p, 3 * c] += dv * ux
                jac_pf3[p, 3 * c + 1] += dv * uy
                jac_pf3[p, 3 * c + 2] += dv * uz


def batch_pair_reduce(int fam, const double[:, ::1] par, const int32_t[::1] cols, double a,
                      const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                      const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb,
                      double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad, int n_threads):
    """Accumulate F cutoff-sharing pair descriptors into values [N, Ftot] and jac [P, 3 Ftot]."""
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="guided"):
        if _match(spec_n[i], sa):
            _batch_pair_atom(i, fam, par, cols, a, indptr, j_p, d_p, D_pc, spec_n, sb, values_nf, jac_pf3, grad)


# ---------------------------------------------------------------------------------------------
# Triplet families evaluated one potential at a time (Stillinger-Weber 3, Behler 5x)
# ---------------------------------------------------------------------------------------------

cdef inline void _triple_fn(int fam, const double* par, double r1, double r2, double c,
                            double* f, double* f1, double* f2, double* fcos) noexcept nogil:
    """Value and derivatives (by r1, r2, cos) of one triplet term."""
    cdef double x1, x2, e, t, fc1, dfc1, fc2, dfc2, ea1, ea2, eb1, eb2
    cdef double ga1, ga2, gb1, gb2, dga1, dga2, dgb1, dgb2, s, ds1, ds2
    if fam == RED_TRIPLE_SW3:
        # par: epsilon, sigma, l, gamma, cos_theta0, a
        x1 = r1 / par[1] - par[5]
        x2 = r2 / par[1] - par[5]
        e = exp(par[3] / x1 + par[3] / x2)
        t = c - par[4]
        f[0] = par[0] * par[2] * t * t * e
        fcos[0] = 2.0 * par[0] * par[2] * t * e
        f1[0] = -f[0] * par[3] / (x1 * x1 * par[1])
        f2[0] = -f[0] * par[3] / (x2 * x2 * par[1])
    elif fam == RED_TRIPLE_BEHLER5X:
        # par: a, eta1, eta2, cos_theta0, epsilon
        _cosine_cutoff(r1, par[0], &fc1, &dfc1)
        _cosine_cutoff(r2, par[0], &fc2, &dfc2)
        ea1 = exp(-par[1] * r1 * r1)
        ea2 = exp(-par[1] * r2 * r2)
        eb1 = exp(-par[2] * r1 * r1)
        eb2 = exp(-par[2] * r2 * r2)
        ga1 = ea1 * fc1
        ga2 = ea2 * fc2
        gb1 = eb1 * fc1
        gb2 = eb2 * fc2
        dga1 = ea1 * (dfc1 - 2.0 * par[1] * r1 * fc1)
        dga2 = ea2 * (dfc2 - 2.0 * par[1] * r2 * fc2)
        dgb1 = eb1 * (dfc1 - 2.0 * par[2] * r1 * fc1)
        dgb2 = eb2 * (dfc2 - 2.0 * par[2] * r2 * fc2)
        s = ga1 * gb2 + gb1 * ga2
        ds1 = dga1 * gb2 + dgb1 * ga2
        ds2 = ga1 * dgb2 + gb1 * dga2
        t = c - par[3]
        f[0] = 0.25 * par[4] * t * t * s
        fcos[0] = 0.5 * par[4] * t * s
        f1[0] = 0.25 * par[4] * t * t * ds1
        f2[0] = 0.25 * par[4] * t * t * ds2
    else:
        f[0] = 0.0
        f1[0] = 0.0
        f2[0] = 0.0
        fcos[0] = 0.0


cdef void _triple_atom(Py_ssize_t i, int fam, const double* par, double cutoff,
                       const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                       const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sb, int sc,
                       double[::1] energy_n, double[:, ::1] grad_pc, bint grad) noexcept nogil:
    cdef Py_ssize_t p1, p2, k, start
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef bint same = sb == sc
    cdef double mult = 2.0 if same else 1.0
    cdef double r1, r2, c, f, f1, f2, fcos, a1, b1, a2, b2, e = 0.0
    cdef double u1[3]
    cdef double u2[3]
    for p1 in range(p0, pe):
        r1 = d_p[p1]
        if r1 >= cutoff or not _match(spec_n[j_p[p1]], sb):
            continue
        for k in range(3):
            u1[k] = D_pc[p1, k] / r1
        start = p1 + 1 if same else p0
        for p2 in range(start, pe):
            r2 = d_p[p2]
            if p2 == p1 or r2 >= cutoff or not _match(spec_n[j_p[p2]], sc):
                continue
            for k in range(3):
                u2[k] = D_pc[p2, k] / r2
            c = u1[0] * u2[0] + u1[1] * u2[1] + u1[2] * u2[2]
            _triple_fn(fam, par, r1, r2, c, &f, &f1, &f2, &fcos)
            e = e + mult * f
            if grad:
                a1 = mult * (f1 - fcos * c / r1)
                b1 = mult * fcos / r1
                a2 = mult * (f2 - fcos * c / r2)
                b2 = mult * fcos / r2
                for k in range(3):
                    grad_pc[p1, k] += a1 * u1[k] + b1 * u2[k]
                    grad_pc[p2, k] += a2 * u2[k] + b2 * u1[k]
    energy_n[i] += e


def triple_reduce(int fam, const double[::1] par, double cutoff,
                  const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                  const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb, int sc,
                  double[::1] energy_n, double[:, ::1] grad_pc, bint grad, int n_threads):
    """Accumulate a triplet family's per-atom energies [N] and per-pair gradients [P, 3].

    Ordered neighbour pairs (j, k), j != k, are visited; when ``sb == sc`` the
    term is symmetric, so each unordered pair is computed once and counted twice.
    """
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    cdef const double* ppar = &par[0]
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="guided"):
        if _match(spec_n[i], sa):
            _triple_atom(i, fam, ppar, cutoff, indptr, j_p, d_p, D_pc, spec_n, sb, sc, energy_n, grad_pc, grad)


# ---------------------------------------------------------------------------------------------
# Batched Behler 4/5 angular descriptors sharing one cutoff a
# value_f = pref_f (1 + l cos)^zeta  g_e(r1) g_e(r2) [g_e(r3)],  g_e(r) = exp(-eta_e r^2) f_c(r)
# ---------------------------------------------------------------------------------------------

cdef inline void _angular(double base, double l, double zeta, int izeta, double* v, double* dv) noexcept nogil:
    """(base)^zeta and its derivative by cos (base = 1 + l cos)."""
    cdef int m
    cdef double pw
    if izeta == 1:
        v[0] = base
        dv[0] = l
    elif izeta == 2:
        v[0] = base * base
        dv[0] = 2.0 * l * base
    elif izeta == 4:
        pw = base * base * base
        v[0] = pw * base
        dv[0] = 4.0 * l * pw
    elif izeta >= 1:
        pw = 1.0
        for m in range(izeta - 1):
            pw = pw * base
        v[0] = pw * base
        dv[0] = izeta * l * pw
    elif izeta == 0:
        v[0] = 1.0
        dv[0] = 0.0
    elif base > 0.0:
        pw = pow(base, zeta - 1.0)
        v[0] = pw * base
        dv[0] = zeta * l * pw
    else:
        v[0] = 0.0
        dv[0] = 0.0


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
    RED_MOM_E = 4      # distinct eta per call
    RED_MOM_M = 165    # monomials up to degree 8
    RED_MOM_Z = 8


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


# ---------------------------------------------------------------------------------------------
# Per-pair gradients -> atoms, and virials
# ---------------------------------------------------------------------------------------------

def pair_gradient_to_atoms(const int64_t[::1] indptr, const int32_t[::1] j_p, const double[:, ::1] grad_pc,
                           double[:, ::1] out_nc):
    """out[j_p] += grad_pc[p], out[i_p] -= grad_pc[p] (serial, deterministic order)."""
    cdef Py_ssize_t i, p, j, k, n = indptr.shape[0] - 1
    with nogil:
        for i in range(n):
            for p in range(indptr[i], indptr[i + 1]):
                j = j_p[p]
                for k in range(3):
                    out_nc[j, k] += grad_pc[p, k]
                    out_nc[i, k] -= grad_pc[p, k]


def pair_virial(const int64_t[::1] indptr, const double[:, ::1] grad_pc, const double[:, ::1] D_pc,
                double[:, ::1] out_n9, int n_threads):
    """out[i, 3 a + b] += sum over pairs of i of grad_pc[p, a] * D_pc[p, b] (eV)."""
    cdef Py_ssize_t i, p, a, b, n = indptr.shape[0] - 1
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        for p in range(indptr[i], indptr[i + 1]):
            for a in range(3):
                for b in range(3):
                    out_n9[i, 3 * a + b] += grad_pc[p, a] * D_pc[p, b]
