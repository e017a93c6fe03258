"""ase.db as a source and a sink, on SQLite and on a real PostgreSQL server (started by the ``postgres_server``
fixture of ``tests/conftest.py``; skipped with a hint when the server is not installed)."""

import sys

import ase.db
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from miniff.io import read_cells, write_cells
from miniff.io.database import redact_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path):
    """A fresh database: an SQLite path or the URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "data.db")
    return request.getfixturevalue("postgres_url")


def _frames(rng, n=5):
    """Periodic structures of 2..6 atoms with float64 energies, forces, stresses that use all 53 bits."""
    frames = []
    for k in range(n):
        nat = 2 + k
        vectors = np.diag(rng.uniform(4.0, 6.0, 3)) + rng.uniform(-0.3, 0.3, (3, 3))
        atoms = Atoms(["Si", "O"] * (nat // 2) + ["Si"] * (nat % 2), positions=rng.random((nat, 3)) @ vectors,
                      cell=vectors, pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal() * 7.0 / 3.0),
                                           forces=rng.normal(size=(nat, 3)) / 3.0, stress=rng.normal(size=6) / 7.0)
        frames.append((atoms, {"config_type": "bulk" if k % 2 else "surface", "natoms_tag": nat}))
    return frames


def _write_raw(target, frames):
    with ase.db.connect(target) as db:
        for atoms, kvp in frames:
            db.write(atoms, key_value_pairs=kvp)


def test_round_trip_bit_exact(db_target, rng):
    frames = _frames(rng)
    _write_raw(db_target, frames)
    cells = read_cells(db_target)
    assert len(cells) == len(frames)
    for (atoms, _), cell in zip(frames, cells, strict=True):
        res = atoms.calc.results
        assert cell.meta["total-energy"] == res["energy"]
        assert np.array_equal(cell.meta["forces"], res["forces"])
        assert np.array_equal(cell.meta["stress"], res["stress"])
        assert np.array_equal(cell.vectors, atoms.cell.array)
        frac = np.linalg.solve(atoms.cell.array.T, atoms.positions.T).T   # the same solve, independently
        assert np.array_equal(cell.coordinates, frac)
        assert list(cell.values) == atoms.get_chemical_symbols()
        assert cell.meta["forces"].dtype == np.float64
    # and back out through write_cells, with predictions next to the references: bit-exact again
    for c in cells:
        c.meta["predicted-energy"] = c.meta["total-energy"] * 1.1
        c.meta["predicted-forces"] = c.meta["forces"] * 0.9
        c.meta["predicted-stress"] = c.meta["stress"] * 0.8
        c.meta["group"] = "g-" + str(c.size)
    target2 = db_target.replace("data.db", "copy.db") if db_target.endswith(".db") else db_target
    n_before = len(read_cells(target2)) if target2 == db_target else 0
    write_cells(cells, target2, append=True, key_value_pairs={"model": "nn-v2"})
    back = read_cells(target2, index=f"{n_before}:")
    for c, b in zip(cells, back, strict=True):
        for key in ("total-energy", "forces", "stress", "predicted-energy", "predicted-forces", "predicted-stress"):
            assert np.array_equal(b.meta[key], c.meta[key]), key
        assert b.meta["group"] == c.meta["group"]
        np.testing.assert_allclose(b.coordinates, c.coordinates, rtol=0, atol=1e-14)
    with ase.db.connect(target2) as db:
        assert db.count("model=nn-v2") == len(cells)
        row = next(iter(db.select("model=nn-v2", limit=1)))
        assert row.predicted_energy == cells[0].meta["predicted-energy"]


def test_selection_index_and_group_key(db_target, rng):
    frames = _frames(rng, n=6)
    _write_raw(db_target, frames)
    bulk = read_cells(db_target, selection="config_type=bulk")
    assert [c.size for c in bulk] == [3, 5, 7]
    small = read_cells(db_target, selection="natoms<5,config_type=surface")
    assert [c.size for c in small] == [2, 4]
    assert [c.size for c in read_cells(db_target, selection=["natoms_tag>3"], index="1:")] == [5, 6, 7]
    labelled = read_cells(db_target, group_key="config_type", group="unused")
    assert [c.meta["group"] for c in labelled] == ["surface", "bulk"] * 3
    assert all("group" not in c.meta for c in read_cells(db_target))
    assert [c.meta["group"] for c in read_cells(db_target, group_key="no_such_key", group="x")] == ["x"] * 6
    with pytest.raises(ValueError, match="selection"):
        read_cells(db_target, selection="natoms<<2")
    with pytest.raises(ValueError, match="no structures"):
        read_cells(db_target, selection="config_type=none")
    with pytest.raises(TypeError, match="group_key"):
        read_cells(db_target, group_key=3)


def test_group_key_of_files_and_atoms(tmp_path, rng):
    atoms = [a for a, _ in _frames(rng, n=3)]
    for a, label in zip(atoms, ["x", "y", "x"], strict=True):
        a.info["config_type"] = label
    assert [c.meta["group"] for c in read_cells(atoms, group_key="config_type")] == ["x", "y", "x"]
    import ase.io

    ase.io.write(tmp_path / "b.extxyz", atoms)
    assert [c.meta["group"] for c in read_cells(tmp_path / "b.extxyz", group_key="config_type")] == ["x", "y", "x"]


def test_sqlite_without_table(tmp_path):
    import sqlite3

    path = tmp_path / "empty.db"
    con = sqlite3.connect(path)   # a valid SQLite file with another table
    con.execute("CREATE TABLE other (x INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="empty.db.*no ase.db table 'systems'"):
        read_cells(path)
    con = sqlite3.connect(path)   # reading created nothing
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["other"]
    con.close()
    with pytest.raises(ValueError, match="key_value_pairs: only databases"):
        write_cells(read_cells([Atoms("Si", cell=np.eye(3) * 3, pbc=True)], warn_missing_targets=False),
                    tmp_path / "x.extxyz", key_value_pairs={"a": 1})


def test_redact_url():
    assert redact_url("postgresql://ann:pw@host:5432/db") == "postgresql://ann:***@host:5432/db"
    assert redact_url("postgresql://ann@host/db") == "postgresql://ann@host/db"
    assert redact_url("postgresql://host/db?user=ann&password=pw") == "postgresql://host/db?user=ann&password=***"


def _closed_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_postgres_unreachable_server_names_the_url_without_password():
    pytest.importorskip("psycopg2", reason="pip install 'miniff[postgresql]'")
    pytest.importorskip("ase_db_backends", reason="pip install 'miniff[postgresql]'")
    url = f"postgresql://ann:topsecret@127.0.0.1:{_closed_port()}/nodb"
    for call in (lambda: read_cells(url), lambda: write_cells(read_cells(
            [Atoms("Si", cell=np.eye(3) * 3, pbc=True)], warn_missing_targets=False), url)):
        with pytest.raises(ConnectionError, match="cannot connect") as info:
            call()
        assert "ann:***@127.0.0.1" in str(info.value) and "topsecret" not in str(info.value)


def test_postgres_bad_url_login_database_and_table(postgres_server, postgres_url):
    url = postgres_url
    # an empty database: nothing created by reading it, a clear error naming it
    with pytest.raises(ValueError, match=r"miniff:\*\*\*@.*has no ase.db table 'systems'") as info:
        read_cells(url)
    assert postgres_server.password not in str(info.value)
    import psycopg2

    con = psycopg2.connect(url)
    with con.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'systems'")
        assert cur.fetchone()[0] == 0
    con.close()
    wrong = url.replace(postgres_server.password, "wrong-pw")
    with pytest.raises(ConnectionError, match="cannot connect") as info:
        read_cells(wrong)
    assert "wrong-pw" not in str(info.value)
    missing = url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(ConnectionError, match="no_such_database"):
        read_cells(missing)
    with pytest.raises(ValueError, match=r"not a valid PostgreSQL URL.*port") as info:
        read_cells(url.replace("127.0.0.1:", "127.0.0.1:notaport"))
    assert postgres_server.password not in str(info.value)


def test_postgres_without_client_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "ase_db_backends.postgresql", None)
    with pytest.raises(ImportError, match=r"pip install 'miniff\[postgresql\]'"):
        read_cells("postgresql://ann:pw@127.0.0.1:1/db")


def test_postgres_tests_skip_with_how_to_enable(monkeypatch):
    import pg_server

    monkeypatch.setattr(pg_server, "find_binaries", lambda: None)   # no server binaries: the install hint
    assert "apt-get install postgresql" in pg_server.missing_requirement()
    assert "miniff[postgresql]" in pg_server.missing_requirement()
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    assert "apt-get install postgresql" in pg_server.missing_requirement()


def test_index_windows_equal_slicing_all_rows(db_target, rng):
    frames = _frames(rng, n=6)
    _write_raw(db_target, frames)
    sizes = [c.size for c in read_cells(db_target)]
    assert sizes == [2, 3, 4, 5, 6, 7]   # id order
    cases = {":": slice(None), "2:": slice(2, None), "1:4": slice(1, 4), "0:0": slice(0, 0), "4:100": slice(4, 100),
             "-2:": slice(-2, None), ":-1": slice(None, -1), "::2": slice(None, None, 2), "-1": -1, "3": 3, 1: 1}
    for index, python_index in cases.items():
        expect = sizes[python_index]
        expect = [expect] if isinstance(expect, int) else expect
        if not expect:
            with pytest.raises(ValueError, match="no structures"):
                read_cells(db_target, index=index)
            continue
        assert [c.size for c in read_cells(db_target, index=index)] == expect, index
    assert [c.size for c in read_cells(db_target, selection="config_type=bulk", index="1:")] == [5, 7]
