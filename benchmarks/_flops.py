"""Floating-point work of the descriptor benchmark and this machine's float64 peak: a time bound.

The count is of the *formulas* (``docs/formulas.md``) evaluated the direct way, per neighbour pair and per
unordered pair of neighbours (Behler 5 is symmetric in ``j`` and ``k``), with every operation counted once:
an add, a multiply, a divide, a square root, an ``exp`` or a ``cos`` is one operation each. Transcendentals
cost tens of cycles in reality, so the bound is optimistic (a lower bound on the time): miniff's time over it
says how far from the hardware's limit the evaluation is, never that it is slow for a good reason.

Per neighbour pair ``(i, j)`` with ``r < r_c`` (``P`` pairs of the full list):

- geometry: ``r = sqrt(dx^2 + dy^2 + dz^2)`` 6, cutoff ``f_c = (1 + cos(pi r / r_c)) / 2`` 4: 10;
- each Behler-2 ``exp(-eta (r - r_s)^2) f_c``, accumulated: 6 (x ``n_g2``);
- Behler-5 radial factors ``exp(-eta r^2) f_c`` for each distinct ``eta``: 3 (x ``n_eta``).

Per unordered pair of neighbours ``(j, k)`` of atom ``i`` (``T = sum_i n_i (n_i - 1) / 2``):

- ``cos theta = D_ij . D_ik / (r_ij r_ik)``: 7; the product of the two radial factors per ``eta``: 1 (x n_eta);
- each Behler-5 ``(1 + lambda cos)^zeta`` (``zeta`` = 1: 2, 4: 4), times the radial product, accumulated: +2.

With the Jacobian (derivatives by the pair vectors ``D_ij``):

- per pair: ``1 / r`` 1, ``f_c'`` 3; each Behler-2 ``d/dr`` 4 and its three components 3: 7 (x ``n_g2``);
  the radial factors' derivatives 3 (x ``n_eta``);
- per unordered neighbour pair: ``d cos / d D_ij`` and ``d cos / d D_ik`` 15; each Behler-5: ``d/d cos`` 3,
  ``d/d r_ij`` and ``d/d r_ik`` 4, six components 12: 19.
"""

import time

import numpy as np

__all__ = ["descriptor_flops", "float64_peak", "neighbour_counts"]


def neighbour_counts(indptr):
    """``(P, T)``: directed pairs and unordered pairs of neighbours ``sum_i n_i (n_i - 1) / 2`` of a CSR list."""
    n_i = np.diff(np.asarray(indptr, dtype=np.int64))
    return int(n_i.sum()), int((n_i * (n_i - 1) // 2).sum())


def descriptor_flops(n_pairs, n_triplets, g2, g5, jacobian=False):
    """Operations of the benchmark's descriptor set by the count in this module's docstring.

    Parameters
    ----------
    n_pairs, n_triplets : int
        ``P`` and ``T`` of :func:`neighbour_counts`.
    g2 : list of (eta, r_s)
    g5 : list of (eta, zeta, lambda)
    jacobian : bool
        Values and the per-pair Jacobian instead of values only.

    Returns
    -------
    float
    """
    n_g2 = len(g2)
    n_eta = len({eta for eta, _, _ in g5})
    per_pair = 10 + 6 * n_g2 + 3 * n_eta
    per_triplet = 7 + n_eta + sum((2 if zeta == 1 else 4) + 2 for _, zeta, _ in g5)
    if jacobian:
        per_pair += 4 + 7 * n_g2 + 3 * n_eta
        per_triplet += 15 + 19 * len(g5)
    return float(n_pairs * per_pair + n_triplets * per_triplet)


def float64_peak(size=1536, repeat=5):
    """Float64 operations per second of a BLAS matrix product (numpy's BLAS, all its threads), best of ``repeat``.

    Returns
    -------
    float
        ``2 size^3 / t`` of the fastest product, flop/s.
    """
    rng = np.random.default_rng(0)
    a = rng.normal(size=(size, size))
    b = rng.normal(size=(size, size))
    out = np.empty((size, size))
    np.matmul(a, b, out=out)  # warm-up (threads, pages)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best
