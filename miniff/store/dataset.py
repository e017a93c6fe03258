"""Reading a prepared data set of a :class:`~miniff.store.lmdb_store.DescriptorStore` for training.

:class:`StoreDataset` is a ``torch.utils.data.Dataset`` of structures (``ds[i]`` reads and verifies two records);
:class:`StoreCollate` turns a list of them into a ``miniff.ml.Dataset`` batch (padded features ``[B, M, F]``,
masks, the sparse Jacobian of every species, energies ``[B, 1]``, energy gradients ``[B, N, 3]``), normalised
when given a :class:`~miniff.ml.Normalization`; :class:`EpochSampler` gives the batches of every epoch from a
seed, with a state that checkpoints can save (so that a resumed run sees the same batches); with several ranks
each rank gets its part of every batch.
"""

from typing import NamedTuple

import numpy as np
import torch

from miniff.ml.datasets import Dataset, PerCellDataset, PerPointDataset
from miniff.ml.jacobian import SparseJacobian
from miniff.store.lmdb_store import DescriptorStore

__all__ = ["StoreDataset", "StoreItem", "StoreCollate", "Batch", "EpochSampler"]


class StoreItem(NamedTuple):
    """One structure read from a store: ``descriptors`` (the arrays of its descriptor record), ``targets`` (the
    arrays of its target record), ``n_atoms``, ``group`` (str or None) and ``index`` (in the data set)."""

    descriptors: dict
    targets: dict
    n_atoms: int
    group: object
    index: int


class StoreDataset(torch.utils.data.Dataset):
    """The structures of data set ``name`` of a store, optionally a subset.

    Parameters
    ----------
    store : str, Path or DescriptorStore
        A path is opened read-only.
    name : str
        The data set written by :func:`~miniff.store.prepare.prepare_store`.
    indices : sequence of int or None
        Structures of the data set to use, in this order (default: all).
    """

    def __init__(self, store, name="default", indices=None):
        self.store = store if isinstance(store, DescriptorStore) else DescriptorStore(store, readonly=True)
        self.name = name
        meta = self.store.index(name)
        self.species = list(meta["species"])
        self.n_features = list(meta["n_features"])
        self.grad = bool(meta["grad"])
        self.descriptor_key = meta["descriptor_key"]
        self._keys = meta["keys"]
        self._targets = meta["targets"]
        n = len(self._keys)
        if indices is None:
            self.indices = np.arange(n)
        else:
            self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
            if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
                raise IndexError(f"indices: out of range for the {n} structures of data set {name!r}")

    def __len__(self):
        return len(self.indices)

    def __repr__(self):
        return f"StoreDataset({str(self.store.path)!r}, name={self.name!r}, n={len(self)}, species={self.species})"

    def subset(self, indices):
        """The structures ``indices`` (positions in this dataset) as a new StoreDataset on the same store."""
        out = StoreDataset.__new__(StoreDataset)
        out.__dict__.update(self.__dict__)
        out.indices = self.indices[np.asarray(indices, dtype=np.int64).reshape(-1)]
        return out

    def record_keys(self, i):
        """Hex keys ``(descriptor record, target record)`` of structure ``i`` of this dataset."""
        k = int(self.indices[int(i)])
        return self._keys[k], self._targets[k]

    def targets(self, i):
        """The target record of structure ``i`` only: ``(arrays, info)`` (energy, weight, forces...; no descriptors)."""
        return self.store.get(self.record_keys(i)[1])

    def __getitem__(self, i):
        if not -len(self) <= int(i) < len(self):
            raise IndexError(f"structure index {i} out of range for {len(self)} structures")
        k = int(self.indices[int(i)])
        d, _ = self.store.get(self._keys[k])
        t, info = self.store.get(self._targets[k])
        return StoreItem(d, t, int(info["n_atoms"]), info.get("group"), k)


class Batch(NamedTuple):
    """A collated batch: ``dataset`` (``miniff.ml.Dataset``, normalised when the collate has a normalisation),
    ``weights`` (``[B]`` per-structure weights), ``groups`` (list) and ``indices`` (``[B]`` in the data set)."""

    dataset: Dataset
    weights: torch.Tensor
    groups: list
    indices: torch.Tensor


class StoreCollate:
    """Collate :class:`StoreItem` lists into a :class:`Batch` (usable as a DataLoader ``collate_fn``).

    Parameters
    ----------
    species : list of str
        The species of the data set (``StoreDataset.species``), one per-point dataset each.
    grad : bool
        Build the sparse Jacobians.
    forces : bool
        Include the energy gradients (minus forces; structures without forces become energy-only samples).
    normalization : miniff.ml.Normalization or None
        Applied to every batch.
    dtype : torch.dtype
    """

    def __init__(self, species, grad=True, forces=True, normalization=None, dtype=torch.float64):
        self.species = list(species)
        self.grad = bool(grad)
        self.forces = bool(forces)
        self.normalization = normalization
        self.dtype = dtype

    def __call__(self, items):
        if not items:
            raise ValueError("items must not be empty")
        b = len(items)
        n = max(it.n_atoms for it in items)
        dt = self.dtype
        energy = torch.tensor([[float(it.targets["energy"][0])] for it in items], dtype=dt)
        mask = torch.zeros(b, n, dtype=dt)
        for s, it in enumerate(items):
            mask[s, :it.n_atoms] = 1
        energy_g = has_forces = None
        if self.forces:
            energy_g = torch.zeros(b, n, 3, dtype=dt)
            has_forces = torch.zeros(b, dtype=torch.bool)
            for s, it in enumerate(items):
                g = it.targets.get("energy_g")
                if g is not None:
                    energy_g[s, :it.n_atoms] = torch.from_numpy(np.array(g))
                    has_forces[s] = True
        per_point = [self._species_data(items, sp, n) for sp in self.species]
        data = Dataset(PerCellDataset(energy, mask, energy_g, has_forces), *per_point)
        if self.normalization is not None:
            data = self.normalization.fw(data)
        weights = torch.tensor([float(it.targets["weight"][0]) for it in items], dtype=dt)
        return Batch(data, weights, [it.group for it in items], torch.tensor([it.index for it in items]))

    def _species_data(self, items, sp, n):
        b, dt = len(items), self.dtype
        feats = [it.descriptors[f"f:{sp}"] for it in items]
        m = max(len(f) for f in feats)
        f_count = feats[0].shape[1]
        features = torch.zeros(b, m, f_count, dtype=dt)
        mask = torch.zeros(b, m, dtype=dt)
        for s, f in enumerate(feats):
            features[s, :len(f)] = torch.from_numpy(np.array(f))
            mask[s, :len(f)] = 1
        jac = None
        if self.grad:
            pe = [it.descriptors[f"pe:{sp}"] for it in items]
            sample = np.concatenate([np.full(len(p), s, dtype=np.int64) for s, p in enumerate(pe)])
            jac = SparseJacobian(torch.from_numpy(sample), torch.from_numpy(np.concatenate(pe)),
                                 torch.from_numpy(np.concatenate([it.descriptors[f"ae:{sp}"] for it in items])),
                                 torch.from_numpy(np.concatenate([it.descriptors[f"j:{sp}"] for it in items])).to(dt),
                                 b, m, n)
        charges = None
        if all("charges" in it.targets for it in items):
            charges = torch.zeros(b, m, 1, dtype=dt)
            for s, it in enumerate(items):
                atoms = it.descriptors[f"a:{sp}"]
                charges[s, :len(atoms), 0] = torch.from_numpy(np.array(it.targets["charges"][atoms]))
        return PerPointDataset(features, mask, jac, charges=charges, tag=sp)


class EpochSampler(torch.utils.data.Sampler):
    """Batches of ``n`` structures for a ``DataLoader(batch_sampler=...)``: every epoch a permutation drawn from
    ``(seed, epoch)`` (or the natural order without ``shuffle``), cut into batches of ``batch_size`` (the last one
    smaller).  The state (``epoch``, ``batch``: the next batch to yield) is saved by checkpoints; iterating
    resumes from it, and the epoch ends by advancing to the next one.

    With ``world_size > 1`` (distributed training) the batches stay the *global* ones, the same for any number of
    ranks, and rank ``rank`` gets its contiguous part of each (``np.array_split`` order; a list that may be empty
    when a batch has fewer structures than there are ranks).  The state does not depend on the rank or the
    number of ranks, so a run resumes on any number of ranks.
    """

    def __init__(self, n, batch_size, shuffle=True, seed=0, rank=0, world_size=1):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        for name, v, low in (("world_size", world_size, 1), ("rank", rank, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if rank >= world_size:
            raise ValueError(f"rank must be < world_size ({world_size}), got {rank}")
        self.n, self.batch_size, self.shuffle, self.seed = int(n), batch_size, bool(shuffle), seed
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch, self.batch = 0, 0

    def __len__(self):
        return -(-self.n // self.batch_size)

    def order(self, epoch):
        """The structure order of ``epoch``, ``[n]`` int64."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.n)

    def __iter__(self):
        order = self.order(self.epoch)
        while self.batch < len(self):
            k = self.batch
            self.batch += 1
            batch = order[k * self.batch_size:(k + 1) * self.batch_size]
            if self.world_size > 1:
                batch = np.array_split(batch, self.world_size)[self.rank]
            yield batch.tolist()
        self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self):
        """``{"epoch", "batch", "seed", "shuffle", "batch_size", "n"}``."""
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "shuffle": self.shuffle,
                "batch_size": self.batch_size, "n": self.n}

    def load_state_dict(self, state):
        """Restore from :meth:`state_dict` (the data set size and batching must be the same)."""
        for k in ("seed", "shuffle", "batch_size", "n"):
            if state[k] != getattr(self, k):
                raise ValueError(f"sampler state: {k} was {state[k]!r}, now {getattr(self, k)!r}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
