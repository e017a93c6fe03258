"""Units and JSON with arrays (the 0.1.4 file format).

miniff works in eV and Å (ASE's units) throughout. 0.1.4 used the numericalunits package and
annotated arrays in its JSON files with unit expressions such as ``"angstrom"``, ``"eV/angstrom"``
or ``"Ry/aBohr**3"``. This module keeps that file format:

- :func:`dump`, :func:`dumps` write numpy arrays (and torch tensors) as
  ``{"_type": "numpy", "data": [...], "complex": bool, "units": expr | null}``;
- :func:`load`, :func:`loads` read them back and multiply the data by the value of the unit
  expression in eV/Å units, so everything loaded is in miniff's internal units.

Unit expressions are parsed by a small recursive-descent parser (names, numbers, ``*``, ``/``,
``**`` or ``^`` with a numeric exponent, parentheses); nothing is ever passed to ``eval``.
"""

import json
import math
import os
import re

import numpy as np

from miniff._atomic import atomic_write_text

__all__ = [
    "BOHR",
    "HARTREE",
    "RYDBERG",
    "EV_J",
    "AVOGADRO",
    "COULOMB",
    "UNITS",
    "Quantity",
    "UnknownUnitError",
    "UnitsDict",
    "unit_value",
    "dump",
    "dumps",
    "load",
    "loads",
    "atomic_write",
    "init_default_atomic_units",
]

#: Physical constants (CODATA 2018): the only place miniff writes them down.
#: Bohr radius, Å.
BOHR = 0.529177210903
#: Hartree energy, eV.
HARTREE = 27.211386245988
#: Rydberg energy, eV.
RYDBERG = HARTREE / 2
#: Elementary charge, J per eV.
EV_J = 1.602176634e-19
#: Avogadro constant, 1/mol.
AVOGADRO = 6.02214076e23
#: Coulomb constant e^2 / (4 pi eps0), eV Å (= Hartree x Bohr; the Ewald families' default ``scale``).
COULOMB = HARTREE * BOHR
_BOHR, _HARTREE, _EV_J = BOHR, HARTREE, EV_J

#: Values of named units in miniff's internal units (eV, Å; time in fs is not used internally).
UNITS = {
    "1": 1.0,
    "angstrom": 1.0,
    "Angstrom": 1.0,
    "AA": 1.0,
    "nm": 10.0,
    "pm": 1e-2,
    "m": 1e10,
    "cm": 1e8,
    "um": 1e4,
    "aBohr": _BOHR,
    "bohr": _BOHR,
    "Bohr": _BOHR,
    "eV": 1.0,
    "meV": 1e-3,
    "keV": 1e3,
    "Ry": _HARTREE / 2,
    "mRy": _HARTREE / 2000,
    "Hartree": _HARTREE,
    "hartree": _HARTREE,
    "Ha": _HARTREE,
    "mHa": _HARTREE / 1000,
    "J": 1.0 / _EV_J,
    "kJ": 1e3 / _EV_J,
    "kcal": 4184.0 / _EV_J,
    "mol": AVOGADRO,
    "e": 1.0,
    "Pa": 1.0 / _EV_J / 1e30,
    "kPa": 1e3 / _EV_J / 1e30,
    "MPa": 1e6 / _EV_J / 1e30,
    "GPa": 1e9 / _EV_J / 1e30,
    "bar": 1e5 / _EV_J / 1e30,
    "kbar": 1e8 / _EV_J / 1e30,
}


class UnknownUnitError(ValueError):
    """A unit expression names a unit miniff does not know, or does not parse."""


_TOKEN = re.compile(
    r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"  # number
    r"|([A-Za-z_][A-Za-z_0-9]*)"  # unit name
    r"|(\*\*|[*/^()+-]))"  # operator
)


def _tokenize(expr):
    tokens = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise UnknownUnitError(f"cannot parse unit expression {expr!r} at position {pos}")
        number, name, op = m.groups()
        if number is not None:
            tokens.append(("num", float(number)))
        elif name is not None:
            tokens.append(("name", name))
        else:
            tokens.append(("op", "**" if op == "^" else op))
        pos = m.end()
    return tokens


class _Parser:
    """expr := term (('*' | '/') term)* ; term := factor ('**' signed_number)? ;
    factor := number | name | '(' expr ')'."""

    def __init__(self, expr, table):
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.pos = 0
        self.table = table

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        self.pos += 1
        return tok

    def fail(self, what):
        raise UnknownUnitError(f"cannot parse unit expression {self.expr!r}: {what}")

    def parse(self):
        value = self.expression()
        if self.pos != len(self.tokens):
            self.fail(f"unexpected {self.peek()[1]!r}")
        return value

    def expression(self):
        value = self.term()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take()[1]
            rhs = self.term()
            value = value * rhs if op == "*" else value / rhs
        return value

    def term(self):
        value = self.factor()
        if self.peek() == ("op", "**"):
            self.take()
            sign = 1.0
            while self.peek() in (("op", "-"), ("op", "+")):
                sign *= -1.0 if self.take()[1] == "-" else 1.0
            if self.peek() == ("op", "("):
                self.take()
                exponent = self.expression()
                if self.take() != ("op", ")"):
                    self.fail("missing ')'")
            else:
                kind, exponent = self.take()
                if kind != "num":
                    self.fail("exponent must be a number")
            value = value ** (sign * exponent)
        return value

    def factor(self):
        kind, tok = self.take()
        if kind == "num":
            return tok
        if kind == "name":
            if tok not in self.table:
                raise UnknownUnitError(f"unknown unit {tok!r} in {self.expr!r}; known units: {sorted(self.table)}")
            return self.table[tok]
        if (kind, tok) == ("op", "("):
            value = self.expression()
            if self.take() != ("op", ")"):
                self.fail("missing ')'")
            return value
        self.fail("expected a number, a unit name or '('" if kind is not None else "unexpected end")


def unit_value(expr):
    """Value of a unit expression in miniff's units (eV, Å).

    Parameters
    ----------
    expr : str, number or None
        E.g. ``"angstrom"``, ``"eV/angstrom"``, ``"Ry/aBohr**3"``, ``"1e-3 * eV"``; ``None``, ``""``
        and ``"1"`` are dimensionless (1.0); a number is returned as a float.

    Raises
    ------
    UnknownUnitError
        (a ValueError) for unknown names or malformed expressions.
    """
    if expr is None:
        return 1.0
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        return float(expr)
    if not isinstance(expr, str):
        raise TypeError(f"unit expression must be a string, got {type(expr).__name__}")
    if not expr.strip():
        return 1.0
    value = _Parser(expr, UNITS).parse()
    if not math.isfinite(value) or value == 0:
        raise UnknownUnitError(f"unit expression {expr!r} evaluates to {value}")
    return float(value)


def init_default_atomic_units():
    """Compatibility no-op: miniff always works in eV and Å (0.1.4 set numericalunits here)."""
    return None


class UnitsDict(dict):
    """``{parameter name: unit expression}`` with helpers to convert parameter dicts (0.1.4 API)."""

    def get_uv(self, key, default=1.0):
        """Value of the unit of ``key`` (``default`` when absent)."""
        if key not in self:
            return default
        return unit_value(self[key])

    def apply(self, params):
        """Divide every value by its unit: internal units -> numbers in the stated units."""
        return {k: v / self.get_uv(k) for k, v in params.items()}

    def lift(self, params):
        """Multiply every value by its unit: numbers in the stated units -> internal units."""
        return {k: v * self.get_uv(k) for k, v in params.items()}

    def repr1(self, value, key, fmt="{:.3e}", spacer=" "):
        """Text of one value in its unit, e.g. ``"1.000e+00 eV"``."""
        if key in self:
            return fmt.format(value / self.get_uv(key)) + spacer + str(self[key])
        return fmt.format(value)

    def repr(self, params):
        """Text of a parameter dict, values in their units."""
        return ", ".join(f"{k}={self.repr1(v, k)}" for k, v in params.items())


class Quantity:
    """An array annotated with a unit expression for :func:`dump` (written as ``value / unit``).

    Parameters
    ----------
    value : array-like
        In miniff's internal units (eV, Å).
    units : str
        The unit expression to write, e.g. ``"eV/angstrom"``.
    """

    def __init__(self, value, units):
        self.value = value
        self.units = units
        unit_value(units)


def _array_to_json(value, units=None):
    arr = np.asarray(value)
    if units is not None and arr.dtype.kind in "fciu":
        arr = arr / unit_value(units)
    is_complex = bool(np.iscomplexobj(arr))
    if is_complex:
        arr = np.stack([arr.real, arr.imag], axis=-1)
    if arr.dtype.kind == "U" or arr.dtype.kind == "S" or arr.dtype.kind == "O":
        data = arr.tolist()
    else:
        data = arr.tolist()
    return {"_type": "numpy", "data": data, "complex": is_complex, "units": units}


class JSONEncoderWithArray(json.JSONEncoder):
    """JSON encoder writing numpy arrays/scalars, torch tensors and :class:`Quantity` objects."""

    def default(self, o):
        if isinstance(o, Quantity):
            return _array_to_json(o.value, o.units)
        if isinstance(o, np.ndarray):
            return _array_to_json(o)
        if isinstance(o, np.generic):
            return o.item()
        if type(o).__module__.startswith("torch") and hasattr(o, "detach"):
            out = _array_to_json(o.detach().cpu().numpy())
            out["_type"] = "numpy:torch"
            return out
        return super().default(o)


def units_object_hook(obj):
    """``json`` object hook turning ``{"_type": "numpy", ...}`` into arrays in eV/Å units."""
    kind = obj.get("_type")
    if kind not in ("numpy", "numpy:torch"):
        return obj
    if "data" not in obj:
        raise ValueError(f"array object without 'data': keys {sorted(obj)}")
    data = np.array(obj["data"])
    if obj.get("complex", False):
        if data.ndim == 0 or data.shape[-1] != 2:
            raise ValueError("a complex array must store [re, im] in its last dimension")
        data = data[..., 0] + 1j * data[..., 1]
    units = obj.get("units")
    if units is not None:
        if data.dtype.kind not in "fciub":
            raise ValueError(f"units {units!r} given for non-numeric data")
        data = data * unit_value(units)
    if kind == "numpy:torch":
        import torch

        return torch.as_tensor(data)
    return data


def dumps(obj, **kwargs):
    """JSON text of ``obj`` with numpy arrays in the 0.1.4 array format (kwargs go to ``json.dumps``)."""
    return json.dumps(obj, cls=JSONEncoderWithArray, **kwargs)


def dump(obj, f, **kwargs):
    """Write ``obj`` as JSON (see :func:`dumps`) to a file object, or atomically to a path."""
    if isinstance(f, (str, os.PathLike)):
        text = dumps(obj, **kwargs)
        atomic_write(f, text)
        return
    json.dump(obj, f, cls=JSONEncoderWithArray, **kwargs)


def loads(text, **kwargs):
    """Parse JSON text; array objects become numpy arrays converted to eV/Å units."""
    return json.loads(text, object_hook=units_object_hook, **kwargs)


def load(f, **kwargs):
    """Read JSON from a file object or a path (see :func:`loads`)."""
    if isinstance(f, (str, os.PathLike)):
        with open(f) as fh:
            return json.load(fh, object_hook=units_object_hook, **kwargs)
    return json.load(f, object_hook=units_object_hook, **kwargs)


def atomic_write(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A crash never leaves a half-written file at ``path``.
    """
    atomic_write_text(path, text)
