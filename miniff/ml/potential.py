"""``NNPotential``: a Behler-Parrinello network as a ``LocalPotential`` (Contract 3), and its family.

The atomic energy of every atom of the tagged species is ``nn(descriptors_i)`` (eV), evaluated in float64
with the descriptors of ``eval_descriptors``.  Its per-pair gradient is
``grad_pc[p] = sum_f dnn/dD_f(D_{i_p}) * jac_pfc[p, f, :]`` -- linear in pairs.
"""

import copy

import numpy as np
import torch

from miniff._ext import kernel_module as _k
from miniff._ext.threads import auto_n_threads
from miniff.ml import descriptor_data as _ml_descriptors
from miniff.ml.networks import sequential_from_data, sequential_to_data, simplify_sequential
from miniff.ml.single import SpeciesNetwork
from miniff.potentials.base import LocalPotential, LocalPotentialFamily
from miniff.potentials.extrapolation import (
    ON_EXTRAPOLATION,
    ExtrapolationCounting,
    ExtrapolationError,
    ExtrapolationWarning,
    act_on_extrapolation,
    check_descriptor_range,
    check_on_extrapolation,
)
from miniff.potentials.registry import potential_from_state_dict

__all__ = ["NNPotential", "NNPotentialFamily", "ml_potential_family", "potentials_from_ml_data", "descriptor_ranges",
           "ExtrapolationError",
           "ExtrapolationWarning", "ON_EXTRAPOLATION"]

FAMILY_TAG = "ml potential"
_STATE_KEYS = {"tag", "ptag", "parameters", "descriptors"}
_PARAMETERS = {"nn", "descriptor_fidelity_histograms", "descriptor_range", "on_extrapolation"}


class NNPotential(ExtrapolationCounting, LocalPotential):
    """A neural-network potential for one species.

    Parameters
    ----------
    nn : torch.nn.Sequential
        Maps raw descriptors ``[n, F]`` to atomic energies ``[n, 1]`` (eV).  It is copied and converted to
        float64.
    descriptors : list of LocalPotential
        The ``D`` descriptors, tagged ``"<species>-..."``.
    tag : str
        The centre species, e.g. ``"Si"``.
    normalization : Normalization, optional
        If given, ``nn`` works on normalised data and the normalisation of species index ``specimen`` is
        folded into the network (so the potential takes raw descriptors and returns eV).
    specimen : int, optional
        Species index in ``normalization``.
    descriptor_fidelity_histograms : ndarray of shape (F, 2, bins + 1), optional
        Kept for 0.1.4 compatibility (stored, not used).
    descriptor_range : array of shape (F, 2), optional
        The training range (min, max) of every raw descriptor (``FitWorkflow`` records it). With it,
        every evaluation counts the descriptors of each atom outside the range (:attr:`last_extrapolation`).
    on_extrapolation : {"ignore", "warn", "raise"}
        What an evaluation does when an atom has a descriptor outside ``descriptor_range``: nothing, an
        ``ExtrapolationWarning``, or an ``ExtrapolationError`` (a ``ValueError``).
    output : {"energy", "charge"}
        Which output scale of ``normalization`` is folded in: energies (eV) or charges (e; the potential's
        per-atom values are then charges, for ``ewald_charge_wrapper_potential_family``).
    """

    def __init__(self, nn, descriptors, tag=None, normalization=None, specimen=None,
                 descriptor_fidelity_histograms=None, simplify=True, descriptor_range=None,
                 on_extrapolation="ignore", output="energy"):
        if not isinstance(nn, torch.nn.Module):
            raise TypeError(f"nn must be a torch.nn.Module, got {type(nn).__name__}")
        if isinstance(nn, SpeciesNetwork):  # a SingleNN species: its plain, folded network (exact)
            nn = nn.to_sequential()
        descriptors = tuple(descriptors)
        if not descriptors:
            raise ValueError("descriptors must not be empty")
        for k, d in enumerate(descriptors):
            if not isinstance(d, LocalPotential) or not isinstance(d.tag, str):
                raise TypeError(f"descriptors[{k}] must be a tagged LocalPotential")
            if tag is not None and d.tag.split("-")[0] != tag:
                raise ValueError(f"descriptors[{k}] has tag {d.tag!r}: its centre species must be {tag!r}")
        if normalization is not None and specimen is None:
            raise ValueError("specimen (the species index in normalization) is required with normalization")
        try:
            if normalization is not None:
                nn = normalization.apply_to_module(nn, specimen, fw=False, output=output, simplify=simplify)
            elif simplify and isinstance(nn, torch.nn.Sequential):
                nn = simplify_sequential(nn)
            else:
                nn = copy.deepcopy(nn)
        except RuntimeError as e:  # layers whose shapes do not chain
            raise ValueError(f"nn cannot be evaluated: its layers do not fit together ({e})") from None
        nn = nn.to(torch.float64).eval()
        for p in nn.parameters():
            p.requires_grad_(False)
        self.descriptors = descriptors
        family = ml_potential_family
        super().__init__({"nn": nn, "descriptor_fidelity_histograms": descriptor_fidelity_histograms,
                          "descriptor_range": check_descriptor_range(descriptor_range, len(descriptors)),
                          "on_extrapolation": check_on_extrapolation(on_extrapolation)},
                         max(float(d.cutoff) for d in descriptors), family=family, tag=tag)
        self._last_extrapolation = None
        self._check_width()

    def _check_width(self):
        """Refuse networks that cannot give finite per-atom energies: non-finite tensors (named), a first layer
        of the wrong width, or an output other than one value per atom (``[n, 1]``)."""
        for name, t in list(self.nn.named_parameters()) + list(self.nn.named_buffers()):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ValueError(f"nn tensor {name!r} (shape {list(t.shape)}) has {bad} non-finite value(s) "
                                 f"(NaN or inf): the potential would give NaN energies")
        first = next((m for m in self.nn.modules() if isinstance(m, torch.nn.Linear)), None)
        n_f = len(self.descriptors)
        if first is not None and first.in_features != n_f:
            raise ValueError(f"nn takes {first.in_features} inputs but there are {n_f} descriptors")
        try:
            with torch.no_grad():
                out = self.nn(torch.zeros(2, n_f, dtype=torch.float64))
        except RuntimeError as e:
            raise ValueError(f"nn cannot be evaluated on {n_f} descriptors: {e}") from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 1):
            shape = list(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"nn must give one output per atom (the atomic energy or charge, shape [n, 1]); this "
                             f"network gives {shape} per atom")

    @property
    def coordination(self):
        """1: the tag is the centre species."""
        return 1

    @property
    def nn(self):
        """The float64 network (raw descriptors -> eV)."""
        return self.parameters["nn"]

    @property
    def descriptor_range(self):
        """``[F, 2]`` training range (min, max) of the raw descriptors, or None (no extrapolation check)."""
        return self.parameters["descriptor_range"]

    @descriptor_range.setter
    def descriptor_range(self, value):
        self.parameters["descriptor_range"] = check_descriptor_range(value, len(self.descriptors))

    @property
    def on_extrapolation(self):
        """``"ignore"``, ``"warn"`` or ``"raise"``: what an evaluation outside :attr:`descriptor_range` does."""
        return self.parameters["on_extrapolation"]

    @on_extrapolation.setter
    def on_extrapolation(self, value):
        self.parameters["on_extrapolation"] = check_on_extrapolation(value)

    def __repr__(self):
        return f"<NNPotential tag={self.tag!r} cutoff={self.cutoff:g} n_descriptors={len(self.descriptors)}>"

    # ------------------------------------------------------------------ evaluation
    def compute(self, nw, grad=False, n_threads=None):
        """Per-atom energies and per-pair gradients (DEVELOPING.md, Contract 3).

        Parameters
        ----------
        nw : NeighborWrapper
            With distances computed up to at least ``self.cutoff``.
        grad : bool
        n_threads : int or None
            OpenMP threads of the descriptor kernels.

        Returns
        -------
        energy_n : ndarray of shape (N,), float64, eV
            0 for atoms of other species.
        grad_pc : ndarray of shape (P, 3), float64, eV/Å, or None
            ``d energy_n[i_p] / d D_pc[p]``.
        """
        sel = self.selected_atoms(nw)
        if not sel.any():
            self._last_extrapolation = None if self.descriptor_range is None else (nw, np.zeros(len(sel), np.int64))
            return np.zeros(len(sel)), (np.zeros((nw.pairs.n_pairs, 3)) if grad else None)
        eval_descriptors = _ml_descriptors.eval_descriptors_hook()
        values_nf, jac_pfc = eval_descriptors(nw, list(self.descriptors), grad=grad, n_threads=n_threads,
                                              ignore_missing_species=True)
        act_on_extrapolation(self, nw, self.descriptor_range, self.on_extrapolation, values_nf, sel)
        return self.compute_from_descriptors(nw, sel, values_nf, jac_pfc if grad else None, n_threads=n_threads)

    def selected_atoms(self, nw):
        """``[N]`` bool: the atoms of this potential's species (``KeyError`` if the cell lacks it)."""
        (code,) = self.species_codes(nw)
        return np.asarray(nw.spec_encoded_row) == code

    def compute_from_descriptors(self, nw, sel, values_nf, jac_pfc=None, n_threads=None):
        """:meth:`compute` from descriptors already evaluated.

        Parameters
        ----------
        nw : NeighborWrapper
        sel : ndarray of shape (N,), bool
            :meth:`selected_atoms`.
        values_nf : ndarray of shape (N, F)
            ``eval_descriptors(nw, self.descriptors)`` values.
        jac_pfc : ndarray of shape (P, F, 3) or None
            Their per-pair Jacobian; None for energies only.
        n_threads : int or None
            OpenMP threads of the Jacobian contraction.

        Returns
        -------
        energy_n : ndarray of shape (N,), eV
        grad_pc : ndarray of shape (P, 3), eV/Å, or None (when ``jac_pfc`` is None)
        """
        energy_n, g_sf = self.network_terms(sel, values_nf, grad=jac_pfc is not None)
        if jac_pfc is None:
            return energy_n, None
        return energy_n, contract_pairs(nw, sel, [g_sf], jac_pfc, self.device, n_threads)[0]

    def network_terms(self, sel, values_nf, grad=False):
        """The network on the descriptors of the selected atoms: per-atom energies and, with ``grad``, their
        derivatives with respect to the descriptors (input of :func:`contract_pairs`).

        Parameters
        ----------
        sel : ndarray of shape (N,), bool
            :meth:`selected_atoms`.
        values_nf : ndarray of shape (N, F)
            Descriptor values.
        grad : bool

        Returns
        -------
        energy_n : ndarray of shape (N,), eV
            0 for atoms not selected.
        g_sf : torch.Tensor of shape (S, F), eV, or None
            ``d energy / d values`` of the ``S = sel.sum()`` selected atoms, on :attr:`device`; None without
            ``grad`` or when no atom is selected.
        """
        energy_n = np.zeros(len(sel))
        if not sel.any():
            return energy_n, None
        net, dev = self._network()
        x = torch.from_numpy(np.ascontiguousarray(values_nf if sel.all() else values_nf[sel], dtype=np.float64))
        x = x if dev is None else x.to(dev)
        if not grad:
            with torch.no_grad():
                energy_n[sel] = net(x)[:, 0].cpu().numpy()
            return energy_n, None
        with torch.enable_grad():
            x.requires_grad_(True)
            e = net(x)[:, 0]
            (g_sf,) = torch.autograd.grad(e.sum(), x)
        energy_n[sel] = e.detach().cpu().numpy()
        return energy_n, g_sf

    # ------------------------------------------------------------------ device
    @property
    def device(self):
        """The ``torch.device`` the network and the Jacobian contraction run on, or None: the CPU, in place (the
        default).  Set with :meth:`set_device`."""
        return getattr(self, "_device", None)

    def set_device(self, device):
        """Evaluate the network and the Jacobian contraction on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``,
        ``"auto"``; None: back to the default CPU path); the descriptors stay CPU-computed.  A float64 copy of
        the network is kept on the device (made again when :attr:`nn` is replaced; after changing the network's
        tensors in place, call this again).  Saved files are unchanged (plain CPU tensors).  Returns ``self``.

        Raises
        ------
        ValueError
            An unknown device, or ``"cuda"`` when torch sees no GPU.
        """
        from miniff.ml.device import resolve_device

        self._device = None if device is None else resolve_device(device)
        self._device_nn = None
        return self

    def _network(self):
        """``(network, device)``: :attr:`nn` and None by default, else the network's copy on :attr:`device`."""
        dev = self.device
        if dev is None:
            return self.nn, None
        cached = getattr(self, "_device_nn", None)
        if cached is None or cached[0] is not self.nn:
            cached = (self.nn, copy.deepcopy(self.nn).to(dev))
            self._device_nn = cached
        return cached[1], dev

    def accumulate(self, nw, energy_n, grad_pc=None, n_threads=None):
        """Add this potential's energies to ``energy_n`` [N] and gradients to ``grad_pc`` [P, 3] (if given)."""
        e, g = self.compute(nw, grad=grad_pc is not None, n_threads=n_threads)
        energy_n += e
        if grad_pc is not None:
            grad_pc += g

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """Plain data: ``{"tag": "ml potential", "ptag", "parameters": {"nn": layers as data, ...},
        "descriptors": [descriptor state dicts]}`` (tensors, lists, numbers and strings only)."""
        hist = self.parameters.get("descriptor_fidelity_histograms")
        parameters = {
            "nn": sequential_to_data(self.nn),
            "descriptor_fidelity_histograms": None if hist is None else torch.as_tensor(np.asarray(hist)),
        }
        if self.descriptor_range is not None:
            parameters["descriptor_range"] = self.descriptor_range.copy()
        if self.on_extrapolation != "ignore":
            parameters["on_extrapolation"] = self.on_extrapolation
        return {
            "tag": FAMILY_TAG,
            "ptag": self.tag,
            "parameters": parameters,
            "descriptors": [d.state_dict() for d in self.descriptors],
        }

    @classmethod
    def from_state_dict(cls, data):
        """Rebuild from :meth:`state_dict` output (never unpickles code)."""
        return ml_potential_family.instance_from_state_dict(data)


class NNPotentialFamily(LocalPotentialFamily):
    """The family of :class:`NNPotential` (tag ``"ml potential"``), listed in the family registry."""

    def __init__(self):
        super().__init__({"nn": None, "descriptor_fidelity_histograms": None}, 0.0, tag=FAMILY_TAG,
                         proto=NNPotential, parameter_defaults={"descriptor_fidelity_histograms": None},
                         coordination=1, doc="E_i = nn(descriptors_i)")

    def instantiate(self, *, tag=None, empty=None, descriptors=None, nn=None, descriptor_fidelity_histograms=None,
                    descriptor_range=None, on_extrapolation="ignore"):
        """``ml_potential_family(nn=..., descriptors=[...], tag="Si")``."""
        if descriptors is None or nn is None:
            raise ValueError("an ml potential needs nn=... and descriptors=[...]")
        return NNPotential(nn, descriptors, tag=tag, descriptor_fidelity_histograms=descriptor_fidelity_histograms,
                           simplify=False, descriptor_range=descriptor_range, on_extrapolation=on_extrapolation)

    __call__ = instantiate

    def instance_from_state_dict(self, data):
        """Rebuild an :class:`NNPotential` from its state dict."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        extra = set(data) - _STATE_KEYS
        if extra:
            raise ValueError(f"unknown keys in the state dict of an ml potential: {sorted(extra)}")
        if data.get("tag") != FAMILY_TAG:
            raise ValueError(f"data['tag'] must be {FAMILY_TAG!r}, got {data.get('tag')!r}")
        params = data.get("parameters")
        if not isinstance(params, dict) or "nn" not in params:
            raise ValueError("data['parameters'] must be a dict with an 'nn' entry")
        unknown = set(params) - _PARAMETERS
        if unknown:
            raise ValueError(f"unknown ml potential parameters: {sorted(unknown)}")
        nn = params["nn"]
        if isinstance(nn, dict) and "type" not in nn:
            raise ValueError("parameters['nn'] looks like a 0.1.4 torch state dict; rebuild the network and use "
                             "potentials_from_ml_data, or import the file with an explicit legacy loader")
        nn = sequential_from_data(nn)
        descriptors = [potential_from_state_dict(d) for d in data.get("descriptors", [])]
        hist = params.get("descriptor_fidelity_histograms")
        rng = params.get("descriptor_range")
        return NNPotential(nn, descriptors, tag=data.get("ptag"), simplify=False,
                           descriptor_fidelity_histograms=None if hist is None else np.asarray(hist),
                           descriptor_range=None if rng is None else np.asarray(rng),
                           on_extrapolation=params.get("on_extrapolation", "ignore"))


#: The family of NN potentials (listed in ``miniff.potentials.registry.BUILTIN_FAMILIES``).
ml_potential_family = NNPotentialFamily()


def descriptor_ranges(dataset, normalization=None):
    """Per species the range (min, max) of the raw descriptors of a dataset's real atoms.

    Parameters
    ----------
    dataset : Dataset
        Features ``[S, M, F]`` with masks ``[S, M]`` per species; normalised when ``normalization`` is given.
    normalization : Normalization, optional
        Maps the features back to raw descriptors (``bw_features``).

    Returns
    -------
    list of ndarray of shape (F, 2), or None for a species without atoms
    """
    out = []
    for k, d in enumerate(dataset.per_point_datasets):
        x = d.features
        if normalization is not None:
            x = normalization.bw_features(x, k)
        x = x.detach().to(torch.float64)[d.mask.to(torch.bool)].cpu().numpy()
        out.append(np.stack([x.min(axis=0), x.max(axis=0)], axis=1) if len(x) else None)
    return out


def potentials_from_ml_data(nn, descriptors, normalization=None, output="energy", descriptor_fidelity_histograms=None,
                            simplify=True, descriptor_range=None):
    """One :class:`NNPotential` per species from fitted networks.

    Parameters
    ----------
    nn : list of torch.nn.Module
        One network per species, in ``sorted(descriptors)`` order (the order of ``learn_cauldron`` datasets).
    descriptors : dict
        ``{species: [descriptor potentials]}``.
    normalization : Normalization, optional
        The normalisation the networks were trained with (folded into the potentials).
    output : {"energy", "charge"}
        What the networks were trained on: the normalisation of energies (eV) or of charges (e,
        :class:`~miniff.ml_util.ChargeFitWorkflow`) is folded into the potentials. A charge potential's per-atom
        "energy" is the atom's charge (e): wrap such potentials in ``ewald_charge_wrapper_potential_family``.
    descriptor_fidelity_histograms : list of ndarray, optional
        Per species ``[D, 2, bins + 1]`` (stored only).
    simplify : bool
        Fuse consecutive linear layers.
    descriptor_range : list of array of shape (F, 2), optional
        Per species the training range (min, max) of the raw descriptors (see :class:`NNPotential`).

    Returns
    -------
    list of NNPotential
    """
    if output not in ("energy", "charge"):
        raise ValueError(f"output must be 'energy' or 'charge', got {output!r}")
    if isinstance(nn, torch.nn.Module):
        nn = [nn]
    nn = list(nn)
    items = sorted(descriptors.items())
    if len(nn) != len(items):
        raise ValueError(f"nn has {len(nn)} networks but descriptors has {len(items)} species")
    if descriptor_fidelity_histograms is not None:
        if len(descriptor_fidelity_histograms) != len(items):
            raise ValueError("descriptor_fidelity_histograms must have one entry per species")
        for k, (h, (_, d)) in enumerate(zip(descriptor_fidelity_histograms, items, strict=True)):
            h = np.asarray(h)
            if h.ndim != 3 or h.shape[0] != len(d) or h.shape[1] != 2:
                raise ValueError(f"descriptor_fidelity_histograms[{k}] must have shape ({len(d)}, 2, bins + 1), "
                                 f"got {h.shape}")
    if descriptor_range is not None and len(descriptor_range) != len(items):
        raise ValueError(f"descriptor_range must have one entry per species ({len(items)}), got "
                         f"{len(descriptor_range)}")
    out = []
    for k, (module, (species, descs)) in enumerate(zip(nn, items, strict=True)):
        hist = None if descriptor_fidelity_histograms is None else descriptor_fidelity_histograms[k]
        out.append(NNPotential(module, descs, tag=species, normalization=normalization,
                               specimen=k if normalization is not None else None,
                               descriptor_fidelity_histograms=hist, simplify=simplify,
                               descriptor_range=None if descriptor_range is None else descriptor_range[k],
                               output=output))
    return out


def contract_pairs(nw, sel, g_ksf, jac_pfc, device=None, n_threads=None):
    """Per-pair gradients of K networks' energies from their descriptor derivatives, one pass over the Jacobian.

    ``grad_kpc[k, p] = g_ksf[k][row(i_p)] . jac_pfc[p]`` for the pairs whose centre atom ``i_p`` is selected
    (``row``: its position among the selected atoms), 0 for the others.  A committee contracts all its members
    at once: the Jacobian, the large operand, is read once for K members.

    Parameters
    ----------
    nw : NeighborWrapper
        Its pair list (``i_p``) is the one of ``jac_pfc``.
    sel : ndarray of shape (N,), bool
        The atoms of the networks' species.
    g_ksf : list of K torch.Tensor of shape (S, F), eV, or None
        ``d energy / d descriptors`` of the ``S = sel.sum()`` selected atoms (:meth:`NNPotential.network_terms`);
        None entries (no atom selected) give zeros.
    jac_pfc : ndarray of shape (P, F, 3)
        The descriptors' per-pair Jacobian, 1/Å.
    device : torch.device or None
        Where to contract (None: the compiled OpenMP pass on the CPU).
    n_threads : int or None
        OpenMP threads on the CPU (None: the default, serial for small pair lists).

    Returns
    -------
    grad_kpc : ndarray of shape (K, P, 3), float64, eV/Å
        C-contiguous.

    Raises
    ------
    ValueError
        When the shapes of ``g_ksf`` and ``jac_pfc`` do not match ``sel`` and the pair list.
    """
    n_pairs = nw.pairs.n_pairs
    k = len(g_ksf)
    if not sel.any() or any(g is None for g in g_ksf):
        return np.zeros((k, n_pairs, 3))
    i_p = np.asarray(nw.pairs.i_p, dtype=np.int64)
    n_sel = int(sel.sum())
    if n_sel == len(sel):
        rows_p = i_p
    else:
        pos_n = np.full(len(sel), -1, dtype=np.int64)
        pos_n[sel] = np.arange(n_sel)
        rows_p = pos_n[i_p]
    if any(tuple(g.shape) != (n_sel, jac_pfc.shape[1]) for g in g_ksf) or jac_pfc.shape != (n_pairs,
                                                                                             jac_pfc.shape[1], 3):
        raise ValueError(f"contract_pairs: g_ksf must be [{n_sel}, F] and jac_pfc [{n_pairs}, F, 3], got "
                         f"{[tuple(g.shape) for g in g_ksf]} and {jac_pfc.shape}")
    if device is None:
        # on the CPU, the compiled pass: pairs in parallel, each pair's [F, 3] block read once for all K
        g_rkf = np.ascontiguousarray(np.stack([g.detach().cpu().numpy() for g in g_ksf], axis=1),
                                     dtype=np.float64)
        grad_kpc = np.zeros((k, n_pairs, 3))
        _k.pair_contract(np.ascontiguousarray(rows_p), np.ascontiguousarray(jac_pfc, dtype=np.float64), g_rkf,
                         grad_kpc, auto_n_threads(n_threads, n_pairs * k))
        return grad_kpc
    # on the device, one copy of [P, F, 3] there
    keep = np.flatnonzero(rows_p >= 0)
    jac = torch.from_numpy(np.ascontiguousarray(jac_pfc[keep], dtype=np.float64)).to(device)
    g_rkf = torch.stack([g.detach() for g in g_ksf], dim=1).to(device)
    grad_pkc = np.zeros((n_pairs, k, 3))
    grad_pkc[keep] = torch.matmul(g_rkf[torch.from_numpy(rows_p[keep]).to(device)], jac).cpu().numpy()
    return np.ascontiguousarray(grad_pkc.transpose(1, 0, 2))
