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
    RED_BATCH_BEHLER4, RED_MAX_GROUP, RED_MOM_E, RED_MOM_Z, _match, _cosine_cutoff, _vexp,
)
from miniff._ext.triplets cimport (
    _triplet_angles, _triplet_first, _triplet_flush, _triplet_r3, _triplet_radial, _triplet_terms,
    _triplet_values,
)
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED
from miniff._ext.pairdesc cimport _batch_pair_atom, _zero_atom_rows

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
    cdef Py_ssize_t p, p1, p2, x1, x2, start, e, f, m
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef Py_ssize_t n_e = eta_e.shape[0]
    cdef Py_ssize_t n_k = l_k.shape[0]
    cdef Py_ssize_t n_f = cols.shape[0]
    cdef Py_ssize_t nb = 0, nc = 0, off_c
    cdef bint same = sb == sc
    cdef bint b4 = fam == RED_BATCH_BEHLER4
    cdef double r, fc, dfc, ex, r1, ir1, r3, c
    cdef double fc3, dfc3
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
    for x1 in range(nb):
        p1 = sel_p[p0 + x1]
        ir1 = _triplet_first(p1, n_e, n_f, d_p, u_pc, g_pe, dg_pe, u1, lg1, ldg1, sa1, sb1, grad)
        start = x1 + 1 if same else 0
        for x2 in range(start, nc):
            p2 = sel_p[off_c + x2]
            if b4:
                r3 = _triplet_r3(D_pc, p1, p2, a, w)
                if r3 >= a:
                    continue
                _cosine_cutoff(r3, a, &fc3, &dfc3)
                for e in range(n_e):
                    ex = exp(-eta_e[e] * r3 * r3)
                    h3[e] = ex * fc3
                    dh3[e] = ex * (dfc3 - 2.0 * eta_e[e] * r3 * fc3)
            for m in range(3):
                u2[m] = u_pc[p2, m]
            c = u1[0] * u2[0] + u1[1] * u2[1] + u1[2] * u2[2]
            _triplet_radial(n_e, lg1, ldg1, &g_pe[p2, 0], &dg_pe[p2, 0], h3, dh3, b4, grad, gg, rr1, rr2, rr3)
            _triplet_angles(n_k, l_k, zeta_k, izeta_k, c, ang, dang)
            if grad:
                _triplet_terms(n_f, e_f, k_f, &pref_f[0], cols, gg, rr1, rr2, rr3, ang, dang, c, ir1,
                               1.0 / d_p[p2], u1, u2, w, b4, vacc, sa1, sb1, &jac_pf3[p2, 0])
            else:
                _triplet_values(n_f, e_f, k_f, &pref_f[0], gg, ang, vacc)
        if grad:
            _triplet_flush(n_f, cols, sa1, sb1, u1, &jac_pf3[p1, 0])
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
    RED_MOM_CH = 32    # pairs per chunk of the first pass (a multiple of RED_MOM_L)
    RED_MOM_L = 8      # partial sums per moment (one SIMD vector of doubles at most)


cdef inline void _chunk_monomials(Py_ssize_t nqp, Py_ssize_t nm, const int32_t[::1] parent_m,
                                  const int32_t[::1] axis_m, const double* uq, double* monoq) noexcept nogil:
    """monoq[al, q] = u_q^alpha_al for the chunk's slots (uq [3, RED_MOM_CH]), by the parent/axis recursion."""
    cdef Py_ssize_t q, al, par, ax
    for q in range(nqp):
        monoq[q] = 1.0
    for al in range(1, nm):
        par = parent_m[al] * RED_MOM_CH
        ax = axis_m[al] * RED_MOM_CH
        for q in range(nqp):
            monoq[al * RED_MOM_CH + q] = monoq[par + q] * uq[ax + q]


cdef inline void _moment_lanes(Py_ssize_t nqp, Py_ssize_t nm, const double* gq, const double* wq,
                               const double* monoq, double* Mp) noexcept nogil:
    """Mp[al, l] += sum over the slots q = l (mod RED_MOM_L) of gq[q] wq[q] monoq[al, q] (one eta)."""
    cdef Py_ssize_t q, al, qb, l
    cdef double gwq[RED_MOM_CH]
    cdef double* Mo
    for q in range(nqp):
        gwq[q] = gq[q] * wq[q]
    for al in range(nm):
        Mo = &Mp[al * RED_MOM_L]
        for qb in range(nqp // RED_MOM_L):
            for l in range(RED_MOM_L):
                Mo[l] += gwq[qb * RED_MOM_L + l] * monoq[al * RED_MOM_CH + qb * RED_MOM_L + l]


cdef void _moment_chunk(Py_ssize_t nq, Py_ssize_t n_e, Py_ssize_t nm, double a, const double* eta,
                        const int32_t[::1] parent_m, const int32_t[::1] axis_m, const Py_ssize_t* pq, double* rq,
                        double* wbq, double* wcq, bint two, const double[:, ::1] D_pc, double* Mpb, double* Mpc,
                        double* diag, bint grad, double[:, ::1] g_pe, double[:, ::1] dg_pe,
                        double[:, ::1] u_pc) noexcept nogil:
    """Add a chunk of ``nq <= RED_MOM_CH`` usable pairs (``pq``: pair indices, ``rq`` lengths, ``wbq``/``wcq``
    1 for a b / c neighbour else 0) to the lane-resolved moments ``Mpb``/``Mpc`` [n_e, nm, RED_MOM_L] (``Mpc``
    only when ``two``: distinct b and c species) and ``diag``. Structure of arrays over the chunk's pairs, so
    the cutoff, exp, monomial and moment loops run over contiguous pair slots and vectorise; moments are summed
    in RED_MOM_L partial sums (slot q goes to lane q mod RED_MOM_L), added up in lane order by the caller."""
    cdef Py_ssize_t q, e, al, qb, l, nqp, par, ax
    cdef double r, ir, ex, g, h
    cdef double fcq[RED_MOM_CH]
    cdef double dfcq[RED_MOM_CH]
    cdef double uq[3 * RED_MOM_CH]
    cdef double gq[RED_MOM_E * RED_MOM_CH]
    cdef double dgq[RED_MOM_E * RED_MOM_CH]
    cdef double gwq[RED_MOM_CH]
    cdef double monoq[RED_MOM_M * RED_MOM_CH]
    cdef double* Mo
    nqp = ((nq + RED_MOM_L - 1) // RED_MOM_L) * RED_MOM_L
    for q in range(nq):  # gather
        uq[q] = D_pc[pq[q], 0]
        uq[RED_MOM_CH + q] = D_pc[pq[q], 1]
        uq[2 * RED_MOM_CH + q] = D_pc[pq[q], 2]
    for q in range(nq):  # contiguous slots: the division and the cutoff vectorise
        r = rq[q]
        ir = 1.0 / r
        uq[q] = uq[q] * ir
        uq[RED_MOM_CH + q] = uq[RED_MOM_CH + q] * ir
        uq[2 * RED_MOM_CH + q] = uq[2 * RED_MOM_CH + q] * ir
        _cosine_cutoff(r, a, &fcq[q], &dfcq[q])
    for q in range(nq, nqp):  # padding slots: zero radial factor, so they add exact zeros
        rq[q] = 0.0
        wbq[q] = 0.0
        wcq[q] = 0.0
        uq[q] = 0.0
        uq[RED_MOM_CH + q] = 0.0
        uq[2 * RED_MOM_CH + q] = 0.0
        fcq[q] = 0.0
        dfcq[q] = 0.0
    for e in range(n_e):
        if grad:
            for q in range(nqp):
                r = rq[q]
                ex = _vexp(-eta[e] * r * r)
                gq[e * RED_MOM_CH + q] = ex * fcq[q]
                dgq[e * RED_MOM_CH + q] = ex * (dfcq[q] - 2.0 * eta[e] * r * fcq[q])
        else:
            for q in range(nqp):
                r = rq[q]
                gq[e * RED_MOM_CH + q] = _vexp(-eta[e] * r * r) * fcq[q]
    _chunk_monomials(nqp, nm, parent_m, axis_m, uq, monoq)
    for e in range(n_e):
        for q in range(nq):
            g = gq[e * RED_MOM_CH + q]
            diag[e] += wbq[q] * (g * g)
        _moment_lanes(nqp, nm, &gq[e * RED_MOM_CH], wbq, monoq, &Mpb[e * nm * RED_MOM_L])
        if two:
            _moment_lanes(nqp, nm, &gq[e * RED_MOM_CH], wcq, monoq, &Mpc[e * nm * RED_MOM_L])
    if grad:
        for q in range(nq):
            u_pc[pq[q], 0] = uq[q]
            u_pc[pq[q], 1] = uq[RED_MOM_CH + q]
            u_pc[pq[q], 2] = uq[2 * RED_MOM_CH + q]
            for e in range(n_e):
                g_pe[pq[q], e] = gq[e * RED_MOM_CH + q]
                dg_pe[pq[q], e] = dgq[e * RED_MOM_CH + q]


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
    cdef double r, ir, g, dg, acc, t, fac, coef, rad, s1, s2x, s2y, s2z
    cdef Py_ssize_t lo, hi, l, nq, k
    cdef double eta[RED_MOM_E]
    cdef double Mpb[RED_MOM_E * RED_MOM_M * RED_MOM_L]
    cdef double Mpc[RED_MOM_E * RED_MOM_M * RED_MOM_L]
    cdef Py_ssize_t pq[RED_MOM_CH]
    cdef double rq[RED_MOM_CH]
    cdef double wbq[RED_MOM_CH]
    cdef double wcq[RED_MOM_CH]
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
    cdef double Sd[RED_MOM_E * (RED_MOM_Z + 1)]
    cdef double P2[RED_MOM_E * (RED_MOM_Z + 1) * 3]
    cdef double* Mo
    cdef double* W
    cdef double* G
    cdef int32_t s

    for q in range(n_e * nm * RED_MOM_L):
        Mpb[q] = 0.0
    if not same:
        for q in range(n_e * nm * RED_MOM_L):
            Mpc[q] = 0.0
    for e in range(n_e):
        diag[e] = 0.0
        eta[e] = eta_e[e]
    # pass 1: moments of the b and c neighbours, by chunks of usable pairs (_moment_chunk); with grad also the
    # per-pair radial factors and unit vectors for pass 2
    nq = 0
    for p in range(p0, pe):
        r = d_p[p]
        if r >= a:
            continue
        s = spec_n[j_p[p]]
        inb = _match(s, sb)
        inc = _match(s, sc)
        if not (inb or inc):
            continue
        pq[nq] = p
        rq[nq] = r
        wbq[nq] = 1.0 if inb else 0.0
        wcq[nq] = 1.0 if inc else 0.0
        nq = nq + 1
        if nq == RED_MOM_CH:
            _moment_chunk(nq, n_e, nm, a, eta, parent_m, axis_m, pq, rq, wbq, wcq, not same, D_pc, Mpb, Mpc, diag,
                          grad, g_pe, dg_pe, u_pc)
            nq = 0
    if nq > 0:
        _moment_chunk(nq, n_e, nm, a, eta, parent_m, axis_m, pq, rq, wbq, wcq, not same, D_pc, Mpb, Mpc, diag,
                      grad, g_pe, dg_pe, u_pc)
    for q in range(n_e * nm):
        acc = 0.0
        for l in range(RED_MOM_L):
            acc = acc + Mpb[q * RED_MOM_L + l]
        Mb[q] = acc
        acc = 0.0
        if not same:
            for l in range(RED_MOM_L):
                acc = acc + Mpc[q * RED_MOM_L + l]
        Mc[q] = acc
    if same:
        for q in range(n_e * nm):
            Mc[q] = Mb[q]
    # values: the sums over each degree n of w M^b M^c first (Sd[e, n]), then per descriptor over n
    for e in range(n_e):
        for n in range(zmax + 1):
            acc = 0.0
            for al in range(n * (n + 1) * (n + 2) // 6, (n + 1) * (n + 2) * (n + 3) // 6):
                acc = acc + w_m[al] * Mb[e * nm + al] * Mc[e * nm + al]
            Sd[e * z1 + n] = acc
    for f in range(n_f):
        e = e_f[f]
        acc = 0.0
        for n in range(deg_m[nmono_f[f] - 1] + 1):
            acc = acc + coefn_fn[f, n] * Sd[e * z1 + n]
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
    # pass 2: gradients by every usable pair vector, by chunks of pairs (_moment_grad_chunk): b neighbours see
    # the c moments (Wb, Gb), the other c neighbours the b moments (Wc, Gc)
    for k in range(2):
        if k == 1 and same:
            break
        nq = 0
        for p in range(p0, pe):
            if d_p[p] >= a:
                continue
            s = spec_n[j_p[p]]
            inb = _match(s, sb)
            inc = _match(s, sc)
            if (k == 0 and not inb) or (k == 1 and (inb or not inc)):
                continue
            pq[nq] = p
            nq = nq + 1
            if nq == RED_MOM_CH:
                _moment_grad_chunk(nq, n_e, nm, zmax, n_f, parent_m, axis_m, deg_m, nmono_f, e_f, cols, coefn_fn,
                                   sumcoef_f, same, pq, &Wb[0] if k == 0 else &Wc[0], &Gb[0] if k == 0 else &Gc[0],
                                   d_p, g_pe, dg_pe, u_pc, jac_pf3)
                nq = 0
        if nq > 0:
            _moment_grad_chunk(nq, n_e, nm, zmax, n_f, parent_m, axis_m, deg_m, nmono_f, e_f, cols, coefn_fn,
                               sumcoef_f, same, pq, &Wb[0] if k == 0 else &Wc[0], &Gb[0] if k == 0 else &Gc[0],
                               d_p, g_pe, dg_pe, u_pc, jac_pf3)


cdef void _moment_grad_chunk(Py_ssize_t nq, Py_ssize_t n_e, Py_ssize_t nm, Py_ssize_t zmax, Py_ssize_t n_f,
                             const int32_t[::1] parent_m, const int32_t[::1] axis_m, const int32_t[::1] deg_m,
                             const int32_t[::1] nmono_f, const int32_t[::1] e_f, const int32_t[::1] cols,
                             const double[:, ::1] coefn_fn, const double[::1] sumcoef_f, bint same,
                             const Py_ssize_t* pq, const double* W, const double* G, const double[::1] d_p,
                             double[:, ::1] g_pe, double[:, ::1] dg_pe, double[:, ::1] u_pc,
                             double[:, ::1] jac_pf3) noexcept nogil:
    """The Jacobian of ``nq <= RED_MOM_CH`` pairs ``pq`` seeing the moment weights ``W`` [n_e, nm] and ``G``
    [n_e, nm, 3]: per pair and eta, P1[e, n] = sum over the monomials al of degree n of W[e, al] u^al and
    P2[e, n + 1, m] likewise with G[e, al, m] (monomials are ordered by degree: block n starts at
    n (n + 1) (n + 2) / 6), computed over the chunk's pair slots (vectorised; each slot sums in monomial order),
    then the radial and angular parts per descriptor."""
    cdef Py_ssize_t q, e, al, n, m, f, lo, hi, par, ax, nqp, p, col
    cdef Py_ssize_t z1 = zmax + 1
    cdef double wv, gx, gy, gz, t, g, dg, ir, rad, coef, fac
    cdef double gr[3]
    cdef double uq[3 * RED_MOM_CH]
    cdef double monoq[RED_MOM_M * RED_MOM_CH]
    cdef double P1q[RED_MOM_E * (RED_MOM_Z + 1) * RED_MOM_CH]
    cdef double P2q[RED_MOM_E * (RED_MOM_Z + 1) * 3 * RED_MOM_CH]
    cdef double* s1
    cdef double* s2
    nqp = ((nq + RED_MOM_L - 1) // RED_MOM_L) * RED_MOM_L
    for q in range(nq):
        for m in range(3):
            uq[m * RED_MOM_CH + q] = u_pc[pq[q], m]
    for q in range(nq, nqp):
        for m in range(3):
            uq[m * RED_MOM_CH + q] = 0.0
    _chunk_monomials(nqp, nm, parent_m, axis_m, uq, monoq)
    for e in range(n_e):
        for m in range(3):
            s2 = &P2q[((e * z1) * 3 + m) * RED_MOM_CH]
            for q in range(nqp):
                s2[q] = 0.0
        for n in range(zmax + 1):
            lo = n * (n + 1) * (n + 2) // 6
            hi = (n + 1) * (n + 2) * (n + 3) // 6
            s1 = &P1q[(e * z1 + n) * RED_MOM_CH]
            for q in range(nqp):
                s1[q] = 0.0
            for al in range(lo, hi):
                wv = W[e * nm + al]
                for q in range(nqp):
                    s1[q] = s1[q] + wv * monoq[al * RED_MOM_CH + q]
            if n < zmax:
                for m in range(3):
                    s2 = &P2q[(((e * z1 + n + 1) * 3) + m) * RED_MOM_CH]
                    for q in range(nqp):
                        s2[q] = 0.0
                    for al in range(lo, hi):
                        gx = G[(e * nm + al) * 3 + m]
                        for q in range(nqp):
                            s2[q] = s2[q] + gx * monoq[al * RED_MOM_CH + q]
    fac = 2.0 if same else 1.0
    for q in range(nq):
        p = pq[q]
        ir = 1.0 / d_p[p]
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
                rad = rad + coef * (dg - n * g * ir) * P1q[(e * z1 + n) * RED_MOM_CH + q]
                for m in range(3):
                    gr[m] += coef * g * ir * P2q[(((e * z1 + n) * 3) + m) * RED_MOM_CH + q]
            if same:
                rad = rad - 2.0 * sumcoef_f[f] * g * dg
            col = 3 * cols[f]
            for m in range(3):
                jac_pf3[p, col + m] += rad * uq[m * RED_MOM_CH + q] + gr[m]


def batch_moment_reduce(double a, const double[::1] eta_e, const double[:, ::1] coefn_fn,
                        const double[::1] sumcoef_f, const int32_t[::1] nmono_f, const int32_t[::1] e_f,
                        const int32_t[::1] cols, const int32_t[::1] deg_m, const double[::1] w_m,
                        const int32_t[::1] parent_m, const int32_t[::1] axis_m, const int32_t[:, ::1] plus_m3,
                        const double[:, ::1] gw_m3, const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                        const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb, int sc,
                        double[:, ::1] g_pe, double[:, ::1] dg_pe, double[:, ::1] u_pc,
                        double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad, int n_threads,
                        int pair_fam=-1, const double[:, ::1] pair_par=None, const int32_t[::1] pair_cols=None,
                        double pair_a=0.0, int pair_sa=-1, int pair_sb=-1, bint zero_jac=False):
    """Accumulate Behler type 5 descriptors with integer zeta <= 8 through angular moments.

    ``coefn_fn[f, n] = 2^(1 - zeta) epsilon C(zeta, n) l^n`` (0 for n > zeta),
    ``sumcoef_f[f] = sum_n coefn_fn[f, n]``, ``nmono_f[f]`` monomials of degree <= zeta_f,
    ``e_f[f]`` index into ``eta_e`` (at most 4 distinct), output column ``cols[f]``;
    ``plus_m3[al, m]`` index of monomial al + e_m, ``gw_m3[al, m]`` = its weight times its exponent of m.
    ``g_pe``/``dg_pe`` [P, n_eta] and ``u_pc`` [P, 3] are scratch.

    In the same sweep over the atoms (one parallel region; an atom's pairs are read once and its Jacobian rows
    stay in cache): with ``pair_fam`` >= 0, the batched pair descriptors of ``batch_pair_reduce`` (family
    ``pair_fam``, ``pair_par`` [F', >= 2], columns ``pair_cols`` [F'], F' <= 64, cutoff ``pair_a``, tag
    ``pair_sa-pair_sb``) first, and before them, with ``zero_jac`` and ``grad``, every row of ``jac`` set to 0
    (all columns, the pairs of every atom). Each output column is written by one of the two, so the results
    are those of the separate calls.

    Atoms go to the threads in chunks of 32 taken as threads become free (an atom's outputs do not depend on
    the thread, so neither do the results): a thread that wakes late or is preempted delays little.
    """
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    cdef bint with_pairs = pair_fam >= 0
    if with_pairs and (pair_par is None or pair_cols is None or pair_cols.shape[0] > RED_MAX_GROUP
                       or pair_par.shape[0] != pair_cols.shape[0] or pair_par.shape[1] < 2):
        raise ValueError(f"pair_par [F, >= 2] and pair_cols [F] with F <= {RED_MAX_GROUP} descriptors")
    if grad and zero_jac and jac_pf3.shape[0] != indptr[n]:
        raise ValueError("zero_jac: jac must have one row per pair of indptr")
    zero_jac = zero_jac and grad
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="dynamic", chunksize=32):
        if zero_jac:
            _zero_atom_rows(i, indptr, jac_pf3)
        if with_pairs and _match(spec_n[i], pair_sa):
            _batch_pair_atom(i, pair_fam, pair_par, pair_cols, pair_a, indptr, j_p, d_p, D_pc, spec_n, pair_sb,
                             values_nf, jac_pf3, grad)
        if _match(spec_n[i], sa):
            _moment_atom(i, a, eta_e, coefn_fn, sumcoef_f, nmono_f, e_f, cols, deg_m, w_m, parent_m, axis_m,
                         plus_m3, gw_m3, indptr, j_p, d_p, D_pc, spec_n, sb, sc, g_pe, dg_pe, u_pc,
                         values_nf, jac_pf3, grad)
