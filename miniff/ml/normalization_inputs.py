"""What a normalisation is computed from: the summary of a raw data set (:class:`NormalizationInputs`, from an
in-memory dataset or streamed from a store) and the least-squares energy offsets of its compositions."""

from typing import NamedTuple

import torch

from miniff.ml.datasets import Dataset

__all__ = ["NormalizationInputs"]


class NormalizationInputs(NamedTuple):
    """The summary of a raw data set that :meth:`Normalization.from_statistics` needs.

    Fields: ``energy [S, 1]`` eV and ``counts [S, n_species]`` (atoms per species) of every structure;
    ``has_energy_g`` and ``energy_g_range`` (``(min, max)`` of the reference energy gradients, eV/Å, over the
    atoms whose forces count, or None when there are none); per species ``n_features``, ``tags``,
    ``features_range`` (``(lo [F], hi [F])`` or None without atoms) and ``charges`` (None without charges, else
    ``(min, max, mean, count)``, e); ``points`` (per species the real atoms' features ``[n, F]``, for PCA; None
    when streamed); ``dtype``.
    """

    energy: torch.Tensor
    counts: torch.Tensor
    has_energy_g: bool
    energy_g_range: tuple
    n_features: list
    tags: list
    features_range: list
    charges: list
    points: list
    dtype: torch.dtype

    @classmethod
    def of_dataset(cls, dataset):
        """The summary of an in-memory :class:`Dataset`."""
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a Dataset, got {type(dataset).__name__}")
        pc = dataset.per_cell_dataset
        g_range = None
        if pc.energy_g is not None:
            g = pc.energy_g[pc.force_mask() != 0]
            g_range = (g.min(), g.max()) if g.numel() else None
        ranges, charges, points = [], [], []
        for d in dataset.per_point_datasets:
            x = d.features[d.mask != 0]
            points.append(x)
            ranges.append((x.min(0).values, x.max(0).values) if len(x) else None)
            if d.charges is None:
                charges.append(None)
            else:
                q = d.charges[d.mask != 0][:, 0]
                charges.append((q.min(), q.max(), q.mean(), q.numel()) if q.numel() else (0.0, 0.0, 0.0, 0))
        return cls(pc.energy, dataset.atom_counts(), pc.energy_g is not None, g_range,
                   [d.n_features for d in dataset.per_point_datasets], [d.tag for d in dataset.per_point_datasets],
                   ranges, charges, points, dataset.dtype)


def _lsq_offsets(counts, energy, pad):
    """Least-squares energies per atom ``[n_species, 1]`` (float64) of totals ``energy [S, 1]`` by ``counts``."""
    counts = counts.to(torch.float64)
    energy = energy.to(torch.float64)
    rank = int(torch.linalg.matrix_rank(counts)) if counts.numel() else 0
    if rank < counts.shape[1] and not pad:
        raise ValueError(f"energy offsets are underdetermined: {rank} independent compositions for "
                         f"{counts.shape[1]} species (use pad=True)")
    return torch.linalg.lstsq(counts, energy, driver="gelsd").solution
