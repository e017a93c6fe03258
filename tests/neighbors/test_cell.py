"""Cell: validation, geometry, supercells, state dicts, the 0.1.4 cells JSON, ASE conversion."""

import io
import json
import os

import numpy as np
import pytest

from miniff.kernel import Cell


@pytest.fixture
def cell(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    meta = {
        "total-energy": -3.5,
        "forces": np.arange(36, dtype=float).reshape(12, 3),
        "charges": np.linspace(-1, 1, 12),
        "stress": np.arange(6, dtype=float),
        "source-file-name": "x.out",
    }
    return Cell(vectors, frac, species, meta=meta)


def test_basic_geometry(cell, triclinic_box):
    vectors, frac, species, _ = triclinic_box
    assert cell.size == 12
    assert cell.volume == pytest.approx(abs(np.linalg.det(vectors)))
    np.testing.assert_allclose(cell.cartesian(), frac @ vectors)
    np.testing.assert_allclose(cell.transform_from_cartesian(frac @ vectors), frac, atol=1e-12)
    d = cell.distances()
    xyz = frac @ vectors
    np.testing.assert_allclose(d, np.linalg.norm(xyz[:, None] - xyz[None], axis=-1))
    sparse = cell.distances(cutoff=3.0)
    dense = sparse.toarray()
    mask = (d < 3.0) & (d > 0)
    np.testing.assert_allclose(dense[mask], d[mask])
    np.testing.assert_allclose(cell.distances(other=xyz[:2]), d[:, :2])


def test_copy_is_independent(cell):
    other = cell.copy()
    other.coordinates[0, 0] = 123.0
    other.meta["new"] = 1
    assert cell.coordinates[0, 0] != 123.0 and "new" not in cell.meta


def test_meta_is_copied(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    meta = {"a": 1}
    c = Cell(vectors, frac, species, meta=meta)
    c.meta["b"] = 2
    assert meta == {"a": 1}
    assert Cell(vectors, frac, species).meta == {}


def test_left_handed_cell_is_accepted(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    flipped = vectors[[1, 0, 2]]
    c = Cell(flipped, frac, species)
    assert c.volume == pytest.approx(abs(np.linalg.det(vectors)))


def test_bad_input(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    with pytest.raises(ValueError, match="vectors"):
        Cell(vectors[:2], frac, species)
    with pytest.raises(ValueError, match="vectors"):
        Cell(np.eye(3).ravel(), frac, species)
    with pytest.raises(ValueError, match="vectors"):
        Cell(np.full((3, 3), np.nan), frac, species)
    with pytest.raises(ValueError, match="singular"):
        Cell([[1, 0, 0], [2, 0, 0], [0, 0, 1]], frac, species)
    with pytest.raises(ValueError, match="coordinates"):
        Cell(vectors, frac[:, :2], species)
    with pytest.raises(ValueError, match="coordinates"):
        Cell(vectors, np.where(frac > 0.5, np.inf, frac), species)
    with pytest.raises(ValueError, match="len\\(values\\)"):
        Cell(vectors, frac, species[:-1])
    with pytest.raises(ValueError, match="values"):
        Cell(vectors, frac, species.reshape(6, 2))
    with pytest.raises(TypeError, match="coordinates"):
        Cell(vectors, "abc", species)
    with pytest.raises(TypeError, match="meta"):
        Cell(vectors, frac, species, meta=[1, 2])
    with pytest.raises(ValueError, match="xyz"):
        Cell(vectors, frac, species).transform_from_cartesian(np.zeros((2, 2)))


def test_repeated_keeps_meta(cell):
    big = cell.repeated(2, 1, 3)
    assert big.size == 6 * cell.size
    np.testing.assert_allclose(big.vectors, cell.vectors * np.array([2, 1, 3])[:, None])
    assert big.volume == pytest.approx(6 * cell.volume)
    assert big.meta["total-energy"] == pytest.approx(6 * -3.5)
    np.testing.assert_array_equal(big.meta["forces"], np.tile(cell.meta["forces"], (6, 1)))
    np.testing.assert_array_equal(big.meta["charges"], np.tile(cell.meta["charges"], 6))
    np.testing.assert_array_equal(big.meta["stress"], cell.meta["stress"])
    assert big.meta["source-file-name"] == "x.out"
    np.testing.assert_array_equal(big.values, np.tile(cell.values, 6))
    # every supercell atom is a lattice translate of its original
    shift = big.cartesian() - np.tile(cell.cartesian(), (6, 1))
    steps = shift @ np.linalg.inv(cell.vectors)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-10)
    assert len({tuple(r) for r in np.round(steps).astype(int)}) == 6
    assert cell.repeated((1, 1, 1)).size == cell.size
    with pytest.raises(ValueError, match="repetition"):
        cell.repeated(0, 1, 1)
    with pytest.raises(ValueError, match="repetition"):
        cell.repeated(2, 2)


def test_state_dict_round_trip(cell):
    data = cell.state_dict()
    assert data["type"] == "dfttools.utypes.CrystalCell"
    back = Cell.from_state_dict(data)
    np.testing.assert_array_equal(back.coordinates, cell.coordinates)
    np.testing.assert_array_equal(back.values, cell.values)
    cart = dict(data, coordinates=cell.cartesian(), c_basis="cartesian")
    np.testing.assert_allclose(Cell.from_state_dict(cart).coordinates, cell.coordinates, atol=1e-12)
    with pytest.raises(ValueError, match="type"):
        Cell.from_state_dict(dict(data, type="other"))
    with pytest.raises(ValueError, match="c_basis"):
        Cell.from_state_dict(dict(data, c_basis="polar"))
    with pytest.raises(ValueError, match="unknown keys"):
        Cell.from_state_dict(dict(data, extra=1))
    with pytest.raises(ValueError, match="missing"):
        Cell.from_state_dict({"type": "dfttools.types.UnitCell", "vectors": np.eye(3)})


def test_save_load_round_trip(cell, tmp_path):
    path = tmp_path / "cells.json"
    Cell.save([cell, cell.repeated(1, 1, 2)], path)
    assert not [p for p in os.listdir(tmp_path) if p != "cells.json"]  # no temporary left over
    loaded = Cell.load(path)
    assert isinstance(loaded, list) and len(loaded) == 2
    np.testing.assert_allclose(loaded[0].vectors, cell.vectors, rtol=1e-15)
    np.testing.assert_allclose(loaded[0].coordinates, cell.coordinates)
    np.testing.assert_array_equal(loaded[0].values, cell.values)
    assert loaded[0].meta["total-energy"] == pytest.approx(-3.5)
    np.testing.assert_allclose(loaded[0].meta["forces"], cell.meta["forces"])
    np.testing.assert_allclose(loaded[0].meta["stress"], cell.meta["stress"])
    assert loaded[1].size == 24
    raw = json.loads(path.read_text())
    assert raw[0]["vectors"]["units"] == "angstrom" and raw[0]["meta"]["forces"]["units"] == "eV/angstrom"
    single = tmp_path / "one.json"
    Cell.save(cell, single)
    assert isinstance(Cell.load(single), Cell)
    buf = io.StringIO()
    Cell.save(cell, buf)
    buf.seek(0)
    assert Cell.load(buf).size == 12


def test_load_0_1_4_format_with_units(tmp_path):
    bohr = 0.529177210903
    text = json.dumps(
        [
            {
                "type": "dfttools.utypes.CrystalCell",
                "vectors": {"_type": "numpy", "data": [[10, 0, 0], [0, 10, 0], [0, 0, 10]], "complex": False,
                            "units": "aBohr"},
                "coordinates": {"_type": "numpy", "data": [[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]], "complex": False,
                                "units": None},
                "values": {"_type": "numpy", "data": ["se", "bi"], "complex": False, "units": None},
                "meta": {
                    "total-energy": {"_type": "numpy", "data": -2.0, "complex": False, "units": "Ry"},
                    "forces": {"_type": "numpy", "data": [[1, 0, 0], [0, 0, -1]], "complex": False,
                               "units": "Ry/aBohr"},
                    "source-file-name": "run.out",
                },
            },
            {"type": "dfttools.utypes.CrystalCell", "vectors": [[3, 0, 0], [0, 3, 0], [0, 0, 3]],
             "coordinates": [[0, 0, 0]], "values": ["x"]},
        ]
    )
    path = tmp_path / "old.json"
    path.write_text(text)
    a, b = Cell.load(path)
    np.testing.assert_allclose(a.vectors, np.eye(3) * 10 * bohr)
    assert a.meta["total-energy"] == pytest.approx(-2.0 * 13.605693122994)
    np.testing.assert_allclose(a.meta["forces"][0], [13.605693122994 / bohr, 0, 0])
    assert a.values.tolist() == ["se", "bi"] and a.meta["source-file-name"] == "run.out"
    np.testing.assert_allclose(b.vectors, np.eye(3) * 3)


def test_load_corrupt_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"type": "dfttools.utypes.CrystalCell", "vectors": [[1, 0, 0]]')
    with pytest.raises(ValueError):
        Cell.load(bad)
    bad.write_text('[{"type": "dfttools.utypes.CrystalCell", "vectors": [[1, 0, 0]], "coordinates": [[0, 0, 0]],'
                   ' "values": ["a"]}]')
    with pytest.raises(ValueError, match="cell #0"):
        Cell.load(bad)
    bad.write_text('[{"type": "dfttools.utypes.CrystalCell", "vectors": {"_type": "numpy", "data": [[1, 0, 0], '
                   '[0, 1, 0], [0, 0, 1]], "units": "parsec"}, "coordinates": [[0, 0, 0]], "values": ["a"]}]')
    with pytest.raises(ValueError, match="parsec"):
        Cell.load(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        Cell.load(bad)
    with pytest.raises(TypeError, match="cells"):
        Cell.save([1], tmp_path / "x.json")


def test_ase_round_trip(cell):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    vectors = cell.vectors
    atoms = Atoms("SiO" * 6, scaled_positions=cell.coordinates, cell=vectors, pbc=(True, True, False))
    forces = np.arange(36.0).reshape(12, 3)
    atoms.calc = SinglePointCalculator(atoms, energy=-7.0, forces=forces, stress=np.arange(6.0))
    atoms.set_initial_charges(np.linspace(0, 1, 12))
    c = Cell.from_ase(atoms)
    assert c.values.tolist() == ["Si", "O"] * 6
    assert c.meta["total-energy"] == -7.0
    np.testing.assert_allclose(c.meta["forces"], forces)
    np.testing.assert_allclose(c.meta["stress"], np.arange(6.0))
    np.testing.assert_allclose(c.meta["charges"], np.linspace(0, 1, 12))
    np.testing.assert_allclose(c.cartesian(), atoms.positions, atol=1e-12)
    back = c.to_ase()
    assert back.pbc.tolist() == [True, True, False]
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-12)
    assert back.get_potential_energy() == -7.0
    np.testing.assert_allclose(back.get_forces(), forces)
    np.testing.assert_allclose(back.get_stress(), np.arange(6.0))
    # info/arrays fallback and non-chemical labels
    plain = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]], cell=np.eye(3) * 5)
    plain.info["energy"] = 1.5
    plain.arrays["forces"] = np.ones((2, 3))
    c2 = Cell.from_ase(plain)
    assert c2.meta["total-energy"] == 1.5 and c2.meta["forces"].shape == (2, 3)
    labelled = Cell(np.eye(3) * 4, [[0, 0, 0], [0.5, 0.5, 0.5]], ["a", "b"])
    atoms2 = labelled.to_ase()
    assert atoms2.get_chemical_symbols() == ["X", "X"]
    assert Cell.from_ase(atoms2).values.tolist() == ["a", "b"]
    with pytest.raises(TypeError, match="atoms"):
        Cell.from_ase("H2")
    with pytest.raises(ValueError, match="cell"):
        Cell.from_ase(Atoms("H"))
