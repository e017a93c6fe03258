"""Chebyshev descriptors (aenet's; Artrith, Urban and Ceder, Phys. Rev. B 96, 014112 (2017)): radial and
angular distribution functions expanded in Chebyshev polynomials, whose number does not grow with the number of
elements.

The tag names only the centre species ``"a"``; every neighbour contributes, whatever its species, multiplied by
the weight ``w`` of its species in the table ``weights`` (as the element-weighted families of
:mod:`miniff.potentials.weighted`; default ``"unit"``: every neighbour counts 1). For a centre atom i::

    Chebyshev radial   G_i = sum_j w_j T_n(2 r_ij / a - 1) f_c(r_ij)
    Chebyshev angular  G_i = sum_{j<k} w_j w_k T_n(cos theta_jik) f_c(r_ij) f_c(r_ik)

with ``T_n`` the Chebyshev polynomial of the first kind of order ``n`` (``T_0 = 1``, ``T_1 = x``, ``T_{n+1} =
2 x T_n - T_{n-1}``), the cosine cutoff ``f_c(r; a) = (1 + cos(pi r / a)) / 2`` for ``r < a``, and
``theta_jik`` the angle j-i-k. The angular sum runs over *unordered* neighbour pairs (aenet's convention; no
factor for the distance j-k). aenet's "type spin" set for many elements is these functions twice: once with
unit weights, once with the type spins of the elements (:func:`type_spins`: integers centred on 0), giving
``2 [(N_rad + 1) + (N_ang + 1)]`` descriptors for any number of elements (the recipe
:func:`miniff.ml_util.default_chebyshev_descriptors`). Unlike aenet, no inner cutoff is applied (miniff refuses
coincident atoms before any kernel).

Parameters and units: ``a`` cutoff (Å), ``order`` an integer in [0, 63], ``weights`` as for the weighted
families: ``"unit"`` (default), ``"Z"``, ``"mass"``, ``"covalent_radius"`` or a table ``{species: number}``.
The descriptors carry the units of the weight (radial) or its square (angular).

The compiled kernels (``miniff/_ext/chebyshev.pyx``) evaluate every descriptor of a batch that shares the cutoff
and the centre species (up to 64 descriptors and 64 weight tables per pass; all orders from one recurrence) in
one pass over the pairs (radial) or the unordered neighbour pairs (angular), with the per-pair Jacobian of
Contract 3.
"""

import numbers

import numpy as np

from miniff._ext import kernel_module as _k
from miniff.potentials.backends import _BatchedBackend
from miniff.potentials.base import pair_arrays
from miniff.potentials.weighted import WeightedFamily, _chunks, _run_weights, _weights_of

__all__ = ["chebyshev_radial_descriptor_family", "chebyshev_angular_descriptor_family", "type_spins",
           "MAX_CHEBYSHEV_ORDER"]

_MAX_GROUP = _k.LIMITS["MAX_GROUP"]
#: The largest polynomial order of the compiled kernels.
MAX_CHEBYSHEV_ORDER = _MAX_GROUP - 1


def type_spins(species):
    """aenet's type spins: one integer per species, centred on 0 and skipping 0 for an even count.

    Parameters
    ----------
    species : sequence of str
        The species labels of the whole data set (their order sets the spins: sort them for a canonical choice).

    Returns
    -------
    dict
        ``{species: spin}``: 2 species -> -1, 1; 3 -> -1, 0, 1; 4 -> -2, -1, 1, 2; 5 -> -2 ... 2.
    """
    species = [str(s) for s in species]
    if not species:
        raise ValueError("species must not be empty")
    if len(set(species)) != len(species):
        raise ValueError(f"species must not repeat labels, got {species}")
    n = len(species)
    values = [v for v in range(-(n // 2), n // 2 + 1) if n % 2 or v != 0]
    return {s: float(v) for s, v in zip(species, values, strict=True)}


def _order(p):
    return int(p.parameters["order"])


class ChebyshevBackend(_BatchedBackend):
    """Batches Chebyshev descriptors of one kind (``"radial"`` or ``"angular"``) by cutoff and centre species
    (chunks of <= 64 descriptors and weight tables)."""

    def __init__(self, kind):
        self.kind = kind

    def batch_key(self, potential, codes):
        return ("chebyshev " + self.kind, potential.cutoff, codes)

    def batch(self, items, codes, nw, values_nf, jac_pf3, grad, n_threads):
        """Evaluate ``items`` = [(column, potential)] sharing cutoff and centre species."""
        cutoff = items[0][1].cutoff
        indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, cutoff)
        for chunk, seen in _chunks(items, {"weights": (_weights_of, _MAX_GROUP)}):
            c_f, weight_cs = _run_weights(chunk, seen, nw)
            order_f = np.array([_order(p) for _, p in chunk], dtype=np.int32)
            cols = np.array([c for c, _ in chunk], dtype=np.int32)
            n_max = int(order_f.max())
            if self.kind == "radial":
                _k.batch_chebyshev_radial_reduce(cutoff, order_f, n_max, cols, c_f, weight_cs, indptr, j_p, d_p,
                                                 D_pc, spec_n, codes[0], values_nf, jac_pf3, grad, n_threads)
                continue
            n_pairs = len(j_p)
            f_p2 = np.empty((n_pairs, 2))
            u_pc = np.empty((n_pairs, 3))
            w_pc = np.empty((n_pairs, len(weight_cs)))
            sel_p = np.empty(n_pairs, dtype=np.int64)
            _k.batch_chebyshev_angular_reduce(cutoff, order_f, n_max, cols, c_f, weight_cs, indptr, j_p, d_p, D_pc,
                                              spec_n, codes[0], f_p2, u_pc, w_pc, sel_p, values_nf, jac_pf3, grad,
                                              n_threads)


class ChebyshevFamily(WeightedFamily):
    """A Chebyshev descriptor family: ``weights`` checked as by the weighted families and ``order`` an integer
    in [0, :data:`MAX_CHEBYSHEV_ORDER`]."""

    def screen_parameters(self, **kwargs):
        """Check the parameters, ``weights`` and the integer ``order``."""
        order = kwargs.get("order", 0)
        integral = isinstance(order, (numbers.Integral, np.integer)) or (
            isinstance(order, (numbers.Real, np.floating)) and float(order).is_integer())
        if isinstance(order, (bool, np.bool_)) or not integral:
            raise TypeError(f"order must be an integer in [0, {MAX_CHEBYSHEV_ORDER}], got {order!r}")
        result = super().screen_parameters(**kwargs)
        result["order"] = int(result["order"])
        return result


_POSITIVE = (0, None, True, False)
_ORDER = (0, MAX_CHEBYSHEV_ORDER)

#: Chebyshev radial (aenet, tag ``"a"``): ``G_i = sum_j w_j T_order(2 r_ij / a - 1) f_c(r_ij)`` over every
#: neighbour j, ``w_j`` the weight of its species (``weights``: ``"unit"`` by default, ``"Z"``, ``"mass"``,
#: ``"covalent_radius"`` or ``{species: number}``, e.g. :func:`type_spins`). ``a`` (Å, cutoff), ``order`` (int,
#: 0 to 63).
chebyshev_radial_descriptor_family = ChebyshevFamily(
    parameters={"a": _POSITIVE, "order": _ORDER, "weights": None},
    cutoff="a",
    kernels=ChebyshevBackend("radial"),
    parameter_defaults={"weights": "unit"},
    tag="Chebyshev radial",
    coordination=1,
    doc="sum_j w_j T_order(2 r / a - 1) f_c(r) over every neighbour, w_j the weight of j's species",
)

#: Chebyshev angular (aenet, tag ``"a"``): ``G_i = sum_{j<k} w_j w_k T_order(cos theta_jik) f_c(r_ij)
#: f_c(r_ik)`` over unordered pairs of neighbours of every species. ``a`` (Å), ``order`` (int, 0 to 63),
#: ``weights`` as for the radial.
chebyshev_angular_descriptor_family = ChebyshevFamily(
    parameters={"a": _POSITIVE, "order": _ORDER, "weights": None},
    cutoff="a",
    kernels=ChebyshevBackend("angular"),
    parameter_defaults={"weights": "unit"},
    tag="Chebyshev angular",
    coordination=1,
    doc="sum_{j<k} w_j w_k T_order(cos theta) f_c(r1) f_c(r2), every neighbour species",
)
