"""``MiniBatchFitWorkflow``: the job-file stage ``fit-minibatch`` (a fit whose descriptors live in a store).

``prepare`` loads the cells, chooses the descriptors (as :class:`~miniff.fit.workflow.FitWorkflow`), fills or
reuses the descriptor store (:func:`~miniff.store.prepare.prepare_store`), splits it into training and validation
structures, streams the normalisation statistics of the training part and builds the networks and a
:class:`~miniff.fit.minibatch.MiniBatchTrainer`; ``run`` trains for ``n_epochs`` epochs and saves the potentials.
"""

import copy
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from miniff.fit.distributed import join_ranks, reduce_normalization_inputs
from miniff.fit.minibatch import MiniBatchTrainer
from miniff.fit.prepare import DEFAULT_FORCE_WEIGHT, FitPreparation
from miniff.store.dataset import StoreDataset
from miniff.store.lmdb_store import DescriptorStore
from miniff.store.prepare import prepare_store
from miniff.store.statistics import RunningMoments, StoreStatistics, stream_statistics

__all__ = ["MiniBatchFitWorkflow"]


def _statistics(learn, forces, context):
    """The :class:`~miniff.store.statistics.StoreStatistics` of the training set ``learn``; across ranks each rank
    streams its contiguous share of the structures and the shares are reduced (the result equals one process's,
    and the store is read once in all, not once per rank)."""
    if not context.distributed or len(learn) < context.world_size:   # (every rank needs a structure)
        return stream_statistics(learn, forces=forces)
    positions = context.shard(len(learn))
    part = stream_statistics(learn.subset(positions), forces=forces)
    shares = context.gather((part.features, part.charges))   # every rank's moments, in rank order
    inputs = part.inputs
    if any(c is None for _, charges in shares for c in charges):   # charges only where every structure has them
        inputs = inputs._replace(charges=[None] * len(inputs.charges))
    inputs = reduce_normalization_inputs(inputs, context, positions, len(learn))
    return StoreStatistics(inputs, _merged([f for f, _ in shares]), _merged([c for _, c in shares]))


def _merged(per_rank):
    """Per species, the merge of every rank's RunningMoments (None where a rank has none)."""
    out = []
    for moments in zip(*per_rank, strict=True):
        if any(m is None for m in moments):
            out.append(None)
            continue
        total = RunningMoments(len(moments[0].mean))
        for m in moments:
            total.merge(m)
        out.append(total)
    return out


class MiniBatchFitWorkflow(FitPreparation):
    """Fit one NN potential per species in mini-batches streamed from a descriptor store (see the module
    docstring).  Fields after :meth:`prepare`: ``descriptors``, ``store_report``, ``datasets`` (``{"learn",
    "test"}`` StoreDatasets), ``statistics``, ``normalization``, ``nn``, ``trainer``."""

    default_tag = "fit-minibatch"

    def prepare(self, fn_cells, fn_cells_root=None, cells_order="random", cells_subset=None, cells_index=":",
                cells_selection=None, descriptors=None, cutoff=None, default_descriptor_kwargs=None,
                descriptor_recipe="behler", normalization_kwargs=None, test_set=0.1, split_seed=0, nn_kwargs=None,
                forces=True, w_energy=1.0, w_gradients=None, per_atom=True, w_l2=0.0, group_weights=None,
                store="descriptors.store", store_workers=1, batch_size=32, shuffle=True, shuffle_seed=0,
                optimizer="adam", optimizer_kwargs=None, lr_schedule=None, checkpoint=None, resume=True,
                device="cpu"):
        """Load cells, fill the store, normalise from streamed statistics, build networks and the trainer.

        Parameters
        ----------
        fn_cells, fn_cells_root, cells_order, cells_subset, cells_index, cells_selection, descriptors, cutoff, \
default_descriptor_kwargs, descriptor_recipe, test_set, split_seed, nn_kwargs, group_weights
            As in :meth:`FitWorkflow.prepare <miniff.fit.workflow.FitWorkflow.prepare>`.
        normalization_kwargs : dict or None
            Arguments of ``Normalization.from_dataset`` but ``pca_features`` (default ``offset_energy=True``).
        forces : bool
            Fit forces (store the Jacobians; ``w_gradients`` defaults to 30).
        w_energy, w_gradients, per_atom, w_l2
            Loss weights (see :mod:`miniff.fit.minibatch`).
        store : str
            Folder of the descriptor store (reused across runs: unchanged structures are not recomputed).
        store_workers : int
            Processes computing descriptors for the store.
        batch_size : int
            Structures per batch.
        shuffle : bool
            A new batch order every epoch.
        shuffle_seed : int
            Seed of the batch orders.
        optimizer : str
            ``"adam"``, ``"adamw"``, ``"sgd"`` or another first-order ``torch.optim`` class.
        optimizer_kwargs : dict or None
            E.g. ``{lr: 0.001}``.
        lr_schedule : dict or None
            ``{name: StepLR, step_size: 10, gamma: 0.5}``: any ``torch.optim.lr_scheduler`` class and its
            arguments, stepped once per epoch.
        checkpoint : str or None
            Checkpoint file (written every epoch; a run resumes from it when ``resume``).
        resume : bool
        device : str
            ``"cpu"`` (default), ``"cuda"`` (this rank's GPU), ``"cuda:N"`` or ``"auto"`` (a GPU when torch sees
            one): where the networks, the loss and the Jacobian contraction run (descriptors come from the store).
            The dtype is the workflow's ``dtype`` (``init: {dtype: float32}`` for speed on GPUs).

        Under ``torchrun`` (see :mod:`miniff.fit.distributed`) every rank computes the records of its share of the
        cells, then trains on its part of every batch.
        """
        if w_gradients is None:
            w_gradients = DEFAULT_FORCE_WEIGHT if forces else 0.0
        elif w_gradients and not forces:
            raise ValueError("w_gradients: != 0 needs forces: true")
        self.forces = bool(forces) and w_gradients != 0
        n, n_test = self._load_cells(fn_cells, fn_cells_root, cells_order, cells_subset, False, cells_index,
                                     cells_selection, test_set, split_seed)
        self._make_descriptors(descriptors, None, descriptor_recipe, cutoff, default_descriptor_kwargs, None)
        self.store_path = str(store)
        context = join_ranks(self, device)
        self.store_report = self._prepare_store(context, store, store_workers)
        full = StoreDataset(store, name=self.tag)
        self.datasets = {"learn": full.subset(np.arange(n - n_test))}
        if n_test:
            self.datasets["test"] = full.subset(np.arange(n - n_test, n))
        norm_kwargs = {"offset_energy": True}
        norm_kwargs.update(normalization_kwargs or {})
        self.statistics = _statistics(self.datasets["learn"], self.forces, context)
        self.normalization = self.statistics.normalization(**norm_kwargs)
        nn_kwargs = dict(nn_kwargs or {})
        if nn_kwargs.get("output_activation"):
            raise ValueError("nn_kwargs: output_activation is not supported by mini-batch fits")
        self._make_networks(nn_kwargs)
        self.trainer = MiniBatchTrainer(
            self.nn, self.datasets["learn"], self.normalization, validation=self.datasets.get("test"),
            batch_size=batch_size, shuffle=shuffle, seed=shuffle_seed, optimizer=optimizer,
            optimizer_kwargs=optimizer_kwargs, lr_schedule=lr_schedule, w_energy=w_energy, w_gradients=w_gradients,
            per_atom=per_atom, w_l2=w_l2, group_weights=group_weights,
            checkpoint=checkpoint if resume else None, dtype=self.dtype, context=context)
        if checkpoint is not None and not resume:
            self.trainer.checkpoint_path = Path(checkpoint)   # written, not read
        return self

    def _prepare_store(self, context, store, store_workers):
        """Fill the store; across ranks each rank computes the records of its contiguous share of the cells (LMDB
        serialises the writes; data sets ``<tag>.rank<r>`` list each share), then rank 0 writes the data set of all
        cells (every record then a cache hit).  Returns the report (rank 0; None on the other ranks)."""
        kwargs = dict(grad=self.forces, n_workers=store_workers, progress=None)
        counts = None
        if context.distributed:
            if context.is_main:
                DescriptorStore(store).close()   # one rank creates the folder
            context.barrier()
            t0 = time.perf_counter()
            part = prepare_store(store, context.split(self.cells), self.descriptors,
                                 name=f"{self.tag}.rank{context.rank}", **kwargs)
            counts = context.all_sum([part.computed, part.reused, part.targets_written, time.perf_counter() - t0])
        report = None
        if context.is_main:
            report = prepare_store(store, self.cells, self.descriptors, name=self.tag, **kwargs)
            if counts is not None:
                report = dataclasses.replace(report, computed=int(counts[0]), reused=int(counts[1]),
                                             targets_written=int(counts[2]), seconds=report.seconds + float(
                                                 counts[3]) / context.world_size,
                                             n_workers=report.n_workers * context.world_size)
            self.log.info("%s", report)
        context.barrier()   # the other ranks read the data set once rank 0 has written it
        return report

    def compute_neighbors(self, cutoff, nw_kwargs=None, positions=None):
        """The cells themselves, with no neighbour lists kept in memory (the store preparation builds one list at a
        time; the descriptor recipes measure distances cell by cell); sets the cutoff (Å)."""
        del nw_kwargs, positions
        self._cutoff = float(cutoff)
        self.cells_nw = None
        return list(self.cells)

    def run(self, n_epochs=100, log_file=None, save=None, save_fn=None, progress=None, summary=True,
            torch_threads=1, validate_every=1):
        """Train until ``n_epochs`` epochs are done (a resumed fit runs the remaining ones); save the potentials.

        Parameters
        ----------
        n_epochs : int
        log_file : str or None
            JSON Lines per-epoch log (:mod:`miniff.fit.log`).
        save : bool or None
            Save the potentials (None: when ``save_fn`` is given).
        save_fn : str or None
            Potentials file (default ``"{tag}.pt"``, ``{tag}`` = ``"learn"``).
        progress : bool or None
            A progress bar (None: on a terminal).
        summary : bool
            Print the end-of-fit summary.
        torch_threads : int or None
            torch threads during the fit (restored afterwards).
        validate_every : int
            Validation metrics every this many epochs.
        """
        if not hasattr(self, "trainer"):
            raise RuntimeError("run: call prepare() first")
        history = self.trainer.run(n_epochs, log_file=log_file,
                                   progress=sys.stderr.isatty() if progress is None else progress,
                                   summary=summary, validate_every=validate_every, torch_threads=torch_threads)
        self.epoch, self.history = self.trainer.epoch, history
        if save is None:
            save = save_fn is not None
        if save and self.context.is_main:
            self.save_potentials(("{tag}.pt" if save_fn is None else str(save_fn)).format(tag="learn"))
        return history

    def build_potentials(self):
        """NN potentials (raw descriptors in, eV out) with the training range of every descriptor."""
        from miniff import ml

        ranges = [None if r is None else np.stack([r[0].numpy(), r[1].numpy()], axis=1)
                  for r in self.statistics.inputs.features_range]
        self.nn_potentials = ml.potentials_from_ml_data([copy.deepcopy(n).cpu() for n in self.nn], self.descriptors,
                                                        normalization=self.normalization, descriptor_range=ranges)
        return self.nn_potentials

    def save_potentials(self, fn):
        """Build the potentials and save them as plain data to ``fn``."""
        from miniff.ml.serialize import save_potentials

        save_potentials(self.build_potentials(), fn)
        self.log.info("potentials saved to %s", fn)
        return fn
