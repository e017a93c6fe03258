"""ActiveLearningWorkflow on EMT copper: frames are added, the held-out error drops, a killed run resumes."""

import json

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin

import miniff.potentials as P
from miniff import ml, ml_util
from miniff.fit import active_steps

RC = 4.5


def _base():
    return bulk("Cu", "fcc", a=3.61, cubic=True)   # 4 atoms


def _labelled(atoms):
    atoms.calc = EMT()
    atoms.get_forces()
    return atoms


@pytest.fixture(scope="module")
def data():
    """8 slightly rattled training cells; held-out frames of an EMT MD at 1200 K (far from the training data)."""
    train = []
    for k in range(8):
        a = _base()
        a.rattle(0.02, seed=k)
        train.append(_labelled(a))
    a = _base()
    a.rattle(0.05, seed=99)
    a.calc = EMT()
    dyn = Langevin(a, 2 * units.fs, temperature_K=1200, friction=0.05 / units.fs, fixcm=False,
                   rng=np.random.default_rng(6))
    held = []
    for _ in range(6):
        dyn.run(10)
        held.append(_labelled(a.copy()))
    return train, held


def _descriptors():
    return {"Cu": [P.behler2_descriptor_family(a=RC, eta=1.5, r_sphere=float(r), tag="Cu-Cu")
                   for r in np.linspace(2.0, 4.2, 6)]}


def _workflow(data, checkpoint=None, **kw):
    train, held = data
    wf = ml_util.ActiveLearningWorkflow(seed=0)
    settings = dict(reference=EMT(), starts=train[:1], held_out=held, committee={"members": 3, "processes": 1},
                    fit_kwargs={"descriptors": _descriptors(), "test_set": 0,
                                "nn_kwargs": {"n_internal": 6, "n_layers": 2}},
                    fit_run_kwargs={"n_epochs": 4}, temperatures=[1200], n_steps=30, sample_every=5,
                    threshold=0.05, max_frames=3, checkpoint=checkpoint)
    settings.update(kw)
    return wf.prepare(train, **settings)


def test_active_learning_adds_frames_lowers_the_error_and_resumes_after_a_kill(data, tmp_path, monkeypatch, capsys):
    straight = _workflow(data, checkpoint=tmp_path / "a.ckpt")
    history = straight.run(n_rounds=2, log_file=tmp_path / "a.jsonl", save_fn=tmp_path / "a.pt")
    first, second = history[0], history[1]
    assert first["n_labelled"] == 0 and first["n_train"] == 8
    assert second["n_labelled"] > 0 and second["n_train"] == 8 + second["n_labelled"]
    assert second["n_candidates"] >= second["n_labelled"] and second["spread_max"] > 0.05
    assert second["held_out_force_rmse"] < 0.5 * first["held_out_force_rmse"]
    assert history[-1]["held_out_force_rmse"] < 0.5 * first["held_out_force_rmse"]
    assert len(straight.labelled) == sum(h["n_labelled"] for h in history)
    for a in straight.labelled:   # labels are the reference's
        np.testing.assert_allclose(a.get_forces(), _labelled(a.copy()).get_forces(), atol=1e-12)
    logged = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["round"] for r in logged] == [h["round"] for h in history]
    saved = ml_util.load_potentials(tmp_path / "a.pt")
    assert isinstance(saved[0], ml.CommitteePotential) and saved[0].n_members == 3
    out = capsys.readouterr().out
    assert "active learning active:" in out and "held-out F" in out

    # the same run killed while labelling in round 1, then started again: it resumes after round 0 (the first
    # fit) and ends as the uninterrupted run
    calls = {"n": 0}
    real = active_steps.label_frames

    def label_then_die(frames, reference):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("simulated kill")
        return real(frames, reference)

    monkeypatch.setattr(active_steps, "label_frames", label_then_die)
    with pytest.raises(KeyboardInterrupt):
        _workflow(data, checkpoint=tmp_path / "b.ckpt").run(n_rounds=2, summary=False)
    monkeypatch.setattr(active_steps, "label_frames", real)
    resumed = _workflow(data, checkpoint=tmp_path / "b.ckpt")
    assert resumed.resumed_from == 0 and not resumed.labelled and len(resumed.history) == 1
    again = resumed.run(n_rounds=2, summary=False)
    assert [h["n_labelled"] for h in again] == [h["n_labelled"] for h in history]
    for key in ("held_out_force_rmse", "held_out_energy_rmse", "spread_max"):
        assert again[-1].get(key) == pytest.approx(history[-1].get(key), rel=1e-8)
    for a, b in zip(resumed.labelled, straight.labelled, strict=True):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-12)


def test_select_frames_threshold_extrapolation_and_duplicates(data):
    train, _ = data
    committee = ml.CommitteePotential([ml.NNPotential(ml.SequentialSoleEnergyNN(6, n_internal=3), _descriptors()["Cu"],
                                                      tag="Cu") for _ in range(2)])
    far = _base()
    far.rattle(0.2, seed=3)
    frames = [active_steps.Candidate(train[0].copy(), 0.2, 0, "a"),
              active_steps.Candidate(train[0].copy(), 0.3, 0, "a again"),    # the same structure: a duplicate
              active_steps.Candidate(far, 0.01, 2, "extrapolating"),
              active_steps.Candidate(train[1].copy(), 0.01, 0, "below")]
    selected, n = active_steps.select_frames(frames, [committee], threshold=0.1)
    assert n == 3 and [f.source for f in selected] == ["a again", "extrapolating"]
    selected, n = active_steps.select_frames(frames, [committee], threshold=0.1, select_extrapolating=False)
    assert n == 2 and [f.source for f in selected] == ["a again"]
    selected, _ = active_steps.select_frames(frames, [committee], threshold=0.1, max_frames=1)
    assert len(selected) == 1


def test_select_frames_shares_the_frames_among_trajectories(data):
    """Balanced: in rounds over the trajectories, each by its own spread order; spread: largest spread first."""
    train, _ = data
    committee = ml.CommitteePotential([ml.NNPotential(ml.SequentialSoleEnergyNN(6, n_internal=3), _descriptors()["Cu"],
                                                      tag="Cu") for _ in range(2)])
    structures = []
    for k in range(6):   # six different structures (no duplicates)
        a = train[0].copy()
        a.rattle(0.05, seed=10 + k)
        structures.append(a)
    spreads = {"hot": [0.9, 0.8, 0.7], "warm": [0.5, 0.3], "cold": [0.2]}
    frames, k = [], 0
    for traj, values in spreads.items():
        for j, v in enumerate(values):
            frames.append(active_steps.Candidate(structures[k], v, 0, f"{traj}{j}", traj))
            k += 1
    selected, n = active_steps.select_frames(frames, [committee], threshold=0.1, max_frames=4, dedup_tolerance=0,
                                             selection="balanced")
    assert n == 6 and [f.source for f in selected] == ["hot0", "warm0", "cold0", "hot1"]
    selected, _ = active_steps.select_frames(frames, [committee], threshold=0.1, max_frames=4, dedup_tolerance=0,
                                             selection="spread")
    assert [f.source for f in selected] == ["hot0", "hot1", "hot2", "warm0"]
    selected, _ = active_steps.select_frames(frames, [committee], threshold=0.4, max_frames=4, dedup_tolerance=0,
                                             selection="balanced")
    assert [f.source for f in selected] == ["hot0", "warm0", "hot1", "hot2"]   # only frames above the threshold


def test_relaxations_job_stage_and_errors(data, tmp_path):
    from ase.io import write

    train, held = data
    write(tmp_path / "train.extxyz", train)
    write(tmp_path / "held.extxyz", held)
    lj = P.lj_potential_family(epsilon=0.4, sigma=2.3, a=RC / 2.3, tag="Cu-Cu")
    ml_util.save_potentials([lj], tmp_path / "lj.json")
    job = {"active-learning": {
        "init": {"seed": 1},
        "prepare": {"fn_cells": str(tmp_path / "train.extxyz"), "reference": str(tmp_path / "lj.json"),
                    "held_out": str(tmp_path / "held.extxyz"), "dynamics": "relax",
                    "committee": {"members": 2, "processes": 1},
                    "starts": str(tmp_path / "held.extxyz"), "n_steps": 10, "threshold": 0.01, "max_frames": 2,
                    "fit_kwargs": {"cutoff": 5.0, "test_set": 0, "default_descriptor_kwargs": {"three_point": False}},
                    "fit_run_kwargs": {"n_epochs": 2}},
        "run": {"n_rounds": 1, "summary": False}}}
    wf = ml_util.exec_workflows(job, rtn=False)
    assert isinstance(wf, ml_util.ActiveLearningWorkflow) and len(wf.history) == 2
    # the labels come from the classical potential given as the reference
    from miniff.calculator import MiniffCalculator

    for a in wf.labelled:
        b = a.copy()
        b.calc = MiniffCalculator([lj])
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-10)
    train_only = data[0]
    for kw, error, match in (({"dynamics": "nve"}, ValueError, "dynamics must be"),
                             ({"temperatures": [-5]}, ValueError, "temperatures"),
                             ({"reference": 3}, TypeError, "reference must be"),
                             ({"reference": str(tmp_path / "nope.pt")}, FileNotFoundError, "no such potentials"),
                             ({"threshold": 0}, ValueError, "threshold"),
                             ({"n_steps": 0}, ValueError, "n_steps"),
                             ({"fit_kwargs": {"committee": 3}}, ValueError, "set by the active-learning")):
        with pytest.raises(error, match=match):
            ml_util.ActiveLearningWorkflow().prepare(train_only, **dict({"reference": EMT()}, **kw))
    with pytest.raises(ValueError, match="n_rounds"):
        _workflow(data).run(n_rounds=-1)
    import torch

    torch.save({"format": "something else"}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a miniff checkpoint"):
        ml_util.ActiveLearningWorkflow().prepare(train_only, reference=EMT(), checkpoint=tmp_path / "other.ckpt")


def _selection_case(data):
    """A 2-member committee of untrained Cu networks and ``rattled(amount, seed)``: a copy of the first training
    frame with its atoms moved by ``amount`` Å (seeded)."""
    train, _ = data
    committee = ml.CommitteePotential([ml.NNPotential(ml.SequentialSoleEnergyNN(6, n_internal=3), _descriptors()["Cu"],
                                                      tag="Cu") for _ in range(2)])

    def rattled(amount, seed):
        a = train[0].copy()
        a.rattle(amount, seed=seed)
        return a

    return committee, rattled


def test_select_frames_diverse_takes_uncertain_frames_far_apart(data):
    """"diverse": after the frame of largest spread, spread x distance to the frames chosen, so a
    distinct frame of smaller spread beats near-copies of the first; the choice does not depend on the spread's
    unit; the near-copies come back once the distinct frames are taken."""
    committee, rattled = _selection_case(data)
    frames = [active_steps.Candidate(rattled(1e-3, k), v, 0, f"hot{k}", "hot") for k, v in enumerate((0.9, 0.85))]
    frames.append(active_steps.Candidate(rattled(0.15, 7), 0.5, 0, "distinct", "warm"))
    spread = active_steps.select_frames(frames, [committee], threshold=0.1, max_frames=2, dedup_tolerance=1e-12,
                                        selection="spread")[0]
    assert [f.source for f in spread] == ["hot0", "hot1"]
    for scale in (1.0, 1000.0):
        scaled = [active_steps.Candidate(f.atoms, scale * f.max_std, 0, f.source) for f in frames]
        diverse, n = active_steps.select_frames(scaled, [committee], threshold=0.1 * scale, max_frames=2,
                                                dedup_tolerance=1e-12, selection="diverse")
        assert n == 3 and [f.source for f in diverse] == ["hot0", "distinct"]
    diverse, _ = active_steps.select_frames(frames, [committee], threshold=0.1, max_frames=3, dedup_tolerance=1e-12,
                                            selection="diverse")
    assert [f.source for f in diverse] == ["hot0", "distinct", "hot1"]
    # the near-copy is a duplicate under the default tolerance: never labelled twice
    diverse, _ = active_steps.select_frames(frames, [committee], threshold=0.1, max_frames=3, selection="diverse")
    assert [f.source for f in diverse] == ["hot0", "distinct"]
    with pytest.raises(ValueError, match="selection"):
        active_steps.select_frames(frames, [committee], threshold=0.1, selection="largest")


def test_select_frames_balanced_on_one_trajectory_is_diverse(data):
    """"balanced" takes turns over trajectories; with candidates of one trajectory (or none known) there is
    nothing to take turns over and it chooses as "diverse" (not as "spread", which would fill the batch with
    near-copies of the frame of largest spread)."""
    committee, rattled = _selection_case(data)
    for traj in ("md 300 K", None):
        frames = [active_steps.Candidate(rattled(1e-3, k), v, 0, f"hot{k}", traj) for k, v in enumerate((0.9, 0.85))]
        frames.append(active_steps.Candidate(rattled(0.15, 7), 0.5, 0, "distinct", traj))
        chosen, _ = active_steps.select_frames(frames, [committee], threshold=0.1, max_frames=2,
                                               dedup_tolerance=1e-12, selection="balanced")
        assert [f.source for f in chosen] == ["hot0", "distinct"]


def test_select_frames_coverage_prefers_a_typical_uncertain_frame_to_an_outlier(data):
    """"coverage": each frame chosen lowers most the spread-weighted sum of every candidate's distance to its
    nearest chosen frame, so one frame of a group of three uncertain near-copies (spread 0.5 each: the sum drops by
    about 1.5 d) beats a lone outlier of larger spread (0.9 d), which "diverse" takes first; the outlier comes
    next, then the group's other frames; the choice does not depend on the spread's unit."""
    committee, rattled = _selection_case(data)
    frames = [active_steps.Candidate(rattled(0.15, 7), 0.9, 0, "outlier")]
    frames += [active_steps.Candidate(rattled(1e-3, k), 0.5, 0, f"group{k}") for k in range(3)]
    diverse, _ = active_steps.select_frames(frames, [committee], threshold=0.1, max_frames=1, dedup_tolerance=1e-12,
                                            selection="diverse")
    assert [f.source for f in diverse] == ["outlier"]
    for scale in (1.0, 1000.0):
        scaled = [active_steps.Candidate(f.atoms, scale * f.max_std, 0, f.source) for f in frames]
        chosen, n = active_steps.select_frames(scaled, [committee], threshold=0.1 * scale, max_frames=2,
                                               dedup_tolerance=1e-12, selection="coverage")
        assert n == 4 and chosen[0].source.startswith("group") and chosen[1].source == "outlier"
    chosen, _ = active_steps.select_frames(frames, [committee], threshold=0.1, max_frames=4, dedup_tolerance=1e-12,
                                           selection="coverage")
    assert sorted(f.source for f in chosen) == ["group0", "group1", "group2", "outlier"]
    # under the default tolerance the near-copies are duplicates of the first one chosen
    chosen, _ = active_steps.select_frames(frames, [committee], threshold=0.1, max_frames=4, selection="coverage")
    assert len(chosen) == 2 and chosen[1].source == "outlier"


def test_select_frames_frame_without_a_committee_species(data):
    """A frame without atoms of a committee's species (pure Pt for the Cu committee) has zero mean descriptors
    for it (it used to raise KeyError) and is far from the Cu frames."""
    train, _ = data
    committee = ml.CommitteePotential([ml.NNPotential(ml.SequentialSoleEnergyNN(6, n_internal=3), _descriptors()["Cu"],
                                                      tag="Cu") for _ in range(2)])
    pt = train[0].copy()
    pt.set_chemical_symbols(["Pt"] * len(pt))
    np.testing.assert_array_equal(active_steps._fingerprint(pt, [committee], None), np.zeros(6))
    assert np.abs(active_steps._fingerprint(train[0], [committee], None)).max() > 0
    frames = [active_steps.Candidate(train[0].copy(), 0.3, 0, "Cu"), active_steps.Candidate(pt, 0.2, 0, "Pt")]
    for selection in active_steps.SELECTIONS:
        selected, _ = active_steps.select_frames(frames, [committee], threshold=0.1, selection=selection)
        assert [f.source for f in selected] == ["Cu", "Pt"]
