"""Filling a :class:`~miniff.store.lmdb_store.DescriptorStore`: descriptors, sparse Jacobians and targets of cells.

Every structure gives two records in the store:

- its **descriptor record**, keyed by ``record_key(cell, descriptor_set_key(descriptors))``: per species ``s``
  of the descriptor set the arrays ``f:s`` (features ``[n_s, F_s]``), ``a:s`` (indices of those atoms in the
  cell ``[n_s]``) and, with ``grad``, the sparse Jacobian of ``miniff.ml.descriptor_data.cell_descriptor_data``:
  ``pe:s`` (point ``[E]``), ``ae:s`` (atom ``[E]``), ``j:s`` (values ``[E, F_s, 3]``, 1/Å);
- its **target record**, keyed by a hash of the descriptor key and the targets: ``energy [1]`` eV, ``weight
  [1]``, and when present ``energy_g [N, 3]`` eV/Å (minus ``meta["forces"]``), ``stress [6]`` eV/Å³,
  ``charges [N]`` e; ``info`` holds ``n_atoms`` and ``group``.

Descriptor records are the expensive part and are reused whenever the same structure meets the same descriptor
set (a cache hit); target records are cheap and follow the current ``meta``.  Records are written in
transactions of a few structures each: a killed preparation keeps every committed record, and running it again
computes only what is missing.  Descriptors are computed by ``n_workers`` processes (one OpenMP thread each)
while this process writes.
"""

import concurrent.futures
import hashlib
import multiprocessing
import time
from dataclasses import dataclass

import numpy as np

from miniff.ml.descriptor_data import (
    cell_descriptor_data,
    check_descriptors,
    descriptors_cutoff,
    progress_bar,
    species_of,
    wrap_cells,
)
from miniff.store.keys import descriptor_set_key, record_key
from miniff.store.lmdb_store import DescriptorStore
from miniff.store.records import encode_record

__all__ = ["prepare_store", "PreparationReport", "descriptor_record", "target_record"]

#: A transaction is committed after this many structures, this many bytes or this many seconds, whichever comes
#: first (each commit flushes to disk; a killed preparation loses at most the work of one transaction).
COMMIT_EVERY = 256
COMMIT_BYTES = 64 << 20
COMMIT_SECONDS = 1.0


@dataclass
class PreparationReport:
    """What :func:`prepare_store` did: structures in the data set, descriptor records computed and reused (cache
    hits), target records written, seconds, workers, and the seconds until the first computed record arrived
    (with worker processes: mostly their start, i.e. importing miniff and torch)."""

    n_structures: int
    computed: int
    reused: int
    targets_written: int
    seconds: float
    n_workers: int
    first_record_seconds: float = 0.0

    def __str__(self):
        rate = self.computed / self.seconds if self.seconds > 0 else float("inf")
        return (f"store: {self.n_structures} structures, {self.computed} computed ({rate:.1f}/s with "
                f"{self.n_workers} worker(s)), {self.reused} reused from the cache, {self.targets_written} target "
                f"records written, {self.seconds:.2f} s")


def descriptor_record(cell, descriptors, grad=True, n_threads=None):
    """The descriptor record (bytes) of one cell (see the module docstring).

    Parameters
    ----------
    cell : Cell or NeighborWrapper
    descriptors : dict
        ``{species: [descriptor potentials]}`` (checked).
    grad : bool
        Also store the sparse Jacobian.
    n_threads : int or None
    """
    nw = wrap_cells([cell], descriptors_cutoff(descriptors))[0]
    arrays = {}
    for s in sorted(descriptors):
        f, jac, atoms = cell_descriptor_data(nw, descriptors[s], s, grad=grad, n_threads=n_threads)
        arrays[f"f:{s}"] = f
        arrays[f"a:{s}"] = atoms
        if grad:
            arrays[f"pe:{s}"], arrays[f"ae:{s}"], arrays[f"j:{s}"] = jac
    return encode_record(arrays, {"n_atoms": int(len(species_of(nw))), "grad": bool(grad)})


def _target_arrays(cell, s):
    meta = cell.meta
    n = len(species_of(cell))
    if "total-energy" not in meta:
        raise KeyError(f"cells[{s}].meta has no 'total-energy'")
    arrays = {"energy": np.asarray(meta["total-energy"], dtype=float).reshape(1),
              "weight": np.asarray(meta.get("weight", 1.0), dtype=float).reshape(1)}
    if "forces" in meta:
        f = np.asarray(meta["forces"], dtype=float)
        if f.shape != (n, 3):
            raise ValueError(f"cells[{s}].meta['forces'] must have shape ({n}, 3), got {f.shape}")
        arrays["energy_g"] = -f
    if "stress" in meta:
        arrays["stress"] = np.asarray(meta["stress"], dtype=float).reshape(-1)
    if "charges" in meta:
        q = np.asarray(meta["charges"], dtype=float).reshape(-1)
        if len(q) != n:
            raise ValueError(f"cells[{s}].meta['charges'] must have {n} entries, got {len(q)}")
        arrays["charges"] = q
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            raise ValueError(f"cells[{s}]: {name} contains NaN or inf")
    if not arrays["weight"][0] >= 0:
        raise ValueError(f"cells[{s}].meta['weight'] must be >= 0, got {arrays['weight'][0]}")
    group = meta.get("group")
    return arrays, {"n_atoms": n, "group": None if group is None else str(group)}


def target_record(cell, descriptor_key, s=0, key=None):
    """``(key, bytes)`` of the target record of ``cells[s]`` (see the module docstring); ``key``: its descriptor
    record key when known."""
    arrays, info = _target_arrays(cell, s)
    data = encode_record(arrays, info)
    key = record_key(cell, descriptor_key) if key is None else key
    return hashlib.blake2b(b"targets" + descriptor_key.encode() + key + data[:-32], digest_size=32).digest(), data


_WORKER = {}


def _worker_init(descriptors, grad):
    _WORKER.update(descriptors=descriptors, grad=grad)


def _worker_record(cell):
    return descriptor_record(cell, _WORKER["descriptors"], _WORKER["grad"], n_threads=1)


def prepare_store(path, cells, descriptors, name="default", grad=True, n_workers=1, progress=None,
                  on_commit=None, commit_every=COMMIT_EVERY):
    """Compute (or reuse) the records of ``cells`` in the store at ``path`` and save them as data set ``name``.

    Parameters
    ----------
    path : str, Path or DescriptorStore
        The store folder (created if needed).
    cells : list of Cell or NeighborWrapper
        Structures with ``meta["total-energy"]`` (eV) and optionally ``meta["forces"]`` ``[N, 3]`` eV/Å,
        ``meta["stress"]`` ``[6]`` eV/Å³, ``meta["charges"]`` ``[N]`` e, ``meta["group"]``, ``meta["weight"]``.
    descriptors : dict
        ``{species: [descriptor potentials]}``; every species of the cells needs an entry.
    name : str
        Name of the data set (its ordered list of records) in the store.
    grad : bool
        Store the sparse Jacobians (needed for force training).
    n_workers : int
        Processes computing descriptors (1: in this process, with the OpenMP kernels).
    progress : bool or None
        Show a progress bar (None: for many structures on a terminal).
    on_commit : callable or None
        ``on_commit(n_done, n_missing)`` after every committed transaction.
    commit_every : int
        Most structures per transaction (a transaction is also committed after :data:`COMMIT_BYTES` bytes or
        :data:`COMMIT_SECONDS` seconds).

    Returns
    -------
    PreparationReport
    """
    t0 = time.perf_counter()
    descriptors = check_descriptors(descriptors)
    cells = list(cells)
    if not cells:
        raise ValueError("cells must not be empty")
    if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
    if not isinstance(commit_every, int) or commit_every < 1:
        raise ValueError(f"commit_every must be a positive integer, got {commit_every!r}")
    present = sorted({str(x) for c in cells for x in species_of(c)})
    missing_species = [x for x in present if x not in descriptors]
    if missing_species:
        raise KeyError(f"descriptors has no entry for species {missing_species} present in the cells "
                       f"(keys: {sorted(descriptors)})")
    store = path if isinstance(path, DescriptorStore) else DescriptorStore(path)
    try:
        dkey = descriptor_set_key(descriptors)
        keys = [record_key(c, dkey) for c in cells]
        targets = [target_record(c, dkey, s, keys[s]) for s, c in enumerate(cells)]
        have_d = store.has(keys)
        have_t = store.has([k for k, _ in targets])
        todo = sorted({keys[s]: s for s in range(len(cells)) if not have_d[s]}.values())
        new_targets = [targets[s] for s in range(len(cells)) if not have_t[s]]
        if new_targets:
            for k in range(0, len(new_targets), 256):
                store.put_many(new_targets[k:k + 256])
        first = _compute(store, cells, keys, todo, descriptors, grad, n_workers, progress, on_commit, commit_every)
        species = sorted(descriptors)
        store.put_index(name, {"descriptor_key": dkey, "species": species, "grad": bool(grad),
                               "n_features": [len(descriptors[s]) for s in species],
                               "keys": [k.hex() for k in keys], "targets": [k.hex() for k, _ in targets]})
    finally:
        if not isinstance(path, DescriptorStore):
            store.close()
    return PreparationReport(len(cells), len(todo), len(cells) - len(todo), len(new_targets),
                             time.perf_counter() - t0, n_workers, 0.0 if first is None else first - t0)


def _compute(store, cells, keys, todo, descriptors, grad, n_workers, progress, on_commit, commit_every):
    """Compute and commit the records ``todo``; return the ``perf_counter`` time of the first one (or None)."""
    if not todo:
        return None
    first = None
    pending, done, size, last = [], 0, 0, time.perf_counter()

    def commit():
        nonlocal pending, done, size, last
        store.put_many(pending)
        done += len(pending)
        pending, size, last = [], 0, time.perf_counter()
        if on_commit is not None:
            on_commit(done, len(todo))

    if n_workers == 1:
        results = (descriptor_record(cells[s], descriptors, grad) for s in todo)
        pool = None
    else:
        pool = concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                                                      initializer=_worker_init, initargs=(descriptors, grad))
        results = pool.map(_worker_record, [cells[s] for s in todo], chunksize=max(1, min(8, len(todo) // (
            4 * n_workers))))
    try:
        for s, data in zip(todo, progress_bar(results, len(todo), progress, "store"), strict=True):
            if first is None:
                first = time.perf_counter()
            pending.append((keys[s], data))
            size += len(data)
            if len(pending) >= commit_every or size >= COMMIT_BYTES or time.perf_counter() - last >= COMMIT_SECONDS:
                commit()
        if pending:
            commit()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return first
