"""Structure analysis on neighbour lists: radial and angular distribution functions, pair reductions."""

import itertools

import numpy as np

__all__ = ["pair_reduction_function", "rdf", "adf"]

_NORM = 1.0 / np.sqrt(2.0 * np.pi)


def pair_reduction_function(nw, f, fmt="{}-{}"):
    """Apply a function to the pair distances of every unordered species pair.

    Parameters
    ----------
    nw : NeighborWrapper
        With a neighbour list.
    f : callable
        ``f(d, code1, code2)``: ``d`` [P12] are the distances (Å) of the pairs whose centre has
        species ``code1`` and neighbour species ``code2`` (``code1 <= code2``).
    fmt : str
        Key format, ``fmt.format(species1, species2)``.

    Returns
    -------
    dict
        ``{key: f(...)}``; ``None`` results are dropped.
    """
    if nw._pairs is None and nw.cutoff is None:
        raise ValueError("no neighbour list: call compute_distances(cutoff) first")
    pairs = nw.pairs
    spec = nw.spec_encoded_row
    row = spec[pairs.i_p]
    col = spec[pairs.j_p]
    out = {}
    for c1, c2 in itertools.combinations_with_replacement(range(len(nw.species)), 2):
        mask = (row == c1) & (col == c2)
        value = f(pairs.d_p[mask], c1, c2)
        if value is not None:
            out[fmt.format(nw.species[c1], nw.species[c2])] = value
    return out


def _check_sigma(sigma):
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite positive number, got {sigma}")
    return sigma


def rdf(nw, r, sigma, fmt="{}-{}"):
    """Gaussian-smeared radial distribution functions.

    ``g_ab(r) = sum_{pairs i in a, j in b} exp(-(d_ij - r)^2 / (2 sigma^2)) / (sigma sqrt(2 pi))
    / (4 pi r^2) / N_a``, so that ``integral 4 pi r^2 g_ab(r) dr`` over a shell is the mean number of
    ``b`` neighbours of an ``a`` atom in that shell (a coordination number).

    Parameters
    ----------
    nw : NeighborWrapper
    r : float or ndarray [R]
        Radii, Å (the list must extend beyond them by a few sigma to be complete).
    sigma : float
        Gaussian width, Å.
    fmt : str
        Key format for the species pair (``a <= b``).

    Returns
    -------
    dict
        ``{"a-b": g [R] (atoms/Å³)}``, floats for a scalar ``r``.
    """
    sigma = _check_sigma(sigma)
    try:
        r_arr = np.asarray(r, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"r must be radii (numbers, Å), got {type(r).__name__}") from None
    scalar = r_arr.ndim == 0
    r_arr = np.atleast_1d(r_arr)
    if not np.all(np.isfinite(r_arr) & (r_arr > 0)):
        raise ValueError(f"r must be finite positive radii (Å; g(r) divides by 4 pi r^2), got {r!r}")
    counts = np.bincount(nw.spec_encoded_row, minlength=len(nw.species))

    def reduce(d, c1, c2):
        g = np.exp(-((d[:, None] - r_arr[None, :]) ** 2) / (2 * sigma**2)).sum(axis=0) * (_NORM / sigma)
        g = g / (4 * np.pi * r_arr**2) / counts[c1]
        return float(g[0]) if scalar else g

    return pair_reduction_function(nw, reduce, fmt=fmt)


def _triplets(indptr, keep):
    """All pairs of pair indices (p, q), p < q, sharing a centre atom, among pairs with ``keep``."""
    idx = np.flatnonzero(keep)
    centre = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))[idx]
    starts = np.searchsorted(centre, np.arange(len(indptr) - 1))
    counts = np.bincount(centre, minlength=len(indptr) - 1)
    ps, qs = [], []
    for n in np.unique(counts):
        if n < 2:
            continue
        atoms = np.flatnonzero(counts == n)
        a, b = np.triu_indices(n, 1)
        base = starts[atoms][:, None]
        ps.append((base + a[None, :]).reshape(-1))
        qs.append((base + b[None, :]).reshape(-1))
    if not ps:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return idx[np.concatenate(ps)], idx[np.concatenate(qs)]


def adf(nw, theta, sigma, cutoff, fmt="{}-[{},{}]"):
    """Gaussian-smeared bond-angle distributions.

    For a centre species ``a`` and an unordered neighbour species pair ``(b, c)``, ``b <= c``:
    ``adf(theta) = sum exp(-(theta_jik - theta)^2 / (2 sigma^2)) / (sigma sqrt(2 pi)) / N_a`` over the
    centre atoms ``i`` of species ``a`` and the unordered pairs of distinct neighbours ``{j, k}``
    (within ``cutoff``) with species ``{b, c}``. Integrated over ``theta`` it gives the mean number
    of such neighbour pairs per ``a`` atom.

    Parameters
    ----------
    nw : NeighborWrapper
    theta : float or ndarray [T]
        Angles, radians.
    sigma : float
        Gaussian width, radians.
    cutoff : float
        Neighbour cutoff, Å; at most the wrapper's cutoff.
    fmt : str
        Key format ``fmt.format(a, b, c)``.

    Returns
    -------
    dict
        ``len = n_species * n_species (n_species + 1) / 2`` entries.
    """
    sigma = _check_sigma(sigma)
    cutoff = float(cutoff)
    pairs = nw.pairs
    if not np.isfinite(cutoff) or cutoff <= 0 or cutoff > nw.cutoff:
        raise ValueError(f"cutoff must be positive and at most the wrapper's cutoff {nw.cutoff}, got {cutoff}")
    t_arr = np.asarray(theta, dtype=float)
    scalar = t_arr.ndim == 0
    t_arr = np.atleast_1d(t_arr)
    p, q = _triplets(pairs.indptr, pairs.d_p < cutoff)
    cos = np.einsum("pc,pc->p", pairs.D_pc[p], pairs.D_pc[q]) / (pairs.d_p[p] * pairs.d_p[q])
    angle = np.arccos(np.clip(cos, -1.0, 1.0))
    spec = nw.spec_encoded_row
    centre = spec[pairs.i_p[p]]
    sj = spec[pairs.j_p[p]]
    sk = spec[pairs.j_p[q]]
    lo = np.minimum(sj, sk)
    hi = np.maximum(sj, sk)
    counts = np.bincount(spec, minlength=len(nw.species))
    out = {}
    n_spec = len(nw.species)
    for a in range(n_spec):
        for b, c in itertools.combinations_with_replacement(range(n_spec), 2):
            mask = (centre == a) & (lo == b) & (hi == c)
            g = np.exp(-((angle[mask, None] - t_arr[None, :]) ** 2) / (2 * sigma**2)).sum(axis=0)
            g = g * (_NORM / sigma) / max(counts[a], 1)
            out[fmt.format(nw.species[a], nw.species[b], nw.species[c])] = float(g[0]) if scalar else g
    return out
