"""Networks: the Behler-style sequential energy network and plain-data (de)serialisation of Sequentials.

A network is stored as plain data: ``{"type": "Sequential", "layers": [{"type": <torch.nn class name>,
"args": {<constructor arguments>}, "tensors": {<state_dict>}}, ...]}``.  Only the layer classes listed
in ``LAYER_ARGS`` are accepted, so loading never executes or unpickles code.
"""

import copy
import math

import numpy as np
import torch

__all__ = ["SequentialSoleEnergyNN", "behler_nn", "init_output_range", "has_output_scaling", "INITS",
           "linear", "simplify_sequential", "sequential_to_data",
           "sequential_from_data", "resolve_activation", "LAYER_ARGS"]

# torch.nn layer class name -> constructor arguments stored (read back from attributes of the same name).
LAYER_ARGS = {
    "Linear": ("in_features", "out_features", "bias"),
    "Identity": (),
    "Dropout": ("p",),
    "AlphaDropout": ("p",),
    "Sigmoid": (),
    "Tanh": (),
    "ReLU": (),
    "ReLU6": (),
    "SiLU": (),
    "Mish": (),
    "SELU": (),
    "GELU": ("approximate",),
    "ELU": ("alpha",),
    "CELU": ("alpha",),
    "LeakyReLU": ("negative_slope",),
    "Softplus": ("beta", "threshold"),
    "Softsign": (),
    "Tanhshrink": (),
    "LogSigmoid": (),
    "Hardtanh": ("min_val", "max_val"),
    "Hardsigmoid": (),
    "Hardswish": (),
    "PReLU": ("num_parameters",),
    "Sequential": None,  # nested, handled recursively
}

_ACTIVATIONS = {name.lower(): name for name, args in LAYER_ARGS.items()
                if name not in ("Linear", "Sequential", "Dropout", "AlphaDropout", "Identity")}


def resolve_activation(activation):
    """Turn ``activation`` into a factory of fresh activation modules.

    Parameters
    ----------
    activation : None, str, torch.nn.Module subclass or instance
        None means ``torch.nn.Sigmoid`` (the 0.1.4 default); a string is a ``torch.nn`` class name,
        case-insensitive (``"tanh"``, ``"SiLU"``...); an instance is deep-copied for every layer.

    Returns
    -------
    callable
        ``factory() -> torch.nn.Module``.
    """
    if activation is None:
        return torch.nn.Sigmoid
    if isinstance(activation, str):
        name = _ACTIVATIONS.get(activation.lower())
        if name is None:
            raise ValueError(f"activation {activation!r} is not known; choose one of {sorted(_ACTIVATIONS)}")
        return getattr(torch.nn, name)
    if isinstance(activation, type) and issubclass(activation, torch.nn.Module):
        return activation
    if isinstance(activation, torch.nn.Module):
        return lambda: copy.deepcopy(activation)
    raise TypeError(f"activation must be None, a name, a torch.nn.Module class or instance; "
                    f"got {type(activation).__name__}")


class SequentialSoleEnergyNN(torch.nn.Sequential):
    """Behler-Parrinello atomic network: features ``[..., n_inputs]`` -> atomic energy ``[..., 1]``.

    ``n_layers`` linear layers ``n_inputs -> n_internal -> ... -> n_internal -> 1`` with an activation
    between consecutive linear layers (none after the last).  ``n_layers=1`` is the linear map
    ``n_inputs -> 1``.

    Parameters
    ----------
    n_inputs : int
        Number of descriptors (features).
    n_internal : int
        Width of the hidden layers.
    n_layers : int
        Number of ``Linear`` layers (>= 1).
    bias : bool or list of bool
        Whether the linear layers have biases (a list gives one flag per layer, ``n_layers`` entries).
    activation : None, str, class or module
        Activation between linear layers; None = ``torch.nn.Sigmoid`` (as miniff 0.1.4).  Any ``torch.nn``
        activation class, instance or name (``"tanh"``, ``"silu"``...).
    dtype : torch.dtype or None
        Parameter dtype (default: torch's default dtype).
    output_activation : bool
        Also apply the activation to the output and follow it by a trainable ``Linear(1, 1)`` (slope and
        intercept), as Amp's networks: ``E = slope * act(net) + intercept`` (2 more parameters).  Set its range
        to the data with :func:`init_output_range`.
    init : {"torch", "xavier_uniform"}
        Initial parameters: torch's ``Linear`` default, or Glorot-uniform weights **and biases** in
        ``+-sqrt(6 / (fan_in + fan_out))`` (Amp's initialisation).  Uses torch's global random generator.

    Notes
    -----
    The parameters use torch's default dtype (float32 unless changed); call ``.double()`` to train on
    float64 datasets.
    """

    def __init__(self, n_inputs, n_internal=15, n_layers=3, bias=True, activation=None, dtype=None,
                 output_activation=False, init="torch"):
        sizes = {}
        for name, v in (("n_inputs", n_inputs), ("n_internal", n_internal), ("n_layers", n_layers)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
            sizes[name] = int(v)
        n_layers = sizes["n_layers"]
        if isinstance(bias, (list, tuple)):
            if len(bias) != n_layers:
                raise ValueError(f"bias must have n_layers={n_layers} entries, got {len(bias)}")
            biases = [bool(b) for b in bias]
        else:
            biases = [bool(bias)] * n_layers
        factory = resolve_activation(activation)
        layers = []
        widths = [sizes["n_inputs"]] + [sizes["n_internal"]] * (n_layers - 1) + [1]
        for k in range(n_layers):
            if k > 0:
                layers.append(factory())
            layers.append(torch.nn.Linear(widths[k], widths[k + 1], bias=biases[k], dtype=dtype))
        if not isinstance(output_activation, bool):
            raise TypeError(f"output_activation must be a bool, got {type(output_activation).__name__}")
        if output_activation:
            layers += [factory(), torch.nn.Linear(1, 1, dtype=dtype)]
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if init == "xavier_uniform":
            with torch.no_grad():
                for layer in layers[:-2] if output_activation else layers:
                    if isinstance(layer, torch.nn.Linear):
                        bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
                        for p in layer.parameters():
                            p.uniform_(-bound, bound)
        super().__init__(*layers)
        if output_activation:
            if not has_output_scaling(self):
                raise ValueError("output_activation needs a bounded activation (tanh, sigmoid, softsign, hardtanh), "
                                 f"got {type(layers[-2]).__name__}")
            init_output_range(self, -1.0, 1.0)

    def __getitem__(self, idx):
        """A layer, or a plain ``torch.nn.Sequential`` of the sliced layers (``net[:-1]``)."""
        if isinstance(idx, slice):
            return torch.nn.Sequential(*list(self._modules.values())[idx])
        return super().__getitem__(idx)


#: Initialisations of :class:`SequentialSoleEnergyNN`.
INITS = ("torch", "xavier_uniform")

# bounded activation class -> its output range (Hardtanh: read from the module)
_ACTIVATION_RANGES = {torch.nn.Tanh: (-1.0, 1.0), torch.nn.Sigmoid: (0.0, 1.0), torch.nn.Softsign: (-1.0, 1.0),
                      torch.nn.Hardtanh: None}


def has_output_scaling(module):
    """Whether ``module`` is a Sequential ending in a bounded activation and a ``Linear(1, 1)`` with bias
    (a network made with ``output_activation=True``)."""
    if not isinstance(module, torch.nn.Sequential) or len(module) < 3:
        return False
    last, act = module[-1], module[-2]
    return (type(last) is torch.nn.Linear and last.in_features == 1 and last.out_features == 1
            and last.bias is not None and type(act) in _ACTIVATION_RANGES)


def init_output_range(module, low, high):
    """Set the output slope and intercept of a network made with ``output_activation=True`` so that the
    activation's range maps onto ``[low, high]`` (Amp's initial scaling uses the range of the training
    energies per atom, in the network's units).

    Parameters
    ----------
    module : torch.nn.Sequential
        Ends in a bounded activation (tanh, sigmoid, softsign, hardtanh) and ``Linear(1, 1)``.
    low, high : float
        The output range, ``low < high``.
    """
    if not has_output_scaling(module):
        raise ValueError("module must end in a bounded activation and Linear(1, 1) (output_activation=True)")
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"need finite low < high, got low={low}, high={high}")
    act = module[-2]
    a, b = (act.min_val, act.max_val) if type(act) is torch.nn.Hardtanh else _ACTIVATION_RANGES[type(act)]
    slope = (high - low) / (b - a)
    with torch.no_grad():
        module[-1].weight.fill_(slope)
        module[-1].bias.fill_(low - slope * a)


def behler_nn(n_inputs, n_internal=15, n_layers=3, bias=True, activation=None, dtype=None, output_activation=False,
              init="torch"):
    """A Behler-Parrinello atomic network (0.1.4's name of :class:`SequentialSoleEnergyNN`, same arguments).

    ``n_layers`` ``Linear`` layers ``n_inputs -> n_internal -> ... -> 1`` with ``activation`` (default
    ``torch.nn.Sigmoid``; a ``torch.nn`` class, instance or name such as ``"tanh"``) between them;
    ``bias`` may be one flag or a list of ``n_layers`` flags; ``dtype`` is the parameter dtype;
    ``output_activation`` adds Amp's bounded, scaled output; ``init`` chooses the initialisation.
    """
    return SequentialSoleEnergyNN(n_inputs, n_internal=n_internal, n_layers=n_layers, bias=bias,
                                  activation=activation, dtype=dtype, output_activation=output_activation, init=init)


def linear(w, b=None):
    """A ``torch.nn.Linear`` computing ``x @ w + b``.

    Parameters
    ----------
    w : Tensor of shape (n_in, n_out)
    b : Tensor of shape (n_out,), optional
    """
    w = torch.as_tensor(w)
    out = torch.nn.Linear(w.shape[0], w.shape[1], bias=b is not None, dtype=w.dtype)
    with torch.no_grad():
        out.weight.copy_(w.T)
        if b is not None:
            out.bias.copy_(torch.as_tensor(b, dtype=w.dtype))
    return out


def _fuse(a, b):
    """Linear b after Linear a as one Linear."""
    w = a.weight.T @ b.weight.T
    bias = None
    if a.bias is not None or b.bias is not None:
        bias = torch.zeros(b.out_features, dtype=w.dtype)
        if a.bias is not None:
            bias = bias + a.bias @ b.weight.T
        if b.bias is not None:
            bias = bias + b.bias
    return linear(w.detach(), None if bias is None else bias.detach())


def _flatten(seq):
    for m in seq:
        if isinstance(m, torch.nn.Sequential):
            yield from _flatten(m)
        else:
            yield m


def simplify_sequential(seq):
    """Flatten nested Sequentials and fuse consecutive ``Linear`` layers (new modules, same function)."""
    out = []
    for m in _flatten(seq):
        if isinstance(m, torch.nn.Linear) and out and isinstance(out[-1], torch.nn.Linear):
            out[-1] = _fuse(out[-1], m)
        else:
            out.append(copy.deepcopy(m))
    return torch.nn.Sequential(*out)


def sequential_to_data(seq):
    """Plain-data description of a ``torch.nn.Sequential`` of standard layers.

    Returns
    -------
    dict
        ``{"type": "Sequential", "layers": [...]}``, tensors detached and cloned.

    Raises
    ------
    TypeError
        For a layer class not in ``LAYER_ARGS`` (custom modules cannot be stored as data).
    """
    if not isinstance(seq, torch.nn.Sequential):
        raise TypeError(f"nn must be a torch.nn.Sequential, got {type(seq).__name__}")
    layers = []
    for k, m in enumerate(seq):
        if isinstance(m, torch.nn.Sequential):
            layers.append(sequential_to_data(m))
            continue
        name = type(m).__name__
        if name not in LAYER_ARGS or type(m) is not getattr(torch.nn, name, None):
            raise TypeError(f"layer {k} ({type(m).__module__}.{type(m).__qualname__}) cannot be stored as data; "
                            f"supported layers: {sorted(LAYER_ARGS)}")
        args = {}
        for a in LAYER_ARGS[name]:
            v = getattr(m, a)
            if name == "Linear" and a == "bias":
                v = m.bias is not None
            args[a] = v
        tensors = {key: t.detach().clone() for key, t in m.state_dict().items()}
        layers.append({"type": name, "args": args, "tensors": tensors})
    return {"type": "Sequential", "layers": layers}


def sequential_from_data(data):
    """Rebuild a ``torch.nn.Sequential`` from :func:`sequential_to_data` output (exact round trip).

    Raises
    ------
    ValueError
        For malformed data or an unknown layer type.
    """
    if not isinstance(data, dict) or data.get("type") != "Sequential" or not isinstance(data.get("layers"), list):
        raise ValueError("nn data must be a dict {'type': 'Sequential', 'layers': [...]}")
    layers = []
    for k, item in enumerate(data["layers"]):
        if not isinstance(item, dict) or "type" not in item:
            raise ValueError(f"nn layer {k} is malformed: {item!r}")
        name = item["type"]
        if name == "Sequential":
            layers.append(sequential_from_data(item))
            continue
        if name not in LAYER_ARGS:
            raise ValueError(f"nn layer {k} has unknown type {name!r}; supported: {sorted(LAYER_ARGS)}")
        args = dict(item.get("args", {}))
        extra = set(args) - set(LAYER_ARGS[name])
        if extra:
            raise ValueError(f"nn layer {k} ({name}) has unknown arguments {sorted(extra)}")
        tensors = {key: torch.as_tensor(v) for key, v in item.get("tensors", {}).items()}
        dtype = next(iter(tensors.values())).dtype if tensors else None
        if dtype is not None and name in ("Linear", "PReLU"):
            args["dtype"] = dtype
        module = getattr(torch.nn, name)(**args)
        try:
            module.load_state_dict(tensors)
        except RuntimeError as e:
            raise ValueError(f"nn layer {k} ({name}): tensors do not fit: {e}") from None
        layers.append(module)
    return torch.nn.Sequential(*layers)
