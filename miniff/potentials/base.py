"""Potential objects: ``LocalPotential``, ``ScaledLocalPotential`` and the ``LocalPotentialFamily`` factory.

A family knows its parameter names, their bounds and defaults, how the cutoff follows from the
parameters, the coordination of its tags (1 = ``"a"``, 2 = ``"a-b"``, 3 = ``"a-b-c"``) and a *backend*
that evaluates it on a neighbour list (``miniff/potentials/backends.py``). A potential is one parameterised
instance with a species tag. Every potential implements Contract 3 of DEVELOPING.md::

    potential.compute(nw, grad=False, n_threads=None) -> (energy_n [N] eV, grad_pc [P, 3] eV/Å or None)

with ``grad_pc[p] = d energy_n[i_p] / d D_pc[p]``.
"""

import copy as _copy
import math
import numbers
from typing import NamedTuple

import numpy as np

from miniff._ext.threads import auto_n_threads, effective_n_threads
from miniff.potentials.guards import check_coincident
from miniff.potentials.registry import potential_from_state_dict

__all__ = [
    "LocalPotential",
    "ScaledLocalPotential",
    "LocalPotentialFamily",
    "ScaledLocalPotentialFamily",
    "PotentialRuntimeWarning",
    "tag_codes",
    "KernelArrays",
    "pair_arrays",
    "resolve_n_threads",
]

_STATE_KEYS = {"tag", "parameters", "ptag"}

#: Largest magnitude of a numeric family parameter: the formulas multiply parameters with each other and with
#: squared distances, which must stay finite in float64 (max 1.8e308).
MAX_PARAMETER_MAGNITUDE = 1e50


class PotentialRuntimeWarning(RuntimeWarning):
    """Base class of warnings about problems met while evaluating potentials."""


# ---------------------------------------------------------------------------------------------------
# helpers shared by the backends
# ---------------------------------------------------------------------------------------------------


def resolve_n_threads(nw, n_threads):
    """Thread count for a kernel call: ``n_threads``, else the wrapper's ``n_threads``, else automatic.

    Automatic (both None) means the default OpenMP count capped by the size of the pair list
    (:func:`miniff._ext.threads.auto_n_threads`), so that tiny systems do not pay for waking threads.
    """
    if n_threads is None:
        n_threads = getattr(nw, "n_threads", None)
    pairs = getattr(nw, "pairs", None) if n_threads is None else None
    if n_threads is None and pairs is not None:
        return auto_n_threads(None, pairs.n_pairs)
    return effective_n_threads(n_threads)


class KernelArrays(NamedTuple):
    """The arrays of a pair list in the dtypes the compiled kernels take (C-contiguous)."""

    #: CSR row pointer, shape (N + 1,), int64
    indptr: np.ndarray
    #: neighbour atom of every pair, shape (P,), int32
    j_p: np.ndarray
    #: pair distances, shape (P,), float64, Å
    d_p: np.ndarray
    #: pair vectors ``r[j] + S @ cell - r[i]``, shape (P, 3), float64, Å
    D_pc: np.ndarray
    #: species code of every atom, shape (N,), int32
    spec_n: np.ndarray


def pair_arrays(nw, cutoff=None):
    """Contiguous arrays of ``nw.pairs`` for the kernels, after checking the wrapper is ready.

    The arrays are made once per pair list and species encoding (kept on the wrapper, keyed by the identity
    of ``nw.pairs`` and ``nw.spec_encoded_row``), so every potential of one evaluation shares them.

    Parameters
    ----------
    nw : NeighborWrapper
        With distances computed.
    cutoff : float or None
        The potential's cutoff (Å); it must not exceed the pair list's cutoff.

    Returns
    -------
    KernelArrays
        ``(indptr [N+1] int64, j_p [P] int32, d_p [P] float64, D_pc [P, 3] float64, spec_n [N] int32)``.
    """
    pairs = getattr(nw, "pairs", None)
    if pairs is None:
        raise ValueError("the NeighborWrapper has no pair list: call nw.compute_distances(cutoff) first")
    if cutoff is not None and cutoff > pairs.cutoff * (1 + 1e-12):
        raise ValueError(
            f"the potential's cutoff {cutoff} Å exceeds the neighbour list cutoff {pairs.cutoff} Å: "
            f"call nw.compute_distances({cutoff}) (or larger) first"
        )
    spec_row = getattr(nw, "spec_encoded_row", None)
    cached = getattr(nw, "_kernel_arrays", None)
    if cached is not None and cached[0] is pairs and cached[1] is spec_row:
        return cached[2]
    arrays = _kernel_arrays(pairs, spec_row)
    try:
        nw._kernel_arrays = (pairs, spec_row, arrays)
    except AttributeError:  # a wrapper that takes no attributes: no cache
        pass
    return arrays


def _kernel_arrays(pairs, spec_row):
    """Checked, contiguous ``KernelArrays`` of a pair list and a species encoding."""
    indptr = np.ascontiguousarray(pairs.indptr, dtype=np.int64)
    j_p = np.ascontiguousarray(pairs.j_p, dtype=np.int32)
    d_p = np.ascontiguousarray(pairs.d_p, dtype=np.float64)
    D_pc = np.ascontiguousarray(pairs.D_pc, dtype=np.float64)
    spec_n = np.ascontiguousarray(spec_row, dtype=np.int32)
    n = len(indptr) - 1
    if len(spec_n) != n:
        raise ValueError(f"nw.spec_encoded_row has {len(spec_n)} entries but the pair list has {n} atoms")
    if D_pc.shape != (len(j_p), 3) or d_p.shape != (len(j_p),):
        raise ValueError("inconsistent pair list: D_pc, d_p and j_p lengths differ")
    # the compiled loops trust these: check them once per list (the result is cached with the arrays)
    if len(indptr) == 0 or indptr[0] != 0 or indptr[-1] != len(j_p) or (n > 1 and np.any(np.diff(indptr) < 0)):
        raise ValueError("inconsistent pair list: indptr must rise from 0 to the number of pairs")
    if len(j_p) and (int(j_p.min()) < 0 or int(j_p.max()) >= n):
        raise ValueError(f"inconsistent pair list: neighbour indices j_p must lie in [0, {n})")
    return KernelArrays(indptr, j_p, d_p, D_pc, spec_n)


def _species_code_map(nw):
    """``{label: code}`` of the wrapper's species, made once per species encoding (kept on the wrapper)."""
    lookup = getattr(nw, "species_lookup", None)
    if lookup is None:
        raise ValueError("the NeighborWrapper has no species_lookup: call nw.compute_distances(cutoff) first")
    cached = getattr(nw, "_species_codes", None)
    if cached is not None and cached[0] is lookup:
        return cached[1]
    out = {str(key): int(code) for key, code in lookup.items()}
    try:
        nw._species_codes = (lookup, out)
    except AttributeError:  # a wrapper that takes no attributes: no cache
        pass
    return out


def tag_codes(tag, coordination, nw):
    """Species codes selected by a tag.

    Parameters
    ----------
    tag : str or None
        ``"a"``, ``"a-b"`` or ``"a-b-c"`` (``coordination`` parts); None selects species code 0 everywhere.
    coordination : int
        1, 2 or 3.
    nw : NeighborWrapper

    Returns
    -------
    tuple of int
        ``coordination`` species codes.

    Raises
    ------
    KeyError
        Naming the species when the cell does not contain it.
    """
    if tag is None:
        return (0,) * coordination
    parts = split_tag(tag, coordination)
    codes = _species_code_map(nw)
    out = []
    for part in parts:
        if part not in codes:
            raise KeyError(
                f"species {part!r} of tag {tag!r} is not present in the cell (species: {sorted(codes)}); "
                f"pass ignore_missing_species=True to skip such potentials"
            )
        out.append(codes[part])
    return tuple(out)


def split_tag(tag, coordination):
    """Split ``"a-b-c"`` into its parts, checking the count matches ``coordination``."""
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a string like 'a', 'a-b' or 'a-b-c', or None; got {type(tag).__name__}")
    parts = tag.split("-")
    if coordination is not None and len(parts) != coordination:
        raise ValueError(
            f"tag {tag!r} has {len(parts)} species but this potential needs {coordination} "
            f"(e.g. {'-'.join('abc'[:coordination])!r})"
        )
    if any(not p for p in parts):
        raise ValueError(f"tag {tag!r} has an empty species name")
    return parts


# ---------------------------------------------------------------------------------------------------
# potentials
# ---------------------------------------------------------------------------------------------------


class LocalPotential:
    """A parameterised local potential (or descriptor) with a species tag.

    Usually created by calling a family, e.g. ``lj_potential_family(epsilon=..., sigma=..., a=...,
    tag="Ar-Ar")``.

    Parameters
    ----------
    parameters : dict
        Parameter values (list/tuple values become arrays).
    cutoff : float
        Cutoff radius, Å (0 for on-site terms).
    kernels : object, optional
        Kept for compatibility with 0.1.4; evaluation goes through ``family``.
    family : LocalPotentialFamily, optional
        The family that made this potential (needed for ``compute`` and ``state_dict``).
    tag : str or None
        Species selector ``"a"``, ``"a-b"`` or ``"a-b-c"``.
    additional_inputs : tuple, optional
        Names of extra inputs a kernel needs (e.g. ``"charges"``).
    """

    def __init__(self, parameters, cutoff, kernels=None, family=None, tag=None, additional_inputs=None):
        if not isinstance(parameters, dict):
            raise TypeError(f"parameters must be a dict, got {type(parameters).__name__}")
        self.parameters = {k: (np.asarray(v) if isinstance(v, (list, tuple)) else v) for k, v in parameters.items()}
        try:
            cutoff = float(cutoff)
        except (TypeError, ValueError):
            raise TypeError(f"cutoff must be a number (Å), got {cutoff!r}") from None
        if not math.isfinite(cutoff) or cutoff < 0:
            raise ValueError(f"cutoff must be a finite non-negative number (Å), got {cutoff}")
        self.cutoff = cutoff
        self.kernels = kernels
        self.family = family
        if tag is not None:
            split_tag(tag, self.coordination)
        self.tag = tag
        self.additional_inputs = tuple(additional_inputs) if additional_inputs else ()

    @property
    def allow_coincident(self):
        """True when this potential may be evaluated with coincident atoms (finite at ``r = 0``).

        Defaults to the family's ``allow_coincident`` (False for every built-in family with pairs); set it on
        one potential to skip the check of ``miniff.potentials.guards.check_coincident``.
        """
        own = self.__dict__.get("_allow_coincident")
        if own is not None:
            return own
        return bool(getattr(self.family, "allow_coincident", False))

    @allow_coincident.setter
    def allow_coincident(self, value):
        self._allow_coincident = bool(value)

    @property
    def coordination(self):
        """Number of species in the tag (1 on-site, 2 pair, 3 triplet), or None if unknown."""
        return getattr(self.family, "coordination", None)

    def get_all_parameters(self):
        """Shallow copy of all parameters (``epsilon``/``sigma`` included for scaled potentials)."""
        return dict(self.parameters)

    def copy(self, tag=None):
        """A copy with the same parameters; ``tag`` replaces the species tag when given."""
        result = _copy.copy(self)
        result.parameters = dict(self.parameters)
        if tag is not None:
            split_tag(tag, self.coordination)
            result.tag = tag
        return result

    def state_dict(self):
        """``{"tag": family name, "parameters": all parameters, "ptag": species tag}``."""
        if self.family is None or getattr(self.family, "tag", None) is None:
            raise ValueError("this potential has no (named) family: it cannot be turned into a state dict")
        return {"tag": self.family.tag, "parameters": self.get_all_parameters(), "ptag": self.tag}

    @staticmethod
    def from_state_dict(data):
        """Same as ``potential_from_state_dict``."""
        return potential_from_state_dict(data)

    def species_codes(self, nw):
        """Species codes of the tag in ``nw`` (tuple of int); ``KeyError`` naming a missing species."""
        return tag_codes(self.tag, self.coordination or 1, nw)

    def compute(self, nw, grad=False, n_threads=None):
        """Per-atom energies and per-pair gradients (DEVELOPING.md, Contract 3).

        Parameters
        ----------
        nw : NeighborWrapper
            With distances computed up to at least ``self.cutoff``.
        grad : bool
            Also return the per-pair gradient.
        n_threads : int or None
            OpenMP threads (None: ``nw.n_threads``, else the default rule).

        Returns
        -------
        energy_n : ndarray of shape (n_atoms,), float64, eV
            Energy of every atom from this potential (0 for atoms not selected by the tag).
        grad_pc : ndarray of shape (n_pairs, 3), float64, eV/Å, or None
            ``d energy_n[i_p] / d D_pc[p]``.

        Raises
        ------
        KeyError
            If a species of the tag is missing from the cell.
        ValueError
            If the cutoff exceeds the wrapper's pair-list cutoff.
        """
        indptr = pair_arrays(nw, self.cutoff)[0]
        n, n_pairs = len(indptr) - 1, int(indptr[-1])
        energy_n = np.zeros(n)
        grad_pc = np.zeros((n_pairs, 3)) if grad else None
        self.accumulate(nw, energy_n, grad_pc, n_threads=n_threads)
        return energy_n, grad_pc

    def accumulate(self, nw, energy_n, grad_pc=None, n_threads=None):
        """Add this potential's energies to ``energy_n`` [N] and gradients to ``grad_pc`` [P, 3] (if given).

        This is what ``compute`` does without allocating; ``NeighborWrapper.total/grad/stress`` use it to
        sum many potentials into one buffer.
        """
        if self.family is None:
            raise NotImplementedError("a LocalPotential without family must override compute()")
        check_coincident(nw, [self])
        self.family.backend.accumulate(self, nw, energy_n, grad_pc, resolve_n_threads(nw, n_threads))

    def __repr__(self):
        name = getattr(self.family, "tag", None) or type(self).__name__
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_all_parameters().items() if not callable(v))
        return f"<{type(self).__name__} {name!r} tag={self.tag!r} cutoff={self.cutoff:g} {params}>"


class ScaledLocalPotential(LocalPotential):
    """A potential with an energy scale ``epsilon`` (eV) and a length scale ``sigma`` (Å).

    ``epsilon`` and ``sigma`` are taken out of ``parameters`` and stored as attributes; the remaining
    parameters are the reduced ones (e.g. the reduced cutoff ``a``), and ``cutoff = a * sigma``.
    """

    def __init__(self, parameters, cutoff, kernels=None, family=None, tag=None, additional_inputs=None):
        parameters = dict(parameters)
        for name in ("epsilon", "sigma"):
            if name not in parameters:
                raise ValueError(f"Parameter {name!r} is missing (required by a scaled potential)")
        self.epsilon = float(parameters.pop("epsilon"))
        self.sigma = float(parameters.pop("sigma"))
        super().__init__(parameters, cutoff, kernels=kernels, family=family, tag=tag,
                         additional_inputs=additional_inputs)

    def get_all_parameters(self):
        """All parameters including ``epsilon`` and ``sigma``."""
        out = dict(self.parameters)
        out["epsilon"] = self.epsilon
        out["sigma"] = self.sigma
        return out


# ---------------------------------------------------------------------------------------------------
# families
# ---------------------------------------------------------------------------------------------------


def _check_bound(name, value, bounds):
    """Check one numeric parameter against ``bounds`` = (lower, upper[, lower_open, upper_open])."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        else:
            raise TypeError(f"Parameter {name!r} must be a real number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"Parameter {name!r} is NaN")
    lo, hi = bounds[0], bounds[1]
    lo_open = bounds[2] if len(bounds) > 2 else False
    hi_open = bounds[3] if len(bounds) > 3 else False
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"Parameter {name!r} = {value} is out of bounds: must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise ValueError(f"Parameter {name!r} = {value} is out of bounds: must be {'<' if hi_open else '<='} {hi}")
    if math.isinf(value):
        raise ValueError(f"Parameter {name!r} must be finite, got {value}")
    if abs(value) > MAX_PARAMETER_MAGNITUDE:
        raise ValueError(
            f"Parameter {name!r} = {value} is too large to evaluate in float64: |{name}| must be at most "
            f"{MAX_PARAMETER_MAGNITUDE:g} (products of parameters and distances would overflow to inf/NaN)"
        )
    return value


class LocalPotentialFamily:
    """A factory of potentials: ``family(tag=..., **parameters) -> LocalPotential``.

    Parameters
    ----------
    parameters : dict
        ``{name: bounds or None}``; ``bounds = (lower, upper)`` inclusive (None = unbounded), optionally
        ``(lower, upper, lower_open, upper_open)``. Numeric parameters (bounds not None) must be finite
        real numbers within the bounds and at most ``MAX_PARAMETER_MAGNITUDE`` (1e50) in magnitude, so that
        the formulas stay finite in float64; ``None`` accepts any value (e.g. Python callables).
    cutoff : float, str or callable
        A number (Å), the name of the parameter holding it, or ``callable(parameters) -> float``.
    kernels : object, optional
        The backend evaluating the family (see ``miniff/potentials/backends.py``); stored as ``backend``.
    parameter_defaults : dict, optional
        Default values.
    tag : str, optional
        The family's name (used in state dicts and ``known_families``).
    proto : type, optional
        The potential class (``LocalPotential`` by default).
    coordination : int
        1 (tags ``"a"``), 2 (``"a-b"``) or 3 (``"a-b-c"``).
    doc : str, optional
        The formula, for humans.
    allow_coincident : bool
        The family is finite (energy and gradient) at ``r = 0``: skip the coincident-atoms check
        (``miniff.potentials.guards``) for its potentials.
    """

    def __init__(self, parameters, cutoff, kernels=None, parameter_defaults=None, tag=None, proto=None,
                 pre_compute_r=None, additional_inputs=None, complement_accumulating=True,
                 complement_num_grad=True, doc=None, coordination=2, allow_coincident=False):
        self.parameters = dict(parameters)
        self.allow_coincident = bool(allow_coincident)
        self.cutoff = cutoff
        self.backend = kernels
        self.kernels = kernels
        self.parameter_defaults = dict(parameter_defaults or {})
        self.tag = tag
        self.proto = proto or LocalPotential
        self.pre_compute_r = pre_compute_r
        self.additional_inputs = tuple(additional_inputs) if additional_inputs else ()
        self.doc = doc
        if coordination not in (1, 2, 3):
            raise ValueError(f"coordination must be 1, 2 or 3, got {coordination!r}")
        self.coordination = coordination
        unknown = set(self.parameter_defaults) - set(self.parameters)
        if unknown:
            raise ValueError(f"parameter_defaults name unknown parameters: {sorted(unknown)}")

    def screen_parameters(self, **kwargs):
        """Merge defaults, reject unknown, missing, NaN and out-of-bounds parameters.

        Returns
        -------
        dict
            The complete, checked parameter dict (numbers as Python floats).
        """
        unknown = [k for k in kwargs if k not in self.parameters]
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for family {self.tag!r}; expected {sorted(self.parameters)}"
            )
        result = dict(self.parameter_defaults)
        result.update(kwargs)
        for name, bounds in self.parameters.items():
            if name not in result:
                raise ValueError(f"Parameter {name!r} is missing (family {self.tag!r})")
            if bounds is not None:
                result[name] = _check_bound(name, result[name], bounds)
        return result

    def get_cutoff(self, parameters):
        """The cutoff (Å) for a complete parameter dict."""
        if callable(self.cutoff):
            return float(self.cutoff(parameters))
        if isinstance(self.cutoff, str):
            return float(parameters[self.cutoff])
        return float(self.cutoff)

    def instantiate(self, *, tag=None, empty=None, **kwargs):
        """Make a potential: ``family(tag="a-b", **parameters)``."""
        parameters = self.screen_parameters(**kwargs)
        return self.proto(parameters, self.get_cutoff(parameters), kernels=self.backend, family=self, tag=tag,
                          additional_inputs=self.additional_inputs)

    __call__ = instantiate

    def get_state_dict(self, potential):
        """State dict of one of this family's potentials."""
        return potential.state_dict()

    def instance_from_state_dict(self, data):
        """Rebuild a potential from its state dict (see ``potential_from_state_dict``)."""
        extra = set(data) - _STATE_KEYS
        if extra:
            raise ValueError(f"unknown keys in the state dict of a {self.tag!r} potential: {sorted(extra)}")
        parameters = data.get("parameters", {})
        if not isinstance(parameters, dict):
            raise ValueError(f"data['parameters'] must be a dict, got {type(parameters).__name__}")
        return self.instantiate(tag=data.get("ptag"), **parameters)

    def __repr__(self):
        return f"<{type(self).__name__} {self.tag!r} parameters={sorted(self.parameters)}>"


class ScaledLocalPotentialFamily(LocalPotentialFamily):
    """A family of ``ScaledLocalPotential``: parameters ``epsilon`` (eV) and ``sigma`` (Å) are added, and the
    cutoff given for the reduced parameters is multiplied by ``sigma``."""

    def __init__(self, parameters, cutoff, kernels=None, **kwargs):
        parameters = dict(parameters)
        parameters.setdefault("epsilon", (None, None))
        parameters.setdefault("sigma", (0, None, True, False))
        kwargs.setdefault("proto", ScaledLocalPotential)
        super().__init__(parameters, cutoff, kernels=kernels, **kwargs)

    def get_cutoff(self, parameters):
        """Reduced cutoff times ``sigma`` (Å)."""
        return super().get_cutoff(parameters) * float(parameters["sigma"])
