"""The device of a full-batch fit (``FitWorkflow.prepare(device=...)``): the CPU through the device code path,
every dataset tensor moved, a clear error without CUDA, and GPU = CPU in float64 when torch sees a GPU."""

import numpy as np
import pytest
import torch
from support import lj_cells

from miniff import ml
from miniff.fit.distributed import batch_to_device
from miniff.ml.jacobian import SparseJacobian
from miniff.ml_util import FitWorkflow

SMALL = dict(cutoff=2.5, default_descriptor_kwargs={"n": 3, "three_point": False},
             nn_kwargs={"n_internal": 4, "n_layers": 2}, test_set=2, forces=True)


@pytest.fixture(scope="module")
def cells():
    return lj_cells(8, seed=3)


def _fit(cells, folder, device=None, **kwargs):
    """A 2-epoch fit writing ``folder/<device>.ckpt`` and ``folder/<device>.pt``."""
    folder.mkdir(exist_ok=True)
    wf = FitWorkflow(seed=0)
    extra = {} if device is None else {"device": device}
    wf.prepare(cells, checkpoint=str(folder / f"{device}.ckpt"), **SMALL, **extra, **kwargs)
    wf.run(n_epochs=2, summary=False, progress=False, save_fn=str(folder / f"{device}.pt"))
    return wf


def _tensors(obj, prefix=""):
    """Every tensor field (name, tensor) of a dataset container or Jacobian, recursively."""
    for key, value in vars(obj).items():
        if isinstance(value, torch.Tensor):
            yield prefix + key, value
        elif isinstance(value, SparseJacobian):
            yield from _tensors(value, prefix + key + ".")


def test_fullbatch_fit_on_cpu_device_equals_default(cells, tmp_path):
    """``device="cpu"`` goes through ``_datasets_to_device`` and the device-aware loss: the same losses, networks
    on the CPU, checkpoint and saved potentials plain CPU tensors."""
    ref = _fit(cells, tmp_path / "plain")
    ref_w = _fit(cells, tmp_path / "weighted", group_weights={"a": 2.0})
    wf = _fit(cells, tmp_path, "cpu", group_weights={"a": 2.0})
    assert wf.device == torch.device("cpu") and ref.device == torch.device("cpu")
    assert [r["loss"] for r in wf.history] == [r["loss"] for r in ref_w.history]
    assert [r["loss"] for r in ref.history] != [r["loss"] for r in wf.history]   # the weights were used
    assert all(p.device.type == "cpu" for n in wf.nn for p in n.parameters())
    state = torch.load(tmp_path / "cpu.ckpt", weights_only=False)
    flat = [t for n in state["networks"] for t in n.values()]
    assert flat and all(t.device.type == "cpu" for t in flat)


def test_batch_to_device_moves_every_tensor(cells):
    """Every tensor of a dataset (energies, masks, forces, stresses, volumes, features, strain derivatives, the
    Jacobian's indices and values) is moved; the original stays where it was.  The ``meta`` device stands in for
    a GPU on a machine without one."""
    wf = FitWorkflow(seed=0)
    wf.prepare(cells, **SMALL)
    data = ml.learn_cauldron(wf.cells_nw, wf.descriptors, grad=True, normalize=False, stress=True)
    moved = batch_to_device(data, "meta")
    parts = [(data.per_cell_dataset, moved.per_cell_dataset)] + list(
        zip(data.per_point_datasets, moved.per_point_datasets, strict=True))
    names = set()
    for old, new in parts:
        old_t, new_t = dict(_tensors(old)), dict(_tensors(new))
        assert set(old_t) == set(new_t)
        assert all(t.device.type == "meta" for t in new_t.values())
        assert all(t.device.type == "cpu" for t in old_t.values())
        assert all(new_t[k].shape == old_t[k].shape and new_t[k].dtype == old_t[k].dtype for k in old_t)
        names |= set(new_t)
    assert {"energy", "energy_g", "stress", "volume", "features", "features_strain", "features_g.values_edc",
            "features_g.ptr_s"} <= names
    assert batch_to_device(data, "cpu") is data


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees a CUDA GPU")
def test_cuda_without_gpu_is_a_clear_error(cells):
    with pytest.raises(ValueError, match="device='cuda': torch sees no CUDA GPU"):
        FitWorkflow(seed=0).prepare(cells, device="cuda", **SMALL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fullbatch_gpu_equals_cpu_in_float64(cells, tmp_path):
    from miniff.ml.serialize import load_potentials

    cpu, gpu = _fit(cells, tmp_path, "cpu"), _fit(cells, tmp_path, "cuda")
    assert all(p.device.type == "cuda" for n in gpu.nn for p in n.parameters())
    np.testing.assert_allclose([r["loss"] for r in gpu.history], [r["loss"] for r in cpu.history], rtol=1e-10)
    for a, b in zip(gpu.nn, cpu.nn, strict=True):
        for x, y in zip(a.parameters(), b.parameters(), strict=True):
            np.testing.assert_allclose(x.detach().cpu().numpy(), y.detach().numpy(), rtol=1e-10, atol=1e-12)
    state = torch.load(tmp_path / "cuda.ckpt", weights_only=False)
    assert all(t.device.type == "cpu" for n in state["networks"] for t in n.values())
    pots = load_potentials(tmp_path / "cuda.pt")
    assert all(p.device.type == "cpu" for pot in pots for p in pot.nn.parameters())
