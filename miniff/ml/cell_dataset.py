"""The per-cell dataset of a fit: total energies, their gradients (minus forces) and stresses of every structure.

Shapes (``S`` samples, ``N`` max atoms per cell): ``energy [S, 1]`` eV, ``mask [S, N]``, ``energy_g [S, N, 3]``
eV/Å (= -forces), ``stress [S, 6]`` eV/Å³ (Voigt ``xx yy zz yz xz xy``, ASE sign: ``sigma = (1/V) dE/d eps``),
``volume [S]`` Å³.  :class:`~miniff.ml.Normalization` scales ``stress`` like energies (divided by its
``energy_scale``) and leaves ``volume`` in Å³.
"""

import numpy as np
import torch

from miniff.ml.dataset_fields import (
    Sample,
    _as_index_tensor,
    _check_count,
    _check_field,
    _check_same_kind,
    _datasets,
    _pad,
    _sample_index,
)

__all__ = ["PerCellDataset"]


def _flags(name, x, n, requires, present):
    """A ``[S]`` bool tensor of ``x`` (None when every sample is flagged)."""
    if x is None:
        return None
    if not present:
        raise ValueError(f"{name} requires {requires}")
    x = torch.as_tensor(x).to(torch.bool).reshape(-1)
    _check_count(name, x, 0, n, "samples")
    return None if bool(x.all()) else x


class PerCellDataset(torch.utils.data.Dataset):
    """Per-structure targets: total energies and (optionally) their gradients and stresses.

    Parameters
    ----------
    energy : Tensor of shape (S, 1), floating point, eV
        Total energy of every sample (a column).
    mask : Tensor of shape (S, N), optional
        1 (or True) for real atoms, 0 for padding.  Required with ``energy_g``.
    energy_g : Tensor of shape (S, N, 3), optional, eV/Å
        Gradients of the total energy with respect to atomic positions (minus forces); 0 on padding.
    has_forces : Tensor of shape (S,), bool, optional
        Which samples have reference gradients (with ``energy_g``); the others (zeros in ``energy_g``) are
        energy-only data: force losses and errors skip them.  None: every sample has them.
    stress : Tensor of shape (S, 6), optional, eV/Å³
        Reference stresses (Voigt ``xx yy zz yz xz xy``, ASE sign); requires ``volume``.
    volume : Tensor of shape (S,), optional, Å³
        Cell volumes (positive; needed to turn predicted virials into stresses).
    has_stress : Tensor of shape (S,), bool, optional
        Which samples have a reference stress (with ``stress``); the others (zeros in ``stress``) do not
        contribute to stress losses and errors.  None: every sample has one.
    """

    def __init__(self, energy, mask=None, energy_g=None, has_forces=None, stress=None, volume=None, has_stress=None):
        energy = _check_field("energy", energy, 2)
        dtype = energy.dtype
        if energy.shape[1] != 1:
            raise ValueError(f"energy must be a column of shape (S, 1), got {tuple(energy.shape)}")
        n = energy.shape[0]
        if mask is not None:
            mask = _check_field("mask", mask, 2, dtype, allow_bool=True)
            _check_count("mask", mask, 0, n, "samples")
        if energy_g is not None:
            if mask is None:
                raise ValueError("energy_g requires mask (which atoms are real)")
            energy_g = _check_field("energy_g", energy_g, 3, dtype)
            _check_count("energy_g", energy_g, 0, n, "samples")
            _check_count("energy_g", energy_g, 1, mask.shape[1], "atoms")
            if energy_g.shape[2] != 3:
                raise ValueError(f"energy_g must have shape (S, N, 3), got {tuple(energy_g.shape)}")
        if volume is not None:
            volume = _check_field("volume", volume, 1, dtype)
            _check_count("volume", volume, 0, n, "samples")
            if bool((volume <= 0).any()):
                raise ValueError("volume must be positive (Å³)")
        if stress is not None:
            if volume is None:
                raise ValueError("stress requires volume (Å³)")
            stress = _check_field("stress", stress, 2, dtype)
            _check_count("stress", stress, 0, n, "samples")
            if stress.shape[1] != 6:
                raise ValueError(f"stress must have shape (S, 6) (Voigt xx yy zz yz xz xy), got {tuple(stress.shape)}")
        self.energy = energy
        self.mask = mask
        self.energy_g = energy_g
        self.has_forces = _flags("has_forces", has_forces, n, "energy_g", energy_g is not None)
        self.stress = stress
        self.volume = volume
        self.has_stress = _flags("has_stress", has_stress, n, "stress", stress is not None)

    dtype = property(lambda self: self.energy.dtype, doc="Floating-point dtype of the data.")
    n_samples = property(lambda self: self.energy.shape[0], doc="Number of samples S.")
    n_atoms = property(lambda self: None if self.mask is None else self.mask.shape[1],
                       doc="Max atoms per sample N (None without mask).")
    n_coords = property(lambda self: None if self.energy_g is None else 3, doc="3 with gradients, else None.")

    def __len__(self):
        return self.n_samples

    def _fields(self):
        return (self.energy, self.mask, self.energy_g, self.stress, self.volume)

    def __getitem__(self, index):
        """``ds[i]``: the tuple of tensors of sample ``i``: ``(energy [1], mask [N], energy_g [N, 3], stress [6],
        volume [])`` (fields that are None left out); a slice, index sequence or mask gives a sub-dataset."""
        i = _sample_index(index, self.n_samples)
        if i is None:
            return self.subset(_as_index_tensor(index, self.n_samples))
        return Sample((x[i] for x in self._fields() if x is not None), self.subset(torch.tensor([i])))

    def __repr__(self):
        return (f"PerCellDataset(n_samples={self.n_samples}, n_atoms={self.n_atoms}, "
                f"stress={self.is_stress_available()}, dtype={self.dtype})")

    def is_gradient_available(self):
        """True if energy gradients (forces) are stored."""
        return self.energy_g is not None

    def is_stress_available(self):
        """True if reference stresses are stored."""
        return self.stress is not None

    def atoms_per_sample(self):
        """Number of real atoms per sample, Tensor of shape (S,), int64 (None without mask)."""
        return None if self.mask is None else (self.mask != 0).sum(1)

    def force_mask(self):
        """The atoms whose reference gradients count, Tensor of shape (S, N) (``mask`` without the samples of
        ``has_forces == False``; None without mask)."""
        if self.mask is None or self.has_forces is None:
            return self.mask
        return self.mask * self.has_forces.to(self.mask.dtype)[:, None]

    def stress_mask(self):
        """Which samples' reference stresses count, Tensor of shape (S,) bool (None without stresses)."""
        if self.stress is None:
            return None
        return torch.ones(self.n_samples, dtype=torch.bool, device=self.stress.device) if self.has_stress is None \
            else self.has_stress

    def to(self, dtype):
        """A copy with every floating-point field cast to ``dtype``."""
        cast = lambda x: None if x is None else (x if x.dtype == torch.bool else x.to(dtype))  # noqa: E731
        return PerCellDataset(self.energy.to(dtype), cast(self.mask), cast(self.energy_g), self.has_forces,
                              cast(self.stress), cast(self.volume), self.has_stress)

    def subset(self, indices):
        """A dataset of the selected samples (Tensor/sequence of indices, slice or boolean mask)."""
        idx = _as_index_tensor(indices, self.n_samples)
        take = lambda x: None if x is None else x[idx]  # noqa: E731
        return PerCellDataset(self.energy[idx], take(self.mask), take(self.energy_g), take(self.has_forces),
                              take(self.stress), take(self.volume), take(self.has_stress))

    @staticmethod
    def assert_compatible(items):
        """Raise ValueError unless the datasets can be concatenated (same dtype and fields)."""
        _check_same_kind(items, PerCellDataset, ("mask", "energy_g", "stress", "volume"))

    @staticmethod
    def cat(items):
        """Concatenate along samples, zero-padding the atom axis to the largest."""
        items = _datasets(items)
        PerCellDataset.assert_compatible(items)
        energy = torch.cat([d.energy for d in items])

        def flags(name):
            if not any(getattr(d, name) is not None for d in items):
                return None
            return torch.cat([torch.ones(d.n_samples, dtype=torch.bool) if getattr(d, name) is None
                              else getattr(d, name) for d in items])

        stress = volume = None
        if items[0].volume is not None:
            volume = torch.cat([d.volume for d in items])
        if items[0].stress is not None:
            stress = torch.cat([d.stress for d in items])
        if items[0].mask is None:
            return PerCellDataset(energy, volume=volume, stress=stress, has_stress=flags("has_stress"))
        a = max(d.n_atoms for d in items)
        mask = torch.cat([_pad(d.mask, 1, a) for d in items])
        energy_g = None
        if items[0].energy_g is not None:
            energy_g = torch.cat([_pad(d.energy_g, 1, a) for d in items])
        return PerCellDataset(energy, mask, energy_g, flags("has_forces"), stress, volume, flags("has_stress"))

    @classmethod
    def from_cells(cls, cells, values=None, grad=False, dtype=torch.float64, stress=False):
        """Collect ``meta["total-energy"]`` (and ``-meta["forces"]`` if ``grad``, ``meta["stress"]`` if ``stress``)
        of cells.

        Parameters
        ----------
        cells : list of Cell or NeighborWrapper
            Structures with ``meta["total-energy"]`` (eV) and, for ``grad``, ``meta["forces"]`` ``[N, 3]`` eV/Å
            (cells without forces become energy-only samples, see ``has_forces``), for ``stress``,
            ``meta["stress"]`` ``[6]`` eV/Å³ (cells without one, not periodic along all axes or without a
            positive volume do not contribute to the stress, see ``has_stress``).
        values : ignored
            Kept for 0.1.4 signature compatibility (species codes are not needed here).
        grad : bool
            Also collect energy gradients (minus forces).
        dtype : torch.dtype
        stress : bool
            Also collect stresses and cell volumes.

        Returns
        -------
        PerCellDataset
        """
        del values
        cells = list(cells)
        sizes = [len(_cell_coordinates(c)) for c in cells]
        n, a = len(cells), max(sizes, default=0)
        energy = torch.zeros(n, 1, dtype=torch.float64)
        mask = torch.zeros(n, a, dtype=torch.float64)
        energy_g = torch.zeros(n, a, 3, dtype=torch.float64) if grad else None
        has_forces = torch.ones(n, dtype=torch.bool)
        for s, (c, size) in enumerate(zip(cells, sizes, strict=True)):
            meta = c.meta
            if "total-energy" not in meta:
                raise KeyError(f"cells[{s}].meta has no 'total-energy'")
            energy[s, 0] = float(np.asarray(meta["total-energy"], dtype=float))
            mask[s, :size] = 1
            if grad:
                if "forces" not in meta:
                    has_forces[s] = False
                    continue
                f = np.asarray(meta["forces"], dtype=float)
                if f.shape != (size, 3):
                    raise ValueError(f"cells[{s}].meta['forces'] must have shape ({size}, 3), got {f.shape}")
                energy_g[s, :size] = -torch.from_numpy(f)
        if not bool(torch.isfinite(energy).all()):
            raise ValueError("energy (meta['total-energy']) contains NaN or inf")
        if energy_g is not None and not bool(has_forces.any()):
            raise ValueError("cells: no cell has meta['forces'] (needed for force training)")
        if energy_g is not None and not bool(torch.isfinite(energy_g).all()):
            bad = int(torch.nonzero(~torch.isfinite(energy_g).reshape(n, -1).all(dim=1))[0, 0])
            raise ValueError(f"forces (meta['forces']) of cells[{bad}] contain NaN or inf")
        extra = _stresses(cells) if stress else {}
        out = cls(energy, mask, energy_g, has_forces if grad else None, **extra)
        return out.to(dtype)


def _stresses(cells):
    """``{"stress": [S, 6], "volume": [S], "has_stress": [S]}`` of cells (float64; volume 1 where unknown)."""
    n = len(cells)
    stress = torch.zeros(n, 6, dtype=torch.float64)
    volume = torch.ones(n, dtype=torch.float64)
    has_stress = torch.zeros(n, dtype=torch.bool)
    for s, c in enumerate(cells):
        v = abs(float(np.linalg.det(np.asarray(_cell_vectors(c), dtype=float))))
        if not (np.isfinite(v) and v > 0):
            continue
        volume[s] = v
        pbc = getattr(c, "pbc", None)
        if "stress" not in c.meta or (pbc is not None and not bool(np.all(pbc))):   # a stress needs 3D periodicity
            continue
        x = np.asarray(c.meta["stress"], dtype=float)
        if x.shape == (3, 3):
            x = x[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        if x.shape != (6,):
            raise ValueError(f"cells[{s}].meta['stress'] must have shape (6,) (Voigt) or (3, 3), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"stress (meta['stress']) of cells[{s}] contains NaN or inf")
        stress[s] = torch.from_numpy(x)
        has_stress[s] = True
    if not bool(has_stress.any()):
        raise ValueError("cells: no cell has meta['stress'] and a positive volume (needed for stress training)")
    return {"stress": stress, "volume": volume, "has_stress": has_stress}


def _cell_coordinates(c):
    return c.cell.coordinates if hasattr(c, "cell") and hasattr(c.cell, "coordinates") else c.coordinates


def _cell_vectors(c):
    return c.cell.vectors if hasattr(c, "cell") and hasattr(c.cell, "vectors") else c.vectors
