"""Cutoffs and error estimates of the Ewald summation of point charges (``miniff.ewald``).

The Ewald sum splits the Coulomb energy of a periodic lattice of point charges into a real-space sum cut at
``r_cut`` (terms ``erfc(eta r) / r``), a reciprocal-space sum cut at ``k_cut`` and a self term; ``eta``
(1/Å) sets the split. The functions here estimate the error of each truncated sum (Kolafa and Perram, 1992)
and pick both cutoffs for a requested accuracy::

    from miniff.ewald import ewald_cutoffs, stat_cell
    volume, charge = stat_cell(cell)                 # Å³ and sum q^2 (e²)
    r_cut, k_cut = ewald_cutoffs(eta=0.3, volume=volume, charge=charge, scale=COULOMB, eps=1e-6)

The particle-mesh method (smooth PME) has its own estimate, :func:`pme_error`, and :func:`pme_mesh` chooses the
mesh for a requested accuracy; :func:`ewald_method` is the rule of ``method="auto"`` (the direct sum for small
cells, the mesh from :data:`PME_MIN_ATOMS` atoms on when its estimated cost is lower).

Units: lengths Å, wave vectors 1/Å, charges e, ``scale`` is the Coulomb constant e²/(4 pi eps0) in the
energy unit wanted (``miniff.units.COULOMB`` = 14.399645 eV·Å; ``scale=1`` gives e²/Å). The estimates are
absolute energy errors (eV with ``scale=COULOMB``) of the whole cell. The potentials themselves are in
``miniff.potentials`` (``ewald_total_potential_family`` and its parts).
"""

import math

import numpy as np

from miniff.util import positive_number

__all__ = ["ewald_real_cutoff_error", "ewald_k_cutoff_error", "ewald_cutoffs", "ewald_eta", "stat_cell", "pme_error",
           "pme_mesh", "fft_size", "PME_SAFETY", "PME_MIN_ATOMS", "PME_COST_RATIO", "ewald_method", "k_vector_count"]

#: Factor applied to the random-phase estimate of the particle-mesh error (:func:`pme_error`): measured errors
#: of random ionic cells were 0.5 to 4 times the bare estimate (0.5 at spline order 4, where it underestimates).
PME_SAFETY = 3.0
#: ``method="auto"`` considers the particle-mesh method from this many atoms on (see :func:`ewald_method`).
PME_MIN_ATOMS = 1000
#: Cost of one mesh point of the particle-mesh sum in units of one (atom, k-vector) term of the direct sum
#: (energy and forces; measured 50-100 on the development machine, numpy FFTs against the compiled direct sum).
PME_COST_RATIO = 75.0


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


def _cell_arrays(vectors):
    vectors = np.asarray(vectors, dtype=float)
    if vectors.shape != (3, 3) or not np.all(np.isfinite(vectors)):
        raise ValueError(f"vectors must be a finite [3, 3] array of cell vectors (rows, Å), got shape {vectors.shape}")
    volume = abs(float(np.linalg.det(vectors)))
    if not volume > 0:
        raise ValueError("vectors: the cell has no volume")
    return vectors, volume


def pme_error(mesh, order, eta, vectors, charge, scale=1):
    """Estimated absolute energy error of the smooth particle-mesh reciprocal sum (times :data:`PME_SAFETY`).

    Two parts: the wave vectors the mesh cannot hold (those longer than ``k_mesh = min_d pi K_d / |a_d|``,
    estimated by :func:`ewald_k_cutoff_error` at ``k_mesh``), and the B-spline interpolation (aliasing) error of
    the modes it holds. For the latter, with random phases (``|S(m)|^2 ~ sum q^2``, as in the direct-sum
    estimates) and the relative error of mode ``m`` of order ``2 sum_d (|m_d| / (K_d - |m_d|))^p``::

        scale charge / (2 pi V) sum_{m != 0} exp(-pi^2 |m|^2 / eta^2) / |m|^2  2 sum_d (|m_d| / (K_d - |m_d|))^p

    (``m`` the reciprocal vectors without 2 pi). Measured errors of random ionic cells lie between 0.5 and 4
    times this sum; the result is multiplied by :data:`PME_SAFETY`.

    Parameters
    ----------
    mesh : int or array-like of 3 ints
        Mesh points per axis ``K_d``.
    order : int
        B-spline order ``p``.
    eta : float
        1/Å.
    vectors : array [3, 3]
        Cell vectors (rows), Å.
    charge, scale
        ``sum q^2`` (e²) and the Coulomb constant, as in :func:`ewald_k_cutoff_error`.

    Returns
    -------
    float
        Energy (scale's unit).
    """
    vectors, volume = _cell_arrays(vectors)
    mesh = np.broadcast_to(np.asarray(mesh), (3,)).astype(np.int64)
    order = int(order)
    if order < 2 or np.any(mesh < order):
        raise ValueError(f"mesh must have at least order={order} points per axis, got {mesh.tolist()}")
    eta = positive_number("eta", eta)
    charge, scale = _non_negative("charge", charge), _non_negative("scale", scale)
    if charge * scale == 0:
        return 0.0
    lengths = np.linalg.norm(vectors, axis=1)
    k_mesh = float(np.min(np.pi * mesh / lengths))
    truncation = ewald_k_cutoff_error(k_mesh, eta, volume, charge, scale)
    return PME_SAFETY * (truncation + _interpolation_error(mesh, order, eta, vectors, volume, charge, scale))


def _modes(eta, vectors, volume, charge, scale, limit, floor):
    """Reciprocal modes ``m [M, 3]`` (integers, no 0) with ``|m_d| <= limit_d`` inside the sphere beyond which the
    direct-sum estimate is below ``floor`` (energy), and their weights ``exp(-pi^2 m^2 / eta^2) / m^2``."""
    lengths = np.linalg.norm(vectors, axis=1)
    k_far = _solve_decreasing(lambda k: ewald_k_cutoff_error(k, eta, volume, charge, scale), floor, 2 * eta)
    reach = np.minimum(np.ceil(k_far * lengths / (2 * np.pi)).astype(np.int64), limit)
    axes = [np.arange(-r, r + 1) for r in reach]
    m = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    m = m[np.any(m != 0, axis=1)]
    mv = m @ np.linalg.inv(vectors).T
    m2 = np.einsum("ij,ij->i", mv, mv)
    return m, np.exp(-np.pi**2 * m2 / eta**2) / m2


def _interpolation_error(mesh, order, eta, vectors, volume, charge, scale, modes=None):
    if modes is None:
        modes = _modes(eta, vectors, volume, charge, scale, mesh // 2, 1e-16 * charge * scale)
    m, weight = modes
    inside = np.all(np.abs(m) <= mesh // 2, axis=1)
    m, weight = np.abs(m[inside]), weight[inside]
    alias = sum((m[:, d] / (mesh[d] - m[:, d])) ** order for d in range(3))
    return scale * charge / (2 * np.pi * volume) * float(weight @ (2 * alias))


def fft_size(n):
    """The smallest integer ``>= n`` whose prime factors are 2, 3 and 5 (fast FFT lengths)."""
    n = max(int(n), 1)
    while True:
        k = n
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return n
        n += 1


def pme_mesh(eta, vectors, charge, scale=1, eps=1e-7, order=6, max_points=64_000_000):
    """The smallest particle-mesh grid whose estimated error (:func:`pme_error`) is at most ``eps``.

    The mesh spacing is about the same along every axis (``K_d`` proportional to ``|a_d|``, rounded up to fast
    FFT lengths, at least ``order``).

    Parameters
    ----------
    eta, vectors, charge, scale
        As in :func:`pme_error`.
    eps : float
        Requested absolute energy error (scale's unit, eV with ``miniff.units.COULOMB``).
    order : int
        B-spline order.
    max_points : int
        Largest mesh (points) allowed.

    Returns
    -------
    ndarray [3] int64
        Points per axis.

    Raises
    ------
    ValueError
        When ``eps`` would need more than ``max_points`` points (naming ``accuracy``: ask for less, use a higher
        ``order`` or a smaller ``eta`` with a larger real-space cutoff).
    """
    vectors, volume = _cell_arrays(vectors)
    eta, eps = positive_number("eta", eta), positive_number("eps", eps)
    charge, scale = _non_negative("charge", charge), _non_negative("scale", scale)
    order = int(order)
    lengths = np.linalg.norm(vectors, axis=1)

    def mesh_of(spacing):
        return np.array([max(fft_size(math.ceil(length / spacing)), fft_size(order)) for length in lengths])

    if charge * scale == 0:
        return mesh_of(float(lengths.max()))
    # modes up to the finest mesh that the memory limit allows, weighted once
    finest = math.ceil((max_points / np.prod(lengths / lengths.max())) ** (1 / 3))
    modes = _modes(eta, vectors, volume, charge, scale, np.array([finest] * 3), 1e-3 * eps / PME_SAFETY)

    def error(mesh):
        k_mesh = float(np.min(np.pi * mesh / lengths))
        return PME_SAFETY * (ewald_k_cutoff_error(k_mesh, eta, volume, charge, scale)
                             + _interpolation_error(mesh, order, eta, vectors, volume, charge, scale, modes))

    coarse, fine = float(lengths.max()) / order, float(lengths.max()) / finest
    while int(np.prod(mesh_of(fine))) > max_points and finest > order:  # rounding up to FFT lengths
        finest -= 1
        fine = float(lengths.max()) / finest
    if error(mesh_of(coarse)) <= eps:
        return mesh_of(coarse)
    if error(mesh_of(fine)) > eps:
        raise ValueError(f"accuracy: {eps:g} cannot be reached by the particle mesh within {max_points} points "
                         f"(eta={eta:g} 1/Å, order {order}); ask for a coarser accuracy, a higher order or a smaller "
                         f"eta with a larger real-space cutoff")
    for _ in range(40):  # bisection on the spacing (the error grows with it)
        mid = math.sqrt(coarse * fine)
        if error(mesh_of(mid)) <= eps:
            fine = mid
        else:
            coarse = mid
        if coarse / fine - 1 < 1e-3:
            break
    return mesh_of(fine)


def ewald_method(n_atoms, k_cut=None, mesh=None, n_k=None, mesh_points=None):
    """The reciprocal-space method of ``method="auto"``: ``"ewald"`` (direct sum) or ``"pme"`` (particle mesh).

    The rule, in this order: a given ``k_cut`` (or a wrapper's reciprocal grid) means the direct sum, a given
    ``mesh`` the mesh; cells of fewer than :data:`PME_MIN_ATOMS` atoms use the direct sum; otherwise the mesh
    when its estimated cost is lower, ``PME_COST_RATIO * mesh_points < n_atoms * n_k``, with ``n_k`` the
    k-vectors (half grid) of the direct sum and ``mesh_points`` the points of the mesh, both for the requested
    accuracy. The direct sum costs about ``N K`` (``N^2`` at a fixed density and accuracy), the mesh about
    ``M log M`` plus ``N p^3``; :data:`PME_COST_RATIO` is the measured cost of one mesh point in units of one
    atom-k term (``docs/electrostatics.md``).

    Parameters
    ----------
    n_atoms : int
    k_cut : float or None
        A reciprocal cutoff given by the user (1/Å).
    mesh : None or mesh given by the user
    n_k, mesh_points : int or None
        Sizes of the two methods at the requested accuracy (without them: the direct sum).

    Returns
    -------
    str
    """
    if k_cut is not None:
        return "ewald"
    if mesh is not None:
        return "pme"
    if int(n_atoms) < PME_MIN_ATOMS or n_k is None or mesh_points is None:
        return "ewald"
    return "pme" if PME_COST_RATIO * float(mesh_points) < float(n_atoms) * float(n_k) else "ewald"


def k_vector_count(k_cut, volume):
    """About how many k-vectors (one of each pair ``k, -k``) are shorter than ``k_cut`` (1/Å) in a cell of
    ``volume`` (Å³): ``V k_cut^3 / (12 pi^2)``."""
    return float(volume) * float(k_cut) ** 3 / (12 * math.pi**2)
