"""Training across processes: the distributed context of a run started by ``torchrun`` (or by a test), devices,
threads per rank, and the reductions the fits need.

A run is *distributed* when ``WORLD_SIZE > 1`` (``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``): :func:`init_distributed` then joins the process
group (``gloo`` on the CPU, ``nccl`` on CUDA devices) and every rank trains on its shard of the data.  Losses use
the denominators of the whole training set, so the sum over ranks of the shard gradients is the gradient of one
process: :meth:`DistContext.sum_gradients` adds the gradients (and the loss) of all ranks with one all-reduce
per step, every rank then takes the same optimizer step.  Only rank 0 writes files (:attr:`DistContext.is_main`).
"""

import os
from dataclasses import dataclass

import numpy as np
import torch

from miniff._ext.threads import available_cores, check_n_threads, effective_n_threads
from miniff.ml.device import resolve_device

__all__ = ["DistContext", "init_distributed", "current_context", "resolve_device", "threads_per_rank",
           "auto_torch_threads", "fit_torch_threads", "batch_to_device", "state_to_cpu", "state_to_device",
           "reduce_normalization_inputs", "ENV_VARIABLES"]

#: The environment variables of ``torchrun`` read by :func:`init_distributed`.
ENV_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _env_int(name, default, low):
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None
    if value < low:
        raise ValueError(f"environment variable {name}={value} must be >= {low}")
    return value


class _SummedGradients:
    """The pending all-reduce of :meth:`DistContext.start_sum_gradients`; ``wait()`` finishes it (once)."""

    def __init__(self, work, flat, parameters, value):
        self.work, self.flat, self.parameters, self.value = work, flat, parameters, value

    def wait(self):
        """Wait for the sums, write them into the parameters' ``.grad``; the summed loss (a float)."""
        if self.work is None:
            return self.value
        self.work.wait()
        offset = 0
        for p in self.parameters:
            n = p.numel()
            g = self.flat[offset:offset + n].reshape(p.shape).to(p.device, p.dtype)
            if p.grad is None:
                p.grad = g
            else:
                p.grad.copy_(g)
            offset += n
        self.work = None
        self.value = float(self.flat[-1])
        return self.value


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a run: ``rank`` of ``world_size`` processes, ``local_rank`` of
    ``local_world_size`` on this machine, the ``backend`` of the process group (None: one process) and the
    ``device`` the networks run on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: object = None
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        """True on rank 0, the rank that writes logs, checkpoints and potentials."""
        return self.rank == 0

    @property
    def distributed(self):
        """True when several ranks take part."""
        return self.world_size > 1

    def main_only(self, value):
        """``value`` on rank 0, None elsewhere (file names that only rank 0 writes)."""
        return value if self.is_main else None

    def shard(self, n):
        """This rank's positions among ``n`` items: contiguous, sizes differing by at most one; ``[k]`` int64."""
        return np.array_split(np.arange(int(n)), self.world_size)[self.rank]

    def split(self, items):
        """This rank's contiguous part of a sequence (``np.array_split`` order: rank 0 gets the first)."""
        return [items[i] for i in self.shard(len(items))]

    def _reduce(self, values, op):
        t = torch.as_tensor(values, dtype=torch.float64).reshape(-1).to(self._comm_device(), copy=True)
        if self.distributed:
            torch.distributed.all_reduce(t, op=op)
        return t.cpu().numpy()

    def _comm_device(self):
        return self.device if self.backend == "nccl" else torch.device("cpu")

    def all_sum(self, values):
        """The elementwise sum over ranks of a float sequence (an ndarray; the values as given on one rank)."""
        return self._reduce(values, torch.distributed.ReduceOp.SUM if self.distributed else None)

    def all_max(self, values):
        """The elementwise maximum over ranks of a float sequence (an ndarray)."""
        return self._reduce(values, torch.distributed.ReduceOp.MAX if self.distributed else None)

    def sum_gradients(self, parameters, loss=None):
        """Add the gradients (``.grad``) of ``parameters`` and the value of ``loss`` over all ranks, in place.

        A rank without a loss (an empty shard of a batch) passes ``loss=None`` and contributes zeros; every
        rank must call this the same number of times.  Returns the summed loss (a float).  With one rank
        nothing is communicated and the gradients stay as they are.
        """
        return self.start_sum_gradients(parameters, loss).wait()

    def start_sum_gradients(self, parameters, loss=None):
        """:meth:`sum_gradients` in two halves: start the all-reduce and return a handle whose ``wait()`` puts the
        summed gradients into ``.grad`` and returns the summed loss.  Work that does not touch the gradients
        (reading the next batch) can run in between, while the sums travel."""
        value = 0.0 if loss is None else float(loss.detach())
        if not self.distributed:
            return _SummedGradients(None, None, (), value)
        parameters = list(parameters)
        comm = self._comm_device()
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(comm, torch.float64)
                 for p in parameters]
        flat = torch.cat(parts + [torch.tensor([value], dtype=torch.float64, device=comm)])
        return _SummedGradients(torch.distributed.all_reduce(flat, async_op=True), flat, parameters, value)

    def reduce_sums(self, sums):
        """A dict of floats summed over the ranks, keys ending in ``_max`` by their maximum (the partial sums of
        :func:`miniff.fit.metrics.error_sums`); every rank must pass the same keys."""
        keys = sorted(sums)
        big = [k for k in keys if k.endswith("_max")]
        add = [k for k in keys if not k.endswith("_max")]
        out = dict(zip(add, (float(x) for x in self.all_sum([sums[k] for k in add])), strict=True)) if add else {}
        if big:
            out.update(zip(big, (float(x) for x in self.all_max([sums[k] for k in big])), strict=True))
        return {k: out[k] for k in sums}

    def gather(self, obj):
        """The list of every rank's ``obj`` (picklable plain data), in rank order; ``[obj]`` with one rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast_parameters(self, parameters):
        """Give every rank rank 0's values of ``parameters`` (in place; nothing with one rank)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for p in parameters:
                t = p.data.to(self._comm_device())
                torch.distributed.broadcast(t, 0)
                p.data.copy_(t)

    def barrier(self):
        """Wait for every rank (nothing with one rank)."""
        if self.distributed:
            torch.distributed.barrier()

    def describe(self, torch_threads=None, omp_threads=None):
        """``"2 ranks x 1 torch thread (OpenMP 1), cpu"``: for summaries."""
        text = f"{self.world_size} rank{'s' if self.world_size > 1 else ''}"
        if torch_threads is not None:
            text += f" x {torch_threads} torch thread{'s' if torch_threads != 1 else ''}"
        if omp_threads is not None:
            text += f" (OpenMP {omp_threads})"
        return f"{text}, {self.device}"


def current_context(device="cpu"):
    """The context of this process: from the joined process group when there is one, else a single process.

    ``device`` as in :func:`resolve_device` (``"cuda"`` = the GPU of ``LOCAL_RANK``).
    """
    local_rank = _env_int("LOCAL_RANK", 0, 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", 1, 1)
    dev = resolve_device(device, local_rank)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        return DistContext(dist.get_rank(), world, local_rank, min(local_world, world), dist.get_backend(), dev)
    return DistContext(device=dev)


def init_distributed(device="cpu", backend=None, timeout_s=1800):
    """Join the process group of a ``torchrun`` launch (``WORLD_SIZE > 1``) and return the :class:`DistContext`.

    Without ``WORLD_SIZE`` (or with 1) nothing is joined: a single-process context.  An already joined group (a
    test's ``init_process_group``) is used as it is.

    Parameters
    ----------
    device : str or torch.device
        See :func:`resolve_device`; ``"cuda"`` on rank ``LOCAL_RANK`` is ``cuda:LOCAL_RANK``.
    backend : str or None
        ``"gloo"`` (default on the CPU) or ``"nccl"`` (default on CUDA).
    timeout_s : float
        Seconds a collective waits for the other ranks before failing.

    Raises
    ------
    ValueError
        Malformed ``torchrun`` variables, ``RANK >= WORLD_SIZE``, or no ``MASTER_ADDR``/``MASTER_PORT``.
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return current_context(device)
    world = _env_int("WORLD_SIZE", 1, 1)
    if world == 1:
        return current_context(device)
    rank = _env_int("RANK", None, 0)
    if rank is None or rank >= world:
        raise ValueError(f"environment: WORLD_SIZE={world} needs RANK in [0, {world}) (start with torchrun)")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise ValueError(f"environment: WORLD_SIZE={world} but {', '.join(missing)} not set (start with torchrun, "
                         f"or set them to the address and a free port of rank 0)")
    dev = resolve_device(device, _env_int("LOCAL_RANK", 0, 0))
    if backend is None:
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    import datetime

    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=float(timeout_s)))
    return current_context(device)


def threads_per_rank(context, n_threads=None):
    """OpenMP threads of one rank: ``n_threads`` when given (``miniff.kernel`` rules), else the count set by
    ``OMP_NUM_THREADS`` when it is set (torchrun sets it to 1 for several ranks per machine), else the cores of
    this process divided by the ranks on this machine (at least 1)."""
    n_threads = check_n_threads(n_threads)
    if n_threads is not None or os.environ.get("OMP_NUM_THREADS"):
        return effective_n_threads(n_threads)
    return max(1, available_cores() // max(1, context.local_world_size))


def _moved_copy(obj, device):
    """A shallow copy of a dataset container or Jacobian with every tensor field on ``device`` (caches, which
    refer to the old tensors, are left out)."""
    from miniff.ml.jacobian import SparseJacobian

    out = object.__new__(type(obj))
    for key, value in obj.__dict__.items():
        if key.endswith("_cache"):
            continue
        if isinstance(value, torch.Tensor):
            value = value.to(device)
        elif isinstance(value, SparseJacobian):
            value = _moved_copy(value, device)
        out.__dict__[key] = value
    return out


def auto_torch_threads(workflow):
    """The torch threads of ``FitWorkflow.run(torch_threads="auto")``.

    None (torch's setting, all cores by default) for a force fit in one process on a machine whose 1-minute
    load average is below half the cores this process may use: the per-pair Jacobian products of force fits are
    large enough to share (1.5-1.7x faster with 2 threads on 2 idle cores).  1 otherwise: for an energy-only fit
    (small networks: threads mostly wait on each other), for each rank of a ``torchrun`` fit (the ranks share
    the cores) and on a busy machine, where threads that wait for each other cost several times the CPU time
    and the wall time of one (a force fit on 2 threads at a load average of 20 on 2 cores: 6x the wall time).
    """
    context = getattr(workflow, "context", None)
    if (context is not None and context.distributed) or not getattr(workflow, "forces", False):
        return 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):   # not available on this platform
        load = 0.0
    return None if load < available_cores() / 2 else 1


def fit_torch_threads(workflow, torch_threads):
    """``FitWorkflow.run``'s ``torch_threads`` checked and resolved: ``"auto"`` through :func:`auto_torch_threads`,
    None or a positive integer as given; anything else a ValueError naming ``torch_threads``."""
    if torch_threads == "auto":
        return auto_torch_threads(workflow)
    if torch_threads is not None and (isinstance(torch_threads, bool) or not isinstance(torch_threads, int)
                                      or torch_threads < 1):
        raise ValueError(f"torch_threads must be 'auto', None or a positive integer, got {torch_threads!r}")
    return torch_threads


def batch_to_device(data, device):
    """A ``miniff.ml.Dataset`` with every tensor (values, masks, Jacobian indices, stresses, volumes, strain
    derivatives) on ``device``; the same object when it is already there (descriptors are computed on the CPU
    and moved once per batch, or once per fit for full-batch fits)."""
    from miniff.ml.datasets import Dataset

    device = torch.device(device)
    if data.per_cell_dataset.energy.device == device:
        return data
    return Dataset(_moved_copy(data.per_cell_dataset, device),
                   *(_moved_copy(d, device) for d in data.per_point_datasets))


def state_to_cpu(state):
    """A copy of a (nested) state dict with every tensor on the CPU: what checkpoints and saved files hold,
    whatever device trained."""
    return state_to_device(state, "cpu")


def state_to_device(state, device):
    """A copy of a (nested) state dict (dicts, lists, tuples) with every tensor detached and on ``device``."""
    if isinstance(state, torch.Tensor):
        return state.detach().to(device)
    if isinstance(state, dict):
        return {k: state_to_device(v, device) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(state_to_device(v, device) for v in state)
    return state


def _sharded_closure_class():
    from miniff.fit.closures import SimpleClosure, energy_loss, loss_result, share_loss

    class ShardedClosure(SimpleClosure):
        """A :class:`~miniff.fit.closures.SimpleClosure` of :func:`~miniff.fit.closures.energy_loss` whose
        dataset is this rank's shard of the learning set: the shard's loss uses the denominators of the whole set
        (:func:`~miniff.fit.closures.share_loss`), and loss and gradients are summed over the ranks, so every
        rank sees the full-batch loss and gradient and takes the same optimizer steps as one process."""

        def _share(self, dataset, weights):
            totals = self._totals(dataset, weights)   # collective: also on a rank with an empty part
            if dataset.n_samples == 0:
                return None
            l2 = self.loss_function_kwargs.get("w_l2", 0) if self.context.is_main else 0.0
            kw = {k: self.loss_function_kwargs.get(k, d) for k, d in
                  (("w_energy", 1), ("w_gradients", 0), ("per_atom", False))}
            return share_loss(self.networks, dataset, weights, *totals, l2=l2, **kw)

        def _totals(self, dataset, weights):
            """``(W, G)`` of the whole data set whose shard ``dataset`` is (summed over the ranks; kept)."""
            cache = self.__dict__.setdefault("_totals_cache", {})
            if id(dataset) not in cache:
                local = [float(weights.sum()), 0.0]
                if self.loss_function_kwargs.get("w_gradients", 0):
                    local[1] = float((weights * 3 * dataset.per_cell_dataset.force_mask().sum(dim=1)).sum())
                cache[id(dataset)] = (dataset, tuple(float(x) for x in self.context.all_sum(local)))
            return cache[id(dataset)][1]

        def loss(self, dataset=None, save=True):
            """The loss of a data set split across the ranks (default: the learning set, with its weights; any
            other: this rank's shard of it, weights 1), summed over the ranks: a ``loss_result`` without
            components.  Every rank must call it."""
            if dataset is None or dataset is self.dataset:
                dataset, weights, save = self.dataset, self.shard_weights, save
            else:
                weights, save = dataset.per_cell_dataset.energy.new_ones(dataset.n_samples), False
            local = self._share(dataset, weights)
            value = self.context.all_sum([0.0 if local is None else float(local.detach())])[0]
            result = loss_result("total", torch.tensor(value, dtype=torch.float64), None, None, None)
            if save:
                self.last_loss = result
            return result

        def propagate(self, dataset=None):
            """Zero the gradients, back-propagate this rank's share and sum loss and gradients over the ranks."""
            self.optimizer.zero_grad()
            local = self._share(self.dataset, self.shard_weights)
            if local is not None:
                local.backward()
            value = self.context.sum_gradients(self.learning_parameters(), local)
            if not np.isfinite(value):
                raise RuntimeError(f"the loss is not finite ({value}): lower the learning rate or check the data")
            self.last_loss = loss_result("total", torch.tensor(value, dtype=torch.float64), None, None, None)
            return self.last_loss.loss_value

        __call__ = propagate

        def last_rmse(self):
            """None: the summed loss has no per-term parts (convergence is checked on the epoch's metrics)."""
            return None

    ShardedClosure.plain_loss = staticmethod(energy_loss)
    return ShardedClosure


def shard_closure(closure, context):
    """A copy of ``closure`` (an :func:`~miniff.fit.closures.energy_loss` closure with the default criterion, whose
    dataset and ``weights`` are this rank's shard of the learning set) whose loss and gradients are summed over
    the ranks of ``context``, with the denominators of the whole set (same optimizer object, same networks).

    Raises
    ------
    ValueError
        A closure whose loss cannot be split (another loss function, a criterion, per-atom energies).
    """
    cls = _sharded_closure_class()
    kw = closure.loss_function_kwargs
    if closure.loss_function is not cls.plain_loss or closure.criterion is not None or kw.get("energies_p"):
        raise ValueError("closure: training across ranks needs the default loss (energy_loss, no criterion, no "
                         "per-atom energies)")
    data = closure.dataset
    like = data.per_cell_dataset.energy   # the weights take its dtype and device
    w = like.new_ones(data.n_samples) if kw.get("weights") is None else torch.as_tensor(kw["weights"]).to(like)
    out = cls.__new__(cls)
    out.__dict__.update(closure.__dict__)
    out.context, out.shard_weights = context, w.reshape(-1)
    return out


def reduce_normalization_inputs(inputs, context, positions, n):
    """The :class:`~miniff.ml.normalization.NormalizationInputs` of a data set of ``n`` structures held in shards by
    the ranks of ``context``, from this rank's ``inputs`` of its structures at ``positions`` ``[k]`` (int):
    energies and atom counts placed and summed, ranges by their extremes, charge means by their sums.  Every rank
    gets the same result, equal to the inputs of the whole set (without ``points``: no PCA)."""
    from miniff.ml.normalization_inputs import NormalizationInputs

    t = lambda a: torch.as_tensor(a, dtype=inputs.dtype)  # noqa: E731
    positions = np.asarray(positions, dtype=np.int64)

    def placed(x):   # [k, c] of this rank -> [n, c] of all ranks
        full = np.zeros((n, x.shape[1]))
        full[positions] = x.detach().double().cpu().numpy()
        return t(context.all_sum(full).reshape(n, -1))

    def extremes(pair, size, shape=()):   # (lo, hi) or None -> the range over all ranks, None when no rank has one
        v = np.full(2 * size, -np.inf) if pair is None else np.concatenate(
            [-np.asarray(pair[0], dtype=np.float64).reshape(-1), np.asarray(pair[1], dtype=np.float64).reshape(-1)])
        v = context.all_max(v)
        return (t(-v[:size]).reshape(shape), t(v[size:]).reshape(shape)) if np.all(np.isfinite(v)) else None

    features = [extremes(r, f, (f,)) for r, f in zip(inputs.features_range, inputs.n_features, strict=True)]
    charges = []
    for c in inputs.charges:
        if c is None:
            charges.append(None)
            continue
        q_min, q_max, q_mean, count = (float(x) for x in c)
        lo_hi = extremes((q_min, q_max) if count else None, 1)
        total, count = context.all_sum([q_mean * count, count])
        charges.append((lo_hi[0], lo_hi[1], t(total / count), int(count)) if count else (0.0, 0.0, 0.0, 0))
    return NormalizationInputs(placed(inputs.energy), placed(inputs.counts).to(inputs.counts.dtype),
                               inputs.has_energy_g, extremes(inputs.energy_g_range, 1), list(inputs.n_features),
                               list(inputs.tags), features, charges, None, inputs.dtype)


def is_main(workflow):
    """True unless ``workflow`` has a ``context`` of a rank other than 0 (the rank that writes files)."""
    context = getattr(workflow, "context", None)
    return context is None or context.is_main


def join_ranks(workflow, device="cpu"):
    """Give a fit workflow its :class:`DistContext` (``workflow.context``, joining the ``torchrun`` process
    group) and, when it set none, the OpenMP threads of one rank (``workflow.n_threads``)."""
    workflow.context = init_distributed(device)
    if workflow.context.distributed and getattr(workflow, "n_threads", None) is None:
        workflow.n_threads = threads_per_rank(workflow.context)
    return workflow.context
