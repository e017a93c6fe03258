"""``FitWorkflow``: fit Behler-Parrinello NN potentials to energies (and forces) of cells.

Life cycle: ``FitWorkflow(**init)`` -> ``prepare(**prepare)`` (cells, descriptors, datasets, split,
normalisation, networks, closure; resumes from a checkpoint when one exists) -> ``run(**run)`` (epochs of
optimizer steps with per-epoch metrics, a JSON Lines log, a progress bar, early stopping, convergence
criteria and atomic checkpoints) -> ``save_potentials``.
"""

import copy
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from miniff.fit.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    check_fit_checkpoint,
    descriptor_fingerprint,
    load_checkpoint,
    remove_stale_temporaries,
)
from miniff.fit.closures import error_metrics
from miniff.fit.committee_fit import (
    committee_options,
    committee_potentials,
    committee_predict,
    committee_summary,
    run_committee,
)
from miniff.fit.compat import warn_ignored
from miniff.fit.distributed import fit_torch_threads, join_ranks, shard_closure, state_to_cpu
from miniff.fit.distributed import is_main as _is_main
from miniff.fit.log import FitLog
from miniff.fit.metrics import network_predictions
from miniff.fit.monitor import STALL_EPOCHS, STALL_TOLERANCE, FitMonitor
from miniff.fit.prepare import DEFAULT_CUTOFF, DEFAULT_NN_KWARGS, FitPreparation
from miniff.fit.sharded import join_shards, sharded_metrics, sharded_predictions
from miniff.fit.summary import progress_postfix

__all__ = ["FitWorkflow", "DEFAULT_CUTOFF"]

#: ``stop_reason`` values of an optimizer (:class:`~miniff.ml_util.CompactLBFGS`) after which further epochs
#: cannot make progress: the fit stops with ``stop_reason = "optimizer: <reason>"``.  A failed line search is
#: not final: :class:`~miniff.fit.monitor.FitMonitor` drops the optimizer's history and goes on.
OPTIMIZER_FINAL_STOPS = ("tolerance_grad", "tolerance_change")


class FitWorkflow(FitPreparation):
    """Fit one NN potential per species to reference energies (and forces); see the module docstring.

    Parameters are those of :class:`~miniff.fit.base.Workflow`; the steps of :meth:`prepare` are methods of
    :class:`~miniff.fit.prepare.FitPreparation`.  Fields after :meth:`prepare`:
    ``descriptors`` (``{species: [...]}``), ``datasets`` (``{"learn": ..., "test": ...}``, normalised),
    ``normalization``, ``nn`` (list of networks, sorted species order), ``closure``, ``epoch`` (epochs done),
    ``history`` (list of per-epoch records), ``groups`` (``{"learn": [...], "test": [...]}`` or None).
    """

    default_tag = "fit"

    def prepare(self, fn_cells, fn_cells_root=None, cells_order="random", cells_subset=None, cells_append=False,
                cells_index=":", cells_selection=None, cells_group_key=None, descriptors=None, cutoff=None,
                default_descriptor_kwargs=None,
                descriptor_recipe="behler", nw_kwargs=None, learn_cauldron_kwargs=None, normalization_kwargs=None,
                test_set=0.1, split_seed=0,
                nn_kwargs=None, closure_kwargs=None, forces=None, group_weights=None, checkpoint=None, resume=True,
                load=None, parallel=False, cuda=None, plot_kwargs=None, committee=None, stress=None, device="cpu"):
        """Load cells, compute descriptors and datasets, split, normalise, build networks and the closure.

        Parameters
        ----------
        fn_cells : str, Path, Cell, ase.Atoms, list or dict
            Training cells, in any mix: ASE-readable files, ``*.db`` databases or ``postgresql://`` URLs, 0.1.4
            cells JSON (glob patterns allowed), ``Cell`` or ``ase.Atoms`` objects and lists of them; a dict
            ``{group label: sources}`` labels the structures that have no ``group`` of their own (see
            :meth:`~miniff.fit.base.Workflow.load_cells`).  Structures without forces are energy-only data in a
            force fit; NaN or infinite references are errors naming the structure.
        fn_cells_root : str or None
            Folder the patterns are relative to.
        cells_order : "random", None or list
            Shuffle the cells (with ``split_seed``) before splitting, keep the order (None), or a permutation.
        cells_subset : int or None
            Keep only the first n cells (after ordering).
        cells_append : bool
            Append to cells already loaded.
        cells_index, cells_selection, cells_group_key
            ``index``, ``selection`` and ``group_key`` of :func:`miniff.io.read_cells` (a database selection
            such as ``"natoms<50,config_type=bulk"``; the key whose value labels each structure's group).
        descriptors : dict, str or None
            ``{species: [descriptor potentials]}``, or a RuNNer ``input.nn`` file (its ``symfunction_short``
            lines); default: the Behler recipes (radial + angular).
        cutoff : float or None
            Descriptor cutoff for the default recipes, Å (default 12 Bohr = 6.35 Å for ``"behler"``,
            ``"wacsf"`` and ``"chebyshev"``, 4.5 Å for ``"lsp"``).
        default_descriptor_kwargs : dict or None
            Arguments of the recipe. ``"behler"``: ``n`` (radial per pair, 6), ``left`` (1), ``eta`` (explicit
            radial widths, 1/Å², instead of ``n`` and ``left``), ``three_point`` (True), ``three_point_family`` (4),
            ``zeta`` ((1, 2, 4, 16)), ``eta3`` (angular widths, (0, 0.3) 1/Å²).
            ``"lsp"``: ``h``, ``r0``, ``sigma``, ``orders``, ``asinh`` of
            :func:`~miniff.ml_util.default_lsp_descriptors`. ``"wacsf"``: the arguments of
            :func:`~miniff.ml_util.default_wacsf_descriptors` (``n``, ``left``, ``eta``, ``eta3``, ``zeta``,
            ``weights``, ``angular``). ``"chebyshev"``: those of
            :func:`~miniff.ml_util.default_chebyshev_descriptors` (``radial_order``, ``angular_order``,
            ``angular_cutoff``, ``spins``).
        descriptor_recipe : {"behler", "lsp", "wacsf", "chebyshev"}
            The default descriptors when ``descriptors`` is None: Behler radial + angular functions,
            PyFit-FF's local structural parameters (asinh-scaled Gaussian x Legendre), or element-weighted
            radial + angular functions (wACSF: a count per species independent of the number of elements), or
            aenet's Chebyshev set with type spins (also independent of the number of elements).
        nw_kwargs : dict or None
            Extra arguments of ``NeighborWrapper``.
        learn_cauldron_kwargs : dict or None
            Extra arguments of ``ml.learn_cauldron`` (``grad=True`` fits forces).
        normalization_kwargs : dict or None
            Arguments of ``ml.Normalization.from_dataset`` (default ``offset_energy=True``).
        test_set : float, int or str
            Validation share: a fraction (float) or a count (int) of the (shuffled) cells, taken from the end;
            or a file / glob pattern of separate validation cells.
        split_seed : int
            Seed of the random cell order, hence of the train/validation split.
        nn_kwargs : dict or None
            Arguments of :func:`~miniff.ml_util.behler_nn` (``n_internal``, ``n_layers``, ``activation``, ``init``,
            ``output_activation``: the bounded outputs then start spanning the learning set's energies per atom),
            completing :data:`~miniff.fit.prepare.DEFAULT_NN_KWARGS` (2 hidden layers of 10 ``tanh`` units).
        closure_kwargs : dict or None
            Arguments of :func:`~miniff.ml_util.simple_energy_closure` (``optimizer``, ``optimizer_kwargs``,
            ``w_energy``, ``w_gradients``, ``per_atom``, ``convergence``...).  The default ``optimizer`` is
            ``"auto"``: :class:`~miniff.ml_util.CompactLBFGS` with
            :data:`~miniff.fit.prepare.DEFAULT_OPTIMIZER_KWARGS` (100 iterations per epoch) under any
            ``optimizer_kwargs`` given.
        forces : bool or None
            Fit forces (sets ``learn_cauldron_kwargs["grad"]`` and a default ``w_gradients`` of
            :data:`~miniff.fit.prepare.DEFAULT_FORCE_WEIGHT` = 30); None: decided by
            ``learn_cauldron_kwargs``/``closure_kwargs``.
        stress : bool or None
            Fit stresses (``meta["stress"]``, eV/Å³; structures without one do not contribute) with a default
            ``w_stress`` of :data:`~miniff.fit.prepare.DEFAULT_STRESS_WEIGHT` = 0.01; None: when
            ``closure_kwargs`` has a non-zero ``w_stress``.  The summary then reports stress RMSEs.
        group_weights : dict or None
            ``{group label: weight}`` per-structure weights by ``meta["group"]`` (others 1).
        checkpoint : str or None
            Checkpoint file; when it exists and ``resume``, the fit continues from it.
        resume : bool
            Resume from an existing checkpoint.
        load : str or None
            A saved NN potentials file whose descriptors are reused (the networks start afresh: to continue a
            fit, use ``checkpoint``).
        parallel, plot_kwargs
            Accepted for 0.1.4 job files (descriptors always use the OpenMP kernels; no live plots).
            Ignored: a value other than the default emits a DeprecationWarning.
        cuda : None, False or "auto"
            Accepted for 0.1.4 job files; training runs on the CPU (anything else is a ValueError;
            ``"auto"`` emits a DeprecationWarning).
        committee : None, int or dict
            Fit a committee of K members sharing descriptors, datasets and normalisation: K, or ``{members: K,
            seeds: [...], bootstrap: false, processes: "auto", warm_start: null}`` (see
            :mod:`miniff.fit.committee_fit`); ``run`` then fits every member and saves one file of
            :class:`~miniff.ml.CommitteePotential` entries.
        device : str or torch.device
            Where the networks, the loss and the Jacobian contraction run: ``"cpu"`` (default), ``"cuda"`` (the
            GPU of this rank), ``"cuda:N"`` or ``"auto"`` (a GPU when torch sees one); the descriptors are
            computed on the CPU and moved once.  ``"cuda"`` without a GPU is a ``ValueError``.  Checkpoints and
            saved potentials hold CPU tensors whatever the device.
        """
        learn_cauldron_kwargs, closure_kwargs = self._fit_options(cuda, forces, learn_cauldron_kwargs, closure_kwargs,
                                                                  stress)
        warn_ignored("FitWorkflow.prepare", parallel=parallel, cuda=cuda, plot_kwargs=plot_kwargs)
        join_ranks(self, device)   # under torchrun: each rank fits on its shard (miniff.fit.distributed)
        n, n_test = self._load_cells(fn_cells, fn_cells_root, cells_order, cells_subset, cells_append, cells_index,
                                     cells_selection, test_set, split_seed, cells_group_key)
        self.shard = join_shards(self.context, n, n_test, committee)   # None with one rank
        self._make_descriptors(descriptors, load, descriptor_recipe, cutoff, default_descriptor_kwargs, nw_kwargs)
        raw = self._make_datasets(n, n_test, learn_cauldron_kwargs, normalization_kwargs)
        self._datasets_to_device()
        self._make_networks(nn_kwargs, defaults=DEFAULT_NN_KWARGS)
        self._make_closure(closure_kwargs, group_weights)
        if self.context.distributed:
            self.closure = shard_closure(self.closure, self.context)
        self.committee, self.members, self.resume = committee_options(committee, self.seed), None, resume
        self._start_fit(checkpoint, resume and self.committee is None, raw)
        return self

    # ------------------------------------------------------------------ checkpoints
    def _start_fit(self, checkpoint, resume, raw):
        """The last step of :meth:`prepare`: a fresh fit state, then a resume from ``checkpoint`` if it exists.

        Reads ``descriptors`` and ``raw`` (the unnormalised split of :meth:`_make_datasets`, for the split
        fingerprint).  Sets ``epoch``, ``wall_time``, ``history``, ``best``, ``stale_epochs``,
        ``checkpoint_path``, ``resumed_from`` and the fingerprints a checkpoint is checked against; with
        ``resume`` and an existing checkpoint, :meth:`load_checkpoint` then restores the saved state.
        """
        self.epoch = 0
        self.wall_time = 0.0
        self.history = []
        self.best = None
        self.stale_epochs = 0
        self.checkpoint_path = None if checkpoint is None else Path(checkpoint)
        self._fingerprint = descriptor_fingerprint(self.descriptors)
        self._split_fingerprint = self._split_key(raw)
        self.resumed_from = None
        self.losses = None  # stale after a new prepare: recomputed on access
        if self.checkpoint_path is not None:
            remove_stale_temporaries(self.checkpoint_path)  # left by a run killed while writing
        if self.checkpoint_path is not None and resume and self.checkpoint_path.exists():
            self.load_checkpoint(self.checkpoint_path)

    @staticmethod
    def _split_key(raw):
        """A hash of the reference values of the split ``{"learn": Dataset, "test": Dataset}`` (or their raw energies
        ``[S, 1]``, the split of several ranks) that checkpoints are checked against."""
        energy = {k: getattr(v, "per_cell_dataset", None) for k, v in raw.items()}
        return hashlib.sha256(json.dumps({k: np.round((raw[k] if e is None else e.energy).double().numpy().ravel(),
                                                      8).tolist() for k, e in energy.items()}).encode()).hexdigest()

    def checkpoint_state(self):
        """The plain-data checkpoint of the fit (networks, optimizer, epoch, best state, RNG, metadata)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "wall_time": self.wall_time,
            "networks": [state_to_cpu(n.state_dict()) for n in self.nn],
            "optimizer": state_to_cpu(self.closure.optimizer.state_dict()),
            "optimizer_class": type(self.closure.optimizer).__name__,
            "normalization": self.normalization.state_dict(),
            "best": None if self.best is None else dict(self.best),
            "stale_epochs": self.stale_epochs,
            "descriptors": self._fingerprint,
            "n_cells": dict(self.n_cells),
            "split": self._split_fingerprint,
            "torch_rng": torch.get_rng_state(),
            "history": [dict(r) for r in self.history],
        }

    def save_checkpoint(self, path=None):
        """Write the checkpoint atomically to ``path`` (default: the ``checkpoint`` of :meth:`prepare`)."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("path: no checkpoint file given (prepare(checkpoint=...))")
        if not _is_main(self):
            return path   # only rank 0 writes
        atomic_torch_save(self.checkpoint_state(), path)
        return path

    def load_checkpoint(self, path):
        """Restore networks, optimizer state, epoch counter and best state from a checkpoint."""
        data = load_checkpoint(path)
        check_fit_checkpoint(data, path)
        if data["descriptors"] != self._fingerprint:
            raise ValueError(f"checkpoint: {str(path)!r} was written with different descriptors; delete it or "
                             f"set resume: false")
        if data["n_cells"] != self.n_cells or data["split"] != self._split_fingerprint:
            raise ValueError(f"checkpoint: {str(path)!r} was written for a different data split "
                             f"{data['n_cells']}; delete it or set resume: false")
        if data["optimizer_class"] != type(self.closure.optimizer).__name__:
            raise ValueError(f"checkpoint: {str(path)!r} holds a {data['optimizer_class']} state but the closure "
                             f"uses {type(self.closure.optimizer).__name__}")
        for net, state in zip(self.nn, data["networks"], strict=True):
            net.load_state_dict(state)
        self.normalization.load_state_dict(data["normalization"])
        self.closure.optimizer_init()
        self.closure.optimizer.load_state_dict(data["optimizer"])
        self.epoch = int(data["epoch"])
        self.wall_time = float(data["wall_time"])
        self.best = data["best"]
        if self.best is not None and "value" not in self.best:   # written before select_best existed
            self.best.update(value=self.best["loss"], criterion="loss")
        self.stale_epochs = int(data["stale_epochs"])
        self.history = list(data["history"])
        torch.set_rng_state(data["torch_rng"])
        self.resumed_from = self.epoch
        self.log.info("resumed from %s at epoch %d", path, self.epoch)

    # ------------------------------------------------------------------ metrics
    def metrics(self, name="learn"):
        """Error metrics (eV/atom, eV/Å) of the networks on dataset ``name`` (with per-group entries)."""
        if getattr(self, "shard", None) is not None:   # reduced over the ranks
            return sharded_metrics(self, name)
        groups = None if self.cell_groups is None else self.cell_groups[name]
        return error_metrics(self.nn, self.datasets[name], self.normalization, forces=self.forces, groups=groups,
                             stress=getattr(self, "stress", False))

    @property
    def losses(self):
        """``{dataset name: loss result}`` (as in 0.1.4; each has ``loss_value``, a 0-d tensor) at the current
        networks: computed on first access after :meth:`prepare`, refreshed every epoch by :meth:`update_loss`;
        ``{}`` before :meth:`prepare`."""
        if self.__dict__.get("_losses") is None:
            if not hasattr(self, "closure"):
                return {}
            self.update_loss()
        return self._losses

    @losses.setter
    def losses(self, value):
        self._losses = value

    def update_loss(self):
        """Losses of every dataset: ``{name: loss_result}`` (stored in ``self.losses``)."""
        from miniff.fit.closures import energy_loss

        self.losses = {}
        with torch.no_grad():
            for k, v in self.datasets.items():
                if k == "learn" or getattr(self, "shard", None) is not None:   # shards: summed over the ranks
                    self.losses[k] = self.closure.loss(v)
                else:
                    kw = dict(self.closure.loss_function_kwargs, weights=None)
                    self.losses[k] = energy_loss(self.nn, v, self.closure.criterion, **kw)
        return self.losses

    def _record(self):
        losses = self.update_loss()
        rec = {"epoch": self.epoch, "time": round(self.wall_time, 4), "lr": self.closure.learning_rate}
        for name, suffix in (("learn", ""), ("test", "_valid")):
            if name not in self.datasets:
                continue
            rec["loss" + suffix] = float(losses[name].loss_value.detach())
            m = self.metrics(name)
            for k, v in m.items():
                if k.startswith("group_"):
                    if name == "test" or "test" not in self.datasets:
                        rec[k] = v
                else:
                    rec[k + suffix] = v
        return rec

    # ------------------------------------------------------------------ run
    def run(self, n_epochs=100, epoch_size=1, cleanup_optimizer=False, save=None, save_fn=None,
            checkpoint_every=10, log_file=None, early_stopping=None, restore_best=True, progress=None,
            after_epoch=None, save_policy=None, plot_kwargs=None, torch_threads="auto", select_best="loss",
            stall_epochs=STALL_EPOCHS, stall_tolerance=STALL_TOLERANCE, summary=True):
        """Optimise for up to ``n_epochs`` epochs (counting epochs done before a resume).

        Parameters
        ----------
        n_epochs : int
            Total number of epochs of the fit (a resumed fit runs the remaining ones).
        epoch_size : int
            Optimizer steps per epoch (an LBFGS step is up to ``max_iter`` iterations).
        cleanup_optimizer : bool
            Re-create the optimizer (dropping its state) at every epoch, as 0.1.4 did by default.
        save : bool or None
            Save the potentials at the end (to ``save_fn``); None: save when ``save_fn`` is given.
        save_fn : str or None
            Potentials file (default ``"{tag}.pt"``); ``{tag}`` is replaced by ``"learn"`` (0.1.4's ``learn.pt``).
        checkpoint_every : int
            Write the checkpoint every this many epochs (and always at the end); needs ``checkpoint``.
        log_file : str or None
            JSON Lines per-epoch log (format in :mod:`miniff.fit.log`).
        early_stopping : int or None
            Stop after this many epochs without a new best state (the ``select_best`` criterion).
        restore_best : bool
            With a validation set, end with the networks of the best epoch (see ``select_best``).
        select_best : {"loss", "energy", "forces"}
            Which epoch is best: the lowest validation loss (the weighted sum of energy and force terms that is
            optimised), the lowest validation energy RMSE or the lowest validation force RMSE (training values
            without a validation set).  The chosen epoch and why are in ``best_epoch_info`` and the summary.
        stall_epochs : int or None
            The fit stops with ``stop_reason = "stalled"`` (and a :class:`~miniff.fit.monitor.FitStallWarning`
            saying what to try) when the training loss decreased by less than ``stall_tolerance`` (relative)
            over this many epochs, or at once when the optimizer did not move the parameters; None disables
            the first rule.  Default :data:`~miniff.fit.monitor.STALL_EPOCHS` = 5.
        stall_tolerance : float
            Relative decrease of the stall rule, default :data:`~miniff.fit.monitor.STALL_TOLERANCE` = 1e-4.
        summary : bool
            Print :meth:`summary` at the end (epochs, time, why the fit stopped, the chosen epoch, training and
            validation RMSEs with the spread of the reference values).
        progress : bool or None
            Show a tqdm bar with the current losses (None: only on a terminal).
        after_epoch : callable or None
            ``after_epoch(workflow)``; returning False stops the fit.
        save_policy, plot_kwargs
            Accepted for 0.1.4 job files (potentials are saved once, at the end; no live plots).
            Ignored: a value other than None emits a DeprecationWarning.
        torch_threads : "auto", int or None
            torch intra-op threads during the fit (restored afterwards).  Atomic networks are small, so one
            thread is fastest for energy-only fits (several threads mostly wait on each other, badly so on a
            busy machine); None keeps torch's setting (all cores by default), which is faster for force fits of
            more than a few dozen structures, whose Jacobian products are large (the main job: 1.5-1.7x with 2
            threads on 2 cores).  ``"auto"`` (default): None for a force fit in one process on a machine whose load
            average is below half its cores, else 1 (busy machines, energy-only fits, the ranks of a ``torchrun``
            fit, committee members fitted in parallel processes;
            :func:`~miniff.fit.distributed.auto_torch_threads`).

        Returns
        -------
        list of dict
            The per-epoch records (also in ``self.history``).  Why the fit ended is in ``self.stop_reason``:
            ``"n_epochs"``, ``"converged"`` (the closure's criteria), ``"early stopping"``, ``"non-finite loss"``,
            ``"after_epoch"``, ``"stalled"``, ``"line search failed"`` (see :mod:`miniff.fit.monitor`) or
            ``"optimizer: <reason>"`` (see :data:`OPTIMIZER_FINAL_STOPS`).  A committee fit returns the list of
            the members' histories (``self.members[k].history``, ``stop_reason``...).
        """
        if not hasattr(self, "closure"):
            raise RuntimeError("run: call prepare() first")
        if getattr(self, "committee", None) is not None:
            return run_committee(self, {k: v for k, v in locals().items() if k != "self"})
        for name, v in (("n_epochs", n_epochs), ("epoch_size", epoch_size), ("checkpoint_every", checkpoint_every)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "n_epochs" else 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if early_stopping is not None and (not isinstance(early_stopping, int) or early_stopping < 1):
            raise ValueError(f"early_stopping must be None or a positive integer, got {early_stopping!r}")
        warn_ignored("FitWorkflow.run", save_policy=save_policy, plot_kwargs=plot_kwargs)
        if not _is_main(self):   # only rank 0 writes and prints
            log_file, save, summary, progress = None, False, False, False
        monitor = FitMonitor(select_best, self.forces, stall_epochs, stall_tolerance)
        if self.best is not None and self.best.get("criterion", "loss") != select_best:
            self.best = None   # a resumed fit chose its best state by another criterion: start afresh
        previous_threads = torch.get_num_threads()
        torch_threads = fit_torch_threads(self, torch_threads)
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        if getattr(self, "context", None) is not None:
            self.ran_on = self.context.describe(torch.get_num_threads(), self.n_threads)
        try:
            self._monitor = monitor
            history = self._run(n_epochs, epoch_size, cleanup_optimizer, save, save_fn, checkpoint_every, log_file,
                                early_stopping, restore_best, progress, after_epoch)
        finally:
            torch.set_num_threads(previous_threads)
            if getattr(self, "checkpoint_path", None) is not None and _is_main(self):
                remove_stale_temporaries(self.checkpoint_path)
        self.log.info("fit %s: stopped after epoch %d: %s", self.tag, self.epoch, self.stop_reason)
        text = self.summary()   # also sets summary_table
        if summary:
            print(text, flush=True)
        return history

    def _run(self, n_epochs, epoch_size, cleanup_optimizer, save, save_fn, checkpoint_every, log_file,
             early_stopping, restore_best, progress, after_epoch):
        log = FitLog(log_file, resume_epoch=self.epoch if self.epoch > 0 else None)
        if self.epoch == 0 and not self.history:
            self.history.append(log.write(self._record()))
        if self.best is None and self.history:
            self._track_best(self.history[-1])
        if progress is None:
            progress = sys.stderr.isatty()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_epochs, initial=min(self.epoch, n_epochs), desc=f"fit {self.tag}", unit="epoch")
        self.stop_reason = "n_epochs"
        try:
            while self.epoch < n_epochs:
                t0 = time.perf_counter()
                if cleanup_optimizer:
                    self.closure.optimizer_init()
                self._monitor.before_epoch(self.nn)
                for _ in range(epoch_size):
                    self.closure.optimizer_step()
                self.epoch += 1
                self.wall_time += time.perf_counter() - t0
                t0 = time.perf_counter()
                rec = self._record()  # metrics of this epoch; their cost is added to the next record's time
                rec = log.write(rec)
                self.wall_time += time.perf_counter() - t0
                self.history.append(rec)
                stop = self._after_epoch_checks(rec, early_stopping)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(progress_postfix(rec))
                if self.checkpoint_path is not None and (self.epoch % checkpoint_every == 0 or stop
                                                         or self.epoch >= n_epochs):
                    self.save_checkpoint()
                if stop:
                    break
                if after_epoch is not None and after_epoch(self) is False:
                    self.stop_reason = "after_epoch"
                    if self.checkpoint_path is not None:
                        self.save_checkpoint()
                    break
        finally:
            if bar is not None:
                bar.close()
        if self.checkpoint_path is not None and self.epoch >= n_epochs and not self.checkpoint_path.exists():
            self.save_checkpoint()
        self.best_epoch_info = None
        if restore_best and self.best is not None and "test" in self.datasets:
            for net, state in zip(self.nn, self.best["networks"], strict=True):
                net.load_state_dict(state)
            self.best_epoch_info = (self.best["epoch"], self._monitor.best_reason())
        elif self.history:
            self.best_epoch_info = (self.epoch, "the last epoch" + ("" if restore_best else ", restore_best: false"))
        if save is None:
            save = save_fn is not None
        if save:
            self.save_potentials(("{tag}.pt" if save_fn is None else str(save_fn)).format(tag="learn"))
        return self.history

    def _track_best(self, rec):
        """Keep the networks of the best epoch (``select_best`` of :meth:`run`); False for a non-finite loss."""
        loss = rec["loss_valid" if "loss_valid" in rec else "loss"]
        value = self._monitor.best_value(rec)
        if not (math.isfinite(loss) and math.isfinite(value)):
            return False
        if self.best is None or value < self.best["value"]:
            self.best = {"epoch": self.epoch, "loss": loss, "value": value, "criterion": self._monitor.select_best,
                         "networks": [{k: v.detach().clone() for k, v in n.state_dict().items()} for n in self.nn]}
            self.stale_epochs = 0
        else:
            self.stale_epochs += 1
        return True

    def _after_epoch_checks(self, rec, early_stopping):
        """Track the best state; return True when the fit should stop (``stop_reason`` set)."""
        if not self._track_best(rec):
            self.stop_reason = "non-finite loss"
            return True
        if self.closure.converged({k: v for k, v in rec.items() if not k.endswith("_valid")}):
            self.stop_reason = "converged"
            return True
        optimizer_stop = getattr(self.closure.optimizer, "stop_reason", None)
        if optimizer_stop in OPTIMIZER_FINAL_STOPS:
            self.stop_reason = f"optimizer: {optimizer_stop}"
            return True
        monitor_stop = self._monitor.after_epoch(self, self.history)
        if monitor_stop is not None:
            self.stop_reason = monitor_stop
            return True
        if early_stopping is not None and self.stale_epochs >= early_stopping:
            self.stop_reason = "early stopping"
            return True
        return False

    # ------------------------------------------------------------------ potentials
    def build_potentials(self):
        """NN potentials (one per species, physical units: raw descriptors in, eV out) from the networks, with the
        training range of every descriptor (from the ``"learn"`` dataset) for extrapolation checks."""
        from miniff import ml

        if getattr(self, "members", None):
            return committee_potentials(self)
        nets = [copy.deepcopy(n).cpu() for n in self.nn]
        learn = getattr(self, "datasets", {}).get("learn")  # the training range of every descriptor (ranks: reduced)
        ranges = getattr(self, "descriptor_range", None)
        ranges = ranges if ranges is not None or learn is None else ml.descriptor_ranges(learn, self.normalization)
        self.nn_potentials = ml.potentials_from_ml_data(nets, self.descriptors, normalization=self.normalization,
                                                        descriptor_range=ranges)
        return self.nn_potentials

    def save_potentials(self, fn):
        """Build the potentials and save them as plain data to ``fn`` (see :func:`miniff.ml_util.save_potentials`)."""
        from miniff.ml.serialize import save_potentials

        save_potentials(self.build_potentials(), fn)
        self.log.info("potentials saved to %s", fn)
        return fn

    def predict(self, name="learn", per_structure=False):
        """Reference and predicted energies (eV/atom), forces (eV/Å) and stresses (eV/Å³) on dataset ``name``.

        Parameters
        ----------
        name : str
            ``"learn"`` or ``"test"``.
        per_structure : bool
            Return the forces as one array per structure (empty for structures without reference forces).

        Returns
        -------
        dict
            ``energy_ref``, ``energy_pred``: ndarray (S,), eV/atom; with forces ``forces_ref``, ``forces_pred``:
            ndarray (n_atoms_with_forces * 3,), eV/Å (lists of S arrays [n_s, 3] with ``per_structure``); with
            stresses ``stress_ref``, ``stress_pred``: ndarray (n_structures_with_stress * 6,), eV/Å³ (lists of S
            arrays [6], empty without a reference stress, with ``per_structure``).
            For a committee: the members' mean, plus their standard deviations ``energy_std`` and ``forces_std``.
        """
        if getattr(self, "members", None):
            return committee_predict(self, name, per_structure)
        if getattr(self, "shard", None) is not None:
            return sharded_predictions(self, name, per_structure)   # gathered from the ranks
        return network_predictions(self.nn, self.datasets[name], self.normalization, self.forces,
                                   getattr(self, "stress", False), per_structure)

    def summary(self):
        """The end-of-fit report (also printed by :meth:`run`): epochs, wall time, why the fit stopped, which
        epoch's networks were kept and why, and per data set (and structure group) the RMSE of per-atom
        energies (meV/atom), force components (meV/Å) and, when fitted, stress components (meV/Å³) next to the
        standard deviation of the reference values.  The numbers are kept in ``summary_table`` (eV/atom, eV/Å,
        eV/Å³; see
        :func:`miniff.fit.summary.error_table`)."""
        from miniff.fit.summary import error_table, fit_summary

        if getattr(self, "members", None):
            return committee_summary(self)
        rows = []
        for name, label in (("learn", "training"), ("test", "validation")):
            if name in self.datasets:
                p = self.predict(name, per_structure=True)
                p["groups"] = None if self.cell_groups is None else self.cell_groups[name]
                rows.append((label, p))
        self.summary_table = error_table(rows)
        return fit_summary(self, self.summary_table)

