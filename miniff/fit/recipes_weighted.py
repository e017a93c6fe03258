"""Default element-agnostic descriptor sets, a count per species that does not depend on how many elements the
data hold: element-weighted symmetry functions (wACSF) and aenet's Chebyshev "type spin" set
(:func:`default_chebyshev_descriptors`).

For every centre species and every weight table ("channel", default ``("unit", "Z")``: the plain sums over all
neighbours and the sums weighted by the atomic number), the recipe makes

- ``n`` weighted radial descriptors centred at 0 whose inflection ("turning") points are spread evenly between
  ``left * d_min`` (``d_min``: the shortest interatomic distance of the data) and ``a / 2``, as the Behler
  recipe does per species pair (:func:`miniff.fit.recipes.default_behler_descriptors`);
- weighted angular descriptors for every ``eta3`` x ``zeta`` x ``lambda = +-1`` (``r_sphere = 0``).

With the defaults that is ``2 x (6 + 16) = 44`` descriptors per species for any number of elements (the Behler
recipe gives ``6 E + 8 W E (E + 1) / 2`` for E elements and W angular widths: 270 for five with the workflow's
default two widths). The angular functions have the Behler recipe's two widths, 0 and 0.3 1/Å² (the second
resolves the first neighbour shell): on a 5-element EMT set (``docs/many-elements.md``) one width (28
descriptors) gave twice the Behler set's validation force error, two widths (44) less than it. With one
species in the data the channels are proportional to each other, so only the first is kept.
"""

import numpy as np

from miniff.fit.recipes import _items, _min_pair_distances, _numbers, _species_of, eta_for_turning_point
from miniff.potentials.chebyshev import (
    MAX_CHEBYSHEV_ORDER,
    chebyshev_angular_descriptor_family,
    chebyshev_radial_descriptor_family,
    type_spins,
)
from miniff.potentials.weighted import (
    check_weights,
    weighted_angular_descriptor_family,
    weighted_radial_descriptor_family,
)

__all__ = ["default_wacsf_descriptors", "WACSF_DEFAULTS", "default_chebyshev_descriptors", "CHEBYSHEV_DEFAULTS"]

#: Defaults of :func:`default_wacsf_descriptors`: radial count, first turning point (times the shortest
#: distance), angular widths (1/Å²), angular exponents, weight tables.
WACSF_DEFAULTS = {"n": 6, "left": 1.0, "eta3": (0.0, 0.3), "zeta": (1, 2, 4, 16), "weights": ("unit", "Z")}


def default_wacsf_descriptors(arg, a, n=WACSF_DEFAULTS["n"], left=WACSF_DEFAULTS["left"], eta=None, d_min=None,
                              eta3=WACSF_DEFAULTS["eta3"], zeta=WACSF_DEFAULTS["zeta"],
                              weights=WACSF_DEFAULTS["weights"], angular=True):
    """Weighted radial and angular descriptors for every centre species (see the module docstring).

    Parameters
    ----------
    arg : list
        ``NeighborWrapper``/``Cell`` objects (their species, and their shortest interatomic distance unless
        ``eta`` or ``d_min`` is given), or species names (then ``eta`` or ``d_min`` is needed).
    a : float
        Cutoff, Å.
    n : int
        Radial descriptors per species and channel.
    left : float
        The first turning point is ``left * d_min``.
    eta : sequence of float or None
        Explicit radial widths (1/Å², centred at 0) instead of the turning-point grid (``n`` is then their
        count).
    d_min : float or None
        The shortest interatomic distance, Å (measured from ``arg`` when None).
    eta3 : float or sequence of float
        Angular widths, 1/Å².
    zeta : float or sequence of float
        Angular exponents (each with ``lambda = +1`` and ``-1``).
    weights : str, dict or sequence of them
        The weight tables (channels): names of :data:`miniff.potentials.weighted.WEIGHT_TABLES` or
        ``{species: number}`` tables.
    angular : bool
        Include the angular descriptors.

    Returns
    -------
    dict
        ``{species: [descriptor, ...]}``, tags naming the centre species; per species and channel the radial
        descriptors, then the angular ones.

    Raises
    ------
    ValueError, TypeError
        Naming the argument: no species, a bad count, cutoff, width or weight table, or a shortest distance
        ``left * d_min`` beyond ``a / 2``.
    """
    if not (isinstance(a, (int, float, np.integer, np.floating)) and np.isfinite(a) and a > 0):
        raise ValueError(f"a must be a positive cutoff (Å), got {a!r}")
    a = float(a)
    species = _species_of(arg)
    channels = [weights] if isinstance(weights, (str, dict)) or weights is None else list(weights)
    if not channels:
        raise ValueError("weights: give at least one weight table")
    channels = [check_weights(w) for w in channels]
    if len(species) == 1:
        channels = channels[:1]
    if eta is not None:
        radial = _numbers("eta", eta)
        if any(e < 0 for e in radial):
            raise ValueError(f"eta must be non-negative widths (1/Å²), got {eta!r}")
    else:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if d_min is None:
            items = _items(arg)
            if all(isinstance(x, str) for x in items):
                raise ValueError("arg holds species names only: give d_min (Å) or eta for the radial widths")
            distances = _min_pair_distances(items, a)
            if not distances:
                raise ValueError("arg: no pairs within the cutoff: give d_min (Å) or eta")
            d_min = min(distances.values())
        d_min = float(d_min)
        if not (np.isfinite(d_min) and 0 < d_min * left <= a / 2):
            raise ValueError(f"d_min * left ({d_min} * {left} Å) must lie in (0, a/2 = {a / 2}]: a larger "
                             "cutoff a or a smaller left")
        radial = [eta_for_turning_point(a, t) for t in np.linspace(left * d_min, a / 2, n)]
    etas3 = _numbers("eta3", eta3)
    zetas = _numbers("zeta", zeta)
    out = {}
    for centre in species:
        items = out.setdefault(centre, [])
        for w in channels:
            items.extend(weighted_radial_descriptor_family(tag=centre, a=a, eta=e, r_sphere=0.0, weights=w)
                         for e in radial)
            if angular:
                items.extend(weighted_angular_descriptor_family(tag=centre, a=a, eta=e, l=lam, zeta=z, weights=w)
                             for e in etas3 for z in zetas for lam in (1.0, -1.0))
    return out


#: Defaults of :func:`default_chebyshev_descriptors`: the largest radial and angular Chebyshev orders.
CHEBYSHEV_DEFAULTS = {"radial_order": 10, "angular_order": 4}


def _order_arg(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_CHEBYSHEV_ORDER:
        raise ValueError(f"{name} must be an integer in [0, {MAX_CHEBYSHEV_ORDER}], got {value!r}")
    return int(value)


def default_chebyshev_descriptors(arg, a, radial_order=CHEBYSHEV_DEFAULTS["radial_order"],
                                  angular_order=CHEBYSHEV_DEFAULTS["angular_order"], angular_cutoff=None,
                                  spins=None):
    """aenet's Chebyshev "type spin" set for every centre species: ``2 [(radial_order + 1) + (angular_order + 1)]``
    descriptors for any number of elements (half of that with one element).

    Per centre species: the radial Chebyshev descriptors of orders 0 to ``radial_order`` and the angular ones of
    orders 0 to ``angular_order``, first with unit weights, then weighted by the type spins of the elements
    (:func:`miniff.potentials.chebyshev.type_spins` of the sorted species: integers centred on 0).

    Parameters
    ----------
    arg : list or str
        ``NeighborWrapper``/``Cell`` objects or species names: the species of the data set (the spins depend on
        all of them, so give every species the potential will meet).
    a : float
        Radial cutoff, Å.
    radial_order, angular_order : int
        The largest orders (0 to 63).
    angular_cutoff : float or None
        Cutoff of the angular descriptors, Å (default ``a``).
    spins : dict or None
        ``{species: weight}`` instead of the type spins.

    Returns
    -------
    dict
        ``{species: [descriptor, ...]}`` (radial unit, angular unit, radial spin, angular spin).
    """
    for name, value in (("a", a), ("angular_cutoff", a if angular_cutoff is None else angular_cutoff)):
        if not (isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive cutoff (Å), got {value!r}")
    a = float(a)
    a3 = a if angular_cutoff is None else float(angular_cutoff)
    radial_order = _order_arg("radial_order", radial_order)
    angular_order = _order_arg("angular_order", angular_order)
    species = _species_of(arg)
    channels = ["unit"]
    if len(species) > 1:
        channels.append(check_weights(type_spins(sorted(species)) if spins is None else spins))
    out = {}
    for centre in species:
        items = out.setdefault(centre, [])
        for w in channels:
            items.extend(chebyshev_radial_descriptor_family(tag=centre, a=a, order=k, weights=w)
                         for k in range(radial_order + 1))
            items.extend(chebyshev_angular_descriptor_family(tag=centre, a=a3, order=k, weights=w)
                         for k in range(angular_order + 1))
    return out
