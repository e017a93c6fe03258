"""Ewald summation against LAMMPS: direct sum vs ``kspace_style ewald``, particle-mesh Ewald vs ``pppm``.

Case ``ewald-mesh``: LAMMPS ``kspace_style pppm 1e-5`` with ``kspace_modify order 6``; miniff
``method="pme"`` on LAMMPS's splitting parameter and grid with order-6 B-splines (PPPM and smooth PME
interpolate differently, so the check is that both are within the requested accuracy of each other: energies
to 1e-5 relative, RMS force difference below 3 x 1e-5 x 14.4 eV/Å); the reference of the accuracy reached is
miniff's PME on twice the grid with order 10 and a real-space cutoff for an estimated error of 1e-6 eV.
Scaling (``derived["ewald-mesh scaling"]``, no peer): miniff's particle-mesh step from 8 000 to 10^6 ions at
LAMMPS's splitting parameter and mesh spacing, and the slope of log t against log(N log N).
The rest of this docstring is about the direct case.

Inputs: rock salt (a = 5.64 Å, charges +1 / -1), cubic supercells of 8 k³ ions, every ion displaced by
Gaussian noise of 0.05 Å (seed 20261121). LAMMPS runs ``pair_style coul/long 10.0`` (``pair_modify table 0``:
erfc evaluated exactly, not tabulated) with ``kspace_style ewald 1e-5`` (relative force accuracy 1e-5, LAMMPS
choosing the splitting parameter and the reciprocal vectors), ``mpirun -np 2``, the neighbour list rebuilt
every step. miniff then uses *the same* real-space cutoff, splitting parameter ``eta`` (LAMMPS's "G vector")
and reciprocal vectors (LAMMPS's ``kxmax``, ``kymax``, ``kzmax`` and its spherical cut), so both compute the
same truncated sum: the check is that their energies agree to 3e-6 relative and their forces to 1e-5 eV/Å
(LAMMPS evaluates erfc by a polynomial approximation with an error of about 1e-7, which moves its
real-space energy by about 1e-6 relative; it also prints the splitting parameter to 8 digits).
One miniff step = ``NeighborWrapper`` from the positions + ``evaluate`` (energy and gradient; the wrapper holds
no pair list, so the real-space sum runs during the cell-list walk over the half stencil, as LAMMPS's half list).

Accuracy actually reached: the forces of both tools against a tight miniff reference (estimated errors 1e-10
eV per sum); reported as the RMS force error divided by 14.4 eV/Å, the force between two unit charges 1 Å
apart (LAMMPS's definition of its relative accuracy), in ``derived``.
"""

import math
import os
import re
import shutil
import tempfile
import time

import numpy as np

from benchmarks import _miniff
from benchmarks._runner import Row, run_comparison
from benchmarks._timing import Unavailable, median
from benchmarks.bench_lammps import N_RANKS, run_lammps_script

A_NACL = 5.64
R_CUT = 10.0
ACCURACY = 1e-5
#: LAMMPS's Coulomb constant in metal units (qqr2e), eV Å.
QQR2E = 14.399645
TWO_CHARGE_FORCE = QQR2E  # force between two unit charges 1 Å apart, eV/Å


def nacl_n(n, noise=0.05, seed=20261121):
    """Rattled rock salt of ``n = 8 k^3`` ions as ``ase.Atoms`` with initial charges."""
    from ase.build import bulk

    k = round((n / 8) ** (1 / 3))
    if 8 * k**3 != n:
        raise ValueError(f"NaCl sizes are 8 k^3 ions, got {n}")
    atoms = bulk("NaCl", "rocksalt", a=A_NACL, cubic=True).repeat((k, k, k))
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(0.0, noise, atoms.positions.shape)
    atoms.wrap()
    atoms.set_initial_charges(np.where(atoms.numbers == 11, 1.0, -1.0))
    return atoms


def _write_data(atoms, path):
    length = float(atoms.cell[0, 0])
    pos = np.mod(atoms.positions, length)
    q = atoms.get_initial_charges()
    with open(path, "w") as f:
        f.write(f"rattled NaCl\n\n{len(atoms)} atoms\n2 atom types\n\n")
        for axis in "xyz":
            f.write(f"0 {length!r} {axis}lo {axis}hi\n")
        f.write("\nMasses\n\n1 22.98977\n2 35.453\n\nAtoms # charge\n\n")
        for k, (p, charge, z) in enumerate(zip(pos, q, atoms.numbers, strict=True), 1):
            f.write(f"{k} {1 if z == 11 else 2} {float(charge)!r} {float(p[0])!r} {float(p[1])!r} {float(p[2])!r}\n")


def run_lammps(atoms, steps, blocks, workdir, kspace="ewald"):
    """LAMMPS Ewald (``kspace="ewald"``) or PPPM (``"pppm"``, order 6) on ``atoms``: (energy eV, forces [N, 3]
    eV/Å, per-step seconds of every block, memory MB, g_ewald 1/Å, (kxmax, kymax, kzmax) or the PPPM grid)."""
    exe, mpirun = shutil.which("lmp"), shutil.which("mpirun")
    if exe is None or mpirun is None:
        raise Unavailable("missing", "apt-get install lammps (needs lmp and mpirun)")
    _write_data(atoms, os.path.join(workdir, "data.lmp"))
    script = ["units metal", "atom_style charge", "boundary p p p", "read_data data.lmp",
              f"pair_style coul/long {R_CUT}", "pair_coeff * *", "pair_modify table 0",
              f"kspace_style {kspace} {ACCURACY}", *(["kspace_modify order 6"] if kspace == "pppm" else []),
              "neighbor 0.0 bin", "neigh_modify every 1 delay 0 check no",
              "thermo_style custom step pe", "thermo_modify format float %.15g",
              "dump d all custom 1 forces.dump id fx fy fz", "dump_modify d format float %.15g sort id",
              "run 0", "undump d"]
    script += [f"run {steps}"] * blocks
    log = run_lammps_script(script, workdir, timeout=3600)
    lines = log.splitlines()
    energy = next(float(lines[k + 1].split()[1]) for k, line in enumerate(lines) if line.split()[:2] == ["Step",
                                                                                                           "PotEng"])
    g_ewald = float(re.search(r"G vector \(1/distance\) = ([0-9.eE+-]+)", log).group(1))
    pattern = r"kxmax kymax kzmax\s*=\s*(\d+) (\d+) (\d+)" if kspace == "ewald" else r"grid = (\d+) (\d+) (\d+)"
    kmax = tuple(int(v) for v in re.search(pattern, log).groups())
    loops = [float(m) for m in re.findall(r"Loop time of ([0-9.eE+-]+) on", log)]
    mems = [float(m) for m in re.findall(r"Per MPI rank memory allocation \(min/avg/max\) = .*?\| .*?\| ([0-9.]+)",
                                         log)]
    dump = open(os.path.join(workdir, "forces.dump")).read().split("ITEM: ATOMS id fx fy fz")[1]
    forces = np.array([[float(v) for v in line.split()[1:]] for line in dump.strip().splitlines()])
    return energy, forces, [t / steps for t in loops[1:]], (max(mems) * N_RANKS if mems else None), g_ewald, kmax


def _potential(eta, kmax, length, accuracy=None):
    family = _miniff.require("potentials", "ewald_total_potential_family")
    if accuracy is not None:  # a tight reference
        from miniff.ewald import ewald_cutoffs

        a, k_cut = ewald_cutoffs(eta, length**3, 8 * (length / A_NACL) ** 3, QQR2E, accuracy)
        return family(a=a, eta=eta, scale=QQR2E, k_cut=k_cut), a
    # LAMMPS keeps k with k^2 <= 1.00001 * max_d (2 pi kmax_d / L_d)^2
    k_cut = 2 * math.pi * max(kmax) / length * math.sqrt(1.00001)
    return family(a=R_CUT, eta=eta, scale=QQR2E, k_cut=k_cut), R_CUT


def _cell(atoms):
    cell = _miniff.cell_from_atoms(atoms)
    cell.meta["charges"] = atoms.get_initial_charges()
    return cell


def _evaluate(cell, potential, cutoff):
    """One step from the positions: a wrapper without a pair list, then energy and forces in one pass (the
    real-space sum during the cell-list walk to the potential's cutoff ``a``, as for LJ in ``bench_lammps``)."""
    nw_cls = _miniff.require("kernel", "NeighborWrapper")
    return nw_cls(cell).evaluate(potential)


def _compare(case, n, settings, steps, kspace):
    """Rows of one size: LAMMPS (``kspace`` "ewald" or "pppm") and miniff with LAMMPS's settings, and ``derived``."""
    atoms = nacl_n(n)
    length = float(atoms.cell[0, 0])
    with tempfile.TemporaryDirectory(prefix="miniff-bench-ewald-") as workdir:
        try:
            energy, forces, per_step, mem, g_ewald, kmax = run_lammps(atoms, steps, settings.warmup + settings.repeat,
                                                                       workdir, kspace=kspace)
        except Exception as exc:  # missing or failing LAMMPS is a row, not a crash
            status = exc.status if isinstance(exc, Unavailable) else "error"
            return [Row(case, n, "lammps", status=status, note=str(exc)[:300])], None
    runs = per_step[settings.warmup:]
    what = "kmax" if kspace == "ewald" else "grid (order 6)"
    lammps_row = Row(case, n, "lammps", median_s=median(runs), runs_s=runs, peak_mem_mb=mem,
                     threads=f"mpirun -np {N_RANKS}",
                     note=f"coul/long {R_CUT} + {kspace} {ACCURACY}: eta {g_ewald:.5f} 1/Å, {what} {kmax}")
    family = _miniff.require("potentials", "ewald_total_potential_family")
    if kspace == "ewald":
        potential, cutoff = _potential(g_ewald, kmax, length)
    else:
        potential, cutoff = family(a=R_CUT, eta=g_ewald, scale=QQR2E, method="pme", mesh=kmax, order=6), R_CUT

    def factory():
        cell = _cell(atoms)
        return lambda: _evaluate(cell, potential, cutoff)

    def check(outputs):
        ev = outputs["miniff"]
        de = abs(ev.energy - energy) / abs(energy)
        df = float(np.abs(-ev.grad_nc - forces).max())
        rms = float(np.sqrt(np.mean((-ev.grad_nc - forces) ** 2)))
        detail = (f"energy {ev.energy:.9f} vs LAMMPS {energy:.9f} eV (rel {de:.1e}); max |dF| {df:.1e}, "
                  f"RMS {rms:.1e} eV/Å")
        if kspace == "ewald":  # the same truncated sum
            return {"miniff": (de < 3e-6 and df < 1e-5, detail)}
        # PPPM and SPME interpolate differently: both within the requested accuracy of the exact forces
        return {"miniff": (de < 1e-5 and rms < 3 * ACCURACY * TWO_CHARGE_FORCE, detail)}

    notes = {"ewald": "NeighborWrapper + evaluate (energy + forces), LAMMPS's eta and k-vectors",
             "pppm": "NeighborWrapper + evaluate (energy + forces), method='pme' on LAMMPS's eta and grid, order 6"}
    mini_rows = run_comparison(case, n, {"miniff": factory}, check, settings, threads={"miniff": "OpenMP (default)"},
                               notes={"miniff": notes[kspace]})
    mini = mini_rows[0]
    if mini.status == "ok" and lammps_row.median_s:
        lammps_row.check, lammps_row.check_detail = mini.check, mini.check_detail
        lammps_row.ratio = mini.median_s / lammps_row.median_s
        mini.ratio = 1.0
    if kspace == "ewald":
        reference, ref_cut = _potential(g_ewald, None, length, accuracy=1e-10)
    else:  # a fine mesh of high order (the direct sum is too slow at these sizes)
        from miniff.ewald import ewald_cutoffs

        ref_cut = ewald_cutoffs(g_ewald, length**3, n, QQR2E, 1e-6)[0]  # 1e-6 eV for the whole cell
        reference = family(a=ref_cut, eta=g_ewald, scale=QQR2E, method="pme", mesh=[2 * k for k in kmax], order=10)
    f_ref = -_evaluate(_cell(atoms), reference, ref_cut).grad_nc
    f_mini = -_evaluate(_cell(atoms), potential, cutoff).grad_nc
    derived = {
        "eta": g_ewald, what.split()[0]: list(kmax),
        "rms_force_error_rel_miniff": float(np.sqrt(np.mean((f_mini - f_ref) ** 2)) / TWO_CHARGE_FORCE),
        "rms_force_error_rel_lammps": float(np.sqrt(np.mean((forces - f_ref) ** 2)) / TWO_CHARGE_FORCE),
    }
    return mini_rows + [lammps_row], derived


#: splitting parameter and mesh spacing (Å) of the scaling series: LAMMPS's choice for these cells at 1e-5
SCALING_ETA = 0.3132567
SCALING_SPACING = 20 * A_NACL / 90


def mesh_scaling(sizes, repeat=2):
    """miniff's particle-mesh step (``method="pme"``, order 6, 10 Å real space, LAMMPS's eta and mesh spacing)
    at growing sizes: ``{"n": [...], "seconds": [...] (best of ``repeat`` after one warm-up), "mesh": [...],
    "exponent_n_log_n": slope of log t against log(N log N)}`` (1.0: linear-log scaling)."""
    from miniff.ewald import fft_size

    family = _miniff.require("potentials", "ewald_total_potential_family")
    nw_cls = _miniff.require("kernel", "NeighborWrapper")
    out = {"n": [], "seconds": [], "mesh": []}
    for n in sizes:
        atoms = nacl_n(n)
        k = fft_size(math.ceil(float(atoms.cell[0, 0]) / SCALING_SPACING))
        potential = family(a=R_CUT, eta=SCALING_ETA, scale=QQR2E, method="pme", mesh=[k] * 3, order=6)
        cell = _cell(atoms)
        nw_cls(cell).evaluate(potential)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            nw_cls(cell).evaluate(potential)
            times.append(time.perf_counter() - t0)
        out["n"].append(n)
        out["seconds"].append(min(times))
        out["mesh"].append(k)
    if len(out["n"]) > 1:
        x = np.log([n * math.log(n) for n in out["n"]])
        out["exponent_n_log_n"] = float(np.polyfit(x, np.log(out["seconds"]), 1)[0])
    return out


def run(settings, sizes, steps=3, mesh_sizes=(), scaling_sizes=()):
    """Rows ``ewald`` (direct sum, miniff vs LAMMPS ``ewald``) per size of ``sizes`` and ``ewald-mesh``
    (``method="pme"`` vs LAMMPS ``pppm``) per size of ``mesh_sizes``; ``derived`` holds the accuracy reached
    and, for ``scaling_sizes``, miniff's particle-mesh times (:func:`mesh_scaling`) under ``ewald-mesh scaling``."""
    rows, derived = [], {}
    for case, kspace, case_sizes in (("ewald", "ewald", sizes), ("ewald-mesh", "pppm", mesh_sizes)):
        for n in case_sizes:
            case_rows, case_derived = _compare(case, n, settings, steps, kspace)
            rows += case_rows
            if case_derived is not None:
                derived[f"{case} {n}"] = case_derived
    if scaling_sizes:
        derived["ewald-mesh scaling"] = mesh_scaling(scaling_sizes)
    return rows, derived
