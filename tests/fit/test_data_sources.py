"""Data from anywhere: paths, globs, Cells, ase.Atoms, ase.db in any mix; energy-only frames; bad values."""

import warnings

import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from miniff import ml, ml_util
from miniff.io import MissingForcesWarning, cells_to_atoms, write_cells
from tests.support import lj_cells, radial_basis


@pytest.fixture(scope="module")
def cells():
    return lj_cells(14, seed=7)


def test_mixed_sources(cells, tmp_path):
    write_cells(cells[:3], tmp_path / "a-1.extxyz")
    write_cells(cells[3:5], tmp_path / "a-2.extxyz")
    write_cells(cells[5:8], tmp_path / "set.db")
    atoms = cells_to_atoms(cells[8:11])
    wf = ml_util.FitWorkflow()
    loaded = wf.load_cells([str(tmp_path / "a-*.extxyz"), tmp_path / "set.db", cells[11], atoms, cells[12:14],
                            atoms[0]])
    assert len(loaded) == 3 + 2 + 3 + 1 + 3 + 2 + 1
    energies = [c.meta["total-energy"] for c in loaded]
    order = list(range(8)) + [11, 8, 9, 10, 12, 13, 8]
    expected = [cells[k].meta["total-energy"] for k in order]
    np.testing.assert_allclose(energies, expected, rtol=1e-10)
    np.testing.assert_allclose(loaded[9].meta["forces"], cells[8].meta["forces"], rtol=1e-10)
    assert wf.cell_sources[0] == (str(tmp_path / "a-1.extxyz"), 0) and wf.cell_sources[6][1] == 1
    # a list of ase.Atoms alone, through prepare, and an ase.db path as the validation set
    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(atoms + cells_to_atoms(cells[:5]), descriptors=radial_basis(4), test_set=str(tmp_path / "set.db"),
               nn_kwargs={"n_internal": 3})
    assert wf.datasets["learn"].n_samples == 8 and wf.datasets["test"].n_samples == 3
    with pytest.raises(TypeError, match="fn_cells entries must be paths, glob patterns, database URLs, Cells or "
                                        "ase.Atoms"):
        wf.load_cells([3.5])


def test_group_labels_from_a_mapping(cells, tmp_path):
    unlabelled = [c.copy() for c in cells[:6]]
    for c in unlabelled:
        c.meta = {k: v for k, v in c.meta.items() if k != "group"}
    write_cells(unlabelled[:2], tmp_path / "bulk.extxyz")
    write_cells(unlabelled[2:5], tmp_path / "surface.db")
    wf = ml_util.FitWorkflow()
    got = wf.load_cells({"bulk": "bulk.extxyz", "surface": ["surface.db", unlabelled[5]]}, root=str(tmp_path))
    assert [c.meta["group"] for c in got] == ["bulk"] * 2 + ["surface"] * 4
    assert wf.cell_sources[2] == (str(tmp_path / "surface.db"), 0) and len(wf.cell_sources) == 6
    assert "group" not in unlabelled[5].meta   # the caller's cell is not modified
    # structures that carry a group keep it
    got = wf.load_cells({"other": cells[:2]})
    assert [c.meta["group"] for c in got] == [c.meta["group"] for c in cells[:2]]


def _without_forces(cells, which):
    atoms = cells_to_atoms(cells)
    for k in which:
        a = atoms[k]
        a.calc = SinglePointCalculator(a, energy=cells[k].meta["total-energy"])
        a.arrays.pop("forces", None)
    return atoms


def test_frames_without_forces_are_energy_only_data_in_a_force_fit(cells, tmp_path):
    from ase.io import write

    write(tmp_path / "part1.extxyz", _without_forces(cells[:6], [1, 4]), format="extxyz")
    write(tmp_path / "part2.extxyz", _without_forces(cells[6:12], [0]), format="extxyz")
    wf = ml_util.FitWorkflow(seed=0)
    with pytest.warns(MissingForcesWarning) as record:
        wf.prepare(str(tmp_path / "part*.extxyz"), cells_order=None, descriptors=radial_basis(4), forces=True,
                   test_set=4, nn_kwargs={"n_internal": 3})
    assert len(record) == 1   # one summary warning for both files
    assert "3 of 12 structures have no forces" in str(record[0].message)
    assert "part1.extxyz: 2" in str(record[0].message) and "part2.extxyz: 1" in str(record[0].message)
    has = wf.datasets["learn"].per_cell_dataset.has_forces
    np.testing.assert_array_equal(has.numpy(), [k not in (1, 4, 6) for k in range(8)])
    wf.run(n_epochs=2, progress=False, summary=False)
    # the force error counts only the frames that have forces: recompute it from predictions by hand
    pred = wf.predict("learn", per_structure=True)
    ref = [np.asarray(cells[k].meta["forces"]) for k in range(8) if k not in (1, 4, 6)]
    got = [f for k, f in enumerate(pred["forces_pred"]) if k not in (1, 4, 6)]
    assert all(pred["forces_ref"][k].size == 0 for k in (1, 4, 6))
    rmse = np.sqrt(np.mean(np.concatenate([(g - r).ravel() for g, r in zip(got, ref, strict=True)]) ** 2))
    assert wf.metrics("learn")["force_rmse"] == pytest.approx(rmse, rel=1e-9)
    # and so does the loss: the force term equals the mean square over frames with forces (normalised units)
    ds = wf.datasets["learn"]
    with torch.no_grad():
        out = ml.forward_cauldron(wf.nn, ds, grad=True)
    keep = torch.tensor([k not in (1, 4, 6) for k in range(8)])
    sq = ((out[1] - ds.per_cell_dataset.energy_g)[keep] ** 2).sum()
    n = 3 * ds.per_cell_dataset.mask[keep].sum()
    loss = wf.closure.loss().components["gradients"].loss_value.detach()
    assert float(loss) == pytest.approx(float(sq / n) * wf.closure.loss_function_kwargs["w_gradients"], rel=1e-9)


@pytest.mark.parametrize("quantity, set_bad", [
    ("energy", lambda a: a.calc.results.__setitem__("energy", float("nan"))),
    ("forces", lambda a: a.calc.results["forces"].__setitem__((2, 1), float("inf"))),
    ("stress", lambda a: a.calc.results.__setitem__("stress", np.full(6, float("nan")))),
])
def test_bad_values_name_file_index_and_quantity(cells, tmp_path, quantity, set_bad):
    atoms = cells_to_atoms(cells[:4])
    for a, c in zip(atoms, cells[:4], strict=True):
        a.calc = SinglePointCalculator(a, energy=c.meta["total-energy"], forces=np.array(c.meta["forces"]),
                                       stress=np.zeros(6))
    set_bad(atoms[2])
    path = tmp_path / "bad.extxyz"
    from ase.io import write

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write(path, atoms, format="extxyz")
    wf = ml_util.FitWorkflow()
    match = f"bad.extxyz, structure 2: the reference {quantity} contains NaN or inf"
    if quantity == "forces":
        match += r" \(atom 2\)"
    with pytest.raises(ValueError, match=match):
        wf.prepare(str(path), descriptors=radial_basis(4), forces=True, test_set=1)
