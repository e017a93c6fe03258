"""Mini-batch training from a descriptor store: gradients summed over an epoch's batches equal the full-batch
gradient of ``energy_loss`` on the in-memory dataset; a resumed run equals an uninterrupted one bit for bit."""

import numpy as np
import pytest
import torch
from support_store import store_cells, store_descriptors

from miniff import ml
from miniff.fit.closures import energy_loss
from miniff.fit.minibatch import MiniBatchTrainer
from miniff.store import StoreDataset, normalization_from_store, prepare_store

GROUP_WEIGHTS = {"g1": 2.0}


def _nets(seed=3):
    torch.manual_seed(seed)
    return [ml.SequentialSoleEnergyNN(len(d), n_internal=5, n_layers=2).double()
            for _, d in sorted(store_descriptors().items())]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "s"
    cells = store_cells(11)
    prepare_store(path, cells, store_descriptors())
    return path, cells


@pytest.mark.parametrize("batch_size", [1, 3, 11])
def test_minibatch_gradient_sum_equals_full_batch(store, batch_size):
    path, cells = store
    ds = StoreDataset(path)
    norm = normalization_from_store(ds, offset_energy=True)
    nets = _nets()
    loss_kw = dict(w_energy=1.0, w_gradients=3.0, per_atom=True, w_l2=1e-3)
    trainer = MiniBatchTrainer(nets, ds, norm, batch_size=batch_size, optimizer="sgd", optimizer_kwargs={"lr": 0.1},
                               group_weights=GROUP_WEIGHTS, **loss_kw)
    got = trainer.gradient()
    full = norm.fw(ml.learn_cauldron(cells, store_descriptors(), grad=True, normalize=False))
    w = torch.tensor([c.meta["weight"] * GROUP_WEIGHTS.get(c.meta["group"], 1.0) for c in cells], dtype=torch.float64)
    params = [p for n in nets for p in n.parameters()]
    ref = torch.autograd.grad(energy_loss(nets, full, weights=w, **loss_kw).loss_value, params)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-12, atol=1e-12)


def _trainer(path, checkpoint=None, validation=True):
    ds = StoreDataset(path)
    train, valid = ds.subset(range(8)), ds.subset(range(8, 11))
    norm = normalization_from_store(train, offset_energy=True)
    return MiniBatchTrainer(_nets(), train, norm, validation=valid if validation else None, batch_size=3, seed=5,
                            optimizer="adamw", optimizer_kwargs={"lr": 1e-2},
                            lr_schedule={"name": "StepLR", "step_size": 1, "gamma": 0.7}, w_gradients=1.0,
                            checkpoint=checkpoint)


def test_resumed_run_equals_uninterrupted(store, tmp_path):
    path, _ = store
    full = _trainer(path)
    hist = full.run(4, summary=False)
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    assert {"loss", "lr", "energy_rmse_valid", "force_rmse_valid"} <= set(hist[-1])
    np.testing.assert_allclose([r["lr"] for r in hist], [1e-2 * 0.7**k for k in range(4)], rtol=1e-12)
    first = _trainer(path, checkpoint=tmp_path / "c.pt")
    first.run(2, summary=False)
    resumed = _trainer(path, checkpoint=tmp_path / "c.pt")
    assert resumed.resumed_from == 2 and resumed.sampler.epoch == 2
    resumed.run(4, summary=False)
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in hist]


def test_training_lowers_the_loss_and_batches_differ_by_seed(store):
    path, _ = store
    t = _trainer(path, validation=False)
    hist = t.run(6, summary=False)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert t.sampler.order(0).tolist() != t.sampler.order(1).tolist()
    assert sorted(t.sampler.order(3).tolist()) == list(range(8))


def test_plateau_schedule_steps_on_the_validation_error(store):
    path, _ = store
    ds = StoreDataset(path)
    t = MiniBatchTrainer(_nets(), ds.subset(range(8)), normalization_from_store(ds), validation=ds.subset([8, 9]),
                         batch_size=4, optimizer="sgd", optimizer_kwargs={"lr": 1e-6},
                         lr_schedule={"name": "ReduceLROnPlateau", "patience": 0, "factor": 0.5, "threshold": 0.5})
    hist = t.run(3, summary=False)
    assert hist[-1]["lr"] == 0.5e-6 and hist[0]["lr"] == 1e-6   # no 50 % better validation error: the rate is cut


def test_bad_input(store, tmp_path):
    path, _ = store
    ds = StoreDataset(path)
    norm = normalization_from_store(ds)
    with pytest.raises(ValueError, match="optimizer: 'lbfgs' needs the full-batch loss"):
        MiniBatchTrainer(_nets(), ds, norm, optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr_schedule: unknown scheduler 'nope'"):
        MiniBatchTrainer(_nets(), ds, norm, lr_schedule={"name": "nope"})
    with pytest.raises(ValueError, match="batch_size"):
        MiniBatchTrainer(_nets(), ds, norm, batch_size=0)
    with pytest.raises(ValueError, match="networks: 1 networks"):
        MiniBatchTrainer(_nets()[:1], ds, norm)
    (tmp_path / "x.pt").write_bytes(b"")
    t = MiniBatchTrainer(_nets(), ds, norm)
    t.save_checkpoint(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="holds a Adam state"):
        MiniBatchTrainer(_nets(), ds, norm, optimizer="sgd", optimizer_kwargs={"lr": 1}, checkpoint=tmp_path / "c.pt")


def test_job_file_stage_reuses_the_store(tmp_path, monkeypatch):
    from support import lj_cells

    from miniff.fit.jobs import run_job_file
    from miniff.io import write_cells
    from miniff.ml.serialize import load_potentials

    write_cells(lj_cells(10, seed=1), tmp_path / "data.extxyz")
    job = tmp_path / "job.yml"
    job.write_text(
        "fit-minibatch:\n"
        "  init: {seed: 0}\n"
        "  prepare:\n"
        "    fn_cells: data.extxyz\n"
        "    cutoff: 2.5\n"
        "    default_descriptor_kwargs: {n: 3, three_point: false}\n"
        "    nn_kwargs: {n_internal: 4, n_layers: 2}\n"
        "    test_set: 2\n"
        "    store: fit.store\n"
        "    batch_size: 4\n"
        "    shuffle_seed: 3\n"
        "    optimizer: adam\n"
        "    optimizer_kwargs: {lr: 0.01}\n"
        "    lr_schedule: {name: ExponentialLR, gamma: 0.9}\n"
        "    checkpoint: fit.ckpt\n"
        "  run: {n_epochs: 3, save_fn: learn.pt, summary: false}\n")
    monkeypatch.chdir(tmp_path)
    wf = run_job_file(job)[0]
    assert wf.store_report.computed == 10 and wf.epoch == 3 and len(wf.history) == 3
    assert (tmp_path / "learn.pt").exists() and (tmp_path / "fit.ckpt").exists()
    potentials = load_potentials(tmp_path / "learn.pt")
    assert [p.tag for p in potentials] == ["Ar"]
    again = run_job_file(job)[0]
    assert again.store_report.computed == 0 and again.store_report.reused == 10
    assert again.trainer.resumed_from == 3
