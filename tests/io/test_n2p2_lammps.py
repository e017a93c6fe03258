"""A potential written by miniff.io.write_n2p2 run by LAMMPS ``pair_style hdnnp`` (package ML-HDNNP) gives
miniff's energy and forces. Runs when an ``lmp`` with that pair style is found (``MINIFF_LMP_HDNNP`` or ``lmp``
on the PATH); Debian's ``lmp`` has no ML-HDNNP, see docs/n2p2.md for how to build one."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from miniff import potentials as P
from miniff.io import write_n2p2
from miniff.kernel import Cell, NeighborWrapper
from miniff.ml import NNPotential

HOW = ("LAMMPS with pair_style hdnnp not found: build LAMMPS with the ML-HDNNP package against n2p2 (docs/n2p2.md, "
       "'Running a written potential in LAMMPS') and set MINIFF_LMP_HDNNP to its lmp executable")


def _lmp_with_hdnnp():
    exe = shutil.which(os.environ.get("MINIFF_LMP_HDNNP", "lmp"))
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return exe if "hdnnp" in out.split() else None


LMP = _lmp_with_hdnnp()
MASSES = {"O": 15.999, "Si": 28.085}


def _potentials():
    torch.manual_seed(2)
    pots = []
    for c, o in [("O", "Si"), ("Si", "O")]:
        d = [P.behler2_descriptor_family(a=4.5, eta=e, r_sphere=0.0, tag=f"{c}-{n}") for e in (0.1, 0.4)
             for n in (c, o)]
        d += [P.behler4_descriptor_family(a=4.0, eta=0.02, l=lam, zeta=2.0, tag=f"{c}-{b}-{e}") for lam in (1, -1)
              for b, e in [(c, c), (c, o), (o, o)]]
        d += [P.weighted_radial_descriptor_family(a=4.0, eta=0.2, weights="Z", tag=c)]
        nn = torch.nn.Sequential(torch.nn.Linear(len(d), 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
        pots.append(NNPotential(nn, d, tag=c))
    return pots


def lammps_data(path, vectors, positions, species, order):
    """A LAMMPS ``atomic`` data file of a cell whose vectors are lower triangular (a along x, b in the xy
    plane: LAMMPS's restricted triclinic form, no rotation needed)."""
    (ax, _, _), (bx, by, _), (cx, cy, cz) = np.asarray(vectors, dtype=float).tolist()
    lines = ["written by miniff tests", "", f"{len(species)} atoms", f"{len(order)} atom types", "",
             f"0.0 {ax!r} xlo xhi", f"0.0 {by!r} ylo yhi", f"0.0 {cz!r} zlo zhi", f"{bx!r} {cx!r} {cy!r} xy xz yz",
             "", "Masses", ""] + [f"{k + 1} {MASSES[s]}" for k, s in enumerate(order)] + ["", "Atoms # atomic", ""]
    lines += [f"{n + 1} {order.index(s) + 1} {x!r} {y!r} {z!r}" for n, ((x, y, z), s) in
              enumerate(zip(positions.tolist(), species, strict=True))]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.skipif(LMP is None, reason=HOW)
def test_lammps_hdnnp_runs_a_written_potential(tmp_path):
    pots = _potentials()
    write_n2p2(pots, tmp_path / "nnp")
    rng = np.random.default_rng(3)
    vectors = np.array([[6.2, 0.0, 0.0], [0.4, 6.0, 0.0], [-0.3, 0.2, 5.9]])
    species = ["Si"] * 4 + ["O"] * 8
    frac = rng.uniform(size=(12, 3))
    positions = frac @ vectors
    lammps_data(tmp_path / "cell.data", vectors, positions, species, ["O", "Si"])
    cutoff = max(p.cutoff for p in pots)
    (tmp_path / "in.hdnnp").write_text(f"""units metal
boundary p p p
atom_style atomic
read_data cell.data
pair_style hdnnp {cutoff} dir nnp showew no showewsum 0 resetew no maxew 1000000 cflength 1.0 cfenergy 1.0
pair_coeff * * O Si
neighbor 0.5 bin
variable e equal pe
run 0
print "MINIFF-ENERGY ${{e}}"
write_dump all custom forces.dump id fx fy fz modify sort id format float %.17g
""")
    proc = subprocess.run([LMP, "-in", "in.hdnnp", "-log", "none"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    energy = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("MINIFF-ENERGY")))
    rows = (tmp_path / "forces.dump").read_text().splitlines()
    start = next(k for k, line in enumerate(rows) if line.startswith("ITEM: ATOMS")) + 1
    forces = np.array([[float(x) for x in line.split()[1:4]] for line in rows[start:]])
    nw = NeighborWrapper(Cell(vectors, frac, species), pbc=True, cutoff=cutoff)
    ref = nw.evaluate(pots, grad=True)
    assert energy == pytest.approx(ref.energy, abs=1e-8)
    np.testing.assert_allclose(forces, -ref.grad_nc, atol=1e-8)
