"""Normalisation statistics streamed over a store: one structure in memory at a time.

:func:`stream_statistics` reads the structures of a :class:`~miniff.store.dataset.StoreDataset` once and keeps
per species the running minimum and maximum of every feature (what
:meth:`miniff.ml.Normalization.from_statistics` scales by), the running mean and variance (Welford's update,
merged with Chan's formula per structure), the charge range and mean, the range of the reference energy
gradients, and per structure only its energy and atom counts (``[S]`` and ``[S, n_species]`` numbers, for the
least-squares energy offsets).  The result equals the statistics of the same data set built in memory.
"""

from dataclasses import dataclass

import numpy as np
import torch

from miniff.ml.descriptor_data import progress_bar
from miniff.ml.normalization import Normalization, NormalizationInputs

__all__ = ["RunningMoments", "StoreStatistics", "stream_statistics", "normalization_from_store"]


class RunningMoments:
    """Count, mean, sum of squared deviations, min and max of vectors ``[F]``, updated with blocks ``[n, F]``
    (Chan et al.'s parallel merge of Welford's moments; float64)."""

    def __init__(self, n_features):
        self.count = 0
        self.mean = np.zeros(n_features)
        self.m2 = np.zeros(n_features)
        self.min = np.full(n_features, np.inf)
        self.max = np.full(n_features, -np.inf)

    def update(self, x):
        """Add the rows of ``x [n, F]``."""
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            return
        block = RunningMoments(x.shape[1])
        block.count, block.mean = len(x), x.mean(axis=0)
        block.m2, block.min, block.max = ((x - block.mean) ** 2).sum(axis=0), x.min(axis=0), x.max(axis=0)
        self.merge(block)

    def merge(self, other):
        """Add the rows counted by ``other`` (a RunningMoments of the same ``F``, e.g. another rank's)."""
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        self.count = total
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)

    @property
    def variance(self):
        """Population variance ``[F]`` (NaN before any data)."""
        return self.m2 / self.count if self.count else np.full_like(self.m2, np.nan)


@dataclass
class StoreStatistics:
    """Streamed statistics of a store data set: ``inputs`` (:class:`~miniff.ml.normalization.NormalizationInputs`),
    per species ``features`` (:class:`RunningMoments`) and ``charges`` (RunningMoments of one column or None)."""

    inputs: NormalizationInputs
    features: list
    charges: list

    def normalization(self, **kwargs):
        """:meth:`Normalization.from_statistics` of these statistics (keywords of ``Normalization.from_dataset``)."""
        return Normalization.from_statistics(self.inputs, **kwargs)


def stream_statistics(dataset, forces=True, dtype=torch.float64, progress=None):
    """Statistics of the structures of a :class:`~miniff.store.dataset.StoreDataset` (see the module docstring).

    Parameters
    ----------
    dataset : StoreDataset
    forces : bool
        Include the range of the energy gradients (as a dataset built with forces).
    dtype : torch.dtype
        Of the tensors in ``inputs``.
    progress : bool or None

    Returns
    -------
    StoreStatistics
    """
    species = dataset.species
    moments = [RunningMoments(f) for f in dataset.n_features]
    charges = [RunningMoments(1) for _ in species]
    with_charges = True
    energy = np.zeros(len(dataset))
    counts = np.zeros((len(dataset), len(species)))
    g_min, g_max = np.inf, -np.inf
    for s in progress_bar(range(len(dataset)), len(dataset), progress, "statistics"):
        item = dataset[s]
        energy[s] = item.targets["energy"][0]
        g = item.targets.get("energy_g")
        if forces and g is not None and g.size:
            g_min, g_max = min(g_min, float(g.min())), max(g_max, float(g.max()))
        q = item.targets.get("charges")
        with_charges = with_charges and q is not None
        for k, sp in enumerate(species):
            atoms = item.descriptors[f"a:{sp}"]
            counts[s, k] = len(atoms)
            moments[k].update(item.descriptors[f"f:{sp}"])
            if q is not None:
                charges[k].update(q[atoms][:, None])
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    ranges = [(t(m.min), t(m.max)) if m.count else None for m in moments]
    charge_stats = [(t(c.min[0]), t(c.max[0]), t(c.mean[0]), c.count) if c.count else (0.0, 0.0, 0.0, 0)
                    for c in charges] if with_charges else [None] * len(species)
    inputs = NormalizationInputs(t(energy[:, None]), t(counts), bool(forces),
                                 (t(g_min), t(g_max)) if g_max >= g_min else None, list(dataset.n_features),
                                 list(species), ranges, charge_stats, None, dtype)
    return StoreStatistics(inputs, moments, charges if with_charges else [None] * len(species))


def normalization_from_store(dataset, forces=True, progress=None, **kwargs):
    """The :class:`~miniff.ml.Normalization` of a store data set, from :func:`stream_statistics` (``kwargs``: those
    of ``Normalization.from_dataset`` but ``pca_features``)."""
    return stream_statistics(dataset, forces=forces, progress=progress).normalization(**kwargs)
