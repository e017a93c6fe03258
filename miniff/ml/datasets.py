"""Dataset containers for fitting: per-cell targets and per-species per-point features.

Shapes (``S`` samples, ``N`` max atoms per cell, ``M`` max atoms of one species per cell, ``F`` features):

- :class:`PerCellDataset` (:mod:`miniff.ml.cell_dataset`): ``energy [S, 1]`` eV, ``mask [S, N]``, ``energy_g
  [S, N, 3]`` eV/Å (= -forces), ``stress [S, 6]`` eV/Å³, ``volume [S]`` Å³.
- :class:`PerPointDataset` (one per species): ``features [S, M, F]``, ``mask [S, M]``, ``features_g``
  (a :class:`~miniff.ml.jacobian.SparseJacobian`, or the dense legacy ``[S, M, F, N, 3]`` which is
  converted), ``charges [S, M, 1]``, ``energies_p [S, M, 1]`` eV, ``features_strain [S, M, F, 6]`` (the
  derivatives of the features by a homogeneous strain, Voigt, for stress training).
- :class:`Dataset`: one per-cell dataset plus the per-point datasets of all species.

Every container validates its fields (``ValueError`` naming the field for wrong shapes, mixed dtypes or
non-finite values; ``TypeError`` for non-tensors).  Indexing a :class:`Dataset` (or calling ``subset``)
returns a new dataset of the selected samples; ``cat`` concatenates along samples, padding atoms.
"""

import numpy as np
import torch

from miniff.ml.cell_dataset import PerCellDataset
from miniff.ml.dataset_fields import (
    FieldTypeError,
    Sample,
    _as_index_tensor,
    _check_count,
    _check_field,
    _check_same_kind,
    _datasets,
    _pad,
    _sample_index,
)
from miniff.ml.descriptor_data import encode_species, prepare_descriptor_data
from miniff.ml.jacobian import SparseJacobian

__all__ = ["PerCellDataset", "PerPointDataset", "Dataset", "Sample", "FieldTypeError"]


class PerPointDataset(torch.utils.data.Dataset):
    """Per-atom inputs of one species: descriptors, their Jacobian, optional charges and partial energies.

    Parameters
    ----------
    features : Tensor of shape (S, M, F), floating point
        Descriptors of the ``M`` (padded) atoms of this species in every sample.
    mask : Tensor of shape (S, M)
        1 (or True) for real atoms, 0 for padding.  Bool masks are accepted; float masks must have the dtype
        of ``features``.
    features_g : SparseJacobian or Tensor of shape (S, M, F, N, 3), optional, 1/Å
        Derivatives of the features by atomic positions.  The sparse form is what ``learn_cauldron`` makes;
        a dense 0.1.4-style tensor is accepted as a legacy input and converted.
    charges : Tensor of shape (S, M, 1), optional, e
    energies_p : Tensor of shape (S, M, 1), optional, eV
        Partial (per-atom) energies.
    tag : str, optional
        Species name.
    features_strain : Tensor of shape (S, M, F, 6), optional
        Derivatives of the features by a homogeneous strain of the cell (Voigt ``xx yy zz yz xz xy``; see
        :func:`~miniff.ml.descriptor_data.strain_derivatives`), 0 on padding: stress predictions contract
        them with ``dE/dfeatures``.
    """

    def __init__(self, features, mask, features_g=None, charges=None, energies_p=None, tag=None,
                 features_strain=None):
        features = _check_field("features", features, 3)
        dtype = features.dtype
        s, p, d = features.shape
        mask = _check_field("mask", mask, 2, dtype, allow_bool=True)
        _check_count("mask", mask, 0, s, "samples")
        _check_count("mask", mask, 1, p, "points")
        if features_g is not None:
            if isinstance(features_g, torch.Tensor):
                _check_field("features_g", features_g, 5, dtype)
                features_g = SparseJacobian.from_dense(features_g)
            elif not isinstance(features_g, SparseJacobian):
                raise TypeError(f"features_g must be a SparseJacobian or a torch.Tensor, "
                                f"got {type(features_g).__name__}")
            if features_g.dtype != dtype:
                raise ValueError(f"features_g has dtype {features_g.dtype} but features has {dtype}")
            if features_g.n_samples != s:
                raise ValueError(f"features_g has {features_g.n_samples} samples, features has {s}")
            if features_g.n_points != p:
                raise ValueError(f"features_g has {features_g.n_points} points, features has {p}")
            if features_g.n_features != d:
                raise ValueError(f"features_g has {features_g.n_features} features, features has {d}")
        for name, x in (("charges", charges), ("energies_p", energies_p)):
            if x is not None:
                _check_field(name, x, 3, dtype)
                _check_count(name, x, 0, s, "samples")
                _check_count(name, x, 1, p, "points")
                if x.shape[2] != 1:
                    raise ValueError(f"{name} must have shape (S, M, 1), got {tuple(x.shape)}")
        if features_strain is not None:
            _check_field("features_strain", features_strain, 4, dtype)
            if tuple(features_strain.shape) != (s, p, d, 6):
                raise ValueError(f"features_strain must have shape ({s}, {p}, {d}, 6), "
                                 f"got {tuple(features_strain.shape)}")
        self.features_strain = features_strain
        self.features = features
        self.mask = mask
        self.features_g = features_g
        self.charges = charges
        self.energies_p = energies_p
        self.tag = tag

    dtype = property(lambda self: self.features.dtype, doc="Floating-point dtype of the data.")
    n_samples = property(lambda self: self.features.shape[0], doc="Number of samples S.")
    n_species = property(lambda self: self.features.shape[1], doc="Max atoms of this species per sample M.")
    n_points = n_species
    n_features = property(lambda self: self.features.shape[2], doc="Number of features F.")
    n_atoms = property(lambda self: None if self.features_g is None else self.features_g.n_atoms,
                       doc="Max atoms per sample N (from the Jacobian; None without it).")
    n_coords = property(lambda self: None if self.features_g is None else 3, doc="3 with a Jacobian, else None.")

    def __len__(self):
        return self.n_samples

    def __getitem__(self, index):
        """``ds[i]``: the tuple of tensors of sample ``i``: ``(features [M, F], mask [M], features_g [M, F, N, 3]
        (dense), charges [M, 1], energies_p [M, 1])`` (fields that are None left out); a slice, index sequence or
        mask gives a sub-dataset."""
        i = _sample_index(index, self.n_samples)
        if i is None:
            return self.subset(_as_index_tensor(index, self.n_samples))
        one = self.subset(torch.tensor([i]))
        jac = None if one.features_g is None else one.features_g.to_dense()[0]
        return Sample((x for x in (self.features[i], self.mask[i], jac,
                                   None if self.charges is None else self.charges[i],
                                   None if self.energies_p is None else self.energies_p[i]) if x is not None), one)

    def __repr__(self):
        return (f"PerPointDataset(tag={self.tag!r}, n_samples={self.n_samples}, n_points={self.n_points}, "
                f"n_features={self.n_features}, gradients={self.is_gradient_available()}, dtype={self.dtype})")

    def is_gradient_available(self):
        """True if the feature Jacobian is stored."""
        return self.features_g is not None

    def is_strain_available(self):
        """True if the strain derivatives of the features (for stresses) are stored."""
        return self.features_strain is not None

    def _replace(self, **kw):
        fields = dict(features=self.features, mask=self.mask, features_g=self.features_g, charges=self.charges,
                      energies_p=self.energies_p, tag=self.tag, features_strain=self.features_strain)
        fields.update(kw)
        return PerPointDataset(**fields)

    def to(self, dtype):
        """A copy with every floating-point field cast to ``dtype``."""
        cast = lambda x: None if x is None else (x if x.dtype == torch.bool else x.to(dtype))  # noqa: E731
        return PerPointDataset(self.features.to(dtype), cast(self.mask),
                               None if self.features_g is None else self.features_g.to(dtype),
                               cast(self.charges), cast(self.energies_p), self.tag, cast(self.features_strain))

    def subset(self, indices):
        """A dataset of the selected samples (Tensor/sequence of indices, slice or boolean mask)."""
        idx = _as_index_tensor(indices, self.n_samples)
        take = lambda x: None if x is None else x[idx]  # noqa: E731
        return PerPointDataset(self.features[idx], self.mask[idx],
                               None if self.features_g is None else self.features_g.subset(idx),
                               take(self.charges), take(self.energies_p), self.tag, take(self.features_strain))

    @staticmethod
    def assert_compatible(items):
        """Raise ValueError unless the datasets can be concatenated (dtype, F, fields present)."""
        items = _check_same_kind(items, PerPointDataset, ("features_g", "charges", "energies_p", "features_strain"))
        for i, d in enumerate(items):
            if d.n_features != items[0].n_features:
                raise ValueError(f"items[{i}] has {d.n_features} features, items[0] has {items[0].n_features}")

    @staticmethod
    def cat(items, tag=None, n_atoms=None):
        """Concatenate along samples, zero-padding points (and atoms of the Jacobian) to the largest."""
        items = _datasets(items)
        PerPointDataset.assert_compatible(items)
        p = max(d.n_points for d in items)
        features = torch.cat([_pad(d.features, 1, p) for d in items])
        mask = torch.cat([_pad(d.mask, 1, p) for d in items])
        opt = {}
        for f in ("charges", "energies_p", "features_strain"):
            if getattr(items[0], f) is not None:
                opt[f] = torch.cat([_pad(getattr(d, f), 1, p) for d in items])
        jac = None
        if items[0].features_g is not None:
            jac = SparseJacobian.cat([d.features_g for d in items], n_points=p, n_atoms=n_atoms)
        return PerPointDataset(features, mask, jac, tag=tag if tag is not None else items[0].tag, **opt)

    @classmethod
    def from_cells(cls, cells, descriptors, specimen, values=None, grad=False, charge=False, energies_p=False,
                   tag=None, dtype=torch.float64, n_threads=None, progress=None, strain=False):
        """Descriptors of the atoms of one species in a list of wrappers (0.1.4 signature).

        Parameters
        ----------
        cells : list of NeighborWrapper
            With distances computed up to the descriptors' cutoff.
        descriptors : list of LocalPotential
            Descriptors centred on the species.
        specimen : str or int
            The species label, or its index in the sorted species of all cells.
        values : ignored
            0.1.4 passed encoded species here; labels are read from the cells.
        grad : bool
            Compute the sparse Jacobian.
        charge, energies_p : bool
            Collect ``meta["charges"]`` / ``meta["partial-energy"]``.
        tag : str, optional
            Defaults to the species label.
        dtype : torch.dtype
        n_threads : int or None
        progress : bool or None
            Show a progress bar (None: only for many cells on a terminal).
        strain : bool
            Compute the strain derivatives of the features (``features_strain``, for stress training).
        """
        del values
        cells = list(cells)
        if not isinstance(specimen, str):
            key = encode_species(cells)[1]
            specimen = str(key[int(specimen)])
        n_atoms = max((c.size for c in cells), default=0)
        features, mask, jac, atoms, *strain_derivs = prepare_descriptor_data(
            cells, descriptors, specimen, grad=grad, dtype=dtype, n_threads=n_threads, progress=progress,
            n_atoms=n_atoms, strain=strain)
        extra = {"features_strain": strain_derivs[0]} if strain else {}
        for name, flag, key in (("charges", charge, "charges"), ("energies_p", energies_p, "partial-energy")):
            if flag:
                t = torch.zeros(features.shape[0], features.shape[1], 1, dtype=dtype)
                for s, (c, idx) in enumerate(zip(cells, atoms, strict=True)):
                    if key not in c.meta:
                        raise KeyError(f"cells[{s}].meta has no {key!r}")
                    v = np.asarray(c.meta[key], dtype=float).reshape(-1)
                    if len(v) != c.size:
                        raise ValueError(f"cells[{s}].meta[{key!r}] must have {c.size} entries, got {len(v)}")
                    t[s, :len(idx), 0] = torch.from_numpy(v[idx]).to(dtype)
                extra[name] = t
        return cls(features, mask, jac, tag=specimen if tag is None else tag, **extra)

    def get_features_hist(self, bins=100, margin=0):
        """Histograms of every feature over real atoms.

        Returns
        -------
        ndarray of shape (F, 2, bins + 1)
            Row 0: bin edges; row 1: counts (last entry 0).
        """
        x = self.features[self.mask != 0].detach().cpu().numpy()
        out = np.zeros((self.n_features, 2, bins + 1))
        for k in range(self.n_features):
            lo, hi = x[:, k].min(initial=np.inf), x[:, k].max(initial=-np.inf)
            if not hi > lo:
                raise ValueError(f"feature {k} is constant (or there are no atoms): cannot build a histogram")
            span = hi - lo
            counts, edges = np.histogram(x[:, k], bins=bins, range=(lo - margin * span, hi + margin * span))
            out[k, 0], out[k, 1, :-1] = edges, counts
        return out


class Dataset(torch.utils.data.Dataset):
    """A per-cell dataset with the per-point datasets of every species (one per NN).

    Parameters
    ----------
    per_cell_dataset : PerCellDataset
    *per_point_datasets : PerPointDataset
        One per species, in the order of the networks that will consume them.
    """

    def __init__(self, per_cell_dataset, *per_point_datasets):
        if not isinstance(per_cell_dataset, PerCellDataset):
            raise TypeError(f"per_cell_dataset must be a PerCellDataset, got {type(per_cell_dataset).__name__}")
        if not per_point_datasets:
            raise ValueError("at least one PerPointDataset is required")
        for k, d in enumerate(per_point_datasets):
            name = f"per_point_datasets[{k}]"
            if not isinstance(d, PerPointDataset):
                raise TypeError(f"{name} must be a PerPointDataset, got {type(d).__name__}")
            if d.dtype != per_cell_dataset.dtype:
                raise ValueError(f"{name} has dtype {d.dtype} but per_cell_dataset has {per_cell_dataset.dtype}")
            if d.n_samples != per_cell_dataset.n_samples:
                raise ValueError(f"{name} has {d.n_samples} samples but per_cell_dataset has "
                                 f"{per_cell_dataset.n_samples}")
            if d.n_atoms is not None and per_cell_dataset.n_atoms is not None \
                    and d.n_atoms != per_cell_dataset.n_atoms:
                raise ValueError(f"{name} has n_atoms={d.n_atoms} but per_cell_dataset has "
                                 f"{per_cell_dataset.n_atoms}")
        self._per_cell = per_cell_dataset
        self._per_point = tuple(per_point_datasets)

    per_cell_dataset = property(lambda self: self._per_cell, doc="The PerCellDataset.")
    per_point_datasets = property(lambda self: self._per_point, doc="Tuple of PerPointDataset, one per species.")
    dtype = property(lambda self: self._per_cell.dtype, doc="Floating-point dtype of the data.")
    n_samples = property(lambda self: self._per_cell.n_samples, doc="Number of samples S.")
    tags = property(lambda self: tuple(d.tag for d in self._per_point), doc="Species tag of every per-point set.")

    @property
    def n_atoms(self):
        """Max atoms per sample N (from the per-cell mask or the Jacobians; None if unknown)."""
        if self._per_cell.n_atoms is not None:
            return self._per_cell.n_atoms
        sizes = [d.n_atoms for d in self._per_point if d.n_atoms is not None]
        return max(sizes) if sizes else None

    def __len__(self):
        return self.n_samples

    def __getitem__(self, index):
        """``ds[i]``: nested tuples of tensors of sample ``i``, ``(per_cell[i], *(d[i] for d in per_point))``; a
        slice, index sequence or mask gives a sub-dataset."""
        i = _sample_index(index, self.n_samples)
        if i is None:
            return self.subset(index)
        return Sample((self._per_cell[i], *(d[i] for d in self._per_point)), self.subset(torch.tensor([i])))

    def __repr__(self):
        return f"Dataset({self._per_cell!r}, " + ", ".join(repr(d) for d in self._per_point) + ")"

    def is_gradient_available(self):
        """True if both target gradients and all feature Jacobians are stored."""
        return self._per_cell.is_gradient_available() and all(d.is_gradient_available() for d in self._per_point)

    def atom_counts(self):
        """Atoms of every species per sample, Tensor of shape (S, n_species) in the dataset dtype."""
        return torch.stack([(d.mask != 0).sum(1) for d in self._per_point], dim=1).to(self.dtype)

    def atoms_per_sample(self):
        """Real atoms per sample (all species), Tensor of shape (S,), int64 (for per-atom errors)."""
        return torch.stack([(d.mask != 0).sum(1) for d in self._per_point], dim=1).sum(1)

    def to(self, dtype):
        """A copy with every floating-point field cast to ``dtype``."""
        return Dataset(self._per_cell.to(dtype), *(d.to(dtype) for d in self._per_point))

    def subset(self, indices):
        """A dataset of the selected samples (int, slice, index sequence/Tensor or boolean mask)."""
        idx = _as_index_tensor(indices, self.n_samples)
        return Dataset(self._per_cell.subset(idx), *(d.subset(idx) for d in self._per_point))

    def split(self, fraction=0.1, shuffle=False, seed=None):
        """Split into two datasets (e.g. learn and test).

        Parameters
        ----------
        fraction : float or int
            Fraction (float in (0, 1)) or number (int) of samples that go to the second dataset; without
            ``shuffle`` those are the *last* samples (as 0.1.4's ``split_dataset``).
        shuffle : bool
            Pick the second set at random (``seed`` for reproducibility).
        """
        n = self.n_samples
        if isinstance(fraction, (float, np.floating)):
            if not 0 < fraction < 1:
                raise ValueError(f"fraction must be in (0, 1), got {fraction}")
            k = int(round(n * fraction))
        elif isinstance(fraction, (int, np.integer)) and not isinstance(fraction, bool):
            k = int(fraction)
            if not 0 <= k <= n:
                raise ValueError(f"fraction (a count) must be in [0, {n}], got {k}")
        else:
            raise TypeError(f"fraction must be a float or an int, got {type(fraction).__name__}")
        order = torch.arange(n)
        if shuffle:
            g = torch.Generator().manual_seed(0 if seed is None else int(seed))
            order = torch.randperm(n, generator=g)
        return self.subset(order[: n - k]), self.subset(order[n - k:])

    @staticmethod
    def assert_compatible(items):
        """Raise ValueError unless the datasets can be concatenated."""
        items = _datasets(items)
        if not items:
            raise ValueError("items must not be empty")
        for i, d in enumerate(items):
            if not isinstance(d, Dataset):
                raise TypeError(f"items[{i}] is not a Dataset")
            if len(d.per_point_datasets) != len(items[0].per_point_datasets):
                raise ValueError(f"items[{i}] has {len(d.per_point_datasets)} per-point datasets, "
                                 f"items[0] has {len(items[0].per_point_datasets)}")
        PerCellDataset.assert_compatible([d.per_cell_dataset for d in items])
        for k in range(len(items[0].per_point_datasets)):
            PerPointDataset.assert_compatible([d.per_point_datasets[k] for d in items])

    @staticmethod
    def cat(items):
        """Concatenate datasets (or samples ``ds[i]``) along samples (usable as ``collate_fn`` of a DataLoader)."""
        items = _datasets(items)
        Dataset.assert_compatible(items)
        per_cell = PerCellDataset.cat([d.per_cell_dataset for d in items])
        a = per_cell.n_atoms
        if a is None:
            sizes = [d.n_atoms for d in items if d.n_atoms is not None]
            a = max(sizes) if sizes else None
        per_point = [PerPointDataset.cat([d.per_point_datasets[k] for d in items], n_atoms=a)
                     for k in range(len(items[0].per_point_datasets))]
        return Dataset(per_cell, *per_point)

    collate = cat
