"""``python -m miniff.quickstart --quick``: runs end to end and writes its outputs."""

import json

import pytest


def test_quickstart_quick(tmp_path, monkeypatch, capsys):
    from miniff import ml_util, quickstart

    monkeypatch.chdir(tmp_path)
    assert quickstart.main(["--quick", "--no-progress"]) == 0
    text = capsys.readouterr().out
    out = tmp_path / "quickstart-out"
    for name in ("parity.png", "convergence.png", "fit.jsonl", "fit.ckpt", "cupt-nn.pt"):
        assert (out / name).stat().st_size > 0, name
    assert "validation" in text and "meV/atom" in text and "relaxed" in text
    lines = [json.loads(x) for x in (out / "fit.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2]
    # the printed validation force RMSE is the one of the saved networks on the validation set
    assert len(ml_util.load_potentials(out / "cupt-nn.pt")) == 2
    with pytest.raises(SystemExit):
        quickstart.main(["--epochs", "0"])


def test_cli_quickstart_command(tmp_path, capsys):
    # "miniff quickstart ..." (the README's command) forwards its arguments to the quick start
    from miniff.cli import main

    out = tmp_path / "qs"
    assert main(["quickstart", "--quick", "--no-progress", "--epochs", "1", "--out", str(out)]) == 0
    assert (out / "parity.png").stat().st_size > 0
    assert "validation" in capsys.readouterr().out
