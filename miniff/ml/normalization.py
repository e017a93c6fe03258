"""Linear normalisation of datasets so that networks see numbers of order one.

Forward maps (``fw``; ``bw`` are the exact inverses):

- total energies ``E' = (E - counts @ energy_offsets) / energy_scale`` (``counts [S, n_species]``);
- per-atom energies of species ``k``: ``e' = (e - energy_offsets[k]) / energy_scale``;
- positions are measured in units of ``length_scale``, so energy gradients
  ``G' = G * length_scale / energy_scale``;
- features ``F' = (F - features_offsets[k]) @ pinv(features_scale[k])`` where ``features_scale[k]`` is a
  ``[F', F]`` matrix with ``F = F' @ features_scale[k] + features_offsets[k]`` (diagonal by default; with
  PCA its rows are orthogonal and ``D' <= D``);
- feature Jacobians ``dF'/dr' = dF/dr @ pinv(features_scale[k]) * length_scale``;
- charges ``q' = (q - charges_offsets[k]) / charges_scale[k]``;
- stresses ``sigma' = sigma / energy_scale`` (volumes stay in Å³, so that ``sigma' V`` is the virial in
  normalised energy units);
- strain derivatives of the features ``dF'/d eps = dF/d eps @ pinv(features_scale[k])`` (a strain has no unit).
"""

import torch

from miniff.ml.datasets import Dataset, PerCellDataset, PerPointDataset
from miniff.ml.normalization_inputs import NormalizationInputs, _lsq_offsets

__all__ = ["Normalization", "NormalizationInputs"]


def _scalar(name, x, allow_none=False):
    if x is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be given")
    t = torch.as_tensor(x)
    if not t.dtype.is_floating_point:
        t = t.to(torch.get_default_dtype())
    if t.numel() != 1:
        raise ValueError(f"{name} must be a scalar, got shape {tuple(t.shape)}")
    t = t.reshape(())
    if not bool(torch.isfinite(t)) or float(t) == 0:
        raise ValueError(f"{name} must be finite and nonzero, got {float(t)}")
    return t


def _matrix(name, x):
    t = torch.as_tensor(x)
    if not t.dtype.is_floating_point:
        t = t.to(torch.get_default_dtype())
    if t.ndim == 1:
        t = torch.diag(t)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a vector or a matrix, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


class Normalization:
    """Energy, length, feature and charge scales/offsets (see the module docstring for the maps).

    Parameters
    ----------
    energy_scale : float or 0-d Tensor, eV
    features_scale : list of Tensor
        Per species a ``[F', F]`` matrix (a ``[F]`` vector means a diagonal matrix).
    energy_offsets : Tensor of shape (n_species, 1), eV per atom
    features_offsets : list of Tensor of shape (F,)
    length_scale : float or 0-d Tensor, Å, optional
        Needed for gradients/forces.
    charges_scale, charges_offsets : list of 0-d Tensor, optional
    """

    def __init__(self, energy_scale, features_scale, energy_offsets, features_offsets, length_scale=None,
                 charges_scale=None, charges_offsets=None):
        self.energy_scale = _scalar("energy_scale", energy_scale)
        dtype = self.energy_scale.dtype
        self.features_scale = [_matrix(f"features_scale[{k}]", s).to(dtype) for k, s in enumerate(features_scale)]
        n = len(self.features_scale)
        eo = torch.as_tensor(energy_offsets).to(dtype)
        if eo.ndim == 1:
            eo = eo[:, None]
        if eo.shape != (n, 1):
            raise ValueError(f"energy_offsets must have shape ({n}, 1), got {tuple(eo.shape)}")
        self.energy_offsets = eo
        if len(features_offsets) != n:
            raise ValueError(f"features_offsets has {len(features_offsets)} entries, features_scale has {n}")
        self.features_offsets = []
        for k, (o, s) in enumerate(zip(features_offsets, self.features_scale, strict=True)):
            o = torch.as_tensor(o).to(dtype)
            if o.shape != (s.shape[1],):
                raise ValueError(f"features_offsets[{k}] must have shape ({s.shape[1]},), got {tuple(o.shape)}")
            self.features_offsets.append(o)
        self.length_scale = _scalar("length_scale", length_scale, allow_none=True)
        if self.length_scale is not None:
            self.length_scale = self.length_scale.to(dtype)
        self.charges_scale = None if charges_scale is None else [
            _scalar(f"charges_scale[{k}]", c).to(dtype) for k, c in enumerate(charges_scale)]
        self.charges_offsets = None if charges_offsets is None else [
            torch.as_tensor(c).to(dtype).reshape(()) for c in charges_offsets]
        self._pinv = [torch.linalg.pinv(s) for s in self.features_scale]

    # ------------------------------------------------------------------ misc
    @property
    def dtype(self):
        """Floating-point dtype of the parameters."""
        return self.energy_scale.dtype

    @property
    def n_species(self):
        """Number of species."""
        return len(self.features_scale)

    def __repr__(self):
        return (f"Normalization(energy_scale={float(self.energy_scale):.4g}, n_species={self.n_species}, "
                f"length_scale={None if self.length_scale is None else float(self.length_scale)})")

    def is_gradient_available(self):
        """True if a length scale is set (gradients can be normalised)."""
        return self.length_scale is not None

    def _need_length(self):
        if self.length_scale is None:
            raise ValueError("this Normalization has no length_scale: it cannot transform gradients")

    def to(self, dtype):
        """A copy with all parameters cast to ``dtype``."""
        d = {k: v for k, v in self.state_dict().items()}
        d["energy_scale"] = d["energy_scale"].to(dtype)
        return Normalization(**d)

    def state_dict(self):
        """The 7 constructor fields as a dict of tensors / lists of tensors (no copies)."""
        return {
            "energy_scale": self.energy_scale,
            "features_scale": list(self.features_scale),
            "energy_offsets": self.energy_offsets,
            "features_offsets": list(self.features_offsets),
            "length_scale": self.length_scale,
            "charges_scale": None if self.charges_scale is None else list(self.charges_scale),
            "charges_offsets": None if self.charges_offsets is None else list(self.charges_offsets),
        }

    def load_state_dict(self, data):
        """Replace all parameters from a ``state_dict()``."""
        unknown = set(data) - set(self.state_dict())
        if unknown:
            raise ValueError(f"unknown Normalization state keys: {sorted(unknown)}")
        self.__init__(**data)

    @classmethod
    def from_state_dict(cls, data):
        """Build from a ``state_dict()``."""
        return cls(**data)

    # ------------------------------------------------------------------ energies
    def fw_energy(self, energy, atom_counts, inplace=False):
        """Total energies ``[S, 1]`` eV -> normalised; ``atom_counts [S, n_species]``."""
        out = (energy - atom_counts.to(energy) @ self.energy_offsets.to(energy)) \
            / self.energy_scale.to(energy)
        return energy.copy_(out) if inplace else out

    def bw_energy(self, energy, atom_counts, inplace=False):
        """Normalised total energies ``[S, 1]`` -> eV."""
        out = energy * self.energy_scale.to(energy) \
            + atom_counts.to(energy) @ self.energy_offsets.to(energy)
        return energy.copy_(out) if inplace else out

    def fw_energy_components(self, energy, k, inplace=False):
        """Per-atom energies ``[S, M, 1]`` eV of species ``k`` -> normalised."""
        out = (energy - self.energy_offsets[k, 0].to(energy)) / self.energy_scale.to(energy)
        return energy.copy_(out) if inplace else out

    def bw_energy_components(self, energy, k, inplace=False):
        """Normalised per-atom energies ``[S, M, 1]`` of species ``k`` -> eV."""
        out = energy * self.energy_scale.to(energy) + self.energy_offsets[k, 0].to(energy)
        return energy.copy_(out) if inplace else out

    def _g_factor(self, like):
        """``length_scale / energy_scale`` with the dtype and device of the tensor ``like``."""
        self._need_length()
        return (self.length_scale / self.energy_scale).to(like)

    def fw_energy_g(self, energy_g, inplace=False):
        """Energy gradients ``[S, N, 3]`` eV/Å -> normalised."""
        out = energy_g * self._g_factor(energy_g)
        return energy_g.copy_(out) if inplace else out

    def bw_energy_g(self, energy_g, inplace=False):
        """Normalised energy gradients ``[S, N, 3]`` -> eV/Å."""
        out = energy_g / self._g_factor(energy_g)
        return energy_g.copy_(out) if inplace else out

    def fw_stress(self, stress, inplace=False):
        """Stresses ``[S, 6]`` eV/Å³ -> normalised (divided by ``energy_scale``)."""
        out = stress / self.energy_scale.to(stress)
        return stress.copy_(out) if inplace else out

    def bw_stress(self, stress, inplace=False):
        """Normalised stresses ``[S, 6]`` -> eV/Å³."""
        out = stress * self.energy_scale.to(stress)
        return stress.copy_(out) if inplace else out

    # ------------------------------------------------------------------ features
    def fw_features_strain(self, x, k):
        """Strain derivatives ``[S, M, F, 6]`` of the features of species ``k`` -> normalised ``[S, M, F', 6]``."""
        return torch.matmul(x.transpose(-1, -2), self._pinv[k].to(x)).transpose(-1, -2)

    def bw_features_strain(self, x, k):
        """Normalised strain derivatives ``[S, M, F', 6]`` of species ``k`` -> raw ``[S, M, F, 6]``."""
        return torch.matmul(x.transpose(-1, -2), self.features_scale[k].to(x)).transpose(-1, -2)

    def fw_features(self, x, k, inplace=False):
        """Features ``[..., F]`` of species ``k`` -> normalised ``[..., F']``."""
        out = (x - self.features_offsets[k].to(x)) @ self._pinv[k].to(x)
        if inplace:
            if out.shape != x.shape:
                raise ValueError("inplace transform impossible: the feature count changes (PCA)")
            return x.copy_(out)
        return out

    def bw_features(self, x, k, inplace=False):
        """Normalised features ``[..., F']`` of species ``k`` -> raw ``[..., F]``."""
        out = x @ self.features_scale[k].to(x) + self.features_offsets[k].to(x)
        if inplace:
            if out.shape != x.shape:
                raise ValueError("inplace transform impossible: the feature count changes (PCA)")
            return x.copy_(out)
        return out

    @staticmethod
    def _jac_map(values_edc, m, factor):
        """``values_edc [E, F, 3]`` -> ``sum_d values[e, d, c] m[d, k] * factor`` (``[E, D', 3]``)."""
        m = m.to(values_edc)
        if m.shape[0] == m.shape[1] and bool((m == torch.diag(torch.diagonal(m))).all()):
            return values_edc * (torch.diagonal(m) * factor)[None, :, None]
        return torch.matmul(values_edc.transpose(1, 2), m * factor).transpose(1, 2).contiguous()

    def fw_features_g(self, x, k, inplace=False):
        """Feature Jacobian of species ``k`` -> normalised.

        ``x`` is a :class:`SparseJacobian` (values ``[E, F, 3]``) or a dense ``[S, M, F, N, 3]`` tensor.
        """
        self._need_length()
        return self._map_g(x, self._pinv[k], self.length_scale, inplace)

    def bw_features_g(self, x, k, inplace=False):
        """Normalised feature Jacobian of species ``k`` -> 1/Å."""
        self._need_length()
        return self._map_g(x, self.features_scale[k], 1 / self.length_scale, inplace)

    def _map_g(self, x, m, factor, inplace):
        if isinstance(x, torch.Tensor):
            out = torch.einsum("spdac,dk->spkac", x, m.to(x)) * factor.to(x)
            return x.copy_(out) if inplace else out
        values = self._jac_map(x.values_edc, m, factor.to(x.values_edc))
        if inplace:
            if values.shape != x.values_edc.shape:
                raise ValueError("inplace transform impossible: the feature count changes (PCA)")
            x.values_edc = values
            return x
        return x.with_values(values)

    def fw_charges(self, x, k, inplace=False):
        """Charges ``[S, M, 1]`` of species ``k`` -> normalised."""
        if self.charges_scale is None:
            raise ValueError("this Normalization has no charge scales")
        out = (x - self.charges_offsets[k].to(x)) / self.charges_scale[k].to(x)
        return x.copy_(out) if inplace else out

    def bw_charges(self, x, k, inplace=False):
        """Normalised charges ``[S, M, 1]`` of species ``k`` -> e."""
        if self.charges_scale is None:
            raise ValueError("this Normalization has no charge scales")
        out = x * self.charges_scale[k].to(x) + self.charges_offsets[k].to(x)
        return x.copy_(out) if inplace else out

    # ------------------------------------------------------------------ datasets
    @staticmethod
    def atom_counts(dataset):
        """Atoms of every species per sample, Tensor of shape (S, n_species)."""
        return dataset.atom_counts()

    def _apply(self, dataset, fw, inplace):
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a Dataset, got {type(dataset).__name__}")
        if len(dataset.per_point_datasets) != self.n_species:
            raise ValueError(f"dataset has {len(dataset.per_point_datasets)} species, normalization has "
                             f"{self.n_species}")
        counts = dataset.atom_counts()
        pc = dataset.per_cell_dataset
        energy = (self.fw_energy if fw else self.bw_energy)(pc.energy, counts)
        energy_g = stress = None
        if pc.energy_g is not None:
            energy_g = (self.fw_energy_g if fw else self.bw_energy_g)(pc.energy_g)
        if pc.stress is not None:
            stress = (self.fw_stress if fw else self.bw_stress)(pc.stress)
        per_point = []
        for k, d in enumerate(dataset.per_point_datasets):
            maskf = (d.mask != 0).to(d.dtype)[..., None]
            feat = (self.fw_features if fw else self.bw_features)(d.features, k) * maskf
            jac = None
            if d.features_g is not None:
                jac = (self.fw_features_g if fw else self.bw_features_g)(d.features_g, k)
            charges = energies_p = None
            if d.charges is not None:
                charges = (self.fw_charges if fw else self.bw_charges)(d.charges, k) * maskf
            if d.energies_p is not None:
                energies_p = (self.fw_energy_components if fw else self.bw_energy_components)(d.energies_p, k) * maskf
            strain = None
            if d.features_strain is not None:
                strain = (self.fw_features_strain if fw else self.bw_features_strain)(d.features_strain, k)
            per_point.append((feat, jac, charges, energies_p, strain))
        if not inplace:
            return Dataset(PerCellDataset(energy, pc.mask, energy_g, pc.has_forces, stress, pc.volume, pc.has_stress),
                           *(PerPointDataset(f, d.mask, j, c, e, tag=d.tag, features_strain=w)
                             for (f, j, c, e, w), d in zip(per_point, dataset.per_point_datasets, strict=True)))
        pc.energy, pc.energy_g, pc.stress = energy, energy_g, stress
        for (f, j, c, e, w), d in zip(per_point, dataset.per_point_datasets, strict=True):
            d.features, d.features_g, d.charges, d.energies_p, d.features_strain = f, j, c, e, w
        return dataset

    def fw(self, dataset, inplace=False):
        """Normalise a whole :class:`Dataset` (a new one, or the same object when ``inplace``)."""
        return self._apply(dataset, True, inplace)

    def bw(self, dataset, inplace=False):
        """Undo :meth:`fw` on a whole :class:`Dataset`."""
        return self._apply(dataset, False, inplace)

    # ------------------------------------------------------------------ construction from data
    @staticmethod
    def lsq_energy_offsets(dataset, pad=True):
        """Per-species energy per atom from a least-squares fit of total energies to atom counts.

        Parameters
        ----------
        dataset : Dataset
        pad : bool
            If True, a rank-deficient system (fewer distinct compositions than species) gets the
            minimum-norm solution; if False it raises ValueError.

        Returns
        -------
        Tensor of shape (n_species, 1), eV per atom
        """
        return _lsq_offsets(dataset.atom_counts(), dataset.per_cell_dataset.energy, pad).to(dataset.dtype)

    @classmethod
    def from_dataset(cls, dataset, ignore_normalization_errors=False, pad=True, offset_energy=False,
                     offset_features="mean", offset_charges=False, scale_energy=1, scale_features=2,
                     scale_charges=1, scale_energy_gradients=1, pca_features=False, energy_spread="total"):
        """Normalisation fitted to a raw (un-normalised) dataset.

        Parameters
        ----------
        dataset : Dataset
        ignore_normalization_errors : bool
            Use a unit scale instead of raising ValueError for constant energies, gradients, features or charges.
        pad : bool
            See :meth:`lsq_energy_offsets`.
        offset_energy : bool
            Subtract per-species energies per atom (least squares) before scaling.
        offset_features : {"mean", True, False}
            Feature offset: middle of the range, minimum, or 0.
        offset_charges : bool
            Subtract the mean charge per species.
        scale_energy : float
            Normalised energies span this range (see ``energy_spread``).
        energy_spread : {"total", "per_atom"}
            Whose range ``scale_energy`` refers to: the (offset) total energies of the cells, or their energies
            per atom. Use ``"per_atom"`` when the cells have very different sizes and the loss is per atom.
        scale_features : float or None
            Normalised features span this range (2: ``[-1, 1]`` with the "mean" offset); None: features are
            used as they are (no offset, no scale; e.g. descriptors that are already asinh-scaled).
        scale_charges : float
        scale_energy_gradients : float
            Normalised energy gradients span (about) this range.
        pca_features : False, int, float or callable
            Decorrelate features: keep ``n`` components (int), components with singular values above this
            fraction of the largest (float), or ``callable(singular_values) -> n``.

        Returns
        -------
        Normalization
        """
        return cls.from_statistics(NormalizationInputs.of_dataset(dataset), ignore_normalization_errors, pad,
                                   offset_energy, offset_features, offset_charges, scale_energy, scale_features,
                                   scale_charges, scale_energy_gradients, pca_features, energy_spread)

    @classmethod
    def from_statistics(cls, stats, ignore_normalization_errors=False, pad=True, offset_energy=False,
                        offset_features="mean", offset_charges=False, scale_energy=1, scale_features=2,
                        scale_charges=1, scale_energy_gradients=1, pca_features=False, energy_spread="total"):
        """Normalisation from the summary of a raw data set (:class:`NormalizationInputs`: made from a
        :class:`Dataset` in memory, or streamed from a descriptor store); the keywords are those of
        :meth:`from_dataset`, which calls this."""
        if not isinstance(stats, NormalizationInputs):
            raise TypeError(f"stats must be NormalizationInputs, got {type(stats).__name__}")

        def fail(msg):
            if not ignore_normalization_errors:
                raise ValueError(msg + " (pass ignore_normalization_errors=True to use a unit scale)")

        dtype = stats.dtype
        n_species = len(stats.n_features)
        counts = stats.counts
        energy = stats.energy
        if offset_energy:
            energy_offsets = _lsq_offsets(counts, energy, pad).to(dtype)
        else:
            energy_offsets = torch.zeros(n_species, 1, dtype=dtype)
        residual = energy - counts @ energy_offsets
        if energy_spread == "per_atom":
            residual = residual / counts.sum(dim=1, keepdim=True).clamp(min=1)
        elif energy_spread != "total":
            raise ValueError(f"energy_spread must be 'total' or 'per_atom', got {energy_spread!r}")
        spread = float(residual.max() - residual.min()) if len(residual) else 0.0
        if not spread > 0:
            fail("energy is constant: cannot scale energies")
            spread = float(scale_energy)
        energy_scale = torch.tensor(spread / scale_energy, dtype=dtype)

        length_scale = None
        if stats.has_energy_g:
            gs = float(stats.energy_g_range[1] - stats.energy_g_range[0]) if stats.energy_g_range else 0.0
            if not gs > 0:
                fail("energy_g is constant: cannot scale gradients")
                gs = float(energy_scale)
            length_scale = energy_scale / gs * scale_energy_gradients

        features_scale, features_offsets = [], []
        has_charges = any(c is not None for c in stats.charges)
        charges_scale = [] if has_charges else None
        charges_offsets = [] if has_charges else None
        for k, n_f in enumerate(stats.n_features):
            if stats.features_range[k] is None:  # a species without atoms: nothing to scale (identity map)
                lo, hi = -torch.ones(n_f, dtype=dtype), torch.ones(n_f, dtype=dtype)
            else:
                lo, hi = stats.features_range[k]
            fs = hi - lo
            const = fs <= 0
            if scale_features is not None and bool(const.any()):
                fail(f"per_point_datasets[{k}] (tag {stats.tags[k]!r}) has constant features "
                     f"{const.nonzero()[:, 0].tolist()}")
                fs = torch.where(const, torch.ones_like(fs), fs)
            if scale_features is None:  # features used as they are (e.g. asinh-scaled descriptors)
                features_scale.append(torch.eye(n_f, dtype=dtype))
                features_offsets.append(torch.zeros(n_f, dtype=dtype))
            elif offset_features == "mean":
                off = lo + fs / 2
            elif offset_features is True:
                off = lo.clone()
            elif offset_features is False or offset_features is None:
                off = torch.zeros_like(lo)
            else:
                raise ValueError(f"offset_features must be 'mean', True or False, got {offset_features!r}")
            if scale_features is not None:
                scale = torch.diag(fs / scale_features)
                if pca_features is not False and pca_features is not None and stats.features_range[k] is not None:
                    if stats.points is None:
                        raise ValueError("pca_features needs the features in memory (Normalization.from_dataset); "
                                         "streamed statistics do not support it")
                    scale = cls._pca_scale(stats.points[k] - off, pca_features, scale_features)
                features_scale.append(scale)
                features_offsets.append(off)
            if charges_scale is not None:
                if stats.charges[k] is None:
                    charges_scale.append(torch.tensor(1, dtype=dtype))
                    charges_offsets.append(torch.tensor(0, dtype=dtype))
                    continue
                q_min, q_max, q_mean, q_count = stats.charges[k]
                qs = float(q_max - q_min) if q_count else 0.0
                if not qs > 0:
                    fail(f"charges of per_point_datasets[{k}] are constant")
                    qs = float(scale_charges)
                charges_scale.append(torch.tensor(qs / scale_charges, dtype=dtype))
                charges_offsets.append(torch.as_tensor(q_mean, dtype=dtype) if offset_charges and q_count
                                       else torch.tensor(0, dtype=dtype))
        return cls(energy_scale, features_scale, energy_offsets, features_offsets, length_scale,
                   charges_scale, charges_offsets)

    @staticmethod
    def _pca_scale(x, pca, scale_features):
        """Row-orthogonal ``[F', F]`` scale from the SVD of centred features ``x [n, F]``."""
        _, sv, vt = torch.linalg.svd(x, full_matrices=False)
        if callable(pca):
            n = int(pca(sv))
        elif isinstance(pca, bool):
            n = int((sv > sv[0] * 1e-12).sum())
        elif isinstance(pca, int):
            n = pca
        elif isinstance(pca, float):
            n = int((sv > sv[0] * pca).sum())
        else:
            raise TypeError(f"pca_features must be False, an int, a float or a callable, got {type(pca).__name__}")
        if not 1 <= n <= len(sv):
            raise ValueError(f"pca_features keeps {n} components; must be in [1, {len(sv)}]")
        proj = x @ vt[:n].T
        spread = proj.max(0).values - proj.min(0).values
        spread = torch.where(spread > 0, spread, torch.ones_like(spread))
        return (spread / scale_features)[:, None] * vt[:n]

    # ------------------------------------------------------------------ modules
    def apply_to_module(self, module, specimen, fw=True, output="energy", simplify=True):
        """Wrap a network so that it works in different units.

        Parameters
        ----------
        module : torch.nn.Module
            A network mapping features to a per-atom output.
        specimen : int
            Species index ``k``.
        fw : bool
            If False, ``module`` works on normalised data and the result takes raw features ``[..., F]`` and
            returns physical outputs (eV or e).  If True, the reverse: ``module`` works on raw data and the
            result works on normalised data.
        output : {"energy", "charge"}
        simplify : bool
            Fuse the added linear maps into neighbouring ``Linear`` layers.

        Returns
        -------
        torch.nn.Sequential
        """
        from miniff.ml.networks import linear, simplify_sequential

        k = specimen
        if output == "energy":
            out_scale, out_offset = self.energy_scale, self.energy_offsets[k, 0]
        elif output == "charge":
            if self.charges_scale is None:
                raise ValueError("this Normalization has no charge scales")
            out_scale, out_offset = self.charges_scale[k], self.charges_offsets[k]
        else:
            raise ValueError(f"output must be 'energy' or 'charge', got {output!r}")
        pinv, scale, off = self._pinv[k], self.features_scale[k], self.features_offsets[k]
        if not fw:
            # raw F -> F' = F @ pinv - off @ pinv ; e = e' * s + o
            first = linear(pinv, -(off @ pinv))
            last = linear(out_scale.reshape(1, 1), out_offset.reshape(1))
        else:
            # normalised F' -> F = F' @ scale + off ; e' = (e - o) / s
            first = linear(scale, off)
            last = linear((1 / out_scale).reshape(1, 1), (-out_offset / out_scale).reshape(1))
        params = list(module.parameters())
        dtype = params[0].dtype if params else self.dtype
        seq = torch.nn.Sequential(first.to(dtype), module, last.to(dtype))
        return simplify_sequential(seq) if simplify else seq
