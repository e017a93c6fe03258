# cython: language_level=3
"""n2p2's symmetry functions in miniff's compiled core (private): radial type 2 and angular types 3 and 9, their
element-weighted forms 12 and 13, with every cutoff type of n2p2 (0-8, inner cutoff ``alpha``), and the compact
polynomial functions 20-22 with their weighted forms 23-25 (``_compact_atom``), for the
potentials read by ``miniff.io.read_n2p2`` (formulas: ``miniff/io/n2p2_model.py`` and docs/n2p2.md).

The centre atoms of one element are evaluated at once (``atoms_m``); their symmetry functions go to
``values_mf [M, F]`` and, with ``grad``, the derivative of every function by every pair vector of its centre to
the compact per-pair Jacobian ``jac_ef3 [E, F, 3]``, row ``cptr_m[m] + (p - indptr[i])`` for pair ``p`` of the
centre ``i = atoms_m[m]``. Lengths are the files' (pair vectors times ``inv_length``). A prange over the centre
atoms; every row is written only by the thread owning its centre (results independent of the thread count).

Angular functions come in groups sharing (type, neighbour elements, cutoff): per triplet the geometry, the cutoff
factors, the radial exponentials of every distinct (eta, r_s) of the group (``exp(-eta sum (r - r_s)^2)`` taken as
the product of one factor per distance: the pair factors are computed once per neighbour) and the angular
factors of every distinct (lambda, zeta) are shared by the functions of the group. The derivative of a triplet
term by the two pair vectors ``D_j``, ``D_k`` is written ``alpha D_j + beta D_k`` and ``gamma D_k + beta D_j``.
"""

from libc.math cimport exp, sqrt, cos, sin, acos, pow, tanh, M_PI
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, free
from cython.parallel cimport prange, parallel

from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["n2p2_symmetry_functions", "n2p2_contract", "N2P2_MAX_GROUP"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext

cdef enum:
    MAX_GROUP = 64   # distinct (eta, r_s) and distinct (lambda, zeta) per angular group; distinct radial cutoffs

#: The most distinct (eta, r_s), distinct (lambda, zeta) per angular group and distinct radial cutoffs per call.
N2P2_MAX_GROUP = MAX_GROUP

cdef double _EXP_FLOOR = -700.0
cdef double _TANH3_1 = tanh(1.0) * tanh(1.0) * tanh(1.0)


cdef inline void _cutoff(int kind, double r, double rc, double alpha, double* f, double* df) noexcept nogil:
    """n2p2's cutoff function of type ``kind`` and its derivative at ``r < rc`` (inner cutoff ``alpha rc``)."""
    cdef double x, iw, rci, t, q, c
    if kind == 2 or kind == 3:
        # tanh(y) through one exponential: (1 - e^{-2y}) / (1 + e^{-2y}), y = 1 - r/rc in (0, 1]
        q = exp(-2.0 * (1.0 - r / rc))
        t = (1.0 - q) / (1.0 + q)
        c = 1.0 / _TANH3_1 if kind == 3 else 1.0
        f[0] = c * t * t * t
        df[0] = c * 3.0 * t * t * (t * t - 1.0) / rc
        return
    rci = alpha * rc
    if kind == 0 or r < rci:
        f[0] = 1.0
        df[0] = 0.0
        return
    iw = 1.0 / (rc - rci)
    x = (r - rci) * iw
    if kind == 1:
        f[0] = 0.5 * (cos(M_PI * x) + 1.0)
        df[0] = -0.5 * M_PI * sin(M_PI * x) * iw
    elif kind == 4:
        q = 1.0 - x * x
        if q > 0.0:
            f[0] = exp(1.0 - 1.0 / q)
            df[0] = -2.0 * x * f[0] / (q * q) * iw
        else:
            f[0] = 0.0
            df[0] = 0.0
    elif kind == 5:
        f[0] = (2.0 * x - 3.0) * x * x + 1.0
        df[0] = 6.0 * x * (x - 1.0) * iw
    elif kind == 6:
        f[0] = ((15.0 - 6.0 * x) * x - 10.0) * x * x * x + 1.0
        df[0] = -30.0 * x * x * (x - 1.0) * (x - 1.0) * iw
    elif kind == 7:
        f[0] = (x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x * x * x * x + 1.0
        df[0] = 140.0 * x * x * x * (x - 1.0) * (x - 1.0) * (x - 1.0) * iw
    else:
        f[0] = (x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x * x * x * x * x + 1.0
        df[0] = -630.0 * x * x * x * x * (x - 1.0) * (x - 1.0) * (x - 1.0) * (x - 1.0) * iw


cdef inline double _gauss(double r, double eta, double rs, double* g) noexcept nogil:
    """exp(-eta (r - rs)^2) (0 below exp's range) and, in ``g``, its log-derivative -2 eta (r - rs)."""
    cdef double t = r - rs
    cdef double x = -eta * t * t
    g[0] = -2.0 * eta * t
    if x < _EXP_FLOOR:
        return 0.0
    return exp(x)


cdef inline void _power(double plam, double zeta, int izeta, double* p, double* pm1) noexcept nogil:
    """``p = plam^zeta`` and ``pm1 = plam^(zeta - 1)`` for ``plam > 0`` (repeated products for integer zeta)."""
    cdef int k
    cdef double a
    if izeta >= 1:
        a = 1.0
        for k in range(izeta - 1):
            a = a * plam
        pm1[0] = a
        p[0] = a * plam
    else:
        pm1[0] = pow(plam, zeta - 1.0)
        p[0] = pm1[0] * plam


cdef inline void _compact(double a, double left, double right, int core, int asym, double* f,
                          double* df) noexcept nogil:
    """n2p2's compact function on ``(left, right)`` at ``a`` (inside) and its derivative: ``x = (a - centre) /
    half-width``, ``C = core(|x|)`` (asymmetric: ``core((2 - |x|) |x|)``), the core of cutoff type ``core``."""
    cdef double scale = 2.0 / (right - left)
    cdef double x = (a - 0.5 * (right + left)) * scale
    cdef double ax = x if x >= 0.0 else -x
    cdef double y, d
    if ax > 1.0:
        ax = 1.0
    y = (2.0 - ax) * ax if asym else ax
    _cutoff(core, y, 1.0, 0.0, f, &d)
    if asym:
        d = d * (2.0 - 2.0 * ax)
    df[0] = d * (scale if x >= 0.0 else -scale)


cdef inline void _compact_closed(double theta, double left, double right, int core, double* f,
                                 double* df) noexcept nogil:
    """The symmetric compact function of the angle on the closed interval ``[left, right]`` and its derivative."""
    cdef double scale = 2.0 / (right - left)
    cdef double x = (theta - 0.5 * (right + left)) * scale
    cdef double ax = x if x >= 0.0 else -x
    cdef double d
    if ax > 1.0:
        ax = 1.0
    _cutoff(core, ax, 1.0, 0.0, f, &d)
    df[0] = d * (scale if x >= 0.0 else -scale)


cdef struct Tables:
    # pairs
    const int64_t* indptr
    const int32_t* j_p
    const double* D_pc
    const double* d_p
    const int32_t* spec_n
    const double* weight_s
    Py_ssize_t n_atoms
    Py_ssize_t n_species
    double inv_length
    int cutoff_type
    double alpha
    Py_ssize_t n_f
    # radial functions [R], distinct radial cutoffs [C]
    Py_ssize_t n_r
    const int32_t* rad_col
    const int32_t* rad_spec
    const int32_t* rad_c
    const double* rad_eta
    const double* rad_rs
    Py_ssize_t n_c
    const double* rad_cut
    # angular groups [G]: ranges of functions, of distinct (eta, r_s), of distinct (lambda, zeta)
    Py_ssize_t n_g
    const int32_t* grp_info   # [G, 8]: rjk, weighted, s1, s2, f0, f1, e0, k0 (e1 = e0 + ne, k1 = k0 + nk)
    const int32_t* grp_count  # [G, 2]: ne, nk
    const double* grp_rc
    const double* ex_eta
    const double* ex_rs
    const double* lz_lambda
    const double* lz_zeta
    const int32_t* lz_izeta
    const double* lz_norm
    const int32_t* ang_col
    const int32_t* ang_e
    const int32_t* ang_k
    # compact radial functions [CR] (types 20, 23): column, neighbour species (-1: weighted), interval, core
    Py_ssize_t n_cr
    const int32_t* cr_col
    const int32_t* cr_spec
    const int32_t* cr_core   # [CR, 2]: core kind (4-8, the cutoff type with that core), asymmetric
    const double* cr_lr      # [CR, 2]: rl, rc
    # compact angular groups [H] (types 21, 22, 24, 25) sharing (r_jk term, weighted, s1, s2, rl, rc, core)
    Py_ssize_t n_h
    const int32_t* cg_info   # [H, 7]: rjk, weighted, s1, s2, core, asymmetric, f1 (functions f0 = previous f1)
    const double* cg_lr      # [H, 2]: rl, rc
    const int32_t* ca_col    # [A]: column of every compact angular function
    const double* ca_lr      # [A, 2]: angle interval (radians)


cdef inline double _weight(const Tables* t, int32_t s) noexcept nogil:
    if s < 0 or s >= t.n_species:
        return 0.0
    return t.weight_s[s]


cdef void _atom(const Tables* t, Py_ssize_t i, Py_ssize_t m, int64_t e0, double* values, double* jac, bint grad,
                double* work, int32_t* idx, Py_ssize_t max_nb) noexcept nogil:
    """Symmetry functions of centre ``i`` into ``values[F]``; with ``grad`` its Jacobian rows ``jac[n_nb, F, 3]``."""
    cdef Py_ssize_t p0 = t.indptr[i]
    cdef Py_ssize_t nb = t.indptr[i + 1] - p0
    cdef Py_ssize_t a, b, q, f, c, e, k, g, ne, nk, n1, n2, x1, x2, n_f = t.n_f
    cdef int32_t s, s1, s2, col, rjk_on, weighted
    cdef double r, rc, fc, dfc, v, dv, lg, wgt, ir
    # per neighbour: D (3), r, 1/r, species weight; fc, dfc of the current cutoff; E and log-derivative per e
    cdef double* Dx = work
    cdef double* Dy = work + max_nb
    cdef double* Dz = work + 2 * max_nb
    cdef double* rr = work + 3 * max_nb
    cdef double* ir_ = work + 4 * max_nb
    cdef double* wn = work + 5 * max_nb
    cdef double* fcn = work + 6 * max_nb
    cdef double* dfcn = work + 7 * max_nb
    cdef double* En = work + 8 * max_nb            # [MAX_GROUP, max_nb]
    cdef double* Gn = En + MAX_GROUP * max_nb      # [MAX_GROUP, max_nb]
    cdef double* tri = Gn + MAX_GROUP * max_nb     # per-triplet scratch: 4 MAX_GROUP (e) + 2 MAX_GROUP (k)
    cdef double* Ve = tri
    cdef double* Ae = tri + MAX_GROUP
    cdef double* Ce = tri + 2 * MAX_GROUP
    cdef double* Be = tri + 3 * MAX_GROUP
    cdef double* Pk = tri + 4 * MAX_GROUP
    cdef double* dPk = tri + 5 * MAX_GROUP
    cdef int32_t* L1 = idx
    cdef int32_t* L2 = idx + max_nb
    cdef double rj, rk, irj, irk, cth, wx, wy, wz, rjk, fjk, dfjk, ejk, gjk, fcall, plam, pz, pz1, wjk
    cdef double fj, fk, dfj, dfk, Ej, Ek, sj_, sk_, rjk_part, irjk, q1, q2, q3, alph, bet, gam, dV, P, val
    cdef double* jj
    cdef double* jk
    cdef double* jrow

    for f in range(n_f):
        values[f] = 0.0
    if grad:
        for q in range(nb * n_f * 3):
            jac[q] = 0.0
    for q in range(nb):
        Dx[q] = t.D_pc[3 * (p0 + q)] * t.inv_length
        Dy[q] = t.D_pc[3 * (p0 + q) + 1] * t.inv_length
        Dz[q] = t.D_pc[3 * (p0 + q) + 2] * t.inv_length
        rr[q] = t.d_p[p0 + q] * t.inv_length
        ir_[q] = 1.0 / rr[q] if rr[q] > 0.0 else 0.0
        wn[q] = _weight(t, t.spec_n[t.j_p[p0 + q]]) if 0 <= t.j_p[p0 + q] < t.n_atoms else 0.0

    # ------------------------------------------------------------------ radial (types 2, 12)
    for c in range(t.n_c):
        rc = t.rad_cut[c]
        for q in range(nb):
            if 0.0 < rr[q] < rc:
                _cutoff(t.cutoff_type, rr[q], rc, t.alpha, &fcn[q], &dfcn[q])
            else:
                fcn[q] = 0.0
                dfcn[q] = 0.0
        for f in range(t.n_r):
            if t.rad_c[f] != c:
                continue
            col = t.rad_col[f]
            s = t.rad_spec[f]
            for q in range(nb):
                if fcn[q] == 0.0 and dfcn[q] == 0.0:
                    continue
                if s >= 0:
                    if t.j_p[p0 + q] < 0 or t.j_p[p0 + q] >= t.n_atoms or t.spec_n[t.j_p[p0 + q]] != s:
                        continue
                    wgt = 1.0
                else:
                    wgt = wn[q]
                    if wgt == 0.0:
                        continue
                v = _gauss(rr[q], t.rad_eta[f], t.rad_rs[f], &lg) * wgt
                values[col] += v * fcn[q]
                if grad:
                    dv = v * (dfcn[q] + lg * fcn[q]) * ir_[q]
                    jrow = jac + (q * n_f + col) * 3
                    jrow[0] += dv * Dx[q]
                    jrow[1] += dv * Dy[q]
                    jrow[2] += dv * Dz[q]

    # ------------------------------------------------------------------ angular (types 3, 9, 13)
    for g in range(t.n_g):
        rjk_on = t.grp_info[8 * g]
        weighted = t.grp_info[8 * g + 1]
        s1 = t.grp_info[8 * g + 2]
        s2 = t.grp_info[8 * g + 3]
        ne = t.grp_count[2 * g]
        nk = t.grp_count[2 * g + 1]
        rc = t.grp_rc[g]
        # neighbours of the group: inside rc, of element s1 (L1) and s2 (L2); weighted: all in L1
        n1 = 0
        n2 = 0
        for q in range(nb):
            if not (0.0 < rr[q] < rc):
                continue
            if weighted:
                if wn[q] == 0.0:
                    continue
                L1[n1] = <int32_t>q
                n1 = n1 + 1
            else:
                if t.j_p[p0 + q] < 0 or t.j_p[p0 + q] >= t.n_atoms:
                    continue
                s = t.spec_n[t.j_p[p0 + q]]
                if s == s1:
                    L1[n1] = <int32_t>q
                    n1 = n1 + 1
                elif s == s2:
                    L2[n2] = <int32_t>q
                    n2 = n2 + 1
            _cutoff(t.cutoff_type, rr[q], rc, t.alpha, &fcn[q], &dfcn[q])
            for e in range(ne):
                En[e * max_nb + q] = _gauss(rr[q], t.ex_eta[t.grp_info[8 * g + 6] + e],
                                            t.ex_rs[t.grp_info[8 * g + 6] + e], &Gn[e * max_nb + q])
        for x1 in range(n1):
            a = L1[x1]
            rj = rr[a]
            irj = ir_[a]
            fj = fcn[a]
            dfj = dfcn[a]
            if s1 == s2 or weighted:
                x2 = x1 + 1
                n2 = n1
            else:
                x2 = 0
            while x2 < n2:
                b = L1[x2] if (s1 == s2 or weighted) else L2[x2]
                x2 = x2 + 1
                rk = rr[b]
                irk = ir_[b]
                fk = fcn[b]
                dfk = dfcn[b]
                if fj * fk == 0.0 and not grad:
                    continue
                fjk = 1.0
                dfjk = 0.0
                rjk = 0.0
                irjk = 0.0
                if rjk_on:
                    wx = Dx[b] - Dx[a]
                    wy = Dy[b] - Dy[a]
                    wz = Dz[b] - Dz[a]
                    rjk = wx * wx + wy * wy + wz * wz
                    if rjk >= rc * rc or rjk <= 0.0:
                        continue
                    rjk = sqrt(rjk)
                    irjk = 1.0 / rjk
                    _cutoff(t.cutoff_type, rjk, rc, t.alpha, &fjk, &dfjk)
                cth = (Dx[a] * Dx[b] + Dy[a] * Dy[b] + Dz[a] * Dz[b]) * irj * irk
                wjk = wn[a] * wn[b] if weighted else 1.0
                fcall = fj * fk * fjk
                # per distinct (eta, r_s): value factor V and the coefficients of the gradient
                for e in range(ne):
                    Ej = En[e * max_nb + a]
                    Ek = En[e * max_nb + b]
                    if rjk_on:
                        ejk = _gauss(rjk, t.ex_eta[t.grp_info[8 * g + 6] + e], t.ex_rs[t.grp_info[8 * g + 6] + e],
                                     &gjk)
                    else:
                        ejk = 1.0
                        gjk = 0.0
                    v = Ej * Ek * ejk * wjk
                    Ve[e] = v * fcall
                    if grad:
                        rjk_part = v * (fj * fk * dfjk + fcall * gjk) * irjk
                        Ae[e] = v * (fk * fjk * dfj + fcall * Gn[e * max_nb + a]) * irj + rjk_part
                        Ce[e] = v * (fj * fjk * dfk + fcall * Gn[e * max_nb + b]) * irk + rjk_part
                        Be[e] = -rjk_part
                # per distinct (lambda, zeta): 2^(1-zeta) (1 + lambda cos)^zeta and its derivative by cos
                for k in range(nk):
                    c = t.grp_info[8 * g + 7] + k
                    plam = 1.0 + t.lz_lambda[c] * cth
                    if plam <= 0.0:
                        Pk[k] = 0.0
                        dPk[k] = 0.0
                    else:
                        _power(plam, t.lz_zeta[c], t.lz_izeta[c], &pz, &pz1)
                        Pk[k] = t.lz_norm[c] * pz
                        dPk[k] = t.lz_norm[c] * t.lz_zeta[c] * t.lz_lambda[c] * pz1
                if grad:
                    q1 = -cth * irj * irj
                    q2 = -cth * irk * irk
                    q3 = irj * irk
                    jj = jac + a * n_f * 3
                    jk = jac + b * n_f * 3
                for f in range(t.grp_info[8 * g + 4], t.grp_info[8 * g + 5]):
                    e = t.ang_e[f] - t.grp_info[8 * g + 6]
                    k = t.ang_k[f] - t.grp_info[8 * g + 7]
                    col = t.ang_col[f]
                    P = Pk[k]
                    values[col] += P * Ve[e]
                    if grad:
                        dV = dPk[k] * Ve[e]
                        alph = P * Ae[e] + dV * q1
                        gam = P * Ce[e] + dV * q2
                        bet = P * Be[e] + dV * q3
                        jrow = jj + 3 * col
                        jrow[0] += alph * Dx[a] + bet * Dx[b]
                        jrow[1] += alph * Dy[a] + bet * Dy[b]
                        jrow[2] += alph * Dz[a] + bet * Dz[b]
                        jrow = jk + 3 * col
                        jrow[0] += gam * Dx[b] + bet * Dx[a]
                        jrow[1] += gam * Dy[b] + bet * Dy[a]
                        jrow[2] += gam * Dz[b] + bet * Dz[a]
    if t.n_cr or t.n_h:
        _compact_atom(t, p0, nb, values, jac, grad, work, idx, max_nb)


cdef void _compact_atom(const Tables* t, Py_ssize_t p0, Py_ssize_t nb, double* values, double* jac, bint grad,
                        double* work, int32_t* idx, Py_ssize_t max_nb) noexcept nogil:
    """The compact functions (types 20-25) of one centre (pairs ``p0 ... p0 + nb``) added to ``values`` and
    ``jac``; the per-neighbour geometry is already in ``work`` (laid out as in ``_atom``)."""
    cdef Py_ssize_t a, b, q, f, h, n1, n2, x1, x2, f0, n_f = t.n_f
    cdef int32_t s, s1, s2, col, rjk_on, weighted, core, asym
    cdef double rl, rc, v, dv, wgt, rj, rk, irj, irk, cth, wx, wy, wz, rjk, irjk, cjk, dcjk, wjk, cj, ck, dcj, dck
    cdef double theta, dtheta, ang, dang, R, s_rij, s_rik, s_rjk, s_cos, alph, bet, gam, q1, q2, q3, sn
    cdef double* Dx = work
    cdef double* Dy = work + max_nb
    cdef double* Dz = work + 2 * max_nb
    cdef double* rr = work + 3 * max_nb
    cdef double* ir_ = work + 4 * max_nb
    cdef double* wn = work + 5 * max_nb
    cdef double* fcn = work + 6 * max_nb
    cdef double* dfcn = work + 7 * max_nb
    cdef int32_t* L1 = idx
    cdef int32_t* L2 = idx + max_nb
    cdef double* jrow
    cdef double* jj
    cdef double* jk

    # ------------------------------------------------------------------ radial (types 20, 23)
    for f in range(t.n_cr):
        col = t.cr_col[f]
        s = t.cr_spec[f]
        rl = t.cr_lr[2 * f]
        rc = t.cr_lr[2 * f + 1]
        for q in range(nb):
            if not (rr[q] > 0.0 and rl < rr[q] < rc):
                continue
            if s >= 0:
                if t.j_p[p0 + q] < 0 or t.j_p[p0 + q] >= t.n_atoms or t.spec_n[t.j_p[p0 + q]] != s:
                    continue
                wgt = 1.0
            else:
                wgt = wn[q]
                if wgt == 0.0:
                    continue
            _compact(rr[q], rl, rc, t.cr_core[2 * f], t.cr_core[2 * f + 1], &v, &dv)
            values[col] += wgt * v
            if grad:
                dv = wgt * dv * ir_[q]
                jrow = jac + (q * n_f + col) * 3
                jrow[0] += dv * Dx[q]
                jrow[1] += dv * Dy[q]
                jrow[2] += dv * Dz[q]

    # ------------------------------------------------------------------ angular (types 21, 22, 24, 25)
    f0 = 0
    for h in range(t.n_h):
        rjk_on = t.cg_info[7 * h]
        weighted = t.cg_info[7 * h + 1]
        s1 = t.cg_info[7 * h + 2]
        s2 = t.cg_info[7 * h + 3]
        core = t.cg_info[7 * h + 4]
        asym = t.cg_info[7 * h + 5]
        rl = t.cg_lr[2 * h]
        rc = t.cg_lr[2 * h + 1]
        n1 = 0
        n2 = 0
        for q in range(nb):
            if not (rr[q] > 0.0 and rl < rr[q] < rc):
                continue
            if weighted:
                if wn[q] == 0.0:
                    continue
                L1[n1] = <int32_t>q
                n1 = n1 + 1
            else:
                if t.j_p[p0 + q] < 0 or t.j_p[p0 + q] >= t.n_atoms:
                    continue
                s = t.spec_n[t.j_p[p0 + q]]
                if s == s1:
                    L1[n1] = <int32_t>q
                    n1 = n1 + 1
                elif s == s2:
                    L2[n2] = <int32_t>q
                    n2 = n2 + 1
                else:
                    continue
            _compact(rr[q], rl, rc, core, asym, &fcn[q], &dfcn[q])
        for x1 in range(n1):
            a = L1[x1]
            rj = rr[a]
            irj = ir_[a]
            cj = fcn[a]
            dcj = dfcn[a]
            if s1 == s2 or weighted:
                x2 = x1 + 1
                n2 = n1
            else:
                x2 = 0
            while x2 < n2:
                b = L1[x2] if (s1 == s2 or weighted) else L2[x2]
                x2 = x2 + 1
                rk = rr[b]
                irk = ir_[b]
                ck = fcn[b]
                dck = dfcn[b]
                cjk = 1.0
                dcjk = 0.0
                irjk = 0.0
                if rjk_on:
                    wx = Dx[b] - Dx[a]
                    wy = Dy[b] - Dy[a]
                    wz = Dz[b] - Dz[a]
                    rjk = sqrt(wx * wx + wy * wy + wz * wz)
                    if not (rjk > 0.0 and rl < rjk < rc):
                        continue
                    irjk = 1.0 / rjk
                    _compact(rjk, rl, rc, core, asym, &cjk, &dcjk)
                cth = (Dx[a] * Dx[b] + Dy[a] * Dy[b] + Dz[a] * Dz[b]) * irj * irk
                if not (-1.0 < cth < 1.0):
                    continue  # collinear triplets: no angle derivative, left out as n2p2 does
                theta = acos(cth)
                wjk = wn[a] * wn[b] if weighted else 1.0
                R = cj * ck * cjk * wjk
                if grad:
                    sn = sqrt(1.0 - cth * cth)
                    dtheta = -1.0 / sn
                    q1 = -cth * irj * irj
                    q2 = -cth * irk * irk
                    q3 = irj * irk
                    jj = jac + a * n_f * 3
                    jk = jac + b * n_f * 3
                for f in range(f0, t.cg_info[7 * h + 6]):
                    if not (t.ca_lr[2 * f] <= theta <= t.ca_lr[2 * f + 1]):
                        continue
                    _compact_closed(theta, t.ca_lr[2 * f], t.ca_lr[2 * f + 1], core, &ang, &dang)
                    col = t.ca_col[f]
                    values[col] += R * ang
                    if not grad:
                        continue
                    s_rij = dcj * ck * cjk * wjk * ang
                    s_rik = cj * dck * cjk * wjk * ang
                    s_rjk = cj * ck * dcjk * wjk * ang
                    s_cos = R * dang * dtheta
                    alph = s_rij * irj + s_rjk * irjk + s_cos * q1
                    gam = s_rik * irk + s_rjk * irjk + s_cos * q2
                    bet = -s_rjk * irjk + s_cos * q3
                    jrow = jj + 3 * col
                    jrow[0] += alph * Dx[a] + bet * Dx[b]
                    jrow[1] += alph * Dy[a] + bet * Dy[b]
                    jrow[2] += alph * Dz[a] + bet * Dz[b]
                    jrow = jk + 3 * col
                    jrow[0] += gam * Dx[b] + bet * Dx[a]
                    jrow[1] += gam * Dy[b] + bet * Dy[a]
                    jrow[2] += gam * Dz[b] + bet * Dz[a]
        f0 = t.cg_info[7 * h + 6]


def n2p2_symmetry_functions(const int64_t[::1] indptr, const int32_t[::1] j_p, const double[:, ::1] D_pc,
                            const double[::1] d_p, const int32_t[::1] spec_n, const double[::1] weight_s,
                            const int64_t[::1] atoms_m, const int64_t[::1] cptr_m, double inv_length,
                            int cutoff_type, double alpha,
                            const int32_t[::1] rad_col, const int32_t[::1] rad_spec, const int32_t[::1] rad_c,
                            const double[::1] rad_eta, const double[::1] rad_rs, const double[::1] rad_cut,
                            const int32_t[:, ::1] grp_info, const int32_t[:, ::1] grp_count,
                            const double[::1] grp_rc, const double[::1] ex_eta, const double[::1] ex_rs,
                            const double[::1] lz_lambda, const double[::1] lz_zeta, const int32_t[::1] lz_izeta,
                            const double[::1] lz_norm, const int32_t[::1] ang_col, const int32_t[::1] ang_e,
                            const int32_t[::1] ang_k, double[:, ::1] values_mf, double[:, :, ::1] jac_ef3,
                            bint grad, int n_threads, const int32_t[::1] cr_col=None,
                            const int32_t[::1] cr_spec=None, const int32_t[:, ::1] cr_core=None,
                            const double[:, ::1] cr_lr=None, const int32_t[:, ::1] cg_info=None,
                            const double[:, ::1] cg_lr=None, const int32_t[::1] ca_col=None,
                            const double[:, ::1] ca_lr=None):
    """Symmetry functions of the centre atoms ``atoms_m [M]`` into ``values_mf [M, F]`` (overwritten) and, with
    ``grad``, their per-pair Jacobian into ``jac_ef3 [E, F, 3]`` (overwritten; rows ``cptr_m[m] ...
    cptr_m[m + 1]`` are the pairs of ``atoms_m[m]`` in pair-list order, ``E = cptr_m[M]``).

    Radial functions ``f``: column ``rad_col[f]``, neighbour species code ``rad_spec[f]`` (-1: every species
    times ``weight_s``), cutoff ``rad_cut[rad_c[f]]``. Angular group ``g``: ``grp_info[g] = (rjk term, weighted,
    s1, s2, f0, f1, e0, k0)``, ``grp_count[g] = (ne, nk)``, cutoff ``grp_rc[g]``; its functions ``f0 <= f < f1``
    have column ``ang_col[f]``, exponential ``ex_eta/ex_rs[ang_e[f]]`` and angular factor ``lz_*[ang_k[f]]``
    (``lz_norm = 2^(1 - zeta)``, ``lz_izeta`` the integer zeta or 0), with ``e0 <= ang_e[f] < e0 + ne`` and
    ``k0 <= ang_k[f] < k0 + nk``.

    Compact functions (types 20-25; all optional, absent = none): radial ``f`` has column ``cr_col[f]``,
    neighbour species ``cr_spec[f]`` (-1: every species times ``weight_s``), core ``cr_core[f] = (cutoff type of
    the core 4-8, asymmetric)`` and interval ``cr_lr[f] = (rl, rc)``; angular group ``h`` has ``cg_info[h] =
    (rjk term, weighted, s1, s2, core, asymmetric, f1)``, radial interval ``cg_lr[h]`` and the functions
    ``f1[h - 1] <= f < f1[h]`` (column ``ca_col[f]``, angle interval ``ca_lr[f]`` in radians).
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1, n_pairs = j_p.shape[0], M = atoms_m.shape[0]
    cdef Py_ssize_t n_f = values_mf.shape[1], n_g = grp_info.shape[0], m, i, max_nb = 1, g, f
    cdef Tables t
    cdef Py_ssize_t n_r, n_a
    cdef double* work
    cdef int32_t* idx
    cdef int failed[1]
    if spec_n.shape[0] != n or d_p.shape[0] != n_pairs or D_pc.shape[0] != n_pairs or D_pc.shape[1] != 3:
        raise ValueError("indptr, j_p, D_pc, d_p and spec_n disagree")
    if n < 0 or indptr[0] != 0 or indptr[n] != n_pairs:
        raise ValueError("indptr must run from 0 to the number of pairs")
    if cptr_m.shape[0] != M + 1 or values_mf.shape[0] != M or cptr_m[0] != 0:
        raise ValueError("atoms_m, cptr_m and values_mf disagree")
    if not 0 <= cutoff_type <= 8:
        raise ValueError(f"cutoff_type must be 0..8, got {cutoff_type}")
    for m in range(M):
        i = atoms_m[m]
        if i < 0 or i >= n or indptr[i + 1] < indptr[i] or (m > 0 and i <= atoms_m[m - 1]):
            raise ValueError("atoms_m must be increasing atom indices with valid pair ranges")
        if cptr_m[m + 1] - cptr_m[m] != indptr[i + 1] - indptr[i]:
            raise ValueError("cptr_m must count the pairs of every centre")
        max_nb = max(max_nb, indptr[i + 1] - indptr[i])
    if grad and (jac_ef3.shape[0] != cptr_m[M] or jac_ef3.shape[1] != n_f or jac_ef3.shape[2] != 3):
        raise ValueError("jac_ef3 must be [cptr_m[-1], F, 3]")
    n_r = rad_col.shape[0]
    if (rad_spec.shape[0] != n_r or rad_c.shape[0] != n_r or rad_eta.shape[0] != n_r or rad_rs.shape[0] != n_r
            or rad_cut.shape[0] > MAX_GROUP):
        raise ValueError("radial tables disagree (or more than N2P2_MAX_GROUP radial cutoffs)")
    for f in range(n_r):
        if not (0 <= rad_col[f] < n_f and 0 <= rad_c[f] < rad_cut.shape[0]):
            raise ValueError("rad_col / rad_c out of range")
    n_a = ang_col.shape[0]
    if ang_e.shape[0] != n_a or ang_k.shape[0] != n_a or grp_count.shape[0] != n_g or grp_rc.shape[0] != n_g:
        raise ValueError("angular tables disagree")
    if grp_info.shape[1] != 8 or grp_count.shape[1] != 2 or ex_rs.shape[0] != ex_eta.shape[0]:
        raise ValueError("grp_info must be [G, 8], grp_count [G, 2]")
    if (lz_zeta.shape[0] != lz_lambda.shape[0] or lz_izeta.shape[0] != lz_lambda.shape[0]
            or lz_norm.shape[0] != lz_lambda.shape[0]):
        raise ValueError("lz_* tables disagree")
    for g in range(n_g):
        if not (0 < grp_count[g, 0] <= MAX_GROUP and 0 < grp_count[g, 1] <= MAX_GROUP):
            raise ValueError(f"angular group {g}: 1 to {MAX_GROUP} distinct (eta, r_s) and (lambda, zeta)")
        if not (0 <= grp_info[g, 4] <= grp_info[g, 5] <= n_a and 0 <= grp_info[g, 6]
                and grp_info[g, 6] + grp_count[g, 0] <= ex_eta.shape[0] and 0 <= grp_info[g, 7]
                and grp_info[g, 7] + grp_count[g, 1] <= lz_lambda.shape[0]):
            raise ValueError(f"angular group {g}: ranges out of bounds")
        for f in range(grp_info[g, 4], grp_info[g, 5]):
            if not (0 <= ang_col[f] < n_f and grp_info[g, 6] <= ang_e[f] < grp_info[g, 6] + grp_count[g, 0]
                    and grp_info[g, 7] <= ang_k[f] < grp_info[g, 7] + grp_count[g, 1]):
                raise ValueError(f"angular function {f}: indices out of range")
    cdef Py_ssize_t n_cr = 0 if cr_col is None else cr_col.shape[0]
    cdef Py_ssize_t n_h = 0 if cg_info is None else cg_info.shape[0]
    cdef Py_ssize_t n_ca = 0 if ca_col is None else ca_col.shape[0]
    if n_cr and (cr_spec is None or cr_core is None or cr_lr is None or cr_spec.shape[0] != n_cr
                 or cr_core.shape[0] != n_cr or cr_core.shape[1] != 2 or cr_lr.shape[0] != n_cr
                 or cr_lr.shape[1] != 2):
        raise ValueError("compact radial tables cr_* disagree")
    for f in range(n_cr):
        if not (0 <= cr_col[f] < n_f and 4 <= cr_core[f, 0] <= 8 and cr_lr[f, 0] < cr_lr[f, 1]):
            raise ValueError(f"compact radial function {f}: column, core or interval out of range")
    if n_h and (cg_lr is None or ca_lr is None or cg_info.shape[1] != 7 or cg_lr.shape[0] != n_h
                or cg_lr.shape[1] != 2 or ca_lr.shape[0] != n_ca or ca_lr.shape[1] != 2):
        raise ValueError("compact angular tables cg_* / ca_* disagree")
    for g in range(n_h):
        if not (4 <= cg_info[g, 4] <= 8 and cg_lr[g, 0] < cg_lr[g, 1]
                and (0 if g == 0 else cg_info[g - 1, 6]) <= cg_info[g, 6] <= n_ca):
            raise ValueError(f"compact angular group {g}: core, interval or function range out of range")
    if n_h and cg_info[n_h - 1, 6] != n_ca:
        raise ValueError("compact angular groups must cover ca_col")
    for f in range(n_ca):
        if not (0 <= ca_col[f] < n_f and ca_lr[f, 0] < ca_lr[f, 1]):
            raise ValueError(f"compact angular function {f}: column or angle interval out of range")
    if M == 0:
        return
    failed[0] = 0
    t.n_cr = n_cr
    t.cr_col = &cr_col[0] if n_cr else NULL
    t.cr_spec = &cr_spec[0] if n_cr else NULL
    t.cr_core = &cr_core[0, 0] if n_cr else NULL
    t.cr_lr = &cr_lr[0, 0] if n_cr else NULL
    t.n_h = n_h
    t.cg_info = &cg_info[0, 0] if n_h else NULL
    t.cg_lr = &cg_lr[0, 0] if n_h else NULL
    t.ca_col = &ca_col[0] if n_ca else NULL
    t.ca_lr = &ca_lr[0, 0] if n_ca else NULL
    t.indptr = &indptr[0]
    t.j_p = &j_p[0] if n_pairs else NULL
    t.D_pc = &D_pc[0, 0] if n_pairs else NULL
    t.d_p = &d_p[0] if n_pairs else NULL
    t.spec_n = &spec_n[0]
    t.weight_s = &weight_s[0] if weight_s.shape[0] else NULL
    t.n_atoms = n
    t.n_species = weight_s.shape[0]
    t.inv_length = inv_length
    t.cutoff_type = cutoff_type
    t.alpha = alpha
    t.n_f = n_f
    t.n_r = n_r
    t.rad_col = &rad_col[0] if n_r else NULL
    t.rad_spec = &rad_spec[0] if n_r else NULL
    t.rad_c = &rad_c[0] if n_r else NULL
    t.rad_eta = &rad_eta[0] if n_r else NULL
    t.rad_rs = &rad_rs[0] if n_r else NULL
    t.n_c = rad_cut.shape[0]
    t.rad_cut = &rad_cut[0] if rad_cut.shape[0] else NULL
    t.n_g = n_g
    t.grp_info = &grp_info[0, 0] if n_g else NULL
    t.grp_count = &grp_count[0, 0] if n_g else NULL
    t.grp_rc = &grp_rc[0] if n_g else NULL
    t.ex_eta = &ex_eta[0] if ex_eta.shape[0] else NULL
    t.ex_rs = &ex_rs[0] if ex_eta.shape[0] else NULL
    t.lz_lambda = &lz_lambda[0] if lz_lambda.shape[0] else NULL
    t.lz_zeta = &lz_zeta[0] if lz_lambda.shape[0] else NULL
    t.lz_izeta = &lz_izeta[0] if lz_lambda.shape[0] else NULL
    t.lz_norm = &lz_norm[0] if lz_lambda.shape[0] else NULL
    t.ang_col = &ang_col[0] if n_a else NULL
    t.ang_e = &ang_e[0] if n_a else NULL
    t.ang_k = &ang_k[0] if n_a else NULL
    cdef double* jac0 = &jac_ef3[0, 0, 0] if (grad and jac_ef3.shape[0] > 0) else NULL
    cdef double* val0 = &values_mf[0, 0] if n_f else NULL
    cdef Py_ssize_t n_work = (8 + 2 * MAX_GROUP) * max_nb + 6 * MAX_GROUP
    with nogil, parallel(num_threads=n_threads):
        work = <double*>malloc(n_work * sizeof(double))
        idx = <int32_t*>malloc(2 * max_nb * sizeof(int32_t))
        if work == NULL or idx == NULL:
            failed[0] = 1
        else:
            for m in prange(M, schedule="dynamic", chunksize=4):
                _atom(&t, atoms_m[m], m, cptr_m[m], val0 + m * n_f, jac0 + cptr_m[m] * n_f * 3 if grad else NULL,
                      grad and n_f > 0, work, idx, max_nb)
        free(work)
        free(idx)
    if failed[0]:
        raise MemoryError("n2p2_symmetry_functions: no memory for the per-thread scratch")


def n2p2_contract(const int64_t[::1] indptr, const int64_t[::1] atoms_m, const int64_t[::1] cptr_m,
                  const double[:, ::1] dedg_mf, const double[:, :, ::1] jac_ef3, double scale, double[:, ::1] grad_pc,
                  int n_threads):
    """``grad_pc[p] += scale sum_f dedg_mf[m, f] jac_ef3[e, f]`` for every pair ``p`` of every centre
    ``atoms_m[m]`` (``e = cptr_m[m] + p - indptr[i]``): the energy gradient by the pair vectors."""
    cdef Py_ssize_t M = atoms_m.shape[0], n_f = dedg_mf.shape[1], n = indptr.shape[0] - 1, m, i, q, f, e, p
    cdef double gx, gy, gz, w
    if cptr_m.shape[0] != M + 1 or dedg_mf.shape[0] != M or jac_ef3.shape[1] != n_f or jac_ef3.shape[2] != 3:
        raise ValueError("atoms_m, cptr_m, dedg_mf and jac_ef3 disagree")
    if grad_pc.shape[1] != 3 or jac_ef3.shape[0] != cptr_m[M] or indptr[n] != grad_pc.shape[0]:
        raise ValueError("jac_ef3 / grad_pc do not match the pair list")
    for m in range(M):
        i = atoms_m[m]
        if i < 0 or i >= n or cptr_m[m + 1] - cptr_m[m] != indptr[i + 1] - indptr[i] or (m > 0 and i <= atoms_m[m - 1]):
            raise ValueError("atoms_m (increasing) / cptr_m do not match indptr")
    for m in prange(M, nogil=True, num_threads=n_threads, schedule="static"):
        i = atoms_m[m]
        for q in range(indptr[i + 1] - indptr[i]):
            e = cptr_m[m] + q
            p = indptr[i] + q
            gx = 0.0
            gy = 0.0
            gz = 0.0
            for f in range(n_f):
                w = dedg_mf[m, f]
                gx = gx + w * jac_ef3[e, f, 0]
                gy = gy + w * jac_ef3[e, f, 1]
                gz = gz + w * jac_ef3[e, f, 2]
            grad_pc[p, 0] += scale * gx
            grad_pc[p, 1] += scale * gy
            grad_pc[p, 2] += scale * gz
