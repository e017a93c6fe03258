"""Reading n2p2 potential folders (``input.nn``, ``scaling.data``, ``weights.NNN.data``) into plain data.

Only what prediction needs is kept; :func:`miniff.io.read_n2p2` turns the result into potentials.  Every
error names the file and the line.  Facts of the format (n2p2's documentation and example files):

- ``input.nn``: one keyword per line, ``#`` starts a comment.  Elements are ordered by atomic number (this is
  the element index of ``scaling.data`` and of the symmetry-function sort).
- ``symfunction_short`` (or ``symfunction``) ``<ec> 2 <e1> <eta> <rs> <rc>``;
  ``symfunction_short <ec> 3|9 <e1> <e2> <eta> <lambda> <zeta> <rc> [<rs>]``;
  ``symfunction_short <ec> 20 <e1> <rl> <rc> <subtype>``;
  ``symfunction_short <ec> 21|22 <e1> <e2> <rl> <rc> <angle_left> <angle_right> <subtype>`` (lengths in the file's
  unit, angles in degrees).
- Per element the symmetry functions are sorted by type, then types 2/3/9 by (cutoff type, cutoff alpha, rc,
  eta, rs, zeta, lambda, e1, e2), type 20 by (subtype, e1, rc, rl), types 21/22 by (subtype, e1, e2, rc,
  rl, angle_left, angle_right), with ``e1 <= e2`` by element index; that order is the network input order and
  the row order of ``scaling.data`` (``<element index> <function index> <Gmin> <Gmax> <Gmean> [<Gsigma>]``,
  both 1-based).
- ``weights.<Z:03d>.data``: one value per line, ``<value> a <index> <l_s> <n_s> <l_e> <n_e>`` for the weight
  from neuron ``n_s`` of layer ``l_s`` to neuron ``n_e`` of layer ``l_e``, ``<value> b <index> <l_e> <n_e>``
  for a bias (neurons 1-based, layer 0 = the inputs).
"""

import os
from dataclasses import dataclass, field

__all__ = ["N2p2Element", "N2p2Model", "parse_n2p2_folder", "n2p2_generation", "IGNORED_KEYWORDS",
           "GENERATION4_KEYWORDS", "ACTIVATIONS", "COMPACT_SUBTYPES",
           "LINE_FIELDS", "WEIGHTED_TYPES", "ANGULAR_TYPES", "COMPACT_TYPES", "function_sort_key", "function_line"]

#: n2p2 activation letters this reader evaluates.
ACTIVATIONS = ("l", "t", "s", "p", "r", "g", "c", "S", "e", "h")

#: Compact-function subtypes of types 20-22: polynomials 1-4, their asymmetric forms, the exponential.
COMPACT_SUBTYPES = ("p1", "p2", "p3", "p4", "p1a", "p2a", "p3a", "p4a", "e")

#: Keywords of ``input.nn`` that do not change predictions (training, output and data-set settings): ignored.
IGNORED_KEYWORDS = frozenset("""
epochs random_seed test_fraction use_short_forces updater_type update_strategy selection_mode parallel_mode
jacobian_mode task_batch_size_energy task_batch_size_force task_batch_size_charge short_energy_fraction
short_force_fraction force_weight charge_fraction weights_min weights_max write_weights_epoch write_trainpoints
write_trainforces write_trainlog write_neuronstats write_traincharges memorize_symfunc_results
rmse_threshold_trials short_energy_error_threshold short_force_error_threshold main_error_metric kalman_type
kalman_epsilon kalman_eta kalman_etatau kalman_etamax kalman_q0 kalman_qtau kalman_qmin kalman_lambda_short
kalman_nue_short gradient_type gradient_eta gradient_adam_eta gradient_adam_beta1 gradient_adam_beta2
gradient_adam_epsilon repeated_energy_update precondition_weights nguyen_widrow_weights_short
number_of_elements write_weights_epoch_stride
""".split())

#: Keywords of 4G-HDNNP settings files (read by ``miniff.io.n2p2_4g``; refused in a 2G file).
GENERATION4_KEYWORDS = frozenset("""
global_hidden_layers_electrostatic global_nodes_electrostatic global_activation_electrostatic fixed_gausswidth
ewald_truncation_error_method ewald_prec screen_electrostatics four_pi_epsilon initial_hardness
""".split())
#: n2p2's names of the keyword selecting the kind of potential, and the values of the two kinds read here.
_GENERATION_KEYS = ("nnp_generation", "nnp_type", "nnp_type_gen", "nnp_gen")
_GENERATIONS = {"2": 2, "2G-HDNNP": 2, "4": 4, "4G-HDNNP": 4}

_SCALING_KEYS = ("scale_symmetry_functions", "center_symmetry_functions", "scale_symmetry_functions_sigma")


@dataclass
class N2p2Element:
    """One element of an n2p2 potential (lengths and energies in the files' units)."""

    symbol: str
    number: int
    functions: list = field(default_factory=list)  # sorted dicts: type, e1, e2, eta, rs, zeta, lambda, rc
    scaling: list = field(default_factory=list)  # per function (Gmin, Gmax, Gmean, Gsigma or None)
    weights: list = field(default_factory=list)  # per layer: W [n_out][n_in]
    biases: list = field(default_factory=list)  # per layer: b [n_out]
    atom_energy: float = 0.0


@dataclass
class N2p2Model:
    """Settings shared by all elements of an n2p2 potential."""

    elements: list  # N2p2Element, by atomic number
    cutoff_type: int
    cutoff_alpha: float
    scaling: str  # "none", "scale", "center", "scalecenter", "scalesigma"
    scale_min: float
    scale_max: float
    activations: list  # one letter per layer after the input
    mean_energy: float = 0.0
    conv_energy: float = 1.0
    conv_length: float = 1.0
    conv_charge: float = 1.0  # 4G-HDNNPs: the charge input of the short-range networks is Q conv_charge
    nodes: list = field(default_factory=list)  # hidden widths of the (short-range) networks
    generation: int = 2  # 2: short-range HDNNP; 4: 4G-HDNNP (charge equilibration, miniff.io.n2p2_4g)
    extras: dict = field(default_factory=dict)  # 4G keywords: {keyword: [(line number, words after it)]}


def _fail(path, number, message):
    raise ValueError(f"{path}: line {number}: {message}")


def _number(path, number, word, kind=float):
    try:
        return kind(word)
    except ValueError:
        pass
    _fail(path, number, f"{word!r} is not a{'n integer' if kind is int else ' number'}")


def _lines(path, missing="does not exist"):
    """``(line number, words)`` of every line of ``path`` with words (``#`` starts a comment); FileNotFoundError
    ``n2p2 potential file <path> <missing>`` when there is no such file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"n2p2 potential file {path} {missing}")
    with open(path) as handle:
        for number, raw in enumerate(handle, 1):
            words = raw.split("#", 1)[0].split()
            if words:
                yield number, words


#: Fields of a ``symfunction_short`` line after ``<ec> <type>``, per type (``[rs]``: optional, default 0).
LINE_FIELDS = {
    2: ("e1", "eta", "rs", "rc"),
    3: ("e1", "e2", "eta", "lambda", "zeta", "rc", "[rs]"),
    9: ("e1", "e2", "eta", "lambda", "zeta", "rc", "[rs]"),
    12: ("eta", "rs", "rc"),
    13: ("eta", "rs", "lambda", "zeta", "rc"),
    20: ("e1", "rl", "rc", "subtype"),
    21: ("e1", "e2", "rl", "rc", "al", "ar", "subtype"),
    22: ("e1", "e2", "rl", "rc", "al", "ar", "subtype"),
    23: ("rl", "rc", "subtype"),
    24: ("rl", "rc", "al", "ar", "subtype"),
    25: ("rl", "rc", "al", "ar", "subtype"),
}
#: Types whose neighbours of every element count, weighted by their atomic numbers.
WEIGHTED_TYPES = (12, 13, 23, 24, 25)
#: Types summed over neighbour pairs (angular).
ANGULAR_TYPES = (3, 9, 13, 21, 22, 24, 25)
#: Compact-function types (radial and angular parts on intervals, no cutoff function).
COMPACT_TYPES = (20, 21, 22, 23, 24, 25)
_NAMES = {"e1": "e1", "e2": "e2", "eta": "eta", "rs": "rs", "[rs]": "rs", "lambda": "lambda", "zeta": "zeta",
          "rc": "rc", "rl": "rl", "al": "angle_left", "ar": "angle_right", "subtype": "subtype"}


def function_sort_key(f, cutoff_type, alpha):
    """n2p2's order of the symmetry functions of one element (``f`` a function dict of the parser)."""
    kind = f["type"]
    if kind in COMPACT_TYPES:
        angles = (f["al"], f["ar"]) if kind in ANGULAR_TYPES else ()
        return (kind, f["subtype"]) + tuple(f[e] for e in ("e1", "e2") if f[e] >= 0) + (f["rc"], f["rl"]) + angles
    angular = (f["zeta"], f["lambda"]) if kind in ANGULAR_TYPES else ()
    return (kind, cutoff_type, alpha, f["rc"], f["eta"], f["rs"]) + angular + tuple(
        f[e] for e in ("e1", "e2") if f[e] >= 0)


def function_line(f, symbols):
    """The ``symfunction_short`` line of function dict ``f`` (``symbols``: element symbols by index); numbers are
    written with all their digits so that reading the line back gives the same floats."""
    words = ["symfunction_short", symbols[f["ec"]], str(f["type"])]
    for name in LINE_FIELDS[f["type"]]:
        key = name.strip("[]")
        value = f[key]
        words.append(symbols[value] if key in ("e1", "e2") else value if key == "subtype" else repr(float(value)))
    return " ".join(words)


def _symmetry_function(path, number, words, index):
    """The function dict of a ``symfunction_short`` line: ``type, ec, e1, e2`` (element indices, -1: none or
    every element), ``eta, rs, zeta, lambda, rc, rl, al, ar`` (floats) and ``subtype``."""
    if len(words) < 3:
        _fail(path, number, "symfunction_short needs '<element> <type> ...'")
    kind = int(words[2]) if words[2].isdigit() else words[2]
    if kind not in LINE_FIELDS:
        _fail(path, number, f"symmetry function type {words[2]} is not supported (supported: "
                            f"{', '.join(str(k) for k in LINE_FIELDS)})")
    fields = LINE_FIELDS[kind]
    n_required = sum(not name.startswith("[") for name in fields)
    if not n_required <= len(words) - 3 <= len(fields):
        shape = " ".join(_NAMES[name] for name in fields)
        _fail(path, number, f"a type {kind} symmetry function has {n_required + 3}"
                            f"{'' if n_required == len(fields) else f' or {len(fields) + 3}'} fields "
                            f"(symfunction_short ec {kind} {shape}), got {len(words)}")
    f = {"type": kind, "ec": words[1], "e1": -1, "e2": -1, "eta": 0.0, "rs": 0.0, "zeta": 0.0, "lambda": 0.0,
         "rc": 0.0, "rl": 0.0, "al": 0.0, "ar": 0.0, "subtype": ""}
    for name, word in zip(fields[:len(words) - 3], words[3:], strict=True):
        key = name.strip("[]")
        if key in ("e1", "e2", "subtype"):
            f[key] = word
        else:
            f[key] = _number(path, number, word)
    for key in ("ec", "e1", "e2"):
        if f[key] != -1:
            if f[key] not in index:
                _fail(path, number, f"element {f[key]!r} is not in 'elements'")
            f[key] = index[f[key]]
    if f["e2"] >= 0:
        f["e1"], f["e2"] = sorted((f["e1"], f["e2"]))
    if kind in COMPACT_TYPES:
        if f["subtype"] not in COMPACT_SUBTYPES:
            _fail(path, number, f"compact function subtype {f['subtype']!r} is not one of {COMPACT_SUBTYPES}")
        if not f["rl"] < f["rc"]:
            _fail(path, number, f"rl ({f['rl']}) must be below rc ({f['rc']})")
        if kind in ANGULAR_TYPES:
            al, ar = f["al"], f["ar"]
            centre = (al + ar) / 2
            if not al < ar or ar - al > 360 or (al < 0 and centre != 0) or (ar > 180 and centre != 180):
                _fail(path, number, f"angles [{al}, {ar}]: need left < right, a width of at most 360 degrees, and "
                                    f"a centre of 0 (180) when the left (right) angle is beyond 0 (180)")
    return f


def _read_input(path):
    settings = {}
    sym = []
    atom_energy = {}
    extras = {}
    generation = (0, 2)
    for number, words in _lines(path):
        key = words[0]
        if key in ("symfunction_short", "symfunction"):
            sym.append((number, words))
        elif key == "atom_energy":
            if len(words) != 3:
                _fail(path, number, "atom_energy needs '<element> <energy>'")
            atom_energy[words[1]] = (number, _number(path, number, words[2]))
        elif key in _GENERATION_KEYS:
            generation = (number, _generation_of(path, number, words))
        elif key in GENERATION4_KEYWORDS:
            extras.setdefault(key, []).append((number, words[1:]))
        elif key in IGNORED_KEYWORDS:
            continue
        elif key in ("elements", "cutoff_type", "mean_energy", "conv_energy", "conv_length", "conv_charge",
                     "scale_min_short",
                     "scale_max_short", "global_hidden_layers_short", "global_nodes_short",
                     "global_activation_short") + _SCALING_KEYS:
            if key in settings:
                _fail(path, number, f"keyword {key!r} appears twice")
            settings[key] = (number, words[1:])
        else:
            _fail(path, number, f"keyword {key!r} is not supported: it may change the model (the keywords "
                                f"ignored as irrelevant to prediction are listed in miniff.io.n2p2_files.IGNORED_"
                                f"KEYWORDS)")
    for key in ("elements", "cutoff_type", "global_hidden_layers_short", "global_nodes_short",
                "global_activation_short"):
        if key not in settings:
            raise ValueError(f"{path}: keyword {key!r} is missing")
    if generation[1] != 4 and extras:
        key, ((number, _), *_) = next(iter(extras.items()))
        _fail(path, number, f"keyword {key!r} belongs to 4G-HDNNP potentials, but the file does not say "
                            f"'nnp_generation 4'")
    settings["generation"] = generation
    settings["extras"] = extras
    return settings, sym, atom_energy


def _model_settings(path, settings):
    from ase.data import atomic_numbers

    number, symbols = settings["elements"]
    for s in symbols:
        if s not in atomic_numbers:
            _fail(path, number, f"{s!r} is not a chemical element")
    if not symbols or len(set(symbols)) != len(symbols):
        _fail(path, number, "elements must list distinct chemical elements")
    symbols = sorted(symbols, key=lambda s: atomic_numbers[s])
    number, words = settings["cutoff_type"]
    cutoff_type = _number(path, number, words[0], int) if words else -1
    if not 0 <= cutoff_type <= 8:
        _fail(path, number, f"cutoff_type must be 0..8, got {' '.join(words)}")
    alpha = _number(path, number, words[1]) if len(words) > 1 else 0.0
    if not 0 <= alpha < 1:
        _fail(path, number, f"the inner cutoff alpha must be in [0, 1), got {alpha}")
    has = {k: k in settings for k in _SCALING_KEYS}
    if has["scale_symmetry_functions_sigma"]:
        scaling = "scalesigma"
    elif has["scale_symmetry_functions"]:
        scaling = "scalecenter" if has["center_symmetry_functions"] else "scale"
    else:
        scaling = "center" if has["center_symmetry_functions"] else "none"
    number, words = settings["global_hidden_layers_short"]
    n_hidden = _number(path, number, words[0], int) if len(words) == 1 else -1
    if n_hidden < 0:
        _fail(path, number, "global_hidden_layers_short needs one non-negative integer")
    number, words = settings["global_nodes_short"]
    nodes = [_number(path, number, w, int) for w in words]
    if len(nodes) != n_hidden or any(n < 1 for n in nodes):
        _fail(path, number, f"global_nodes_short needs {n_hidden} positive widths, got {words}")
    number, words = settings["global_activation_short"]
    if len(words) != n_hidden + 1 or any(w not in ACTIVATIONS for w in words):
        _fail(path, number, f"global_activation_short needs {n_hidden + 1} activations among {ACTIVATIONS}, got "
                            f"{words}")
    activations = list(words)
    normalisation = [k for k in ("mean_energy", "conv_energy", "conv_length", "conv_charge") if k in settings]
    if normalisation and not {"mean_energy", "conv_energy", "conv_length"} <= set(normalisation):
        _fail(path, settings[normalisation[0]][0], f"data-set normalisation needs all of mean_energy, conv_energy and "
                                                   f"conv_length (conv_charge only with them), found {normalisation}")
    scalars = {}
    for key, default in (("mean_energy", 0.0), ("conv_energy", 1.0), ("conv_length", 1.0), ("conv_charge", 1.0),
                         ("scale_min_short", 0.0), ("scale_max_short", 1.0)):
        if key in settings:
            number, words = settings[key]
            if len(words) != 1:
                _fail(path, number, f"{key} needs one number")
            scalars[key] = _number(path, number, words[0])
            if key.startswith("conv") and not scalars[key] > 0:
                _fail(path, number, f"{key} must be positive")
        else:
            scalars[key] = default
    model = N2p2Model(elements=[N2p2Element(s, atomic_numbers[s]) for s in symbols], cutoff_type=cutoff_type,
                      cutoff_alpha=alpha, scaling=scaling, scale_min=scalars["scale_min_short"],
                      scale_max=scalars["scale_max_short"], activations=activations,
                      mean_energy=scalars["mean_energy"], conv_energy=scalars["conv_energy"],
                      conv_length=scalars["conv_length"], conv_charge=scalars["conv_charge"],
                      generation=settings["generation"][1], extras=settings["extras"])
    return model, nodes


def _read_scaling(path, model):
    rows = {}
    for number, words in _lines(path):
        if len(words) == 2 and model.generation == 4:
            continue  # the trailing line of two numbers of 4G files (n2p2 does not read it)
        if len(words) not in (5, 6):
            _fail(path, number, f"expected '<element> <function> <Gmin> <Gmax> <Gmean> [<Gsigma>]', got "
                                f"{len(words)} fields")
        e, f = (_number(path, number, w, int) for w in words[:2])
        values = [_number(path, number, w) for w in words[2:]]
        if not 1 <= e <= len(model.elements) or not 1 <= f <= len(model.elements[e - 1].functions):
            _fail(path, number, f"element {e} / function {f} does not exist in input.nn")
        if (e, f) in rows:
            _fail(path, number, f"element {e} / function {f} appears twice")
        gmin, gmax, gmean = values[:3]
        gsigma = values[3] if len(values) == 4 else None
        if model.scaling in ("scale", "scalecenter") and not gmax > gmin:
            _fail(path, number, f"Gmax ({gmax}) must exceed Gmin ({gmin}) for min/max scaling")
        if model.scaling == "scalesigma" and not (gsigma is not None and gsigma > 0):
            _fail(path, number, "scale_symmetry_functions_sigma needs a positive Gsigma (6th column)")
        rows[(e, f)] = (gmin, gmax, gmean, gsigma)
    for e, element in enumerate(model.elements, 1):
        missing = [f for f in range(1, len(element.functions) + 1) if (e, f) not in rows]
        if missing:
            raise ValueError(f"{path}: no row for element {e} ({element.symbol}) function(s) {missing[:5]}")
        element.scaling = [rows[(e, f)] for f in range(1, len(element.functions) + 1)]


def _read_weights(path, widths):
    n_layers = len(widths) - 1
    weights = [[[None] * widths[k] for _ in range(widths[k + 1])] for k in range(n_layers)]
    biases = [[None] * widths[k + 1] for k in range(n_layers)]
    count = 0
    for number, words in _lines(path):
        value = _number(path, number, words[0])
        if len(words) == 7 and words[1] == "a":
            ls, ns, le, ne = (_number(path, number, w, int) for w in words[3:7])
            if not (0 <= ls < n_layers and le == ls + 1 and 1 <= ns <= widths[ls] and 1 <= ne <= widths[le]):
                _fail(path, number, f"weight from layer {ls} neuron {ns} to layer {le} neuron {ne} does not exist "
                                    f"in a network of widths {widths}")
            slot, row, col = weights[ls], ne - 1, ns - 1
        elif len(words) == 5 and words[1] == "b":
            le, ne = (_number(path, number, w, int) for w in words[3:5])
            if not (1 <= le <= n_layers and 1 <= ne <= widths[le]):
                _fail(path, number, f"bias of layer {le} neuron {ne} does not exist in a network of widths {widths}")
            slot, row, col = biases, le - 1, ne - 1
        else:
            _fail(path, number, "expected '<value> a <index> <l_s> <n_s> <l_e> <n_e>' or '<value> b <index> <l_e> "
                                "<n_e>'")
        if slot[row][col] is not None:
            _fail(path, number, "this connection appears twice")
        slot[row][col] = value
        count += 1
    expected = sum(widths[k] * widths[k + 1] + widths[k + 1] for k in range(n_layers))
    if count != expected:
        raise ValueError(f"{path}: {count} connections, a network of widths {widths} has {expected}")
    return weights, biases


def _folder_input(folder):
    """``(folder, path of its input.nn)`` for an existing folder; TypeError / FileNotFoundError otherwise."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or PathLike), got {type(folder).__name__}")
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"n2p2 potential folder {folder} does not exist")
    return folder, os.path.join(folder, "input.nn")


def n2p2_generation(folder):
    """2 or 4: the generation an n2p2 folder's ``input.nn`` declares (``nnp_generation``; 2 when absent).
    Raises like :func:`parse_n2p2_folder` for a missing folder or file."""
    folder, path = _folder_input(folder)
    for number, words in _lines(path):
        if words[0] in _GENERATION_KEYS:
            return _generation_of(path, number, words)
    return 2


def _generation_of(path, number, words):
    """2 or 4 from an ``nnp_generation`` line (ValueError naming the file and line otherwise)."""
    if len(words) != 2 or words[1] not in _GENERATIONS:
        _fail(path, number, f"{words[0]} {' '.join(words[1:])}: only 2G-HDNNP (2) and 4G-HDNNP (4) potentials are "
                            f"supported")
    return _GENERATIONS[words[1]]


def parse_n2p2_folder(folder, generation=2):
    """An :class:`N2p2Model` from the files of ``folder`` (see the module docstring).

    ``generation`` is the kind of potential expected (ValueError when ``input.nn`` declares another); for 4
    the weights files are left to ``miniff.io.n2p2_4g`` (the model holds no weights)."""
    folder, path = _folder_input(folder)
    settings, sym, atom_energy = _read_input(path)
    number, declared = settings["generation"]
    if declared != generation:
        where = f"{path}: line {number}" if number else f"{path} (no nnp_generation: 2)"
        raise ValueError(f"{where}: this folder holds a {declared}G-HDNNP potential, not a {generation}G one (read "
                         f"it with miniff.io.read_n2p2)")
    model, nodes = _model_settings(path, settings)
    model.nodes = list(nodes)
    index = {e.symbol: k for k, e in enumerate(model.elements)}
    for symbol, (number, _) in atom_energy.items():
        if symbol not in index:
            _fail(path, number, f"atom_energy of {symbol!r}, which is not in 'elements'")
    for number, words in sym:
        f = _symmetry_function(path, number, words, index)
        if not f["rc"] > 0 or f["eta"] < 0:
            _fail(path, number, f"rc must be positive and eta non-negative, got rc={f['rc']}, eta={f['eta']}")
        model.elements[f["ec"]].functions.append(f)
    for element in model.elements:
        if not element.functions:
            raise ValueError(f"{path}: element {element.symbol} has no symfunction_short line")
        element.functions.sort(key=lambda f: function_sort_key(f, model.cutoff_type, model.cutoff_alpha))
        element.atom_energy = atom_energy.get(element.symbol, (0, 0.0))[1]
    _read_scaling(os.path.join(folder, "scaling.data"), model)
    if generation == 4:
        return model
    for element in model.elements:
        widths = [len(element.functions)] + nodes + [1]
        wpath = os.path.join(folder, f"weights.{element.number:03d}.data")
        if not os.path.isfile(wpath):
            raise FileNotFoundError(f"{wpath}: no weights for element {element.symbol} (expected this file)")
        element.weights, element.biases = _read_weights(wpath, widths)
    return model
