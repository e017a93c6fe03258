# cython: language_level=3
"""Ewald sums of point charges (private; called through ``miniff._ext.kernel_module``).

``ewald_real_reduce``: the real-space sum over the pairs of the full neighbour list (per-atom energies,
per-pair gradients, charge gradients). ``ewald_real_search``: the same sum during the cell-list walk over the
half stencil, without a pair list (per-atom energies, gradients, virials, charge gradients). Both evaluate
``erfc(x) = erfcx(x) exp(-x^2)`` with ``erfcx`` from a table of Taylor polynomials (relative error about
1e-14; ``exp(-x^2)`` is needed for the force anyway), ``erfc_table`` exposes it for tests.
``ewald_reciprocal``: the reciprocal-space sum over a half grid of k-vectors ``k = m0 b0 + m1 b1 + m2 b2``
(phase factors ``exp(i m b_d . r_i)`` per atom and axis by recurrence; the structure factor; then per-atom
energies, position and charge gradients and virials, the vectors ``+-m2`` of a row sharing one pass).
Particle-mesh Ewald is in ``pme.pyx``. Formulas: ``docs/formulas.md``, section "Ewald summation".
"""

# Threads: the real-space loop over a list and the per-atom reciprocal terms run over atoms (each atom by one
# thread, its pairs or k-vectors in a fixed order); the structure factor runs over rows of k-vectors of equal
# (m0, m1) (each row by one thread, atoms in a fixed order). Their results do not depend on the number of
# threads. The list-free real-space walk splits bins among threads statically and sums per-thread buffers in
# thread order (Newton's third law, as ``pairsearch.pyx``): reproducible for a thread count, different thread
# counts differing by the order of floating-point sums. Outputs are accumulated (``+=``) into preallocated
# arrays (the structure factor is set). Shapes are checked here; the neighbour indices ``j_p`` are checked in
# Python (``miniff.potentials.base.pair_arrays``) before any call.

from libc.math cimport cos, erfc, exp, sin, sqrt, M_PI
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc
from cython.parallel cimport prange

import numpy as np

from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED, omp_get_thread_num
from miniff._ext.neighbors cimport _NLGrid, _NLThr, _check_half_stencil, _nl_free, _nl_gather, _nl_pieces, \
    _nl_reserve, _nl_setup, miniff_nl_select

__all__ = ["ewald_real_reduce", "ewald_real_search", "erfc_table", "ewald_reciprocal"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


cdef enum:
    ERFCX_PER_UNIT = 32  # intervals of the erfcx table per unit of x
    ERFCX_INTERVALS = 256  # the table covers 0 <= x < 8 (erfc(8) = 1e-29; beyond, libm's erfc)
    ERFCX_DEGREE = 8  # Taylor degree per interval

cdef double _ERFCX[ERFCX_INTERVALS * (ERFCX_DEGREE + 1)]


cdef void _erfcx_table() noexcept:
    """Taylor coefficients of erfcx(x) = exp(x^2) erfc(x) about the midpoint c of every interval: a_0 from libm,
    then y' = 2 x y - 2 / sqrt(pi) and y^(n+1) = 2 x y^(n) + 2 n y^(n-1) give a_1 = 2 c a_0 - 2 / sqrt(pi) and
    a_(n+1) = (2 c a_n + 2 a_(n-1)) / (n + 1). Truncation error below 1e-16 relative (|x - c| <= 1/64); the
    rounding errors of the recurrence are damped by (|x - c| 2 c)^n / n!."""
    cdef int k, j
    cdef double c
    cdef double* a
    for k in range(ERFCX_INTERVALS):
        c = (k + 0.5) / ERFCX_PER_UNIT
        a = _ERFCX + k * (ERFCX_DEGREE + 1)
        a[0] = exp(c * c) * erfc(c)
        a[1] = 2.0 * c * a[0] - 2.0 / sqrt(M_PI)
        for j in range(1, ERFCX_DEGREE):
            a[j + 1] = (2.0 * c * a[j] + 2.0 * a[j - 1]) / (j + 1)


_erfcx_table()


cdef inline double _erfc_given_exp(double x, double e) noexcept nogil:
    """erfc(x) for x >= 0 given e = exp(-x^2): erfcx(x) e, erfcx from the table (relative error below 1e-14)."""
    cdef int k, j
    cdef double t, p
    cdef const double* a
    if x >= ERFCX_INTERVALS / ERFCX_PER_UNIT:
        return erfc(x)
    k = <int> (x * ERFCX_PER_UNIT)
    t = x - (k + 0.5) / ERFCX_PER_UNIT
    a = _ERFCX + k * (ERFCX_DEGREE + 1)
    p = a[ERFCX_DEGREE]
    for j in range(ERFCX_DEGREE - 1, -1, -1):
        p = p * t + a[j]
    return p * e


cdef void _real_atom(Py_ssize_t i, const double* q_n, double eta, double cutoff, double scale,
                     const int64_t* indptr, const int32_t* j_p, const double* d_p, const double* D_pc,
                     double* energy_n, double* grad_pc, double* cgrad_n) noexcept nogil:
    """Pairs of atom ``i``: energy_n[i] += scale/2 sum q_i q_j erfc(eta r)/r; grad_pc[p] += d/dD_p of it;
    cgrad_n[i] += scale sum q_j erfc(eta r)/r (the charge gradient of the whole real-space sum)."""
    cdef Py_ssize_t p
    cdef double r, ir, ef, ex, qj, t, g, e = 0.0, cg = 0.0
    cdef double qi = q_n[i]
    cdef double two_eta_sqrtpi = 2.0 * eta / sqrt(M_PI)
    for p in range(indptr[i], indptr[i + 1]):
        r = d_p[p]
        if r >= cutoff:
            continue
        qj = q_n[j_p[p]]
        ir = 1.0 / r
        ex = exp(-eta * eta * r * r)
        ef = _erfc_given_exp(eta * r, ex) * ir
        cg = cg + qj * ef
        t = 0.5 * scale * qi * qj
        e = e + t * ef
        if grad_pc != NULL:
            # d/dr (erfc(eta r) / r) = -erfc(eta r) / r^2 - 2 eta / sqrt(pi) exp(-eta^2 r^2) / r; times D / r
            g = -t * (ef + two_eta_sqrtpi * ex) * ir * ir
            grad_pc[3 * p] += g * D_pc[3 * p]
            grad_pc[3 * p + 1] += g * D_pc[3 * p + 1]
            grad_pc[3 * p + 2] += g * D_pc[3 * p + 2]
    energy_n[i] += e
    if cgrad_n != NULL:
        cgrad_n[i] += scale * cg


def ewald_real_reduce(const double[::1] q_n, double eta, double cutoff, double scale,
                      const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                      const double[:, ::1] D_pc, double[::1] energy_n, double[:, ::1] grad_pc, bint grad,
                      double[::1] cgrad_n, bint cgrad, int n_threads):
    """Accumulate the real-space Ewald sum: energies [N] (eV), per-pair gradients [P, 3] (eV/Å, with
    ``grad``), charge gradients dE/dq [N] (eV/e, with ``cgrad``). Pairs with ``d_p >= cutoff`` are skipped."""
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    cdef Py_ssize_t n_pairs = j_p.shape[0]
    if n < 0 or q_n.shape[0] != n or energy_n.shape[0] != n:
        raise ValueError("indptr, q_n and energy_n disagree on the number of atoms")
    if indptr[0] != 0 or indptr[n] != n_pairs or d_p.shape[0] != n_pairs or D_pc.shape[0] != n_pairs \
            or D_pc.shape[1] != 3:
        raise ValueError("indptr, j_p, d_p and D_pc disagree on the number of pairs")
    if grad and (grad_pc.shape[0] != n_pairs or grad_pc.shape[1] != 3):
        raise ValueError("grad_pc must have shape (n_pairs, 3)")
    if cgrad and cgrad_n.shape[0] != n:
        raise ValueError("cgrad_n must have shape (n_atoms,)")
    for i in range(n):
        if indptr[i + 1] < indptr[i]:
            raise ValueError("indptr must be non-decreasing")
    if n == 0 or n_pairs == 0:
        return
    cdef const double* pq = &q_n[0]
    cdef const int64_t* pind = &indptr[0]
    cdef const int32_t* pj = &j_p[0]
    cdef const double* pd = &d_p[0]
    cdef const double* pD = &D_pc[0, 0]
    cdef double* pe = &energy_n[0]
    cdef double* pg = &grad_pc[0, 0] if grad else NULL
    cdef double* pc = &cgrad_n[0] if cgrad else NULL
    for i in prange(n, nogil=True, num_threads=max(1, n_threads), schedule="guided"):
        _real_atom(i, pq, eta, cutoff, scale, pind, pj, pd, pD, pe, pg, pc)


cdef extern from *:
    """
    /* Four dot products over n atoms (miniff Ewald structure factor): out[0..3] += (sum a c, sum b s,
       sum a s, sum b c). Two lanes (even and odd atoms) summed at the end: the same operations in the same
       order with SSE2 (every x86-64 CPU) and without. */
    #include <stdint.h>
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define MINIFF_EW_SSE2 1
    #endif
    static inline void miniff_ew_dot4(const double* a, const double* b, const double* c, const double* s,
                                      int64_t n, double* out) {
        int64_t i = 0;
        double l0[4] = {0.0, 0.0, 0.0, 0.0}, l1[4] = {0.0, 0.0, 0.0, 0.0};
    #ifdef MINIFF_EW_SSE2
        __m128d ac = _mm_setzero_pd(), bs = _mm_setzero_pd(), as = _mm_setzero_pd(), bc = _mm_setzero_pd();
        for (; i + 2 <= n; i += 2) {
            __m128d va = _mm_loadu_pd(a + i), vb = _mm_loadu_pd(b + i);
            __m128d vc = _mm_loadu_pd(c + i), vs = _mm_loadu_pd(s + i);
            ac = _mm_add_pd(ac, _mm_mul_pd(va, vc));
            bs = _mm_add_pd(bs, _mm_mul_pd(vb, vs));
            as = _mm_add_pd(as, _mm_mul_pd(va, vs));
            bc = _mm_add_pd(bc, _mm_mul_pd(vb, vc));
        }
        _mm_storel_pd(&l0[0], ac); _mm_storeh_pd(&l1[0], ac);
        _mm_storel_pd(&l0[1], bs); _mm_storeh_pd(&l1[1], bs);
        _mm_storel_pd(&l0[2], as); _mm_storeh_pd(&l1[2], as);
        _mm_storel_pd(&l0[3], bc); _mm_storeh_pd(&l1[3], bc);
    #else
        for (; i + 2 <= n; i += 2) {
            l0[0] = l0[0] + a[i] * c[i]; l1[0] = l1[0] + a[i + 1] * c[i + 1];
            l0[1] = l0[1] + b[i] * s[i]; l1[1] = l1[1] + b[i + 1] * s[i + 1];
            l0[2] = l0[2] + a[i] * s[i]; l1[2] = l1[2] + a[i + 1] * s[i + 1];
            l0[3] = l0[3] + b[i] * c[i]; l1[3] = l1[3] + b[i + 1] * c[i + 1];
        }
    #endif
        if (i < n) {
            l0[0] = l0[0] + a[i] * c[i];
            l0[1] = l0[1] + b[i] * s[i];
            l0[2] = l0[2] + a[i] * s[i];
            l0[3] = l0[3] + b[i] * c[i];
        }
        out[0] += l0[0] + l1[0];
        out[1] += l0[1] + l1[1];
        out[2] += l0[2] + l1[2];
        out[3] += l0[3] + l1[3];
    }

    /* x[2j][i] += c[i] f[4j] - s[i] f[4j+1], x[2j+1][i] += c[i] f[4j+2] + s[i] f[4j+3] for j < nacc, i < n
       (rows of x have length stride). */
    static inline void miniff_ew_terms(const double* __restrict c, const double* __restrict s, int64_t n,
                                       const double* f, int nacc, double* __restrict x, int64_t stride) {
        int j;
        int64_t i;
        for (j = 0; j < nacc; j++) {
            double f0 = f[4 * j], f1 = f[4 * j + 1], f2 = f[4 * j + 2], f3 = f[4 * j + 3];
            double* __restrict xr = x + 2 * j * stride;
            double* __restrict xi = xr + stride;
            for (i = 0; i < n; i++) {
                xr[i] += c[i] * f0 - s[i] * f1;
                xi[i] += c[i] * f2 + s[i] * f3;
            }
        }
    }
    """
    void miniff_ew_dot4(const double* a, const double* b, const double* c, const double* s, int64_t n,
                        double* out) noexcept nogil
    void miniff_ew_terms(const double* c, const double* s, int64_t n, const double* f, int nacc, double* x,
                         int64_t stride) noexcept nogil


cdef enum:
    SF_ATOMS = 256  # atoms per block of the structure factor (their axis-2 phases stay in cache over the rows)
    SF_ROWS = 8  # rows of k-vectors per parallel task of the structure factor
    KA_ATOMS = 64  # atoms per block of the per-atom terms
    N_ACC = 5  # complex sums per atom and row: F, G (energy, gradient), H0, H1, H2 (virial)


cdef struct _KRows:
    # the half grid as rows of equal (m0, m1) and consecutive m2, each split into terms of one |m2|:
    # k-vectors +|m2| (kp) and -|m2| (km) of the row (-1: absent)
    Py_ssize_t n_rows
    Py_ssize_t n_terms
    int64_t* term_ptr   # [R + 1]
    int32_t* term_m     # [T] |m2|
    int64_t* term_kp    # [T]
    int64_t* term_km    # [T]
    int32_t* row_m0     # [R]
    int32_t* row_m1     # [R]
    double* coef        # [T, N_ACC * 4] coefficients of miniff_ew_terms (set after the structure factor)


cdef void _phases(const double* r_nc, Py_ssize_t n, const double* recip, const int64_t* mmax, Py_ssize_t i,
                  double* tab) noexcept nogil:
    """exp(i m b_d . r_i) for m = 0 .. mmax[d] by recurrence: tab[((off_d + m) * 2 + 0 / 1) * n + i] = cos / sin
    (off_d = sum of mmax[e] + 1 over the axes e < d)."""
    cdef int d
    cdef int64_t m, off = 0
    cdef double th, c1, s1, c, s, cn
    for d in range(3):
        th = recip[3 * d] * r_nc[3 * i] + recip[3 * d + 1] * r_nc[3 * i + 1] + recip[3 * d + 2] * r_nc[3 * i + 2]
        c1 = cos(th)
        s1 = sin(th)
        c = 1.0
        s = 0.0
        for m in range(mmax[d] + 1):
            tab[(2 * (off + m)) * n + i] = c
            tab[(2 * (off + m) + 1) * n + i] = s
            cn = c * c1 - s * s1
            s = c * s1 + s * c1
            c = cn
        off = off + mmax[d] + 1


cdef inline void _row_phase(const double* tab, Py_ssize_t n, const int64_t* mmax, int32_t m0, int32_t m1,
                            Py_ssize_t i, double* pr, double* pi) noexcept nogil:
    """exp(i (m0 b_0 + m1 b_1) . r_i) from the tables (m0 >= 0; a negative m1 is the conjugate)."""
    cdef int64_t o1 = mmax[0] + 1
    cdef int32_t a1 = m1 if m1 >= 0 else -m1
    cdef double c0 = tab[(2 * m0) * n + i], s0 = tab[(2 * m0 + 1) * n + i]
    cdef double c1 = tab[(2 * (o1 + a1)) * n + i], s1 = tab[(2 * (o1 + a1) + 1) * n + i]
    if m1 < 0:
        s1 = -s1
    pr[0] = c0 * c1 - s0 * s1
    pi[0] = c0 * s1 + s0 * c1


cdef void _sf_task(const _KRows* kr, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n, const double* q_n, const double* tab,
                   const int64_t* mmax, double* acc, double* re_k, double* im_k) noexcept nogil:
    """S(k) of the rows r0 .. r1 - 1 (set): atoms in blocks of SF_ATOMS (in order), per term the four sums of
    miniff_ew_dot4 (``acc`` [T, 4], this task's terms zeroed here) give S(+|m2|) = (A - B) + i (C + D) and
    S(-|m2|) = (A + B) + i (D - C)."""
    cdef double a[SF_ATOMS]
    cdef double b[SF_ATOMS]
    cdef Py_ssize_t b0, b1, i, r, t, t0 = kr.term_ptr[r0], nb
    cdef int64_t o2 = mmax[0] + 1 + mmax[1] + 1, m
    cdef double pr, pi, qi
    cdef double* x
    for t in range(4 * t0, 4 * kr.term_ptr[r1]):
        acc[t] = 0.0
    b0 = 0
    while b0 < n:
        b1 = b0 + SF_ATOMS if b0 + SF_ATOMS < n else n
        nb = b1 - b0
        for r in range(r0, r1):
            for i in range(b0, b1):
                _row_phase(tab, n, mmax, kr.row_m0[r], kr.row_m1[r], i, &pr, &pi)
                qi = q_n[i]
                a[i - b0] = qi * pr
                b[i - b0] = qi * pi
            for t in range(kr.term_ptr[r], kr.term_ptr[r + 1]):
                m = kr.term_m[t]
                miniff_ew_dot4(a, b, tab + (2 * (o2 + m)) * n + b0, tab + (2 * (o2 + m) + 1) * n + b0, nb,
                               acc + 4 * t)
        b0 = b1
    for t in range(t0, kr.term_ptr[r1]):
        x = acc + 4 * t
        if kr.term_kp[t] >= 0:
            re_k[kr.term_kp[t]] = x[0] - x[1]
            im_k[kr.term_kp[t]] = x[2] + x[3]
        if kr.term_km[t] >= 0:
            re_k[kr.term_km[t]] = x[0] + x[1]
            im_k[kr.term_km[t]] = x[3] - x[2]


cdef void _term_coefficients(const _KRows* kr, Py_ssize_t t, const double* w_k, const double* c_k,
                             const double* re_k, const double* im_k, int nacc) noexcept nogil:
    """Coefficients of term t for miniff_ew_terms: with W = w conj(S) at +m (Wp) and -m (Wm), a term adds
    t W(+m) + conj(t) W(-m) = c (Wp + Wm) + i s (Wp - Wm) to the even sums (F; H0 and H2 with W c_k, H2 times
    m^2) and m (t W(+m) - conj(t) W(-m)) = m (c (Wp - Wm) + i s (Wp + Wm)) to the odd ones (G; H1 with W c_k)."""
    cdef double* f = kr.coef + 4 * N_ACC * t
    cdef double m = kr.term_m[t]
    cdef double pr = 0.0, pi = 0.0, mr = 0.0, mi = 0.0, qr = 0.0, qi = 0.0, nr = 0.0, ni = 0.0
    cdef double sr, si, dr, di, vr, vi, er, ei
    cdef int64_t kp = kr.term_kp[t], km = kr.term_km[t]
    if kp >= 0:
        pr = w_k[kp] * re_k[kp]
        pi = -w_k[kp] * im_k[kp]
        if nacc > 2:
            qr = pr * c_k[kp]
            qi = pi * c_k[kp]
    if km >= 0:
        mr = w_k[km] * re_k[km]
        mi = -w_k[km] * im_k[km]
        if nacc > 2:
            nr = mr * c_k[km]
            ni = mi * c_k[km]
    sr = pr + mr
    si = pi + mi
    dr = pr - mr
    di = pi - mi
    f[0] = sr  # F: c (Wp + Wm) + i s (Wp - Wm)
    f[1] = di
    f[2] = si
    f[3] = dr
    f[4] = m * dr  # G: m (c (Wp - Wm) + i s (Wp + Wm))
    f[5] = m * si
    f[6] = m * di
    f[7] = m * sr
    if nacc > 2:
        vr = qr + nr
        vi = qi + ni
        er = qr - nr
        ei = qi - ni
        f[8] = vr  # H0
        f[9] = ei
        f[10] = vi
        f[11] = er
        f[12] = m * er  # H1
        f[13] = m * vi
        f[14] = m * ei
        f[15] = m * vr
        f[16] = m * m * vr  # H2
        f[17] = m * m * ei
        f[18] = m * m * vi
        f[19] = m * m * er


cdef void _k_block(const _KRows* kr, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t n, const double* q_n, const double* tab,
                   const int64_t* mmax, const double* recip, int nacc, double* energy_n, double* grad_nc,
                   double* cgrad_n, double* vir_n9) noexcept nogil:
    """Per-atom reciprocal terms of atoms i0 .. i1 - 1 (at most KA_ATOMS), rows in order: per row the complex
    sums X_j = sum over the row's k of m2^p t(m2) W(k) (miniff_ew_terms), then with the row phase P:
    t_ik summed = Re(P F), sum u k = -(k01 Im(P F) + b2 Im(P G)), sum t_ik c_k k k = k01 k01 Re(P H0) +
    (k01 b2 + b2 k01) Re(P H1) + b2 b2 Re(P H2) (k01 = m0 b0 + m1 b1)."""
    cdef double x[2 * N_ACC * KA_ATOMS]
    cdef double acc[10 * KA_ATOMS]
    cdef Py_ssize_t nb = i1 - i0, i, j, r, t
    cdef int64_t o2 = mmax[0] + 1 + mmax[1] + 1, m
    cdef double pr, pi, fr, gi, h0, h1, h2, qi, k0, k1, k2
    cdef const double* b2 = recip + 6
    cdef double* a
    for j in range(10 * KA_ATOMS):
        acc[j] = 0.0
    for r in range(kr.n_rows):
        if kr.term_ptr[r + 1] == kr.term_ptr[r]:
            continue
        for j in range(2 * nacc * KA_ATOMS):
            x[j] = 0.0
        for t in range(kr.term_ptr[r], kr.term_ptr[r + 1]):
            m = kr.term_m[t]
            miniff_ew_terms(tab + (2 * (o2 + m)) * n + i0, tab + (2 * (o2 + m) + 1) * n + i0, nb,
                            kr.coef + 4 * N_ACC * t, nacc, x, KA_ATOMS)
        k0 = kr.row_m0[r] * recip[0] + kr.row_m1[r] * recip[3]
        k1 = kr.row_m0[r] * recip[1] + kr.row_m1[r] * recip[4]
        k2 = kr.row_m0[r] * recip[2] + kr.row_m1[r] * recip[5]
        for i in range(nb):
            _row_phase(tab, n, mmax, kr.row_m0[r], kr.row_m1[r], i0 + i, &pr, &pi)
            a = acc + 10 * i
            fr = pr * x[i] - pi * x[KA_ATOMS + i]  # Re(P F)
            a[0] += fr
            gi = pr * x[KA_ATOMS + i] + pi * x[i]  # Im(P F)
            h1 = pr * x[3 * KA_ATOMS + i] + pi * x[2 * KA_ATOMS + i]  # Im(P G)
            a[1] -= k0 * gi + b2[0] * h1
            a[2] -= k1 * gi + b2[1] * h1
            a[3] -= k2 * gi + b2[2] * h1
            if nacc > 2:
                h0 = pr * x[4 * KA_ATOMS + i] - pi * x[5 * KA_ATOMS + i]
                h1 = pr * x[6 * KA_ATOMS + i] - pi * x[7 * KA_ATOMS + i]
                h2 = pr * x[8 * KA_ATOMS + i] - pi * x[9 * KA_ATOMS + i]
                a[4] += k0 * k0 * h0 + 2.0 * k0 * b2[0] * h1 + b2[0] * b2[0] * h2
                a[5] += k1 * k1 * h0 + 2.0 * k1 * b2[1] * h1 + b2[1] * b2[1] * h2
                a[6] += k2 * k2 * h0 + 2.0 * k2 * b2[2] * h1 + b2[2] * b2[2] * h2
                a[7] += k1 * k2 * h0 + (k1 * b2[2] + b2[1] * k2) * h1 + b2[1] * b2[2] * h2
                a[8] += k0 * k2 * h0 + (k0 * b2[2] + b2[0] * k2) * h1 + b2[0] * b2[2] * h2
                a[9] += k0 * k1 * h0 + (k0 * b2[1] + b2[0] * k1) * h1 + b2[0] * b2[1] * h2
    for i in range(nb):
        a = acc + 10 * i
        qi = q_n[i0 + i]
        energy_n[i0 + i] += qi * a[0]
        if grad_nc != NULL:
            grad_nc[3 * (i0 + i)] += 2.0 * qi * a[1]
            grad_nc[3 * (i0 + i) + 1] += 2.0 * qi * a[2]
            grad_nc[3 * (i0 + i) + 2] += 2.0 * qi * a[3]
        if cgrad_n != NULL:
            cgrad_n[i0 + i] += 2.0 * a[0]
        if vir_n9 != NULL:  # q_i sum_k t_ik (c_k k k - 1)
            vir_n9[9 * (i0 + i)] += qi * (a[4] - a[0])
            vir_n9[9 * (i0 + i) + 4] += qi * (a[5] - a[0])
            vir_n9[9 * (i0 + i) + 8] += qi * (a[6] - a[0])
            vir_n9[9 * (i0 + i) + 5] += qi * a[7]
            vir_n9[9 * (i0 + i) + 7] += qi * a[7]
            vir_n9[9 * (i0 + i) + 2] += qi * a[8]
            vir_n9[9 * (i0 + i) + 6] += qi * a[8]
            vir_n9[9 * (i0 + i) + 1] += qi * a[9]
            vir_n9[9 * (i0 + i) + 3] += qi * a[9]


cdef int _k_rows(_KRows* kr, const int32_t[:, ::1] m_k3, const int64_t[::1] row_ptr, const int64_t[::1] mmax) except -1:
    """Check the half grid (rows of equal (m0, m1) >= 0 lexicographically, consecutive m2, within mmax, m0 >= 0)
    and split its rows into terms of one |m2| (kr's arrays allocated here, freed by _k_rows_free)."""
    cdef Py_ssize_t k, r, t, nk = m_k3.shape[0], nr = row_ptr.shape[0] - 1
    cdef int64_t lo, hi, m, top
    cdef int d
    if mmax.shape[0] != 3 or m_k3.shape[1] != 3:
        raise ValueError("mmax must have 3 entries and m_k3 shape (n_k, 3)")
    if nr < 0 or row_ptr[0] != 0 or row_ptr[nr] != nk:
        raise ValueError("row_ptr must run from 0 to the number of k-vectors")
    for k in range(nk):
        for d in range(3):
            if m_k3[k, d] < -mmax[d] or m_k3[k, d] > mmax[d]:
                raise ValueError("m_k3 exceeds mmax")
        if m_k3[k, 0] < 0:
            raise ValueError("m_k3 must be a half grid (m0 >= 0)")
    t = 0
    for r in range(nr):
        if row_ptr[r + 1] < row_ptr[r]:
            raise ValueError("row_ptr must be non-decreasing")
        for k in range(row_ptr[r], row_ptr[r + 1]):
            if m_k3[k, 0] != m_k3[row_ptr[r], 0] or m_k3[k, 1] != m_k3[row_ptr[r], 1] \
                    or m_k3[k, 2] != m_k3[row_ptr[r], 2] + (k - row_ptr[r]):
                raise ValueError("the k-vectors of one row must share m0 and m1 and have consecutive m2")
        if row_ptr[r + 1] > row_ptr[r]:
            lo = m_k3[row_ptr[r], 2]
            hi = m_k3[row_ptr[r + 1] - 1, 2]
            t += (hi if hi > -lo else -lo) + 1
    kr.n_rows = nr
    kr.term_ptr = <int64_t*> malloc((nr + 1) * sizeof(int64_t))
    kr.term_m = <int32_t*> malloc((t + 1) * sizeof(int32_t))
    kr.term_kp = <int64_t*> malloc((t + 1) * sizeof(int64_t))
    kr.term_km = <int64_t*> malloc((t + 1) * sizeof(int64_t))
    kr.row_m0 = <int32_t*> malloc((nr + 1) * sizeof(int32_t))
    kr.row_m1 = <int32_t*> malloc((nr + 1) * sizeof(int32_t))
    kr.coef = <double*> malloc((t + 1) * 4 * N_ACC * sizeof(double))
    if kr.term_ptr == NULL or kr.term_m == NULL or kr.term_kp == NULL or kr.term_km == NULL or kr.row_m0 == NULL \
            or kr.row_m1 == NULL or kr.coef == NULL:
        raise MemoryError("Ewald reciprocal sum: no memory for the k-vector terms")
    t = 0
    kr.term_ptr[0] = 0
    for r in range(nr):
        kr.row_m0[r] = 0
        kr.row_m1[r] = 0
        if row_ptr[r + 1] > row_ptr[r]:
            kr.row_m0[r] = m_k3[row_ptr[r], 0]
            kr.row_m1[r] = m_k3[row_ptr[r], 1]
            lo = m_k3[row_ptr[r], 2]
            hi = m_k3[row_ptr[r + 1] - 1, 2]
            top = hi if hi > -lo else -lo
            for m in range(top + 1):
                kr.term_kp[t] = row_ptr[r] + (m - lo) if lo <= m <= hi else -1
                kr.term_km[t] = row_ptr[r] + (-m - lo) if (m > 0 and lo <= -m <= hi) else -1
                if kr.term_kp[t] >= 0 or kr.term_km[t] >= 0:
                    kr.term_m[t] = <int32_t> m
                    t += 1
        kr.term_ptr[r + 1] = t
    kr.n_terms = t
    return 0


cdef void _k_rows_free(_KRows* kr) noexcept:
    free(kr.term_ptr)
    free(kr.term_m)
    free(kr.term_kp)
    free(kr.term_km)
    free(kr.row_m0)
    free(kr.row_m1)
    free(kr.coef)


def ewald_reciprocal(const double[::1] q_n, const double[:, ::1] r_nc, const double[:, ::1] recip_dc,
                     const int32_t[:, ::1] m_k3, const int64_t[::1] row_ptr, const int64_t[::1] mmax,
                     const double[::1] w_k, const double[::1] c_k, double[::1] re_k, double[::1] im_k, bint have_sf,
                     double[::1] energy_n, double[:, ::1] grad_nc, bint grad, double[::1] cgrad_n, bint cgrad,
                     double[:, ::1] virial_n9, bint virial, int n_threads):
    """Per-atom terms of the reciprocal sum ``E = sum_k w_k |S(k)|^2`` over a half grid (accumulated).

    k-vectors ``k = m0 b0 + m1 b1 + m2 b2`` (``b_d`` the rows of ``recip_dc``, 1/Å) given by their integer
    coordinates ``m_k3`` [K, 3] (m0 >= 0) in rows of equal (m0, m1) and consecutive m2 (``row_ptr`` [R + 1]),
    ``|m_d| <= mmax[d]``. The structure factor ``S(k) = sum_i q_i exp(i k . r_i)`` is computed into ``re_k``,
    ``im_k`` [K] unless ``have_sf`` (then they hold it). With ``t_ik = w_k Re(exp(i k . r_i) S(k)*)``:
    energy_n[i] += q_i sum_k t_ik (eV); grad_nc[i] += 2 q_i sum_k w_k (cos(k.r_i) Im S - sin(k.r_i) Re S) k
    (eV/Å); cgrad_n[i] += 2 sum_k t_ik (eV/e); virial_n9[i] += q_i sum_k t_ik (c_k k k - 1) (eV).

    The phases ``exp(i m b_d . r_i)`` come from one sine and cosine per atom and axis by recurrence; the two
    vectors ``+-m2`` of a row share them (``exp(-i m2 b2 . r) = conj(exp(i m2 b2 . r))``). Threads: rows of
    k-vectors for the structure factor, blocks of atoms for the rest, each sum in a fixed order: the results do
    not depend on the number of threads.
    """
    cdef Py_ssize_t n = q_n.shape[0], nk = m_k3.shape[0], c, blk, t, width
    cdef Py_ssize_t n_blocks = (n + KA_ATOMS - 1) // KA_ATOMS
    cdef _KRows kr
    cdef int nacc = N_ACC if virial else 2
    if r_nc.shape[0] != n or r_nc.shape[1] != 3 or recip_dc.shape[0] != 3 or recip_dc.shape[1] != 3:
        raise ValueError("r_nc must have shape (n_atoms, 3) and recip_dc (3, 3)")
    if w_k.shape[0] != nk or c_k.shape[0] != nk or re_k.shape[0] != nk or im_k.shape[0] != nk:
        raise ValueError("w_k, c_k, re_k and im_k must have shape (n_k,)")
    if energy_n.shape[0] != n:
        raise ValueError("energy_n must have shape (n_atoms,)")
    if grad and (grad_nc.shape[0] != n or grad_nc.shape[1] != 3):
        raise ValueError("grad_nc must have shape (n_atoms, 3)")
    if cgrad and cgrad_n.shape[0] != n:
        raise ValueError("cgrad_n must have shape (n_atoms,)")
    if virial and (virial_n9.shape[0] != n or virial_n9.shape[1] != 9):
        raise ValueError("virial_n9 must have shape (n_atoms, 9)")
    kr.term_ptr = NULL
    kr.term_m = NULL
    kr.term_kp = NULL
    kr.term_km = NULL
    kr.row_m0 = NULL
    kr.row_m1 = NULL
    kr.coef = NULL
    cdef double* tab = NULL
    try:
        _k_rows(&kr, m_k3, row_ptr, mmax)
        if n == 0 or nk == 0:
            if not have_sf:
                for t in range(nk):
                    re_k[t] = 0.0
                    im_k[t] = 0.0
            return
        width = mmax[0] + mmax[1] + mmax[2] + 3
        tab = <double*> malloc(2 * width * n * sizeof(double))
        if tab == NULL:
            raise MemoryError("Ewald reciprocal sum: no memory for the phase tables")
        with nogil:
            for blk in prange(n, num_threads=max(1, n_threads), schedule="static"):
                _phases(&r_nc[0, 0], n, &recip_dc[0, 0], &mmax[0], blk, tab)
            if not have_sf:
                for c in prange((kr.n_rows + SF_ROWS - 1) // SF_ROWS, num_threads=max(1, n_threads),
                                schedule="dynamic"):
                    _sf_task(&kr, c * SF_ROWS, min((c + 1) * SF_ROWS, kr.n_rows), n, &q_n[0], tab, &mmax[0],
                             kr.coef, &re_k[0], &im_k[0])
            for t in range(kr.n_terms):  # (kr.coef, the structure factor's scratch until here)
                _term_coefficients(&kr, t, &w_k[0], &c_k[0], &re_k[0], &im_k[0], nacc)
            for blk in prange(n_blocks, num_threads=max(1, n_threads), schedule="dynamic"):
                _k_block(&kr, blk * KA_ATOMS, min((blk + 1) * KA_ATOMS, n), n, &q_n[0], tab, &mmax[0],
                         &recip_dc[0, 0], nacc, &energy_n[0], &grad_nc[0, 0] if grad else NULL,
                         &cgrad_n[0] if cgrad else NULL, &virial_n9[0, 0] if virial else NULL)
    finally:
        free(tab)
        _k_rows_free(&kr)


# ---------------------------------------------------------------------------------------------
# Real space without a pair list: erfc(eta r) / r summed during the cell-list walk over the half stencil
# ---------------------------------------------------------------------------------------------

def erfc_table(const double[::1] x, double[::1] out):
    """erfc of ``x`` [n] (>= 0) as the real-space sums evaluate it (the table; for tests)."""
    cdef Py_ssize_t i
    if out.shape[0] != x.shape[0]:
        raise ValueError("x and out must have the same shape")
    for i in range(x.shape[0]):
        if not x[i] >= 0.0:
            raise ValueError("x must be >= 0")
        out[i] = _erfc_given_exp(x[i], exp(-x[i] * x[i]))


cdef struct _RealConst:
    double eta
    double a2            # squared real-space cutoff
    double half_scale    # scale / 2
    double two_eta_sqrtpi
    double r2_coincident


cdef void _real_bin(_NLGrid* g, const _RealConst* rc, const double* q_n, int64_t flat, int tid, double* e_t,
                    double* g_t, double* v_t, double* c_t, int64_t* coincident) noexcept nogil:
    """The pairs of every atom of bin ``flat`` over the half stencil, each met once and added to both atoms in
    thread ``tid``'s buffers (bin order): energies e_t [N], dE/dr g_t [N, 3], virials v_t [N, 6] (xx yy zz xy
    xz yz) and dE/dq c_t [N] (NULL: not wanted). The first pair closer than the coincidence distance is
    recorded (original indices) and skipped."""
    cdef _NLThr* th = &g.thr[tid]
    cdef int64_t s, a, c, t, nh, n_cand = 0, self_c, self_lo
    cdef int n_pieces, p
    cdef double xi, yi, zi, dx, dy, dz, r2, r, ir, x, ex, ef, qi, qj, f, gg, gd
    cdef double e, gx, gy, gz, vxx, vyy, vzz, vxy, vxz, vyz, cg
    cdef int32_t* hits
    cdef int64_t s_begin = g.bin_start[flat], s_end = g.bin_start[flat + 1]
    if s_begin == s_end or th.failed:
        return
    n_pieces = _nl_pieces(g, th, flat, &n_cand)
    if n_cand >= 2147483647 or _nl_reserve(th, n_cand + 1):
        th.failed = 1
        return
    _nl_gather(th, g, n_pieces, s_begin, s_end)
    if not th.has_self:
        th.failed = 2
        return
    hits = th.hits
    self_lo = s_begin + th.self_off
    for s in range(s_begin, s_end):
        xi = g.px[s]
        yi = g.py[s]
        zi = g.pz[s]
        qi = q_n[g.sorted_index[s]]
        nh = miniff_nl_select(th.cx, th.cy, th.cz, th.n_c, xi, yi, zi, rc.a2, hits)
        self_c = s + th.self_off
        p = 0
        e = gx = gy = gz = cg = 0.0
        vxx = vyy = vzz = vxy = vxz = vyz = 0.0
        for a in range(nh):
            c = hits[a]
            if self_lo <= c <= self_c:  # own bin, same image: only the atoms after this one
                continue
            while c >= th.pc_c0[p + 1]:
                p = p + 1
            t = th.pc_t0[p] + c - th.pc_c0[p]
            dx = th.cx[c] - xi
            dy = th.cy[c] - yi
            dz = th.cz[c] - zi
            r2 = dx * dx + dy * dy + dz * dz
            if r2 <= rc.r2_coincident:
                if coincident[0] < 0:
                    coincident[0] = g.sorted_index[s]
                    coincident[1] = g.sorted_index[t]
                continue
            qj = q_n[g.sorted_index[t]]
            r = sqrt(r2)
            ir = 1.0 / r
            x = rc.eta * r
            ex = exp(-x * x)
            ef = _erfc_given_exp(x, ex) * ir  # erfc(eta r) / r
            f = rc.half_scale * qi * qj
            # per atom: E = f ef; dE/dD = f d(ef)/dr D / r = gg D
            gg = -f * (ef + rc.two_eta_sqrtpi * ex) * ir * ir
            e = e + f * ef
            gd = 2.0 * gg
            gx = gx + gd * dx
            gy = gy + gd * dy
            gz = gz + gd * dz
            e_t[t] += f * ef
            g_t[3 * t] += gd * dx
            g_t[3 * t + 1] += gd * dy
            g_t[3 * t + 2] += gd * dz
            if c_t != NULL:
                cg = cg + qj * ef
                c_t[t] += 2.0 * rc.half_scale * qi * ef
            if v_t != NULL:
                vxx = vxx + gg * dx * dx
                vyy = vyy + gg * dy * dy
                vzz = vzz + gg * dz * dz
                vxy = vxy + gg * dx * dy
                vxz = vxz + gg * dx * dz
                vyz = vyz + gg * dy * dz
                v_t[6 * t] += gg * dx * dx
                v_t[6 * t + 1] += gg * dy * dy
                v_t[6 * t + 2] += gg * dz * dz
                v_t[6 * t + 3] += gg * dx * dy
                v_t[6 * t + 4] += gg * dx * dz
                v_t[6 * t + 5] += gg * dy * dz
        e_t[s] += e
        g_t[3 * s] -= gx
        g_t[3 * s + 1] -= gy
        g_t[3 * s + 2] -= gz
        if c_t != NULL:
            c_t[s] += 2.0 * rc.half_scale * cg
        if v_t != NULL:
            v_t[6 * s] += vxx
            v_t[6 * s + 1] += vyy
            v_t[6 * s + 2] += vzz
            v_t[6 * s + 3] += vxy
            v_t[6 * s + 4] += vxz
            v_t[6 * s + 5] += vyz


def ewald_real_search(const double[:, ::1] frac, const double[:, ::1] xyz, const int32_t[:, ::1] shift,
                      const double[:, ::1] vectors, const int[::1] n_bins, const int[::1] periodic,
                      const double[::1] frac_min, const double[::1] bin_width, const int[:, ::1] offsets,
                      double cutoff, int n_threads, unsigned char[::1] work, const double[::1] q_n, double eta,
                      double scale, double[::1] energy_n, double[:, ::1] grad_nc, double[:, ::1] virial_n9,
                      double[::1] cgrad_n, double coincident):
    """The real-space Ewald sum during the cell-list walk, without a pair list (private; search arguments as
    ``pairsearch.pair_search_reduce``: prepared by ``miniff.neighbors.search.prepared_search`` with the half
    stencil of ``pairsearch.half_stencil``; ``cutoff`` is the real-space cutoff a, Å).

    Accumulates (``+=``) per-atom energies ``energy_n`` [N] (``scale/2 sum_j q_i q_j erfc(eta r)/r``, eV), dE/dr
    ``grad_nc`` [N, 3] (eV/Å), virials ``virial_n9`` [N, 9] (eV, half of every pair's to each atom) and dE/dq
    ``cgrad_n`` [N] (eV/e), the last three when given. Bins are split among threads statically, every thread
    adds into its own buffers, which are summed in thread order: reproducible for a thread count.

    Returns
    -------
    None, or ``(i, j)``: two atoms closer than ``coincident`` Å (that pair was skipped; the caller raises).
    """
    cdef int64_t n = frac.shape[0], nb_total, fb
    cdef int tid
    cdef _NLGrid g
    cdef _RealConst rc
    cdef int64_t coinc[2]
    cdef int64_t* coinc_t = NULL
    cdef double* pe_b
    cdef double* pg_b
    cdef double* pv_b
    cdef double* pc_b
    cdef double[::1] e_view, g_view, v_view, c_view
    cdef int32_t[::1] zero_spec
    if q_n.shape[0] != n or energy_n.shape[0] != n:
        raise ValueError("q_n and energy_n must have shape (n_atoms,)")
    if grad_nc is not None and (grad_nc.shape[0] != n or grad_nc.shape[1] != 3):
        raise ValueError("grad_nc must have shape (n_atoms, 3)")
    if virial_n9 is not None and (virial_n9.shape[0] != n or virial_n9.shape[1] != 9):
        raise ValueError("virial_n9 must have shape (n_atoms, 9)")
    if cgrad_n is not None and cgrad_n.shape[0] != n:
        raise ValueError("cgrad_n must have shape (n_atoms,)")
    if not (cutoff > 0.0 and eta > 0.0):
        raise ValueError("cutoff and eta must be positive")
    if n == 0 or offsets.shape[0] == 0:
        return None
    _check_half_stencil(offsets, "ewald_real_search")
    if n_threads < 1:
        n_threads = 1
    rc.eta = eta
    rc.a2 = cutoff * cutoff
    rc.half_scale = 0.5 * scale
    rc.two_eta_sqrtpi = 2.0 * eta / sqrt(M_PI)
    rc.r2_coincident = coincident * coincident if coincident >= 0.0 else -1.0
    image_limit = np.full(3, -1, dtype=np.intc)
    cdef int[::1] no_limit = image_limit
    nb_total = <int64_t> n_bins[0] * n_bins[1] * n_bins[2]
    g.thr = NULL
    try:
        keep = _nl_setup(&g, frac, xyz, shift, vectors, n_bins, periodic, frac_min, bin_width, offsets, no_limit,
                         cutoff, n_threads, work)
        coinc_t = <int64_t*> malloc(2 * n_threads * sizeof(int64_t))
        if coinc_t == NULL:
            raise MemoryError("Ewald real space: cannot allocate thread buffers")
        for tid in range(2 * n_threads):
            coinc_t[tid] = -1
        e_buf = np.zeros(n_threads * n)
        g_buf = np.zeros(n_threads * n * 3)
        v_buf = np.zeros(n_threads * n * 6) if virial_n9 is not None else None
        c_buf = np.zeros(n_threads * n) if cgrad_n is not None else None
        e_view = e_buf
        g_view = g_buf
        pe_b = &e_view[0]
        pg_b = &g_view[0]
        pv_b = NULL
        pc_b = NULL
        if v_buf is not None:
            v_view = v_buf
            pv_b = &v_view[0]
        if c_buf is not None:
            c_view = c_buf
            pc_b = &c_view[0]
        with nogil:
            for fb in prange(nb_total, num_threads=n_threads, schedule="static"):
                tid = omp_get_thread_num()
                _real_bin(&g, &rc, &q_n[0], fb, tid, pe_b + tid * n, pg_b + 3 * tid * n,
                          (pv_b + 6 * tid * n) if pv_b != NULL else NULL,
                          (pc_b + tid * n) if pc_b != NULL else NULL, coinc_t + 2 * tid)
        for tid in range(n_threads):
            if g.thr[tid].failed == 2:
                raise RuntimeError("Ewald real space: the bin offsets lack (0, 0, 0) (internal error)")
            if g.thr[tid].failed:
                raise MemoryError("Ewald real space: out of memory")
        # thread buffers (bin order) -> outputs (original order)
        order = np.empty(n, dtype=np.intp)
        for fb in range(n):
            order[fb] = g.sorted_index[fb]
        np.asarray(energy_n)[order] += e_buf.reshape(n_threads, n).sum(axis=0)
        if grad_nc is not None:
            np.asarray(grad_nc)[order] += g_buf.reshape(n_threads, n, 3).sum(axis=0)
        if cgrad_n is not None:
            np.asarray(cgrad_n)[order] += c_buf.reshape(n_threads, n).sum(axis=0)
        if virial_n9 is not None:
            v6 = v_buf.reshape(n_threads, n, 6).sum(axis=0)
            v9 = np.asarray(virial_n9)
            for col, src in ((0, 0), (4, 1), (8, 2), (1, 3), (3, 3), (2, 4), (6, 4), (5, 5), (7, 5)):
                v9[order, col] += v6[:, src]
        for tid in range(n_threads):
            if coinc_t[2 * tid] >= 0:
                return int(coinc_t[2 * tid]), int(coinc_t[2 * tid + 1])
        return None
    finally:
        free(coinc_t)
        _nl_free(&g, n_threads)
