"""The preparation steps of :meth:`FitWorkflow.prepare <miniff.fit.workflow.FitWorkflow.prepare>`.

:class:`FitPreparation` is the base of :class:`~miniff.fit.workflow.FitWorkflow`; ``prepare`` calls its steps
in this order, each reading the attributes set by the ones before::

    _fit_options       -> forces, stress                 (checks cuda / forces / w_gradients / stress / w_stress)
    _load_cells        -> cells, order                   (training cells, then any validation file)
    _make_descriptors  -> descriptors, cells_nw, cutoff  (given, loaded, RuNNer file or a recipe)
    _make_datasets     -> timings, cell_groups, cell_indices, normalization, datasets
    _datasets_to_device -> datasets                      (on ``context.device``, FitWorkflow only)
    _make_networks     -> nn, nn_kwargs                  (draws torch's global generator)
    _make_closure      -> closure, closure_kwargs

The fit state (epoch counter, best state, fingerprints, resume from a checkpoint) is set by
``FitWorkflow._start_fit``, next to the checkpoint code.
"""

import time
from pathlib import Path

import numpy as np
import torch

from miniff import units
from miniff.fit.base import Workflow
from miniff.fit.closures import simple_energy_closure
from miniff.fit.recipes import (
    LSP_DEFAULTS,
    behler_nn,
    default_behler_descriptors,
    default_behler_descriptors_3,
    default_lsp_descriptors,
)
from miniff.fit.recipes_weighted import default_chebyshev_descriptors, default_wacsf_descriptors
from miniff.fit.sharded import sharded_datasets
from miniff.ml.networks import init_output_range
from miniff.ml.single import single_nn_networks

__all__ = ["FitPreparation", "DEFAULT_CUTOFF", "DEFAULT_NN_KWARGS", "DEFAULT_RADIAL"]

#: Default descriptor cutoff of 0.1.4: 12 Bohr, in Å.
DEFAULT_CUTOFF = 12 * units.BOHR
#: Radial functions of the default descriptor set (:meth:`FitPreparation.init_default_descriptors`): ``n`` shifted
#: Gaussians per species pair, the first centred at ``left`` times the pair's shortest distance in the data;
#: measured in ``docs/fit-your-data.md`` (0.1.4: ``n`` = 6 Gaussians centred at 0, ``left`` = 1).
DEFAULT_RADIAL = {"n": 10, "left": 0.9, "shifted": True}
#: Force weight ``w_gradients`` (normalised units) of ``prepare(forces=True)`` when none is given; measured in
#: ``docs/fit-your-data.md``.
DEFAULT_FORCE_WEIGHT = 30.0
#: Optimizer settings of ``optimizer: "auto"`` (the default of ``FitWorkflow.prepare``: full-batch compact L-BFGS,
#: :class:`~miniff.fit.lbfgs.CompactLBFGS`, 100 curvature pairs): iterations per epoch (at most 125 loss
#: evaluations) and tolerances; measured in ``docs/fit-your-data.md``.
DEFAULT_OPTIMIZER_KWARGS = {"max_iter": 100, "tolerance_grad": 1e-12, "tolerance_change": 1e-14}
#: Stress weight ``w_stress`` of ``prepare(stress=True)`` when none is given (the stress term compares virials with
#: the energies, in normalised energy units, see :mod:`miniff.fit.closures`); measured in ``docs/fit-your-data.md``
#: (``examples/si_sw/elastic.py``: 0.01 improved the elastic constants and the held-out energies; 0.1 and 1 fitted
#: the stresses better at the cost of the forces).
DEFAULT_STRESS_WEIGHT = 0.01
#: Network settings of ``FitWorkflow.prepare`` under any ``nn_kwargs`` given (per-species Behler-Parrinello
#: networks; SingleNN keeps its own): 3 linear layers with 10 ``tanh`` units in each of the 2 hidden layers;
#: measured in ``docs/fit-your-data.md`` (tanh learnt faster than 0.1.4's sigmoid on every data set tried, and 10
#: units generalised better than 15 on the small Cu/Pt set).
DEFAULT_NN_KWARGS = {"n_internal": 10, "n_layers": 3, "activation": "tanh"}


class FitPreparation(Workflow):
    """The steps of :meth:`FitWorkflow.prepare <miniff.fit.workflow.FitWorkflow.prepare>` (see the module
    docstring); parameters are those of :class:`~miniff.fit.base.Workflow`."""

    def _fit_options(self, cuda, forces, learn_cauldron_kwargs, closure_kwargs, stress=None):
        """Check ``cuda``, the force and the stress options; set ``forces`` and ``stress`` (what is fitted).

        Reads the ``prepare`` arguments only.  Returns copies of ``learn_cauldron_kwargs`` and
        ``closure_kwargs`` completed by ``forces`` (``grad``, a default ``w_gradients`` of
        :data:`DEFAULT_FORCE_WEIGHT`) and ``stress`` (``stress``, a default ``w_stress`` of
        :data:`DEFAULT_STRESS_WEIGHT`; a non-zero ``w_stress`` alone also computes what stresses need).
        """
        if cuda not in (None, False, "auto"):
            raise ValueError(f"cuda: FitWorkflow trains on the CPU; use cuda=None/'auto'/False, got {cuda!r}")
        learn_cauldron_kwargs = dict(learn_cauldron_kwargs or {})
        closure_kwargs = dict(closure_kwargs or {})
        if forces is not None:
            learn_cauldron_kwargs.setdefault("grad", bool(forces))
            if forces:
                closure_kwargs.setdefault("w_gradients", DEFAULT_FORCE_WEIGHT)
            elif closure_kwargs.get("w_gradients", 0) != 0:
                raise ValueError("closure_kwargs: w_gradients != 0 but forces=False")
        grad = bool(learn_cauldron_kwargs.get("grad", False))
        if closure_kwargs.get("w_gradients", 0) != 0 and not grad:
            raise ValueError("closure_kwargs: w_gradients != 0 needs forces (learn_cauldron_kwargs grad=True)")
        self.forces = grad and closure_kwargs.get("w_gradients", 0) != 0
        if stress is not None and not isinstance(stress, bool):
            raise TypeError(f"stress must be true, false or None, got {type(stress).__name__}")
        if stress:
            closure_kwargs.setdefault("w_stress", DEFAULT_STRESS_WEIGHT)
        elif stress is False and closure_kwargs.get("w_stress", 0) != 0:
            raise ValueError("closure_kwargs: w_stress != 0 but stress=False")
        self.stress = closure_kwargs.get("w_stress", 0) != 0
        if self.stress:
            learn_cauldron_kwargs["stress"] = True
        return learn_cauldron_kwargs, closure_kwargs

    def _load_cells(self, fn_cells, fn_cells_root, cells_order, cells_subset, cells_append, cells_index,
                    cells_selection, test_set, split_seed, cells_group_key=None):
        """Load, order and cut the training cells, then append the validation cells of a ``test_set`` file.

        Reads ``forces`` (missing forces warn only when they are fitted).  Sets ``cells`` (training cells
        first, validation cells last), ``order`` (the permutation applied; draws its own generator seeded
        with ``split_seed``) and resets ``cells_nw``.  Returns ``(n, n_test)``: the number of cells and of
        validation cells among them.
        """
        # energy-only fits do not need forces: no warning for data sets that have none
        self.load_cells(fn_cells, root=fn_cells_root, append=cells_append, index=cells_index,
                        selection=cells_selection, group_key=cells_group_key, warn_missing_targets=self.forces)
        if cells_order is not None:
            self.order = self.reorder_cells(cells_order, seed=split_seed)
        else:
            self.order = np.arange(len(self.cells))
        if cells_subset is not None:
            self.subset_cells(cells_subset)
            self.order = self.order[:cells_subset]
        if isinstance(test_set, (str, Path)):
            n_learn = len(self.cells)
            self.load_cells(str(test_set), root=fn_cells_root, append=True, index=cells_index,
                            group_key=cells_group_key, warn_missing_targets=self.forces)
            n = len(self.cells)
            n_test = n - n_learn
        else:
            n = len(self.cells)
            n_test = self._test_count(test_set, n)
        return n, n_test

    @staticmethod
    def _test_count(test_set, n):
        """The number of validation cells of a fraction or count ``test_set`` among ``n`` cells."""
        if isinstance(test_set, bool):
            raise TypeError("test_set must be a float fraction or an integer count, got a bool")
        if isinstance(test_set, (float, np.floating)):
            if not 0 <= test_set < 1:
                raise ValueError(f"test_set (a fraction) must be in [0, 1), got {test_set}")
            k = int(round(n * test_set))
        elif isinstance(test_set, (int, np.integer)):
            k = int(test_set)
        else:
            raise TypeError(f"test_set must be a float fraction or an integer count, got {type(test_set).__name__}")
        if not 0 <= k < n:
            raise ValueError(f"test_set leaves no training cells ({k} of {n} for validation)")
        return k

    def _make_descriptors(self, descriptors, load, descriptor_recipe, cutoff, default_descriptor_kwargs, nw_kwargs):
        """Choose the descriptors and make sure the neighbour lists reach their largest cutoff.

        Reads ``cells`` (and ``cells_nw``, ``cutoff``).  ``descriptors``: a dict, a RuNNer ``input.nn`` file,
        or None for the ``descriptor_recipe``; ``load`` (a potentials file) replaces them by the file's.
        Sets ``descriptors`` (``{species: [...]}``, sorted by species) and, when needed, ``cells_nw`` and
        ``cutoff`` (:meth:`~miniff.fit.base.Workflow.compute_neighbors`).
        """
        if load is not None:
            from miniff.ml.serialize import load_potentials

            loaded = load_potentials(load)
            bad = [k for k, p in enumerate(loaded) if not hasattr(p, "descriptors")]
            if bad:
                raise ValueError(f"load: entries {bad} of {str(load)!r} are not NN potentials")
            descriptors = {p.tag: list(p.descriptors) for p in loaded}
        if descriptor_recipe not in ("behler", "lsp", "wacsf", "chebyshev"):
            raise ValueError(f"descriptor_recipe must be 'behler', 'lsp', 'wacsf' or 'chebyshev', got "
                             f"{descriptor_recipe!r}")
        if descriptors is None and descriptor_recipe == "wacsf":
            cutoff = DEFAULT_CUTOFF if cutoff is None else float(cutoff)
            descriptors = default_wacsf_descriptors(self.compute_neighbors(cutoff, nw_kwargs), a=cutoff,
                                                    **(default_descriptor_kwargs or {}))
        elif descriptors is None and descriptor_recipe == "chebyshev":
            cutoff = DEFAULT_CUTOFF if cutoff is None else float(cutoff)
            species = sorted({str(s) for c in self.cells for s in np.asarray(c.values)})
            descriptors = default_chebyshev_descriptors(species, a=cutoff, **(default_descriptor_kwargs or {}))
        elif descriptors is None and descriptor_recipe == "lsp":
            cutoff = LSP_DEFAULTS["a"] if cutoff is None else float(cutoff)
            species = sorted({str(s) for c in self.cells for s in np.asarray(c.values)})
            descriptors = default_lsp_descriptors(species, a=cutoff, **(default_descriptor_kwargs or {}))
        elif descriptors is None:
            cutoff = DEFAULT_CUTOFF if cutoff is None else float(cutoff)
            descriptors = self.init_default_descriptors(a=cutoff, nw_kwargs=nw_kwargs,
                                                        **(default_descriptor_kwargs or {}))
        elif isinstance(descriptors, (str, Path)):
            from miniff.fit.parsers import group_by_species, parse_runner_input

            descriptors = group_by_species(parse_runner_input(descriptors, strict=False))
        elif not isinstance(descriptors, dict):
            raise TypeError(f"descriptors must be a dict {{species: [descriptors]}} or a RuNNer input file, "
                            f"got {type(descriptors).__name__}")
        self.descriptors = {k: list(v) for k, v in sorted(descriptors.items())}
        cutoff = max(d.cutoff for v in self.descriptors.values() for d in v)
        if self.cells_nw is None or self.cutoff is None or self.cutoff < cutoff:
            shard = getattr(self, "shard", None)   # across ranks: the lists of this rank's cells only
            self.compute_neighbors(cutoff, nw_kwargs, None if shard is None else shard["cells"])

    def init_default_descriptors(self, a=DEFAULT_CUTOFF, n=DEFAULT_RADIAL["n"], left=DEFAULT_RADIAL["left"],
                                 common_eta=True, three_point=True, three_point_family=4, zeta=(1, 2, 4, 16),
                                 eta3=(0.0, 0.3), eta=None, nw_kwargs=None, shifted=DEFAULT_RADIAL["shifted"]):
        """The default descriptor set: radial Behler-2 per pair (+ angular Behler-4/5 per triple), Å and 1/Å².

        The radial functions are :data:`DEFAULT_RADIAL`: ``n`` = 10 shifted Gaussians per species pair, centred
        evenly from ``left`` = 0.9 times the shortest distance of the pair in the data towards the cutoff, each
        as wide as their spacing (:func:`~miniff.fit.recipes.shifted_grid`); ``shifted=False`` gives 0.1.4's
        Gaussians centred at 0 with turning points between ``left * d_min`` and ``a / 2`` (0.1.4: ``n`` = 6,
        ``left`` = 1).  The shifted functions cut the held-out force errors of the default fits by 2 to 3 times
        on silicon and Cu/Pt data (measured in ``docs/fit-your-data.md``).
        The angular functions come with two widths ``eta3`` (0 and 0.3 1/Å²): the second one resolves the first
        neighbour shell, which halved the force errors of fits to silicon and Cu/Pt data (0.1.4 used 0 only).

        ``eta`` (1/Å²): explicit radial widths centred at 0 instead of the grid of ``n`` functions (``shifted``
        is then ignored; see :func:`~miniff.ml_util.default_behler_descriptors`)."""
        wrappers = self.compute_neighbors(a, nw_kwargs)
        if eta is not None:
            n, shifted = len(eta), False
        out = default_behler_descriptors(wrappers, n=n, a=a, left=left, common_eta=common_eta, eta=eta,
                                         shifted=shifted)
        species = sorted({str(s) for c in self.cells for s in np.asarray(c.values)})
        for s in species:
            out.setdefault(s, [])
        if three_point:
            extra = default_behler_descriptors_3(species, a=a, eta=eta3, zeta=tuple(zeta), family=three_point_family)
            for s, v in extra.items():
                out[s].extend(v)
        return out

    def _make_datasets(self, n, n_test, learn_cauldron_kwargs, normalization_kwargs):
        """Compute the descriptors of all cells, split them and normalise with the learning set.

        Reads ``cells_nw``, ``descriptors``, ``dtype``, ``n_threads`` and the cells' group labels; ``n`` and
        ``n_test`` come from :meth:`_load_cells`.  Sets ``timings``, ``cell_groups``, ``cell_indices``,
        ``normalization`` and ``datasets`` (normalised).  Returns the raw (unnormalised) split
        ``{"learn": ..., "test": ...}`` (no ``"test"`` without validation cells).
        """
        from miniff import ml

        if getattr(self, "shard", None) is not None:   # across ranks: this rank's shard (miniff.fit.sharded)
            return sharded_datasets(self, n, n_test, learn_cauldron_kwargs, normalization_kwargs)
        t0 = time.perf_counter()
        learn_cauldron_kwargs.update(normalize=False, dtype=self.dtype)
        learn_cauldron_kwargs.setdefault("n_threads", self.n_threads)
        full = ml.learn_cauldron(self.cells_nw, self.descriptors, **learn_cauldron_kwargs)
        raw = self._split_dataset(full, n, n_test, time.perf_counter() - t0)

        norm_kwargs = {"offset_energy": True}
        norm_kwargs.update(normalization_kwargs or {})
        self.normalization = ml.Normalization.from_dataset(raw["learn"], **norm_kwargs)
        self.datasets = {k: self.normalization.fw(v) for k, v in raw.items()}
        return raw

    @property
    def device(self):
        """The ``torch.device`` of the networks, the datasets and the loss (the CPU unless ``prepare`` got
        another ``device``)."""
        context = getattr(self, "context", None)
        return torch.device("cpu") if context is None else context.device

    def _datasets_to_device(self):
        """Move the (normalised) datasets to :attr:`device`, once (nothing on the CPU)."""
        from miniff.fit.distributed import batch_to_device

        self.datasets = {k: batch_to_device(v, self.device) for k, v in self.datasets.items()}

    def _split_dataset(self, full, n, n_test, seconds, n_cells=None):
        """Record the descriptor time (``seconds``) and split ``full`` (``n`` structures, the last ``n_test`` held
        out) into ``{"learn": ..., "test": ...}``; set the group labels and cell indices of both parts and
        ``n_cells`` (``{"learn": count, "test": count}``).  ``n_cells``: ``(cells, held out)`` of the whole split
        when ``full`` is one rank's shard of it (``"test"`` is then present, maybe empty, when any cell is held
        out); default ``(n, n_test)``."""
        n_all, n_test_all = (n, n_test) if n_cells is None else n_cells
        self.timings = {"descriptors": seconds}
        self.log.info("descriptors of %d cells in %.2f s", n_all, seconds)
        idx = torch.arange(n)
        raw = {"learn": full.subset(idx[:n - n_test])}
        if n_test_all:
            raw["test"] = full.subset(idx[n - n_test:])
        labels = self.groups()
        n_learn = n_all - n_test_all
        self.cell_groups = None if labels is None else {"learn": labels[:n_learn], "test": labels[n_learn:]}
        self.cell_indices = {"learn": list(range(n_learn)), "test": list(range(n_learn, n_all))}
        self.n_cells = {"learn": n_learn, **({"test": n_test_all} if n_test_all else {})}
        self.descriptor_range = None   # from the learning set when the potentials are built (shards: reduced)
        return raw

    def _make_networks(self, nn_kwargs, defaults=None):
        """Build one network per species (sorted species order), initialised from torch's global generator; with
        ``nn_kwargs["single"]``, one SingleNN (``embedding``: ``"one-hot"`` or a learned size; ``species_output``)
        seen through one view per species.  ``defaults`` (e.g. :data:`DEFAULT_NN_KWARGS`) complete the
        ``nn_kwargs`` of per-species networks.

        Reads ``descriptors``, ``dtype`` and, for bounded outputs, ``datasets["learn"]``.  Sets ``nn``.
        """
        nn_kwargs = dict(nn_kwargs or {})
        if defaults and not nn_kwargs.get("single", False):
            nn_kwargs = {**defaults, **nn_kwargs}
        self.nn_kwargs = dict(nn_kwargs)  # kept for the members of a committee (fit/committee_fit.py)
        if nn_kwargs.pop("single", False):  # SingleNN: one network, one view per species sharing its tensors
            self.nn = [v.to(self.dtype) for v in single_nn_networks(self.descriptors, **nn_kwargs)]
        else:
            for key in ("embedding", "species_output"):
                if key in nn_kwargs:
                    raise ValueError(f"nn_kwargs: {key} is an option of SingleNN; add single: true")
            self.nn = [behler_nn(len(self.descriptors[s]), **nn_kwargs).to(self.dtype) for s in self.descriptors]
        for net in self.nn:
            net.to(device=self.device)
        if nn_kwargs.get("output_activation"):
            self._init_output_ranges()

    def _init_output_ranges(self):
        """Amp's initial output scaling: every network's bounded output spans the range of the (normalised)
        learning-set energies per atom."""
        ds = self.datasets["learn"]
        per_atom = ds.per_cell_dataset.energy[:, 0] / ds.atom_counts().sum(dim=1).clamp(min=1)
        low, high = float(per_atom.min()), float(per_atom.max())
        if getattr(self, "shard", None) is not None:   # the range over every rank's shard
            low, high = (float(x) for x in self.context.all_max([-low, high]) * np.array([-1, 1]))
        if not high > low:
            low, high = low - 0.5, high + 0.5
        for net in self.nn:
            init_output_range(getattr(net, "body", net), low, high)  # SingleNN views: the shared body

    def _default_optimizer(self, closure_kwargs):
        """Resolve ``optimizer: "auto"`` (the default): ``compact_lbfgs`` with the :data:`DEFAULT_OPTIMIZER_KWARGS`
        under any ``optimizer_kwargs`` given.  Other optimizers are left as they are."""
        closure_kwargs = dict(closure_kwargs)
        optimizer = closure_kwargs.get("optimizer", "auto")
        if isinstance(optimizer, str) and optimizer.lower() == "auto":
            optimizer = "compact_lbfgs"
            kwargs = dict(DEFAULT_OPTIMIZER_KWARGS)
            kwargs.update(closure_kwargs.get("optimizer_kwargs") or {})
            closure_kwargs["optimizer_kwargs"] = kwargs
        closure_kwargs["optimizer"] = optimizer
        return closure_kwargs

    def _make_closure(self, closure_kwargs, group_weights):
        """Build the loss closure (and optimizer) of the networks on the learning set.

        Reads ``nn``, ``datasets["learn"]``, ``normalization`` and ``cell_groups`` (``group_weights`` become
        per-structure ``weights``).  Sets ``closure``.
        """
        weights = None
        if group_weights:
            if self.cell_groups is None:
                raise ValueError("group_weights: the cells carry no meta['group'] labels")
            labels = self.cell_groups["learn"] + self.cell_groups["test"]
            unknown = set(group_weights) - set(labels)
            if unknown:
                raise KeyError(f"group_weights: no cells in groups {sorted(unknown)}; groups: {sorted(set(labels))}")
            weights = [float(group_weights.get(g, 1.0)) for g in self.cell_groups["learn"]]
            if getattr(self, "shard", None) is not None:   # this rank's shard of the learning set
                weights = [weights[i] for i in self.shard["learn"]]
        closure_kwargs.setdefault("weights", weights)
        closure_kwargs = self._default_optimizer(closure_kwargs)
        self.closure_kwargs = closure_kwargs   # kept for the members of a committee (fit/committee_fit.py)
        self.closure = simple_energy_closure(self.nn, self.datasets["learn"], normalization=self.normalization,
                                             **closure_kwargs)
