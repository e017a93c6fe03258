"""ase.db as a training source and a prediction sink through the workflows: SQLite and a real PostgreSQL server
(``postgres_server`` fixture of ``tests/conftest.py``; skipped with a hint when it is not installed)."""

import ase.db
import numpy as np
import pytest
import torch

from miniff import ml_util
from miniff.io import read_cells, write_cells
from miniff.kernel import NeighborWrapper
from miniff.potentials import lj_potential_family
from tests.support import LJ_EPSILON, LJ_RC, LJ_SIGMA, lj_cells, radial_basis


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "data.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module")
def cells():
    return lj_cells(10, seed=11)


def _tensors(obj, prefix=""):
    """Every tensor reachable through the attributes of a dataset (recursing into jacobians), by path."""
    out = {}
    items = obj.items() if isinstance(obj, dict) else vars(obj).items() if hasattr(obj, "__dict__") else ()
    if isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    for key, value in items:
        path = f"{prefix}.{key}"
        if isinstance(value, torch.Tensor):
            out[path] = value
        elif isinstance(value, (list, tuple, dict)) or hasattr(value, "__dict__"):
            out.update(_tensors(value, path))
    return out


def _prepared(source, test_set=0.25, **kw):
    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(source, descriptors=radial_basis(4), nn_kwargs={"n_internal": 3}, test_set=test_set, **kw)
    return wf


def test_fit_from_postgres_equals_sqlite(cells, postgres_url, tmp_path):
    sqlite = str(tmp_path / "train.db")
    for target in (sqlite, postgres_url):
        write_cells(cells[:6], target, append=True, key_value_pairs={"phase": "solid"})
        write_cells(cells[6:], target, append=True, key_value_pairs={"phase": "strained"})
    kw = {"cells_selection": "natoms=8", "cells_group_key": "phase", "forces": True}
    a, b = _prepared(sqlite, **kw), _prepared(postgres_url, **kw)
    assert a.groups() == b.groups() and sorted(set(a.groups())) == ["solid", "strained"]
    assert a.cell_sources[0][0] == sqlite and b.cell_sources[0][0].startswith("postgresql://miniff:***@")
    for name in ("learn", "test"):
        ta, tb = _tensors(a.datasets[name]), _tensors(b.datasets[name])
        assert ta.keys() == tb.keys() and len(ta) > 3
        for key in ta:
            assert torch.equal(ta[key], tb[key]), (name, key)
    # the selection reaches the server: only the strained ones
    c = _prepared(postgres_url, cells_selection="phase=strained", cells_group_key="phase")
    assert len(c.cells) == 4 and set(c.groups()) == {"strained"}


def _lj():
    return [lj_potential_family(epsilon=LJ_EPSILON, sigma=LJ_SIGMA, a=LJ_RC, tag="Ar-Ar")]


def test_write_predictions_equal_direct_evaluation(cells, db_target, tmp_path):
    pots = _lj()
    got = ml_util.write_predictions(cells[:4], pots, db_target, key_value_pairs={"model": "lj"})
    back = read_cells(db_target)
    assert len(back) == 4
    for cell, ret, row in zip(cells[:4], got, back, strict=True):
        nw = NeighborWrapper(cell, cutoff=LJ_RC, pbc=(True, True, True))
        energy = nw.total(pots)
        forces = -np.asarray(nw.grad(pots))
        stress = np.asarray(nw.stress(pots))
        for c in (ret, row):
            np.testing.assert_allclose(c.meta["predicted-energy"], energy, rtol=1e-13)
            np.testing.assert_allclose(c.meta["predicted-forces"], forces, rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(c.meta["predicted-stress"], stress, rtol=1e-12, atol=1e-15)
        for key in ("predicted-energy", "predicted-forces", "predicted-stress", "total-energy", "forces"):
            assert np.array_equal(row.meta[key], ret.meta[key]), key   # the database round trip is exact
    with ase.db.connect(db_target) as db:
        assert db.count("model=lj") == 4
        assert db.count(f"predicted_energy<{max(c.meta['predicted-energy'] for c in got) + 1}") == 4
    # an NN potential, read from a database, predictions as the rows' own results
    nn = _prepared(cells, forces=False, test_set=0).build_potentials()   # untrained networks do as well
    dest = str(tmp_path / "nn-pred.db")
    got = ml_util.write_predictions(db_target, nn, dest, as_results=True, selection="model=lj")
    rows = read_cells(dest)
    for cell, ret, row in zip(back, got, rows, strict=True):
        nw = NeighborWrapper(cell, cutoff=max(p.cutoff for p in nn), pbc=(True, True, True))
        np.testing.assert_allclose(ret.meta["predicted-energy"], nw.total(nn, ignore_missing_species=True),
                                   rtol=1e-12)
        assert row.meta["total-energy"] == ret.meta["predicted-energy"]
        assert np.array_equal(row.meta["forces"], ret.meta["predicted-forces"])
        assert np.array_equal(row.meta["stress"], ret.meta["predicted-stress"])
        assert "predicted-energy" not in row.meta


def test_predict_cells_stress_rules(cells):
    from miniff.kernel import Cell

    molecule = Cell(np.eye(3) * 8.0, np.array([[0.1, 0.1, 0.1], [0.25, 0.1, 0.1]]), ["Ar", "Ar"],
                    meta={"pbc": np.array([False] * 3)})
    out = ml_util.predict_cells([cells[0], molecule], _lj())
    assert "predicted-stress" in out[0].meta and "predicted-stress" not in out[1].meta
    assert "predicted-stress" not in ml_util.predict_cells(cells[0], _lj(), stress=False)[0].meta
    with pytest.raises(ValueError, match=r"stress: cells\[0\] is not periodic"):
        ml_util.predict_cells(molecule, _lj(), stress=True)
    with pytest.raises(TypeError, match="cells"):
        ml_util.predict_cells([cells[0], "x"], _lj())
    with pytest.raises(ValueError, match="selection and group_key"):
        ml_util.write_predictions(cells[:1], _lj(), "x.db", selection="natoms=8")


def test_test_direct_stage_writes_predictions_to_postgres(cells, postgres_url, tmp_path):
    pots = _lj()
    ml_util.save_potentials(pots, tmp_path / "lj.json")
    write_cells(cells[:3], postgres_url)
    job = {"test-direct": {"prepare": {"fn_cells": postgres_url, "potentials": str(tmp_path / "lj.json")},
                           "run": {"fn_output": postgres_url, "summary": False}}}
    ml_util.exec_workflows(job)
    rows = read_cells(postgres_url)
    assert len(rows) == 6
    for ref, row in zip(rows[:3], rows[3:], strict=True):
        assert row.meta["total-energy"] == ref.meta["total-energy"]
        nw = NeighborWrapper(ref, cutoff=LJ_RC, pbc=(True, True, True))
        np.testing.assert_allclose(row.meta["predicted-energy"], nw.total(pots), rtol=1e-13)


def test_cli_reports_an_unreachable_database_without_traceback(tmp_path, capsys):
    pytest.importorskip("psycopg2", reason="pip install 'miniff[postgresql]'")
    pytest.importorskip("ase_db_backends", reason="pip install 'miniff[postgresql]'")
    import socket

    from miniff.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    job = tmp_path / "job.yml"
    job.write_text(f"fit:\n  prepare: {{fn_cells: 'postgresql://ann:hidden-pw@127.0.0.1:{port}/train'}}\n")
    assert main([str(job), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("miniff: error: cannot connect to the PostgreSQL database postgresql://ann:***@127.0.0.1")
    assert "hidden-pw" not in err and "Traceback" not in err
