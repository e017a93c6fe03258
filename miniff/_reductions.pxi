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


# Behler type 4/5 descriptors in batches (triplet loops, and moments for integer zeta).
include "_red_angular.pxi"


def zero_rows(double[:, ::1] out, int n_threads):
    """Set ``out`` to 0 with OpenMP threads (first touch of fresh pages happens in parallel)."""
    cdef Py_ssize_t p, k, n = out.shape[0], m = out.shape[1]
    for p in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        for k in range(m):
            out[p, k] = 0.0
