"""Atomic writes keep the previous file when writing fails, and leave no temporary file."""

import os

import pytest

from miniff._atomic import atomic_write, atomic_write_text


def test_atomic_write_replaces_content_with_plain_permissions(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "a.bin"
    atomic_write(path, lambda f: f.write(b"good"))

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_folder_or_a_missing_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match="it is a folder"):
        atomic_write_text(tmp_path, "x")
    with pytest.raises(FileNotFoundError, match="the folder .*absent.* does not exist"):
        atomic_write_text(tmp_path / "absent" / "x.txt", "x")
    assert not list(tmp_path.iterdir())


def test_atomic_folder_replaces_only_when_complete(tmp_path):
    from miniff._atomic import atomic_folder

    folder = tmp_path / "out"
    with atomic_folder(folder) as tmp:
        (tmp_path / tmp / "a.txt").write_text("one")
    assert (folder / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError, match="boom"), atomic_folder(folder, replaceable=lambda n: True) as tmp:
        (tmp_path / tmp / "a.txt").write_text("two")
        raise RuntimeError("boom")
    assert (folder / "a.txt").read_text() == "one" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(FileExistsError, match=r"holds files that would be lost \(\['a.txt'\]\)"):
        with atomic_folder(folder, replaceable=lambda n: n.endswith(".data")):
            pass
    with atomic_folder(folder, replaceable=lambda n: True) as tmp:
        (tmp_path / tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in folder.iterdir()) == ["b.txt"]
    with pytest.raises(FileNotFoundError, match="does not exist"), atomic_folder(tmp_path / "no" / "out"):
        pass
