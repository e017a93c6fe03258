"""Fitting stresses through FitWorkflow and job files: options, the summary's stress column, errors.

The summary's stress RMSEs are recomputed from the saved potential through the evaluation path
(``NeighborWrapper.stress``) against the references of the data, independently of the training code.
"""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from miniff import ml_util
from miniff.fit.jobs import JobFileError, check_key_type, exec_workflows
from miniff.fit.prepare import DEFAULT_STRESS_WEIGHT
from miniff.fit.summary import error_table, format_table
from miniff.io import atoms_to_cell
from miniff.kernel import NeighborWrapper

CUTOFF = 5.5


def _frames(n, seed=0, stress_every=1):
    """Strained, rattled 8-atom Cu/Pt fcc cells with EMT energies, forces and (every ``stress_every``-th) stresses."""
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((2, 1, 1))
        atoms.set_chemical_symbols(rng.choice(["Cu", "Pt"], size=len(atoms)))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if k % stress_every == 0:
            results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out


def _fit(frames, **kw):
    kw["closure_kwargs"] = {"optimizer_kwargs": {"max_iter": 5}, **kw.get("closure_kwargs", {})}
    fit = ml_util.FitWorkflow(seed=0)
    fit.prepare(frames, forces=True, cutoff=CUTOFF, test_set=3, cells_order=None,
                default_descriptor_kwargs={"n": 3, "zeta": (1,), "eta3": 0.0}, nn_kwargs={"n_internal": 4}, **kw)
    return fit


def test_stress_fit_summary_equals_saved_potential(tmp_path, capsys):
    frames = _frames(10, stress_every=3)   # 4 of 10 frames carry a stress (two of them held out)
    fit = _fit(frames, stress=True)
    assert fit.stress and fit.closure.loss_function_kwargs["w_stress"] == DEFAULT_STRESS_WEIGHT
    fit.run(n_epochs=2, progress=False, save_fn=str(tmp_path / "p.json"))
    text = capsys.readouterr().out
    assert "stress RMSE (spread)" in text and "meV/Å³" in text
    assert "stress_rmse" in fit.history[-1] and "stress_rmse_valid" in fit.history[-1]
    potentials = ml_util.load_potentials(tmp_path / "p.json")
    table = dict(fit.summary_table)
    for label, frames_set in (("training", frames[:7]), ("validation", frames[7:])):
        ref, pred = [], []
        for atoms in frames_set:
            if "stress" not in atoms.calc.results:
                continue
            nw = NeighborWrapper(atoms_to_cell(atoms), cutoff=CUTOFF)
            pred.append(nw.stress(potentials, ignore_missing_species=True))
            ref.append(atoms.calc.results["stress"])
        ref, pred = np.array(ref), np.array(pred)
        assert table[label]["stress_rmse"] == pytest.approx(np.sqrt(np.mean((pred - ref) ** 2)), rel=1e-8)
        assert table[label]["stress_spread"] == pytest.approx(np.std(ref), rel=1e-12)
    line = next(x for x in format_table(fit.summary_table) if x.startswith("validation"))
    assert f"{1000 * table['validation']['stress_rmse']:8.3f}" in line
    # the test stage reports the same stress errors
    check = ml_util.OneShotWorkflow()
    check.prepare(frames[7:], potentials=str(tmp_path / "p.json"))
    check.run(summary=True)
    assert check.errors["stress_rmse"] == pytest.approx(table["validation"]["stress_rmse"], rel=1e-8)
    assert "meV/Å³" in capsys.readouterr().out


def test_stress_options():
    frames = _frames(6)
    fit = _fit(frames, closure_kwargs={"w_stress": 0.5})       # a weight alone turns stresses on
    assert fit.stress and fit.datasets["learn"].per_point_datasets[0].features_strain is not None
    fit = _fit(frames)
    assert not fit.stress and fit.datasets["learn"].per_cell_dataset.stress is None
    with pytest.raises(ValueError, match="w_stress != 0 but stress=False"):
        _fit(frames, stress=False, closure_kwargs={"w_stress": 0.5})
    with pytest.raises(TypeError, match="stress must be"):
        _fit(frames, stress="yes")
    for atoms in frames:
        del atoms.calc.results["stress"]
    with pytest.raises(ValueError, match="no cell has meta\\['stress'\\]"):
        _fit(frames, stress=True)


def test_error_table_stress_by_hand():
    rng = np.random.default_rng(1)
    e = rng.normal(size=3)
    s_ref = [rng.normal(size=6), np.zeros(0), rng.normal(size=6)]
    s_pred = [x + rng.normal(size=x.shape) for x in s_ref]
    (label, row), = error_table([("set", {"energy_ref": e, "energy_pred": e, "stress_ref": s_ref,
                                           "stress_pred": s_pred})])
    d = np.concatenate([p - r for p, r in zip(s_pred, s_ref, strict=True)])
    assert row["stress_rmse"] == pytest.approx(np.sqrt(np.mean(d**2)))
    assert row["stress_spread"] == pytest.approx(np.std(np.concatenate(s_ref)))
    lines = format_table([(label, row)])
    assert "stress RMSE (spread)" in lines[0] and "meV/Å³" in lines[1] and "force" not in lines[0]


def test_job_file_stress_key(tmp_path):
    assert "true or false" in check_key_type("stress", "abc")
    with pytest.raises(JobFileError, match="stress"):
        exec_workflows({"fit": {"prepare": {"fn_cells": "x.xyz", "stress": "abc"}}})
