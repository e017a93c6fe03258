"""Fit with the defaults of ``FitWorkflow`` (``forces=True`` and nothing else) on several data sets.

    python -m benchmarks.fit_defaults [--only si_sw,cupt,alni_emt] [--epochs N] [--seconds S] [--set KEY=VALUE ...]
                                      [--torch-threads auto|N]

Data sets: ``si_sw`` (``examples/si_sw/generate.py``: 60 rattled and strained 64-atom silicon cells labelled
with Stillinger-Weber; the first 50 train, the last 10 are held out), ``cupt`` (the bundled Cu/Pt EMT set,
:func:`miniff.ml_util.example_data_path`, 80 % / 20 %, split seed 0) and ``alni_emt`` (:func:`alni_emt_cells`:
50 rattled and strained 32-atom fcc Al/Ni alloy cells labelled with ASE's EMT; 40 train, 10 held out; a check
that the defaults chosen on the first two carry over).  Prints per data set the wall time of
``run`` and the held-out RMSEs (meV/atom, meV/Å), the stop reason and the load average, as one JSON line.
``--set closure_kwargs.w_gradients=3`` and the like change one setting (to compare alternatives);
``--seconds 120`` ends a fit after the first epoch that finishes past that wall time of ``run`` (the issue's
time budget; the held-out errors are those of the networks kept by ``select_best`` up to then).  ``cpu_s`` is the
process CPU time of ``run`` (all threads), a second measure on a shared machine; ``--cpu-seconds 120
--torch-threads 1`` budgets CPU time instead (one thread: what an idle core does in that wall time).
"""

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def si_sw_data(folder):
    """The SW silicon file (generated into ``folder``)."""
    sys.path.insert(0, str(HERE.parent / "examples" / "si_sw"))
    import generate

    path = Path(folder) / "si_sw.extxyz"
    generate.main(["--out", str(path)])
    return str(path), {"test_set": 10, "cells_order": None}


def cupt_data(folder):
    from miniff import ml_util

    return str(ml_util.example_data_path()), {"test_set": 0.2, "split_seed": 0}


def alni_emt_cells(n=50, seed=1):
    """``n`` random fcc Al/Ni alloy cells of 32 atoms (Ni share uniform in 0.2-0.8, lattice constant interpolated
    between Al's 4.05 Å and Ni's 3.52 Å, symmetric strain of +-3 % per component, Gaussian rattle of a per-cell
    width in 0.02-0.1 Å) labelled with ASE's EMT (a list of ``ase.Atoms`` with energy, forces and stress)."""
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = bulk("Al", "fcc", a=3.7, cubic=True).repeat(2)
        x = rng.uniform(0.2, 0.8)
        atoms.set_chemical_symbols(np.where(rng.random(len(atoms)) < x, "Ni", "Al"))
        atoms.set_cell(atoms.cell[:] * (4.05 * (1 - x) + 3.52 * x) / 3.7, scale_atoms=True)
        eps = rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (eps + eps.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(scale=rng.uniform(0.02, 0.1), size=atoms.positions.shape)
        atoms.calc = EMT()
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        frames.append(atoms)
    return frames


def alni_emt_data(folder):
    """The rattled EMT Al/Ni set (generated into ``folder``): the first 40 cells train, the last 10 are held out."""
    from ase.io import write

    path = Path(folder) / "alni_emt.extxyz"
    write(path, alni_emt_cells(), format="extxyz")
    return str(path), {"test_set": 10, "cells_order": None}


DATA = {"si_sw": si_sw_data, "cupt": cupt_data, "alni_emt": alni_emt_data}


def _set(options, assignment):
    key, value = assignment.split("=", 1)
    *path, last = key.split(".")
    d = options
    for k in path:
        d = d.setdefault(k, {})
    try:
        d[last] = json.loads(value)
    except ValueError:   # a bare word: a string (tanh, compact_lbfgs...)
        d[last] = value


class _budget:
    """``after_epoch`` callback: False (stop) once ``seconds`` of wall time (or ``cpu_seconds`` of process CPU
    time) have passed since :meth:`start` (never for None)."""

    def __init__(self, seconds, cpu_seconds=None):
        self.seconds, self.cpu_seconds, self.t0, self.c0 = seconds, cpu_seconds, None, None

    def start(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self.t0

    def __call__(self, _fit):
        wall_ok = self.seconds is None or time.perf_counter() - self.t0 < self.seconds
        cpu_ok = self.cpu_seconds is None or time.process_time() - self.c0 < self.cpu_seconds
        return wall_ok and cpu_ok


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="si_sw,cupt")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seconds", type=float, default=None, help="stop after the epoch that ends past this run time")
    p.add_argument("--cpu-seconds", type=float, default=None,
                   help="stop after the epoch that ends past this CPU time of run (with --torch-threads 1: the wall "
                        "time of an idle core, for a shared machine)")
    p.add_argument("--set", action="append", default=[], help="prepare option, e.g. closure_kwargs.w_gradients=3")
    p.add_argument("--torch-threads", default="auto",
                   help="run(torch_threads=...): 'auto' (the default of run) or a number (1 on a busy machine)")
    args = p.parse_args(argv)
    threads = args.torch_threads if args.torch_threads == "auto" else int(args.torch_threads)
    from miniff import ml_util

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            data, options = DATA[name](tmp)
            for a in args.set:
                _set(options, a)
            load = os.getloadavg()[0]
            fit = ml_util.FitWorkflow(seed=0)
            within_budget = _budget(args.seconds, args.cpu_seconds)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit.prepare(data, forces=True, **options)
                t0, c0 = within_budget.start(), time.process_time()
                fit.run(n_epochs=args.epochs, progress=False, summary=False, after_epoch=within_budget,
                        torch_threads=threads)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            m = fit.metrics("test")
            print(json.dumps({"data": name, "settings": args.set, "torch_threads": args.torch_threads,
                              "epochs": fit.epoch, "run_s": round(wall, 1),
                              "cpu_s": round(cpu, 1),
                              "energy_meV_atom": round(1000 * m["energy_rmse"], 2),
                              "force_meV_A": round(1000 * m["force_rmse"], 1), "stop": fit.stop_reason,
                              "best_epoch": fit.best_epoch_info[0] if fit.best_epoch_info else None,
                              "optimizer": type(fit.closure.optimizer).__name__,
                              "load_start": round(load, 2), "load_end": round(os.getloadavg()[0], 2),
                              "warnings": sorted({w.category.__name__ for w in caught})}), flush=True)


if __name__ == "__main__":
    main()
