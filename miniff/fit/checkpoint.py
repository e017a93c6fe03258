"""Atomic checkpoints of a fit.

A checkpoint is a dict of plain data (numbers, strings, lists, dicts and torch tensors) written with
``torch.save`` to a temporary file in the destination directory, flushed to disk and moved over the
destination with :func:`os.replace`.  The rename is atomic on POSIX and Windows, so a kill at any moment
leaves either the previous checkpoint or the new one, never a truncated file.  Checkpoints are read with
``torch.load(weights_only=True)``: no code is ever unpickled.
"""

from pathlib import Path

import torch

from miniff._atomic import atomic_write

__all__ = ["atomic_torch_save", "load_checkpoint", "CHECKPOINT_FORMAT"]

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


def load_checkpoint(path):
    """Read a fit checkpoint written by :func:`atomic_torch_save` (``weights_only``, no code executed).

    Parameters
    ----------
    path : str or Path
        The checkpoint file.

    Returns
    -------
    dict
        The checkpoint (keys ``format``, ``epoch``, ``networks``, ``optimizer``, ...).
    """
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint: {str(path)!r} is not a miniff fit checkpoint ({CHECKPOINT_FORMAT})")
    return data
