"""Ewald energy of charges predicted per atom: ``ewald_charge_wrapper_potential_family``.

The charge of atom ``i`` is the sum of the per-atom values of the wrapped ``descriptors`` (any potentials:
on-site terms for fixed charges per species, descriptor or general pair families for environment-dependent
ones, ``miniff.ml.NNPotential`` networks fitted to charges), optionally minus the mean over the cell so that it
is neutral (``charge_middleware="subtract_mean"``); then the whole Ewald energy of those charges. Forces and
stress include the chain rule through the charges: with ``c_i = dE/dq_i`` (minus its mean with
``subtract_mean``) and the descriptors' per-pair gradients ``dq_i / dD_p`` (Contract 3), the extra per-pair
gradient is ``c_{i_p} dq_{i_p} / dD_p``, so no dense ``[N, N, 3]`` charge Jacobian is ever formed.
"""

import numpy as np

from miniff.potentials.base import LocalPotential, pair_arrays, resolve_n_threads
from miniff.potentials.evaluate import accumulate_potential
from miniff.potentials.ewald import COULOMB, EwaldFamily, EwaldPotential
from miniff.potentials.registry import potential_from_state_dict
from miniff.util import positive_number

__all__ = ["EwaldChargeWrapperPotential", "ewald_charge_wrapper_potential_family", "CHARGE_MIDDLEWARES"]

#: Accepted values of ``charge_middleware``.
CHARGE_MIDDLEWARES = (None, "subtract_mean")


class EwaldChargeWrapperPotential(EwaldPotential):
    """Ewald energy (real + reciprocal + self) of charges predicted by ``descriptors`` (see the module)."""

    needs_charges = False
    chain_rule = True
    #: predicted charges need the pair list (descriptors and the chain rule): no list-free evaluation
    list_free_terms = None

    def __init__(self, parameters, cutoff, kernels=None, family=None, tag=None, additional_inputs=None,
                 descriptors=()):
        super().__init__(parameters, cutoff, kernels=kernels, family=family, tag=tag,
                         additional_inputs=additional_inputs)
        self.descriptors = tuple(descriptors)

    def _predicted(self, nw, grad, n_threads):
        """``(q_n [N] e, dq_pc [P, 3] e/Å or None)``: predicted charges and their per-pair gradients (cached on
        the wrapper for one pair list)."""
        pairs = nw.pairs
        caches = getattr(nw, "_ewald_predicted", None)
        cache = caches.get(id(self)) if isinstance(caches, dict) else None
        if cache is not None and cache[0] is pairs and (cache[2] is not None or not grad):
            return cache[1], cache[2]
        indptr = pair_arrays(nw)[0]
        n = len(indptr) - 1
        q_n = np.zeros(n)
        dq_pc = np.zeros((int(indptr[-1]), 3)) if grad else None
        for d in self.descriptors:
            try:
                d.species_codes(nw)
            except KeyError:  # a species the cell does not have: no atom gets a charge from this term
                continue
            accumulate_potential(d, nw, q_n, dq_pc, n_threads)
        if not np.all(np.isfinite(q_n)):
            raise ValueError("the descriptors of the Ewald charge wrapper predicted NaN or inf charges")
        if self.parameters["charge_middleware"] == "subtract_mean" and n:
            q_n -= q_n.mean()
        caches = caches if isinstance(caches, dict) and len(caches) <= 8 else {}
        caches[id(self)] = (pairs, q_n, dq_pc)
        try:
            nw._ewald_predicted = caches
        except AttributeError:
            pass
        return q_n, dq_pc

    def charges(self, nw, n_threads=None):
        """Predicted charges ``[N]`` (e), after the middleware."""
        return self._predicted(nw, False, resolve_n_threads(nw, n_threads))[0]

    def accumulate(self, nw, energy_n, grad_pc=None, n_threads=None):
        """Energies of the Ewald sum of the predicted charges; per-pair gradients at fixed charges plus the
        chain rule through the charges."""
        n_threads = resolve_n_threads(nw, n_threads)
        if grad_pc is not None:
            self._predicted(nw, True, n_threads)  # one descriptor pass with gradients
        super().accumulate(nw, energy_n, grad_pc, n_threads)
        if grad_pc is None:
            return
        _, dq_pc = self._predicted(nw, True, n_threads)
        c_n = self.charge_gradient(nw, n_threads=n_threads)
        if self.parameters["charge_middleware"] == "subtract_mean" and len(c_n):
            c_n = c_n - c_n.mean()
        indptr = pair_arrays(nw)[0]
        grad_pc += np.repeat(c_n, np.diff(indptr))[:, None] * dq_pc

    def get_all_parameters(self):
        return dict(self.parameters)

    def state_dict(self):
        """State dict with the wrapped descriptors under ``"descriptors"``."""
        out = super().state_dict()
        out["descriptors"] = [d.state_dict() for d in self.descriptors]
        return out

    def copy(self, tag=None):
        out = super().copy(tag=tag)
        out.descriptors = tuple(self.descriptors)
        return out


class EwaldChargeWrapperFamily(EwaldFamily):
    """Family of :class:`EwaldChargeWrapperPotential`: ``family(descriptors=[...], a=..., eta=...)``."""

    def instantiate(self, *, tag=None, empty=None, descriptors=None, **kwargs):
        if descriptors is None or isinstance(descriptors, LocalPotential):
            descriptors = [descriptors] if descriptors is not None else []
        descriptors = list(descriptors)
        if not descriptors:
            raise ValueError("descriptors: the Ewald charge wrapper needs a non-empty list of potentials "
                             "predicting per-atom charges")
        for k, d in enumerate(descriptors):
            if not isinstance(d, LocalPotential):
                raise TypeError(f"descriptors[{k}] must be a LocalPotential, got {type(d).__name__}")
        parameters = self.screen_parameters(**kwargs)
        if parameters["charge_middleware"] not in CHARGE_MIDDLEWARES:
            raise ValueError(f"Parameter 'charge_middleware' must be one of {CHARGE_MIDDLEWARES}, "
                             f"got {parameters['charge_middleware']!r}")
        for name in ("k_cut", "accuracy"):
            parameters[name] = positive_number(name, parameters[name], allow_none=True)
        cutoff = max([float(parameters["a"])] + [float(d.cutoff) for d in descriptors])
        return EwaldChargeWrapperPotential(parameters, cutoff, family=self, tag=tag,
                                           additional_inputs=self.additional_inputs, descriptors=descriptors)

    __call__ = instantiate

    def instance_from_state_dict(self, data):
        extra = set(data) - {"tag", "parameters", "ptag", "descriptors"}
        if extra:
            raise ValueError(f"unknown keys in the state dict of a {self.tag!r} potential: {sorted(extra)}")
        descriptors = [potential_from_state_dict(d) for d in data.get("descriptors", [])]
        return self.instantiate(tag=data.get("ptag"), descriptors=descriptors, **data.get("parameters", {}))


#: Ewald energy of predicted charges (tag None): ``q_i`` = sum of the ``descriptors``' per-atom values (minus
#: their mean with ``charge_middleware="subtract_mean"``, the default), then real + reciprocal + self as
#: ``ewald_total_potential_family`` (``a``, ``eta``, ``scale``, ``k_cut``, ``accuracy``). Cutoff: the largest of
#: ``a`` and the descriptors' cutoffs.
ewald_charge_wrapper_potential_family = EwaldChargeWrapperFamily(
    ("real", "k", "self"),
    parameters={"a": (0, None, True, False), "eta": (0, None, True, False), "scale": (None, None), "k_cut": None,
                "accuracy": None, "charge_middleware": None, "method": None, "mesh": None, "order": None},
    parameter_defaults={"scale": COULOMB, "k_cut": None, "accuracy": None, "charge_middleware": "subtract_mean",
                        "method": "auto", "mesh": None, "order": 6},
    cutoff="a",
    tag="Ewald charge wrapper potential",
    doc="Ewald total of charges q_i = sum of the descriptors' per-atom values (optionally minus their mean)",
)
