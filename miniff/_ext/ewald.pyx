# cython: language_level=3
"""Ewald sums of point charges (private; called through ``miniff._ext.kernel_module``).

``ewald_real_reduce``: the real-space sum over the pairs of the full neighbour list (per-atom energies,
per-pair gradients, charge gradients). ``ewald_phase_tables``, ``ewald_structure_factor`` and
``ewald_k_atoms``: the reciprocal-space sum over k-vectors ``k = m0 b0 + m1 b1 + m2 b2`` (phase factors
``exp(i m b_d . r_i)`` per atom and axis, whose products give ``exp(i k . r_i)`` without a sine or cosine per
atom and k-vector; the structure factor; then per-atom energies, position and charge gradients and virials).
``pme_weights``, ``pme_spread`` and ``pme_gather``: B-spline weights, charge spreading and mesh interpolation of
smooth particle-mesh Ewald (``miniff/potentials/ewald_mesh.py``). Formulas: ``docs/formulas.md``, section
"Ewald summation".
"""

# Threads: the real-space loop and ``ewald_k_atoms`` run over atoms (each atom by one thread, its pairs or
# k-vectors in a fixed order); ``ewald_structure_factor`` runs over rows of k-vectors of equal (m0, m1) (each
# row by one thread, atoms in a fixed order). Results therefore do not depend on the number of threads.
# Outputs are accumulated (``+=``) into preallocated arrays (the structure factor is set). Shapes are checked
# here; the neighbour indices ``j_p`` are checked in Python (``miniff.potentials.base.pair_arrays``) before any
# call. The particle-mesh spreading is serial (many atoms write to one mesh point), its gathers run over atoms.

from libc.math cimport cos, erfc, exp, floor, sin, sqrt, M_PI
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc
from cython.parallel cimport prange

from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["ewald_real_reduce", "ewald_phase_tables", "ewald_structure_factor", "ewald_k_atoms", "pme_weights",
           "pme_spread", "pme_gather"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


cdef void _real_atom(Py_ssize_t i, const double* q_n, double eta, double cutoff, double scale,
                     const int64_t* indptr, const int32_t* j_p, const double* d_p, const double* D_pc,
                     double* energy_n, double* grad_pc, double* cgrad_n) noexcept nogil:
    """Pairs of atom ``i``: energy_n[i] += scale/2 sum q_i q_j erfc(eta r)/r; grad_pc[p] += d/dD_p of it;
    cgrad_n[i] += scale sum q_j erfc(eta r)/r (the charge gradient of the whole real-space sum)."""
    cdef Py_ssize_t p
    cdef double r, ir, ef, qj, t, g, e = 0.0, cg = 0.0
    cdef double qi = q_n[i]
    cdef double two_eta_sqrtpi = 2.0 * eta / sqrt(M_PI)
    for p in range(indptr[i], indptr[i + 1]):
        r = d_p[p]
        if r >= cutoff:
            continue
        qj = q_n[j_p[p]]
        ir = 1.0 / r
        ef = erfc(eta * r) * ir
        cg = cg + qj * ef
        t = 0.5 * scale * qi * qj
        e = e + t * ef
        if grad_pc != NULL:
            # d/dr (erfc(eta r) / r) = -erfc(eta r) / r^2 - 2 eta / sqrt(pi) exp(-eta^2 r^2) / r; times D / r
            g = -t * (ef + two_eta_sqrtpi * exp(-eta * eta * r * r)) * ir * ir
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


cdef inline Py_ssize_t _col(int d, int m, const int64_t* mmax) noexcept nogil:
    """Column of exp(i m theta_d) in a phase table: axis d's block starts after the blocks of the axes before."""
    cdef Py_ssize_t off = 0
    cdef int e
    for e in range(d):
        off = off + 2 * mmax[e] + 1
    return off + m + mmax[d]


cdef int _check_grid(const int32_t[:, ::1] m_k3, const int64_t[::1] row_ptr, const int64_t[::1] mmax,
                     Py_ssize_t width) except -1:
    """m_k3 [K, 3] within +-mmax, rows of equal (m0, m1) delimited by row_ptr, table width consistent."""
    cdef Py_ssize_t k, r, nk = m_k3.shape[0], nr = row_ptr.shape[0] - 1
    cdef int d
    if mmax.shape[0] != 3 or m_k3.shape[1] != 3:
        raise ValueError("mmax must have 3 entries and m_k3 shape (n_k, 3)")
    if width != (2 * mmax[0] + 1) + (2 * mmax[1] + 1) + (2 * mmax[2] + 1):
        raise ValueError("the phase table width does not match mmax")
    if nr < 0 or row_ptr[0] != 0 or row_ptr[nr] != nk:
        raise ValueError("row_ptr must run from 0 to the number of k-vectors")
    for r in range(nr):
        if row_ptr[r + 1] < row_ptr[r]:
            raise ValueError("row_ptr must be non-decreasing")
        for k in range(row_ptr[r], row_ptr[r + 1]):
            if m_k3[k, 0] != m_k3[row_ptr[r], 0] or m_k3[k, 1] != m_k3[row_ptr[r], 1] \
                    or m_k3[k, 2] != m_k3[row_ptr[r], 2] + (k - row_ptr[r]):
                raise ValueError("the k-vectors of one row must share m0 and m1 and have consecutive m2")
    for k in range(nk):
        for d in range(3):
            if m_k3[k, d] < -mmax[d] or m_k3[k, d] > mmax[d]:
                raise ValueError("m_k3 exceeds mmax")
    return 0


def ewald_phase_tables(const double[:, ::1] r_nc, const double[:, ::1] recip_dc, const int64_t[::1] mmax,
                       double[:, :, ::1] table, int n_threads):
    """table[i, col(d, m)] = (cos, sin)(m b_d . r_i) for m = -mmax[d] .. mmax[d], the phase factors whose
    products give exp(i k . r_i) for k = m0 b0 + m1 b1 + m2 b2 (``b_d`` the rows of ``recip_dc``)."""
    cdef Py_ssize_t i, n = r_nc.shape[0]
    cdef int d, m
    cdef double th
    if r_nc.shape[1] != 3 or recip_dc.shape[0] != 3 or recip_dc.shape[1] != 3 or mmax.shape[0] != 3:
        raise ValueError("r_nc must have shape (n, 3), recip_dc (3, 3), mmax (3,)")
    if table.shape[0] != n or table.shape[2] != 2 \
            or table.shape[1] != (2 * mmax[0] + 1) + (2 * mmax[1] + 1) + (2 * mmax[2] + 1):
        raise ValueError("table must have shape (n_atoms, sum(2 mmax + 1), 2)")
    cdef const int64_t* pm = &mmax[0]
    for i in prange(n, nogil=True, num_threads=max(1, n_threads), schedule="static"):
        for d in range(3):
            th = recip_dc[d, 0] * r_nc[i, 0] + recip_dc[d, 1] * r_nc[i, 1] + recip_dc[d, 2] * r_nc[i, 2]
            for m in range(-pm[d], pm[d] + 1):
                table[i, _col(d, m, pm), 0] = cos(m * th)
                table[i, _col(d, m, pm), 1] = sin(m * th)


cdef enum:
    SF_ROWS = 8  # rows of k-vectors per parallel task of the structure factor
    SF_ATOMS = 128  # atoms per block (their phase factors stay in cache while a task's rows use them)
    KA_ATOMS = 32  # atoms per block of ewald_k_atoms (the k-vector data of a row stay in cache across them)


cdef void _sf_rows(Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n, Py_ssize_t width, Py_ssize_t off2,
                   const double* q_n, const double* tab, const int32_t* m3, const int64_t* row_ptr,
                   const int64_t* pm, double* re_k, double* im_k) noexcept nogil:
    """S(k) of the k-vectors of rows r0 .. r1 - 1, atoms in increasing order (in blocks of SF_ATOMS)."""
    cdef Py_ssize_t b0, b1, i, k, r, k0, nrow
    cdef const double* t
    cdef double* sr
    cdef double* si
    cdef double pr, pi, c0, s0, c1, s1, c2, s2
    cdef Py_ssize_t col0, col1
    b0 = 0
    while b0 < n:
        b1 = b0 + SF_ATOMS if b0 + SF_ATOMS < n else n
        for r in range(r0, r1):
            if row_ptr[r + 1] == row_ptr[r]:
                continue
            col0 = _col(0, m3[3 * row_ptr[r]], pm)
            col1 = _col(1, m3[3 * row_ptr[r] + 1], pm)
            k0 = row_ptr[r]
            nrow = row_ptr[r + 1] - k0
            sr = re_k + k0
            si = im_k + k0
            for i in range(b0, b1):
                t = tab + 2 * width * i
                c0 = t[2 * col0]
                s0 = t[2 * col0 + 1]
                c1 = t[2 * col1]
                s1 = t[2 * col1 + 1]
                pr = q_n[i] * (c0 * c1 - s0 * s1)
                pi = q_n[i] * (c0 * s1 + s0 * c1)
                t = t + 2 * (off2 + m3[3 * k0 + 2])  # the row's m2 are consecutive
                for k in range(nrow):
                    c2 = t[2 * k]
                    s2 = t[2 * k + 1]
                    sr[k] += pr * c2 - pi * s2
                    si[k] += pr * s2 + pi * c2
        b0 = b1


def ewald_structure_factor(const double[::1] q_n, const double[:, :, ::1] table, const int32_t[:, ::1] m_k3,
                           const int64_t[::1] row_ptr, const int64_t[::1] mmax, double[::1] re_k, double[::1] im_k,
                           int n_threads):
    """Structure factor ``S(k) = sum_i q_i exp(i k . r_i)`` of every k-vector: re_k, im_k [K] (set).

    The k-vectors are given by their integer coordinates ``m_k3`` in rows of equal (m0, m1) (``row_ptr``); the
    phase factors come from ``ewald_phase_tables``.
    """
    cdef Py_ssize_t k, c, n = q_n.shape[0], nk = m_k3.shape[0], nr = row_ptr.shape[0] - 1
    cdef Py_ssize_t n_chunks = (nr + SF_ROWS - 1) // SF_ROWS
    if table.shape[0] != n or table.shape[2] != 2:
        raise ValueError("table must have shape (n_atoms, width, 2)")
    if re_k.shape[0] != nk or im_k.shape[0] != nk:
        raise ValueError("re_k and im_k must have shape (n_k,)")
    _check_grid(m_k3, row_ptr, mmax, table.shape[1])
    for k in range(nk):
        re_k[k] = 0.0
        im_k[k] = 0.0
    if n == 0 or nk == 0:
        return
    cdef const int64_t* pm = &mmax[0]
    cdef Py_ssize_t width = table.shape[1]
    cdef Py_ssize_t off2 = _col(2, 0, pm)
    cdef const double* pq = &q_n[0]
    cdef const double* ptab = &table[0, 0, 0]
    cdef const int32_t* pm3 = &m_k3[0, 0]
    cdef const int64_t* prow = &row_ptr[0]
    cdef double* pre = &re_k[0]
    cdef double* pim = &im_k[0]
    for c in prange(n_chunks, nogil=True, num_threads=max(1, n_threads), schedule="dynamic"):
        _sf_rows(c * SF_ROWS, min((c + 1) * SF_ROWS, nr), n, width, off2, pq, ptab, pm3, prow, pm, pre, pim)


cdef void _k_block(Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t nr, Py_ssize_t nk, Py_ssize_t width, Py_ssize_t off2,
                   const double* q_n, const double* tab, const int32_t* m3, const int64_t* row_ptr,
                   const int64_t* pm, const double* aux, double* energy_n, double* grad_nc, double* cgrad_n,
                   double* vir_n9) noexcept nogil:
    """Reciprocal terms of atoms i0 .. i1 - 1 (at most KA_ATOMS): every atom sums its k-vectors in the order
    of the rows, as without blocks; the rows' k-vector data are reused across the atoms of the block.

    ``aux`` holds 11 arrays of length nk: w Re S, w Im S, k_x, k_y, k_z and the six entries of M_k.
    """
    cdef double acc[KA_ATOMS * 10]
    cdef Py_ssize_t b, i, k, r, col0, col1
    cdef const double* t
    cdef const double* wre = aux
    cdef const double* wim = aux + nk
    cdef const double* kx = aux + 2 * nk
    cdef const double* ky = aux + 3 * nk
    cdef const double* kz = aux + 4 * nk
    cdef const double* m0 = aux + 5 * nk
    cdef double c, s, tk, u, pr, pi, c0, s0, c1, s1, c2, s2, qi
    cdef double e, gx, gy, gz, vxx, vyy, vzz, vyz, vxz, vxy
    for b in range(KA_ATOMS * 10):
        acc[b] = 0.0
    for r in range(nr):
        if row_ptr[r + 1] == row_ptr[r]:
            continue
        col0 = _col(0, m3[3 * row_ptr[r]], pm)
        col1 = _col(1, m3[3 * row_ptr[r] + 1], pm)
        for i in range(i0, i1):
            b = 10 * (i - i0)
            t = tab + 2 * width * i
            c0 = t[2 * col0]
            s0 = t[2 * col0 + 1]
            c1 = t[2 * col1]
            s1 = t[2 * col1 + 1]
            pr = c0 * c1 - s0 * s1
            pi = c0 * s1 + s0 * c1
            e = acc[b]
            gx = acc[b + 1]
            gy = acc[b + 2]
            gz = acc[b + 3]
            vxx = acc[b + 4]
            vyy = acc[b + 5]
            vzz = acc[b + 6]
            vyz = acc[b + 7]
            vxz = acc[b + 8]
            vxy = acc[b + 9]
            t = t + 2 * (off2 + m3[3 * row_ptr[r] + 2] - row_ptr[r])  # consecutive m2: t[2 k] for k of the row
            if grad_nc != NULL and vir_n9 != NULL:
                for k in range(row_ptr[r], row_ptr[r + 1]):
                    c = pr * t[2 * k] - pi * t[2 * k + 1]
                    s = pr * t[2 * k + 1] + pi * t[2 * k]
                    tk = c * wre[k] + s * wim[k]
                    u = c * wim[k] - s * wre[k]
                    e = e + tk
                    gx = gx + u * kx[k]
                    gy = gy + u * ky[k]
                    gz = gz + u * kz[k]
                    vxx = vxx + tk * m0[k]
                    vyy = vyy + tk * m0[nk + k]
                    vzz = vzz + tk * m0[2 * nk + k]
                    vyz = vyz + tk * m0[3 * nk + k]
                    vxz = vxz + tk * m0[4 * nk + k]
                    vxy = vxy + tk * m0[5 * nk + k]
            elif grad_nc != NULL:
                for k in range(row_ptr[r], row_ptr[r + 1]):
                    c = pr * t[2 * k] - pi * t[2 * k + 1]
                    s = pr * t[2 * k + 1] + pi * t[2 * k]
                    u = c * wim[k] - s * wre[k]
                    e = e + c * wre[k] + s * wim[k]
                    gx = gx + u * kx[k]
                    gy = gy + u * ky[k]
                    gz = gz + u * kz[k]
            elif vir_n9 != NULL:
                for k in range(row_ptr[r], row_ptr[r + 1]):
                    c = pr * t[2 * k] - pi * t[2 * k + 1]
                    s = pr * t[2 * k + 1] + pi * t[2 * k]
                    tk = c * wre[k] + s * wim[k]
                    e = e + tk
                    vxx = vxx + tk * m0[k]
                    vyy = vyy + tk * m0[nk + k]
                    vzz = vzz + tk * m0[2 * nk + k]
                    vyz = vyz + tk * m0[3 * nk + k]
                    vxz = vxz + tk * m0[4 * nk + k]
                    vxy = vxy + tk * m0[5 * nk + k]
            else:
                for k in range(row_ptr[r], row_ptr[r + 1]):
                    c = pr * t[2 * k] - pi * t[2 * k + 1]
                    s = pr * t[2 * k + 1] + pi * t[2 * k]
                    e = e + c * wre[k] + s * wim[k]
            acc[b] = e
            acc[b + 1] = gx
            acc[b + 2] = gy
            acc[b + 3] = gz
            acc[b + 4] = vxx
            acc[b + 5] = vyy
            acc[b + 6] = vzz
            acc[b + 7] = vyz
            acc[b + 8] = vxz
            acc[b + 9] = vxy
    for i in range(i0, i1):
        b = 10 * (i - i0)
        qi = q_n[i]
        energy_n[i] += qi * acc[b]
        if grad_nc != NULL:
            grad_nc[3 * i] += 2.0 * qi * acc[b + 1]
            grad_nc[3 * i + 1] += 2.0 * qi * acc[b + 2]
            grad_nc[3 * i + 2] += 2.0 * qi * acc[b + 3]
        if cgrad_n != NULL:
            cgrad_n[i] += 2.0 * acc[b]
        if vir_n9 != NULL:
            vxx = qi * acc[b + 4]
            vyy = qi * acc[b + 5]
            vzz = qi * acc[b + 6]
            vyz = qi * acc[b + 7]
            vxz = qi * acc[b + 8]
            vxy = qi * acc[b + 9]
            vir_n9[9 * i] += vxx
            vir_n9[9 * i + 4] += vyy
            vir_n9[9 * i + 8] += vzz
            vir_n9[9 * i + 5] += vyz
            vir_n9[9 * i + 7] += vyz
            vir_n9[9 * i + 2] += vxz
            vir_n9[9 * i + 6] += vxz
            vir_n9[9 * i + 1] += vxy
            vir_n9[9 * i + 3] += vxy


def ewald_k_atoms(const double[::1] q_n, const double[:, :, ::1] table, const int32_t[:, ::1] m_k3,
                  const int64_t[::1] row_ptr, const int64_t[::1] mmax, const double[:, ::1] k_kc,
                  const double[::1] w_k, const double[::1] re_k, const double[::1] im_k,
                  const double[:, ::1] m_k6, double[::1] energy_n, double[:, ::1] grad_nc, bint grad,
                  double[::1] cgrad_n, bint cgrad, double[:, ::1] virial_n9, bint virial, int n_threads):
    """Per-atom reciprocal-space terms of ``E = sum_k w_k |S(k)|^2`` (accumulated).

    With ``t_ik = w_k (cos(k.r_i) Re S + sin(k.r_i) Im S)``: energy_n[i] += q_i sum_k t_ik (eV);
    grad_nc[i] += 2 q_i sum_k w_k (cos Im S - sin Re S) k (eV/Å); cgrad_n[i] += 2 sum_k t_ik (eV/e);
    virial_n9[i] += q_i sum_k t_ik M_k (eV), ``M_k`` the symmetric 3x3 matrix given as ``m_k6``
    (xx yy zz yz xz xy). k-vectors and phases as in ``ewald_structure_factor``; ``k_kc`` [K, 3] (1/Å).
    """
    cdef Py_ssize_t blk, n = q_n.shape[0], nk = m_k3.shape[0], nr = row_ptr.shape[0] - 1
    cdef Py_ssize_t n_blocks = (n + KA_ATOMS - 1) // KA_ATOMS
    if table.shape[0] != n or table.shape[2] != 2 or energy_n.shape[0] != n:
        raise ValueError("table, q_n and energy_n must describe the same atoms")
    if k_kc.shape[0] != nk or k_kc.shape[1] != 3 or w_k.shape[0] != nk or re_k.shape[0] != nk \
            or im_k.shape[0] != nk or m_k6.shape[0] != nk or m_k6.shape[1] != 6:
        raise ValueError("k_kc [K, 3], w_k, re_k, im_k [K] and m_k6 [K, 6] must match m_k3")
    if grad and (grad_nc.shape[0] != n or grad_nc.shape[1] != 3):
        raise ValueError("grad_nc must have shape (n_atoms, 3)")
    if cgrad and cgrad_n.shape[0] != n:
        raise ValueError("cgrad_n must have shape (n_atoms,)")
    if virial and (virial_n9.shape[0] != n or virial_n9.shape[1] != 9):
        raise ValueError("virial_n9 must have shape (n_atoms, 9)")
    _check_grid(m_k3, row_ptr, mmax, table.shape[1])
    if n == 0 or nk == 0:
        return
    cdef const int64_t* pm = &mmax[0]
    cdef Py_ssize_t width = table.shape[1]
    cdef Py_ssize_t off2 = _col(2, 0, pm)
    cdef const double* pq = &q_n[0]
    cdef const double* ptab = &table[0, 0, 0]
    cdef const int32_t* pm3 = &m_k3[0, 0]
    cdef const int64_t* prow = &row_ptr[0]
    cdef double* pe = &energy_n[0]
    cdef double* pg = &grad_nc[0, 0] if grad else NULL
    cdef double* pc = &cgrad_n[0] if cgrad else NULL
    cdef double* pv = &virial_n9[0, 0] if virial else NULL
    cdef double* aux = <double*> malloc(11 * nk * sizeof(double))
    cdef Py_ssize_t k, j
    if aux == NULL:
        raise MemoryError("ewald_k_atoms: no memory for the k-vector arrays")
    try:
        for k in range(nk):
            aux[k] = w_k[k] * re_k[k]
            aux[nk + k] = w_k[k] * im_k[k]
            for j in range(3):
                aux[(2 + j) * nk + k] = k_kc[k, j]
            for j in range(6):
                aux[(5 + j) * nk + k] = m_k6[k, j]
        for blk in prange(n_blocks, nogil=True, num_threads=max(1, n_threads), schedule="dynamic"):
            _k_block(blk * KA_ATOMS, min((blk + 1) * KA_ATOMS, n), nr, nk, width, off2, pq, ptab, pm3, prow, pm,
                     aux, pe, pg, pc, pv)
    finally:
        free(aux)


# ---------------------------------------------------------------------------------------------
# Smooth particle-mesh Ewald: B-spline weights, charge spreading, gathers (miniff/potentials/ewald_mesh.py)
# ---------------------------------------------------------------------------------------------

cdef enum:
    PME_MAX_ORDER = 12


cdef void _spline(double u, int order, int64_t* first, double* w, Py_ssize_t w_stride, double* dw) noexcept nogil:
    """Weights ``w[j * w_stride] = M_p(u - (first + j))`` and their derivatives by u (same layout in ``dw``)."""
    cdef double a[PME_MAX_ORDER + 1]
    cdef double b[PME_MAX_ORDER + 1]
    cdef double fl = floor(u)
    cdef double x = u - fl
    cdef int j, k
    # a[j'] = M_k(x + j'), j' = 0 .. k - 1, built up from k = 2 (Cox - de Boor)
    a[0] = x
    a[1] = 1.0 - x
    b[0] = 1.0
    b[1] = -1.0
    for k in range(3, order + 1):
        if k == order:  # M_n' (y) = M_{n-1}(y) - M_{n-1}(y - 1)
            b[0] = a[0]
            for j in range(1, k - 1):
                b[j] = a[j] - a[j - 1]
            b[k - 1] = -a[k - 2]
        a[k - 1] = (1.0 - x) * a[k - 2] / (k - 1)
        for j in range(k - 2, 0, -1):
            a[j] = ((x + j) * a[j] + (k - x - j) * a[j - 1]) / (k - 1)
        a[0] = x * a[0] / (k - 1)
    first[0] = <int64_t> fl - order + 1
    for j in range(order):
        w[j * w_stride] = a[order - 1 - j]
        dw[j * w_stride] = b[order - 1 - j]


def pme_weights(const double[:, ::1] u_nc, int order, int64_t[:, ::1] first_nc, double[:, :, ::1] w_ncp,
                double[:, :, ::1] dw_ncp, int n_threads):
    """Cardinal B-spline weights of the scaled coordinates ``u_nc`` [N, 3]: weight ``j`` of axis ``c`` belongs to
    the mesh point ``first_nc[i, c] + j`` (not yet wrapped) and is ``M_p(u - that point)``; ``dw`` its derivative
    by u. Outputs are set."""
    cdef Py_ssize_t i, n = u_nc.shape[0]
    cdef int c
    if order < 2 or order > PME_MAX_ORDER:
        raise ValueError(f"order must lie in [2, {PME_MAX_ORDER}]")
    if u_nc.shape[1] != 3 or first_nc.shape[0] != n or first_nc.shape[1] != 3 or w_ncp.shape[0] != n \
            or w_ncp.shape[1] != 3 or w_ncp.shape[2] != order or dw_ncp.shape[0] != n or dw_ncp.shape[1] != 3 \
            or dw_ncp.shape[2] != order:
        raise ValueError("u_nc [N, 3], first_nc [N, 3], w_ncp and dw_ncp [N, 3, order] disagree")
    if n == 0:
        return
    for i in prange(n, nogil=True, num_threads=max(1, n_threads), schedule="static"):
        for c in range(3):
            _spline(u_nc[i, c], order, &first_nc[i, c], &w_ncp[i, c, 0], 1, &dw_ncp[i, c, 0])


def pme_spread(const double[::1] q_n, const int64_t[:, ::1] first_nc, const double[:, :, ::1] w_ncp,
               const int64_t[::1] mesh, double[::1] grid):
    """Spread the charges on the mesh (``grid`` [K1 K2 K3] flattened, accumulated), serially (so the sums do not
    depend on threads): ``grid[k] += q_i prod_c w_ncp[i, c, j_c]`` at ``k_c = (first_nc[i, c] + j_c) mod K_c``."""
    cdef Py_ssize_t i, n = q_n.shape[0]
    cdef int p = w_ncp.shape[2]
    cdef int jx, jy, jz
    cdef int64_t k0 = mesh[0], k1 = mesh[1], k2 = mesh[2], ix, iy, iz
    cdef double wx, wxy
    if first_nc.shape[0] != n or w_ncp.shape[0] != n or mesh.shape[0] != 3 or grid.shape[0] != k0 * k1 * k2:
        raise ValueError("q_n, first_nc, w_ncp, mesh and grid disagree")
    if p > k0 or p > k1 or p > k2 or w_ncp.shape[1] != 3 or first_nc.shape[1] != 3:
        raise ValueError("the mesh must have at least as many points per axis as the spline order")
    with nogil:
        for i in range(n):
            for jx in range(p):
                ix = (first_nc[i, 0] + jx) % k0
                if ix < 0:
                    ix = ix + k0
                wx = q_n[i] * w_ncp[i, 0, jx]
                for jy in range(p):
                    iy = (first_nc[i, 1] + jy) % k1
                    if iy < 0:
                        iy = iy + k1
                    wxy = wx * w_ncp[i, 1, jy]
                    for jz in range(p):
                        iz = (first_nc[i, 2] + jz) % k2
                        if iz < 0:
                            iz = iz + k2
                        grid[(ix * k1 + iy) * k2 + iz] += wxy * w_ncp[i, 2, jz]


def pme_gather(const int64_t[:, ::1] first_nc, const double[:, :, ::1] w_ncp, const double[:, :, ::1] dw_ncp,
               const int64_t[::1] mesh, const double[:, ::1] fields, double[:, ::1] out_nf, bint grad,
               double[:, ::1] du_nc, int n_threads):
    """Interpolate mesh fields at the atoms: ``out_nf[i, f] = sum_k W_i(k) fields[f, k]`` (set), and with
    ``grad`` the derivatives of field 0 by the scaled coordinates, ``du_nc[i, c]`` (set)."""
    cdef Py_ssize_t i, n = first_nc.shape[0]
    cdef int p = w_ncp.shape[2], nf = fields.shape[0]
    cdef int64_t k0 = mesh[0], k1 = mesh[1], k2 = mesh[2]
    if w_ncp.shape[0] != n or dw_ncp.shape[0] != n or mesh.shape[0] != 3 or fields.shape[1] != k0 * k1 * k2 \
            or out_nf.shape[0] != n or out_nf.shape[1] != nf or nf > 8:
        raise ValueError("first_nc, w_ncp, dw_ncp, mesh, fields [F <= 8, M] and out_nf [N, F] disagree")
    if grad and (du_nc.shape[0] != n or du_nc.shape[1] != 3):
        raise ValueError("du_nc must have shape (n_atoms, 3)")
    if p > k0 or p > k1 or p > k2:
        raise ValueError("the mesh must have at least as many points per axis as the spline order")
    if n == 0:
        return
    for i in prange(n, nogil=True, num_threads=max(1, n_threads), schedule="static"):
        _gather_atom(i, p, nf, k0, k1, k2, &first_nc[0, 0], &w_ncp[0, 0, 0], &dw_ncp[0, 0, 0], &fields[0, 0],
                     &out_nf[0, 0], &du_nc[0, 0] if grad else NULL)


cdef void _gather_atom(Py_ssize_t i, int p, int nf, int64_t k0, int64_t k1, int64_t k2, const int64_t* first,
                       const double* w, const double* dw, const double* fields, double* out, double* du) noexcept nogil:
    cdef double acc[8]
    cdef int f, jx, jy, jz
    cdef int64_t ix, iy, iz, idx, m = k0 * k1 * k2
    cdef double wx, wy, wz, dwx, dwy, dwz, val, gx = 0.0, gy = 0.0, gz = 0.0
    cdef const double* wi = w + 3 * p * i
    cdef const double* dwi = dw + 3 * p * i
    for f in range(nf):
        acc[f] = 0.0
    for jx in range(p):
        ix = (first[3 * i] + jx) % k0
        if ix < 0:
            ix = ix + k0
        wx = wi[jx]
        dwx = dwi[jx]
        for jy in range(p):
            iy = (first[3 * i + 1] + jy) % k1
            if iy < 0:
                iy = iy + k1
            wy = wi[p + jy]
            dwy = dwi[p + jy]
            for jz in range(p):
                iz = (first[3 * i + 2] + jz) % k2
                if iz < 0:
                    iz = iz + k2
                wz = wi[2 * p + jz]
                dwz = dwi[2 * p + jz]
                idx = (ix * k1 + iy) * k2 + iz
                for f in range(nf):
                    acc[f] += wx * wy * wz * fields[f * m + idx]
                if du != NULL:
                    val = fields[idx]
                    gx = gx + dwx * wy * wz * val
                    gy = gy + wx * dwy * wz * val
                    gz = gz + wx * wy * dwz * val
    for f in range(nf):
        out[nf * i + f] = acc[f]
    if du != NULL:
        du[3 * i] = gx
        du[3 * i + 1] = gy
        du[3 * i + 2] = gz
