"""Classical potentials against LAMMPS: SW silicon and LJ argon, energy + forces per step.

LAMMPS (``mpirun -np 2 lmp``) runs static steps with the neighbour list rebuilt every step
(``neighbor 0.0 bin``, ``neigh_modify every 1 delay 0 check no``); one step = neighbour list + pair forces.
Its time per step is the median over ``repeat`` ``run`` blocks of the "Loop time" divided by the steps,
after ``warmup`` untimed blocks. miniff's step is ``NeighborWrapper`` from the positions + ``evaluate``
(energy and gradient in one pass, what ``total`` + ``grad`` give separately). Check: the same potential
energy (relative 1e-8) before timing. LAMMPS memory is its own
per-rank accounting ("Per MPI rank memory allocation", max) times the number of ranks.
"""

import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

from benchmarks import _miniff
from benchmarks._checks import close
from benchmarks._runner import Row, run_comparison
from benchmarks._structures import LJ_CUTOFF, LJ_EPSILON, LJ_SIGMA, fcc_argon_n, si_diamond_n
from benchmarks._timing import Unavailable, median

N_RANKS = 2
SW_FILE_CANDIDATES = ("/usr/share/lammps/potentials/Si.sw",)
_SW_KEYS = ("epsilon", "sigma", "a", "lambda", "gamma", "costheta0", "A", "B", "p", "q", "tol")


def find_sw_file():
    """Path of LAMMPS's ``Si.sw`` (env ``MINIFF_BENCH_SW_FILE`` wins), or None."""
    for path in (os.environ.get("MINIFF_BENCH_SW_FILE"), *SW_FILE_CANDIDATES):
        if path and os.path.exists(path):
            return path
    return None


def read_sw_file(path):
    """Parameters of the Si-Si-Si entry of a LAMMPS ``.sw`` file as a dict (eV, Å)."""
    words = []
    with open(path) as f:
        for line in f:
            words += line.split("#", 1)[0].split()
    for k in range(0, len(words) - 13, 1):
        if words[k:k + 3] == ["Si", "Si", "Si"]:
            values = [float(w) for w in words[k + 3:k + 3 + len(_SW_KEYS)]]
            return dict(zip(_SW_KEYS, values, strict=True))
    raise ValueError(f"no Si Si Si entry in {path}")


def _mpirun_env():
    env = dict(os.environ)
    env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1",
                "OMPI_MCA_rmaps_base_oversubscribe": "1"})
    return env


def _write_data(atoms, path, mass):
    box = np.array(atoms.cell)
    if not np.allclose(box, np.diag(np.diag(box))):
        raise ValueError("the LAMMPS data writer here needs an orthorhombic box")
    lx, ly, lz = (float(v) for v in np.diag(box))
    pos = np.mod(atoms.positions, [lx, ly, lz])
    with open(path, "w") as f:
        f.write(f"benchmark structure\n\n{len(atoms)} atoms\n1 atom types\n\n")
        f.write(f"0 {lx!r} xlo xhi\n0 {ly!r} ylo yhi\n0 {lz!r} zlo zhi\n\nMasses\n\n1 {mass}\n\nAtoms # atomic\n\n")
        for k, (x, y, z) in enumerate(pos, 1):
            f.write(f"{k} 1 {float(x)!r} {float(y)!r} {float(z)!r}\n")


def run_lammps_script(script, workdir, timeout):
    """Run the LAMMPS input lines ``script`` in ``workdir`` (``mpirun -np N_RANKS lmp``); returns the log text.

    Raises RuntimeError with the end of the output when LAMMPS fails."""
    exe, mpirun = shutil.which("lmp"), shutil.which("mpirun")
    with open(os.path.join(workdir, "in.lmp"), "w") as f:
        f.write("\n".join(script) + "\n")
    cmd = [mpirun, "-np", str(N_RANKS), exe, "-in", "in.lmp", "-log", "log.lmp", "-screen", "none"]
    proc = subprocess.run(cmd, cwd=workdir, env=_mpirun_env(), capture_output=True, text=True, timeout=timeout)
    log_path = os.path.join(workdir, "log.lmp")
    log = open(log_path).read() if os.path.exists(log_path) else ""
    if proc.returncode != 0:
        raise RuntimeError(f"LAMMPS failed ({proc.returncode}): {(proc.stderr or log)[-500:]}")
    return log


def run_lammps(atoms, pair_lines, mass, steps, blocks, workdir):
    """Run LAMMPS on ``atoms`` and return (energy eV, per-step seconds of every block, memory MB)."""
    exe, mpirun = shutil.which("lmp"), shutil.which("mpirun")
    if exe is None or mpirun is None:
        raise Unavailable("missing", "apt-get install lammps (needs lmp and mpirun)")
    _write_data(atoms, os.path.join(workdir, "data.lmp"), mass)
    script = ["units metal", "atom_style atomic", "boundary p p p", "read_data data.lmp", *pair_lines,
              "neighbor 0.0 bin", "neigh_modify every 1 delay 0 check no", "thermo_style custom step pe",
              "thermo_modify format float %.12g", "run 0"]
    script += [f"run {steps}"] * blocks
    log = run_lammps_script(script, workdir, timeout=1800)
    energy = None
    lines = log.splitlines()
    for k, line in enumerate(lines):
        if line.split()[:2] == ["Step", "PotEng"]:
            energy = float(lines[k + 1].split()[1])
            break
    loops = [float(m) for m in re.findall(r"Loop time of ([0-9.eE+-]+) on", log)]
    mems = [float(m) for m in re.findall(r"Per MPI rank memory allocation \(min/avg/max\) = .*?\| .*?\| ([0-9.]+)",
                                         log)]
    per_step = [t / steps for t in loops[1:]]  # the first loop is "run 0"
    return energy, per_step, (max(mems) * N_RANKS if mems else None)


def _miniff_step(atoms, potentials_fn, cutoff):
    def factory():
        nw_cls = _miniff.require("kernel", "NeighborWrapper")
        potentials = potentials_fn()
        cell = _miniff.cell_from_atoms(atoms)

        def run():
            nw = nw_cls(cell)
            nw.set_cutoff(cutoff)  # the list is built only if needed: pair-only sets are summed during the search
            result = nw.evaluate(potentials)  # energy and gradient in one pass
            return float(result.energy)

        return run

    return factory


def _case(case, atoms, pair_lines, mass, potentials_fn, cutoff, steps, settings):
    """Rows of one LAMMPS comparison: miniff (timed by the shared runner) and LAMMPS (timed from its log)."""
    n = len(atoms)
    lammps_row, lammps_energy = None, None
    with tempfile.TemporaryDirectory(prefix="miniff-bench-lammps-") as workdir:
        try:
            lammps_energy, per_step, mem = run_lammps(atoms, pair_lines, mass, steps,
                                                      settings.warmup + settings.repeat, workdir)
            runs = per_step[settings.warmup:]
            lammps_row = Row(case, n, "lammps", median_s=median(runs), runs_s=runs, peak_mem_mb=mem,
                             threads=f"mpirun -np {N_RANKS}", note=f"per step, {steps} steps per block")
        except Exception as exc:  # missing or failing LAMMPS is a row, not a crash
            status = exc.status if isinstance(exc, Unavailable) else "error"
            lammps_row = Row(case, n, "lammps", status=status, note=str(exc)[:300])

    def check(outputs):
        if lammps_energy is None:
            return {t: (None, "LAMMPS did not run") for t in outputs}
        e = outputs["miniff"]
        ok = close(e, lammps_energy, 1e-8)
        return {"miniff": (ok, f"energy {e:.8f} vs LAMMPS {lammps_energy:.8f} eV")}

    rows = run_comparison(case, n, {"miniff": _miniff_step(atoms, potentials_fn, cutoff)}, check, settings,
                          threads={"miniff": "OpenMP (default)"},
                          notes={"miniff": "NeighborWrapper + evaluate (energy + gradient) from positions; "
                                           "pair-only sets without a stored pair list"})
    mini = rows[0]
    if mini.status == "ok":
        lammps_row.check = mini.check
        lammps_row.check_detail = mini.check_detail
        if lammps_row.median_s:
            lammps_row.ratio = mini.median_s / lammps_row.median_s
            mini.ratio = 1.0
    return rows + [lammps_row], lammps_energy


def _lj_efs(atoms, reference_per_atom, settings):
    """miniff LJ energy + forces + stress of a perfect fcc crystal (timed alone), checked per atom against LAMMPS."""

    def factory():
        nw_cls = _miniff.require("kernel", "NeighborWrapper")
        potentials = _miniff.lj_potentials(LJ_EPSILON, LJ_SIGMA, LJ_CUTOFF)
        cell = _miniff.cell_from_atoms(atoms)

        def run():
            nw = nw_cls(cell)
            nw.set_cutoff(LJ_CUTOFF)  # no pair list: summed during the neighbour search
            result = nw.evaluate(potentials, grad=True, stress=True)
            return result.energy / len(atoms)

        return run

    def check(outputs):
        if reference_per_atom is None:
            return {t: (None, "no LAMMPS LJ energy to compare with") for t in outputs}
        e = outputs["miniff"]
        return {"miniff": (close(e, reference_per_atom, 1e-8),
                           f"energy per atom {e:.10f} vs LAMMPS {reference_per_atom:.10f} eV (perfect fcc)")}

    return run_comparison("lj-energy-forces-stress", len(atoms), {"miniff": factory}, check, settings,
                          threads={"miniff": "OpenMP (default)"})


def run(settings, sw_sizes, lj_sizes, steps=10, lj_solo_sizes=()):
    """SW silicon (diamond + 0.05 Å noise) and LJ argon (fcc) rows, and miniff alone on LJ at ``lj_solo_sizes``
    (energy + forces + stress; the check compares the energy per atom of the perfect crystal with LAMMPS's).

    Returns
    -------
    rows : list of Row
    derived : dict
        The SW parameters used (read from LAMMPS's ``Si.sw``).
    """
    rows = []
    lj_per_atom = None
    sw_file = find_sw_file()
    sw = read_sw_file(sw_file) if sw_file else None
    for n in sw_sizes:
        atoms = si_diamond_n(n)
        if sw is None:
            rows.append(Row("lammps-sw", len(atoms), "lammps", status="missing",
                            note="LAMMPS's Si.sw not found (apt-get install lammps)"))
            continue
        pair = ["pair_style sw", f"pair_coeff * * {sw_file} Si"]
        rows += _case("lammps-sw", atoms, pair, 28.0855, lambda: _miniff.sw_potentials(sw),
                      sw["a"] * sw["sigma"], steps, settings)[0]
    for n in lj_sizes:
        atoms = fcc_argon_n(n)
        pair = [f"pair_style lj/cut {LJ_CUTOFF}", f"pair_coeff 1 1 {LJ_EPSILON} {LJ_SIGMA}"]
        case_rows, energy = _case("lammps-lj", atoms, pair, 39.948,
                                  lambda: _miniff.lj_potentials(LJ_EPSILON, LJ_SIGMA, LJ_CUTOFF), LJ_CUTOFF, steps,
                                  settings)
        rows += case_rows
        if energy is not None:
            lj_per_atom = energy / len(atoms)
    for n in lj_solo_sizes:
        rows += _lj_efs(fcc_argon_n(n), lj_per_atom, settings)
    return rows, {"sw_parameters": sw}
