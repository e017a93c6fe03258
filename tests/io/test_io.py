"""Reading and writing training data (miniff.io) against ASE's own readers and writers."""

import warnings

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from miniff.io import (
    MissingDataWarning,
    MissingEnergyWarning,
    MissingForcesWarning,
    cells_to_atoms,
    read_cells,
    write_cells,
)
from miniff.kernel import Cell

ATOL_X = 1e-7  # extxyz stores per-atom arrays (positions, forces) with 8 decimals
ATOL_F = 6e-9  # eV/Å: half a unit of the 8th decimal, plus rounding


def _make_cells(rng, n_cells=3):
    """Random periodic structures with energy (eV), forces (eV/Å), stress (eV/Å³) and a group label."""
    cells = []
    for k in range(n_cells):
        n = 3 + k
        vectors = np.array([[4.0 + k, 0.0, 0.0], [0.7, 4.5, 0.0], [-0.3, 0.4, 5.1]])
        cell = Cell(
            vectors,
            rng.random((n, 3)),
            np.array(["Si", "C"] * n)[:n],
            meta={
                "total-energy": float(rng.normal() - 10.0),
                "forces": rng.normal(size=(n, 3)),
                "stress": rng.normal(size=6) * 1e-2,
                "group": "bulk" if k % 2 == 0 else "defect",
                "pbc": (True, True, True),
            },
        )
        cells.append(cell)
    return cells


def _assert_same_cell(a, b, keys=("total-energy", "forces", "stress", "group")):
    np.testing.assert_allclose(a.vectors, b.vectors, atol=ATOL_X)
    np.testing.assert_allclose(a.coordinates @ a.vectors, b.coordinates @ b.vectors, atol=ATOL_X)
    assert [str(v) for v in a.values] == [str(v) for v in b.values]
    for key in keys:
        if key not in a.meta:
            assert key not in b.meta, key
            continue
        if key == "group":
            assert a.meta[key] == b.meta[key]
        else:
            np.testing.assert_allclose(a.meta[key], b.meta[key], rtol=1e-12, atol=ATOL_F, err_msg=key)


@pytest.mark.parametrize("name", ["data.extxyz", "data.xyz", "data.db", "data.traj"])
def test_round_trip(tmp_path, rng, name):
    cells = _make_cells(rng)
    path = tmp_path / name
    write_cells(cells, path)
    back = read_cells(path)
    assert len(back) == len(cells)
    for a, b in zip(cells, back, strict=True):
        keys = ("total-energy", "forces", "stress") + (() if name.endswith("traj") else ("group",))
        _assert_same_cell(a, b, keys=keys)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_extxyz_matches_ase_reader(tmp_path, rng):
    """What we write, ASE reads back as the same structure and targets (independent reader)."""
    cells = _make_cells(rng, 2)
    path = tmp_path / "x.extxyz"
    write_cells(cells, path)
    images = ase.io.read(path, index=":")
    for cell, atoms in zip(cells, images, strict=True):
        np.testing.assert_allclose(atoms.positions, cell.coordinates @ cell.vectors, atol=ATOL_X)
        np.testing.assert_allclose(atoms.get_potential_energy(), cell.meta["total-energy"], rtol=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), cell.meta["forces"], rtol=0, atol=ATOL_F)
        assert list(atoms.pbc) == [True] * 3


def test_read_ase_written_extxyz_and_info_energy(tmp_path, rng):
    """A file written by ASE itself; energy given as an info key instead of calculator results."""
    a = Atoms("Ar3", positions=rng.random((3, 3)) * 4, cell=np.eye(3) * 6, pbc=True)
    a.calc = SinglePointCalculator(a, energy=-1.5, forces=np.arange(9.0).reshape(3, 3))
    b = Atoms("Ar2", positions=rng.random((2, 3)) * 4, cell=np.eye(3) * 5, pbc=True)
    b.info["total_energy"] = -2.25
    b.info["group"] = "dimer"
    path = tmp_path / "ase.extxyz"
    ase.io.write(path, [a, b], format="extxyz")
    with pytest.warns(MissingForcesWarning, match="1 of 2 structures"):
        cells = read_cells(str(path))
    assert cells[0].meta["total-energy"] == pytest.approx(-1.5)
    np.testing.assert_allclose(cells[0].meta["forces"], np.arange(9.0).reshape(3, 3))
    assert cells[1].meta["total-energy"] == pytest.approx(-2.25)
    assert "forces" not in cells[1].meta
    assert cells[1].meta["group"] == "dimer"
    np.testing.assert_allclose(cells[1].coordinates @ cells[1].vectors, b.positions, atol=ATOL_X)


def test_index_and_group_and_atoms_source(tmp_path, rng):
    cells = _make_cells(rng, 4)
    path = tmp_path / "d.extxyz"
    write_cells(cells, path)
    last = read_cells(path, index=-1)
    assert len(last) == 1
    _assert_same_cell(last[0], cells[-1])
    assert len(read_cells(path, index="1:3")) == 2
    assert len(read_cells(path, index=slice(0, 4, 2))) == 2
    images = ase.io.read(path, index=":")
    from_atoms = read_cells(images, group="g")
    assert len(from_atoms) == 4
    assert from_atoms[0].meta["group"] == "bulk"  # a structure's own label wins


def test_database_selection_and_predictions(tmp_path, rng):
    cells = _make_cells(rng, 4)
    predicted = [c.copy() for c in cells]
    for p in predicted:
        p.meta = {"total-energy": p.meta["total-energy"] + 0.1, "forces": p.meta["forces"] * 0.9}
    path = tmp_path / "pred.db"
    write_cells(cells, path, predicted=predicted)
    bulk = read_cells(path, selection="group=bulk")
    assert [c.meta["group"] for c in bulk] == ["bulk", "bulk"]
    back = read_cells(str(path))
    for c, p, b in zip(cells, predicted, back, strict=True):
        _assert_same_cell(c, b)
        assert b.meta["predicted-energy"] == pytest.approx(p.meta["total-energy"], abs=1e-12)
        np.testing.assert_allclose(b.meta["predicted-forces"], p.meta["forces"], atol=1e-12)
    # the database is a plain ASE database: ASE sees the references as calculator results
    with ase.db.connect(path) as db:
        row = db.get(id=1)
        assert row.energy == pytest.approx(cells[0].meta["total-energy"])
        assert row.predicted_energy == pytest.approx(predicted[0].meta["total-energy"])
    # predictions into extxyz too
    xyz = tmp_path / "pred.extxyz"
    write_cells(cells, xyz, predicted=predicted)
    back = read_cells(xyz)
    np.testing.assert_allclose(back[2].meta["predicted-forces"], predicted[2].meta["forces"], atol=1e-7)


def test_database_missing_forces_is_energy_only(tmp_path, rng):
    path = tmp_path / "e.db"
    with ase.db.connect(path) as db:
        for k in range(3):
            a = Atoms("Si2", positions=rng.random((2, 3)) * 3, cell=np.eye(3) * 5.0, pbc=True)
            a.calc = SinglePointCalculator(a, energy=-5.0 - k)
            db.write(a, group="bulk")
    with pytest.warns(MissingForcesWarning, match=r"3 of 3 structures .*energy-only"):
        cells = read_cells(path)
    assert issubclass(MissingForcesWarning, MissingDataWarning)
    assert issubclass(MissingForcesWarning, UserWarning)
    assert [c.meta["total-energy"] for c in cells] == [-5.0, -6.0, -7.0]
    assert all("forces" not in c.meta for c in cells)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_cells(path, warn_missing_targets=False)


def test_custom_energy_and_forces_keys_in_database(tmp_path, rng):
    path = tmp_path / "kv.db"
    forces = rng.normal(size=(2, 3))
    with ase.db.connect(path) as db:
        db.write(Atoms("Si2", positions=rng.random((2, 3)) * 3, cell=np.eye(3) * 5.0, pbc=True),
                 dft_energy=-3.5, data={"dft_forces": forces})
    (cell,) = read_cells(path, energy_keys="dft_energy", forces_keys=["dft_forces"])
    assert cell.meta["total-energy"] == -3.5
    np.testing.assert_array_equal(cell.meta["forces"], forces)
    with pytest.raises(TypeError, match="energy_keys"):
        read_cells(path, energy_keys=3)


def test_missing_energy_warns(tmp_path, rng):
    path = tmp_path / "bare.extxyz"
    ase.io.write(path, Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]), format="extxyz")
    with pytest.warns(MissingEnergyWarning, match="no reference energy"), pytest.warns(MissingForcesWarning):
        (cell,) = read_cells(path)
    assert "total-energy" not in cell.meta


def test_non_periodic_and_slab(tmp_path):
    """Molecules (zero cell) and slabs (zero c vector) get an invertible box; positions are kept."""
    mol = Atoms("H2O", positions=[[0, 0, 0.1], [0.76, 0.0, -0.5], [-0.76, 0, -0.5]])
    mol.calc = SinglePointCalculator(mol, energy=-14.0, forces=np.zeros((3, 3)))
    slab = Atoms("Cu2", positions=[[0, 0, 0], [1.3, 1.3, 1.8]], cell=[[2.6, 0, 0], [0, 2.6, 0], [0, 0, 0]],
                 pbc=(True, True, False))
    slab.calc = SinglePointCalculator(slab, energy=-7.0, forces=np.zeros((2, 3)))
    cells = read_cells([mol, slab])
    for cell, atoms in zip(cells, [mol, slab], strict=True):
        assert abs(np.linalg.det(cell.vectors)) > 0.1
        np.testing.assert_allclose(cell.coordinates @ cell.vectors, atoms.positions, atol=1e-12)
        assert tuple(cell.meta["pbc"]) == tuple(atoms.pbc)
    np.testing.assert_allclose(cells[1].vectors[:2], slab.cell.array[:2])
    path = tmp_path / "np.extxyz"
    write_cells(cells, path)
    back = read_cells(path)
    assert tuple(back[1].meta["pbc"]) == (True, True, False)
    np.testing.assert_allclose(back[0].coordinates @ back[0].vectors, mol.positions, atol=ATOL_X)


@pytest.mark.parametrize("name", ["labels.extxyz", "labels.db"])
def test_labels_that_are_not_ase_symbols_survive(tmp_path, rng, name):
    """0.1.4 data use labels like 'bi'/'se' (or 'a'/'b'): they are written as elements and restored."""
    cell = Cell(np.eye(3) * 5.0, rng.random((4, 3)), np.array(["bi", "se", "a", "se"]),
                meta={"total-energy": 1.0, "forces": np.zeros((4, 3))})
    (atoms,) = cells_to_atoms([cell])
    assert atoms.get_chemical_symbols()[:2] == ["Bi", "Se"]
    write_cells(cell, tmp_path / name)
    (back,) = read_cells(tmp_path / name)
    assert list(back.values) == ["bi", "se", "a", "se"]


def test_cells_json_is_delegated_to_cell_load(tmp_path, rng):
    cells = _make_cells(rng, 2)
    for c in cells:
        c.meta.pop("pbc")
        c.meta.pop("stress")
    path = tmp_path / "cells.json"
    Cell.save(cells, str(path))
    back = read_cells(path)
    for a, b in zip(cells, back, strict=True):
        _assert_same_cell(a, b, keys=("total-energy", "forces"))


def test_write_cells_json(tmp_path, rng):
    cells = _make_cells(rng, 2)
    predicted = [c.copy() for c in cells]
    for p in predicted:
        p.meta = {"total-energy": 1.25, "forces": np.ones((p.size, 3))}
    path = tmp_path / "out.json"
    write_cells(cells, path, predicted=predicted)
    back = Cell.load(str(path))
    for a, b in zip(cells, back, strict=True):
        _assert_same_cell(a, b, keys=("total-energy", "forces"))
        assert b.meta["predicted-energy"] == pytest.approx(1.25)
        np.testing.assert_allclose(b.meta["predicted-forces"], 1.0)


def test_append(tmp_path, rng):
    cells = _make_cells(rng, 3)
    for name in ("a.extxyz", "a.db", "a.json"):
        write_cells(cells[:2], tmp_path / name)
        write_cells(cells[2:], tmp_path / name, append=True)
        assert len(read_cells(tmp_path / name)) == 3
        write_cells(cells[:1], tmp_path / name)  # replaces
        assert len(read_cells(tmp_path / name)) == 1


def test_failed_write_leaves_destination_untouched(tmp_path, rng, monkeypatch):
    cells = _make_cells(rng, 2)
    path = tmp_path / "keep.extxyz"
    write_cells(cells, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ase.io, "write", boom)
    with pytest.raises(OSError, match="disk full"):
        write_cells(cells[:1], path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.extxyz"]


# ----------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.extxyz"):
        read_cells(tmp_path / "nope.extxyz")
    with pytest.raises(FileNotFoundError, match="nope.db"):
        read_cells(str(tmp_path / "nope.db"))


def test_corrupt_files(tmp_path):
    bad = tmp_path / "bad.extxyz"
    bad.write_text("3\nLattice=\"1 0 0 0 1 0\" Properties=species:S:1:pos:R:3\nSi 0 0\n")
    with pytest.raises(ValueError, match="bad.extxyz"):
        read_cells(bad)
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.xyz"):
        read_cells(empty)
    db = tmp_path / "bad.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match="bad.db"):
        read_cells(db)
    js = tmp_path / "cells.json"
    js.write_text("[{\"type\": \"dfttools.utypes.CrystalCell\", \"vectors\": ")
    with pytest.raises(ValueError, match="cells.json"):
        read_cells(js)


def test_bad_arguments(tmp_path, rng):
    cells = _make_cells(rng, 2)
    path = tmp_path / "d.extxyz"
    write_cells(cells, path)
    with pytest.raises(ValueError, match="selection"):
        read_cells(path, selection="natoms>1")
    with pytest.raises(ValueError, match="index"):
        read_cells(path, index="a:b")
    with pytest.raises(TypeError, match="index"):
        read_cells(path, index=1.5)
    with pytest.raises(TypeError, match="source"):
        read_cells(42)
    with pytest.raises(ValueError, match="no structures"):
        read_cells(path, index="5:")
    with pytest.raises(TypeError, match=r"cells\[1\]"):
        write_cells([cells[0], "x"], tmp_path / "o.extxyz")
    with pytest.raises(ValueError, match="predicted"):
        write_cells(cells, tmp_path / "o.extxyz", predicted=cells[:1])
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        write_cells(cells, tmp_path / "missing_dir" / "o.extxyz")
    db = tmp_path / "d.db"
    write_cells(cells, db)
    with pytest.raises(ValueError, match="selection"):
        read_cells(db, selection="natoms<<2")
    bad = Cell(np.eye(3) * 4, rng.random((2, 3)), np.array(["Si", "Si"]), meta={"forces": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="forces"):
        write_cells([bad], tmp_path / "f.extxyz")
