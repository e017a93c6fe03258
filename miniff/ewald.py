"""Cutoffs and error estimates of the Ewald summation of point charges (``miniff.ewald``).

The Ewald sum splits the Coulomb energy of a periodic lattice of point charges into a real-space sum cut at
``r_cut`` (terms ``erfc(eta r) / r``), a reciprocal-space sum cut at ``k_cut`` and a self term; ``eta``
(1/Å) sets the split. The functions here estimate the error of each truncated sum (Kolafa and Perram, 1992)
and pick both cutoffs for a requested accuracy::

    from miniff.ewald import ewald_cutoffs, stat_cell
    volume, charge = stat_cell(cell)                 # Å³ and sum q^2 (e²)
    r_cut, k_cut = ewald_cutoffs(eta=0.3, volume=volume, charge=charge, scale=COULOMB, eps=1e-6)

Units: lengths Å, wave vectors 1/Å, charges e, ``scale`` is the Coulomb constant e²/(4 pi eps0) in the
energy unit wanted (``miniff.units.COULOMB`` = 14.399645 eV·Å; ``scale=1`` gives e²/Å). The estimates are
absolute energy errors (eV with ``scale=COULOMB``) of the whole cell. The potentials themselves are in
``miniff.potentials`` (``ewald_total_potential_family`` and its parts).
"""

import math

import numpy as np

from miniff.util import positive_number

__all__ = ["ewald_real_cutoff_error", "ewald_k_cutoff_error", "ewald_cutoffs", "ewald_eta", "stat_cell"]


def _non_negative(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def ewald_real_cutoff_error(r_cut, eta, volume, charge, scale=1):
    """Estimated error of the real-space sum cut at ``r_cut``.

    ``charge / eta^2 / r_cut^1.5 / sqrt(2 V) * exp(-(eta r_cut)^2) * scale``.

    Parameters
    ----------
    r_cut : float
        Real-space cutoff, Å.
    eta : float
        Splitting parameter of ``erfc(eta r)``, 1/Å.
    volume : float
        Cell volume, Å³.
    charge : float
        ``sum_i q_i^2`` over the cell, e².
    scale : float
        Coulomb constant in the energy unit of the result (``miniff.units.COULOMB`` for eV).

    Returns
    -------
    float
        Energy (scale's unit, e.g. eV).
    """
    r_cut, eta, volume = positive_number("r_cut", r_cut), positive_number("eta", eta), positive_number("volume", volume)
    charge, scale = _non_negative("charge", charge), _non_negative("scale", scale)
    return charge / eta**2 / r_cut**1.5 / math.sqrt(2 * volume) * math.exp(-((eta * r_cut) ** 2)) * scale


def ewald_k_cutoff_error(k_cut, eta, volume, charge, scale=1):
    """Estimated error of the reciprocal-space sum cut at ``k_cut``.

    ``charge * 2 eta / k_cut * ((k_cut V)^-0.5 + eta / pi) * exp(-(k_cut / (2 eta))^2) * scale``.

    Parameters
    ----------
    k_cut : float
        Reciprocal-space cutoff (length of the largest wave vector), 1/Å.
    eta, volume, charge, scale
        As in :func:`ewald_real_cutoff_error`.

    Returns
    -------
    float
        Energy (scale's unit).
    """
    k_cut, eta, volume = positive_number("k_cut", k_cut), positive_number("eta", eta), positive_number("volume", volume)
    charge, scale = _non_negative("charge", charge), _non_negative("scale", scale)
    return (charge * 2 * eta / k_cut * ((k_cut * volume) ** -0.5 + eta / math.pi)
            * math.exp(-((k_cut / (2 * eta)) ** 2)) * scale)


def _solve_decreasing(f, eps, x0):
    """The ``x > 0`` where the decreasing function ``f`` equals ``eps`` (bisection in log x to 1e-12)."""
    lo = hi = x0
    while f(hi) > eps:
        hi *= 2
        if hi > 1e12 * x0:
            raise ValueError("no cutoff reaches the requested accuracy")
    while f(lo) <= eps and lo > 1e-12 * x0:
        lo /= 2
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if f(mid) > eps:
            lo = mid
        else:
            hi = mid
        if hi / lo - 1 < 1e-12:
            break
    return hi


def ewald_cutoffs(eta, volume, charge, scale=1, eps=1e-7):
    """Real- and reciprocal-space cutoffs whose estimated errors both equal ``eps``.

    Parameters
    ----------
    eta : float
        1/Å.
    volume : float
        Å³.
    charge : float
        ``sum_i q_i^2``, e².
    scale : float
        Coulomb constant in the energy unit of ``eps``.
    eps : float
        Requested absolute error of each sum (energy, scale's unit).

    Returns
    -------
    (r_cut, k_cut) : (float, float)
        Å and 1/Å. For ``charge == 0`` (or ``scale == 0``) every cutoff is exact: the smallest positive
        values where the estimates vanish are returned as ``(0, 0)``.

    Raises
    ------
    ValueError
        Naming the argument that is not a finite positive number.
    """
    eta, volume = positive_number("eta", eta), positive_number("volume", volume)
    charge, scale = _non_negative("charge", charge), _non_negative("scale", scale)
    eps = positive_number("eps", eps)
    if charge * scale == 0:
        return 0.0, 0.0
    r_cut = _solve_decreasing(lambda r: ewald_real_cutoff_error(r, eta, volume, charge, scale), eps, 1 / eta)
    k_cut = _solve_decreasing(lambda k: ewald_k_cutoff_error(k, eta, volume, charge, scale), eps, 2 * eta)
    return r_cut, k_cut


def ewald_eta(r_cut, volume, charge, scale=1, eps=1e-7):
    """The splitting parameter whose real-space error estimate at ``r_cut`` equals ``eps``.

    For a real-space cutoff fixed by other needs (e.g. the neighbour list of short-range potentials): the
    smallest ``eta`` (so the cheapest reciprocal sum) for which ``ewald_real_cutoff_error(r_cut, eta, ...)``
    is ``eps``; then ``ewald_cutoffs(eta, ...)`` or the potentials' ``accuracy`` give the reciprocal cutoff.

    Parameters
    ----------
    r_cut : float
        Å.
    volume, charge, scale, eps
        As in :func:`ewald_cutoffs`.

    Returns
    -------
    float
        1/Å (0 for ``charge == 0`` or ``scale == 0``).
    """
    r_cut, volume = positive_number("r_cut", r_cut), positive_number("volume", volume)
    charge, scale = _non_negative("charge", charge), _non_negative("scale", scale)
    eps = positive_number("eps", eps)
    if charge * scale == 0:
        return 0.0
    # the estimate falls monotonically with eta once eta r_cut > 1 (where the Gaussian dominates)
    return _solve_decreasing(lambda eta: ewald_real_cutoff_error(r_cut, eta, volume, charge, scale)
                             if eta * r_cut > 1 else math.inf, eps, 2 / r_cut)


def stat_cell(cells, squeeze=True):
    """Volume and ``sum q^2`` of cells (the inputs of the error estimates).

    Parameters
    ----------
    cells : Cell or list of Cell
        Each with ``volume`` (Å³) and ``meta["charges"]`` ``[N]`` (e).
    squeeze : bool
        A single cell gives two floats instead of two arrays of length 1.

    Returns
    -------
    (volume, charge)
        ``[S]`` arrays (Å³, e²), or floats for a single cell with ``squeeze``.

    Raises
    ------
    ValueError
        A cell without ``meta["charges"]``, or charges of the wrong length or not finite.
    """
    single = not isinstance(cells, (list, tuple, np.ndarray))
    items = [cells] if single else list(cells)
    volume = np.empty(len(items))
    charge = np.empty(len(items))
    for k, cell in enumerate(items):
        meta = getattr(cell, "meta", None) or {}
        if "charges" not in meta:
            raise ValueError(f"cells[{k}] has no meta['charges']: set one charge (e) per atom")
        q = np.asarray(meta["charges"], dtype=float).reshape(-1)
        size = getattr(cell, "size", len(q))
        if len(q) != size:
            raise ValueError(f"cells[{k}].meta['charges'] has {len(q)} values for {size} atoms")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"cells[{k}].meta['charges'] contains NaN or inf")
        volume[k] = abs(float(cell.volume))
        charge[k] = float(q @ q)
    if single and squeeze:
        return float(volume[0]), float(charge[0])
    return volume, charge
