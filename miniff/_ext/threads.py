"""Thread-count rules shared by every OpenMP kernel of miniff."""

import os

from miniff._ext import kernel_module

__all__ = ["openmp_enabled", "effective_n_threads", "available_cores"]


def openmp_enabled():
    """Return True when the compiled core was built with OpenMP."""
    return kernel_module.openmp_enabled()


def available_cores():
    """Number of cores this process may run on (CPU affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def effective_n_threads(n_threads=None):
    """Number of OpenMP threads a kernel call will use.

    Parameters
    ----------
    n_threads : int or None
        ``None`` honours ``OMP_NUM_THREADS`` (or a ``threadpoolctl`` limit) and
        otherwise uses every available core; a positive value is used as given;
        a negative value counts back from the number of cores (``-1`` = all
        cores, ``-2`` = all but one, never fewer than one).

    Returns
    -------
    int
        At least 1; always 1 when miniff was built without OpenMP.

    Raises
    ------
    ValueError
        If ``n_threads`` is 0; TypeError if it is not an integer.
    """
    if n_threads is not None:
        if isinstance(n_threads, bool) or not isinstance(n_threads, int):
            try:
                import numpy as np

                if isinstance(n_threads, np.integer):
                    n_threads = int(n_threads)
                else:
                    raise TypeError
            except TypeError:
                raise TypeError(f"n_threads must be an int or None, got {type(n_threads).__name__}") from None
        if n_threads == 0:
            raise ValueError("n_threads=0 is not allowed: use None for the default, or a positive count")
    if not openmp_enabled():
        return 1
    if n_threads is None:
        return max(1, kernel_module.openmp_max_threads())
    if n_threads < 0:
        return max(1, available_cores() + 1 + n_threads)
    return n_threads


#: Below this many pairs per thread, waking another OpenMP thread costs more than it saves.
PAIRS_PER_THREAD = 20000


def auto_n_threads(n_threads, work, per_thread=PAIRS_PER_THREAD):
    """Thread count for a kernel call over ``work`` items (e.g. pairs).

    An explicit ``n_threads`` follows :func:`effective_n_threads`. With ``None`` the default count
    is capped at one thread per ``per_thread`` items, so small systems run serially (starting a
    parallel region costs microseconds on an idle machine but milliseconds on a busy one).
    """
    threads = effective_n_threads(n_threads)
    if n_threads is None:
        threads = max(1, min(threads, int(work) // int(per_thread)))
    return threads
