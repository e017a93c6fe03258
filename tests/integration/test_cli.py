"""``python -m miniff``: exit codes and messages (subprocesses run outside the source tree)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_usage_names_the_program_as_it_was_run(monkeypatch, capsys):
    from miniff import cli

    for argv0, prog in (("/usr/local/bin/miniff", "miniff"), ("/x/miniff/__main__.py", "python -m miniff")):
        monkeypatch.setattr(sys, "argv", [argv0])
        with pytest.raises(SystemExit):
            cli.main(["--help"])
        assert capsys.readouterr().out.startswith(f"usage: {prog} ")
        with pytest.raises(SystemExit):
            cli.main(["quickstart", "--help"])
        out = capsys.readouterr().out
        assert out.startswith(f"usage: {prog} quickstart ") and "``" not in out


def test_info_in_an_unbuilt_source_folder_advises_leaving_it(tmp_path):
    import shutil

    import miniff

    # a copy of the source folder without the compiled core, with the cwd (hence the copy) first on sys.path
    package = Path(miniff.__file__).parent
    shutil.copytree(package, tmp_path / "miniff", ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.c"))
    (tmp_path / "setup.py").write_text("# stand-in\n")
    proc = subprocess.run([sys.executable, "-m", "miniff", "info"], capture_output=True, text=True, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    assert "run it from another folder" in proc.stdout and "bash tools/build.sh" in proc.stdout
    assert "pip install ." not in proc.stdout and "__init__.py" not in proc.stdout  # no directory listing
