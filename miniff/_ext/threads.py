"""Thread-count rules shared by every OpenMP kernel of miniff."""

import os

import numpy as np

from miniff._ext import kernel_module

__all__ = ["openmp_enabled", "effective_n_threads", "available_cores", "check_n_threads", "MAX_N_THREADS"]

#: Largest accepted ``n_threads``. OpenMP starts one system thread (with its own stack) per requested thread,
#: so absurd counts exhaust memory and kill the process; more threads than cores only slow the kernels down.
MAX_N_THREADS = 1024


def openmp_enabled():
    """Return True when the compiled core was built with OpenMP."""
    return kernel_module.openmp_enabled()


def available_cores():
    """Number of cores this process may run on (CPU affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def check_n_threads(n_threads, name="n_threads"):
    """Validate a thread count at the Python boundary; return it as a Python int (or None).

    Parameters
    ----------
    n_threads : int or None
        ``None`` (default), a positive count up to :data:`MAX_N_THREADS`, or a negative count (``-1`` = all
        cores, ``-2`` = all but one).
    name : str
        Argument name used in error messages.

    Raises
    ------
    TypeError
        If ``n_threads`` is not an integer (bools are refused too).
    ValueError
        If it is 0 or its magnitude exceeds :data:`MAX_N_THREADS`.
    """
    if n_threads is None:
        return None
    if isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(n_threads).__name__} ({n_threads!r})")
    n_threads = int(n_threads)
    if n_threads == 0:
        raise ValueError(f"{name}=0 is not allowed: use None for the default, or a positive count")
    if abs(n_threads) > MAX_N_THREADS:
        raise ValueError(
            f"{name}={n_threads} exceeds the maximum of {MAX_N_THREADS} threads (miniff.kernel.MAX_N_THREADS): "
            f"every OpenMP "
            f"thread is a system thread with its own stack, and this machine has {available_cores()} cores; use "
            f"None (all cores) or a count up to the number of cores"
        )
    return n_threads


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
        If ``n_threads`` is 0 or larger than :data:`MAX_N_THREADS`; TypeError if it is not an integer.
    """
    n_threads = check_n_threads(n_threads)
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
