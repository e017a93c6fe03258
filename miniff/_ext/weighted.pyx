# cython: language_level=3
"""Element-weighted descriptors of miniff's compiled core (private): the weighted radial and angular
symmetry functions (wACSF, n2p2's types 12 and 13) in batches sharing one cutoff and one weight table.

Every neighbour contributes whatever its species, multiplied by the weight of its species in the descriptor's
weight table ("channel"): ``weight_cs[c_f[f], spec_n[j]]``; descriptors of several tables share one pass. A
neighbour whose weights are all 0 is skipped. Same rules as ``pair.pyx``: prange over centre
atoms, a pair's Jacobian written only by the thread owning its centre atom (results independent of the thread
count), accumulation into preallocated outputs, pairs with ``d_p >= a`` skipped. The def functions check
shapes and index ranges; the formulas are in miniff/potentials/weighted.py and docs/formulas.md.
"""

from libc.math cimport exp, sqrt
from libc.stdint cimport int32_t, int64_t
from cython.parallel cimport prange

from miniff._ext.common cimport (
    RED_EXP_FLOOR, RED_MAX_GROUP, _cosine_cutoff, _match, _weighted_pair, _weighted_pair_setup,
)
from miniff._ext.pair cimport _check_indptr
from miniff._ext.triplets cimport (
    _triplet_angles, _triplet_first, _triplet_flush, _triplet_r3, _triplet_radial, _triplet_terms,
    _triplet_values,
)
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["batch_weighted_radial_reduce", "batch_weighted_angular_reduce"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


cdef inline void _gauss_cutoff(double r, double eta, double rs, double fc, double dfc, double* g,
                               double* dg) noexcept nogil:
    """g = exp(-eta (r - rs)^2) f_c(r) and dg/dr, given f_c(r) and its derivative."""
    cdef double t = r - rs
    cdef double x = -eta * t * t
    cdef double ex
    if x < RED_EXP_FLOOR:
        g[0] = 0.0
        dg[0] = 0.0
        return
    ex = exp(x)
    g[0] = ex * fc
    dg[0] = ex * (dfc - 2.0 * eta * t * fc)


cdef int _check_common(const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                       const double[:, ::1] D_pc, const int32_t[::1] spec_n, const int32_t[::1] cols,
                       const int32_t[::1] c_f, const double[:, ::1] weight_cs, double[:, ::1] values_nf,
                       double[:, ::1] jac_pf3, bint grad, int n_threads) except -1:
    cdef Py_ssize_t f, n = indptr.shape[0] - 1
    cdef Py_ssize_t n_pairs = j_p.shape[0]
    if weight_cs.shape[0] < 1 or weight_cs.shape[0] > RED_MAX_GROUP:
        raise ValueError(f"weight_cs must hold 1 to {RED_MAX_GROUP} weight tables")
    if c_f.shape[0] != cols.shape[0]:
        raise ValueError("c_f and cols must have the same length")
    for f in range(cols.shape[0]):
        if c_f[f] < 0 or c_f[f] >= weight_cs.shape[0]:
            raise ValueError("c_f must index the rows of weight_cs")
    if n < 0 or spec_n.shape[0] != n or values_nf.shape[0] != n:
        raise ValueError("indptr, spec_n and values_nf disagree on the number of atoms")
    if d_p.shape[0] != n_pairs or D_pc.shape[0] != n_pairs or D_pc.shape[1] != 3:
        raise ValueError("j_p, d_p and D_pc disagree on the number of pairs")
    if cols.shape[0] > RED_MAX_GROUP:
        raise ValueError(f"at most {RED_MAX_GROUP} descriptors per call")
    for f in range(cols.shape[0]):
        if cols[f] < 0 or cols[f] >= values_nf.shape[1]:
            raise ValueError("cols must index columns of values_nf")
        if grad and 3 * cols[f] + 2 >= jac_pf3.shape[1]:
            raise ValueError("cols must index columns of jac_pf3 (3 per descriptor)")
    if grad and jac_pf3.shape[0] != n_pairs:
        raise ValueError("jac_pf3 must have one row per pair")
    _check_indptr(indptr, n_pairs, n_threads)
    return 0


cdef int _check_pair_scratch(Py_ssize_t n_pairs, const double[:, ::1] u_pc, const double[:, ::1] w_pc,
                             const int64_t[::1] sel_p, Py_ssize_t n_tables) except -1:
    """The scratch buffers of the weighted triplet loops (see ``_weighted_pair_setup``): ``u_pc`` [P, 3],
    ``w_pc`` [P, >= n_tables], ``sel_p`` [P]."""
    if u_pc.shape[0] != n_pairs or u_pc.shape[1] != 3 or w_pc.shape[0] != n_pairs or w_pc.shape[1] < n_tables \
            or sel_p.shape[0] != n_pairs:
        raise ValueError("scratch buffers must have one row per pair")
    return 0


# ---------------------------------------------------------------------------------------------
# Weighted radial: value_f = sum_j w_{c_f, j} exp(-eta_f (r_ij - rs_f)^2) f_c(r_ij)
# ---------------------------------------------------------------------------------------------

cdef void _radial_atom(Py_ssize_t i, Py_ssize_t n, double a, const double[::1] eta_f, const double[::1] rs_f,
                       const int32_t[::1] cols, const int32_t[::1] c_f, const double[:, ::1] weight_cs,
                       const int64_t[::1] indptr,
                       const int32_t[::1] j_p, const double[::1] d_p, const double[:, ::1] D_pc,
                       const int32_t[::1] spec_n, double[:, ::1] values_nf, double[:, ::1] jac_pf3,
                       bint grad) noexcept nogil:
    cdef Py_ssize_t p, f, m, col
    cdef Py_ssize_t n_f = cols.shape[0]
    cdef double r, w, fc, dfc, g, dg, t
    cdef double acc[RED_MAX_GROUP]
    cdef double wc[RED_MAX_GROUP]
    for f in range(n_f):
        acc[f] = 0.0
    for p in range(indptr[i], indptr[i + 1]):
        if not _weighted_pair(p, a, weight_cs, spec_n, j_p, d_p, n, wc, &fc, &dfc):
            continue
        r = d_p[p]
        for f in range(n_f):
            w = wc[c_f[f]]
            _gauss_cutoff(r, eta_f[f], rs_f[f], fc, dfc, &g, &dg)
            acc[f] += w * g
            if grad:
                t = w * dg / r
                col = 3 * cols[f]
                for m in range(3):
                    jac_pf3[p, col + m] += t * D_pc[p, m]
    for f in range(n_f):
        values_nf[i, cols[f]] += acc[f]


def batch_weighted_radial_reduce(double a, const double[::1] eta_f, const double[::1] rs_f,
                                 const int32_t[::1] cols, const int32_t[::1] c_f, const double[:, ::1] weight_cs,
                                 const int64_t[::1] indptr,
                                 const int32_t[::1] j_p, const double[::1] d_p, const double[:, ::1] D_pc,
                                 const int32_t[::1] spec_n, int sa, double[:, ::1] values_nf,
                                 double[:, ::1] jac_pf3, bint grad, int n_threads):
    """Accumulate F <= 64 weighted radial descriptors of the centre species ``sa`` sharing the cutoff ``a``.

    ``values_nf[i, cols[f]] += sum_j weight_cs[c_f[f], spec_n[j]] exp(-eta_f[f] (r_ij - rs_f[f])^2) f_c(r_ij)``
    and, with ``grad``, the derivative by every pair vector into ``jac_pf3[p, 3 cols[f] : 3 cols[f] + 3]``.
    ``weight_cs`` [C, n_species] holds C <= 64 weight tables.
    """
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    if eta_f.shape[0] != cols.shape[0] or rs_f.shape[0] != cols.shape[0]:
        raise ValueError("eta_f, rs_f and cols must have the same length")
    _check_common(indptr, j_p, d_p, D_pc, spec_n, cols, c_f, weight_cs, values_nf, jac_pf3, grad, n_threads)
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="guided"):
        if _match(spec_n[i], sa):
            _radial_atom(i, n, a, eta_f, rs_f, cols, c_f, weight_cs, indptr, j_p, d_p, D_pc, spec_n, values_nf,
                         jac_pf3, grad)


# ---------------------------------------------------------------------------------------------
# Weighted angular over unordered neighbour pairs j < k (every neighbour species):
# value_f = pref_f sum_{j<k} w_{c_f, j} w_{c_f, k} (1 + l_k cos)^zeta_k g_e(r_ij) g_e(r_ik) g_e(r_jk),
# g_e(r) = exp(-eta_e (r - rs_e)^2) f_c(r), terms with r_jk >= a skipped
# ---------------------------------------------------------------------------------------------

cdef void _angular_atom(Py_ssize_t i, Py_ssize_t n, double a, const double[::1] eta_e, const double[::1] rs_e,
                        const double[::1] l_k, const double[::1] zeta_k, const int32_t[::1] izeta_k,
                        const int32_t[::1] e_f, const int32_t[::1] k_f, const double[::1] pref_f,
                        const int32_t[::1] cols, const int32_t[::1] c_f, const double[:, ::1] weight_cs,
                        const int64_t[::1] indptr,
                        const int32_t[::1] j_p, const double[::1] d_p, const double[:, ::1] D_pc,
                        const int32_t[::1] spec_n, double[:, ::1] g_pe, double[:, ::1] dg_pe,
                        double[:, ::1] u_pc, double[:, ::1] w_pc, int64_t[::1] sel_p, double[:, ::1] values_nf,
                        double[:, ::1] jac_pf3, bint grad) noexcept nogil:
    cdef Py_ssize_t p, p1, p2, x1, x2, e, f, m
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef Py_ssize_t n_e = eta_e.shape[0]
    cdef Py_ssize_t n_k = l_k.shape[0]
    cdef Py_ssize_t n_f = cols.shape[0]
    cdef Py_ssize_t n_c = weight_cs.shape[0]
    cdef Py_ssize_t nsel = 0, ch
    cdef double r, fc, dfc, r1, ir1, r3, c
    cdef double fc3, dfc3
    cdef double u1[3]
    cdef double u2[3]
    cdef double w3[3]
    cdef double lg1[RED_MAX_GROUP]
    cdef double ldg1[RED_MAX_GROUP]
    cdef double h3[RED_MAX_GROUP]
    cdef double dh3[RED_MAX_GROUP]
    cdef double gg[RED_MAX_GROUP]
    cdef double rr1[RED_MAX_GROUP]
    cdef double rr2[RED_MAX_GROUP]
    cdef double rr3[RED_MAX_GROUP]
    cdef double ang[RED_MAX_GROUP]
    cdef double dang[RED_MAX_GROUP]
    cdef double vacc[RED_MAX_GROUP]
    cdef double sa1[RED_MAX_GROUP]
    cdef double sb1[3 * RED_MAX_GROUP]
    cdef double ww[RED_MAX_GROUP]
    cdef double wf[RED_MAX_GROUP]

    # usable pairs of atom i (inside the cutoff, non-zero weight): unit vectors, weights, radial factors
    for p in range(p0, pe):
        if not _weighted_pair_setup(p, a, weight_cs, spec_n, j_p, d_p, D_pc, n, u_pc, w_pc, &fc, &dfc):
            continue
        r = d_p[p]
        for e in range(n_e):
            _gauss_cutoff(r, eta_e[e], rs_e[e], fc, dfc, &g_pe[p, e], &dg_pe[p, e])
        sel_p[p0 + nsel] = p
        nsel = nsel + 1

    for f in range(n_f):
        vacc[f] = 0.0
    for x1 in range(nsel):
        p1 = sel_p[p0 + x1]
        ir1 = _triplet_first(p1, n_e, n_f, d_p, u_pc, g_pe, dg_pe, u1, lg1, ldg1, sa1, sb1, grad)
        for x2 in range(x1 + 1, nsel):
            p2 = sel_p[p0 + x2]
            r3 = _triplet_r3(D_pc, p1, p2, a, w3)
            if r3 >= a:
                continue
            for ch in range(n_c):
                ww[ch] = w_pc[p1, ch] * w_pc[p2, ch]
            for f in range(n_f):
                wf[f] = pref_f[f] * ww[c_f[f]]
            _cosine_cutoff(r3, a, &fc3, &dfc3)
            for e in range(n_e):
                _gauss_cutoff(r3, eta_e[e], rs_e[e], fc3, dfc3, &h3[e], &dh3[e])
            for m in range(3):
                u2[m] = u_pc[p2, m]
            c = u1[0] * u2[0] + u1[1] * u2[1] + u1[2] * u2[2]
            _triplet_radial(n_e, lg1, ldg1, &g_pe[p2, 0], &dg_pe[p2, 0], h3, dh3, True, grad, gg, rr1, rr2, rr3)
            _triplet_angles(n_k, l_k, zeta_k, izeta_k, c, ang, dang)
            if grad:
                _triplet_terms(n_f, e_f, k_f, wf, cols, gg, rr1, rr2, rr3, ang, dang, c, ir1, 1.0 / d_p[p2],
                               u1, u2, w3, True, vacc, sa1, sb1, &jac_pf3[p2, 0])
            else:
                _triplet_values(n_f, e_f, k_f, wf, gg, ang, vacc)
        if grad:
            _triplet_flush(n_f, cols, sa1, sb1, u1, &jac_pf3[p1, 0])
    for f in range(n_f):
        values_nf[i, cols[f]] += vacc[f]


def batch_weighted_angular_reduce(double a, const double[::1] eta_e, const double[::1] rs_e,
                                  const double[::1] l_k, const double[::1] zeta_k, const int32_t[::1] izeta_k,
                                  const int32_t[::1] e_f, const int32_t[::1] k_f, const double[::1] pref_f,
                                  const int32_t[::1] cols, const int32_t[::1] c_f,
                                  const double[:, ::1] weight_cs,
                                  const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                                  const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa,
                                  double[:, ::1] g_pe, double[:, ::1] dg_pe, double[:, ::1] u_pc,
                                  double[:, ::1] w_pc, int64_t[::1] sel_p, double[:, ::1] values_nf,
                                  double[:, ::1] jac_pf3, bint grad, int n_threads):
    """Accumulate F <= 64 weighted angular descriptors of the centre species ``sa`` sharing the cutoff ``a``.

    Descriptor ``f`` uses the radial pair ``(eta_e, rs_e)[e_f[f]]``, the angular pair ``(l_k, zeta_k)[k_f[f]]``
    (``izeta_k`` = zeta for integers in [0, 64], else -1), the prefactor ``pref_f[f]`` (``2^(1 - zeta) epsilon``
    times 2: each unordered neighbour pair is visited once), the weight table ``weight_cs[c_f[f]]`` (C <= 64
    tables of [n_species]) and the output column ``cols[f]``. At most 64 descriptors, 64 distinct radial and 64
    distinct angular pairs. ``g_pe``/``dg_pe`` [P, n_e], ``u_pc`` [P, 3], ``w_pc`` [P, C] and ``sel_p`` [P] are
    scratch buffers.
    """
    cdef Py_ssize_t f, i, n = indptr.shape[0] - 1
    cdef Py_ssize_t n_pairs = j_p.shape[0]
    cdef Py_ssize_t n_e = eta_e.shape[0]
    cdef Py_ssize_t n_k = l_k.shape[0]
    if n_e > RED_MAX_GROUP or n_k > RED_MAX_GROUP or rs_e.shape[0] != n_e or zeta_k.shape[0] != n_k \
            or izeta_k.shape[0] != n_k:
        raise ValueError(f"at most {RED_MAX_GROUP} radial pairs (eta_e, rs_e) and angular pairs (l_k, zeta_k, "
                         "izeta_k) of equal lengths")
    if e_f.shape[0] != cols.shape[0] or k_f.shape[0] != cols.shape[0] or pref_f.shape[0] != cols.shape[0]:
        raise ValueError("e_f, k_f, pref_f and cols must have the same length")
    for f in range(cols.shape[0]):
        if e_f[f] < 0 or e_f[f] >= n_e or k_f[f] < 0 or k_f[f] >= n_k:
            raise ValueError("e_f and k_f must index the radial and angular pairs")
    if g_pe.shape[0] != n_pairs or dg_pe.shape[0] != n_pairs or g_pe.shape[1] < n_e or dg_pe.shape[1] < n_e:
        raise ValueError("scratch buffers must have one row per pair")
    _check_pair_scratch(n_pairs, u_pc, w_pc, sel_p, weight_cs.shape[0])
    _check_common(indptr, j_p, d_p, D_pc, spec_n, cols, c_f, weight_cs, values_nf, jac_pf3, grad, n_threads)
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="guided"):
        if _match(spec_n[i], sa):
            _angular_atom(i, n, a, eta_e, rs_e, l_k, zeta_k, izeta_k, e_f, k_f, pref_f, cols, c_f, weight_cs,
                          indptr, j_p, d_p, D_pc, spec_n, g_pe, dg_pe, u_pc, w_pc, sel_p, values_nf, jac_pf3, grad)
