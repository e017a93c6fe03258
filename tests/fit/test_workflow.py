"""FitWorkflow: Lennard-Jones recovery, checkpoints that resume, the log file, per-group errors."""

import json
import os

import numpy as np
import pytest
import torch
from support import LJ_RC, lj_cells, radial_basis

from miniff import ml_util

RC = LJ_RC  # the cutoff of the Lennard-Jones cells (Å)


@pytest.fixture(scope="module")
def lj_data():
    return lj_cells(60, seed=1)


def test_lj_fit_recovers_forces(lj_data, tmp_path):
    # A linear model on a Gaussian radial basis is a pair potential: it must reproduce LJ forces closely.
    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(lj_data, descriptors=radial_basis(), forces=True, test_set=0.25, nn_kwargs={"n_layers": 1},
               closure_kwargs={"w_gradients": 10.0})
    wf.run(n_epochs=6, save=True, save_fn=str(tmp_path / "lj.pt"), progress=False)
    pred = wf.predict("test")
    ref = pred["forces_ref"]
    rmse = np.sqrt(np.mean((pred["forces_pred"] - ref) ** 2))
    assert rmse < 0.01 * ref.std(), (rmse, ref.std())
    # the saved potential evaluates the same forces through the kernel (independent of the training path)
    pots = ml_util.load_potentials(tmp_path / "lj.pt")
    test_cells = wf.cells[-len(pred["energy_ref"]):]
    from miniff.kernel import NeighborWrapper

    f_pot = np.concatenate([-NeighborWrapper(c, cutoff=RC).grad(pots) for c in test_cells]).reshape(-1)
    np.testing.assert_allclose(f_pot, pred["forces_pred"], atol=1e-8 * ref.std())
    # the record of the last epoch agrees with predict()
    assert wf.history[-1]["force_rmse_valid"] == pytest.approx(rmse, rel=1e-8)
    # a new fit can take its descriptors from the saved potentials, and separate validation files
    from miniff.io import write_cells

    write_cells(lj_data[:5], tmp_path / "valid.extxyz")
    wf2 = ml_util.FitWorkflow()
    wf2.prepare(lj_data[5:20], load=str(tmp_path / "lj.pt"), test_set=str(tmp_path / "valid.extxyz"))
    assert [d.parameters["r_sphere"] for d in wf2.descriptors["Ar"]] == \
        pytest.approx([d.parameters["r_sphere"] for d in wf.descriptors["Ar"]])
    assert wf2.datasets["learn"].n_samples == 15 and wf2.datasets["test"].n_samples == 5


def _fit(cells, ckpt, n_epochs, after_epoch=None, optimizer=None, log_file=None):
    wf = ml_util.FitWorkflow(seed=3)
    closure_kwargs = {"w_gradients": 1.0, "optimizer_kwargs": {"max_iter": 4}}
    if optimizer == "compact_lbfgs":   # its curvature history must survive the resume too
        closure_kwargs.update(optimizer=optimizer, optimizer_kwargs={"max_iter": 4, "history_size": 3})
    elif optimizer == "bfgs":   # and its dense inverse Hessian
        closure_kwargs.update(optimizer=optimizer, optimizer_kwargs={"max_iter": 4})
    elif optimizer is not None:
        closure_kwargs.update(optimizer=optimizer, optimizer_kwargs={"lr": 1e-2})
    wf.prepare(cells, descriptors=radial_basis(6), forces=True, test_set=3, checkpoint=ckpt,
               nn_kwargs={"n_internal": 5, "n_layers": 2}, closure_kwargs=closure_kwargs)
    wf.run(n_epochs=n_epochs, checkpoint_every=2, save=False, progress=False, after_epoch=after_epoch,
           restore_best=False, log_file=log_file, epoch_size=5 if optimizer == "adam" else 1)
    return wf


@pytest.mark.parametrize("optimizer", [None, "adam", "compact_lbfgs", "bfgs"])
def test_resume_continues_from_checkpoint(tmp_path, optimizer):
    cells = lj_cells(10, seed=2)
    reference = _fit(cells, tmp_path / "ref.ckpt", 4, optimizer=optimizer)

    def crash(wf):
        if wf.epoch == 3:
            raise KeyboardInterrupt  # a kill after epoch 3, whose checkpoint (every 2) was never written

    ckpt, log = tmp_path / "fit.ckpt", tmp_path / "fit.jsonl"
    with pytest.raises(KeyboardInterrupt):
        _fit(cells, ckpt, 4, after_epoch=crash, optimizer=optimizer, log_file=log)
    assert ml_util.load_checkpoint(ckpt)["epoch"] == 2
    resumed = _fit(cells, ckpt, 4, optimizer=optimizer, log_file=log)
    assert resumed.resumed_from == 2 and resumed.epoch == 4
    for a, b in zip(reference.nn, resumed.nn, strict=True):
        for (ka, ta), (_kb, tb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            torch.testing.assert_close(ta, tb, rtol=1e-9, atol=1e-12, msg=ka)
    sa, sb = reference.closure.optimizer.state_dict(), resumed.closure.optimizer.state_dict()
    for key in sa["state"][0]:
        va, vb = sa["state"][0][key], sb["state"][0][key]
        if isinstance(va, torch.Tensor):
            torch.testing.assert_close(va, vb, rtol=1e-9, atol=1e-12)
        elif not isinstance(va, list):
            assert va == pytest.approx(vb, rel=1e-9), key
    # the log describes one history: epochs 0..4 once each, epoch 3 from the resumed run
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert epochs == [0, 1, 2, 3, 4]
    cols = ml_util.read_fit_log(log)
    np.testing.assert_allclose(cols["loss"][-1], reference.history[-1]["loss"], rtol=1e-8)
    # a checkpoint never silently continues a different fit
    with pytest.raises(ValueError, match="data split"):
        ml_util.FitWorkflow().prepare(cells, descriptors=radial_basis(6), forces=True, test_set=3, checkpoint=ckpt,
                                      split_seed=5)
    with pytest.raises(ValueError, match="descriptors"):
        ml_util.FitWorkflow().prepare(cells, descriptors=radial_basis(5), forces=True, test_set=3, checkpoint=ckpt)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.ckpt"
    ml_util.atomic_torch_save({"format": "miniff-fit-checkpoint-1", "epoch": 1}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt  # killed in the middle of writing

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        ml_util.atomic_torch_save({"format": "miniff-fit-checkpoint-1", "epoch": 2}, path)
    monkeypatch.undo()
    assert ml_util.load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.ckpt"]  # no temporary file left behind


def test_log_groups_early_stopping_and_convergence(lj_data, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(lj_data[:24], descriptors=radial_basis(6), forces=True, test_set=0.25, nn_kwargs={"n_layers": 1},
               closure_kwargs={"w_gradients": 1.0, "convergence": {"energy_rmse": 1e6}})
    wf.run(n_epochs=5, save=False, progress=True, log_file=log)
    assert wf.stop_reason == "converged" and wf.epoch == 1
    assert "meV/at" in capsys.readouterr().err  # the progress bar shows the current errors
    rec = json.loads(log.read_text().splitlines()[-1])
    for key in ("epoch", "time", "loss", "loss_valid", "energy_rmse", "energy_rmse_valid", "force_rmse",
                "force_rmse_valid", "energy_max", "force_max_valid", "group_a_energy_rmse", "group_b_force_rmse"):
        assert key in rec, key
    # per-group RMSEs recombine into the overall validation RMSE
    test_groups = wf.cell_groups["test"]
    n = {g: test_groups.count(g) for g in ("a", "b")}
    combined = np.sqrt(sum(n[g] * rec[f"group_{g}_energy_rmse"] ** 2 for g in n) / sum(n.values()))
    assert combined == pytest.approx(rec["energy_rmse_valid"], rel=1e-10)
    # early stopping: gradient ascent never improves after epoch 0
    wf2 = ml_util.FitWorkflow(seed=0)
    wf2.prepare(lj_data[:24], descriptors=radial_basis(6), test_set=0.25, nn_kwargs={"n_layers": 1},
                closure_kwargs={"optimizer": _Ascent})
    wf2.run(n_epochs=50, save=False, progress=False, early_stopping=3)
    assert wf2.stop_reason == "early stopping" and wf2.epoch == 3
    # an optimizer that reached its own tolerance ends the fit (no more empty epochs)
    wf3 = ml_util.FitWorkflow(seed=0)
    wf3.prepare(lj_data[:24], descriptors=radial_basis(6), test_set=0.25, nn_kwargs={"n_layers": 1},
                closure_kwargs={"optimizer": "compact_lbfgs", "optimizer_kwargs": {"tolerance_grad": 1e6}})
    wf3.run(n_epochs=50, save=False, progress=False)
    assert wf3.stop_reason == "optimizer: tolerance_grad" and wf3.epoch == 1


class _Ascent(torch.optim.Optimizer):
    """Steps up the gradient: every epoch makes the loss worse."""

    def __init__(self, params):
        super().__init__(params, {})

    def step(self, closure):
        loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(p.grad, alpha=1e-3)
        return loss


def test_fit_argument_errors(lj_data):
    wf = ml_util.FitWorkflow()
    with pytest.raises(ValueError, match="w_gradients"):
        wf.prepare(lj_data[:8], descriptors=radial_basis(4), closure_kwargs={"w_gradients": 1.0})
    with pytest.raises(ValueError, match="test_set"):
        wf.prepare(lj_data[:8], descriptors=radial_basis(4), test_set=8)
    with pytest.raises(KeyError, match="group_weights"):
        wf.prepare(lj_data[:8], descriptors=radial_basis(4), group_weights={"nope": 2.0})
    with pytest.raises(ValueError, match="cuda"):
        wf.prepare(lj_data[:8], descriptors=radial_basis(4), cuda=True)
    with pytest.raises(ValueError, match="descriptor_recipe"):
        wf.prepare(lj_data[:8], descriptor_recipe="soap")
    with pytest.raises(ValueError, match="dtype"):
        ml_util.FitWorkflow(dtype="int8")
    with pytest.raises(RuntimeError, match="prepare"):
        ml_util.FitWorkflow().run()


def test_lsp_recipe_fits_and_the_potential_matches_the_training_path(lj_data):
    """``descriptor_recipe="lsp"``: PyFit-FF's descriptors, the loss falls, and the built potential (kernel
    descriptors + network) gives the energies the training path (dataset + forward_cauldron) predicts."""
    from miniff.kernel import NeighborWrapper

    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(lj_data[:24], cells_order=None, descriptor_recipe="lsp", cutoff=RC, test_set=4,
               default_descriptor_kwargs={"r0": [1.0, 1.5, 2.0], "sigma": 0.5, "orders": [0, 1, 2]},
               normalization_kwargs={"energy_spread": "per_atom"})
    assert [d.family.tag for d in wf.descriptors["Ar"]] == ["local structural parameter"] * 9
    wf.run(n_epochs=3, save=False, progress=False)
    losses = [h["loss"] for h in wf.history]
    assert losses[-1] < losses[0]
    (pot,) = wf.build_potentials()
    predicted = wf.predict("test")["energy_pred"]
    for k, cell in enumerate(lj_data[20:24]):
        nw = NeighborWrapper(cell, cutoff=RC)
        assert nw.total(pot) / len(cell.values) == pytest.approx(predicted[k], rel=1e-9, abs=1e-12)


def test_torch_threads_auto_and_the_default_radial_functions(lj_data, monkeypatch):
    from miniff.fit import distributed
    from miniff.fit.prepare import DEFAULT_RADIAL
    from miniff.fit.recipes import _min_pair_distances

    seen = []
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(distributed, "available_cores", lambda: 2)
    try:
        for forces, load in ((True, 0.5), (True, 1.0), (False, 0.0)):
            monkeypatch.setattr(distributed.os, "getloadavg", lambda load=load: (load, load, load))
            wf = ml_util.FitWorkflow(seed=0)
            wf.prepare(lj_data[:8], forces=forces, test_set=2, cutoff=RC,
                       default_descriptor_kwargs={"three_point": False},
                       nn_kwargs={"n_internal": 4}, closure_kwargs={"optimizer_kwargs": {"max_iter": 10}})
            wf.run(n_epochs=1, progress=False, summary=False,
                   after_epoch=lambda w: seen.append(torch.get_num_threads()))
            assert torch.get_num_threads() == 2   # restored
        # "auto": torch's setting (here 2) for a force fit on a machine loaded below half its cores, else one
        # thread; one thread for an energy-only fit
        assert seen == [2, 1, 1]
        with pytest.raises(ValueError, match="torch_threads"):
            wf.run(n_epochs=2, progress=False, summary=False, torch_threads="all")
    finally:
        torch.set_num_threads(previous)
    # the default radial functions: n Gaussians per pair, centred evenly from left * (shortest distance) with
    # spacing h towards the cutoff, eta = 1 / (2 h^2)
    d_min = _min_pair_distances(wf.cells_nw, RC)["Ar-Ar"]
    n, r0 = DEFAULT_RADIAL["n"], DEFAULT_RADIAL["left"] * d_min
    h = (RC - r0) / n
    radial = wf.descriptors["Ar"]
    assert len(radial) == n
    np.testing.assert_allclose([d.parameters["r_sphere"] for d in radial], r0 + h * np.arange(n))
    np.testing.assert_allclose([d.parameters["eta"] for d in radial], 1 / (2 * h * h))
