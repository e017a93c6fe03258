"""Charge equilibration of Gaussian charges (the electrostatics of 4G-HDNNPs), open or periodic.

Atom ``i`` carries a Gaussian charge of width ``sigma_i``; two such charges at distance ``r`` interact by
``k erf(r / (sqrt(2) gamma_ij)) / r`` with ``gamma_ij = sqrt(sigma_i^2 + sigma_j^2)``, ``k`` the Coulomb constant
in the caller's units (1 in atomic units).  The charges ``Q`` minimise

    E_Qeq(Q) = sum_i (chi_i Q_i + J_i Q_i^2 / 2) + sum_i k Q_i^2 / (2 sigma_i sqrt(pi)) + E_coul(Q)

subject to ``sum_i Q_i = Q_tot``: the linear system ``[[A, 1], [1^T, 0]] [Q; mu] = [-chi; Q_tot]`` with ``A`` the
Hessian of ``E_Qeq`` (``A_ii = J_i + k / (sigma_i sqrt(pi)) + ...``, ``A_ij = k erf(...)/r`` summed over images).
In a periodic cell ``E_coul`` is an Ewald sum with a Gaussian splitting of width ``eta`` (length; the
``erfc(eta_m r)`` parameter of :mod:`miniff.potentials.ewald_terms` is ``eta_m = 1 / (sqrt(2) eta)``): real-space
pairs ``k (erf(r / (sqrt(2) gamma)) - erf(r / (sqrt(2) eta))) / r`` with ``r < r_cut``, the reciprocal sum over
``|k| < k_cut`` (:func:`miniff.potentials.ewald_terms.reciprocal_space`) and the self term ``-k sqrt(2) / (eta
sqrt(pi)) Q_i^2 / 2``.  Open systems sum every pair, with no cutoff.

The electrostatic energy reported is ``E_elec = Q^T B Q / 2``: the Coulomb energy of the Gaussian charges
without their self energy, with the pair terms screened by ``s(r)`` (0 at short range, 1 beyond the screening
radius): ``B = A - diag(J) - diag(k / (sigma sqrt(pi))) + S`` with ``S_ij = k sum erf(r / (sqrt(2) gamma)) (s(r)
- 1) / r`` over the images with ``r < r_screen``.

Forces need the charges' dependence on positions.  For a total energy ``E(x, Q(x))`` with ``g = dE/dQ`` at fixed
positions, the adjoint ``[[A, 1], [1^T, 0]] [lambda; nu] = [-g; 0]`` gives ``dE/dx = dE/dx|_Q + lambda^T (d chi /
dx + dA/dx Q)`` (:meth:`GaussianQeq.adjoint`, :meth:`GaussianQeq.pair_gradient`): no ``dQ/dx`` is formed.
"""

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.special import erf

from miniff._ext import kernel_module as _k
from miniff.neighbors.search import build_pair_list
from miniff.potentials.ewald_terms import half_grid, reciprocal_space

__all__ = ["EwaldSplit", "GaussianQeq"]

_SQRT_PI = math.sqrt(math.pi)


@dataclass(frozen=True)
class EwaldSplit:
    """Parameters of a truncated Ewald sum of Gaussian charges (lengths in the caller's unit)."""

    #: width of the Gaussian splitting charge (``erfc(r / (sqrt(2) eta))``)
    eta: float
    #: real-space cutoff
    r_cut: float
    #: reciprocal-space cutoff (1/length)
    k_cut: float


def _erf_over_r(d, a):
    """``(erf(d / a) / d, its derivative in d)``."""
    e = erf(d / a)
    return e / d, 2.0 / (_SQRT_PI * a) * np.exp(-((d / a) ** 2)) / d - e / (d * d)


class GaussianQeq:
    """The charge-equilibration system of one structure (see the module docstring).

    Parameters
    ----------
    positions : ndarray [N, 3]
        Cartesian positions (caller's length unit).
    vectors : ndarray [3, 3]
        Cell vectors (rows); used only when ``ewald`` is given.
    sigma_n, hardness_n : ndarray [N]
        Gaussian widths (length) and hardnesses ``J`` (energy / e^2) of every atom.
    coulomb : float
        ``k = 1 / (4 pi eps0)`` in the caller's units (energy length / e^2).
    ewald : EwaldSplit or None
        Periodic along the three axes with these Ewald parameters, or an open system (None).
    screening : callable or None
        ``screening(r) -> (s, ds/dr)`` for arrays of distances below ``screen_radius``; None: no screening.
    screen_radius : float
        Distance from which ``s = 1``.
    self_image_screening : float
        Factor of the screening terms of an atom with its own periodic images: 1 counts every image pair once
        (as the unscreened sum), 2 is n2p2's convention (it counts them twice).
    """

    def __init__(self, positions, vectors, sigma_n, hardness_n, coulomb, ewald=None, screening=None,
                 screen_radius=0.0, self_image_screening=1.0):
        self.positions = np.ascontiguousarray(positions, dtype=float)
        self.vectors = np.asarray(vectors, dtype=float)
        self.sigma_n = np.asarray(sigma_n, dtype=float)
        self.hardness_n = np.asarray(hardness_n, dtype=float)
        self.k = float(coulomb)
        self.ewald = ewald
        self.screening = screening
        self.screen_radius = float(screen_radius) if screening is not None else 0.0
        self.self_image_screening = float(self_image_screening)
        n = len(self.positions)
        if ewald is None:
            extent = np.ptp(self.positions, axis=0) if n else np.zeros(3)
            reach = float(np.linalg.norm(extent)) * 1.01 + 1.0  # every pair of an open structure
            box = np.diag(np.maximum(extent, 1.0) * 3.0)
            pairs = build_pair_list(self.positions, box, False, reach, sort=True)
        else:
            reach = max(ewald.r_cut, self.screen_radius)
            pairs = build_pair_list(self.positions, self.vectors, True, reach, sort=True)
        # one of each pair (i, j, S) and (j, i, -S): i < j, or i == j with the first non-zero S positive
        i_p = np.repeat(np.arange(n), np.diff(pairs.indptr))
        j_p = np.asarray(pairs.j_p, dtype=np.int64)
        s_pc = np.asarray(pairs.S_pc)
        first = np.where(s_pc[:, 0] != 0, s_pc[:, 0], np.where(s_pc[:, 1] != 0, s_pc[:, 1], s_pc[:, 2]))
        keep = np.flatnonzero((i_p < j_p) | ((i_p == j_p) & (first > 0)))
        self.i_p, self.j_p = i_p[keep], j_p[keep]
        self.D_pc = np.ascontiguousarray(np.asarray(pairs.D_pc)[keep])
        self.d_p = np.asarray(pairs.d_p)[keep]
        # the kept pairs stay sorted by i: their CSR row pointers and int32 neighbours for the compiled scatter
        self._indptr = np.searchsorted(self.i_p, np.arange(n + 1)).astype(np.int64)
        self._j32 = self.j_p.astype(np.int32)
        gamma = np.sqrt(self.sigma_n[self.i_p] ** 2 + self.sigma_n[self.j_p] ** 2) * math.sqrt(2.0)
        self._gamma_p = gamma
        self.matrix_a, self.matrix_b = self._matrices()
        bordered = np.ones((n + 1, n + 1))
        bordered[:n, :n] = self.matrix_a
        bordered[n, n] = 0.0
        self._lu = scipy.linalg.lu_factor(bordered, check_finite=True)

    # ------------------------------------------------------------------ pair functions
    def _pair_functions(self):
        """Per pair (one direction): ``phi_A``, ``phi_B`` and their derivatives in ``d`` (times ``k``)."""
        d, k = self.d_p, self.k
        f, df = _erf_over_r(d, self._gamma_p)
        phi_a, dphi_a = f, df
        if self.ewald is not None:
            inside = d < self.ewald.r_cut
            g, dg = _erf_over_r(d, math.sqrt(2.0) * self.ewald.eta)
            phi_a = np.where(inside, f - g, 0.0)
            dphi_a = np.where(inside, df - dg, 0.0)
        phi_b, dphi_b = phi_a.copy(), dphi_a.copy()
        if self.screening is not None:
            near = np.flatnonzero(d < self.screen_radius)
            s, ds = self.screening(d[near])
            factor = np.where(self.i_p[near] == self.j_p[near], self.self_image_screening, 1.0)
            phi_b[near] += factor * f[near] * (s - 1.0)
            dphi_b[near] += factor * (df[near] * (s - 1.0) + f[near] * ds)
        return k * phi_a, k * phi_b, k * dphi_a, k * dphi_b

    def _phases(self):
        """``(k_kc [K, 3], weights [K], cos [N, K], sin [N, K])`` of the reciprocal sum (half grid)."""
        grid = half_grid(self.vectors, self.ewald.k_cut)
        k_kc = grid.k_kc
        k2 = np.einsum("kc,kc->k", k_kc, k_kc)
        volume = abs(float(np.linalg.det(self.vectors)))
        w_k = 4.0 * math.pi / volume * np.exp(-0.5 * self.ewald.eta**2 * k2) / k2
        phase = self.positions @ k_kc.T
        return k_kc, w_k, np.cos(phase), np.sin(phase)

    def _matrices(self):
        n = len(self.positions)
        phi_a, phi_b, self._dphi_a, self._dphi_b = self._pair_functions()
        flat = self.i_p * n + self.j_p
        a = np.bincount(flat, weights=phi_a, minlength=n * n).reshape(n, n)
        b = np.bincount(flat, weights=phi_b, minlength=n * n).reshape(n, n)
        a, b = a + a.T, b + b.T  # every pair was kept once
        self_gauss = self.k / (self.sigma_n * _SQRT_PI)
        diag = self.hardness_n + self_gauss
        if self.ewald is not None:
            diag = diag - self.k * math.sqrt(2.0) / (self.ewald.eta * _SQRT_PI)
            _, w_k, cos, sin = self._phases()
            recip = 2.0 * self.k * ((cos * w_k) @ cos.T + (sin * w_k) @ sin.T)
            a += recip
            b += recip
        a[np.diag_indices(n)] += diag
        b[np.diag_indices(n)] += diag - self.hardness_n - self_gauss
        return a, b

    # ------------------------------------------------------------------ solutions
    def solve(self, chi_n, total_charge):
        """Charges ``[N]`` (e) minimising ``E_Qeq`` with electronegativities ``chi_n`` (energy / e) at the given
        total charge."""
        rhs = np.append(-np.asarray(chi_n, dtype=float), float(total_charge))
        return scipy.linalg.lu_solve(self._lu, rhs)[:-1]

    def adjoint(self, g_n):
        """``lambda [N]`` of ``[[A, 1], [1^T, 0]] [lambda; nu] = [-g; 0]`` (``g = dE/dQ``)."""
        rhs = np.append(-np.asarray(g_n, dtype=float), 0.0)
        return scipy.linalg.lu_solve(self._lu, rhs, trans=0)[:-1]

    def electrostatic_energy(self, q_n):
        """``(energy_n [N], dE_elec/dQ [N])``: ``E_elec = Q^T B Q / 2`` split as ``Q_i (B Q)_i / 2``."""
        bq = self.matrix_b @ q_n
        return 0.5 * q_n * bq, bq

    def pair_gradient(self, q_n, lam_n, virial=False, n_threads=1):
        """Gradient at fixed ``Q``, ``lambda`` of ``Q^T B Q / 2 + lambda^T A Q``: ``(grad_nc [N, 3], virial_n
        [N, 3, 3] or None)`` (energy / length and energy; the virials sum to d/d strain); ``n_threads``: of the
        compiled reciprocal sum."""
        n = len(q_n)
        dphi_a, dphi_b = self._dphi_a, self._dphi_b
        qi, qj = q_n[self.i_p], q_n[self.j_p]
        scalar = (qi * qj * dphi_b + (lam_n[self.i_p] * qj + lam_n[self.j_p] * qi) * dphi_a) / self.d_p
        g_pc = np.ascontiguousarray(scalar[:, None] * self.D_pc)
        grad_nc = np.zeros((n, 3))
        # the compiled scatter of the pair kernels (pairs sorted by i: a CSR list of one direction per pair)
        threads = max(1, int(n_threads or 1))
        _k.pair_gradient_to_atoms(self._indptr, self._j32, g_pc, grad_nc, threads)
        virial_n = None
        if virial:
            virial_n = np.zeros((n, 9))
            _k.pair_virial(self._indptr, g_pc, self.D_pc, virial_n, threads)
            virial_n = virial_n.reshape(n, 3, 3)
        if self.ewald is not None:
            self._add_reciprocal(q_n, lam_n, grad_nc, virial_n, n_threads)
        return grad_nc, virial_n

    def _add_reciprocal(self, q_n, lam_n, grad_nc, virial_n, n_threads):
        """Reciprocal part of :meth:`pair_gradient`: ``Q^T R Q / 2 + lambda^T R Q = E_R(Q + lambda) - E_R(lambda)``
        with ``E_R(q) = q^T R q / 2`` the reciprocal Ewald energy (``ewald_terms.reciprocal_space``)."""
        eta_m = 1.0 / (math.sqrt(2.0) * self.ewald.eta)
        grid = half_grid(self.vectors, self.ewald.k_cut)
        volume = abs(float(np.linalg.det(self.vectors)))
        virial = virial_n is not None
        for q, sign in ((q_n + lam_n, 1.0), (lam_n, -1.0)):
            part = reciprocal_space(np.ascontiguousarray(q), self.positions, volume, grid, eta_m, self.k, True,
                                    False, virial, n_threads)
            grad_nc += sign * part.grad_nc
            if virial:
                virial_n += sign * part.virial_n
