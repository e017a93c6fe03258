"""Mini-batch training throughput on 1 and 2 ranks (gloo, 1 torch thread and 1 OpenMP thread each), the size
and time of the per-batch all-reduce, and the estimate for 8 and 64 ranks over 10 Gb/s (``docs/distributed.md``).

Data: the 64-atom Si cells of ``bench_store`` (6 radial + 2 angular Behler functions, energies and forces) in a
descriptor store; the network of ``bench_store`` (8 -> 32 -> 32 -> 1).  Each world size runs in a subprocess
that spawns its ranks (127.0.0.1): one untimed epoch, then ``epochs`` timed epochs of mini-batch Adam, batch
``batch_size``; rank 0 times them (and, for more than one rank, a second run in which every rank keeps a batch
of ``batch_size``, global batch ``batch_size`` x ranks, the usual data-parallel use, checked against one rank with
that global batch).  Both world sizes train on the same global batches, so their loss histories
agree (the row's check, 1e-8 relative).

Rows (case ``distributed-train``): structures per second for 1 and 2 ranks (``ratio`` = speed-up of 2 ranks);
``derived`` holds the per-batch compute time of one rank, the all-reduce bytes and time, and the estimates.

GPU throughput, on a machine with GPUs (one command)::

    python -m benchmarks.bench_distributed --device cuda --ranks 1 2 --structures 2000
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._runner import Row

#: Assumptions of the estimate: per-message latency of an all-reduce step over TCP (s) and link bandwidth (B/s).
LATENCY_S = 50e-6
BANDWIDTH_BPS = 10e9 / 8


def estimate_throughput(batch_size, batch_compute_s, allreduce_bytes, ranks, latency_s=LATENCY_S,
                        bandwidth=BANDWIDTH_BPS):
    """Structures per second of ``ranks`` ranks: ``B / (t_b / R + t_ar(R))`` with a ring all-reduce
    ``t_ar(R) = 2 (R - 1) latency + 2 (R - 1) / R * bytes / bandwidth`` (``docs/distributed.md``)."""
    t_ar = 0.0 if ranks == 1 else 2 * (ranks - 1) * latency_s + 2 * (ranks - 1) / ranks * allreduce_bytes / bandwidth
    return batch_size / (batch_compute_s / ranks + t_ar)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world, port, store, batch_size, epochs, device, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch

    from benchmarks.bench_store import _network
    from miniff.fit.distributed import init_distributed
    from miniff.fit.minibatch import MiniBatchTrainer
    from miniff.store import StoreDataset, normalization_from_store

    torch.set_num_threads(1)
    ctx = init_distributed(device)
    ds = StoreDataset(store)
    norm = normalization_from_store(ds, offset_energy=True)
    trainer = MiniBatchTrainer([_network()], ds, norm, batch_size=batch_size, optimizer="adam",
                               optimizer_kwargs={"lr": 1e-3}, w_gradients=1.0, context=ctx, device=device)
    losses = [trainer.train_epoch()]   # untimed: first reads of the store, allocations
    times, cpu = [], []
    for _ in range(epochs):
        ctx.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(trainer.train_epoch())
        times.append(time.perf_counter() - t0)
        cpu.append(float(ctx.all_max([time.process_time() - c0])[0]))   # the busiest rank's CPU seconds
    n_params = sum(p.numel() for p in trainer.parameters())
    ar = None
    if ctx.distributed:   # the per-batch all-reduce alone: one float64 vector of the parameters and the loss
        flat = torch.zeros(n_params + 1, dtype=torch.float64)
        for _ in range(5):
            torch.distributed.all_reduce(flat)
        ctx.barrier()
        t0 = time.perf_counter()
        for _ in range(50):
            torch.distributed.all_reduce(flat)
        ar = (time.perf_counter() - t0) / 50
    if ctx.is_main:
        Path(out).write_text(json.dumps({"times": times, "cpu_times": cpu, "losses": losses, "n_params": n_params,
                                         "n_batches": len(trainer.sampler), "allreduce_s": ar}))
    if ctx.distributed:
        torch.distributed.destroy_process_group()


def _spawned(rank, args):
    _rank(rank, args.world, args.port, args.store, args.batch_size, args.epochs, args.device, args.out)


def measure(store, world, batch_size, epochs, device="cpu"):
    """Run ``world`` ranks in a subprocess; rank 0's timings (``times``, ``losses``, ``n_params``...)."""
    out = Path(tempfile.mkdtemp(prefix="miniff-bench-dist-")) / "r.json"
    code = [sys.executable, "-m", "benchmarks.bench_distributed", "--worker", "--world", str(world), "--port",
            str(_free_port()), "--store", str(store), "--batch-size", str(batch_size), "--epochs", str(epochs),
            "--device", device, "--out", str(out)]
    import miniff

    env = dict(os.environ, OMP_NUM_THREADS="1")
    root = Path(__file__).resolve().parents[1]
    # the miniff under test first (an installed package, or the source tree built in place), then the benchmarks;
    # run from a scratch folder so that the current folder puts no unbuilt source tree first on the path
    package_parent = Path(miniff.__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(package_parent), str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run(code, env=env, capture_output=True, text=True, timeout=3600, cwd=out.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"{world} rank(s) failed: {proc.stderr[-2000:]}")
    result = json.loads(out.read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    return result


def _prepare(n_structures, folder):
    from benchmarks.bench_store import _cells, _descriptors
    from benchmarks.bench_training import make_dataset
    from miniff.store import prepare_store

    store = Path(folder) / "store"
    prepare_store(store, _cells(make_dataset(n_structures, (2, 2, 2), seed=23)), _descriptors(), n_workers=2)
    return store


def run(settings, n_structures, batch_size=32, epochs=2, ranks=(1, 2), device="cpu"):
    """``distributed-train`` rows: structures/s of each world size in ``ranks``; the derived estimates."""
    del settings   # one run per world size: each is a whole training run
    folder = Path(tempfile.mkdtemp(prefix="miniff-bench-dist-"))
    try:
        store = _prepare(n_structures, folder)
        results = {w: measure(store, w, batch_size, epochs, device) for w in ranks}
        # the usual data-parallel use: each rank keeps the batch of one rank (global batch batch_size x ranks);
        # its loss history is checked against one rank trained on the same global batches
        per_rank = {w: (measure(store, w, batch_size * w, epochs, device), measure(store, 1, batch_size * w, epochs,
                                                                                  device)) for w in ranks if w > 1}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base = results[ranks[0]]
    t1 = min(base["times"])
    rows, derived = [], {}
    for w, r in results.items():
        t = min(r["times"])
        same = all(abs(a - b) <= 1e-8 * abs(b) for a, b in zip(r["losses"], base["losses"], strict=True))
        rows.append(Row("distributed-train", n_structures * 64, f"miniff {w} rank{'s' if w > 1 else ''}",
                        status="ok", median_s=t, runs_s=r["times"], ratio=None if w == ranks[0] else t1 / t,
                        note=f"one epoch of mini-batch Adam, batch {batch_size}: {n_structures / t:.0f} structures/s",
                        check=same, check_detail="loss history equal to 1 rank (1e-8)",
                        threads=f"{w} x (1 torch + 1 OpenMP thread), {device}"))
        derived[f"structures_per_s_{w}_ranks"] = n_structures / t
    for w, (r, ref) in per_rank.items():
        t = min(r["times"])
        same = all(abs(a - b) <= 1e-8 * abs(b) for a, b in zip(r["losses"], ref["losses"], strict=True))
        rows.append(Row("distributed-train", n_structures * 64, f"miniff {w} ranks, batch {batch_size} per rank",
                        status="ok", median_s=t, runs_s=r["times"], ratio=t1 / t,
                        note=f"one epoch of mini-batch Adam, global batch {batch_size * w}: {n_structures / t:.0f} "
                             "structures/s", check=same,
                        check_detail=f"loss history equal to 1 rank with batch {batch_size * w} (1e-8)",
                        threads=f"{w} x (1 torch + 1 OpenMP thread), {device}"))
        derived[f"speedup_{w}_ranks_batch_per_rank"] = t1 / t
    batch_s = t1 / base["n_batches"]
    nbytes = 8 * (base["n_params"] + 1)
    derived.update(batch_compute_s=batch_s, allreduce_bytes=nbytes, n_structures=n_structures, batch_size=batch_size)
    ar = [r["allreduce_s"] for r in results.values() if r["allreduce_s"] is not None]
    if ar:
        derived["allreduce_s_2_ranks_localhost"] = min(ar)
    if 2 in results:
        derived["speedup_2_ranks"] = derived["structures_per_s_2_ranks"] / derived[f"structures_per_s_{ranks[0]}_ranks"]
        # CPU seconds of an epoch, busiest rank: the speed-up the code allows when every rank has a core to itself
        # (on a shared machine the wall-clock ratio also depends on the CPU share the scheduler gives the ranks)
        derived["cpu_speedup_2_ranks"] = min(base["cpu_times"]) / min(results[2]["cpu_times"])
    for w in (8, 64):
        derived[f"estimate_structures_per_s_{w}_ranks_10gbps"] = estimate_throughput(batch_size, batch_s, nbytes, w)
    return rows, derived


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_distributed", description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--store", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--structures", type=int, default=2000, help="structures of 64 atoms (default 2000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per world size")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu", help="cpu, cuda (one GPU per rank) or auto")
    args = p.parse_args(argv)
    if args.worker:
        if args.world == 1:
            _spawned(0, args)
        else:
            import torch.multiprocessing as mp

            mp.spawn(_spawned, args=(args,), nprocs=args.world, join=True)
        return 0
    rows, derived = run(None, args.structures, args.batch_size, args.epochs, tuple(args.ranks), args.device)
    for r in rows:
        print(f"{r.tool:>16}: {r.note}  (check: {r.check})")
    print(json.dumps(derived, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
