"""Default element-weighted descriptor sets (wACSF): a count per species that does not depend on how many
elements the data hold.

For every centre species and every weight table ("channel", default ``("unit", "Z")``: the plain sums over all
neighbours and the sums weighted by the atomic number), the recipe makes

- ``n`` weighted radial descriptors centred at 0 whose inflection ("turning") points are spread evenly between
  ``left * d_min`` (``d_min``: the shortest interatomic distance of the data) and ``a / 2``, as the Behler
  recipe does per species pair (:func:`miniff.fit.recipes.default_behler_descriptors`);
- weighted angular descriptors for every ``eta3`` x ``zeta`` x ``lambda = +-1`` (``r_sphere = 0``).

With the defaults that is ``2 x (6 + 8) = 28`` descriptors per species for any number of elements (the Behler
recipe gives ``6 E + 8 E (E + 1) / 2`` for E elements: 150 for five). With one species in the data the
channels are proportional to each other, so only the first is kept.
"""

import numpy as np

from miniff.fit.recipes import _items, _min_pair_distances, _numbers, _species_of, eta_for_turning_point
from miniff.potentials.weighted import (
    check_weights,
    weighted_angular_descriptor_family,
    weighted_radial_descriptor_family,
)

__all__ = ["default_wacsf_descriptors", "WACSF_DEFAULTS"]

#: Defaults of :func:`default_wacsf_descriptors`: radial count, first turning point (times the shortest
#: distance), angular widths (1/Å²), angular exponents, weight tables.
WACSF_DEFAULTS = {"n": 6, "left": 1.0, "eta3": (0.0,), "zeta": (1, 2, 4, 16), "weights": ("unit", "Z")}


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
