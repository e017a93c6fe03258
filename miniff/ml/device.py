"""Devices of torch computations: :func:`resolve_device` turns ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``
into a ``torch.device`` and refuses, with a clear ``ValueError``, a GPU that torch does not see.  Used by the
fits (``miniff.fit``) and by NN potential evaluation (:meth:`miniff.ml.NNPotential.set_device`)."""

import torch

__all__ = ["resolve_device"]


def resolve_device(device="cpu", local_rank=0):
    """A ``torch.device`` from ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a ``torch.device``.

    ``"cuda"`` means the GPU of this rank (``cuda:local_rank``, cycling over the visible GPUs); ``"auto"`` is that
    GPU when torch sees one, else the CPU.

    Raises
    ------
    ValueError
        An unknown device, or CUDA requested when torch sees no GPU (or not that many).
    """
    if device is None:
        device = "cpu"
    if isinstance(device, str) and device.strip().lower() == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: torch sees no CUDA GPU on this machine (torch {torch.__version__}, "
                         f"built with CUDA {torch.version.cuda}); use device: cpu (or auto)")
    count = torch.cuda.device_count()
    index = dev.index if dev.index is not None else int(local_rank) % count
    if index >= count:
        raise ValueError(f"device={device!r}: this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)
