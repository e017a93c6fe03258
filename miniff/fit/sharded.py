"""The full-batch fit of :class:`~miniff.fit.workflow.FitWorkflow` across ``torchrun`` ranks, on per-rank shards.

Each rank holds a contiguous shard of the training cells and one of the validation cells
(:func:`shard_positions`; rank 0 the first ones) and computes the neighbour lists, descriptors and Jacobians of
those cells only, so the memory of the data sets per rank falls as ``1 / ranks``.  What needs the whole data set
is reduced across the ranks (:mod:`miniff.fit.distributed`): the normalisation statistics
(:func:`~miniff.fit.distributed.reduce_normalization_inputs`), the descriptor ranges of the saved potentials, the
initial output range of bounded networks, the loss and its gradient (every evaluation, one all-reduce), the
per-epoch error metrics (sums over the shards, :func:`~miniff.fit.metrics.error_sums`) and the predictions of
the summary (gathered in rank order).  The results equal those of one process up to the order of the sums.
"""

import time

import numpy as np
import torch

from miniff.fit.distributed import reduce_normalization_inputs
from miniff.fit.metrics import error_sums, metrics_from_sums, network_predictions

__all__ = ["join_shards", "shard_positions", "sharded_datasets", "sharded_metrics", "sharded_predictions",
           "reduced_range"]


def join_shards(context, n, n_test, committee=None):
    """:func:`shard_positions` of this rank across several ranks, None with one; a committee across ranks is a
    ``ValueError``."""
    if not context.distributed:
        return None
    if committee is not None:
        raise ValueError("committee: committee fits do not run across torchrun ranks; start them without torchrun "
                         "(the members train in parallel processes, committee: {processes: N})")
    return shard_positions(context, n, n_test)


def shard_positions(context, n, n_test):
    """This rank's cells among ``n`` cells whose last ``n_test`` are held out: ``{"learn": [k] int64 positions
    among the training cells, "test": [k'] positions among the validation cells, "cells": [k + k'] positions of
    both among all cells}`` (contiguous shards).

    Raises
    ------
    ValueError
        Fewer training cells than ranks.
    """
    n_learn = n - n_test
    if n_learn < context.world_size:
        raise ValueError(f"fn_cells: {n_learn} training cells for {context.world_size} ranks; every rank needs at "
                         f"least one (use fewer ranks)")
    learn, test = context.shard(n_learn), context.shard(n_test)
    return {"learn": learn, "test": test, "cells": np.concatenate([learn, n_learn + test])}


def sharded_datasets(workflow, n, n_test, learn_cauldron_kwargs, normalization_kwargs):
    """:meth:`~miniff.fit.prepare.FitPreparation._make_datasets` on this rank's shard (``workflow.shard`` of
    :func:`shard_positions`): descriptors of its cells only, the normalisation of the whole training set from
    reduced statistics, the reduced descriptor ranges (``workflow.descriptor_range``).  Drops the neighbour lists
    of the other ranks' cells.  Returns the raw reference energies of the whole split, ``{name: [S, 1]}``."""
    from miniff import ml
    from miniff.ml.normalization_inputs import NormalizationInputs
    from miniff.ml.potential import descriptor_ranges

    context, shard, n_learn = workflow.context, workflow.shard, n - n_test
    if (normalization_kwargs or {}).get("pca_features"):
        raise ValueError("normalization_kwargs: pca_features needs the features of every training cell in one "
                         "process; it is not available across ranks")
    cells = shard["cells"]
    t0 = time.perf_counter()
    learn_cauldron_kwargs.update(normalize=False, dtype=workflow.dtype)
    learn_cauldron_kwargs.setdefault("n_threads", workflow.n_threads)
    failure = None
    try:   # a bad cell raises on its rank only: every rank learns of it before the next collective
        full = ml.learn_cauldron([workflow.cells_nw[i] for i in cells], workflow.descriptors, **learn_cauldron_kwargs)
    except Exception as exc:
        failure = exc
    if context.all_max([failure is not None])[0]:
        if failure is not None:
            raise failure
        raise RuntimeError("fn_cells: another rank failed to compute the descriptors of its cells (see its error)")
    keep = set(cells.tolist())
    workflow.cells_nw = [nw if i in keep else None for i, nw in enumerate(workflow.cells_nw)]
    seconds = float(context.all_max([time.perf_counter() - t0])[0])
    k = len(shard["learn"])
    raw = workflow._split_dataset(full, len(cells), len(cells) - k, seconds, n_cells=(n, n_test))
    inputs = reduce_normalization_inputs(NormalizationInputs.of_dataset(raw["learn"]), context, shard["learn"],
                                         n_learn)
    workflow.normalization = ml.Normalization.from_statistics(inputs, **{"offset_energy": True,
                                                                         **(normalization_kwargs or {})})
    workflow.datasets = {name: workflow.normalization.fw(v) for name, v in raw.items()}
    workflow.descriptor_range = [reduced_range(context, r, len(d)) for r, d in
                                 zip(descriptor_ranges(workflow.datasets["learn"], workflow.normalization),
                                     workflow.descriptors.values(), strict=True)]
    energies = {"learn": inputs.energy}
    if n_test:
        full_test = np.zeros((n_test, 1))
        full_test[shard["test"]] = raw["test"].per_cell_dataset.energy.double().numpy()
        energies["test"] = torch.as_tensor(context.all_sum(full_test).reshape(n_test, 1))
    return energies


def reduced_range(context, local, size):
    """The range over the ranks of per-rank ranges ``local`` (an ``[size, 2]`` array of (min, max), or None for a
    rank without values): an ``[size, 2]`` array, or None when no rank has values."""
    v = np.full(2 * size, -np.inf) if local is None else np.concatenate([-local[:, 0], local[:, 1]])
    v = context.all_max(v)
    return np.stack([-v[:size], v[size:]], axis=1) if np.all(np.isfinite(v)) else None


def sharded_metrics(workflow, name):
    """:meth:`FitWorkflow.metrics <miniff.fit.workflow.FitWorkflow.metrics>` of data set ``name`` held in shards:
    the error sums of this rank's shard reduced over the ranks (every rank must call it)."""
    labels = None if workflow.cell_groups is None else workflow.cell_groups[name]
    local = None if labels is None else [labels[i] for i in workflow.shard[name]]
    data = workflow.datasets[name]
    sums = error_sums(workflow.nn, data, workflow.normalization, forces=workflow.forces, groups=local,
                      stress=getattr(workflow, "stress", False), group_names=None if labels is None else set(labels))
    return metrics_from_sums(workflow.context.reduce_sums(sums))


def sharded_predictions(workflow, name, per_structure=False):
    """:meth:`FitWorkflow.predict <miniff.fit.workflow.FitWorkflow.predict>` of data set ``name`` held in shards:
    every rank's predictions gathered in rank order, i.e. the order of the cells (every rank must call it)."""
    local = network_predictions(workflow.nn, workflow.datasets[name], workflow.normalization, workflow.forces,
                                getattr(workflow, "stress", False), per_structure)
    parts = workflow.context.gather(local)
    return {key: (sum((list(p[key]) for p in parts), []) if isinstance(value, list)
                  else np.concatenate([p[key] for p in parts]))
            for key, value in local.items()}
