"""Runs a small fit on ``--world`` gloo ranks started with ``torch.multiprocessing.spawn`` (127.0.0.1, a port given
by the test), for ``tests/fit/test_distributed.py``.  Every rank is given the files ``<out>/rank<r>/...`` (log,
potentials); rank 0 writes ``<out>/result.json`` with the loss history.  ``--world 1`` runs in this process
(:func:`run_rank`; the tests call it directly).

``--mode minibatch``: a MiniBatchTrainer (Adam) on the store ``--store``; ``--mode fullbatch``: a FitWorkflow
(compact L-BFGS) on ``store_cells(11)``.
"""

import argparse
import json
import os
import sys
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=("minibatch", "fullbatch", "badcell"), default="minibatch")
    p.add_argument("--store", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--batch-size", type=int, default=3)
    p.add_argument("--test-set", type=int, default=3)
    return p.parse_args(argv)


def _minibatch(args, ctx, here):
    import torch
    from support_store import store_descriptors

    from miniff import ml
    from miniff.fit.minibatch import MiniBatchTrainer
    from miniff.store import StoreDataset, normalization_from_store

    ds = StoreDataset(args.store)
    train, valid = ds.subset(range(8)), ds.subset(range(8, 11))
    norm = normalization_from_store(train, offset_energy=True)
    torch.manual_seed(3 + ctx.rank)   # different on every rank: the trainer must broadcast rank 0's networks
    nets = [ml.SequentialSoleEnergyNN(len(d), n_internal=5, n_layers=2).double()
            for _, d in sorted(store_descriptors().items())]
    if ctx.rank != 0:
        torch.manual_seed(3)
    trainer = MiniBatchTrainer(nets, train, norm, validation=valid, batch_size=args.batch_size, seed=5,
                               optimizer="adam", optimizer_kwargs={"lr": 1e-2}, w_gradients=1.0, w_l2=1e-3,
                               group_weights={"g1": 2.0}, checkpoint=args.checkpoint, device="cpu")
    hist = trainer.run(args.epochs, log_file=here / "log.jsonl", summary=ctx.distributed)
    if ctx.is_main:
        torch.save([n.state_dict() for n in nets], here / "nets.pt")
    return {"loss": [r["loss"] for r in hist], "valid": [r["energy_rmse_valid"] for r in hist],
            "resumed_from": trainer.resumed_from, "summary": trainer.summary()}


def _fullbatch(args, ctx, here):
    from support_store import store_cells, store_descriptors

    from miniff.fit.workflow import FitWorkflow

    wf = FitWorkflow(seed=0, n_threads=1)
    wf.prepare(store_cells(11), descriptors=store_descriptors(), test_set=args.test_set, forces=True,
               nn_kwargs={"n_internal": 4, "n_layers": 2},
               closure_kwargs={"optimizer": "compact_lbfgs", "optimizer_kwargs": {"max_iter": 5}, "w_l2": 1e-4,
                               "per_atom": True},
               group_weights={"g1": 2.0}, checkpoint=args.checkpoint)
    hist = wf.run(args.epochs, log_file=here / "log.jsonl", save_fn=here / "learn.pt", summary=False,
                  stall_epochs=None)
    # what each rank holds: its shard of the cells (descriptors, Jacobians and neighbour lists of those only)
    held = ctx.gather({"learn": wf.datasets["learn"].n_samples, "test": wf.datasets["test"].n_samples,
                       "lists": sum(nw is not None for nw in wf.cells_nw)})
    table = [(label, {k: float(v) for k, v in row.items()}) for label, row in wf.summary_table]
    return {"loss": [r["loss"] for r in hist], "valid": [r["loss_valid"] for r in hist],
            "records": [{k: v for k, v in r.items() if k != "time"} for r in hist], "held": held,
            "normalization": {k: _plain(v) for k, v in wf.normalization.state_dict().items()},
            "resumed_from": wf.resumed_from, "summary": wf.summary(), "table": table}


def _plain(value):
    """Tensors (in lists) as nested lists of floats, for JSON."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.tolist() if hasattr(value, "tolist") else value


def _badcell(args, ctx, here):
    """A full-batch prepare whose 7th cell has two coincident atoms: every rank writes the error it got."""
    from support_store import store_cells, store_descriptors

    from miniff.fit.workflow import FitWorkflow

    cells = store_cells(11)
    cells[6].coordinates[1] = cells[6].coordinates[0]
    try:
        FitWorkflow(seed=0, n_threads=1).prepare(cells, descriptors=store_descriptors(), test_set=3, cells_order=None)
        text = "no error"
    except Exception as exc:   # noqa: BLE001 - the test reads what each rank raised
        text = f"{type(exc).__name__}: {exc}"
    (here / "error.txt").write_text(text)
    return {"error": text}


def run_rank(args, rank=0):
    """Join the group of ``args.world`` ranks as ``rank`` (none with one rank), fit, return rank 0's result."""
    if args.world > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(args.world), LOCAL_RANK=str(rank),
                          LOCAL_WORLD_SIZE=str(args.world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.port))
    from miniff.fit.distributed import init_distributed

    ctx = init_distributed("cpu")
    assert ctx.rank == rank and ctx.world_size == args.world
    here = Path(args.out) / f"rank{rank}"
    here.mkdir(parents=True, exist_ok=True)
    result = {"minibatch": _minibatch, "fullbatch": _fullbatch, "badcell": _badcell}[args.mode](args, ctx, here)
    if ctx.is_main:
        (Path(args.out) / "result.json").write_text(json.dumps(result))
    if ctx.distributed:
        import torch

        torch.distributed.destroy_process_group()
    return result


def worker(rank, args):
    run_rank(args, rank)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests/ for support_store
    if args.world == 1:
        run_rank(args)
        return
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(args,), nprocs=args.world, join=True)


if __name__ == "__main__":
    main()
