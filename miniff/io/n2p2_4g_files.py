"""The 4G-HDNNP parts of an n2p2 potential folder, and n2p2's choice of Ewald parameters.

A 4G folder (``nnp_generation 4`` in ``input.nn``) has, besides the symmetry functions and ``scaling.data`` of a
2G one (:mod:`miniff.io.n2p2_files`), per element ``Z``: ``weightse.<Z:03d>.data`` (the electronegativity
network), ``weights.<Z:03d>.data`` (the short-range network, whose last input is the atom's charge) and
``hardness.<Z:03d>.data`` (one number: the atomic hardness ``J``, energy / e^2).  Weights files are read as n2p2
reads them: the first column, in n2p2's connection order (per layer: the weights from every neuron of the
previous layer to every neuron of the layer, then the layer's biases), whether or not the lines carry the
``a``/``b`` annotations.  Keywords of ``input.nn`` (lengths and energies in the files' units):

- ``global_hidden_layers_electrostatic``, ``global_nodes_electrostatic``, ``global_activation_electrostatic``:
  the electronegativity networks;
- ``fixed_gausswidth <element> <sigma>``: the width of the Gaussian charge of every element (all required);
- ``screen_electrostatics <inner> <outer> [<core>]``: the screening ``s(r)`` of the electrostatic energy (0 below
  ``inner``, ``1 - f((r - inner)/(outer - inner))`` between, 1 beyond; ``f`` the core ``c`` (default, cosine),
  ``p1``-``p4`` or ``e`` of the compact functions); absent: no screening;
- ``four_pi_epsilon <value>``: ``4 pi eps0`` in the files' units (default 1: atomic units);
- ``ewald_truncation_error_method 0|1`` and ``ewald_prec``: how the Ewald parameters of a periodic structure
  follow from its volume ``V`` and atom count ``N`` (:func:`ewald_split`);
- ``initial_hardness`` is a training setting and is ignored.
"""

import math
from dataclasses import dataclass

from scipy.optimize import brentq

from miniff.io.n2p2_files import ACTIVATIONS, _lines
from miniff.potentials.gaussian_qeq import EwaldSplit

__all__ = ["Generation4Settings", "generation4_settings", "read_connections", "read_hardness", "ewald_split",
           "SCREENING_CORES"]

#: Core functions of ``screen_electrostatics``: n2p2's letters and the cutoff type with the same core
#: (``miniff.io.n2p2_functions.cutoff_function``: 1 cosine, 5-8 the polynomials, 4 the exponential).
SCREENING_CORES = {"c": 1, "p1": 5, "p2": 6, "p3": 7, "p4": 8, "e": 4}
#: n2p2's ratio of the cost of a real-space and a reciprocal-space term (its optimal Ewald splitting).
_COST_RATIO = 3.676


@dataclass
class Generation4Settings:
    """The 4G keywords of ``input.nn`` (files' units)."""

    nodes: list  # hidden widths of the electronegativity networks
    activations: list  # one letter per layer after the input
    sigma: dict  # element symbol -> Gaussian width
    screening: tuple  # (inner, outer, core letter) or None
    four_pi_epsilon: float
    ewald_method: int  # 0 (Jackson-Catlow) or 1 (Kolafa-Perram)
    ewald_prec: tuple  # the numbers of ewald_prec (None when absent)


def _fail(path, number, message):
    raise ValueError(f"{path}: line {number}: {message}")


def _float(path, number, word):
    try:
        return float(word)
    except ValueError:
        _fail(path, number, f"{word!r} is not a number")


def _single(path, extras, key):
    entries = extras.get(key, [])
    if len(entries) > 1:
        _fail(path, entries[1][0], f"keyword {key!r} appears twice")
    return entries[0] if entries else None


def generation4_settings(path, model):
    """The :class:`Generation4Settings` of a parsed 4G model (``model.extras``; ``path``: its ``input.nn``)."""
    extras = model.extras
    entry = _single(path, extras, "global_hidden_layers_electrostatic")
    if entry is None:
        raise ValueError(f"{path}: keyword 'global_hidden_layers_electrostatic' is missing (4G-HDNNP)")
    number, words = entry
    if len(words) != 1 or not words[0].isdigit():
        _fail(path, number, "global_hidden_layers_electrostatic needs one non-negative integer")
    n_hidden = int(words[0])
    number, words = _single(path, extras, "global_nodes_electrostatic") or (0, [])
    if len(words) != n_hidden or not all(w.isdigit() and int(w) > 0 for w in words):
        _fail(path, number, f"global_nodes_electrostatic needs {n_hidden} positive widths, got {words}")
    nodes = [int(w) for w in words]
    number, activations = _single(path, extras, "global_activation_electrostatic") or (0, [])
    if len(activations) != n_hidden + 1 or any(a not in ACTIVATIONS for a in activations):
        _fail(path, number, f"global_activation_electrostatic needs {n_hidden + 1} activations among {ACTIVATIONS}, "
                            f"got {activations}")
    symbols = [e.symbol for e in model.elements]
    sigma = {}
    for number, words in extras.get("fixed_gausswidth", []):
        if len(words) != 2 or words[0] not in symbols:
            _fail(path, number, f"fixed_gausswidth needs '<element> <width>' with an element of {symbols}")
        if words[0] in sigma:
            _fail(path, number, f"fixed_gausswidth of {words[0]} appears twice")
        sigma[words[0]] = _float(path, number, words[1])
        if not sigma[words[0]] > 0:
            _fail(path, number, "the Gaussian width must be positive")
    missing = [s for s in symbols if s not in sigma]
    if missing:
        raise ValueError(f"{path}: fixed_gausswidth is missing for {missing}")
    screening = None
    entry = _single(path, extras, "screen_electrostatics")
    if entry is not None:
        number, words = entry
        if len(words) not in (2, 3):
            _fail(path, number, "screen_electrostatics needs '<inner> <outer> [<core>]'")
        inner, outer = (_float(path, number, w) for w in words[:2])
        core = words[2] if len(words) == 3 else "c"
        if not inner < outer or core not in SCREENING_CORES:
            _fail(path, number, f"screen_electrostatics needs inner < outer and a core among "
                                f"{sorted(SCREENING_CORES)}, got {words}")
        screening = (inner, outer, core)
    four_pi_epsilon = 1.0
    entry = _single(path, extras, "four_pi_epsilon")
    if entry is not None:
        number, words = entry
        four_pi_epsilon = _float(path, number, words[0]) if len(words) == 1 else _fail(path, number, "one number")
        if not four_pi_epsilon > 0:
            _fail(path, number, "four_pi_epsilon must be positive")
    method = 0
    entry = _single(path, extras, "ewald_truncation_error_method")
    if entry is not None:
        number, words = entry
        if words not in (["0"], ["1"]):
            _fail(path, number, f"ewald_truncation_error_method must be 0 or 1, got {words}")
        method = int(words[0])
    prec = None
    entry = _single(path, extras, "ewald_prec")
    if entry is not None:
        number, words = entry
        prec = tuple(_float(path, number, w) for w in words)
        allowed = (1,) if method == 0 else (2, 3)
        if len(prec) not in allowed or not all(v > 0 for v in prec):
            _fail(path, number, f"ewald_prec with ewald_truncation_error_method {method} needs "
                                f"{' or '.join(str(a) for a in allowed)} positive numbers (precision"
                                f"{', maximum charge [, real-space cutoff]' if method else ''}), got {words}")
        if method == 0 and not prec[0] < 1:
            _fail(path, number, "ewald_prec must be below 1 with ewald_truncation_error_method 0")
    return Generation4Settings(nodes, list(activations), sigma, screening, four_pi_epsilon, method, prec)


def _data_lines(path):
    return _lines(path, "does not exist (4G-HDNNP potentials need it)")


def read_connections(path, widths):
    """``(weights, biases)`` per layer (``[n_out][n_in]``, ``[n_out]``) of a network of ``widths`` from the first
    column of ``path`` in n2p2's connection order (module docstring)."""
    values = [_float(path, number, words[0]) for number, words in _data_lines(path)]
    expected = sum(widths[k] * widths[k + 1] + widths[k + 1] for k in range(len(widths) - 1))
    if len(values) != expected:
        raise ValueError(f"{path}: {len(values)} connections, a network of widths {widths} has {expected}")
    weights, biases, at = [], [], 0
    for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
        block = values[at:at + n_in * n_out]
        weights.append([[block[j * n_out + k] for j in range(n_in)] for k in range(n_out)])
        at += n_in * n_out
        biases.append(values[at:at + n_out])
        at += n_out
    return weights, biases


def read_hardness(path):
    """The atomic hardness in ``path`` (one number)."""
    lines = list(_data_lines(path))
    if len(lines) != 1:
        raise ValueError(f"{path}: a hardness file holds one number, found {len(lines)} lines")
    number, words = lines[0]
    return _float(path, number, words[0])


def _root(f, lo, hi):
    """The root of the increasing function ``f`` on ``(lo, hi)`` (widening ``hi``)."""
    while f(hi) < 0:
        hi *= 2.0
    return brentq(f, lo, hi, xtol=1e-300, rtol=1e-15, maxiter=500)


def ewald_split(settings, volume, n_atoms, max_sigma):
    """n2p2's Ewald parameters of a periodic structure (files' units), from ``ewald_prec`` ``(p[, q_max[,
    r_cut]])`` and ``k = 1 / four_pi_epsilon``:

    - method 0 (Jackson and Catlow): ``eta = V^(1/3) / sqrt(2 pi)``, ``r_cut = sqrt(-2 ln p) eta``, ``k_cut =
      sqrt(-2 ln p) / eta``;
    - method 1 (Kolafa and Perram) with ``(p, q_max)``: ``C = 2^(3/4) q_max^2 sqrt(N / V) k``, ``eta`` the
      fixed point of ``eta = eta_0 (1 + 1 / (2 s^2))^(1/6)`` with ``eta_0 = (V^2 / (3.676 (2 pi)^3))^(1/6)`` and
      ``s`` solving ``exp(-s^2) / sqrt(s) = p / C sqrt(eta / 2)``, then ``eta = max(eta, max sigma)``, ``r_cut =
      sqrt(2) eta s``, ``k_cut = sqrt(2) s / eta``;
    - method 1 with ``(p, q_max, r_cut)``: ``C = 2 q_max^2 sqrt(N / V) k``, ``eta = r_cut / sqrt(-2 ln(sqrt(r_cut
      / 2) p / C))``, ``k_cut`` solving ``exp(-(k_cut eta)^2 / 2) / sqrt(k_cut) = eta p / (sqrt(2) C)``.
    """
    prec = settings.ewald_prec
    if prec is None:
        raise ValueError("a periodic structure needs the Ewald settings of input.nn: keyword 'ewald_prec' is missing")
    k = 1.0 / settings.four_pi_epsilon
    p = prec[0]
    if settings.ewald_method == 0:
        eta = volume ** (1.0 / 3.0) / math.sqrt(2.0 * math.pi)
        root = math.sqrt(-2.0 * math.log(p))
        return EwaldSplit(eta, root * eta, root / eta)
    if len(prec) == 3:
        r_cut = prec[2]
        c = 2.0 * prec[1] ** 2 * math.sqrt(n_atoms / volume) * k
        x = math.sqrt(r_cut / 2.0) * p / c
        if not x < 1:
            raise ValueError(f"ewald_prec {prec}: the precision is too coarse for this structure (n2p2 refuses it too)")
        eta = r_cut / math.sqrt(-2.0 * math.log(x))
        y = eta * p / (math.sqrt(2.0) * c)
        k_cut = _root(lambda q: (q * eta) ** 2 / 2.0 + 0.5 * math.log(q) + math.log(y), 1e-300, 1.0 / eta)
        return EwaldSplit(eta, r_cut, k_cut)
    c = 2.0 ** 0.75 * prec[1] ** 2 * math.sqrt(n_atoms / volume) * k
    eta0 = (volume**2 / (_COST_RATIO * (2.0 * math.pi) ** 3)) ** (1.0 / 6.0)
    eta, s = eta0, 1.0
    for _ in range(1000):
        y = p / c * math.sqrt(eta / 2.0)
        s = _root(lambda t, y=y: t * t + 0.5 * math.log(t) + math.log(y), 1e-300, 1.0)
        new = eta0 * (1.0 + 1.0 / (2.0 * s * s)) ** (1.0 / 6.0)
        converged = abs(new - eta) <= 1e-14 * new
        eta = new
        if converged:
            break
    eta = max(eta, max_sigma)
    return EwaldSplit(eta, math.sqrt(2.0) * eta * s, math.sqrt(2.0) * s / eta)

