# The batched pair descriptors h(r) f_c(r; a) (Behler 2, sigmoid) of one centre atom, shared by the pair kernel
# (``batch_pair_reduce`` in pair.pyx) and the fused first sweep of the moment kernel (``batch_moment_reduce`` in
# angular.pyx). Everything is inline, so cimporting this file creates no runtime dependency between the modules
# (and no call across them per atom).

from libc.math cimport exp
from libc.stdint cimport int32_t, int64_t

from miniff._ext.common cimport RED_FC_BEHLER2, RED_FC_SIGMOID, RED_MAX_GROUP, _cosine_cutoff, _match, _vexp


cdef enum:
    _PAIR_CHUNK = 32   # usable pairs whose cutoff factors are computed in one loop

cdef inline void _zero_atom_rows(Py_ssize_t i, const int64_t[::1] indptr, double[:, ::1] jac_pf3) noexcept nogil:
    """Set the Jacobian rows of atom i's pairs (indptr[i] .. indptr[i + 1]) to 0 (every column)."""
    cdef Py_ssize_t p, k
    for p in range(indptr[i], indptr[i + 1]):
        for k in range(jac_pf3.shape[1]):
            jac_pf3[p, k] = 0.0


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


cdef inline void _batch_pair_atom(Py_ssize_t i, int fam, const double[:, ::1] par, const int32_t[::1] cols, double a,
                           const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                           const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sb,
                           double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad) noexcept nogil:
    cdef Py_ssize_t p, f, c, q, nq, p_next
    cdef Py_ssize_t nf = cols.shape[0]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef double r, fc, dfc, h, dh, ux, uy, uz, dv, t
    cdef double eta[RED_MAX_GROUP]
    cdef double rs[RED_MAX_GROUP]
    cdef double ex[RED_MAX_GROUP]
    cdef double acc[RED_MAX_GROUP]
    cdef Py_ssize_t pq[_PAIR_CHUNK]
    cdef double rq[_PAIR_CHUNK]
    cdef double fcq[_PAIR_CHUNK]
    cdef double dfcq[_PAIR_CHUNK]
    if fam == RED_FC_BEHLER2:
        # the descriptors of a pair in contiguous loops over f with an inline exp: these loops vectorise; the
        # usable pairs go in chunks whose cutoff factors are computed in one contiguous (vectorised) loop
        for f in range(nf):
            eta[f] = par[f, 0]
            rs[f] = par[f, 1]
            acc[f] = 0.0
        p_next = indptr[i]
        while p_next < pe:
            nq = 0
            while p_next < pe and nq < _PAIR_CHUNK:
                r = d_p[p_next]
                if r < a and _match(spec_n[j_p[p_next]], sb):
                    pq[nq] = p_next
                    rq[nq] = r
                    nq = nq + 1
                p_next = p_next + 1
            for q in range(nq):
                _cosine_cutoff(rq[q], a, &fcq[q], &dfcq[q])
            for q in range(nq):
                p = pq[q]
                r = rq[q]
                fc = fcq[q]
                for f in range(nf):
                    t = r - rs[f]
                    ex[f] = _vexp(-eta[f] * t * t)
                    acc[f] += ex[f] * fc
                if grad:
                    dfc = dfcq[q]
                    ux = D_pc[p, 0] / r
                    uy = D_pc[p, 1] / r
                    uz = D_pc[p, 2] / r
                    for f in range(nf):
                        dv = -2.0 * eta[f] * (r - rs[f]) * ex[f] * fc + ex[f] * dfc
                        c = 3 * cols[f]
                        jac_pf3[p, c] += dv * ux
                        jac_pf3[p, c + 1] += dv * uy
                        jac_pf3[p, c + 2] += dv * uz
        for f in range(nf):
            values_nf[i, cols[f]] += acc[f]
        return
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
