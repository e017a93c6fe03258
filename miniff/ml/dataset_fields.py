"""Checks and indexing helpers of the dataset containers (``miniff.ml.datasets``): field validation, sample
indices, padding, and :class:`Sample`, the tuple of tensors ``ds[i]`` returns."""

import numpy as np
import torch

__all__ = ["FieldTypeError", "Sample", "all_finite"]


def all_finite(x):
    """True if no element of the floating-point tensor ``x`` is NaN or inf (a sum first: cheap)."""
    if x.numel() == 0 or bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


class FieldTypeError(TypeError, ValueError):
    """A dataset field that is not a ``torch.Tensor`` (a ``ValueError`` as in miniff 0.1.4, and a ``TypeError``)."""


def _check_field(name, x, ndim, dtype=None, allow_bool=False):
    """Validate one tensor field; return it (bool masks are kept as given)."""
    if not isinstance(x, torch.Tensor):
        raise FieldTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if allow_bool and x.dtype == torch.bool:
        return x
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{name} has dtype {x.dtype} but the dataset dtype is {dtype} (do not mix dtypes)")
    if not all_finite(x):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _check_count(name, x, axis, expected, what):
    if x.shape[axis] != expected:
        raise ValueError(f"{name} has {x.shape[axis]} {what} (axis {axis}) but {expected} expected")


class Sample(tuple):
    """The tuple of tensors ``ds[i]`` of one sample; ``dataset`` is the same sample as a one-sample dataset, so that
    ``cat`` (a DataLoader's ``collate_fn``) accepts samples as well as datasets."""

    def __new__(cls, tensors, dataset=None):
        out = super().__new__(cls, tensors)
        out.dataset = dataset
        return out

    def __reduce__(self):  # DataLoader workers pickle items
        return Sample, (tuple(self), self.dataset)


def _datasets(items):
    """``items`` as a list of datasets (samples ``ds[i]`` replaced by their one-sample dataset)."""
    return [getattr(d, "dataset", d) if isinstance(d, Sample) else d for d in items]


def _sample_index(index, n):
    """``index`` as a sample number in ``[0, n)`` when it selects one sample (int, numpy or 0-d integer tensor),
    else None (slices, sequences and masks select a sub-dataset)."""
    if isinstance(index, torch.Tensor) and index.ndim == 0 and not index.dtype.is_floating_point \
            and index.dtype != torch.bool:
        index = int(index)
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        return None
    i = int(index)
    if not -n <= i < n:
        raise IndexError(f"sample index {i} out of range for {n} samples")
    return i % n


def _as_index_tensor(indices, n):
    """Normalise an int / slice / sequence / bool mask into an int64 tensor of sample indices."""
    if isinstance(indices, slice):
        return torch.arange(n)[indices]
    if isinstance(indices, (int, np.integer)):
        i = int(indices)
        if not -n <= i < n:
            raise IndexError(f"sample index {i} out of range for {n} samples")
        return torch.tensor([i % n])
    try:
        t = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
    except (TypeError, ValueError, RuntimeError):
        raise IndexError(f"samples are selected by an int, a slice, a sequence of ints or a boolean mask, "
                         f"got {indices!r}") from None
    if t.dtype == torch.bool:
        if t.shape != (n,):
            raise IndexError(f"boolean index must have shape ({n},), got {tuple(t.shape)}")
        return t.nonzero()[:, 0]
    if t.dtype.is_floating_point:
        raise IndexError("sample indices must be integers")
    t = t.to(torch.int64).reshape(-1)
    if len(t) and (int(t.min()) < -n or int(t.max()) >= n):
        raise IndexError(f"sample indices out of range for {n} samples")
    return t % n if n else t


def _pad(x, axis, size):
    """Zero-pad tensor ``x`` along ``axis`` up to ``size``."""
    if x.shape[axis] == size:
        return x
    shape = list(x.shape)
    shape[axis] = size - shape[axis]
    return torch.cat([x, x.new_zeros(shape)], dim=axis)



def _check_same_kind(items, cls, optional_fields):
    """Raise unless ``items`` is a non-empty list of ``cls`` with one dtype and the same optional fields."""
    items = _datasets(items)
    if not items:
        raise ValueError("items must not be empty")
    for i, d in enumerate(items):
        if not isinstance(d, cls):
            raise TypeError(f"items[{i}] is not a {cls.__name__}")
        if d.dtype != items[0].dtype:
            raise ValueError(f"items[{i}] has dtype {d.dtype}, items[0] has {items[0].dtype}")
        for f in optional_fields:
            if (getattr(d, f) is None) != (getattr(items[0], f) is None):
                raise ValueError(f"items[{i}].{f} presence differs from items[0]")
    return items
