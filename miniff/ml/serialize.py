"""Saving and loading lists of potentials as plain data (never pickled code).

Two formats, chosen by the file extension:

- ``.json``: JSON; tensors are ``{"__tensor__": dtype, "shape": [...], "data": [...]}`` and numpy arrays
  ``{"__ndarray__": dtype, "shape": [...], "data": [...]}`` (floats written with full precision, so the
  round trip is exact);
- anything else (``.pt``): ``torch.save`` of the list of state dicts, loadable with
  ``torch.load(..., weights_only=True)`` (numpy arrays are stored with the ``__ndarray__`` encoding).

Files are written to a temporary file next to the target and moved into place with ``os.replace``, so
a crash never leaves a half-written file.
"""

import json
import os

import numpy as np
import torch

from miniff._atomic import atomic_write
from miniff.ml.potential import potentials_from_ml_data
from miniff.potentials.base import LocalPotential
from miniff.potentials.registry import potential_from_state_dict

__all__ = ["save_potentials", "load_potentials", "load_potentials_014", "torch_load", "to_plain", "from_plain"]

_TORCH_DTYPES = {str(d).split(".")[-1]: d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64,
                                                     torch.int32, torch.int64, torch.bool, torch.uint8, torch.int8,
                                                     torch.int16)}


def to_plain(obj, json_safe=False):
    """Recursively encode numpy arrays/scalars (and tensors when ``json_safe``) as plain dicts."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v, json_safe) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, json_safe) for v in obj]
    if isinstance(obj, torch.Tensor):
        if not json_safe:
            return obj.detach().cpu().clone()
        t = obj.detach().cpu()
        return {"__tensor__": str(t.dtype).split(".")[-1], "shape": list(t.shape), "data": t.reshape(-1).tolist()}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf" and obj.dtype.kind != "U":
            raise TypeError(f"cannot store a numpy array of dtype {obj.dtype} as plain data")
        return {"__ndarray__": obj.dtype.str, "shape": list(obj.shape), "data": obj.reshape(-1).tolist()}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store an object of type {type(obj).__name__} as plain data")


def from_plain(obj, where="data"):
    """Inverse of :func:`to_plain`.

    ``where`` names ``obj`` in error messages (e.g. ``potentials[0].parameters.nn``); a ValueError names the
    tensor or array whose dtype, shape or data is wrong.
    """
    if isinstance(obj, dict):
        if "__tensor__" in obj or "__ndarray__" in obj:
            return _array_from_plain(obj, where)
        return {k: from_plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_plain(v, f"{where}[{k}]") for k, v in enumerate(obj)]
    return obj


def _array_from_plain(obj, where):
    """A tensor (``__tensor__``) or numpy array (``__ndarray__``) from its plain encoding, checked."""
    shape, data = obj.get("shape"), obj.get("data")
    if not isinstance(shape, list) or not all(isinstance(x, int) and x >= 0 for x in shape):
        raise ValueError(f"tensor {where}: shape must be a list of non-negative ints, got {shape!r}")
    if not isinstance(data, list):
        raise ValueError(f"tensor {where}: data must be a list, got {type(data).__name__}")
    if len(data) != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"tensor {where}: shape {shape} needs {int(np.prod(shape, dtype=np.int64))} values but the "
                         f"file holds {len(data)}")
    try:
        if "__tensor__" in obj:
            dtype = _TORCH_DTYPES.get(obj["__tensor__"])
            if dtype is None:
                raise ValueError(f"tensor {where}: unknown dtype {obj['__tensor__']!r}")
            return torch.tensor(data, dtype=dtype).reshape(shape)
        return np.asarray(data, dtype=np.dtype(obj["__ndarray__"])).reshape(shape)
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"tensor {where}: {e}") from None


def torch_load(f, **kwargs):
    """``torch.load(f, map_location="cpu", weights_only=True)``: tensors and plain containers only."""
    kwargs.setdefault("weights_only", True)
    return torch.load(f, map_location="cpu", **kwargs)


def save_potentials(potentials, path):
    """Save potentials (classical, descriptors or NN) as plain data.

    Parameters
    ----------
    potentials : LocalPotential or list of LocalPotential
    path : str or PathLike
        ``*.json`` for JSON, anything else for a ``torch.save`` file (``weights_only`` loadable).
    """
    if isinstance(potentials, LocalPotential):
        potentials = [potentials]
    states = []
    for k, p in enumerate(potentials):
        if not isinstance(p, LocalPotential):
            raise TypeError(f"potentials[{k}] is not a LocalPotential: {type(p).__name__}")
        states.append(p.state_dict())
    if os.fspath(path).endswith(".json"):
        text = json.dumps({"format": "miniff-potentials", "version": 1, "potentials": to_plain(states, True)})
        atomic_write(path, lambda f: f.write(text.encode()))
    else:
        data = {"format": "miniff-potentials", "version": 1, "potentials": to_plain(states)}
        atomic_write(path, lambda f: torch.save(data, f))


def load_potentials(path):
    """Load potentials saved by :func:`save_potentials`.

    Returns
    -------
    list of LocalPotential

    Raises
    ------
    ValueError
        If the file is not a miniff potentials file (corrupt, or a 0.1.4 pickle), or a potential in it is
        invalid (a tensor of the wrong length, non-finite network weights, a network without exactly one
        output per atom, parameters out of range): the message names the file, the potential and the tensor.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"potentials: no such file {path!r}")
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        else:
            data = torch.load(path, weights_only=True)
    except (json.JSONDecodeError, UnicodeDecodeError, RuntimeError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"path {path!r} is not a readable miniff potentials file: {e}") from None
    except Exception as e:  # torch raises UnpicklingError for files needing code (0.1.4 pickles)
        raise ValueError(f"path {path!r} is not a plain-data miniff potentials file ({type(e).__name__}: {e}); "
                         f"0.1.4 .pt files contain pickled code and are not loaded") from None
    if not isinstance(data, dict) or data.get("format") != "miniff-potentials" or \
            not isinstance(data.get("potentials"), list):
        raise ValueError(f"path {path!r} is not a miniff potentials file")
    out = []
    for k, state in enumerate(data["potentials"]):
        try:
            out.append(potential_from_state_dict(from_plain(state, f"potentials[{k}]")))
        except (ValueError, TypeError, KeyError) as e:
            what = state.get("tag") if isinstance(state, dict) else None
            raise ValueError(f"potentials file {path!r}: potentials[{k}] ({what}): {e}") from None
    return out


def _sequential_from_014(state):
    """Rebuild 0.1.4's ``Linear, Sigmoid, Linear, ...`` network from its ``state_dict``."""
    n_layers = 1 + max(int(k.split(".")[0]) for k in state) // 2
    layers = []
    for i in range(n_layers):
        w = torch.as_tensor(state[f"{2 * i}.weight"])
        b = state.get(f"{2 * i}.bias")
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if b is not None:
                lin.bias.copy_(torch.as_tensor(b))
        layers.append(lin)
        if i < n_layers - 1:
            layers.append(torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers)


def load_potentials_014(f):
    """Read a pickled ``.pt`` potentials file written by miniff 0.1.4.

    .. warning::
       This unpickles the file with ``torch.load(weights_only=False)``, which can execute arbitrary code
       embedded in it.  Only use it on files you created yourself or fully trust; then re-save the result
       with :func:`save_potentials` (plain data) and use :func:`load_potentials` from there on.

    Parameters
    ----------
    f : str or Path
        A file written by 0.1.4's ``save_potentials`` (a list of potential state dicts).

    Returns
    -------
    list of LocalPotential
        Classical potentials re-created from their families; NN potentials rebuilt as ``Linear``/``Sigmoid``
        stacks (the only networks 0.1.4 could save) with their descriptors.
    """
    data = torch.load(f, map_location="cpu", weights_only=False)  # noqa: S614 - documented opt-in
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"f: {str(f)!r} does not hold a list of potential state dicts")
    out = []
    for k, item in enumerate(data):
        if not isinstance(item, dict) or "tag" not in item:
            raise ValueError(f"f: entry {k} is not a potential state dict")
        if item["tag"] == "ml potential":
            descriptors = [potential_from_state_dict(d) for d in item["descriptors"]]
            net = _sequential_from_014(item["parameters"]["nn"])
            out.extend(potentials_from_ml_data([net], {item["ptag"]: descriptors}))
        else:
            out.append(potential_from_state_dict(item))
    return out
