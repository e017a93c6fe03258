"""The multi-element EMT data generator of ``examples/emt_alloys``: groups, sizes, elements, labels that EMT
reproduces, determinism, clear errors; and the generated data are read and described by miniff."""

import subprocess
import sys

import numpy as np
import pytest
from support import REPO_ROOT

SCRIPT = REPO_ROOT / "examples" / "emt_alloys" / "generate.py"


def _run(tmp_path, *args):
    return subprocess.run([sys.executable, "-B", str(SCRIPT), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def test_generated_frames_are_labelled_alloys(tmp_path):
    import ase.io
    from ase.calculators.emt import EMT

    proc = _run(tmp_path, "-n", "12", "--elements", "Al,Cu,Pd,Pt,Au", "--seed", "3", "a.extxyz")
    assert proc.returncode == 0, proc.stderr
    assert "12 frames" in proc.stdout and "a.extxyz" in proc.stdout
    frames = ase.io.read(tmp_path / "a.extxyz", ":")
    assert len(frames) == 12
    assert {f.info["group"] for f in frames} == {"bulk", "vacancy", "surface", "strained"}
    assert {s for f in frames for s in f.get_chemical_symbols()} == {"Al", "Cu", "Pd", "Pt", "Au"}
    assert all(30 <= len(f) <= 64 and f.pbc.all() for f in frames)
    for f in frames[:3]:  # the stored labels are EMT's (recomputed independently)
        atoms = f.copy()
        atoms.calc = EMT()
        assert f.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(f.get_forces(), atoms.get_forces(), atol=1e-6)
    again = _run(tmp_path, "-n", "12", "--elements", "Al,Cu,Pd,Pt,Au", "--seed", "3", "b.extxyz")
    assert again.returncode == 0
    assert (tmp_path / "a.extxyz").read_text() == (tmp_path / "b.extxyz").read_text()
    from miniff.io import read_cells

    cells = read_cells(tmp_path / "a.extxyz")
    assert len(cells) == 12 and cells[0].meta["total-energy"] == pytest.approx(frames[0].get_potential_energy())


def test_bad_elements_are_refused(tmp_path):
    proc = _run(tmp_path, "-n", "2", "--elements", "Cu,Fe")
    assert proc.returncode != 0 and "elements must be a non-empty subset" in proc.stderr
    assert not (tmp_path / "emt_alloys.extxyz").exists()
