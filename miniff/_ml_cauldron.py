"""Building datasets from cells (``learn_cauldron``) and running networks on them (``forward_cauldron``).

Forces use the sparse Jacobian: ``dE/dr[s, a] = sum_e [s_e = s, a_e = a] dE/dF[s, p_e] . values_edc[e]``,
a gather, a batched dot product and an ``index_add`` -- memory linear in pairs x descriptors.
"""

import contextlib
import copy
import sys

import numpy as np
import torch

from miniff._ml_datasets import Dataset, PerCellDataset, PerPointDataset
from miniff._ml_descriptors import cell_descriptor_data, check_descriptors, descriptors_cutoff, species_of
from miniff._ml_jacobian import SparseJacobian
from miniff._ml_normalization import Normalization

__all__ = ["learn_cauldron", "forward_cauldron", "fw_cauldron", "fw_cauldron_charges", "cpu_copy", "forward",
           "total_energy", "energy_gradients",
           "prepare_descriptor_data"]

#: Below this many cells no progress bar is shown by default.
PROGRESS_MIN_CELLS = 20


def _progress(iterable, total, progress, desc):
    show = progress if progress is not None else (total >= PROGRESS_MIN_CELLS and sys.stderr.isatty())
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def _wrap_cells(cells, cutoff):
    """NeighborWrappers with pairs up to ``cutoff`` (Å) for a list of Cells/NeighborWrappers."""
    out = []
    for s, c in enumerate(cells):
        if hasattr(c, "compute_distances"):  # a NeighborWrapper
            current = getattr(c, "cutoff", None)
            if current is None or current < cutoff:
                c.compute_distances(cutoff)
            out.append(c)
        elif hasattr(c, "vectors") and hasattr(c, "coordinates"):
            from miniff.kernel import NeighborWrapper

            kw = {}
            pbc = getattr(c, "pbc", None)
            if pbc is None and isinstance(getattr(c, "meta", None), dict):
                pbc = c.meta.get("pbc")
            if pbc is not None:
                kw["pbc"] = pbc
            out.append(NeighborWrapper(c, cutoff=cutoff, **kw))
        else:
            raise TypeError(f"cells[{s}] must be a Cell or a NeighborWrapper, got {type(c).__name__}")
    return out


def prepare_descriptor_data(cells, descriptors, species, grad=False, dtype=torch.float64, n_threads=None,
                            progress=None, n_atoms=None):
    """Per-point data of one species for a list of wrappers.

    Parameters
    ----------
    cells : list of NeighborWrapper
        With distances computed up to the descriptors' cutoff.
    descriptors : list of LocalPotential
        Descriptors centred on ``species``.
    species : str
    grad : bool
        Also compute the sparse Jacobian.
    dtype : torch.dtype
    n_threads : int or None
    progress : bool or None
    n_atoms : int or None
        ``A`` of the Jacobian (default: the largest cell).

    Returns
    -------
    features : Tensor of shape (S, P, D)
    mask : Tensor of shape (S, P)
    features_g : SparseJacobian or None
    atoms : list of ndarray
        Indices (in each cell) of the atoms of ``species``, in point order.
    """
    feats, jacs, atoms = [], [], []
    for nw in _progress(cells, len(cells), progress, f"descriptors {species}"):
        f, j, a = cell_descriptor_data(nw, descriptors, species, grad=grad, n_threads=n_threads)
        feats.append(f)
        jacs.append(j)
        atoms.append(a)
    s, d = len(cells), len(descriptors)
    p = max((len(a) for a in atoms), default=0)
    a_max = max((c.size for c in cells), default=0) if n_atoms is None else n_atoms
    features = torch.zeros(s, p, d, dtype=dtype)
    mask = torch.zeros(s, p, dtype=dtype)
    for k, f in enumerate(feats):
        features[k, :len(f)] = torch.from_numpy(f)
        mask[k, :len(f)] = 1
    jac = None
    if grad:
        sample = np.concatenate([np.full(len(j[0]), k, dtype=np.int64) for k, j in enumerate(jacs)])
        jac = SparseJacobian(torch.from_numpy(sample),
                             torch.from_numpy(np.concatenate([j[0] for j in jacs])),
                             torch.from_numpy(np.concatenate([j[1] for j in jacs])),
                             torch.from_numpy(np.concatenate([j[2] for j in jacs])).to(dtype),
                             s, p, a_max)
    return features, mask, jac, atoms


def learn_cauldron(cells, descriptors, grad=False, normalize=True, extract_forces=None, extract_charges=False,
                   energies_p=False, norm_kwargs=None, n_threads=None, progress=None, dtype=torch.float64,
                   prefer_parallel=None):
    """Compute descriptors (and their sparse Jacobians) of cells and assemble a training dataset.

    Parameters
    ----------
    cells : list of NeighborWrapper or Cell
        Structures with ``meta["total-energy"]`` (eV) and, as requested, ``meta["forces"]`` ``[N, 3]`` eV/Å,
        ``meta["charges"]`` ``[N]``, ``meta["partial-energy"]`` ``[N]`` eV.  Cells are wrapped with the largest
        descriptor cutoff (periodic unless the cell says otherwise); wrappers get their distances computed
        if missing or too short.
    descriptors : dict
        ``{species: [descriptor potentials tagged "<species>-..."]}``; keys must cover every species of the
        cells.  Per-point datasets follow ``sorted(descriptors)`` and carry the species as ``tag``.
    grad : bool
        Compute the sparse feature Jacobians (needed for force training).
    normalize : bool or class
        False: return the raw dataset.  True (or a ``Normalization`` subclass): also fit a normalisation with
        ``from_dataset(dataset, **norm_kwargs)`` and apply it to the dataset in place.
    extract_forces : bool or None
        Collect ``-meta["forces"]`` as ``energy_g``; None = ``grad``.
    extract_charges, energies_p : bool
        Collect ``meta["charges"]`` / ``meta["partial-energy"]`` per atom.
    norm_kwargs : dict or None
        Keyword arguments of ``Normalization.from_dataset``.
    n_threads : int or None
        OpenMP threads of the descriptor kernels.
    progress : bool or None
        Show a tqdm progress bar; None = only for many cells on a terminal.
    dtype : torch.dtype
        Dataset dtype (float64 default).
    prefer_parallel : bool or None
        0.1.4 compatibility: False means ``n_threads=1``.

    Returns
    -------
    Dataset, or (Dataset, Normalization) when ``normalize``.
    """
    if prefer_parallel is False and n_threads is None:
        n_threads = 1
    descriptors = check_descriptors(descriptors)
    cells = list(cells)
    if not cells:
        raise ValueError("cells must not be empty")
    wrappers = _wrap_cells(cells, descriptors_cutoff(descriptors))
    present = sorted({str(x) for nw in wrappers for x in species_of(nw)})
    missing = [x for x in present if x not in descriptors]
    if missing:
        raise KeyError(f"descriptors has no entry for species {missing} present in the cells "
                       f"(keys: {sorted(descriptors)})")
    if extract_forces is None:
        extract_forces = grad
    per_cell = PerCellDataset.from_cells(wrappers, grad=extract_forces, dtype=dtype)
    per_point = [
        PerPointDataset.from_cells(wrappers, descriptors[species], species, grad=grad, charge=extract_charges,
                                   energies_p=energies_p, dtype=dtype, n_threads=n_threads, progress=progress)
        for species in sorted(descriptors)
    ]
    dataset = Dataset(per_cell, *per_point)
    if not normalize:
        return dataset
    cls = normalize if isinstance(normalize, type) else Normalization
    normalization = cls.from_dataset(dataset, **(norm_kwargs or {}))
    normalization.fw(dataset, inplace=True)
    return dataset, normalization


def _module_dtype(module):
    for p in module.parameters():
        return p.dtype
    return None


#: The compact (real atoms only) network evaluation is used when at most this share of a padded
#: ``[S, P, D]`` feature array holds real atoms.
COMPACT_MAX_FILL = 0.8


def _compact_points(d):
    """``(features [n, D], sample index [n], flat index [n])`` of the real atoms of a per-point dataset, or None
    when padding is a small share of it (or the features need gradients). Cached on the dataset, keyed by the
    tensors' identity and version, so that a training loop gathers once."""
    x, mask = d.features, d.mask
    if x.requires_grad or x.ndim != 3 or x.shape[0] * x.shape[1] == 0:
        return None
    key = (x.data_ptr(), x._version, tuple(x.shape), mask.data_ptr(), mask._version)
    cached = d.__dict__.get("_compact_cache")
    if cached is not None and cached[0] == key:
        return cached[1]
    real = (mask != 0).reshape(-1)
    n = int(real.sum())
    value = None
    if n <= COMPACT_MAX_FILL * real.numel():
        flat_n = torch.nonzero(real)[:, 0]
        value = (x.reshape(-1, x.shape[2])[flat_n], torch.div(flat_n, x.shape[1], rounding_mode="floor"), flat_n)
    d.__dict__["_compact_cache"] = (key, value)
    return value


def _padded_jacobian(d, n_atoms, k=0):
    jac = d.features_g
    if jac.n_atoms < n_atoms:
        jac = jac.padded(n_atoms=n_atoms)
    elif jac.n_atoms > n_atoms:
        raise ValueError(f"per_point_datasets[{k}].features_g refers to {jac.n_atoms} atoms, "
                         f"per_cell_dataset has {n_atoms}")
    return jac


def forward_cauldron(modules, dataset, grad=False, energies_p=False, normalization=None):
    """Run per-species networks on a dataset: total energies and (optionally) their position gradients.

    Parameters
    ----------
    modules : list of torch.nn.Module (or one module for a single species)
        ``modules[k]`` maps features ``[S, P_k, D_k]`` of species ``k`` to atomic energies ``[S, P_k, 1]``.
    dataset : Dataset
        In the units the networks work in (usually normalised).
    grad : bool
        Also return energy gradients ``dE/dr`` (minus forces), computed by autograd with ``create_graph``
        (when grad mode is on) so that force losses can be trained.
    energies_p : bool
        Return the per-species per-atom energies (list of ``[S, P_k, 1]``, 0 on padding) instead of totals.
    normalization : Normalization or None
        If given, predictions are converted back to physical units (eV, eV/Å).

    Returns
    -------
    energy : Tensor of shape (S, 1) (or the list of per-atom energies with ``energies_p``)
    gradients : Tensor of shape (S, A, 3), only with ``grad``
        ``(energy, gradients)`` is returned as a tuple.
    """
    if isinstance(modules, torch.nn.Module):
        modules = [modules]
    modules = list(modules)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a miniff.ml.Dataset, got {type(dataset).__name__}")
    per_point = dataset.per_point_datasets
    if len(modules) != len(per_point):
        raise ValueError(f"modules has {len(modules)} networks but the dataset has {len(per_point)} species")
    dtype = dataset.dtype
    for k, m in enumerate(modules):
        md = _module_dtype(m)
        if md is not None and md != dtype:
            raise TypeError(f"modules[{k}] has dtype {md} but the dataset has {dtype}: convert one of them "
                            f"(module.to({dtype}) or dataset.to({md}))")
    s = dataset.n_samples
    n_atoms = None
    if grad:
        for k, d in enumerate(per_point):
            if d.features_g is None:
                raise ValueError(f"grad=True needs feature Jacobians: per_point_datasets[{k}] has no features_g "
                                 f"(build the dataset with grad=True)")
        n_atoms = dataset.n_atoms
    create_graph = torch.is_grad_enabled()
    energy = torch.zeros(s, 1, dtype=dtype)
    gradients = torch.zeros(s, n_atoms, 3, dtype=dtype) if grad else None
    parts = []
    with torch.enable_grad() if grad else contextlib.nullcontext():
        for k, (m, d) in enumerate(zip(modules, per_point, strict=True)):
            compact = None if energies_p else _compact_points(d)
            if compact is not None:  # padding is most of the array: run the network on the real atoms only
                x_c, sample_n, flat_n = compact
                if grad:
                    x_c = x_c.detach().requires_grad_(True)
                out = m(x_c[None])
                if out.shape != (1, x_c.shape[0], 1):
                    raise ValueError(f"modules[{k}] must output shape (S, P, 1), got {tuple(out.shape)}")
                energy = energy.index_add(0, sample_n, out[0])
                if grad and d.n_points:
                    (dE_dx,) = torch.autograd.grad(out.sum(), x_c, create_graph=create_graph)
                    x = d.features
                    dE_dx = torch.zeros(x.shape[0] * x.shape[1], x.shape[2], dtype=dtype).index_copy(
                        0, flat_n, dE_dx).view(x.shape)
                    gradients = gradients + _padded_jacobian(d, n_atoms, k).contract(dE_dx)
                continue
            x = d.features
            if grad and not x.requires_grad:
                x = x.detach().requires_grad_(True)
            mask = (d.mask != 0).to(dtype)[..., None]
            out = m(x)
            if out.shape != (*x.shape[:2], 1):
                raise ValueError(f"modules[{k}] must output shape (S, P, 1), got {tuple(out.shape)}")
            e_sp1 = out * mask
            parts.append(e_sp1)
            energy = energy + e_sp1.sum(1)
            if grad and d.n_points:
                (dE_dx,) = torch.autograd.grad(e_sp1.sum(), x, create_graph=create_graph)
                gradients = gradients + _padded_jacobian(d, n_atoms, k).contract(dE_dx)
    if not create_graph:  # called under no_grad: return plain tensors
        energy, parts = energy.detach(), [p.detach() for p in parts]
        gradients = None if gradients is None else gradients.detach()
    if normalization is not None:
        if energies_p:
            parts = [normalization.bw_energy_components(p, k) * (d.mask != 0).to(dtype)[..., None]
                     for k, (p, d) in enumerate(zip(parts, per_point, strict=True))]
        else:
            energy = normalization.bw_energy(energy, dataset.atom_counts())
        if grad:
            gradients = normalization.bw_energy_g(gradients)
    result = parts if energies_p else energy
    return (result, gradients) if grad else result


fw_cauldron = forward_cauldron


def fw_cauldron_charges(modules, dataset, normalization=None):
    """Per-atom charges predicted by per-species networks.

    Parameters
    ----------
    modules : list of torch.nn.Module
        One per per-point dataset; outputs ``[S, P_k, 1]``.
    dataset : Dataset
    normalization : Normalization or None
        If given, outputs are converted back to physical charges (``bw_charges``).

    Returns
    -------
    list of Tensor of shape (S, P_k, 1)
        0 on padding.
    """
    parts = forward_cauldron(modules, dataset, energies_p=True)
    if normalization is None:
        return parts
    return [normalization.bw_charges(p, k) * (d.mask != 0).to(p.dtype)[..., None]
            for k, (p, d) in enumerate(zip(parts, dataset.per_point_datasets, strict=True))]


def cpu_copy(model):
    """A deep copy of ``model`` on the CPU (no pickling round trip)."""
    return copy.deepcopy(model).cpu()


def forward(module, x, grad=False):
    """Module output and optionally its derivative by the input.

    Parameters
    ----------
    module : torch.nn.Module
    x : Tensor of shape (..., D)
        With ``requires_grad=True`` when ``grad``.
    grad : bool

    Returns
    -------
    out : Tensor of shape (..., 1)
    d_out_dx : Tensor of shape (..., D), only with ``grad`` (created with ``create_graph=True``)
    """
    out = module(x)
    if not grad:
        return out
    if not x.requires_grad:
        raise ValueError("x.requires_grad must be True for grad=True")
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return out, g


def total_energy(net_output, mask, resolve=False):
    """Masked sum of atomic outputs.

    Parameters
    ----------
    net_output : Tensor of shape (S, P, 1)
    mask : Tensor of shape (S, P)
    resolve : bool
        Return the masked per-atom values ``[S, P, 1]`` instead of the sum.

    Returns
    -------
    Tensor of shape (S, 1) (or (S, P, 1) with ``resolve``)
    """
    masked = net_output * (mask != 0).to(net_output.dtype)[..., None]
    return masked if resolve else masked.sum(1)


def energy_gradients(dE_dF, features_g, resolve=False):
    """Chain rule from feature derivatives to position derivatives.

    Parameters
    ----------
    dE_dF : Tensor of shape (S, P, D)
    features_g : SparseJacobian or Tensor of shape (S, P, D, A, 3)
    resolve : bool
        Keep the point axis: ``[S, P, A, 3]``.

    Returns
    -------
    Tensor of shape (S, A, 3), eV/Å (or (S, P, A, 3))
    """
    if isinstance(features_g, SparseJacobian):
        return features_g.contract(dE_dF, resolve=resolve)
    if resolve:
        return torch.einsum("spd,spdac->spac", dE_dF, features_g)
    return torch.einsum("spd,spdac->sac", dE_dF, features_g)
