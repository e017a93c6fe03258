"""Potential files: plain-data saving/loading, and an explicit opt-in reader of 0.1.4's pickled ``.pt`` files."""

import torch

__all__ = ["save_potentials", "load_potentials", "load_potentials_014", "torch_load"]


def torch_load(f, **kwargs):
    """``torch.load(f, map_location="cpu", weights_only=True)``: tensors and plain containers only."""
    kwargs.setdefault("weights_only", True)
    return torch.load(f, map_location="cpu", **kwargs)


def save_potentials(potentials, f):
    """Save potentials (classical or NN) as plain data; loading never executes code.

    Parameters
    ----------
    potentials : list of LocalPotential
        E.g. ``FitWorkflow.build_potentials()``.
    f : str or Path
        Destination (written atomically by :func:`miniff.ml.save_potentials`).
    """
    from miniff import ml

    if not isinstance(potentials, (list, tuple)):
        potentials = [potentials]
    return ml.save_potentials(list(potentials), f)


def load_potentials(f):
    """Load potentials saved by :func:`save_potentials` (plain data, no code executed).

    Parameters
    ----------
    f : str or Path
        The file.

    Returns
    -------
    list of LocalPotential
    """
    from pathlib import Path

    from miniff import ml, potentials  # noqa: F401 - importing potentials registers the descriptor families

    if isinstance(f, (str, Path)) and not Path(f).exists():
        raise FileNotFoundError(f"potentials: no such file {str(f)!r}")
    return list(ml.load_potentials(f))


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
    from miniff import ml, potentials

    data = torch.load(f, map_location="cpu", weights_only=False)  # noqa: S614 - documented opt-in
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"f: {str(f)!r} does not hold a list of potential state dicts")
    out = []
    for k, item in enumerate(data):
        if not isinstance(item, dict) or "tag" not in item:
            raise ValueError(f"f: entry {k} is not a potential state dict")
        if item["tag"] == "ml potential":
            descriptors = [potentials.potential_from_state_dict(d) for d in item["descriptors"]]
            net = _sequential_from_014(item["parameters"]["nn"])
            out.extend(ml.potentials_from_ml_data([net], {item["ptag"]: descriptors}))
        else:
            out.append(potentials.potential_from_state_dict(item))
    return out
