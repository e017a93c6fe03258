# cython: language_level=3
"""Triplet potentials of miniff's compiled core (private): Stillinger-Weber 3, Behler 5x (``triple_reduce``)
and SW2 + SW3 fused in one pass over the pairs (``sw_reduce``). Same rules as ``pair.pyx``, whose argument
checks (``pair.pxd``) it uses.
"""

# SW3 and Behler 5x are both  F(cos) * R(r1, r2)  with R built from per-pair radial functions, so for every
# centre atom the radial factors, unit vectors and 1/r of its usable pairs are computed once into a per-thread
# scratch row (RED_TS doubles per pair). Both angular parts are quadratics in cos, so the sums over (j, k)
# follow from angular moments of the row in O(neighbours) (``_sw3_atom``, optionally with the SW2 pair term
# in the same pass; ``_b5x_atom``), and each pair's gradient is written once.

from libc.math cimport exp
from libc.stdint cimport int32_t, int64_t
from cython.parallel cimport prange, threadid

import numpy as np

from miniff._ext.common cimport (
    RED_PAIR_SW2, RED_TRIPLE_SW3, RED_TRIPLE_BEHLER5X, RED_EXP_FLOOR, SW2Const, _match, _nb_spec,
    _cosine_cutoff, _sw2_const, _sw2_term,
)
from miniff._ext.pair cimport _check_reduce_args
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["triple_reduce", "sw_reduce"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


cdef enum:
    RED_TS = 12  # scratch doubles per pair: u[3], 1/r, A, dA/dr, B, dB/dr, grad[3], spare


cdef inline void _zero_row(double* grad_pc, Py_ssize_t p0, Py_ssize_t pe) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(3 * p0, 3 * pe):
        grad_pc[k] = 0.0


cdef void _sw3_atom(Py_ssize_t i, Py_ssize_t n, const double* par, double cutoff, int sb, int sc,
                    const double* par2, double cutoff2, int sb2,
                    const int64_t* indptr, const int32_t* j_p, const double* d_p, const double* D_pc,
                    const int32_t* spec_n, double* energy_n, double* grad_pc, bint grad, bint zero_first,
                    double* w, int64_t* wp, int32_t* wf) noexcept nogil:
    """Stillinger-Weber 3 of centre atom ``i`` in O(neighbours) with angular moments, plus (when ``par2`` is
    not NULL) the SW2 pair term of the same centre in the same pass over its pairs.

    E_i = eps l sum_{j in B, k in C, j != k} (u_j.u_k - c0)^2 A_j A_k,  A(r) = exp(gamma / (r / sigma - a)),
    B / C the usable pairs with neighbour species sb / sc. With the moments of a set X,
    M_X = sum A_j, m_X = sum A_j u_j, Q_X = sum A_j u_j u_j^T, the double sum over all (j, k) is
    Q_B : Q_C - 2 c0 m_B . m_C + c0^2 M_B M_C, minus the diagonal (1 - c0)^2 sum_{j in B and C} A_j^2.
    Per pair j the gradient follows from dE/dA_j and dE/du_j (projected on the plane normal to u_j).
    SW2 (``par2`` as in ``_sw2_const``) adds its terms for pairs with r < cutoff2 and neighbour species sb2.
    With ``zero_first`` the gradients of the row are set to 0 first (overwrite instead of accumulate).
    Scratch of this thread: ``w`` [row * RED_TS], ``wp``, ``wf`` [row].
    """
    cdef Py_ssize_t p, m, nm = 0
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef bint same = sb == sc
    cdef bint has2 = par2 != NULL
    cdef int32_t s, fl
    cdef double kk = par[0] * par[2]
    cdef double c0 = par[4]
    cdef double isig = 1.0 / par[1]
    cdef double gam = par[3]
    cdef double asw = par[5]
    cdef double d1 = (1.0 - c0) * (1.0 - c0)
    cdef double r, ir, ix, arg, ex, ux, uy, uz, e, e2 = 0.0, g2 = 0.0
    cdef double gA, vx, vy, vz, qx, qy, qz, vu, ga, gb
    cdef double mb0 = 0.0, mbx = 0.0, mby = 0.0, mbz = 0.0
    cdef double qbxx = 0.0, qbyy = 0.0, qbzz = 0.0, qbxy = 0.0, qbxz = 0.0, qbyz = 0.0
    cdef double mc0 = 0.0, mcx = 0.0, mcy = 0.0, mcz = 0.0
    cdef double qcxx = 0.0, qcyy = 0.0, qczz = 0.0, qcxy = 0.0, qcxz = 0.0, qcyz = 0.0
    cdef double diag = 0.0
    cdef double* w1
    cdef SW2Const k2
    cdef bint share = False  # SW2 and SW3 with the same sigma and a share 1 / (r / sigma - a)
    if has2:
        k2 = _sw2_const(par2)
        share = par2[1] == par[1] and par2[2] == par[5]
    if grad and zero_first:
        _zero_row(grad_pc, p0, pe)
    # 1. usable pairs: unit vector, 1/r, A, dA/dr, SW2 gradient / r; moments of the sets B and C
    for p in range(p0, pe):
        r = d_p[p]
        if r >= cutoff and not (has2 and r < cutoff2):
            continue
        s = _nb_spec(spec_n, j_p[p], n)
        fl = 0
        ix = 0.0
        if r < cutoff:
            if sb < 0 or s == sb:
                fl = 1
            if sc < 0 or s == sc:
                fl = fl | 2
            if fl:
                ix = 1.0 / (r * isig - asw)
                arg = gam * ix
                if arg < RED_EXP_FLOOR:  # at the cutoff: A and dA/dr vanish
                    fl = 0
        if has2 and r < cutoff2 and (sb2 < 0 or s == sb2):
            fl = fl | 4
        if fl == 0:
            continue
        ir = 1.0 / r
        if fl & 4:
            e2 = e2 + _sw2_term(&k2, r, ir, ix if share else 0.0, &g2)
        ux = D_pc[3 * p] * ir
        uy = D_pc[3 * p + 1] * ir
        uz = D_pc[3 * p + 2] * ir
        w1 = w + RED_TS * nm
        w1[0] = ux
        w1[1] = uy
        w1[2] = uz
        w1[3] = ir
        w1[6] = g2 * r if fl & 4 else 0.0  # SW2 dE/dr
        wp[nm] = p
        wf[nm] = fl
        nm = nm + 1
        if not (fl & 3):
            continue
        ex = exp(arg)
        w1[4] = ex
        w1[5] = -ex * arg * ix * isig
        if fl & 1:
            mb0 += ex
            mbx += ex * ux
            mby += ex * uy
            mbz += ex * uz
            qbxx += ex * ux * ux
            qbyy += ex * uy * uy
            qbzz += ex * uz * uz
            qbxy += ex * ux * uy
            qbxz += ex * ux * uz
            qbyz += ex * uy * uz
        if not same and (fl & 2):
            mc0 += ex
            mcx += ex * ux
            mcy += ex * uy
            mcz += ex * uz
            qcxx += ex * ux * ux
            qcyy += ex * uy * uy
            qczz += ex * uz * uz
            qcxy += ex * ux * uy
            qcxz += ex * ux * uz
            qcyz += ex * uy * uz
        if (fl & 3) == 3:
            diag += ex * ex
    if nm == 0:
        return
    if same:
        mc0 = mb0
        mcx = mbx
        mcy = mby
        mcz = mbz
        qcxx = qbxx
        qcyy = qbyy
        qczz = qbzz
        qcxy = qbxy
        qcxz = qbxz
        qcyz = qbyz
    e = (qbxx * qcxx + qbyy * qcyy + qbzz * qczz + 2.0 * (qbxy * qcxy + qbxz * qcxz + qbyz * qcyz)
         - 2.0 * c0 * (mbx * mcx + mby * mcy + mbz * mcz) + c0 * c0 * mb0 * mc0 - d1 * diag)
    energy_n[i] += e2 + kk * e
    if not grad:
        return
    # 2. per pair: dE/dA (u fixed) and dE/du (A fixed), then dE/dD = dE/dA A' u + (1 - u u^T) dE/du / r
    for m in range(nm):
        w1 = w + RED_TS * m
        ux = w1[0]
        uy = w1[1]
        uz = w1[2]
        fl = wf[m]
        ga = w1[6]
        vx = 0.0
        vy = 0.0
        vz = 0.0
        gb = 0.0
        if fl & 3:
            ex = w1[4]
            gA = 0.0
            if fl & 1:  # j in B pairs with the set C
                qx = qcxx * ux + qcxy * uy + qcxz * uz - c0 * mcx
                qy = qcxy * ux + qcyy * uy + qcyz * uz - c0 * mcy
                qz = qcxz * ux + qcyz * uy + qczz * uz - c0 * mcz
                gA += qx * ux + qy * uy + qz * uz - c0 * (mcx * ux + mcy * uy + mcz * uz) + c0 * c0 * mc0
                vx += qx
                vy += qy
                vz += qz
                if same and (fl & 2):  # B = C: the same terms again
                    gA += gA
                    vx += vx
                    vy += vy
                    vz += vz
            if (fl & 2) and not (same and (fl & 1)):  # j in C pairs with the set B
                qx = qbxx * ux + qbxy * uy + qbxz * uz - c0 * mbx
                qy = qbxy * ux + qbyy * uy + qbyz * uz - c0 * mby
                qz = qbxz * ux + qbyz * uy + qbzz * uz - c0 * mbz
                gA += qx * ux + qy * uy + qz * uz - c0 * (mbx * ux + mby * uy + mbz * uz) + c0 * c0 * mb0
                vx += qx
                vy += qy
                vz += qz
            if (fl & 3) == 3:
                gA -= 2.0 * d1 * ex
            # dE/du = 2 kk A v: its part normal to u, divided by r
            gb = 2.0 * kk * ex * w1[3]
            vu = vx * ux + vy * uy + vz * uz
            vx -= vu * ux
            vy -= vu * uy
            vz -= vu * uz
            ga += kk * gA * w1[5]
        p = wp[m]
        grad_pc[3 * p] += ga * ux + gb * vx
        grad_pc[3 * p + 1] += ga * uy + gb * vy
        grad_pc[3 * p + 2] += ga * uz + gb * vz


cdef inline void _mom_add(double* m, double w, double ux, double uy, double uz) noexcept nogil:
    """Angular moments m = (M, m_x, m_y, m_z, Q_xx, Q_yy, Q_zz, Q_xy, Q_xz, Q_yz) += w (1, u, u u^T)."""
    m[0] += w
    m[1] += w * ux
    m[2] += w * uy
    m[3] += w * uz
    m[4] += w * ux * ux
    m[5] += w * uy * uy
    m[6] += w * uz * uz
    m[7] += w * ux * uy
    m[8] += w * ux * uz
    m[9] += w * uy * uz


cdef inline double _mom_dot(const double* x, const double* y, double c0) noexcept nogil:
    """sum_{j in X, k in Y} w_j w_k (u_j.u_k - c0)^2 = Q_X : Q_Y - 2 c0 m_X.m_Y + c0^2 M_X M_Y."""
    return (x[4] * y[4] + x[5] * y[5] + x[6] * y[6] + 2.0 * (x[7] * y[7] + x[8] * y[8] + x[9] * y[9])
            - 2.0 * c0 * (x[1] * y[1] + x[2] * y[2] + x[3] * y[3]) + c0 * c0 * x[0] * y[0])


cdef inline double _mom_apply(const double* y, double ux, double uy, double uz, double c0, double* q) noexcept nogil:
    """q = Q_Y u - c0 m_Y; returns sum_{k in Y} w_k (u.u_k - c0)^2 = u.q - c0 m_Y.u + c0^2 M_Y."""
    q[0] = y[4] * ux + y[7] * uy + y[8] * uz - c0 * y[1]
    q[1] = y[7] * ux + y[5] * uy + y[9] * uz - c0 * y[2]
    q[2] = y[8] * ux + y[9] * uy + y[6] * uz - c0 * y[3]
    return q[0] * ux + q[1] * uy + q[2] * uz - c0 * (y[1] * ux + y[2] * uy + y[3] * uz) + c0 * c0 * y[0]


cdef void _b5x_atom(Py_ssize_t i, Py_ssize_t n, const double* par, double cutoff,
                    const int64_t* indptr, const int32_t* j_p, const double* d_p, const double* D_pc,
                    const int32_t* spec_n, int sb, int sc, double* energy_n, double* grad_pc, bint grad,
                    double* w, int64_t* wp, int32_t* wf) noexcept nogil:
    """Behler 5x of centre atom ``i`` (par: a, eta1, eta2, cos_theta0, epsilon) in O(neighbours):

    E_i = eps / 4 sum_{j in B, k in C, j != k} (c_jk - c0)^2 (a_j b_k + b_j a_k),
    a = exp(-eta1 r^2) f_c(r), b = exp(-eta2 r^2) f_c(r), B / C the usable pairs of neighbour species sb / sc.
    With angular moments (``_mom_add``) of the weights a and b over B and C the double sum is
    dot(aB, bC) + dot(bB, aC) (``_mom_dot``) minus the diagonal 2 (1 - c0)^2 sum_{j in B and C} a_j b_j; the
    gradient of pair j follows from dE/da_j, dE/db_j and dE/du_j (projected normal to u_j).
    Scratch of this thread: ``w`` [row * RED_TS] (u, 1/r, a, a', b, b'), ``wp``, ``wf`` [row].
    """
    cdef Py_ssize_t p, m, k, nm = 0
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef bint same = sb == sc
    cdef int32_t s, fl
    cdef double kk = 0.25 * par[4]
    cdef double c0 = par[3]
    cdef double eta1 = par[1]
    cdef double eta2 = par[2]
    cdef double d1 = (1.0 - c0) * (1.0 - c0)
    cdef double r, ir, fc, dfc, ea, eb, aw, bw, ux, uy, uz, e, diag = 0.0
    cdef double dEa, dEb, vx, vy, vz, vu, s1, s2, ga, gb
    cdef double mba[10]
    cdef double mbb[10]
    cdef double mca[10]
    cdef double mcb[10]
    cdef double q1[3]
    cdef double q2[3]
    cdef double* pca = mca
    cdef double* pcb = mcb
    cdef double* w1
    for k in range(10):
        mba[k] = 0.0
        mbb[k] = 0.0
        mca[k] = 0.0
        mcb[k] = 0.0
    if same:
        pca = mba
        pcb = mbb
    for p in range(p0, pe):
        r = d_p[p]
        if r >= cutoff:
            continue
        s = _nb_spec(spec_n, j_p[p], n)
        fl = 0
        if sb < 0 or s == sb:
            fl = 1
        if sc < 0 or s == sc:
            fl = fl | 2
        if fl == 0:
            continue
        _cosine_cutoff(r, par[0], &fc, &dfc)
        ea = exp(-eta1 * r * r)
        eb = exp(-eta2 * r * r)
        ir = 1.0 / r
        ux = D_pc[3 * p] * ir
        uy = D_pc[3 * p + 1] * ir
        uz = D_pc[3 * p + 2] * ir
        aw = ea * fc
        bw = eb * fc
        w1 = w + RED_TS * nm
        w1[0] = ux
        w1[1] = uy
        w1[2] = uz
        w1[3] = ir
        w1[4] = aw
        w1[5] = ea * (dfc - 2.0 * eta1 * r * fc)
        w1[6] = bw
        w1[7] = eb * (dfc - 2.0 * eta2 * r * fc)
        wp[nm] = p
        wf[nm] = fl
        nm = nm + 1
        if fl & 1:
            _mom_add(mba, aw, ux, uy, uz)
            _mom_add(mbb, bw, ux, uy, uz)
        if (fl & 2) and not same:
            _mom_add(mca, aw, ux, uy, uz)
            _mom_add(mcb, bw, ux, uy, uz)
        if fl == 3:
            diag += aw * bw
    if nm == 0:
        return
    e = _mom_dot(mba, pcb, c0) + _mom_dot(mbb, pca, c0) - 2.0 * d1 * diag
    energy_n[i] += kk * e
    if not grad:
        return
    for m in range(nm):
        w1 = w + RED_TS * m
        ux = w1[0]
        uy = w1[1]
        uz = w1[2]
        aw = w1[4]
        bw = w1[6]
        fl = wf[m]
        dEa = 0.0
        dEb = 0.0
        vx = 0.0
        vy = 0.0
        vz = 0.0
        if fl & 1:  # j in B: a_j pairs with b over C, b_j with a over C
            s1 = _mom_apply(pcb, ux, uy, uz, c0, q1)
            s2 = _mom_apply(pca, ux, uy, uz, c0, q2)
            dEa += s1
            dEb += s2
            vx += aw * q1[0] + bw * q2[0]
            vy += aw * q1[1] + bw * q2[1]
            vz += aw * q1[2] + bw * q2[2]
            if same and (fl & 2):  # B = C: the same terms again
                dEa += dEa
                dEb += dEb
                vx += vx
                vy += vy
                vz += vz
        if (fl & 2) and not (same and (fl & 1)):  # j in C: b_j pairs with a over B, a_j with b over B
            s1 = _mom_apply(mbb, ux, uy, uz, c0, q1)
            s2 = _mom_apply(mba, ux, uy, uz, c0, q2)
            dEa += s1
            dEb += s2
            vx += aw * q1[0] + bw * q2[0]
            vy += aw * q1[1] + bw * q2[1]
            vz += aw * q1[2] + bw * q2[2]
        if fl == 3:
            dEa -= 2.0 * d1 * bw
            dEb -= 2.0 * d1 * aw
        # dE/du = 2 kk v: its part normal to u, divided by r
        vu = vx * ux + vy * uy + vz * uz
        gb = 2.0 * kk * w1[3]
        ga = kk * (dEa * w1[5] + dEb * w1[7])
        p = wp[m]
        grad_pc[3 * p] += ga * ux + gb * (vx - vu * ux)
        grad_pc[3 * p + 1] += ga * uy + gb * (vy - vu * uy)
        grad_pc[3 * p + 2] += ga * uz + gb * (vz - vu * uz)


cdef int _triple_run(int fam, const double[::1] par, double cutoff, int sa, int sb, int sc,
                     const double* par2, double cutoff2, int sb2,
                     const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                     const double[:, ::1] D_pc, const int32_t[::1] spec_n,
                     double[::1] energy_n, double[:, ::1] grad_pc, bint grad, int n_threads,
                     bint zero_first) except -1:
    """Per-thread scratch rows, then the triplet kernel of ``fam`` over the centre atoms of species sa
    (``zero_first``, SW3 only: every row of grad_pc is overwritten instead of accumulated)."""
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    cdef Py_ssize_t row, max_row = 0
    cdef int tid, nt = max(1, n_threads)
    if n == 0 or j_p.shape[0] == 0:
        return 0
    for i in range(n):  # (indptr checked non-decreasing by _check_reduce_args)
        row = indptr[i + 1] - indptr[i]
        if row > max_row:
            max_row = row
    # per-thread scratch rows (OpenMP thread ids are < nt)
    cdef double[::1] w = np.empty(nt * max_row * RED_TS, dtype=np.float64)
    cdef int64_t[::1] wp = np.empty(nt * max_row, dtype=np.int64)
    cdef int32_t[::1] wf = np.empty(nt * max_row, dtype=np.int32)
    cdef double* pw = &w[0]
    cdef int64_t* pwp = &wp[0]
    cdef int32_t* pwf = &wf[0]
    cdef const double* ppar = &par[0]
    cdef const int64_t* pind = &indptr[0]
    cdef const int32_t* pj = &j_p[0]
    cdef const double* pd = &d_p[0]
    cdef const double* pD = &D_pc[0, 0]
    cdef const int32_t* pspec = &spec_n[0]
    cdef double* pe = &energy_n[0]
    cdef double* pg = &grad_pc[0, 0] if grad else NULL
    for i in prange(n, nogil=True, num_threads=nt, schedule="guided"):
        if _match(pspec[i], sa):
            tid = threadid()
            if fam == RED_TRIPLE_SW3:
                _sw3_atom(i, n, ppar, cutoff, sb, sc, par2, cutoff2, sb2, pind, pj, pd, pD, pspec, pe, pg, grad,
                          zero_first, pw + tid * max_row * RED_TS, pwp + tid * max_row, pwf + tid * max_row)
            else:
                _b5x_atom(i, n, ppar, cutoff, pind, pj, pd, pD, pspec, sb, sc, pe, pg, grad,
                          pw + tid * max_row * RED_TS, pwp + tid * max_row, pwf + tid * max_row)
        elif zero_first and grad:
            _zero_row(pg, pind[i], pind[i + 1])
    return 0


def triple_reduce(int fam, const double[::1] par, double cutoff,
                  const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                  const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb, int sc,
                  double[::1] energy_n, double[:, ::1] grad_pc, bint grad, int n_threads):
    """Accumulate a triplet family's per-atom energies [N] (eV) and per-pair gradients [P, 3] (eV/Å).

    The sum is over ordered neighbour pairs (j, k), j != k, j of species ``sb`` and k of species ``sc``
    (SW3 uses angular moments, O(neighbours) per atom; Behler 5x loops over unordered pairs when
    ``sb == sc``). Thread count does not change the results.
    """
    _check_reduce_args(fam, par, indptr, j_p, d_p, D_pc, spec_n, energy_n, grad_pc, grad, n_threads)
    if fam != RED_TRIPLE_SW3 and fam != RED_TRIPLE_BEHLER5X:
        raise ValueError(f"unknown triplet family code {fam}")
    _triple_run(fam, par, cutoff, sa, sb, sc, NULL, 0.0, -1, indptr, j_p, d_p, D_pc, spec_n, energy_n,
                grad_pc, grad, n_threads, False)


def sw_reduce(const double[::1] par2, double cutoff2, int sb2, const double[::1] par3, double cutoff3,
              int sa, int sb, int sc, const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
              const double[:, ::1] D_pc, const int32_t[::1] spec_n, double[::1] energy_n, double[:, ::1] grad_pc,
              bint grad, int n_threads, bint overwrite=False):
    """SW2 (tag sa-sb2, parameters as for ``pair_reduce``) plus SW3 (tag sa-sb-sc) in one pass over the pairs.

    Equal to ``pair_reduce`` + ``triple_reduce`` of the two (energies [N] eV, gradients [P, 3] eV/Å, added
    into the buffers), with one read of every pair and one gradient write per pair. With ``overwrite``
    grad_pc need not be initialised: every pair's gradient is set (energies are still added).
    """
    _check_reduce_args(RED_PAIR_SW2, par2, indptr, j_p, d_p, D_pc, spec_n, energy_n, grad_pc, grad, n_threads,
                       False)
    _check_reduce_args(RED_TRIPLE_SW3, par3, indptr, j_p, d_p, D_pc, spec_n, energy_n, grad_pc, grad, n_threads)
    _triple_run(RED_TRIPLE_SW3, par3, cutoff3, sa, sb, sc, &par2[0], cutoff2, sb2, indptr, j_p, d_p, D_pc, spec_n,
                energy_n, grad_pc, grad, n_threads, overwrite)
