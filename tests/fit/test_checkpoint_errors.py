"""Checkpoints: a clear CheckpointError naming the file and the kind of problem; stale temporary files are
removed on the next start and after a finished run; FitWorkflow.losses as in 0.1.4."""

import os
import pickle
import random
import zipfile

import pytest
import torch
import yaml
from support import lj_cells, radial_basis

from miniff import ml_util
from miniff.fit.checkpoint import CheckpointError, load_checkpoint, remove_stale_temporaries


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _valid(path):
    ml_util.atomic_torch_save({"format": "miniff-fit-checkpoint-1", "epoch": 3}, path)
    return path


def _truncated(path):
    data = _valid(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random(path):
    path.write_bytes(b"\x13" + random.Random(0).randbytes(4095))  # not the first byte of a zip or a pickle


def _empty(path):
    path.write_bytes(b"")


def _text(path):
    path.write_text("epoch: 3\n")


def _malicious(path):
    torch.save({"format": "miniff-fit-checkpoint-1", "payload": _Evil(path.parent / "pwned")}, path)


def _malicious_pickle(path):
    path.write_bytes(pickle.dumps(_Evil(path.parent / "pwned")))


def _other_torch_file(path):
    torch.save(torch.zeros(3), path)


def _zip_garbage(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02garbage")


def _folder(path):
    path.mkdir()


CASES = [
    (_truncated, "corrupt", "damaged or truncated"),
    (_random, "not a checkpoint", "not a checkpoint"),
    (_empty, "not a checkpoint", "not a checkpoint"),
    (_text, "not a checkpoint", "not a checkpoint"),
    (_malicious, "unsafe", "never loaded"),
    (_malicious_pickle, "unsafe", "never loaded"),
    (_other_torch_file, "not a checkpoint", "not a miniff fit checkpoint"),
    (_zip_garbage, "corrupt", "damaged or truncated"),
    (_folder, "folder", "is a folder"),
]


@pytest.mark.parametrize("make, kind, text", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_bad_checkpoints_give_a_clear_error(tmp_path, make, kind, text):
    path = tmp_path / "fit.ckpt"
    make(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert isinstance(info.value, ValueError)
    assert info.value.kind == kind
    assert str(path) in str(info.value) and text in str(info.value), str(info.value)
    assert not (tmp_path / "pwned").exists(), "code from the file was executed"


def test_missing_and_valid_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_checkpoint(tmp_path / "absent.ckpt")
    assert load_checkpoint(_valid(tmp_path / "ok.ckpt"))["epoch"] == 3


def test_stale_temporaries_are_removed(tmp_path):
    ckpt = tmp_path / "fit.ckpt"
    stale = [tmp_path / f".fit.ckpt.{k}abc.tmp" for k in range(9)]
    for p in stale:
        p.write_bytes(b"partial")
    other = tmp_path / ".other.ckpt.x.tmp"
    other.write_bytes(b"not ours")
    assert sorted(remove_stale_temporaries(ckpt)) == sorted(stale)
    assert other.exists() and not any(p.exists() for p in stale)
    assert remove_stale_temporaries(tmp_path / "absent" / "fit.ckpt") == []


@pytest.fixture(scope="module")
def cells():
    return lj_cells(12, seed=5)


def _prepared(cells, ckpt):
    wf = ml_util.FitWorkflow(seed=1)
    wf.prepare(cells, descriptors=radial_basis(4), forces=False, test_set=3, checkpoint=ckpt,
               nn_kwargs={"n_internal": 3, "n_layers": 2}, closure_kwargs={"optimizer_kwargs": {"max_iter": 10}})
    return wf


def test_fit_cleans_temporaries_and_refuses_bad_checkpoints(cells, tmp_path):
    ckpt = tmp_path / "fit.ckpt"
    (tmp_path / ".fit.ckpt.killed.tmp").write_bytes(b"partial")
    wf = _prepared(cells, ckpt)
    assert not (tmp_path / ".fit.ckpt.killed.tmp").exists()  # removed on start
    (tmp_path / ".fit.ckpt.killed2.tmp").write_bytes(b"partial")
    wf.run(n_epochs=2, progress=False, save=False)
    assert not (tmp_path / ".fit.ckpt.killed2.tmp").exists()  # and after the run
    assert load_checkpoint(ckpt)["epoch"] == 2
    _truncated(ckpt)
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        _prepared(cells, ckpt)


def test_cli_reports_a_bad_checkpoint_without_a_traceback(cells, tmp_path, capsys, monkeypatch):
    from miniff.cli import main
    from miniff.io import write_cells

    monkeypatch.chdir(tmp_path)
    write_cells(cells, tmp_path / "data.extxyz")
    (tmp_path / "fit.ckpt").mkdir()
    job = {"fit": {"prepare": {"fn_cells": "data.extxyz", "cutoff": 5.0, "checkpoint": "fit.ckpt"},
                   "run": {"n_epochs": 1}}}
    (tmp_path / "job.yml").write_text(yaml.safe_dump(job))
    assert main(["job.yml"]) == 1
    err = capsys.readouterr().err
    assert "fit.ckpt" in err and "is a folder" in err and "Traceback" not in err


def test_losses_are_a_dict_of_loss_results(cells, tmp_path):
    wf = ml_util.FitWorkflow()
    assert wf.losses == {}
    wf = _prepared(cells, None)
    losses = wf.losses  # available right after prepare, as in 0.1.4
    assert set(losses) == {"learn", "test"}
    for result in losses.values():
        assert isinstance(result.loss_value, torch.Tensor) and result.loss_value.ndim == 0
    before = float(losses["learn"].loss_value)
    wf.run(n_epochs=2, progress=False, save=False)
    assert float(wf.losses["learn"].loss_value) <= before
    assert wf.losses["learn"].loss_value == pytest.approx(wf.history[-1]["loss"])


@pytest.mark.parametrize("change", [
    lambda d: d.pop("networks"),
    lambda d: d.update(epoch="abc"),
    lambda d: d.update(history=3),
    lambda d: d.update(stale_epochs=-1),
])
def test_a_checkpoint_with_broken_entries_is_corrupt(cells, tmp_path, change):
    ckpt = tmp_path / "fit.ckpt"
    wf = _prepared(cells, ckpt)
    wf.run(n_epochs=1, progress=False, save=False)
    data = load_checkpoint(ckpt)
    change(data)
    ml_util.atomic_torch_save(data, ckpt)
    with pytest.raises(CheckpointError, match="fit.ckpt") as info:
        _prepared(cells, ckpt)
    assert info.value.kind == "corrupt"
