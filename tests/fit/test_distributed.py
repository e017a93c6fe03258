"""Training across processes: 2 gloo ranks (spawned on 127.0.0.1 by ``tests/support_distributed.py``) give the
loss history of 1 rank for the same global batches (mini-batch Adam, full-batch compact L-BFGS), a run stopped on
2 ranks resumes on 1, only rank 0 writes, and the device and sampler rules."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support_store import store_cells, store_descriptors

import miniff
from miniff.fit.distributed import (
    DistContext,
    batch_to_device,
    current_context,
    init_distributed,
    resolve_device,
    state_to_cpu,
    threads_per_rank,
)
from miniff.store import EpochSampler, prepare_store

WORKER = Path(__file__).resolve().parents[1] / "support_distributed.py"
ROOT = Path(__file__).resolve().parents[2]
#: Where the tested miniff was imported from (the source tree built in place, or an installed package): the
#: subprocesses import the same one.
PACKAGE_PARENT = Path(miniff.__file__).resolve().parent.parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(tmp, world, mode="minibatch", store=None, epochs=3, checkpoint=None, batch_size=3, test_set=3):
    out = tmp / f"{mode}-{world}-{epochs}-{batch_size}-{test_set}-{checkpoint is not None}"
    args = ["--world", str(world), "--port", str(_free_port()), "--mode", mode, "--out", str(out), "--epochs",
            str(epochs), "--batch-size", str(batch_size), "--test-set", str(test_set)]
    if store is not None:
        args += ["--store", str(store)]
    if checkpoint is not None:
        args += ["--checkpoint", str(checkpoint)]
    return args, out


def _run(tmp, world, **kwargs):
    """Run the worker on ``world`` ranks: one rank in this process, several spawned by a subprocess."""
    args, out = _args(tmp, world, **kwargs)
    if world == 1:
        from support_distributed import parse_args, run_rank

        return run_rank(parse_args(args)), out, ""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), str(ROOT / "tests")]), OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, str(WORKER)] + args, cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text()), out, proc.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("dstore") / "s"
    prepare_store(path, store_cells(11), store_descriptors())
    return path


def test_minibatch_two_ranks_equal_one_only_rank0_writes_and_resume_on_one(store, tmp_path):
    """2 ranks for 2 epochs (checkpointed) = the first 2 epochs of 1 rank; resumed on 1 rank to 4 epochs = 1 rank
    throughout; rank 1 writes nothing."""
    one, out1, _ = _run(tmp_path, 1, store=store, epochs=4)
    assert len(one["loss"]) == 4 and one["loss"][-1] < one["loss"][0]
    ckpt = tmp_path / "run.ckpt"
    two, out2, stdout = _run(tmp_path, 2, store=store, epochs=2, checkpoint=ckpt)
    np.testing.assert_allclose(two["loss"], one["loss"][:2], rtol=1e-10, atol=0)
    np.testing.assert_allclose(two["valid"], one["valid"][:2], rtol=1e-10, atol=0)
    assert sorted(p.name for p in (out2 / "rank0").iterdir()) == ["log.jsonl", "nets.pt"]
    assert list((out2 / "rank1").iterdir()) == []          # rank 1 wrote nothing
    assert stdout.count("mini-batch fit:") == 1            # one summary, printed by rank 0
    assert "ran on 2 ranks x 1 torch thread, cpu" in two["summary"]
    assert len((out2 / "rank0" / "log.jsonl").read_text().splitlines()) == 2
    resumed, out3, _ = _run(tmp_path, 1, store=store, epochs=4, checkpoint=ckpt)
    assert resumed["resumed_from"] == 2
    np.testing.assert_allclose(resumed["loss"], one["loss"], rtol=1e-10, atol=0)
    a = torch.load(out1 / "rank0" / "nets.pt", weights_only=True)
    b = torch.load(out3 / "rank0" / "nets.pt", weights_only=True)
    for sa, sb in zip(a, b, strict=True):
        for k in sa:
            np.testing.assert_allclose(sb[k].numpy(), sa[k].numpy(), rtol=1e-9, atol=1e-12)


def test_minibatch_batches_smaller_than_the_ranks(store, tmp_path):
    """Batches of 1 structure: rank 1 has an empty part of every batch and still takes every step."""
    one, _, _ = _run(tmp_path, 1, store=store, epochs=2, batch_size=1)
    two, _, _ = _run(tmp_path, 2, store=store, epochs=2, batch_size=1)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-10, atol=0)


def _assert_same_fit(two, one, n_records):
    """Loss histories, every per-epoch metric, normalisation and summary table of two runs agree to 1e-10."""
    np.testing.assert_allclose(two["loss"], one["loss"][:n_records], rtol=1e-10, atol=0)
    np.testing.assert_allclose(two["valid"], one["valid"][:n_records], rtol=1e-10, atol=0)
    for a, b in zip(two["records"], one["records"][:n_records], strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-10, atol=1e-14)
    for key, value in one["normalization"].items():
        np.testing.assert_allclose(_flat(two["normalization"][key]), _flat(value), rtol=1e-12, atol=1e-14, err_msg=key)


def _flat(value):
    """Nested lists of numbers (or None) as one float array."""
    if value is None:
        return np.zeros(0)
    if isinstance(value, list):
        return np.concatenate([_flat(v) for v in value] or [np.zeros(0)])
    return np.asarray([value], dtype=float)


def test_fullbatch_lbfgs_two_ranks_equal_one_and_resume_on_one(tmp_path):
    """Each of 2 ranks computes the descriptors of its shard only (4 + 4 training, 2 + 1 validation cells); the
    fit, its metrics, normalisation, summary and saved potentials equal 1 rank's; resumed on 1 rank."""
    from miniff.ml.serialize import load_potentials

    one, out1, _ = _run(tmp_path, 1, mode="fullbatch", epochs=3)
    assert len(one["loss"]) == 4 and one["loss"][-1] < one["loss"][0]     # epoch 0 and three epochs
    assert one["held"] == [{"learn": 8, "test": 3, "lists": 11}]
    two3, out23, _ = _run(tmp_path, 2, mode="fullbatch", epochs=3)
    assert two3["held"] == [{"learn": 4, "test": 2, "lists": 6}, {"learn": 4, "test": 1, "lists": 5}]
    _assert_same_fit(two3, one, 4)
    for (la, a), (lb, b) in zip(two3["table"], one["table"], strict=True):   # the summary of all cells
        assert la == lb and a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-10, atol=1e-14)
    for pa, pb in zip(load_potentials(out23 / "rank0" / "learn.pt"), load_potentials(out1 / "rank0" / "learn.pt"),
                      strict=True):
        np.testing.assert_allclose(pa.descriptor_range, pb.descriptor_range, rtol=1e-12)   # reduced over shards
        for ta, tb in zip(pa.nn.state_dict().values(), pb.nn.state_dict().values(), strict=True):
            np.testing.assert_allclose(ta.numpy(), tb.numpy(), rtol=1e-9, atol=1e-12)
    ckpt = tmp_path / "fb.ckpt"
    two, out2, _ = _run(tmp_path, 2, mode="fullbatch", epochs=2, checkpoint=ckpt)
    _assert_same_fit(two, one, 3)
    assert "ran on 2 ranks" in two["summary"]
    assert sorted(p.name for p in (out2 / "rank0").iterdir()) == ["learn.pt", "log.jsonl"]
    assert list((out2 / "rank1").iterdir()) == []
    resumed, _, _ = _run(tmp_path, 1, mode="fullbatch", epochs=3, checkpoint=ckpt)
    assert resumed["resumed_from"] == 2
    np.testing.assert_allclose(resumed["loss"], one["loss"], rtol=1e-10, atol=0)


def test_fullbatch_rank_without_validation_cells(tmp_path):
    """One validation cell for 2 ranks: rank 1's validation part is empty and the fit still equals 1 rank's."""
    one, _, _ = _run(tmp_path, 1, mode="fullbatch", epochs=1, test_set=1)
    two, _, _ = _run(tmp_path, 2, mode="fullbatch", epochs=1, test_set=1)
    assert [h["test"] for h in two["held"]] == [1, 0]
    _assert_same_fit(two, one, 2)


def test_fullbatch_bad_cell_on_one_rank_fails_on_every_rank(tmp_path):
    """A cell with coincident atoms in rank 1's shard (cells 4-7): rank 1 raises the descriptor error, rank 0 a
    RuntimeError saying another rank failed, at once (no rank left waiting in a reduction)."""
    _, out, _ = _run(tmp_path, 2, mode="badcell", epochs=1)
    assert (out / "rank1" / "error.txt").read_text().startswith("CoincidentAtomsError")
    assert "another rank failed" in (out / "rank0" / "error.txt").read_text()


def test_sampler_global_batches_split_across_ranks():
    ref = list(EpochSampler(10, 4, seed=7))
    for world in (2, 3):
        parts = [list(EpochSampler(10, 4, seed=7, rank=r, world_size=world)) for r in range(world)]
        for k, batch in enumerate(ref):
            assert sum((p[k] for p in parts), []) == batch
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(10, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size"):
        EpochSampler(10, 4, world_size=0)


def test_context_of_one_process_and_shards():
    ctx = current_context("cpu")
    assert ctx.world_size == 1 and ctx.is_main and not ctx.distributed
    assert init_distributed("cpu") == ctx
    np.testing.assert_array_equal(ctx.all_sum([1.0, 2.0]), [1.0, 2.0])
    two = DistContext(rank=1, world_size=2)
    assert two.shard(5).tolist() == [3, 4] and two.main_only("log") is None
    assert DistContext(world_size=2).shard(5).tolist() == [0, 1, 2]
    assert two.describe(1) == "2 ranks x 1 torch thread, cpu"
    assert threads_per_rank(ctx, 1) == 1


def test_env_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK"):
        init_distributed("cpu")


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "gpu", 3):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    state = state_to_cpu({"a": [torch.ones(2)], "b": 3})
    assert state["b"] == 3 and state["a"][0].device.type == "cpu"


def test_cpu_device_goes_through_the_device_path(store):
    """``device="cpu"`` trains through batch_to_device and the same loss as the default."""
    from miniff.fit.minibatch import MiniBatchTrainer
    from miniff.store import StoreDataset, normalization_from_store

    ds = StoreDataset(store)
    norm = normalization_from_store(ds, offset_energy=True)
    grads = []
    for device in (None, "cpu"):
        torch.manual_seed(1)
        nets = [torch.nn.Sequential(torch.nn.Linear(len(d), 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)).double()
                for _, d in sorted(store_descriptors().items())]
        t = MiniBatchTrainer(nets, ds, norm, batch_size=4, w_gradients=1.0, device=device)
        assert t.device == torch.device("cpu")
        grads.append(t.gradient())
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)
    batch = t.collate([ds[0], ds[1]])
    assert batch_to_device(batch.dataset, "cpu") is batch.dataset


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_equals_cpu_in_float64(store):
    from miniff.fit.minibatch import MiniBatchTrainer
    from miniff.store import StoreDataset, normalization_from_store

    ds = StoreDataset(store)
    norm = normalization_from_store(ds, offset_energy=True)
    out = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(1)
        nets = [torch.nn.Sequential(torch.nn.Linear(len(d), 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)).double()
                for _, d in sorted(store_descriptors().items())]
        t = MiniBatchTrainer(nets, ds, norm, batch_size=4, w_gradients=1.0, device=device,
                             optimizer_kwargs={"lr": 1e-2})
        hist = t.run(2, summary=False)
        out[device] = ([r["loss"] for r in hist], [p.detach().cpu() for p in t.parameters()])
    np.testing.assert_allclose(out["cuda"][0], out["cpu"][0], rtol=1e-10)
    for a, b in zip(out["cuda"][1], out["cpu"][1], strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def test_job_file_under_torchrun(tmp_path):
    """``torchrun --nproc-per-node 2 -m miniff job.yml`` runs a fit-minibatch stage: each rank prepares half of the
    store and streams the normalisation statistics of half of it, one summary (rank 0), the files written once;
    the loss history and the saved potential equal those of the same job in one process."""
    from support import lj_cells

    from miniff.io import write_cells
    from miniff.ml.serialize import load_potentials

    write_cells(lj_cells(8, seed=1), tmp_path / "data.extxyz")
    (tmp_path / "job.yml").write_text(
        "fit-minibatch:\n"
        "  init: {seed: 0}\n"
        "  prepare: {fn_cells: data.extxyz, cutoff: 2.5, default_descriptor_kwargs: {n: 3, three_point: false},\n"
        "            nn_kwargs: {n_internal: 4, n_layers: 2}, test_set: 2, store: fit.store, batch_size: 3,\n"
        "            checkpoint: fit.ckpt}\n"
        "  run: {n_epochs: 2, save_fn: learn.pt, log_file: fit.jsonl}\n")
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT), OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "miniff",
                           "job.yml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("mini-batch fit: 2 epochs") == 1
    assert "ran on 2 ranks x 1 torch thread, cpu" in proc.stdout
    assert " eV/atom" in proc.stdout.split("last epoch:")[1]  # the errors carry their units
    assert len((tmp_path / "fit.jsonl").read_text().splitlines()) == 2
    assert [p.tag for p in load_potentials(tmp_path / "learn.pt")] == ["Ar"]
    assert (tmp_path / "fit.ckpt").exists()
    from miniff.store import DescriptorStore

    with DescriptorStore(tmp_path / "fit.store", readonly=True) as st:   # each rank prepared its 4 cells
        assert sorted(st.index_names()) == ["fit-minibatch", "fit-minibatch.rank0", "fit-minibatch.rank1"]
        ranks = st.index("fit-minibatch.rank0")["keys"] + st.index("fit-minibatch.rank1")["keys"]
        assert ranks == st.index("fit-minibatch")["keys"] and len(ranks) == 8
        assert st.n_records == 16                                         # 8 descriptor + 8 target records
    one = tmp_path / "one"   # the same job in one process
    one.mkdir()
    for name in ("data.extxyz", "job.yml"):
        (one / name).write_bytes((tmp_path / name).read_bytes())
    proc = subprocess.run([sys.executable, "-m", "miniff", "job.yml"], cwd=one, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [[json.loads(line)["loss"] for line in (d / "fit.jsonl").read_text().splitlines()]
              for d in (tmp_path, one)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-10, atol=0)
    (two_pot,), (one_pot,) = load_potentials(tmp_path / "learn.pt"), load_potentials(one / "learn.pt")
    for key, value in one_pot.state_dict().items():   # networks, normalisation and descriptor ranges
        got = two_pot.state_dict()[key]
        if torch.is_tensor(value):
            np.testing.assert_allclose(got.numpy(), value.numpy(), rtol=1e-9, atol=1e-12, err_msg=key)


def test_share_loss_parts_add_up_to_energy_loss():
    """The shares of two disjoint parts (global denominators) add up to energy_loss on the whole set, value and
    gradient; the L2 term is carried once."""
    from miniff import ml
    from miniff.fit.closures import energy_loss, share_loss

    cells = store_cells(7)
    data = ml.learn_cauldron(cells, store_descriptors(), grad=True, normalize=False)
    torch.manual_seed(0)
    nets = [ml.SequentialSoleEnergyNN(len(d), n_internal=3, n_layers=2).double()
            for _, d in sorted(store_descriptors().items())]
    params = [p for n in nets for p in n.parameters()]
    w = torch.tensor([c.meta["weight"] for c in cells], dtype=torch.float64)
    kw = dict(w_energy=1.5, w_gradients=2.0, per_atom=True)
    ref = energy_loss(nets, data, weights=w, w_l2=1e-2, **kw).loss_value
    g_ref = torch.autograd.grad(ref, params)
    has = torch.tensor([c.meta.get("forces") is not None for c in cells])
    counts = torch.tensor([len(c.values) for c in cells], dtype=torch.float64)
    w_total, g_total = float(w.sum()), float((3 * w * counts * has).sum())
    total, grads = 0.0, [torch.zeros_like(p) for p in params]
    for part, l2 in ((torch.arange(0, 3), 1e-2), (torch.arange(3, 7), 0.0)):
        loss = share_loss(nets, data.subset(part), w[part], w_total, g_total, l2=l2, **kw)
        total += float(loss.detach())
        for acc, g in zip(grads, torch.autograd.grad(loss, params), strict=True):
            acc += g
    np.testing.assert_allclose(total, float(ref.detach()), rtol=1e-12)
    for a, b in zip(grads, g_ref, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-14)


def test_error_sums_of_parts_add_up_to_the_metrics_of_the_whole():
    """error_sums of disjoint parts (one of them empty), added (maxima: their maximum), give error_metrics of the
    whole set, groups included, against a brute-force numpy computation of the per-atom energy errors."""
    from miniff import ml
    from miniff.fit.metrics import error_metrics, error_sums, metrics_from_sums

    cells = store_cells(7)
    data = ml.learn_cauldron(cells, store_descriptors(), grad=True, normalize=False)
    torch.manual_seed(0)
    nets = [ml.SequentialSoleEnergyNN(len(d), n_internal=3, n_layers=2).double()
            for _, d in sorted(store_descriptors().items())]
    groups = ["a", "b", "a", "a", "b", "c", "a"]
    whole = error_metrics(nets, data, forces=True, groups=groups)
    total = {}
    for part in (torch.arange(0, 3), torch.arange(0), torch.arange(3, 7)):
        sums = error_sums(nets, data.subset(part), forces=True, groups=[groups[i] for i in part.tolist()],
                          group_names={"a", "b", "c"})
        for k, v in sums.items():
            total[k] = max(total.get(k, 0.0), v) if k.endswith("_max") else total.get(k, 0.0) + v
    merged = metrics_from_sums(total)
    assert merged.keys() == whole.keys()
    for k in whole:
        np.testing.assert_allclose(merged[k], whole[k], rtol=1e-12, err_msg=k)
    with torch.no_grad():
        e = ml.forward_cauldron(nets, data).numpy()[:, 0]
    de = (e - data.per_cell_dataset.energy.numpy()[:, 0]) / np.array([len(c.values) for c in cells])
    np.testing.assert_allclose(merged["energy_rmse"], np.sqrt(np.mean(de**2)), rtol=1e-12)
    np.testing.assert_allclose(merged["group_c_energy_rmse"], abs(de[5]), rtol=1e-12)
