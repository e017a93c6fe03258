"""The descriptor store: preparation and mini-batch training throughput, the warm cache, peak memory.

Data: diamond Si cells of 64 atoms (2x2x2) with a random strain and 0.1 Å displacements, labelled with
Stillinger–Weber silicon (as ``bench_training``).  Descriptors: 6 radial + 2 angular Behler functions, cutoff
3.8 Å (``STORE_SPEC``: a record of about 0.13 MB per structure, Jacobian included).

Rows:

- ``store-prepare``: ``prepare_store`` of ``n_structures`` into an empty store with 1 and 2 worker processes,
  against ``learn_cauldron(grad=True)`` in memory (the note gives structures/s);
- ``store-warm``: the same preparation again (every record a cache hit); ``ratio`` = warm / cold time;
- ``store-train``: one epoch of mini-batch Adam from the store (batch sizes 8-64) against one full-batch Adam step
  on the in-memory dataset (energies and forces; the note gives structures/s);
- ``store-memory``: a subprocess under a memory limit (``RLIMIT_DATA``: heap and other private memory) runs the
  streamed statistics and one mini-batch epoch (batch 32) of a store of N structures, or the in-memory path
  (``learn_cauldron`` + one full-batch epoch).  ``peak_mem_mb`` is the peak anonymous resident memory (``RssAnon``,
  sampled every 5 ms): the store's pages are a read-only file mapping, page cache that the kernel evicts at will,
  so they are not part of it (the note also gives ``VmHWM``, which counts resident pages of the mapping).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import _miniff
from benchmarks._runner import Row
from benchmarks.bench_training import make_dataset

STORE_SPEC = {"cutoff": 3.8, "g2": [(2.0, float(r)) for r in np.linspace(1.5, 3.5, 6)],
              "g5": [(0.05, 1.0, 1.0), (0.05, 1.0, -1.0)]}
N_ATOMS = 64


def _cells(data):
    cells = []
    for atoms in data:
        cell = _miniff.cell_from_atoms(atoms)
        # as made by make_dataset, or read back from extxyz (the energy then sits in a single-point calculator)
        energy = atoms.info["energy"] if "energy" in atoms.info else atoms.get_potential_energy()
        cell.meta["total-energy"] = float(energy)
        cell.meta["forces"] = np.asarray(atoms.arrays["forces_ref"])
        cells.append(cell)
    return cells


def _descriptors():
    return {"Si": _miniff.behler_descriptors(STORE_SPEC)}


def _network():
    import torch

    from benchmarks._peers import make_network

    return make_network(n_inputs=len(STORE_SPEC["g2"]) + len(STORE_SPEC["g5"]), dtype=torch.float64)


def _timed(func):
    t0 = time.perf_counter()
    out = func()
    return time.perf_counter() - t0, out


def _row(case, n, tool, seconds, note, ratio=None, peak=None, status="ok", check=None, detail=""):
    return Row(case, n * N_ATOMS, tool, status=status, median_s=seconds, ratio=ratio, peak_mem_mb=peak,
               runs_s=[] if seconds is None else [seconds], note=note, check=check, check_detail=detail,
               threads="1 OpenMP thread per worker" if "worker" in tool else "")


def _prepare_rows(cells, workers, folder):
    from miniff.ml import learn_cauldron
    from miniff.store import prepare_store

    n = len(cells)
    desc = _descriptors()
    t_mem, _ = _timed(lambda: learn_cauldron(cells, desc, grad=True, normalize=False))
    rows = [_row("store-prepare", n, "miniff in memory", t_mem, f"learn_cauldron(grad=True): {n / t_mem:.0f} "
                 f"structures/s")]
    derived = {"in_memory_structures_per_s": n / t_mem}
    cold = {}
    for w in workers:
        path = folder / f"prep{w}"
        t, report = _timed(lambda path=path, w=w: prepare_store(path, cells, desc, n_workers=w, progress=False))
        cold[w] = t
        ok = report.computed == n
        steady = (n - 1) / max(t - report.first_record_seconds, 1e-9)
        rows.append(_row("store-prepare", n, f"miniff store, {w} worker(s)", t, f"{n / t:.0f} structures/s overall, "
                         f"{steady:.0f}/s after the first record ({report.first_record_seconds:.2f} s: worker start "
                         f"and first structure); {_folder_mb(path):.0f} MB on disk", ratio=t / t_mem, check=ok,
                         detail=f"{report.computed} of {n} computed"))
        derived[f"store_structures_per_s_{w}w"] = n / t
        derived[f"store_steady_structures_per_s_{w}w"] = steady
    w = workers[0]
    t_warm, report = _timed(lambda: prepare_store(folder / f"prep{w}", cells, desc, n_workers=w, progress=False))
    percent = 100 * t_warm / cold[w]
    rows.append(_row("store-warm", n, "miniff store", t_warm, f"second preparation, every record a cache hit: "
                     f"{percent:.1f} % of the cold {cold[w]:.2f} s", ratio=t_warm / cold[w],
                     check=report.reused == n, detail=f"{report.reused} of {n} reused"))
    derived["warm_percent_of_cold"] = percent
    return rows, derived


def _folder_mb(path):
    return sum(f.stat().st_size for f in Path(path).iterdir()) / 1e6


def _train_rows(cells, batch_sizes, folder):
    import torch

    n = len(cells)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)   # small networks: one torch thread is fastest (FitWorkflow.run does the same)
    try:
        return _train_rows_one_thread(cells, batch_sizes, folder, n)
    finally:
        torch.set_num_threads(previous)


def _train_rows_one_thread(cells, batch_sizes, folder, n):
    from miniff.fit.minibatch import MiniBatchTrainer
    from miniff.ml import learn_cauldron
    from miniff.ml_util import simple_energy_closure
    from miniff.store import StoreDataset, normalization_from_store

    ds = StoreDataset(folder / "prep1")
    norm = normalization_from_store(ds, offset_energy=True)
    full = norm.fw(learn_cauldron(cells, _descriptors(), grad=True, normalize=False))
    rows, derived = [], {}
    net = _network()
    closure = simple_energy_closure([net], full, optimizer="adam", optimizer_kwargs={"lr": 1e-3}, w_gradients=1,
                                    per_atom=True)
    closure.optimizer_step()   # warm-up
    t_full = min(_timed(closure.optimizer_step)[0] for _ in range(3))
    rows.append(_row("store-train", n, "miniff in memory", t_full, f"one full-batch Adam step: {n / t_full:.0f} "
                     f"structures/s"))
    derived["in_memory_train_structures_per_s"] = n / t_full
    for b in batch_sizes:
        trainer = MiniBatchTrainer([_network()], ds, norm, batch_size=b, optimizer="adam",
                                   optimizer_kwargs={"lr": 1e-3}, w_gradients=1.0)
        losses = [trainer.train_epoch()]
        t = min(_timed(trainer.train_epoch)[0] for _ in range(2))
        losses.append(trainer.train_epoch())
        ok = all(np.isfinite(losses)) and losses[-1] < losses[0]
        rows.append(_row("store-train", n, f"miniff store, batch {b}", t, f"one mini-batch Adam epoch: "
                         f"{n / t:.0f} structures/s", ratio=t / t_full, check=ok,
                         detail="epoch loss " + " -> ".join(f"{v:.4g}" for v in losses)))
        derived[f"store_train_structures_per_s_batch{b}"] = n / t
    return rows, derived


_CHILD = r'''
import json, resource, sys, threading, time
limit = int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
peak = [0]
stop = False

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024

def sample():
    while not stop:
        peak[0] = max(peak[0], status("RssAnon"))
        time.sleep(0.005)

threading.Thread(target=sample, daemon=True).start()
mode, path, name, n = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
t0 = time.perf_counter()
result = {"status": "ok"}
try:
    import torch
    torch.set_num_threads(1)
    from benchmarks.bench_store import _descriptors, _network
    if mode == "store":
        from miniff.fit.minibatch import MiniBatchTrainer
        from miniff.store import StoreDataset, normalization_from_store
        ds = StoreDataset(path, name=name)
        norm = normalization_from_store(ds, offset_energy=True)
        MiniBatchTrainer([_network()], ds, norm, batch_size=32, w_gradients=1.0).train_epoch()
    else:
        import ase.io
        from benchmarks.bench_store import _cells
        from miniff.ml import learn_cauldron
        from miniff.ml_util import simple_energy_closure
        cells = _cells(ase.io.read(path, index=f":{n}"))
        data, norm = learn_cauldron(cells, _descriptors(), grad=True, norm_kwargs={"offset_energy": True})
        del cells
        simple_energy_closure([_network()], data, optimizer="adam", w_gradients=1, per_atom=True).optimizer_step()
except (MemoryError, RuntimeError) as exc:
    result = {"status": "out of memory", "error": f"{type(exc).__name__}: {str(exc)[:120]}"}
stop = True
peak[0] = max(peak[0], status("RssAnon"))
result.update(seconds=time.perf_counter() - t0, rss_anon_mb=peak[0], vm_hwm_mb=status("VmHWM"))
print("RESULT " + json.dumps(result), flush=True)
'''


def _child(mode, path, name, n, limit_mb):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(limit_mb), mode, str(path), name, str(n)],
                          capture_output=True, text=True, env=env, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"status": "error", "error": (proc.stderr or proc.stdout)[-300:], "seconds": None, "rss_anon_mb": None,
            "vm_hwm_mb": None}


def _memory_rows(data_fn, counts, limit_mb, folder):
    import ase.io

    from miniff.store import prepare_store

    n_max = max(counts)
    data = data_fn(n_max)
    xyz = folder / "cells.extxyz"
    ase.io.write(xyz, data)
    cells = _cells(data)
    del data
    rows, derived = [], {}
    for n in sorted(counts):
        report = prepare_store(folder / "mem", cells[:n], _descriptors(), name=f"n{n}", n_workers=2, progress=False)
        disk = _folder_mb(folder / "mem")
        for mode, tool in (("store", "miniff store"), ("memory", "miniff in memory")):
            r = _child(mode, folder / ("mem" if mode == "store" else "cells.extxyz"), f"n{n}", n, limit_mb)
            status = "ok" if r["status"] == "ok" else "error"
            note = (f"limit RLIMIT_DATA {limit_mb} MB; VmHWM {r['vm_hwm_mb'] or 0:.0f} MB; store {disk:.0f} MB on "
                    f"disk ({report.reused} records reused)" if mode == "store" else f"limit {limit_mb} MB")
            if r["status"] != "ok":
                note += f"; {r['status']}: {r.get('error', '')}"
            rows.append(_row("store-memory", n, tool, r["seconds"], note, peak=r["rss_anon_mb"], status=status,
                             check=r["status"] == "ok"))
            derived[f"{mode}_peak_anon_mb_{n}"] = r["rss_anon_mb"]
    return rows, derived


def run(settings, n_structures, batch_sizes, memory_counts, memory_limit_mb=2048, workers=(1, 2)):
    """Store rows (``store-prepare``, ``store-warm``, ``store-train``, ``store-memory``)."""
    del settings   # one-shot measurements: a preparation changes the store
    folder = Path(tempfile.mkdtemp(prefix="miniff-bench-store-"))
    try:
        cells = _cells(make_dataset(n_structures, (2, 2, 2)))
        rows, derived = _prepare_rows(cells, list(workers), folder)
        more_rows, more = _train_rows(cells, batch_sizes, folder)
        rows += more_rows
        derived.update(more)
        if memory_counts:
            more_rows, more = _memory_rows(lambda n: make_dataset(n, (2, 2, 2), seed=101), memory_counts,
                                           memory_limit_mb, folder)
            rows += more_rows
            derived.update(more)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows, derived
