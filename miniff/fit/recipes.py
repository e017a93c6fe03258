"""Default network shapes and Behler descriptor sets.

Radial (type 2) sets follow the 0.1.4 recipe: for every species pair, ``n`` inflection ("turning")
points are spread evenly between ``left * d_min`` (``d_min``: the shortest distance of that pair in the
data) and ``a / 2``, and each is turned into the Gaussian width ``eta`` whose type-2 descriptor
``exp(-eta r^2) f_c(r)`` has its inflection point there.  With ``shifted=True`` (the default set of
``FitWorkflow.prepare``) they are ``n`` Gaussians centred evenly from ``left * d_min`` towards the cutoff,
each as wide as their spacing (:func:`shifted_grid`).  Angular sets enumerate centre species, unordered
neighbour pairs, ``eta``, ``zeta`` and ``lambda = +-1`` (types 4/5) or pairs of widths (type 5x).
"""

import itertools
import math

import numpy as np

from miniff.ml.networks import behler_nn

__all__ = ["behler_nn", "default_behler_descriptors", "default_behler_descriptors_3", "behler_turning_point",
           "eta_for_turning_point", "shifted_grid"]


def _second_derivative(r, a, eta):
    """d^2/dr^2 of ``exp(-eta r^2) (1 + cos(pi r / a)) / 2``."""
    f = math.exp(-eta * r * r)
    df = -2 * eta * r * f
    d2f = (4 * eta * eta * r * r - 2 * eta) * f
    c = (1 + math.cos(math.pi * r / a)) / 2
    dc = -math.pi / (2 * a) * math.sin(math.pi * r / a)
    d2c = -(math.pi**2) / (2 * a * a) * math.cos(math.pi * r / a)
    return d2f * c + 2 * df * dc + f * d2c


def behler_turning_point(a, eta, r_sphere=0):
    """Inflection point of the type-2 descriptor ``exp(-eta r^2) f_c(r; a)`` in ``(0, a/2]``, Å.

    Only ``r_sphere = 0`` is supported here (the recipes use it).  ``eta = 0`` gives ``a / 2``.
    """
    if r_sphere != 0:
        raise ValueError(f"r_sphere: only 0 is supported, got {r_sphere}")
    if a <= 0:
        raise ValueError(f"a must be positive, got {a}")
    if eta < 0:
        raise ValueError(f"eta must be non-negative, got {eta}")
    if eta == 0:
        return a / 2
    lo, hi = 1e-12 * a, a / 2  # g'' < 0 at lo, > 0 at hi for eta > 0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _second_derivative(mid, a, eta) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * a:
            break
    return 0.5 * (lo + hi)


def eta_for_turning_point(a, r):
    """The ``eta`` (1/Å²) whose type-2 descriptor with cutoff ``a`` has its inflection point at ``r`` (Å)."""
    if not 0 < r <= a / 2:
        raise ValueError(f"turning point r must be in (0, a/2] = (0, {a / 2}], got {r}")
    if r >= a / 2 * (1 - 1e-12):
        return 0.0
    lo, hi = 0.0, 1.0
    while behler_turning_point(a, hi) > r:
        hi *= 4
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if behler_turning_point(a, mid) > r:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def _family(name):
    from miniff import potentials

    for attr in (f"{name}_descriptor_family", name):
        fam = getattr(potentials, attr, None)
        if fam is not None:
            return fam
    raise ImportError(f"miniff.potentials has no {name}_descriptor_family")


def _wrap(item, cutoff):
    """A NeighborWrapper with distances for ``item`` (a wrapper is used as is, a Cell is wrapped)."""
    if hasattr(item, "pairs") or hasattr(item, "compute_distances"):
        return item
    from miniff.kernel import NeighborWrapper

    return NeighborWrapper(item, cutoff=cutoff)


def _min_pair_distances(wrappers, cutoff):
    """``{"s1-s2": shortest distance}`` (s1 <= s2) over all wrappers (pairs within ``cutoff``)."""
    out = {}
    for w in wrappers:
        w = _wrap(w, cutoff)
        if getattr(w, "pairs", None) is None or (w.cutoff is not None and w.cutoff < cutoff):
            w.compute_distances(cutoff)
        pl = w.pairs
        species = np.asarray(w.species)
        codes = np.asarray(w.spec_encoded_row)
        i_p = np.repeat(np.arange(len(pl.indptr) - 1), np.diff(pl.indptr))
        si, sj = species[codes[i_p]], species[codes[np.asarray(pl.j_p)]]
        d_p = np.asarray(pl.d_p)
        for a_, b_, d in zip(si, sj, d_p, strict=True):
            key = "-".join(sorted((str(a_), str(b_))))
            if d < out.get(key, np.inf):
                out[key] = float(d)
    return out


def default_behler_descriptors(arg, n, a, left=1, common_eta=True, eta=None, shifted=False):
    """Radial (type 2) Behler descriptors for every species pair.

    Parameters
    ----------
    arg : dict or list
        ``{"s1-s2": d_min}`` (Å), or a list of ``NeighborWrapper``/``Cell`` objects from which the
        shortest distance of every species pair is measured.
    n : int
        Descriptors per pair.
    a : float
        Cutoff, Å.
    left : float
        The first turning point (the first centre with ``shifted``) is ``left * d_min``.
    common_eta : bool
        Average the ``eta`` grids (and centres) over pairs (one common grid).
    eta : sequence of float or None
        Explicit widths (1/Å², centred at 0) for every pair instead of the turning-point grid; ``n`` must be
        their count (or None).  Amp's ``Gaussian()`` defaults are ``eta = [0.05, 0.2321, 1.0772, 5.0] / a**2``
        (Amp divides R² by the squared cutoff).
    shifted : bool
        Shifted Gaussians instead of the turning-point grid (:func:`shifted_grid`): ``n`` functions
        ``exp(-eta (r - r_s)^2) f_c(r)`` with centres ``r_s`` evenly spaced from ``left * d_min`` towards the
        cutoff and widths set by their spacing; each one responds to the neighbours of one distance shell (the
        default of ``FitWorkflow.prepare``).  Not with explicit ``eta``.

    Returns
    -------
    dict
        ``{species: [behler2 descriptor, ...]}``; species ``s1`` gets tag ``"s1-s2"`` and ``s2`` gets
        ``"s2-s1"`` (a homonuclear pair once).
    """
    if eta is not None and shifted:
        raise ValueError("eta: explicit widths are centred at 0; they cannot be combined with shifted=True")
    if eta is not None:
        eta = np.asarray(eta, dtype=float).reshape(-1)
        if len(eta) == 0 or not np.all(np.isfinite(eta)) or np.any(eta < 0):
            raise ValueError(f"eta must be a non-empty sequence of finite non-negative widths, got {eta!r}")
        if n is None:
            n = len(eta)
        if n != len(eta):
            raise ValueError(f"n ({n!r}) must equal the number of explicit widths in eta ({len(eta)})")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not a > 0:
        raise ValueError(f"a must be positive, got {a!r}")
    if isinstance(arg, dict):
        d_min = {}
        for k, v in arg.items():
            parts = str(k).split("-")
            if len(parts) != 2:
                raise ValueError(f"arg: keys must be species pairs 's1-s2', got {k!r}")
            d_min["-".join(sorted(parts))] = float(v)
    else:
        d_min = _min_pair_distances(_items(arg), a)
    if not d_min:
        raise ValueError("arg: no species pairs (empty input or no pairs within the cutoff)")
    etas = {}
    for pair, d in sorted(d_min.items()):
        if eta is not None:
            etas[pair] = eta
            continue
        if shifted:
            if not 0 < d * left < a:
                raise ValueError(f"left: the first centre, the shortest {pair} distance times left "
                                 f"({d * left:.3f} Å), must lie between 0 and the cutoff ({a} Å)")
            etas[pair] = shifted_grid(left * d, a, n)
        else:
            if d * left > a / 2:
                raise ValueError(f"cutoff: the shortest {pair} distance times left ({d * left:.3f} Å) exceeds half "
                                 f"the cutoff ({a / 2} Å): use a cutoff of at least {2 * d * left:.2f} Å (or a "
                                 f"smaller left)")
            etas[pair] = np.array([eta_for_turning_point(a, t) for t in np.linspace(left * d, a / 2, n)])
    if common_eta:
        mean = np.mean(list(etas.values()), axis=0)
        etas = {k: mean for k in etas}
    behler2 = _family("behler2")
    out = {}
    for pair, grid in etas.items():
        s1, s2 = pair.split("-")
        for centre, other in ((s1, s2), (s2, s1)) if s1 != s2 else ((s1, s2),):
            if shifted:
                out.setdefault(centre, []).extend(
                    behler2(tag=f"{centre}-{other}", a=float(a), eta=float(e), r_sphere=float(r))
                    for e, r in np.asarray(grid).reshape(2, -1).T)
            else:
                out.setdefault(centre, []).extend(
                    behler2(tag=f"{centre}-{other}", a=float(a), eta=float(e), r_sphere=0.0) for e in grid)
    return out


def shifted_grid(r_min, a, n):
    """Widths and centres of ``n`` shifted type-2 functions ``exp(-eta (r - r_s)^2) f_c(r; a)``.

    The centres ``r_s`` are evenly spaced from ``r_min`` (Å) with spacing ``h = (a - r_min) / n``, the last one
    ``h`` below the cutoff ``a`` (Å); every function has the width ``eta = 1 / (2 h^2)`` (1/Å²: neighbouring
    Gaussians cross at one standard deviation ``h``).

    Returns
    -------
    ndarray of shape (2 n,)
        The ``n`` widths (1/Å²) followed by the ``n`` centres (Å), in one array so that the grids of several
        species pairs can be averaged.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not 0 < r_min < a:
        raise ValueError(f"r_min must lie in (0, a) = (0, {a}), got {r_min}")
    h = (a - r_min) / n
    centres = r_min + h * np.arange(n)
    return np.concatenate([np.full(n, 1 / (2 * h * h)), centres])


def default_behler_descriptors_3(arg, a, eta=0, zeta=(1, 2, 4, 16), family=4, cos_theta0=-1, amount_5x="full"):
    """Angular Behler descriptors for every centre species and unordered neighbour pair.

    Parameters
    ----------
    arg : list
        Species names, or ``NeighborWrapper``/``Cell`` objects whose species are used.
    a : float
        Cutoff, Å.
    eta : float or sequence of float
        Gaussian widths, 1/Å².
    zeta : float or sequence of float
        Angular exponents (types 4 and 5).
    family : 4, 5, "5x" or a descriptor family
        Type 4 (with the third side), 5 (without) or 5x (two widths, ``(cos_t - cos_theta0)^2``).
    cos_theta0 : float or sequence of float
        Type 5x only.
    amount_5x : {"full", "half"}
        Type 5x: pair ``eta[i]`` with ``eta[i:]`` (full) or ``eta[i:len-i]`` (half).

    Returns
    -------
    dict
        ``{species: [descriptor, ...]}`` with tags ``"p1-p2-p3"``, ``p2 <= p3``.
    """
    species = _species_of(arg)
    etas = _numbers("eta", eta)
    zeta = _numbers("zeta", zeta)
    cos0 = _numbers("cos_theta0", cos_theta0)
    if amount_5x not in ("full", "half"):
        raise ValueError(f"amount_5x must be 'full' or 'half', got {amount_5x!r}")
    if family in (4, "4"):
        fam, kind = _family("behler4"), "45"
    elif family in (5, "5"):
        fam, kind = _family("behler5"), "45"
    elif family == "5x":
        fam, kind = _family("behler5x"), "5x"
    elif callable(family):
        fam, kind = family, "45"
    else:
        raise ValueError(f"family must be 4, 5, '5x' or a descriptor family, got {family!r}")
    out = {}
    for p1 in species:
        for p2, p3 in itertools.combinations_with_replacement(species, 2):
            tag = f"{p1}-{p2}-{p3}"
            if kind == "45":
                for e in etas:
                    for z in zeta:
                        for lam in (1.0, -1.0):
                            out.setdefault(p1, []).append(fam(tag=tag, a=float(a), eta=e, l=lam, zeta=float(z)))
            else:
                for i, e1 in enumerate(etas):
                    partners = etas[i:] if amount_5x == "full" else etas[i:len(etas) - i]
                    for e2 in partners:
                        for c in cos0:
                            out.setdefault(p1, []).append(
                                fam(tag=tag, a=float(a), eta1=e1, eta2=e2, cos_theta0=c))
    return out


def _numbers(name, value, integer=False):
    """A scalar or a sequence of numbers as a non-empty list of finite floats (ints), naming ``name`` in errors."""
    try:
        arr = np.atleast_1d(np.asarray(value, dtype=float)).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {value!r}") from None
    if len(arr) == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if integer:
        if np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must be integers, got {value!r}")
        return [int(x) for x in arr]
    return [float(x) for x in arr]


def _items(arg):
    """``arg`` as a list: one species name or one structure becomes a list of one."""
    if isinstance(arg, str) or hasattr(arg, "cell") or hasattr(arg, "vectors"):
        return [arg]
    try:
        return list(arg)
    except TypeError:
        raise TypeError(f"arg must be species names or structures, got {type(arg).__name__}") from None


def _species_of(arg):
    items = _items(arg)
    if not items:
        raise ValueError("arg: no species given")
    if all(isinstance(x, str) for x in items):
        return sorted(set(items))
    return sorted({str(s) for x in items for s in np.asarray(getattr(x, "values", None)
                                                             if getattr(x, "values", None) is not None
                                                             else x.cell.values)})


#: PyFit-FF's silicon example: Gaussian centres (Å), width (Å), Legendre orders, cutoff and range (Å).
LSP_DEFAULTS = {"r0": (2.0, 2.25, 2.5, 3.0, 3.5, 4.0), "sigma": 1.0, "orders": (0, 1, 2, 3, 4), "a": 4.5, "h": 1.0}


def default_lsp_descriptors(arg, a=LSP_DEFAULTS["a"], h=LSP_DEFAULTS["h"], r0=LSP_DEFAULTS["r0"],
                            sigma=LSP_DEFAULTS["sigma"], orders=LSP_DEFAULTS["orders"], asinh=True):
    """PyFit-FF's local structural parameters for every centre species and unordered neighbour pair.

    The defaults are PyFit-FF's silicon example: 6 Gaussians x 5 Legendre orders = 30 descriptors per
    species pair, asinh-scaled (see :data:`miniff.potentials.lsp_descriptor_family`).

    Parameters
    ----------
    arg : list
        Species names, or ``NeighborWrapper``/``Cell`` objects whose species are used.
    a, h : float
        Cutoff and cutoff range, Å.
    r0 : float or sequence of float
        Gaussian centres, Å.
    sigma : float
        Gaussian width, Å.
    orders : int or sequence of int
        Legendre orders (0..8).
    asinh : bool
        Output ``asinh`` of the double sums (PyFit-FF) rather than the sums.

    Returns
    -------
    dict
        ``{species: [descriptor, ...]}`` with tags ``"p1-p2-p3"``, ``p2 <= p3``, ordered by tag, order, centre.
    """
    fam = _family("lsp")
    species = _species_of(arg)
    centres = _numbers("r0", r0)
    orders = _numbers("orders", orders, integer=True)
    out = {}
    for p1 in species:
        for p2, p3 in itertools.combinations_with_replacement(species, 2):
            for m in orders:
                for r in centres:
                    out.setdefault(p1, []).append(fam(tag=f"{p1}-{p2}-{p3}", a=float(a), h=float(h), r0=r,
                                                      sigma=float(sigma), order=m, asinh=int(bool(asinh))))
    return out
