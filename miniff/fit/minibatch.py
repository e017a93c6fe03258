"""Mini-batch training from a descriptor store: first-order optimizers, a learning-rate schedule, per-epoch
validation and checkpoints that resume bit for bit.

The loss of a batch ``b`` is the share of the full-batch loss of :func:`~miniff.fit.closures.energy_loss` that its
structures carry: with per-structure weights ``w_s`` (``meta["weight"]`` times any group weight),

``L_b = w_energy * sum_{s in b} w_s r_s^2 / W  +  w_gradients * sum_{s in b} w_s |G_s - G_ref_s|^2 / G
+ w_l2 * |weights|^2 / n_batches``

with ``W = sum_s w_s`` and ``G = sum_s 3 w_s n_s`` (atoms with reference forces) over the whole training set,
``r_s`` the (per-atom when ``per_atom``) energy residual.  The batch losses of one epoch sum to the full-batch
loss, and so do their gradients: one epoch of SGD with one batch is one full-batch gradient step
(:func:`~miniff.fit.closures.share_loss`).

Across several ranks (:mod:`miniff.fit.distributed`, started by ``torchrun``) the batches are the same global
batches, each split across the ranks; the ranks' gradients and losses are summed by one all-reduce per batch,
so every rank takes the step one process would take.  Validation errors are reduced across ranks; only rank 0
writes the log and the checkpoint, whose state does not depend on the number of ranks.
"""

import math
import time
from pathlib import Path

import numpy as np
import torch

from miniff.fit.checkpoint import atomic_torch_save, load_checkpoint, remove_stale_temporaries
from miniff.fit.closures import error_metrics, resolve_optimizer, share_loss
from miniff.fit.distributed import batch_to_device, current_context, resolve_device, state_to_cpu
from miniff.fit.log import FitLog
from miniff.store.dataset import EpochSampler, StoreCollate

__all__ = ["MiniBatchTrainer", "resolve_lr_schedule", "MINIBATCH_CHECKPOINT_FORMAT", "FULL_BATCH_OPTIMIZERS"]

MINIBATCH_CHECKPOINT_FORMAT = "miniff-minibatch-checkpoint-1"

#: Optimizers that need the full-batch loss (line searches, curvature pairs): not for mini-batches.
FULL_BATCH_OPTIMIZERS = ("lbfgs", "compact_lbfgs", "compact-lbfgs", "bfgs", "dense_bfgs", "auto")


#: Units of the logged errors by the first word of their key (losses and learning rates have none).
#: end of an epoch's batches (``train_epoch``)
_END = object()

_UNITS = {"energy": " eV/atom", "force": " eV/Å", "stress": " eV/Å³", "charge": " e"}


def _unit(key):
    return _UNITS.get(key.split("_")[0], "")


def resolve_lr_schedule(optimizer, lr_schedule):
    """A ``torch.optim.lr_scheduler`` for ``optimizer`` from ``{"name": class name, **kwargs}`` (None: none).

    ``name`` is any scheduler class of ``torch.optim.lr_scheduler`` (case-insensitive): ``"StepLR"`` (``step_size``,
    ``gamma``), ``"ExponentialLR"`` (``gamma``), ``"CosineAnnealingLR"`` (``T_max``), ``"ReduceLROnPlateau"``
    (stepped with the validation loss, else the training loss)...  Schedulers are stepped once per epoch.
    """
    if lr_schedule is None:
        return None
    if not isinstance(lr_schedule, dict) or "name" not in lr_schedule:
        raise ValueError(f"lr_schedule must be a mapping with a 'name' (e.g. {{name: StepLR, step_size: 10, "
                         f"gamma: 0.5}}), got {lr_schedule!r}")
    kwargs = dict(lr_schedule)
    name = str(kwargs.pop("name"))
    sched = torch.optim.lr_scheduler
    classes = {n.lower(): getattr(sched, n) for n in dir(sched) if isinstance(getattr(sched, n), type)
               and issubclass(getattr(sched, n), sched.LRScheduler | sched.ReduceLROnPlateau)
               and n not in ("LRScheduler", "_LRScheduler")}
    cls = classes.get(name.lower())
    if cls is None:
        known = sorted(c.__name__ for c in classes.values())
        raise ValueError(f"lr_schedule: unknown scheduler {name!r}; choose from {known}")
    try:
        return cls(optimizer, **kwargs)
    except TypeError as err:
        raise ValueError(f"lr_schedule: {name}: {err}") from None


def _check_int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


class MiniBatchTrainer:
    """Train networks on a :class:`~miniff.store.dataset.StoreDataset` in mini-batches.

    Parameters
    ----------
    networks : list of torch.nn.Module
        One network per species of the data set (``train.species`` order), working on normalised data.
    train : StoreDataset
        The training structures.
    normalization : miniff.ml.Normalization
        Applied to every batch (e.g. :func:`~miniff.store.statistics.normalization_from_store` of ``train``).
    validation : StoreDataset or None
        Validation structures: metrics after every epoch.
    batch_size : int
    shuffle : bool
    seed : int
        Seed of the batch order (each epoch's permutation is drawn from ``(seed, epoch)``).
    optimizer : str or callable
        A first-order ``torch.optim`` optimizer (``"adam"`` default, ``"adamw"``, ``"sgd"``...).
    optimizer_kwargs : dict or None
        E.g. ``{"lr": 1e-3, "weight_decay": 1e-5}``.
    lr_schedule : dict or None
        See :func:`resolve_lr_schedule`.
    w_energy, w_gradients, per_atom, w_l2
        As in :func:`~miniff.fit.closures.energy_loss`; ``w_gradients != 0`` fits forces (needs Jacobians).
    group_weights : dict or None
        ``{group label: weight}`` multiplying the structures' weights.
    checkpoint : str or None
        Checkpoint file: written after every epoch (atomically), resumed from when it exists.
    dtype : torch.dtype
        float64 by default; float32 halves memory and, on GPUs, runs much faster.
    context : miniff.fit.distributed.DistContext or None
        The ranks taking part (None: :func:`~miniff.fit.distributed.current_context`, i.e. the process group
        joined by :func:`~miniff.fit.distributed.init_distributed`, else one process).
    device : str, torch.device or None
        Where the networks, the loss and the Jacobian contraction run (``"cpu"``, ``"cuda"``, ``"cuda:N"``,
        ``"auto"``; None: the context's device).  Batches are collated on the CPU and moved once each.
    """

    def __init__(self, networks, train, normalization, validation=None, batch_size=32, shuffle=True, seed=0,
                 optimizer="adam", optimizer_kwargs=None, lr_schedule=None, w_energy=1.0, w_gradients=0.0,
                 per_atom=True, w_l2=0.0, group_weights=None, checkpoint=None, dtype=torch.float64, context=None,
                 device=None):
        self.networks = [networks] if isinstance(networks, torch.nn.Module) else list(networks)
        if len(self.networks) != len(train.species):
            raise ValueError(f"networks: {len(self.networks)} networks for the {len(train.species)} species "
                             f"{train.species} of the data set")
        if isinstance(optimizer, str) and optimizer.lower() in FULL_BATCH_OPTIMIZERS:
            raise ValueError(f"optimizer: {optimizer!r} needs the full-batch loss; mini-batch training uses a "
                             f"first-order optimizer ('adam', 'adamw', 'sgd'); use FitWorkflow for full-batch fits")
        if len(train) == 0:
            raise ValueError("train: the training data set is empty")
        self.forces = w_gradients != 0
        if self.forces and not train.grad:
            raise ValueError("w_gradients: the store holds no Jacobians (prepare it with grad=True)")
        self.train, self.validation, self.normalization, self.dtype = train, validation, normalization, dtype
        self.context = current_context() if context is None else context
        self.device = self.context.device if device is None else resolve_device(device, self.context.local_rank)
        for net in self.networks:
            net.to(device=self.device, dtype=dtype)
        self.loss_kwargs = dict(w_energy=w_energy, w_gradients=w_gradients, per_atom=per_atom)
        self.w_l2 = float(w_l2)
        self.group_weights = dict(group_weights or {})
        self.collate = StoreCollate(train.species, grad=self.forces, forces=self.forces,
                                    normalization=normalization, dtype=dtype)
        self.sampler = EpochSampler(len(train), _check_int("batch_size", batch_size, 1), shuffle, seed,
                                    self.context.rank, self.context.world_size)
        self.optimizer = resolve_optimizer(optimizer)(self.parameters(), **dict(optimizer_kwargs or {}))
        self.scheduler = resolve_lr_schedule(self.optimizer, lr_schedule)
        self._totals()
        self.epoch, self.history, self.wall_time = 0, [], 0.0
        self.checkpoint_path = None if checkpoint is None else Path(checkpoint)
        self.resumed_from = None
        self.torch_threads = torch.get_num_threads()
        if self.checkpoint_path is not None:
            if self.context.is_main:
                remove_stale_temporaries(self.checkpoint_path)
            self.context.barrier()
            if self.checkpoint_path.exists():
                self.load_checkpoint(self.checkpoint_path)
        self.context.broadcast_parameters(self.parameters())   # every rank starts from rank 0's networks

    def parameters(self):
        """All parameters of all networks."""
        return [p for n in self.networks for p in n.parameters()]

    def _weight(self, item_weight, group):
        return float(item_weight) * float(self.group_weights.get(group, 1.0))

    def _totals(self):
        """``W`` and ``G`` of the module docstring, from the target records only."""
        w_sum = g_sum = 0.0
        for s in range(len(self.train)):
            t, info = self.train.targets(s)
            w = self._weight(t["weight"][0], info.get("group"))
            w_sum += w
            if "energy_g" in t:
                g_sum += 3 * w * info["n_atoms"]
        if not w_sum > 0:
            raise ValueError("weights: the training structures' weights are all zero")
        if self.forces and not g_sum > 0:
            raise ValueError("w_gradients: no training structure has forces")
        self.weight_total, self.force_total = w_sum, g_sum

    # ------------------------------------------------------------------ loss
    def batch_loss(self, batch):
        """The loss ``L_b`` of a :class:`~miniff.store.dataset.Batch` (a 0-d tensor, see the module docstring);
        across ranks, this rank's share of it (the L2 term on rank 0 only)."""
        data = batch_to_device(batch.dataset, self.device)
        w = torch.tensor([self._weight(x, g) for x, g in zip(batch.weights.tolist(), batch.groups, strict=True)],
                         dtype=self.dtype, device=self.device)
        l2 = self.w_l2 / len(self.sampler) if self.context.is_main else 0.0
        return share_loss(self.networks, data, w, self.weight_total, self.force_total, l2=l2, **self.loss_kwargs)

    def loader(self, dataset, batch_size=None, num_workers=0):
        """A DataLoader of ``dataset`` in order (validation, metrics)."""
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size or self.sampler.batch_size,
                                           shuffle=False, collate_fn=self.collate, num_workers=num_workers,
                                           multiprocessing_context="spawn" if num_workers else None)

    def train_epoch(self):
        """One epoch over the training batches (resuming inside the epoch where the sampler stands); returns the
        epoch's training loss (the sum of the batch losses, before each step).  Across ranks, the next batch is
        read and collated while the gradients of the current one are summed."""
        params = self.parameters()
        total = 0.0
        parts = iter(self.sampler)   # this rank's part of each global batch (maybe empty)
        batch = self._collated(next(parts, _END))
        while batch is not _END:
            self.optimizer.zero_grad()
            loss = self.batch_loss(batch) if batch is not None else None
            if loss is not None:
                loss.backward()
            pending = self.context.start_sum_gradients(params, loss)
            batch = self._collated(next(parts, _END))
            value = pending.wait()   # the same on every rank
            if not math.isfinite(value):
                raise RuntimeError(f"the loss is not finite ({value}) at epoch {self.epoch + 1}: lower the "
                                   f"learning rate or check the data")
            self.optimizer.step()
            total += value
        return total

    def _collated(self, part):
        """The collated batch of ``part`` (indices of training structures); None for an empty part, _END for _END."""
        if part is _END:
            return _END
        return self.collate([self.train[i] for i in part]) if part else None

    def gradient(self, dataset=None):
        """Gradient of the full training loss, summed over the batches of one epoch (no step is taken); a list of
        tensors like :meth:`parameters`."""
        params = self.parameters()
        grads = [torch.zeros_like(p) for p in params]
        for batch in self.loader(self.train if dataset is None else dataset):
            g = torch.autograd.grad(self.batch_loss(batch), params, allow_unused=True)
            for acc, x in zip(grads, g, strict=True):
                if x is not None:
                    acc += x
        return grads

    def metrics(self, dataset):
        """Energy and force errors (eV/atom, eV/Å) of the networks on a StoreDataset, batch by batch (each rank
        its shard, reduced across ranks)."""
        e_sq = e_max = f_sq = f_max = 0.0
        n_e = n_f = 0
        shard = self.context.shard(len(dataset))
        for batch in (self.loader(dataset.subset(shard)) if len(shard) else ()):
            data = batch_to_device(batch.dataset, self.device)
            c = int(3 * batch.dataset.per_cell_dataset.force_mask().sum()) if self.forces else 0
            m = error_metrics(self.networks, data, self.normalization, forces=c > 0)   # a batch may have none
            b = batch.dataset.n_samples
            e_sq += m["energy_rmse"] ** 2 * b
            n_e += b
            e_max = max(e_max, m["energy_max"])
            if c:
                f_sq += m["force_rmse"] ** 2 * c
                n_f += c
                f_max = max(f_max, m["force_max"])
        e_sq, n_e, f_sq, n_f = self.context.all_sum([e_sq, n_e, f_sq, n_f])
        e_max, f_max = self.context.all_max([e_max, f_max])
        out = {"energy_rmse": math.sqrt(e_sq / n_e), "energy_max": e_max}
        if self.forces and n_f:
            out.update(force_rmse=math.sqrt(f_sq / n_f), force_max=f_max)
        return out

    # ------------------------------------------------------------------ run
    def run(self, n_epochs, log_file=None, progress=None, summary=True, validate_every=1, torch_threads=1):
        """Train until ``n_epochs`` epochs are done (counting those before a resume).

        ``torch_threads``: torch intra-op threads during the run (restored afterwards; None keeps torch's setting):
        atomic networks are small and one thread is fastest, by far on a busy machine.

        Returns the per-epoch records (``epoch``, ``time``, ``lr``, ``loss``, ``energy_rmse_valid``...; also in
        ``history`` and, with ``log_file``, in a JSON Lines log).
        """
        _check_int("n_epochs", n_epochs, 0)
        validate_every = _check_int("validate_every", validate_every, 1)
        previous = torch.get_num_threads()
        if torch_threads is not None:
            torch.set_num_threads(_check_int("torch_threads", torch_threads, 1))
        self.torch_threads = torch.get_num_threads()
        try:
            return self._run(n_epochs, log_file, progress, summary, validate_every)
        finally:
            torch.set_num_threads(previous)

    def _run(self, n_epochs, log_file, progress, summary, validate_every):
        main = self.context.is_main   # only rank 0 writes, prints and shows progress
        log = FitLog(log_file if main else None, resume_epoch=self.epoch if self.epoch > 0 else None)
        bar = None
        if progress and main:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_epochs, initial=min(self.epoch, n_epochs), desc="mini-batch fit", unit="epoch")
        try:
            while self.epoch < n_epochs:
                t0 = time.perf_counter()
                loss = self.train_epoch()
                self.epoch += 1
                rec = {"epoch": self.epoch, "lr": float(self.optimizer.param_groups[0]["lr"]), "loss": loss}
                if self.validation is not None and len(self.validation) and self.epoch % validate_every == 0:
                    rec.update({k + "_valid": v for k, v in self.metrics(self.validation).items()})
                if self.scheduler is not None:
                    if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        self.scheduler.step(rec.get("energy_rmse_valid", loss))
                    else:
                        self.scheduler.step()
                self.wall_time += time.perf_counter() - t0
                rec["time"] = round(self.wall_time, 4)
                self.history.append(log.write(rec))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3g}")
                if self.checkpoint_path is not None and main:
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
        if summary and main:
            print(self.summary(), flush=True)
        return self.history

    def summary(self):
        """A few lines: epochs, time, the last losses and validation errors."""
        lines = [f"mini-batch fit: {self.epoch} epochs of {len(self.sampler)} batches (batch size "
                 f"{self.sampler.batch_size}, {len(self.train)} structures) in {self.wall_time:.1f} s",
                 f"ran on {self.context.describe(self.torch_threads)}"]
        if self.history:
            last = self.history[-1]
            lines.append("last epoch: " + ", ".join(f"{k} {v:.4g}{_unit(k)}" for k, v in last.items()
                                                    if k not in ("epoch", "time")))
        return "\n".join(lines)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self):
        """Plain data: networks, optimizer, scheduler, sampler, epoch, history, normalisation, RNG."""
        return {"format": MINIBATCH_CHECKPOINT_FORMAT, "epoch": self.epoch, "wall_time": self.wall_time,
                "networks": [state_to_cpu(n.state_dict()) for n in self.networks],
                "optimizer": state_to_cpu(self.optimizer.state_dict()),
                "optimizer_class": type(self.optimizer).__name__,
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "sampler": self.sampler.state_dict(), "normalization": self.normalization.state_dict(),
                "descriptor_key": self.train.descriptor_key, "n_train": len(self.train),
                "torch_rng": torch.get_rng_state(), "history": [dict(r) for r in self.history]}

    def save_checkpoint(self, path=None):
        """Write the checkpoint atomically (default: ``checkpoint`` of the constructor)."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("path: no checkpoint file given")
        atomic_torch_save(self.checkpoint_state(), path)
        return path

    def load_checkpoint(self, path):
        """Restore everything :meth:`checkpoint_state` saves (checks descriptors, data size and optimizer)."""
        data = load_checkpoint(path, expected_format=MINIBATCH_CHECKPOINT_FORMAT)
        if data["descriptor_key"] != self.train.descriptor_key or data["n_train"] != len(self.train):
            raise ValueError(f"checkpoint: {str(path)!r} was written for other descriptors or another training "
                             f"set; delete it to start afresh")
        if data["optimizer_class"] != type(self.optimizer).__name__:
            raise ValueError(f"checkpoint: {str(path)!r} holds a {data['optimizer_class']} state but the trainer "
                             f"uses {type(self.optimizer).__name__}")
        if (data["scheduler"] is None) != (self.scheduler is None):
            raise ValueError(f"checkpoint: {str(path)!r} and this trainer differ in having an lr_schedule")
        for net, state in zip(self.networks, data["networks"], strict=True):
            net.load_state_dict(state)
        self.optimizer.load_state_dict(data["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(data["scheduler"])
        self.sampler.load_state_dict(data["sampler"])
        self.normalization.load_state_dict(data["normalization"])
        self.epoch, self.wall_time = int(data["epoch"]), float(data["wall_time"])
        self.history = list(data["history"])
        torch.set_rng_state(data["torch_rng"])
        self.resumed_from = self.epoch
