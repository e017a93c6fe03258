"""Building datasets from cells (``learn_cauldron``) and running networks on them (``forward_cauldron``).

Forces use the sparse Jacobian: ``dE/dr[s, a] = sum_e [s_e = s, a_e = a] dE/dF[s, p_e] . values_edc[e]``,
a gather, a batched dot product and an ``index_add`` -- memory linear in pairs x descriptors.  Stresses use the
strain derivatives of the features (per atom, built from the per-pair Jacobian):
``sigma[s, v] = sum_{k, p, f} dE/dF_k[s, p, f] features_strain_k[s, p, f, v] / volume[s]``.
"""

import contextlib
import copy
import warnings

import torch

from miniff.ml.datasets import Dataset, PerCellDataset, PerPointDataset
from miniff.ml.descriptor_data import (
    check_descriptors,
    descriptors_cutoff,
    prepare_descriptor_data,
    species_of,
    wrap_cells,
)
from miniff.ml.jacobian import SparseJacobian
from miniff.ml.normalization import Normalization

__all__ = ["learn_cauldron", "forward_cauldron", "fw_cauldron", "fw_cauldron_charges", "cpu_copy", "forward",
           "total_energy", "energy_gradients",
           "prepare_descriptor_data"]
def learn_cauldron(cells, descriptors, grad=False, normalize=True, extract_forces=None, extract_charges=False,
                   energies_p=False, norm_kwargs=None, n_threads=None, progress=None, dtype=torch.float64,
                   prefer_parallel=None, stress=False):
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
        0.1.4 compatibility: False means ``n_threads=1`` (when ``n_threads`` is None; otherwise it is ignored,
        as is True).  Deprecated: any value but None emits a DeprecationWarning.
    stress : bool
        Collect ``meta["stress"]`` (eV/Å³) and the cell volumes, and compute the strain derivatives of the
        features (``features_strain``) for stress training; cells without a stress are kept (``has_stress``).

    Returns
    -------
    Dataset, or (Dataset, Normalization) when ``normalize``.
    """
    if prefer_parallel is not None:
        if prefer_parallel is False and n_threads is None:
            what = "prefer_parallel=False sets n_threads=1 (one thread): pass n_threads=1 instead"
        else:
            what = (f"prefer_parallel={prefer_parallel!r} is ignored: the descriptor kernels use n_threads="
                    f"{n_threads!r} threads (None: OMP_NUM_THREADS or all cores)")
        warnings.warn(f"learn_cauldron: {what} (prefer_parallel is accepted only for miniff 0.1.4 compatibility "
                      f"and will be removed)", DeprecationWarning, stacklevel=2)
    if prefer_parallel is False and n_threads is None:
        n_threads = 1
    descriptors = check_descriptors(descriptors)
    cells = list(cells)
    if not cells:
        raise ValueError("cells must not be empty")
    wrappers = wrap_cells(cells, descriptors_cutoff(descriptors))
    present = sorted({str(x) for nw in wrappers for x in species_of(nw)})
    missing = [x for x in present if x not in descriptors]
    if missing:
        raise KeyError(f"descriptors has no entry for species {missing} present in the cells "
                       f"(keys: {sorted(descriptors)})")
    if extract_forces is None:
        extract_forces = grad
    per_cell = PerCellDataset.from_cells(wrappers, grad=extract_forces, dtype=dtype, stress=stress)
    per_point = [
        PerPointDataset.from_cells(wrappers, descriptors[species], species, grad=grad, charge=extract_charges,
                                   energies_p=energies_p, dtype=dtype, n_threads=n_threads, progress=progress,
                                   strain=stress)
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


def _cached(owner, name, tensors, compute, extra=None):
    """``compute()``, cached in ``owner.__dict__[name]`` until one of ``tensors`` is replaced, reshaped or changed
    in place, or ``extra`` (a hashable) changes.

    The entry is ``(key, value)``.  The key keeps the tensors themselves (so that their ``id`` stays unique while
    cached) and their ``_version`` counters, which every in-place operation increments.
    """
    stamp = tuple((id(t), t._version, tuple(t.shape)) for t in tensors)
    cached = owner.__dict__.get(name)
    if cached is not None and cached[0][0] == stamp and cached[0][2] == extra:
        return cached[1]
    value = compute()
    owner.__dict__[name] = ((stamp, tuple(tensors), extra), value)
    return value


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
    return _cached(d, "_compact_cache", (x, mask), lambda: _gather_real_points(x, mask), extra=COMPACT_MAX_FILL)


def _gather_real_points(x, mask):
    """See ``_compact_points``: x ``[S, P, D]``, mask ``[S, P]``."""
    real = (mask != 0).reshape(-1)
    if int(real.sum()) > COMPACT_MAX_FILL * real.numel():
        return None
    flat_n = torch.nonzero(real)[:, 0]
    return x.reshape(-1, x.shape[2])[flat_n], torch.div(flat_n, x.shape[1], rounding_mode="floor"), flat_n


def _real_mask(d):
    """The ``[S, P, 1]`` 0/1 mask of the real points of a per-point dataset in its dtype, or None when every point
    is real (multiplying by it would change nothing). Cached on the dataset."""
    def compute():
        real = d.mask != 0
        return None if bool(real.all()) else real.to(d.dtype)[..., None]

    return _cached(d, "_real_mask_cache", (d.mask,), compute, extra=d.dtype)


def _padded_jacobian(d, n_atoms, k=0):
    """``d.features_g`` referring to ``n_atoms`` atoms per sample (a padded copy is cached on ``d``, so that its
    dense contraction layout is built once)."""
    jac = d.features_g
    if jac.n_atoms > n_atoms:
        raise ValueError(f"per_point_datasets[{k}].features_g refers to {jac.n_atoms} atoms, "
                         f"per_cell_dataset has {n_atoms}")
    if jac.n_atoms == n_atoms:
        return jac
    cached = d.__dict__.get("_padded_jacobian")
    if cached is None or cached[0] is not jac or cached[1].n_atoms != n_atoms:
        cached = d.__dict__["_padded_jacobian"] = (jac, jac.padded(n_atoms=n_atoms))
    return cached[1]


# ---------------------------------------------------------------------- plain multilayer perceptrons
#: Activations whose derivative is a function of their output: ``torch.nn`` class -> ``(function, derivative)``,
#: ``derivative(grad, output) = grad * activation'`` (the kernels autograd itself uses).
_OUTPUT_DERIVATIVE_ACTIVATIONS = {
    torch.nn.Tanh: (torch.tanh, torch.ops.aten.tanh_backward),
    torch.nn.Sigmoid: (torch.sigmoid, torch.ops.aten.sigmoid_backward),
}

_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def _has_hooks(module):
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)


def _plain_mlp(module):
    """The layers of ``module`` when it is a plain ``Sequential`` ``Linear (activation Linear)*`` with one output,
    activations from ``_OUTPUT_DERIVATIVE_ACTIVATIONS``, exact ``torch.nn`` classes and no hooks; else None
    (such a network is differentiated by autograd)."""
    if not isinstance(module, torch.nn.Sequential) or type(module).forward is not torch.nn.Sequential.forward:
        return None
    if _has_hooks(module) or any(getattr(torch.nn.modules.module, h, None) for h in _GLOBAL_HOOKS):
        return None
    layers = list(module)
    if len(layers) % 2 == 0:
        return None
    for i, layer in enumerate(layers):
        kind_ok = type(layer) is torch.nn.Linear if i % 2 == 0 else type(layer) in _OUTPUT_DERIVATIVE_ACTIVATIONS
        if not kind_ok or _has_hooks(layer):
            return None
    return layers if layers[-1].out_features == 1 else None


def _mlp_with_input_gradient(layers, x_nd, seed_n1=None):
    """Outputs of a plain MLP (see ``_plain_mlp``) and the gradient of their (seeded) sum by the inputs.

    The gradient is autograd's first backward pass written out (products with the weights, activation
    derivatives from the activations' outputs), so no autograd engine run is needed; it stays differentiable
    with respect to the parameters (and ``x_nd``).

    Parameters
    ----------
    layers : list of torch.nn.Module
    x_nd : Tensor of shape (n, D)
    seed_n1 : Tensor of shape (n, 1) or None
        Weight of every output in the sum (None: 1).

    Returns
    -------
    out_n1 : Tensor of shape (n, 1)
    dx_nd : Tensor of shape (n, D)
        ``d sum_n(seed_n * out_n) / d x_nd``.
    """
    h, outputs = x_nd, []
    for layer in layers:
        if type(layer) is torch.nn.Linear:
            h = torch.nn.functional.linear(h, layer.weight, layer.bias)
        else:
            function, derivative = _OUTPUT_DERIVATIVE_ACTIVATIONS[type(layer)]
            h = function(h)
            outputs.append((h, derivative))
    w_last = layers[-1].weight  # [1, H]
    g = w_last.expand(h.shape[0], -1) if seed_n1 is None else seed_n1 * w_last
    for (a, derivative), linear in zip(reversed(outputs), layers[-3::-2], strict=True):
        g = derivative(g, a).mm(linear.weight)
    return h, g


# ---------------------------------------------------------------------- forward_cauldron
class _SpeciesRun:
    """What ``forward_cauldron`` keeps of the network evaluation of one species.

    Attributes
    ----------
    x : Tensor of shape (S, P, D), or (n, D) when ``compact``
        The network input.
    atomic : Tensor of shape (S, P, 1), or (n, 1) / (1, n, 1) when ``compact``
        Atomic energies, 0 on padding: ``dE_dx = d atomic.sum() / d x``.
    compact : tuple or None
        ``_compact_points(d)`` when the network ran on the real atoms only.
    dE_dx : Tensor shaped like ``x``, or None (not computed yet, or not asked for)
    """

    __slots__ = ("x", "atomic", "compact", "dE_dx")

    def __init__(self, x, atomic, compact, dE_dx=None):
        self.x, self.atomic, self.compact, self.dE_dx = x, atomic, compact, dE_dx


def _run_species(module, d, k, grad, energies_p, create_graph):
    """Evaluate ``module`` on per-point dataset ``d`` (species ``k``); returns a ``_SpeciesRun``.  With ``grad``
    a plain MLP gets its input gradient here (``_mlp_with_input_gradient``), other networks later by autograd."""
    compact = None if energies_p else _compact_points(d)
    x = d.features if compact is None else compact[0]
    mask = None if compact is not None else _real_mask(d)
    layers = _plain_mlp(module) if grad and d.n_points else None
    if layers is not None:
        with torch.set_grad_enabled(create_graph):
            seed = None if mask is None else mask.reshape(-1, 1)
            out, dE_dx = _mlp_with_input_gradient(layers, x.reshape(-1, x.shape[-1]), seed)
            out = out.view(*x.shape[:-1], 1)
            return _SpeciesRun(x, out if mask is None else out * mask, compact, dE_dx.view(x.shape))
    if grad and not x.requires_grad:
        x = x.detach().requires_grad_(True)
    out = module(x if compact is None else x[None])
    expected = (*x.shape[:2], 1) if compact is None else (1, x.shape[0], 1)
    if out.shape != expected:
        raise ValueError(f"modules[{k}] must output shape (S, P, 1), got {tuple(out.shape)}")
    return _SpeciesRun(x, out if mask is None else out * mask, compact)


def _total_energy(runs, s, dtype):
    """``[S, 1]`` sum of the atomic energies of every species (in species order)."""
    energy = None
    for r in runs:
        if r.compact is None:
            e = r.atomic.sum(1)
            energy = e if energy is None else energy + e
        else:
            energy = (r.atomic.new_zeros(s, 1, dtype=dtype) if energy is None else energy).index_add(
                0, r.compact[1], r.atomic.reshape(-1, 1))
    return energy


def _input_gradients(runs, per_point, create_graph):
    """Set ``dE_dx`` of every run with points: one autograd call for all the networks not differentiated yet."""
    pending = [r for r, d in zip(runs, per_point, strict=True) if r.dE_dx is None and d.n_points]
    if pending:
        dx = torch.autograd.grad([r.atomic.sum() for r in pending], [r.x for r in pending],
                                 create_graph=create_graph)
        for r, g in zip(pending, dx, strict=True):
            r.dE_dx = g


def _strain_gradients(runs, per_point, volume):
    """``[S, 6]`` stresses ``(1/V) dE/d eps`` (Voigt; dataset energy units per Å³): the input gradients of the
    networks contracted with the strain derivatives of the features (``features_strain``), divided by
    ``volume [S]``."""
    virial = None
    for r, d in zip(runs, per_point, strict=True):
        if r.dE_dx is None:  # no points
            continue
        strain = d.features_strain
        if r.compact is None:
            w = torch.einsum("spf,spfv->sv", r.dE_dx, strain)
        else:  # the real points only: gather their strain derivatives (cached on the dataset)
            flat = r.compact[2]
            rows = _cached(d, "_compact_strain_cache", (strain, flat),
                           lambda s=strain, i=flat: s.reshape(-1, s.shape[2], 6)[i])
            w = r.dE_dx.new_zeros(d.n_samples, 6).index_add(
                0, r.compact[1], torch.einsum("nf,nfv->nv", r.dE_dx, rows))
        virial = w if virial is None else virial + w
    if virial is None:
        virial = volume.new_zeros(per_point[0].n_samples, 6, dtype=per_point[0].dtype)
    return virial / volume[:, None]


def _position_gradients(runs, per_point, n_atoms, create_graph):
    """``[S, A, 3]`` dE/dr (A = ``n_atoms``): the input gradients of the networks (``_input_gradients``)
    contracted with the feature Jacobians."""
    _input_gradients(runs, per_point, create_graph)
    gradients = None
    for k, (r, d) in enumerate(zip(runs, per_point, strict=True)):
        if r.dE_dx is None:  # no points
            continue
        dE_dx = r.dE_dx
        if r.compact is not None:  # back to the padded layout of the Jacobian
            x = d.features
            dE_dx = dE_dx.new_zeros(x.shape[0] * x.shape[1], x.shape[2]).index_copy(
                0, r.compact[2], dE_dx).view(x.shape)
        g = _padded_jacobian(d, n_atoms, k).contract(dE_dx)
        gradients = g if gradients is None else gradients + g
    if gradients is None:
        d = per_point[0]
        gradients = torch.zeros(d.n_samples, n_atoms, 3, dtype=d.dtype, device=d.features.device)
    return gradients


def _checked_modules(modules, dataset, grad, stress=False):
    """``modules`` as a list matching ``dataset`` (one network per species, same dtype)."""
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
    if grad:
        for k, d in enumerate(per_point):
            if d.features_g is None:
                raise ValueError(f"grad=True needs feature Jacobians: per_point_datasets[{k}] has no features_g "
                                 f"(build the dataset with grad=True)")
    if stress:
        if dataset.per_cell_dataset.volume is None:
            raise ValueError("stress=True needs cell volumes: the per-cell dataset has none (build the dataset "
                             "with stress=True)")
        for k, d in enumerate(per_point):
            if d.features_strain is None:
                raise ValueError(f"stress=True needs the strain derivatives of the features: per_point_datasets[{k}] "
                                 f"has no features_strain (build the dataset with stress=True)")
    return modules


def forward_cauldron(modules, dataset, grad=False, energies_p=False, normalization=None, stress=False):
    """Run per-species networks on a dataset: total energies and (optionally) their position gradients.

    Parameters
    ----------
    modules : list of torch.nn.Module (or one module for a single species)
        ``modules[k]`` maps features ``[S, P_k, D_k]`` of species ``k`` to atomic energies ``[S, P_k, 1]``.
    dataset : Dataset
        In the units the networks work in (usually normalised).
    grad : bool
        Also return energy gradients ``dE/dr`` (minus forces), computed with ``create_graph`` (when grad mode is
        on) so that force losses can be trained: written out for plain ``Linear``/``Tanh``/``Sigmoid``
        sequentials, by one autograd call for other networks.
    energies_p : bool
        Return the per-species per-atom energies (list of ``[S, P_k, 1]``, 0 on padding) instead of totals.
    normalization : Normalization or None
        If given, predictions are converted back to physical units (eV, eV/Å, eV/Å³).
    stress : bool
        Also return the stresses ``(1/V) dE/d eps`` (Voigt ``xx yy zz yz xz xy``, ASE sign) of every sample, from
        the strain derivatives of the features and the cell volumes (build the dataset with ``stress=True``);
        differentiable like the gradients.  Not with ``energies_p``.

    Returns
    -------
    energy : Tensor of shape (S, 1) (or the list of per-atom energies with ``energies_p``)
    gradients : Tensor of shape (S, A, 3), only with ``grad``
    stress : Tensor of shape (S, 6), only with ``stress``
        With ``grad`` or ``stress`` a tuple ``(energy, [gradients,] [stress])`` is returned.
    """
    if stress and energies_p:
        raise ValueError("stress=True cannot be combined with energies_p=True")
    modules = _checked_modules(modules, dataset, grad, stress)
    per_point, dtype = dataset.per_point_datasets, dataset.dtype
    create_graph = torch.is_grad_enabled()
    gradients = stresses = None
    with torch.enable_grad() if grad or stress else contextlib.nullcontext():
        runs = [_run_species(m, d, k, grad or stress, energies_p, create_graph)
                for k, (m, d) in enumerate(zip(modules, per_point, strict=True))]
        energy = _total_energy(runs, dataset.n_samples, dtype)
        if grad:
            gradients = _position_gradients(runs, per_point, dataset.n_atoms, create_graph)
        if stress:
            _input_gradients(runs, per_point, create_graph)
            stresses = _strain_gradients(runs, per_point, dataset.per_cell_dataset.volume)
    parts = [r.atomic for r in runs] if energies_p else []
    if not create_graph:  # called under no_grad: return plain tensors
        energy, parts = energy.detach(), [p.detach() for p in parts]
        gradients = None if gradients is None else gradients.detach()
        stresses = None if stresses is None else stresses.detach()
    if normalization is not None:
        if energies_p:
            parts = [normalization.bw_energy_components(p, k) * (d.mask != 0).to(dtype)[..., None]
                     for k, (p, d) in enumerate(zip(parts, per_point, strict=True))]
        else:
            energy = normalization.bw_energy(energy, dataset.atom_counts())
        if grad:
            gradients = normalization.bw_energy_g(gradients)
        if stress:
            stresses = normalization.bw_stress(stresses)
    result = parts if energies_p else energy
    if not (grad or stress):
        return result
    return (result,) + ((gradients,) if grad else ()) + ((stresses,) if stress else ())


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
