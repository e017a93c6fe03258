"""``python -m miniff``: exit codes and messages (subprocesses run outside the source tree)."""

import subprocess
import sys

import yaml


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "miniff", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_missing_data_file_exits_nonzero(tmp_path):
    (tmp_path / "job.yml").write_text(yaml.safe_dump({"fit": {"prepare": {"fn_cells": "nowhere.extxyz"}}}))
    out = _run(["job.yml"], tmp_path)
    assert out.returncode != 0
    assert "nowhere.extxyz" in out.stderr and "Traceback" not in out.stderr


def test_typo_and_missing_job_file(tmp_path, monkeypatch, capsys):
    from miniff.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.yml").write_text(yaml.safe_dump({"fit": {"prepare": {"fn_cells": "x", "n_epochs": 3}}}))
    assert main(["job.yml"]) != 0
    assert "unknown key 'n_epochs'" in capsys.readouterr().err
    assert main(["absent.yml"]) != 0
    assert "absent.yml" in capsys.readouterr().err
