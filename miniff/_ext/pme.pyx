# cython: language_level=3
"""Smooth particle-mesh Ewald of miniff's compiled core (private; called through ``miniff._ext.kernel_module``).

``pme_weights``: cardinal B-spline weights (and derivatives) of the scaled coordinates; ``pme_spread``: the
charges on the mesh; ``pme_gather``: mesh fields interpolated at the atoms (and the derivative of the first).
The FFTs and the influence function are in ``miniff/potentials/ewald_mesh.py``; formulas in ``docs/formulas.md``
("Ewald summation").
"""

# Threads: weights and gathers run over atoms (each atom by one thread); the spreading over slabs of mesh planes
# (each thread adds every atom, in index order, to its own planes). Results do not depend on the number of
# threads.

from libc.math cimport floor
from libc.stdint cimport int64_t
from cython.parallel cimport prange

from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED

__all__ = ["pme_weights", "pme_spread", "pme_gather"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext



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


cdef int _check_mesh(const int64_t[:, ::1] first_nc, const double[:, :, ::1] w_ncp, const double[:, :, ::1] dw_ncp,
                     const int64_t[::1] mesh, Py_ssize_t n, Py_ssize_t points) except -1:
    """The argument check of spreading and gathers: first_nc [N, 3], w_ncp and dw_ncp [N, 3, p], mesh [3] with at
    least p points per axis and ``points`` = their product."""
    cdef int p = w_ncp.shape[2]
    if first_nc.shape[0] != n or first_nc.shape[1] != 3 or w_ncp.shape[0] != n or w_ncp.shape[1] != 3 \
            or dw_ncp.shape[0] != n or dw_ncp.shape[1] != 3 or dw_ncp.shape[2] != p:
        raise ValueError("first_nc [N, 3], w_ncp and dw_ncp [N, 3, order] disagree")
    if mesh.shape[0] != 3 or points != mesh[0] * mesh[1] * mesh[2]:
        raise ValueError("the mesh arrays do not have mesh[0] * mesh[1] * mesh[2] points")
    if p > mesh[0] or p > mesh[1] or p > mesh[2]:
        raise ValueError("the mesh must have at least as many points per axis as the spline order")
    return 0


cdef inline int64_t _wrap(int64_t k, int64_t size) noexcept nogil:
    k = k % size
    return k + size if k < 0 else k


cdef void _spread_slab(Py_ssize_t n, int p, int64_t x0, int64_t x1, int64_t k0, int64_t k1, int64_t k2,
                       const double* q_n, const int64_t* first, const double* w, double* grid) noexcept nogil:
    """Spread every atom (in index order) on the mesh planes x0 <= ix < x1."""
    cdef Py_ssize_t i
    cdef int jx, jy, jz
    cdef int64_t ix, iy, base
    cdef int64_t iz[PME_MAX_ORDER]
    cdef double wx, wxy
    cdef const double* wi
    for i in range(n):
        wi = w + 3 * p * i
        for jz in range(p):
            iz[jz] = _wrap(first[3 * i + 2] + jz, k2)
        for jx in range(p):
            ix = _wrap(first[3 * i] + jx, k0)
            if ix < x0 or ix >= x1:
                continue
            wx = q_n[i] * wi[jx]
            for jy in range(p):
                iy = _wrap(first[3 * i + 1] + jy, k1)
                wxy = wx * wi[p + jy]
                base = (ix * k1 + iy) * k2
                for jz in range(p):
                    grid[base + iz[jz]] += wxy * wi[2 * p + jz]


def pme_spread(const double[::1] q_n, const int64_t[:, ::1] first_nc, const double[:, :, ::1] w_ncp,
               const int64_t[::1] mesh, double[::1] grid, int n_threads=1):
    """Spread the charges on the mesh (``grid`` [K1 K2 K3] flattened, accumulated):
    ``grid[k] += q_i prod_c w_ncp[i, c, j_c]`` at ``k_c = (first_nc[i, c] + j_c) mod K_c``. Threads own slabs of
    planes of the first axis and add the atoms in index order, so every mesh point sums the same terms in the
    same order for any number of threads."""
    cdef Py_ssize_t n = q_n.shape[0]
    cdef int p = w_ncp.shape[2], t, n_slabs
    cdef int64_t k0, k1, k2
    _check_mesh(first_nc, w_ncp, w_ncp, mesh, n, grid.shape[0])
    k0, k1, k2 = mesh[0], mesh[1], mesh[2]
    if n == 0:
        return
    n_slabs = max(1, min(n_threads, <int> k0))
    for t in prange(n_slabs, nogil=True, num_threads=n_slabs, schedule="static"):
        _spread_slab(n, p, k0 * t // n_slabs, k0 * (t + 1) // n_slabs, k0, k1, k2, &q_n[0], &first_nc[0, 0],
                     &w_ncp[0, 0, 0], &grid[0])


def pme_gather(const int64_t[:, ::1] first_nc, const double[:, :, ::1] w_ncp, const double[:, :, ::1] dw_ncp,
               const int64_t[::1] mesh, const double[:, ::1] fields, double[:, ::1] out_nf, bint grad,
               double[:, ::1] du_nc, int n_threads):
    """Interpolate mesh fields at the atoms: ``out_nf[i, f] = sum_k W_i(k) fields[f, k]`` (set), and with
    ``grad`` the derivatives of field 0 by the scaled coordinates, ``du_nc[i, c]`` (set)."""
    cdef Py_ssize_t i, n = first_nc.shape[0]
    cdef int p = w_ncp.shape[2], nf = fields.shape[0]
    cdef int64_t k0, k1, k2
    _check_mesh(first_nc, w_ncp, dw_ncp, mesh, n, fields.shape[1])
    k0, k1, k2 = mesh[0], mesh[1], mesh[2]
    if out_nf.shape[0] != n or out_nf.shape[1] != nf or nf > 8:
        raise ValueError("fields [F <= 8, M] and out_nf [N, F] disagree")
    if grad and (du_nc.shape[0] != n or du_nc.shape[1] != 3):
        raise ValueError("du_nc must have shape (n_atoms, 3)")
    if n == 0:
        return
    for i in prange(n, nogil=True, num_threads=max(1, n_threads), schedule="static"):
        _gather_atom(i, p, nf, k0, k1, k2, &first_nc[0, 0], &w_ncp[0, 0, 0], &dw_ncp[0, 0, 0], &fields[0, 0],
                     &out_nf[0, 0], &du_nc[0, 0] if grad else NULL)


cdef void _gather_atom(Py_ssize_t i, int p, int nf, int64_t k0, int64_t k1, int64_t k2, const int64_t* first,
                       const double* w, const double* dw, const double* fields, double* out, double* du) noexcept nogil:
    """Separable sums: per (x, y) line the sums over z of w_z f and dw_z f, then the x and y weights."""
    cdef double acc[8]
    cdef int f, jx, jy, jz
    cdef int64_t ix, iy, base, m = k0 * k1 * k2
    cdef int64_t iz[PME_MAX_ORDER]
    cdef double wx, wy, dwx, dwy, a, b, wxy, gx = 0.0, gy = 0.0, gz = 0.0
    cdef const double* wi = w + 3 * p * i
    cdef const double* dwi = dw + 3 * p * i
    cdef const double* line
    for f in range(nf):
        acc[f] = 0.0
    for jz in range(p):
        iz[jz] = _wrap(first[3 * i + 2] + jz, k2)
    for jx in range(p):
        ix = _wrap(first[3 * i] + jx, k0)
        wx = wi[jx]
        dwx = dwi[jx]
        for jy in range(p):
            iy = _wrap(first[3 * i + 1] + jy, k1)
            wy = wi[p + jy]
            dwy = dwi[p + jy]
            wxy = wx * wy
            base = (ix * k1 + iy) * k2
            for f in range(nf):
                line = fields + f * m + base
                a = 0.0
                for jz in range(p):
                    a = a + wi[2 * p + jz] * line[iz[jz]]
                acc[f] += wxy * a
                if f == 0 and du != NULL:
                    b = 0.0
                    for jz in range(p):
                        b = b + dwi[2 * p + jz] * line[iz[jz]]
                    gx = gx + dwx * wy * a
                    gy = gy + wx * dwy * a
                    gz = gz + wxy * b
    for f in range(nf):
        out[nf * i + f] = acc[f]
    if du != NULL:
        du[3 * i] = gx
        du[3 * i + 1] = gy
        du[3 * i + 2] = gz
