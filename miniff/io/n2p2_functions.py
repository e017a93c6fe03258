"""n2p2's one-dimensional functions in numpy: cutoff functions (every n2p2 cutoff type, with the inner cutoff;
the screening of 4G-HDNNPs), and the networks' activations and forward pass.

The formulas are listed in :mod:`miniff.io.n2p2_model`; lengths in the files' unit.
"""

import math

import numpy as np

__all__ = ["cutoff_function", "network_outputs"]

_EXP_LIMIT = 35.0
_TANH3_1 = math.tanh(1.0) ** 3


def cutoff_function(r, rc, kind, alpha=0.0):
    """``(f_c(r), d f_c / d r)`` of n2p2's cutoff type ``kind`` (module docstring); ``r`` any shape."""
    r = np.asarray(r, dtype=float)
    inside = r < rc
    if kind in (2, 3):
        t = np.tanh(1.0 - r / rc)
        c = 1.0 / _TANH3_1 if kind == 3 else 1.0
        f, df = c * t**3, c * 3.0 * t**2 * (t**2 - 1.0) / rc
        return np.where(inside, f, 0.0), np.where(inside, df, 0.0)
    rci = alpha * rc
    iw = 1.0 / (rc - rci)
    x = np.clip((r - rci) * iw, 0.0, 1.0)
    if kind == 0:
        f, dfx = np.ones_like(x), np.zeros_like(x)
    else:
        f, dfx = _core(x, kind)
    inner = r < rci
    return (np.where(inside, np.where(inner, 1.0, f), 0.0),
            np.where(inside & ~inner, dfx * iw, 0.0))


def _core(x, kind):
    """``(f(x), f'(x))`` on ``[0, 1]`` of the cutoff-function cores (module docstring, types 1, 4-8)."""
    if kind == 1:
        return 0.5 * (np.cos(np.pi * x) + 1.0), -0.5 * np.pi * np.sin(np.pi * x)
    if kind == 4:
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            q = 1.0 - x * x
            f = np.where(q > 0, np.exp(1.0 - 1.0 / np.where(q > 0, q, 1.0)), 0.0)
            return f, np.where(q > 0, -2.0 * x * f / np.where(q > 0, q * q, 1.0), 0.0)
    if kind == 5:
        return (2.0 * x - 3.0) * x * x + 1.0, 6.0 * x * (x - 1.0)
    if kind == 6:
        return ((15.0 - 6.0 * x) * x - 10.0) * x**3 + 1.0, -30.0 * x * x * (x - 1.0) ** 2
    if kind == 7:
        return (x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x**4 + 1.0, 140.0 * x**3 * (x - 1.0) ** 3
    if kind == 8:
        return ((x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x**5 + 1.0,
                -630.0 * x**4 * (x - 1.0) ** 4)
    raise ValueError(f"cutoff type must be 0..8, got {kind}")


def _activation(letter, z):
    """``(value, derivative)`` of an n2p2 activation (``l t s p r g c S e h``)."""
    if letter == "l":
        return z, np.ones_like(z)
    if letter == "t":
        t = np.tanh(z)
        return t, 1.0 - t * t
    if letter in ("s", "S"):
        with np.errstate(over="ignore"):
            s = 1.0 / (1.0 + np.exp(-z))
        if letter == "S":
            return 1.0 - s, s * (s - 1.0)
        s = np.where(z > _EXP_LIMIT, 1.0, np.where(z < -_EXP_LIMIT, 0.0, s))
        return s, np.where(np.abs(z) > _EXP_LIMIT, 0.0, s * (1.0 - s))
    if letter == "p":
        zc = np.clip(z, -_EXP_LIMIT, _EXP_LIMIT)
        e = np.exp(zc)
        value = np.where(z > _EXP_LIMIT, z, np.where(z < -_EXP_LIMIT, 0.0, np.log(1.0 + e)))
        return value, np.where(z > _EXP_LIMIT, 1.0, np.where(z < -_EXP_LIMIT, 0.0, 1.0 / (1.0 + 1.0 / e)))
    if letter == "r":
        return np.where(z > 0, z, 0.0), np.where(z > 0, 1.0, 0.0)
    if letter == "g":
        e = np.exp(-0.5 * z * z)
        return e, -z * e
    if letter == "c":
        return np.cos(z), -np.sin(z)
    if letter == "e":
        e = np.exp(-z)
        return e, -e
    if letter == "h":
        return z * z, 2.0 * z
    raise ValueError(f"unknown n2p2 activation {letter!r}")


def network_outputs(weights, biases, activations, x, grad):
    """Outputs ``[M]`` of an n2p2 atomic network on inputs ``x [M, F]`` and, with ``grad``, ``d out / d x [M, F]``
    (``weights``: per layer ``[n_out, n_in]``, ``biases``: per layer ``[n_out]``, ``activations``: one letter per
    layer)."""
    derivs = []
    a = x
    for w, b, act in zip(weights, biases, activations, strict=True):
        a, d = _activation(act, a @ w.T + b)
        derivs.append(d)
    if not grad:
        return a[:, 0], None
    g = derivs[-1]
    for w, d in zip(weights[:0:-1], derivs[-2::-1], strict=True):
        g = (g @ w) * d
    return a[:, 0], g @ weights[0]
