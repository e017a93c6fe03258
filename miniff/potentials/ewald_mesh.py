"""Smooth particle-mesh Ewald (SPME): the reciprocal sum of the Ewald method on a charge mesh.

Essmann et al., J. Chem. Phys. 103, 8577 (1995). With grid sizes ``K_d`` and scaled coordinates
``u_id = K_d s_id`` (``s`` fractional), the charges are spread on the mesh with cardinal B-splines ``M_p`` of
order ``p``: ``Q(k) = sum_i q_i prod_d M_p(u_id - k_d)`` (periodically). With ``m`` the reciprocal vectors
(without 2 pi) and ``B(m) = prod_d |b_d(m_d)|^2`` the Euler exponential spline factors,

    E = 1/2 sum_m C(m) |FFT(Q)(m)|^2,    C(m) = scale / (pi V) exp(-pi^2 m^2 / eta^2) / m^2 B(m)  (C(0) = 0),

the same as the direct reciprocal sum ``(2 pi scale / V) sum_k exp(-k^2/4 eta^2)/k^2 |S(k)|^2`` with ``S(k)``
interpolated. The potential on the mesh ``phi = dE/dQ`` is one more FFT; per-atom energies
``1/2 q_i sum_k W_i(k) phi(k)``, forces from the spline derivatives, per-atom virials from six more FFTs
(``C(m) M(m)`` with ``M = 2 m m (1/m^2 + pi^2/eta^2) - 1``). Spline weights, spreading (over slabs of mesh
planes) and gathers (OpenMP) are compiled (``miniff/_ext/pme.pyx``), the FFTs are real-to-complex ``scipy.fft``
transforms (half the spectrum; ``workers`` = threads); the influence function ``C(m)`` of the latest few (cell,
mesh, eta, scale, order) sets is kept, so repeated steps of one cell compute only the spreading, two FFTs and the
gathers; memory O(N p + mesh).
"""

import math

import numpy as np
import scipy.fft

from miniff._ext import kernel_module as _k
from miniff.potentials.ewald_terms import LongRange

__all__ = ["MAX_MESH_POINTS", "ORDERS", "reciprocal_mesh"]

#: Largest number of mesh points.
MAX_MESH_POINTS = 64_000_000
#: B-spline orders accepted (even: their Euler factors never vanish).
ORDERS = (4, 6, 8, 10, 12)


def _bspline(x, order):
    """Cardinal B-spline ``M_order(x)`` (support [0, order]) by its explicit sum (fine for order <= 12)."""
    out = np.zeros_like(x)
    for k in range(order + 1):
        out += (-1) ** k * math.comb(order, k) * np.maximum(x - k, 0.0) ** (order - 1)
    return out / math.factorial(order - 1)


def _weights_reference(u, order):
    """Spline weights and their derivatives by u for one axis: ``(first grid index [N] int64, w [N, p], dw [N, p])``.

    Weight ``j`` belongs to the grid point ``floor(u) - p + 1 + j`` and is ``M_p(u - that point)``.
    """
    base = np.floor(u)
    frac = u - base
    x = frac[:, None] + (order - 1 - np.arange(order))[None, :]  # u - grid point, in (0, order)
    w = _bspline(x, order)
    dw = _bspline(x, order - 1) - _bspline(x - 1, order - 1)
    return base.astype(np.int64) - order + 1, w, dw


def _euler_factor(size, order):
    """``|b(m)|^2`` for m = 0 .. size - 1 (FFT order)."""
    m = np.arange(size)
    k = np.arange(order - 1)
    denominator = (_bspline(k + 1.0, order)[None, :] * np.exp(2j * np.pi * np.outer(m, k) / size)).sum(axis=1)
    return 1.0 / np.abs(denominator) ** 2


class _Influence:
    """The influence function ``C(m)`` of one cell, mesh, ``eta``, ``scale`` and order on the half spectrum of a
    real FFT (``[K1, K2, K3 // 2 + 1]``), and, made when first asked for, its six strain derivatives ``C M_ab``
    (Voigt order xx yy zz yz xz xy)."""

    def __init__(self, vectors, mesh, eta, scale, order):
        recip = np.linalg.inv(vectors).T  # rows a*_d (without 2 pi)
        volume = abs(np.linalg.det(vectors))
        sizes = [int(v) for v in mesh]
        freqs = [np.fft.fftfreq(sizes[0], 1.0 / sizes[0]), np.fft.fftfreq(sizes[1], 1.0 / sizes[1]),
                 np.arange(sizes[2] // 2 + 1, dtype=float)]
        self.mm = (freqs[0][:, None, None, None] * recip[0] + freqs[1][None, :, None, None] * recip[1]
                   + freqs[2][None, None, :, None] * recip[2])  # [K1, K2, K3 // 2 + 1, 3]
        m2 = np.einsum("abcd,abcd->abc", self.mm, self.mm)
        m2[0, 0, 0] = 1.0
        euler = (_euler_factor(sizes[0], order)[:, None, None] * _euler_factor(sizes[1], order)[None, :, None]
                 * _euler_factor(sizes[2], order)[None, None, : sizes[2] // 2 + 1])
        self.c = scale / (np.pi * volume) * np.exp(-np.pi**2 * m2 / eta**2) / m2 * euler
        self.c[0, 0, 0] = 0.0
        self.factor = 2 * (1 / m2 + np.pi**2 / eta**2)
        self._strain = None

    def strain(self):
        """``[C M_ab for ab in xx yy zz yz xz xy]``, ``M = 2 m m (1/m^2 + pi^2/eta^2) - 1``."""
        if self._strain is None:
            self._strain = [self.c * (self.factor * self.mm[..., a] * self.mm[..., b] - (1.0 if a == b else 0.0))
                            for a, b in _PAIRS]
        return self._strain


_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: influence functions of the latest (cell, mesh, eta, scale, order) sets, newest last (a few MB each)
_INFLUENCE = {}
_INFLUENCE_KEPT = 4


def _influence(vectors, mesh, eta, scale, order):
    """The cached :class:`_Influence` of these parameters (made once; the oldest of more than four is dropped)."""
    key = (vectors.tobytes(), tuple(int(v) for v in mesh), float(eta), float(scale), int(order))
    found = _INFLUENCE.pop(key, None)
    if found is None:
        found = _Influence(vectors, mesh, float(eta), float(scale), int(order))
        while len(_INFLUENCE) >= _INFLUENCE_KEPT:
            _INFLUENCE.pop(next(iter(_INFLUENCE)))
    _INFLUENCE[key] = found
    return found


def reciprocal_mesh(q_n, r_nc, vectors, eta, scale, mesh, order, grad, cgrad, virial, n_threads=1):
    """The reciprocal Ewald sum by SPME, per atom.

    Parameters
    ----------
    q_n : ndarray [N]
        e.
    r_nc : ndarray [N, 3]
        Cartesian positions, Å.
    vectors : ndarray [3, 3]
        Cell vectors (rows), Å.
    eta : float
        1/Å.
    scale : float
        eV Å.
    mesh : array-like [3] of int
        Mesh points per axis.
    order : int
        B-spline order (even, >= 4).
    grad, cgrad, virial : bool
    n_threads : int
        Threads of the weights, the spreading (slabs of mesh planes), the gathers and the FFTs (``scipy.fft``
        workers); results do not depend on threads.

    Returns
    -------
    LongRange
        (energies eV, dE/dr eV/Å, dE/dq eV/e, per-atom virials eV; each None unless asked)
    """
    vectors = np.ascontiguousarray(vectors, dtype=float)
    mesh = np.asarray(mesh, dtype=np.int64)
    if int(np.prod(mesh)) > MAX_MESH_POINTS:
        raise ValueError(f"mesh={mesh.tolist()} has more than {MAX_MESH_POINTS} points")
    n = len(q_n)
    recip = np.linalg.inv(vectors).T  # rows a*_d (without 2 pi)
    order = int(order)
    workers = max(1, int(n_threads or 1))
    u_nc = np.ascontiguousarray((np.asarray(r_nc, dtype=float) @ recip.T) * mesh[None, :])  # scaled coordinates
    first_nc = np.empty((n, 3), dtype=np.int64)
    w_ncp = np.empty((n, 3, order))
    dw_ncp = np.empty((n, 3, order))
    _k.pme_weights(u_nc, order, first_nc, w_ncp, dw_ncp, n_threads)
    shape = tuple(int(v) for v in mesh)
    points = int(np.prod(mesh))
    charge_mesh = np.zeros(points)
    _k.pme_spread(np.ascontiguousarray(q_n, dtype=float), first_nc, w_ncp, mesh, charge_mesh, n_threads)
    fq = scipy.fft.rfftn(charge_mesh.reshape(shape), workers=workers)
    influence = _influence(vectors, mesh, eta, scale, order)
    # phi = dE/dQ; C is even in m, so C FFT(Q) is the spectrum of a real field
    fields = [scipy.fft.irfftn(influence.c * fq, s=shape, workers=workers)]
    if virial:
        fields += [scipy.fft.irfftn(c * fq, s=shape, workers=workers) for c in influence.strain()]
    fields = np.ascontiguousarray(np.stack([f.reshape(-1) for f in fields]))
    fields *= points
    out_nf = np.empty((n, len(fields)))
    du_nc = np.empty((n, 3)) if grad else np.zeros((0, 3))
    _k.pme_gather(first_nc, w_ncp, dw_ncp, mesh, fields, out_nf, grad, du_nc, n_threads)
    potential_n = out_nf[:, 0]  # dE/dq_i
    energy_n = 0.5 * q_n * potential_n
    grad_nc = cgrad_n = virial_n = None
    if grad:
        grad_nc = q_n[:, None] * ((du_nc * mesh[None, :]) @ recip)  # d u_d / d r = K_d a*_d
    if cgrad:
        cgrad_n = potential_n.copy()
    if virial:
        virial_n = np.empty((n, 3, 3))
        for col, (a, b) in enumerate(_PAIRS, start=1):
            virial_n[:, a, b] = virial_n[:, b, a] = 0.5 * q_n * out_nf[:, col]
    return LongRange(energy_n, grad_nc, cgrad_n, virial_n)
