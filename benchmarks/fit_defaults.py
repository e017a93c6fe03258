"""Fit with the defaults of ``FitWorkflow`` (``forces=True`` and nothing else) on several data sets.

    python -m benchmarks.fit_defaults [--only si_sw,cupt] [--epochs N] [--seconds S] [--set KEY=VALUE ...]

Data sets: ``si_sw`` (``examples/si_sw/generate.py``: 60 rattled and strained 64-atom silicon cells labelled
with Stillinger-Weber; the first 50 train, the last 10 are held out) and ``cupt`` (the bundled Cu/Pt EMT set,
:func:`miniff.ml_util.example_data_path`, 80 % / 20 %, split seed 0).  Prints per data set the wall time of
``run`` and the held-out RMSEs (meV/atom, meV/Å), the stop reason and the load average, as one JSON line.
``--set closure_kwargs.w_gradients=3`` and the like change one setting (to compare alternatives);
``--seconds 120`` ends a fit after the first epoch that finishes past that wall time of ``run`` (the issue's
time budget; the held-out errors are those of the networks kept by ``select_best`` up to then).  ``cpu_s`` is the
process CPU time of ``run`` (all threads), a second measure on a shared machine.
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


DATA = {"si_sw": si_sw_data, "cupt": cupt_data}


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
    """``after_epoch`` callback: False (stop) once ``seconds`` have passed since :meth:`start` (never for None)."""

    def __init__(self, seconds):
        self.seconds, self.t0 = seconds, None

    def start(self):
        self.t0 = time.perf_counter()
        return self.t0

    def __call__(self, _fit):
        return self.seconds is None or time.perf_counter() - self.t0 < self.seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(DATA))
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seconds", type=float, default=None, help="stop after the epoch that ends past this run time")
    p.add_argument("--set", action="append", default=[], help="prepare option, e.g. closure_kwargs.w_gradients=3")
    args = p.parse_args(argv)
    from miniff import ml_util

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            data, options = DATA[name](tmp)
            for a in args.set:
                _set(options, a)
            load = os.getloadavg()[0]
            fit = ml_util.FitWorkflow(seed=0)
            within_budget = _budget(args.seconds)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit.prepare(data, forces=True, **options)
                t0, c0 = within_budget.start(), time.process_time()
                fit.run(n_epochs=args.epochs, progress=False, summary=False, after_epoch=within_budget)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            m = fit.metrics("test")
            print(json.dumps({"data": name, "settings": args.set, "epochs": fit.epoch, "run_s": round(wall, 1),
                              "cpu_s": round(cpu, 1),
                              "energy_meV_atom": round(1000 * m["energy_rmse"], 2),
                              "force_meV_A": round(1000 * m["force_rmse"], 1), "stop": fit.stop_reason,
                              "best_epoch": fit.best_epoch_info[0] if fit.best_epoch_info else None,
                              "optimizer": type(fit.closure.optimizer).__name__,
                              "load_start": round(load, 2), "load_end": round(os.getloadavg()[0], 2),
                              "warnings": sorted({w.category.__name__ for w in caught})}), flush=True)


if __name__ == "__main__":
    main()
