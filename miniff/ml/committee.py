"""Committees of NN potentials: the mean as a potential, the members' spread as an uncertainty.

A :class:`CommitteePotential` holds K :class:`~miniff.ml.NNPotential` members of one species with the same
descriptors (networks trained from different seeds or data). As a ``LocalPotential`` (DEVELOPING.md,
Contract 3) its per-atom energies and per-pair gradients are the members' mean, so energies, forces and
stresses everywhere (``NeighborWrapper``, relaxations, the ASE calculator) are the committee mean.
The descriptors and their per-pair Jacobian are evaluated once per evaluation for all members.

:func:`committee_spread` gives the members' disagreement (population standard deviations, ``ddof=0``,
over the K members) for a wrapper: the committee member ``k`` of a whole model is member ``k`` of every
committee in it (all committees need the same K); other potentials add the same to every member and do not
change the spread.

A committee's ``calibration`` factor (1 by default; set by :func:`miniff.ml.calibrate_committee` from
held-out errors and saved with the potential) multiplies its members' deviations from their mean, hence every
spread that :func:`committee_spread` (and the ASE calculator) reports; ``calibrated=False`` gives the raw one.
"""

from typing import NamedTuple

import numpy as np
import torch

from miniff.ml import descriptor_data as _ml_descriptors
from miniff.ml.potential import NNPotential, contract_pairs
from miniff.potentials.base import LocalPotential, LocalPotentialFamily
from miniff.potentials.evaluate import active_potentials, pair_gradient_to_atoms, potential_list, stress_from
from miniff.potentials.extrapolation import act_on_extrapolation, check_on_extrapolation
from miniff.potentials.registry import potential_from_state_dict

__all__ = ["CommitteePotential", "CommitteeFamily", "CommitteeSpread", "committee_family", "committee_spread",
           "committees_of"]

FAMILY_TAG = "ml committee"
_STATE_KEYS = {"tag", "ptag", "parameters", "members"}


def _same_data(a, b):
    """True when two state dicts (nested dicts/lists of numbers, strings, arrays, tensors) are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_data(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_data(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (str, type(None))) or isinstance(b, (str, type(None))):
        return a == b
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return a == b


#: Layers a committee runs as one batch over its members (see ``CommitteePotential._network_terms``).
_BATCHABLE_LAYERS = (torch.nn.Linear, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.SiLU, torch.nn.Softplus,
                     torch.nn.ReLU, torch.nn.ELU, torch.nn.CELU, torch.nn.SELU, torch.nn.GELU, torch.nn.LeakyReLU,
                     torch.nn.Softsign, torch.nn.Tanhshrink, torch.nn.Mish, torch.nn.LogSigmoid, torch.nn.Identity)


class CommitteePotential(LocalPotential):
    """K NN potentials of one species whose mean is the potential.

    Parameters
    ----------
    members : list of NNPotential
        At least two members, all with the same tag (centre species) and the same descriptors (equal state
        dicts). They are kept as given (not copied).
    on_extrapolation : {"ignore", "warn", "raise"}, optional
        What an evaluation does when an atom has descriptors outside :attr:`descriptor_range` (the union of
        the members' training ranges); default: the first member's setting.
    calibration : float, optional
        Factor (> 0, default 1) applied to the spread of this committee (see :func:`committee_spread`).

    Notes
    -----
    ``compute`` returns the mean of the members' per-atom energies and per-pair gradients. The members' own
    values come from :meth:`member_terms`, which keeps the last result for the wrapper (one entry, checked
    against the wrapper's pair vectors and species), so an energy evaluation followed by
    :func:`committee_spread` of the same positions evaluates the descriptors once; for forces too, set
    :attr:`keep_member_gradients` (the calculator does), else ``compute(grad=True)`` contracts only the
    mean's descriptor derivative and a following spread of the forces evaluates again.
    """

    def __init__(self, members, on_extrapolation=None, calibration=1.0):
        if isinstance(members, NNPotential) or not isinstance(members, (list, tuple)):
            raise TypeError(f"members must be a list of NNPotential, got {type(members).__name__}")
        members = tuple(members)
        if len(members) < 2:
            raise ValueError(f"members: a committee needs at least 2 NNPotential members, got {len(members)}")
        for k, m in enumerate(members):
            if not isinstance(m, NNPotential):
                raise TypeError(f"members[{k}] must be an NNPotential, got {type(m).__name__}")
        first = members[0]
        first_desc = [d.state_dict() for d in first.descriptors]
        for k, m in enumerate(members[1:], start=1):
            if m.tag != first.tag:
                raise ValueError(f"members[{k}] has tag {m.tag!r} but members[0] has {first.tag!r}: all members "
                                 f"must describe the same species")
            if not _same_data([d.state_dict() for d in m.descriptors], first_desc):
                raise ValueError(f"members[{k}] has other descriptors than members[0]: all members must share "
                                 f"the same descriptors")
        self.members = members
        self.descriptors = first.descriptors
        super().__init__({}, first.cutoff, family=committee_family, tag=first.tag)
        self.on_extrapolation = first.on_extrapolation if on_extrapolation is None else on_extrapolation
        self.calibration = calibration
        self._last = None  # (nw, pairs, D_pc copy, species copy, energy_kn, grad_kpc or None)
        self._last_extrapolation = None
        #: True: ``compute(grad=True)`` also keeps the members' own pair gradients, so that a following
        #: :func:`committee_spread` of the same positions evaluates nothing again (``MiniffCalculator`` sets
        #: it); False (default): it computes the mean's gradient only, cheaper when no spread is asked.
        self.keep_member_gradients = False

    @property
    def device(self):
        """The device of the members' networks (see :meth:`~miniff.ml.NNPotential.set_device`; None: the CPU)."""
        return self.members[0].device

    def set_device(self, device):
        """Evaluate every member's network and Jacobian contraction on ``device`` (see
        :meth:`miniff.ml.NNPotential.set_device`); the descriptors stay CPU-computed, once for all members.
        Returns ``self``."""
        for m in self.members:
            m.set_device(device)
        return self

    @property
    def on_extrapolation(self):
        """``"ignore"``, ``"warn"`` or ``"raise"`` (see :class:`~miniff.ml.NNPotential`)."""
        return self._on_extrapolation

    @on_extrapolation.setter
    def on_extrapolation(self, value):
        self._on_extrapolation = check_on_extrapolation(value)

    @property
    def calibration(self):
        """The factor (> 0) that rescales this committee's spread to the observed errors (1: uncalibrated)."""
        return self._calibration

    @calibration.setter
    def calibration(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value) or value <= 0:
            raise ValueError(f"calibration must be a finite number > 0, got {value!r}")
        self._calibration = float(value)

    @property
    def descriptor_range(self):
        """``[F, 2]``: the union of the members' training ranges, or None if a member has none."""
        ranges = [m.descriptor_range for m in self.members]
        if any(r is None for r in ranges):
            return None
        ranges = np.stack(ranges)
        return np.stack([ranges[:, :, 0].min(axis=0), ranges[:, :, 1].max(axis=0)], axis=1)

    last_extrapolation = NNPotential.last_extrapolation

    @property
    def coordination(self):
        """1: the tag is the centre species."""
        return 1

    @property
    def n_members(self):
        """K, the number of members."""
        return len(self.members)

    def __repr__(self):
        return (f"<CommitteePotential tag={self.tag!r} members={self.n_members} cutoff={self.cutoff:g} "
                f"n_descriptors={len(self.descriptors)}>")

    # ------------------------------------------------------------------ evaluation
    def member_terms(self, nw, grad=False, n_threads=None):
        """Every member's per-atom energies and per-pair gradients, descriptors evaluated once.

        Parameters
        ----------
        nw : NeighborWrapper
            With distances computed up to at least ``self.cutoff``.
        grad : bool
        n_threads : int or None
            OpenMP threads of the descriptor kernels.

        Returns
        -------
        energy_kn : ndarray of shape (K, N), eV
            0 for atoms of other species.
        grad_kpc : ndarray of shape (K, P, 3), eV/Å, or None
            ``d energy_kn[k, i_p] / d D_pc[p]``.
        """
        hit = self._cached(nw, grad)
        if hit is not None:
            return hit
        energy_kn, grad_kpc = self._evaluate_members(nw, grad, n_threads, per_member=True)
        self._keep(nw, energy_kn, grad_kpc)
        return energy_kn, grad_kpc

    def _cached(self, nw, grad):
        """``(energy_kn, grad_kpc or None)`` of the last evaluation when it was of this wrapper's pair vectors and
        species and holds what is asked (per-member gradients for ``grad``), else None."""
        last = self._last
        if last is None or last[0] is not nw or last[1] is not nw.pairs or (grad and last[5] is None):
            return None
        if not (np.array_equal(last[2], nw.pairs.D_pc) and np.array_equal(last[3], np.asarray(nw.spec_encoded_row))):
            return None
        return last[4], (last[5] if grad else None)

    def _keep(self, nw, energy_kn, grad_kpc):
        self._last = (nw, nw.pairs, np.array(nw.pairs.D_pc), np.array(nw.spec_encoded_row), energy_kn, grad_kpc)

    def _evaluate_members(self, nw, grad, n_threads, per_member):
        """Descriptors once, then every member's network: ``energy_kn`` [K, N] and, with ``grad``, the members'
        pair gradients [K, P, 3] (``per_member``) or those of their mean [P, 3] (one contraction of the mean
        descriptor derivative: the contraction is linear)."""
        self._last = None   # a new evaluation: release the previous one's arrays first
        sel = self.members[0].selected_atoms(nw)
        if sel.any():
            eval_descriptors = _ml_descriptors.eval_descriptors_hook()
            values_nf, jac_pfc = eval_descriptors(nw, list(self.descriptors), grad=grad, n_threads=n_threads,
                                                  ignore_missing_species=True)
            act_on_extrapolation(self, nw, self.descriptor_range, self.on_extrapolation, values_nf, sel)
        else:
            values_nf = jac_pfc = None
            self._last_extrapolation = None if self.descriptor_range is None else (nw, np.zeros(len(sel), np.int64))
        energy_kn, g_ksf = self._network_terms(sel, values_nf, grad)
        if not grad:
            return energy_kn, None
        if per_member:   # one pass over the Jacobian for all members
            return energy_kn, contract_pairs(nw, sel, g_ksf, jac_pfc, self.device, n_threads)
        g_mean = None if any(g is None for g in g_ksf) else torch.stack(g_ksf).mean(dim=0)
        return energy_kn, contract_pairs(nw, sel, [g_mean], jac_pfc, self.device, n_threads)[0]

    def _network_terms(self, sel, values_nf, grad):
        """Every member's network on the selected atoms' descriptors: ``energy_kn`` [K, N] (eV) and the K
        derivatives ``d energy / d values`` [S, F] (or None entries; see :meth:`NNPotential.network_terms`).
        Members whose networks are ``Sequential`` stacks of the same ``Linear`` and element-wise activation
        layers run as one batch (each layer one batched matrix product over the K members' stacked weights:
        a few large operations instead of K x layers small ones); others one by one."""
        nets = self._stackable_networks() if sel.any() else None
        if nets is None:
            terms = [m.network_terms(sel, values_nf, grad=grad) for m in self.members]
            return np.stack([e for e, _ in terms]), [g for _, g in terms]
        dev = self._stack_device
        k = len(nets)
        with torch.no_grad():
            layers = [(torch.stack([m.weight for m in ms]).transpose(1, 2),
                       None if ms[0].bias is None else torch.stack([m.bias for m in ms])[:, None, :])
                      if isinstance(ms[0], torch.nn.Linear) else ms[0] for ms in zip(*nets, strict=True)]
        x = torch.from_numpy(np.ascontiguousarray(values_nf if sel.all() else values_nf[sel], dtype=np.float64))
        x = x if dev is None else x.to(dev)

        def energies(h_ksf):   # [K, S, F] -> [K, S]
            for layer in layers:
                if isinstance(layer, tuple):
                    w, b = layer
                    h_ksf = torch.bmm(h_ksf, w) if b is None else torch.baddbmm(b, h_ksf, w)
                else:
                    h_ksf = layer(h_ksf)
            return h_ksf[..., 0]

        energy_kn = np.zeros((k, len(sel)))
        if not grad:
            with torch.no_grad():
                energy_kn[:, sel] = energies(x.expand(k, -1, -1)).cpu().numpy()
            return energy_kn, [None] * k
        x_ksf = x.expand(k, -1, -1).clone().requires_grad_(True)
        with torch.enable_grad():
            e_ks = energies(x_ksf)
            (g_ksf,) = torch.autograd.grad(e_ks.sum(), x_ksf)
        energy_kn[:, sel] = e_ks.detach().cpu().numpy()
        return energy_kn, list(g_ksf)

    def _stackable_networks(self):
        """The members' networks (on their device) when they can run as one batch, else None; the check is
        redone when a member's network object changes."""
        nets = [m._network() for m in self.members]
        mods = [n for n, _ in nets]
        known = getattr(self, "_stack_nets", ())
        if len(known) != len(mods) or any(a is not b for a, b in zip(known, mods, strict=False)):
            # torch's Linear and element-wise activations only: their repr states their whole configuration,
            # and they act on [K, S, H] as on [S, H]
            ok = (all(type(n) is torch.nn.Sequential for n in mods) and len({str(d) for _, d in nets}) == 1
                  and all(type(layer) in _BATCHABLE_LAYERS for n in mods for layer in n)
                  and len({repr(n) for n in mods}) == 1
                  and len({tuple((k, tuple(v.shape), v.dtype) for k, v in n.state_dict().items()) for n in mods}) == 1)
            self._stack_nets = tuple(mods)   # the modules themselves (ids could be reused once they are freed)
            self._stack_ok = ok
            self._stack_device = nets[0][1]
        return mods if self._stack_ok else None

    def compute(self, nw, grad=False, n_threads=None):
        """The members' mean (DEVELOPING.md, Contract 3).

        With ``grad``, the members' own pair gradients are kept for :func:`committee_spread` when
        :attr:`keep_member_gradients` is set (``MiniffCalculator`` sets it); otherwise only the mean's is computed
        (one contraction of the mean descriptor derivative, the cheaper path for energy and forces alone).

        Returns
        -------
        energy_n : ndarray of shape (N,), eV
        grad_pc : ndarray of shape (P, 3), eV/Å, or None
        """
        hit = self._cached(nw, grad)
        if hit is None and grad and not self.keep_member_gradients:
            energy_kn, grad_pc = self._evaluate_members(nw, True, n_threads, per_member=False)
            self._keep(nw, energy_kn, None)   # the energies stay reusable
            return energy_kn.mean(axis=0), grad_pc
        energy_kn, grad_kpc = hit if hit is not None else self.member_terms(nw, grad=grad, n_threads=n_threads)
        return energy_kn.mean(axis=0), (grad_kpc.mean(axis=0) if grad else None)

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """Plain data: ``{"tag": "ml committee", "ptag", "parameters": {}, "members": [NNPotential state dicts]}``."""
        parameters = {} if self.on_extrapolation == self.members[0].on_extrapolation else \
            {"on_extrapolation": self.on_extrapolation}
        if self.calibration != 1.0:
            parameters["calibration"] = self.calibration
        return {"tag": FAMILY_TAG, "ptag": self.tag, "parameters": parameters,
                "members": [m.state_dict() for m in self.members]}

    @classmethod
    def from_state_dict(cls, data):
        """Rebuild from :meth:`state_dict` output (never unpickles code)."""
        return committee_family.instance_from_state_dict(data)


class CommitteeFamily(LocalPotentialFamily):
    """The family of :class:`CommitteePotential` (tag ``"ml committee"``), listed in the family registry."""

    def __init__(self):
        super().__init__({"members": None}, 0.0, tag=FAMILY_TAG, proto=CommitteePotential, coordination=1,
                         doc="E_i = mean_k nn_k(descriptors_i)")

    def instantiate(self, *, tag=None, empty=None, members=None, on_extrapolation=None, calibration=1.0):
        """``committee_family(members=[...])``."""
        if members is None:
            raise ValueError("a committee needs members=[NNPotential, ...]")
        pot = CommitteePotential(members, on_extrapolation=on_extrapolation, calibration=calibration)
        if tag is not None and tag != pot.tag:
            raise ValueError(f"tag {tag!r} differs from the members' tag {pot.tag!r}")
        return pot

    __call__ = instantiate

    def instance_from_state_dict(self, data):
        """Rebuild a :class:`CommitteePotential` from its state dict."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        extra = set(data) - _STATE_KEYS
        if extra:
            raise ValueError(f"unknown keys in the state dict of an ml committee: {sorted(extra)}")
        if data.get("tag") != FAMILY_TAG:
            raise ValueError(f"data['tag'] must be {FAMILY_TAG!r}, got {data.get('tag')!r}")
        params = data.get("parameters") or {}
        if not isinstance(params, dict) or set(params) - {"on_extrapolation", "calibration"}:
            raise ValueError(f"data['parameters'] of an ml committee may only hold 'on_extrapolation' and "
                             f"'calibration', got {params!r}")
        members = data.get("members")
        if not isinstance(members, list):
            raise ValueError(f"data['members'] must be a list of ml potential state dicts, got "
                             f"{type(members).__name__}")
        built = []
        for k, m in enumerate(members):
            if not isinstance(m, dict) or m.get("tag") != "ml potential":
                raise ValueError(f"data['members'][{k}] must be an ml potential state dict")
            try:
                built.append(potential_from_state_dict(m))
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"data['members'][{k}]: {e}") from None
        return self.instantiate(tag=data.get("ptag"), members=built, on_extrapolation=params.get("on_extrapolation"),
                                calibration=params.get("calibration", 1.0))


#: The family of committees (listed in ``miniff.potentials.registry.BUILTIN_FAMILIES``).
committee_family = CommitteeFamily()


# ------------------------------------------------------------------ spread


class CommitteeSpread(NamedTuple):
    """The members' spread (population standard deviation over the K members) of one structure."""

    #: std of the total energy, eV
    energy_std: float
    #: std of every atom's energy, shape (N,), eV
    energies_std: np.ndarray
    #: per atom ``sqrt(mean_c std_k(F_knc)^2)``: the RMS over Cartesian components of the force spread, (N,), eV/Å
    forces_std: np.ndarray
    #: std of every Voigt stress component, shape (6,), eV/Å³, or None (not asked for / not periodic)
    stress_std: object
    #: K
    n_members: int


def committees_of(potentials):
    """The :class:`CommitteePotential` entries of a potential or list of potentials (maybe empty)."""
    potentials, _ = potential_list(potentials)
    return [p for p in potentials if isinstance(p, CommitteePotential)]


def committee_spread(nw, potentials, forces=True, stress=None, n_threads=None, calibrated=True):
    """The committee spread of a structure.

    Parameters
    ----------
    nw : NeighborWrapper
        With distances computed up to at least the committees' cutoff.
    potentials : LocalPotential or list of LocalPotential
        The model; at least one :class:`CommitteePotential`, all committees with the same number of members.
        Committees whose species the structure lacks are skipped; other potentials do not change the spread.
    forces : bool
        Compute ``forces_std`` (else it is None).
    stress : bool or None
        Compute ``stress_std``; None: when the wrapper is periodic along all three axes.
    n_threads : int or None
    calibrated : bool
        Scale every committee's member deviations by its ``calibration`` factor (the default); False: the raw
        spread of the members.

    Returns
    -------
    CommitteeSpread
    """
    committees = committees_of(potentials)
    if not committees:
        raise ValueError("potentials: no CommitteePotential in the list, so there is no committee spread")
    counts = sorted({c.n_members for c in committees})
    if len(counts) > 1:
        raise ValueError(f"potentials: committees with different numbers of members {counts}; member k of the "
                         f"model must be member k of every committee")
    k_members = counts[0]
    _, _, active = active_potentials(nw, committees, ignore_missing_species=True)  # list, cutoffs, coincident atoms
    if stress is None:
        stress = bool(np.all(np.asarray(nw.pbc)))
    need_grad = forces or stress
    n = len(np.asarray(nw.spec_encoded_row))
    energy_kn = np.zeros((k_members, n))
    grad_kpc = np.zeros((k_members, nw.pairs.n_pairs, 3)) if need_grad else None
    for c in (committees[k] for k in active):
        e_kn, g_kpc = c.member_terms(nw, grad=need_grad, n_threads=n_threads)
        if calibrated and c.calibration != 1.0:   # the members' deviations from their mean, scaled
            e_kn = e_kn.mean(axis=0) + c.calibration * (e_kn - e_kn.mean(axis=0))
            if need_grad:
                g_kpc = g_kpc.mean(axis=0) + c.calibration * (g_kpc - g_kpc.mean(axis=0))
        energy_kn += e_kn
        if need_grad:
            grad_kpc += g_kpc
    forces_std = stress_std = None
    if forces:
        grad_knc = np.stack([pair_gradient_to_atoms(nw, g, n_threads) for g in grad_kpc])
        forces_std = np.sqrt(grad_knc.var(axis=0).mean(axis=1))
    if stress:
        stress_k6 = np.stack([stress_from(nw, g, False, n_threads) for g in grad_kpc])
        stress_std = stress_k6.std(axis=0)
    return CommitteeSpread(float(energy_kn.sum(axis=1).std()), energy_kn.std(axis=0), forces_std, stress_std,
                           k_members)
