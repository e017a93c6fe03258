"""Element-weighted symmetry functions (wACSF; Gastegger et al., J. Chem. Phys. 148, 241709 (2018); n2p2's
types 12 and 13): descriptors whose number does not grow with the number of elements.

The tag names only the centre species ``"a"``; every neighbour contributes, whatever its species, multiplied
by the weight ``w`` of its species (by default the atomic number Z). For a centre atom i of species ``a``::

    weighted radial  (n2p2 type 12):  G_i = sum_j w_j exp(-eta (r_ij - r_sphere)^2) f_c(r_ij)
    weighted angular (n2p2 type 13):  G_i = 2^(1 - zeta) epsilon sum_{j != k} w_j w_k (1 + l cos_t)^zeta
                                            exp(-eta [(r_ij - r_sphere)^2 + (r_ik - r_sphere)^2
                                                      + (r_jk - r_sphere)^2]) f_c(r_ij) f_c(r_ik) f_c(r_jk)

with the cosine cutoff ``f_c(r; a) = (1 + cos(pi r / a)) / 2`` for ``r < a`` (terms with ``r_jk >= a``
vanish), ``cos_t`` the cosine of the angle j-i-k. Like every triplet family of miniff the angular sum runs
over *ordered* neighbour pairs (j, k), j != k: n2p2's type 13 sums over j < k, so it equals this family with
``epsilon = 1/2``. With every weight 1 and one element the radial family is Behler type 2 and the angular one
with ``r_sphere = 0`` is Behler type 4 (``"a-a"``, ``"a-a-a"``).

Parameters and units: ``a`` cutoff (Å), ``eta`` (1/Å², >= 0), ``r_sphere`` (Å, default 0), ``l`` in [-1, 1],
``zeta`` in [0, 1000], ``epsilon`` (default 1), ``weights``: the weight of every neighbour species, ``"Z"``
(default: the atomic number of the species label, which must then be a chemical symbol), ``"mass"`` (ASE's
standard atomic mass, u), ``"covalent_radius"`` (ASE's covalent radius, Å), ``"unit"`` (1 for every species:
the plain sums over all neighbours), or a table ``{species label: number}`` that must name every species of
the cells evaluated. The descriptors carry the units of their weights (the radial one the weight's unit, the
angular one its square).

The compiled kernels (``miniff/_ext/weighted.pyx``) evaluate every descriptor of a batch that shares the
cutoff and the centre species (up to 64 descriptors and 64 weight tables per pass) in one pass over the pairs
(radial) or the unordered neighbour pairs (angular), with the per-pair Jacobian of Contract 3.
"""

import functools
import math
import numbers

import numpy as np

from miniff._ext import kernel_module as _k
from miniff.potentials.backends import _BatchedBackend
from miniff.potentials.base import LocalPotentialFamily, pair_arrays
from miniff.potentials.families import MAX_ZETA

__all__ = ["weighted_radial_descriptor_family", "weighted_angular_descriptor_family", "WEIGHT_TABLES",
           "species_weights"]

_MAX_GROUP = _k.LIMITS["MAX_GROUP"]


@functools.lru_cache(maxsize=None)
def _ase_table(name):
    from ase import data

    if name == "Z":
        return {s: float(z) for s, z in data.atomic_numbers.items() if z > 0}
    values = {"mass": data.atomic_masses, "covalent_radius": data.covalent_radii}[name]
    return {s: float(values[z]) for s, z in data.atomic_numbers.items() if z > 0 and np.isfinite(values[z])}


#: Named weight tables: ``"Z"`` atomic number, ``"mass"`` standard atomic mass (u), ``"covalent_radius"`` (Å),
#: all from ``ase.data`` and keyed by chemical symbol; ``"unit"``: 1 for every species label.
WEIGHT_TABLES = ("Z", "mass", "covalent_radius", "unit")


def check_weights(weights):
    """The ``weights`` parameter checked: a name of :data:`WEIGHT_TABLES` or ``{species: finite number}``.

    Returns
    -------
    str or dict
        The name, or a new dict ``{str: float}``.

    Raises
    ------
    TypeError, ValueError
        Naming ``weights``: not a name or a mapping, an unknown name, a non-string key, a value that is not a
        real number, or a non-finite value.
    """
    if weights is None:
        return "Z"
    if isinstance(weights, str):
        if weights not in WEIGHT_TABLES:
            raise ValueError(f"weights must be one of {list(WEIGHT_TABLES)} or a table {{species: number}}, "
                             f"got {weights!r}")
        return weights
    if not isinstance(weights, dict):
        raise TypeError(f"weights must be one of {list(WEIGHT_TABLES)} or a dict {{species: number}}, got "
                        f"{type(weights).__name__}")
    if not weights:
        raise ValueError("weights: the table is empty")
    out = {}
    for key, value in weights.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"weights: species labels must be non-empty strings, got {key!r}")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"weights[{key!r}] must be a real number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"weights[{key!r}] must be finite, got {value}")
        out[key] = value
    return out


def _weights_key(weights):
    """A hashable form of a checked ``weights`` parameter (the key of its channel in a chunk)."""
    return weights if isinstance(weights, str) else tuple(sorted(weights.items()))


def species_weights(weights, species):
    """The weight of every species label (``[len(species)]`` float64, in the order of ``species``).

    Parameters
    ----------
    weights : str or dict
        A name of :data:`WEIGHT_TABLES` or a table ``{species: number}``.
    species : sequence of str
        Species labels (e.g. ``nw.species``: index = species code).

    Raises
    ------
    ValueError
        Naming ``weights`` and the species without a weight.
    """
    weights = check_weights(weights)
    if weights == "unit":
        return np.ones(len(species))
    table = _ase_table(weights) if isinstance(weights, str) else weights
    missing = [str(s) for s in species if str(s) not in table]
    if missing:
        if isinstance(weights, str):
            raise ValueError(f"weights={weights!r}: species {missing} are not chemical elements with a tabulated "
                             f"value; give the weights as a table, e.g. weights={{{missing[0]!r}: 1.0, ...}}")
        raise ValueError(f"weights: the table {sorted(table)} has no weight for the species {missing} of the "
                         "cell; every neighbour species needs one")
    return np.array([table[str(s)] for s in species], dtype=np.float64)


def _channel_weights(keys, tables, nw):
    """``weight_cs`` [C, n_species]: the weights of every species code of ``nw`` in each table, in the order
    of ``keys`` (hashable forms, ``tables`` the checked tables)."""
    species = [str(s) for s in nw.species]
    out = np.zeros((len(keys), max(1, len(species))))
    for c, key in enumerate(keys):
        out[c, :len(species)] = species_weights(tables[key], species)
    return out


def _chunks(items, limits):
    """Split ``items`` = [(column, potential)] into chunks of <= 64 descriptors with at most ``limits[name]``
    distinct values of ``name`` (``name(potential)`` -> hashable) each; yields ``(chunk, {name: {value:
    index}})``."""
    chunk, seen = [], {name: {} for name in limits}
    for col, p in items:
        values = {name: fn(p) for name, (fn, _) in limits.items()}
        full = len(chunk) == _MAX_GROUP or any(values[name] not in seen[name] and len(seen[name]) == limit
                                                for name, (_, limit) in limits.items())
        if full:
            yield chunk, seen
            chunk, seen = [], {name: {} for name in limits}
        for name, value in values.items():
            seen[name].setdefault(value, len(seen[name]))
        chunk.append((col, p))
    if chunk:
        yield chunk, seen


def _weights_of(potential):
    return _weights_key(potential.parameters["weights"])


def _run_weights(chunk, seen, nw):
    """``(c_f, weight_cs)`` of a chunk: the channel of every descriptor and the weight tables."""
    tables = {_weights_of(p): p.parameters["weights"] for _, p in chunk}
    keys = list(seen["weights"])
    c_f = np.array([seen["weights"][_weights_of(p)] for _, p in chunk], dtype=np.int32)
    return c_f, _channel_weights(keys, tables, nw)


class WeightedRadialBackend(_BatchedBackend):
    """Batches weighted radial descriptors by cutoff and centre species (chunks of <= 64 descriptors and weight
    tables)."""

    def batch_key(self, potential, codes):
        return ("weighted radial", potential.cutoff, codes)

    def batch(self, items, codes, nw, values_nf, jac_pf3, grad, n_threads):
        """Evaluate ``items`` = [(column, potential)] sharing cutoff and centre species."""
        cutoff = items[0][1].cutoff
        indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, cutoff)
        for chunk, seen in _chunks(items, {"weights": (_weights_of, _MAX_GROUP)}):
            c_f, weight_cs = _run_weights(chunk, seen, nw)
            eta_f = np.array([float(p.parameters["eta"]) for _, p in chunk])
            rs_f = np.array([float(p.parameters["r_sphere"]) for _, p in chunk])
            cols = np.array([c for c, _ in chunk], dtype=np.int32)
            _k.batch_weighted_radial_reduce(cutoff, eta_f, rs_f, cols, c_f, weight_cs, indptr, j_p, d_p, D_pc,
                                            spec_n, codes[0], values_nf, jac_pf3, grad, n_threads)


def _integer_zeta(zeta):
    return int(zeta) if float(zeta).is_integer() and 0 <= zeta <= 64 else -1


def _radial_pair(p):
    return float(p.parameters["eta"]), float(p.parameters["r_sphere"])


def _angular_pair(p):
    return float(p.parameters["l"]), float(p.parameters["zeta"])


class WeightedAngularBackend(_BatchedBackend):
    """Batches weighted angular descriptors by cutoff and centre species; the distinct ``(eta, r_sphere)``,
    ``(l, zeta)`` and weight tables of a chunk (<= 64 each, <= 64 descriptors) are evaluated once per pair /
    neighbour pair, in one pass over the neighbour pairs."""

    def batch_key(self, potential, codes):
        return ("weighted angular", potential.cutoff, codes)

    def batch(self, items, codes, nw, values_nf, jac_pf3, grad, n_threads):
        """Evaluate ``items`` = [(column, potential)] sharing cutoff and centre species."""
        cutoff = items[0][1].cutoff
        indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, cutoff)
        limits = {"radial": (_radial_pair, _MAX_GROUP), "angular": (_angular_pair, _MAX_GROUP),
                  "weights": (_weights_of, _MAX_GROUP)}
        for chunk, seen in _chunks(items, limits):
            c_f, weight_cs = _run_weights(chunk, seen, nw)
            radial, angular = list(seen["radial"]), list(seen["angular"])
            eta_e = np.array([r[0] for r in radial], dtype=np.float64)
            rs_e = np.array([r[1] for r in radial], dtype=np.float64)
            l_k = np.array([x[0] for x in angular], dtype=np.float64)
            zeta_k = np.array([x[1] for x in angular], dtype=np.float64)
            izeta_k = np.array([_integer_zeta(x[1]) for x in angular], dtype=np.int32)
            cols = np.array([c for c, _ in chunk], dtype=np.int32)
            e_f = np.array([seen["radial"][_radial_pair(p)] for _, p in chunk], dtype=np.int32)
            k_f = np.array([seen["angular"][_angular_pair(p)] for _, p in chunk], dtype=np.int32)
            # 2: the kernel visits each unordered neighbour pair once, the formula sums ordered pairs
            pref_f = np.array([2.0 * 2.0 ** (1.0 - float(p.parameters["zeta"])) * float(p.parameters["epsilon"])
                               for _, p in chunk])
            n_pairs = len(j_p)
            g_pe = np.empty((n_pairs, len(eta_e)))
            dg_pe = np.empty((n_pairs, len(eta_e)))
            u_pc = np.empty((n_pairs, 3))
            w_pc = np.empty((n_pairs, len(weight_cs)))
            sel_p = np.empty(n_pairs, dtype=np.int64)
            _k.batch_weighted_angular_reduce(cutoff, eta_e, rs_e, l_k, zeta_k, izeta_k, e_f, k_f, pref_f, cols,
                                             c_f, weight_cs, indptr, j_p, d_p, D_pc, spec_n, codes[0], g_pe, dg_pe,
                                             u_pc, w_pc, sel_p, values_nf, jac_pf3, grad, n_threads)


class WeightedFamily(LocalPotentialFamily):
    """A weighted descriptor family: the numeric parameters are checked as by every family and ``weights``
    by :func:`check_weights` (stored as a table name or a ``{species: float}`` dict)."""

    def screen_parameters(self, **kwargs):
        """Check the parameters, then ``weights``."""
        result = super().screen_parameters(**kwargs)
        result["weights"] = check_weights(result["weights"])
        return result


_POSITIVE = (0, None, True, False)
_NON_NEGATIVE = (0, None)
_ANY = (None, None)

#: Weighted radial (n2p2 type 12, tag ``"a"``): ``G_i = sum_j w_j exp(-eta (r_ij - r_sphere)^2) f_c(r_ij)``
#: over every neighbour j, ``w_j`` the weight of its species (``weights``: ``"Z"`` by default, ``"mass"``,
#: ``"covalent_radius"``, ``"unit"`` or ``{species: number}``). ``a`` (Å, cutoff), ``eta`` (1/Å², >= 0),
#: ``r_sphere`` (Å, default 0).
weighted_radial_descriptor_family = WeightedFamily(
    parameters={"a": _POSITIVE, "eta": _NON_NEGATIVE, "r_sphere": _ANY, "weights": None},
    cutoff="a",
    kernels=WeightedRadialBackend(),
    parameter_defaults={"r_sphere": 0.0, "weights": "Z"},
    tag="weighted radial",
    coordination=1,
    doc="sum_j w_j exp(-eta (r - r_sphere)^2) f_c(r) over every neighbour, w_j the weight of j's species",
)

#: Weighted angular (n2p2 type 13 times 2, tag ``"a"``): ``G_i = 2^(1-zeta) epsilon sum_{j != k} w_j w_k
#: (1 + l cos_t)^zeta exp(-eta [(r1 - r_sphere)^2 + (r2 - r_sphere)^2 + (r3 - r_sphere)^2]) f_c(r1) f_c(r2)
#: f_c(r3)`` over ordered pairs of neighbours of every species, ``r3 = |r_k - r_j|`` (terms with ``r3 >= a``
#: vanish); n2p2's type 13 (j < k) is ``epsilon = 1/2``. ``a`` (Å), ``eta`` (1/Å², >= 0), ``r_sphere`` (Å,
#: default 0), ``l`` in [-1, 1], ``zeta`` in [0, 1000], ``epsilon`` (default 1), ``weights`` as for the radial.
weighted_angular_descriptor_family = WeightedFamily(
    parameters={"a": _POSITIVE, "eta": _NON_NEGATIVE, "r_sphere": _ANY, "l": (-1, 1), "zeta": (0, MAX_ZETA),
                "epsilon": _ANY, "weights": None},
    cutoff="a",
    kernels=WeightedAngularBackend(),
    parameter_defaults={"r_sphere": 0.0, "epsilon": 1.0, "weights": "Z"},
    tag="weighted angular",
    coordination=1,
    doc="2^(1-zeta) eps sum_{j != k} w_j w_k (1 + l cos_t)^zeta exp(-eta sum_n (r_n - r_sphere)^2) "
        "f_c(r1) f_c(r2) f_c(r3), every neighbour species",
)
