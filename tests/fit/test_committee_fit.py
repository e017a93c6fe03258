"""Committee fits of FitWorkflow: shared data, identical members, spread away from the data, files, resume."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.lj import LennardJones
from support import lj_cells, radial_basis

import miniff.potentials as P
from miniff import ml, ml_util
from miniff.fit.committee_fit import bootstrap_weights, committee_options, member_path
from miniff.kernel import Cell, NeighborWrapper

DIMER_RC = 4.0


def _dimer_cells(distances):
    """Ar dimers labelled with ASE's smooth Lennard-Jones (energy and forces known in closed form)."""
    cells = []
    for r in distances:
        a = Atoms("Ar2", positions=[[0, 0, 0], [r, 0, 0]], cell=[10, 10, 10], pbc=False)
        a.calc = LennardJones(sigma=1.5, epsilon=0.1, rc=DIMER_RC, smooth=True)
        a.get_forces()
        cells.append(a)
    return cells


def _dimer_descriptors():
    return {"Ar": [P.behler2_descriptor_family(a=DIMER_RC, eta=2.0, r_sphere=float(r), tag="Ar-Ar")
                   for r in np.linspace(1.2, 3.5, 5)]}


def _dimer_wrapper(r):
    return NeighborWrapper(Cell(np.eye(3) * 10, np.array([[0, 0, 0], [r / 10, 0, 0]]), ["Ar", "Ar"]),
                           cutoff=DIMER_RC, pbc=False)


def _dimer_committee(seeds, **committee):
    # sigmoid networks: the spreads asserted below grow monotonically away from the data with them (tanh members,
    # the default, disagree far from the data too, but not monotonically on this 12-point dimer set)
    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(_dimer_cells(np.linspace(1.6, 2.4, 12)), descriptors=_dimer_descriptors(), forces=True, test_set=0,
               nn_kwargs={"n_internal": 8, "n_layers": 2, "activation": "sigmoid"},
               committee={"members": len(seeds), "seeds": seeds, "processes": 1, **committee})
    wf.run(n_epochs=5, progress=False, summary=False)
    return wf


def test_identical_members_have_zero_spread():
    wf = _dimer_committee([3, 3, 3])
    states = [[{k: v.clone() for k, v in n.state_dict().items()} for n in m.nn] for m in wf.members]
    for s in states[1:]:
        for a, b in zip(states[0], s, strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a)
    # zero up to the rounding of the mean in the standard deviation (the members are equal bit for bit)
    pred = wf.predict("learn")
    assert np.abs(pred["energy_std"]).max() < 1e-15 and np.abs(pred["forces_std"]).max() < 1e-15
    for r in (1.3, 2.0, 3.0):   # also far from the data
        spread = ml.committee_spread(_dimer_wrapper(r), wf.build_potentials(), stress=False)
        assert spread.energy_std < 1e-15 and spread.forces_std.max() < 1e-15


def test_different_seeds_spread_grows_away_from_the_training_data():
    # trained on dimer distances 1.6 .. 2.4 Å: inside, the members agree; outside, they disagree more the
    # further the distance is from the data, on both sides
    wf = _dimer_committee([0, 1, 2, 3])
    pots = wf.build_potentials()
    assert isinstance(pots[0], ml.CommitteePotential) and pots[0].n_members == 4
    distances = [1.3, 1.4, 1.5, 1.7, 2.0, 2.3, 2.6, 2.8, 3.0]
    std = np.array([ml.committee_spread(_dimer_wrapper(r), pots, stress=False).forces_std.max() for r in distances])
    inside = std[3:6].max()
    assert np.all(std[:3] > 20 * inside) and np.all(std[6:] > 20 * inside), std
    assert np.all(np.diff(std[:4]) < 0) and np.all(np.diff(std[5:]) > 0), std   # grows away on both sides
    # the committee mean fits LJ inside the range
    ref = _dimer_cells([2.0])[0].get_forces()
    np.testing.assert_allclose(-_dimer_wrapper(2.0).grad(pots), ref, atol=0.02 * np.abs(ref).max())


@pytest.fixture(scope="module")
def lj_data():
    return lj_cells(16, seed=2)


def _lj_committee(cells, n_epochs=2, checkpoint=None, **committee):
    wf = ml_util.FitWorkflow(seed=1)
    wf.prepare(cells, descriptors=radial_basis(6), forces=True, test_set=4, checkpoint=checkpoint,
               nn_kwargs={"n_internal": 4, "n_layers": 2}, closure_kwargs={"optimizer_kwargs": {"max_iter": 5}},
               committee={"members": 3, "processes": 1, **committee})
    wf.run(n_epochs=n_epochs, progress=False, summary=False)
    return wf


def test_members_share_the_data_and_bootstrap_weighs_structures(lj_data, capsys):
    wf = _lj_committee(lj_data, bootstrap=True)
    assert [m.member_index for m in wf.members] == [0, 1, 2]
    for m in wf.members:   # one set of datasets and one normalisation: computed once, never copied
        assert m.datasets is wf.datasets and m.normalization is wf.normalization and m.descriptors is wf.descriptors
    n = wf.datasets["learn"].n_samples
    for k, m in enumerate(wf.members):
        w = bootstrap_weights(n, wf.committee["seeds"][k])
        assert w.sum() == n and np.all(w == np.round(w))
        np.testing.assert_array_equal(m.closure.loss_function_kwargs["weights"], w)
    assert wf.committee["seeds"] == [1, 2, 3]   # seed + k
    text = wf.summary()
    assert "committee of 3 members (bootstrap resampling)" in text and "member 2 (seed 3)" in text
    assert "committee mean:" in text and "validation" in text
    # predict is the mean of the members' predictions
    preds = [m.predict("test") for m in wf.members]
    got = wf.predict("test")
    np.testing.assert_allclose(got["forces_pred"], np.mean([p["forces_pred"] for p in preds], axis=0), rtol=1e-12)
    np.testing.assert_allclose(got["energy_std"], np.std([p["energy_pred"] for p in preds], axis=0), rtol=1e-12)


def test_saved_committee_is_plain_data_and_evaluates_the_mean(lj_data, tmp_path):
    wf = _lj_committee(lj_data)
    path = tmp_path / "committee.json"
    wf.save_potentials(path)
    loaded = ml_util.load_potentials(path)
    assert len(loaded) == 1 and isinstance(loaded[0], ml.CommitteePotential) and loaded[0].n_members == 3
    nw = NeighborWrapper(lj_data[0], cutoff=3.0)
    singles = [m.build_potentials() for m in wf.members]
    mean_grad = np.mean([nw.grad(s) for s in singles], axis=0)
    np.testing.assert_allclose(nw.grad(loaded), mean_grad, rtol=1e-10, atol=1e-12)
    # and the predict() of the training path agrees with the saved potentials (test cells are the last 4)
    f_pred = wf.predict("test", per_structure=True)["forces_pred"][0]
    np.testing.assert_allclose(-NeighborWrapper(wf.cells[-4], cutoff=3.0).grad(loaded), f_pred, atol=1e-9)


def test_members_checkpoint_and_resume(lj_data, tmp_path):
    ckpt = tmp_path / "fit.ckpt"
    _lj_committee(lj_data, n_epochs=2, checkpoint=ckpt)
    assert [p.name for p in sorted(tmp_path.iterdir())] == [f"fit.member{k}.ckpt" for k in range(3)]
    resumed = _lj_committee(lj_data, n_epochs=4, checkpoint=ckpt)
    assert [m.resumed_from for m in resumed.members] == [2, 2, 2]
    straight = _lj_committee(lj_data, n_epochs=4)
    for a, b in zip(resumed.members, straight.members, strict=True):
        for na, nb in zip(a.nn, b.nn, strict=True):
            for pa, pb in zip(na.parameters(), nb.parameters(), strict=True):
                torch.testing.assert_close(pa, pb, rtol=1e-9, atol=1e-12)


def test_parallel_members_equal_sequential_members(lj_data):
    # two worker processes (spawn) give the same networks as one process, bit for bit
    seq = _lj_committee(lj_data[:10], n_epochs=1)
    par = _lj_committee(lj_data[:10], n_epochs=1, processes=2)
    assert par.members[1].history[-1]["loss"] == seq.members[1].history[-1]["loss"]
    for a, b in zip(seq.members, par.members, strict=True):
        for na, nb in zip(a.nn, b.nn, strict=True):
            for pa, pb in zip(na.parameters(), nb.parameters(), strict=True):
                assert torch.equal(pa, pb)


def test_job_file_committee_key(lj_data, tmp_path):
    from miniff.io import write_cells

    write_cells(lj_data[:10], tmp_path / "data.extxyz")
    job = {"fit": {"init": {"seed": 0},
                   "prepare": {"fn_cells": str(tmp_path / "data.extxyz"), "descriptors": None, "forces": True,
                               "test_set": 2, "cutoff": 3.0, "default_descriptor_kwargs": {"three_point": False},
                               "committee": {"members": 2, "bootstrap": True, "processes": 1}},
                   "run": {"n_epochs": 1, "save_fn": str(tmp_path / "c.pt"), "progress": False, "summary": False}}}
    wf = ml_util.exec_workflows(job, rtn=False)
    assert len(wf.members) == 2
    assert isinstance(ml_util.load_potentials(tmp_path / "c.pt")[0], ml.CommitteePotential)
    bad = {"fit": dict(job["fit"], prepare=dict(job["fit"]["prepare"], committee={"members": 2, "boostrap": True}))}
    with pytest.raises(ValueError, match="fit.prepare: committee: unknown key"):
        ml_util.exec_workflows(bad)


def test_committee_options_errors():
    assert committee_options(None) is None
    assert committee_options(3, seed=10)["seeds"] == [10, 11, 12]
    assert member_path("a/fit.ckpt", 2).as_posix() == "a/fit.member2.ckpt" and member_path(None, 0) is None
    for bad, match in ((1, "members must be an integer >= 2"), ({"members": 2, "seeds": [1]}, "seeds must be"),
                       ({"members": 2, "processes": 0}, "processes must be"), ({"members": "two"}, "members"),
                       ({"members": 2, "warm_start": [[]]}, "warm_start")):
        with pytest.raises(ValueError, match=match):
            committee_options(bad)
    with pytest.raises(TypeError, match="committee must be"):
        committee_options("three")
    with pytest.raises(TypeError, match="bootstrap"):
        committee_options({"members": 2, "bootstrap": "yes"})
