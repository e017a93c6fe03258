"""miniff.units: unit expressions (no eval) and the 0.1.4 JSON with arrays and units."""

import io
import json

import numpy as np
import pytest

from miniff import units

BOHR = 0.529177210903  # Å, CODATA 2018
HARTREE = 27.211386245988  # eV, CODATA 2018


@pytest.mark.parametrize(
    "expr, value",
    [
        ("angstrom", 1.0),
        ("eV", 1.0),
        ("meV", 1e-3),
        ("aBohr", BOHR),
        ("Hartree", HARTREE),
        ("Ry", HARTREE / 2),
        ("eV/angstrom", 1.0),
        ("Ry/aBohr", HARTREE / 2 / BOHR),
        ("Ry/aBohr**3", HARTREE / 2 / BOHR**3),
        ("Ry / aBohr ^ 3", HARTREE / 2 / BOHR**3),
        ("Hartree/(aBohr*aBohr)", HARTREE / BOHR**2),
        ("1e-3*eV", 1e-3),
        ("angstrom**-2", 1.0),
        ("nm", 10.0),
        ("GPa", 1e9 * 1e-30 / 1.602176634e-19),  # exact SI definition of the eV
        (None, 1.0),
        ("", 1.0),
        ("1", 1.0),
    ],
)
def test_unit_values(expr, value):
    assert units.unit_value(expr) == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize(
    "expr", ["parsec", "__import__('os')", "eV/", "eV**angstrom", "(eV", "eV)", "2 eV", "eV; rm", "0*eV"]
)
def test_bad_unit_expressions(expr):
    with pytest.raises(ValueError):
        units.unit_value(expr)


def test_unit_value_type_error():
    with pytest.raises(TypeError, match="unit expression"):
        units.unit_value([1])


def test_array_json_round_trip():
    data = {
        "a": np.arange(6.0).reshape(2, 3),
        "c": np.array([1 + 2j, -1j]),
        "s": np.array(["x", "y"]),
        "n": np.int64(3),
        "q": units.Quantity(np.array([2.0, 4.0]), "Ry"),
        "plain": [1, 2],
    }
    text = units.dumps(data)
    raw = json.loads(text)
    assert raw["a"] == {"_type": "numpy", "data": [[0, 1, 2], [3, 4, 5]], "complex": False, "units": None}
    assert raw["c"]["complex"] is True and raw["c"]["data"] == [[1, 2], [0, -1]]
    assert raw["q"]["units"] == "Ry"
    np.testing.assert_allclose(raw["q"]["data"], np.array([2.0, 4.0]) / (HARTREE / 2))
    back = units.loads(text)
    np.testing.assert_array_equal(back["a"], data["a"])
    np.testing.assert_array_equal(back["c"], data["c"])
    assert back["s"].tolist() == ["x", "y"] and back["n"] == 3
    np.testing.assert_allclose(back["q"], [2.0, 4.0])
    assert back["plain"] == [1, 2]


def test_load_applies_units_in_0_1_4_format(tmp_path):
    text = '{"f": {"_type": "numpy", "data": [[1.0, 0, 0]], "complex": false, "units": "Ry/aBohr"}}'
    out = units.loads(text)
    np.testing.assert_allclose(out["f"], [[HARTREE / 2 / BOHR, 0, 0]])
    path = tmp_path / "x.json"
    path.write_text(text)
    np.testing.assert_allclose(units.load(path)["f"], out["f"])
    np.testing.assert_allclose(units.load(io.StringIO(text))["f"], out["f"])


def test_torch_tensors_round_trip():
    import torch

    text = units.dumps({"t": torch.tensor([1.0, 2.0])})
    assert json.loads(text)["t"]["_type"] == "numpy:torch"
    back = units.loads(text)["t"]
    assert isinstance(back, torch.Tensor) and back.tolist() == [1.0, 2.0]


def test_corrupt_array_objects():
    with pytest.raises(ValueError, match="data"):
        units.loads('{"_type": "numpy", "units": null}')
    with pytest.raises(ValueError, match="complex"):
        units.loads('{"_type": "numpy", "data": [1, 2, 3], "complex": true}')
    with pytest.raises(ValueError, match="non-numeric"):
        units.loads('{"_type": "numpy", "data": ["a"], "units": "eV"}')
    with pytest.raises(ValueError):
        units.loads('{"_type": "numpy", "data": [1], "units": "furlong"}')


def test_dump_to_path_is_atomic(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")

    class Boom:
        pass

    with pytest.raises(TypeError):
        units.dump({"x": Boom()}, path)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    units.dump({"x": np.ones(2)}, path)
    np.testing.assert_array_equal(units.load(path)["x"], [1.0, 1.0])


def test_units_dict():
    ud = units.UnitsDict(a="Ry", b="angstrom")
    assert ud.get_uv("a") == pytest.approx(HARTREE / 2)
    assert ud.get_uv("zzz") == 1
    lifted = ud.lift({"a": 1.0, "b": 2.0, "c": 3.0})
    assert lifted == pytest.approx({"a": HARTREE / 2, "b": 2.0, "c": 3.0})
    assert ud.apply(lifted) == pytest.approx({"a": 1.0, "b": 2.0, "c": 3.0})
    assert ud.repr1(HARTREE / 2, "a") == "1.000e+00 Ry"
    assert "a=1.000e+00 Ry" in ud.repr({"a": HARTREE / 2})
