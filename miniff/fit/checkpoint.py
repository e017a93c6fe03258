"""Atomic checkpoints of a fit.

A checkpoint is a dict of plain data (numbers, strings, lists, dicts and torch tensors) written with
``torch.save`` to a temporary file in the destination directory, flushed to disk and moved over the
destination with :func:`os.replace`.  The rename is atomic on POSIX and Windows, so a kill at any moment
leaves either the previous checkpoint or the new one, never a truncated file.  Checkpoints are read with
``torch.load(weights_only=True)``: no code is ever unpickled.
"""

import hashlib
import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from miniff._atomic import atomic_write

__all__ = ["atomic_torch_save", "load_checkpoint", "descriptor_fingerprint",
           "CHECKPOINT_FORMAT", "CheckpointError", "check_fit_checkpoint",
           "remove_stale_temporaries"]


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; ``kind`` says why: ``"folder"``, ``"corrupt"`` (damaged or truncated),
    ``"not a checkpoint"`` (another kind of file) or ``"unsafe"`` (it holds code or objects other than plain
    data, which are never loaded)."""

    def __init__(self, path, kind, detail):
        self.path = str(path)
        self.kind = kind
        super().__init__(f"checkpoint {self.path!r}: {detail}")

CHECKPOINT_FORMAT = "miniff-fit-checkpoint-1"


def atomic_torch_save(obj, path):
    """Write ``obj`` with ``torch.save`` to ``path`` atomically (temporary file + ``os.replace``).

    Parameters
    ----------
    obj : object
        Plain data: dicts, lists, numbers, strings and tensors (so that ``weights_only`` loading works).
    path : str or Path
        The destination; its directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path, expected_format=CHECKPOINT_FORMAT):
    """Read a fit checkpoint written by :func:`atomic_torch_save` (``weights_only``, no code executed).

    Parameters
    ----------
    path : str or Path
        The checkpoint file.
    expected_format : str
        The ``format`` tag the file must hold (default: a fit checkpoint; the active-learning workflow has its
        own).

    Returns
    -------
    dict
        The checkpoint (keys ``format``, ``epoch``, ``networks``, ``optimizer``, ...).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    CheckpointError
        (a ``ValueError``) naming the file and the kind of problem: a folder, a corrupt or truncated file,
        a file that is not a checkpoint, or an unsafe file (code inside; never executed).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(path, "folder", "is a folder, not a checkpoint file (give the file, e.g. fit.ckpt)")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint: no such file {str(path)!r}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(path, "corrupt", f"cannot be read ({e.strerror or e})") from None
    try:
        with warnings.catch_warnings():  # a plain pickle is refused below; torch's protocol remark adds nothing
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found or (head.startswith(b"\x80") and _pickle_has_code(path)):
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(path, "unsafe", f"holds code or objects other than plain data{what} (tensors, "
                                  f"numbers, strings, lists, dicts only); such files are never loaded") from None
        raise CheckpointError(path, *_damaged(head)) from None
    except (RuntimeError, EOFError, IndexError, KeyError, ValueError, TypeError, AttributeError, OverflowError,
            MemoryError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as e:
        kind, detail = _damaged(head)
        raise CheckpointError(path, kind, f"{detail} ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        kind = "fit checkpoint" if expected_format == CHECKPOINT_FORMAT else "checkpoint"
        raise CheckpointError(path, "not a checkpoint", f"is not a miniff {kind} ({expected_format}): it holds "
                              f"{type(data).__name__} data without that format tag")
    return data


_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


def _pickle_has_code(path, limit=64 * 2**20):
    """True when a plain pickle file names importable objects (read with ``pickletools``, never executed)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
        return any(op.name in _CODE_OPCODES for op, _, _ in pickletools.genops(data))
    except Exception:  # not a readable pickle: damaged rather than unsafe
        return False


def _damaged(head):
    """``(kind, detail)`` for a file ``torch.load`` could not read, from its first bytes."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return "corrupt", "is damaged or truncated (a torch.save file that cannot be read to its end)"
    return "not a checkpoint", "is not a checkpoint (not a torch.save file)"


#: Entries of a fit checkpoint and their types (``FitWorkflow.checkpoint_state``).
FIT_ENTRIES = {"epoch": int, "wall_time": (int, float), "networks": list, "optimizer": dict, "optimizer_class": str,
               "normalization": dict, "best": (dict, type(None)), "stale_epochs": int, "descriptors": str,
               "n_cells": dict, "split": str, "torch_rng": torch.Tensor, "history": list}


def check_fit_checkpoint(data, path):
    """Raise ``CheckpointError`` (kind ``"corrupt"``) unless ``data`` has every entry of a fit checkpoint with
    the right type (:data:`FIT_ENTRIES`), naming the file and the entry."""
    missing = [k for k in FIT_ENTRIES if k not in data]
    if missing:
        raise CheckpointError(path, "corrupt", f"is a miniff fit checkpoint without the entries {missing}")
    for key, kind in FIT_ENTRIES.items():
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise CheckpointError(path, "corrupt", f"entry {key!r} is a {type(value).__name__}, not a fit checkpoint "
                                  f"value")
    if data["epoch"] < 0 or data["stale_epochs"] < 0:
        raise CheckpointError(path, "corrupt", f"negative epoch counters ({data['epoch']}, {data['stale_epochs']})")


def remove_stale_temporaries(path):
    """Delete temporary files an interrupted write of checkpoint ``path`` left behind (``.<name>.*.tmp``).

    :func:`atomic_torch_save` writes to such a file and renames it over ``path``; a kill before the rename
    leaves it behind. Call this only when no other process writes the same checkpoint.

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    removed = []
    if not folder.is_dir():
        return removed
    for stale in folder.glob(f".{path.name}.*.tmp"):
        try:
            os.unlink(stale)
            removed.append(stale)
        except OSError:  # pragma: no cover - vanished or not ours
            pass
    return removed


def descriptor_fingerprint(descriptors):
    """A hash of the descriptor set (species, tags, families and parameters)."""
    items = []
    for species in sorted(descriptors):
        for d in descriptors[species]:
            params = {k: np.asarray(v).tolist() for k, v in d.get_all_parameters().items()} \
                if hasattr(d, "get_all_parameters") else {}
            family = getattr(getattr(d, "family", None), "tag", None)
            items.append([species, d.tag, family, params])
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()
