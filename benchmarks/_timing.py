"""Timing and memory measurement shared by every case.

Method (the same for every row):

1. every tool's callable is run once untimed (warm-up, caches, lazy imports); its output is kept for the
   correctness check of the case;
2. ``warmup`` more untimed rounds, then ``repeat`` timed rounds; in every round each tool runs once, and the
   order of the tools rotates from round to round (A/B interleaving), so slow drifts of the machine hit all
   tools alike;
3. the reported time is the median of the ``repeat`` timed runs (``time.perf_counter``);
4. peak memory is measured in one further, untimed call: the kernel's high-water mark of the resident set
   (``VmHWM``, reset through ``/proc/self/clear_refs`` before the call) minus the resident set before the
   call, which covers numpy, torch and C allocations alike, plus the peak of Python-side allocations seen by
   :mod:`tracemalloc` (reported separately).
"""

import gc
import statistics
import time
import tracemalloc
from dataclasses import dataclass

__all__ = ["Unavailable", "TimingSettings", "time_interleaved", "measure_memory", "median"]


class Unavailable(Exception):
    """A tool cannot run: ``status`` is ``"missing"`` (peer not installed), ``"not available yet"`` (the miniff
    API is not there yet) or ``"skipped"``; the message says why."""

    def __init__(self, status, reason=""):
        super().__init__(f"{status}: {reason}" if reason else status)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class TimingSettings:
    """How many rounds to run.

    Attributes
    ----------
    warmup : int
        Untimed rounds after the first (check) call.
    repeat : int
        Timed rounds; the median is reported (at least 5 outside the smoke profile).
    """

    warmup: int = 1
    repeat: int = 5


def median(values):
    """Median of a non-empty sequence of floats."""
    return float(statistics.median(values))


def time_interleaved(funcs, settings):
    """Time several callables interleaved.

    Parameters
    ----------
    funcs : dict of str to callable
        Tool name to a zero-argument callable doing the timed work.
    settings : TimingSettings

    Returns
    -------
    times : dict of str to list of float
        Seconds of every timed run of every tool (``settings.repeat`` each). A tool that raises is reported
        through ``errors`` and dropped from later rounds.
    errors : dict of str to str
        Tool name to the error message of a failed call.
    """
    names = list(funcs)
    times = {name: [] for name in names}
    errors = {}
    n_rounds = settings.warmup + settings.repeat
    for k in range(n_rounds):
        order = names[k % len(names):] + names[: k % len(names)] if names else []
        for name in order:
            if name in errors:
                continue
            gc.collect()
            t0 = time.perf_counter()
            try:
                funcs[name]()
            except Exception as exc:  # a failing tool must not stop the other tools' rows
                errors[name] = f"{type(exc).__name__}: {exc}"
                continue
            dt = time.perf_counter() - t0
            if k >= settings.warmup:
                times[name].append(dt)
    return times, errors


def _status_kib(*keys):
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in keys:
                out[key] = int(value.split()[0])
    return out


def _reset_peak_rss():
    """Reset the kernel's resident-set high-water mark of this process; False where not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_memory(func):
    """Peak memory of one call of ``func``.

    Returns
    -------
    peak_mb : float or None
        High-water mark of the resident set during the call minus the resident set before it, MB
        (None where ``/proc/self/clear_refs`` is not available).
    python_peak_mb : float
        Peak of the allocations traced by :mod:`tracemalloc` during the call, MB (numpy arrays are traced;
        torch tensors and C++ buffers are not).
    """
    gc.collect()
    supported = _reset_peak_rss()
    before = _status_kib("VmRSS")["VmRSS"] if supported else 0
    tracemalloc.start()
    try:
        func()
        _, py_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    peak_mb = None
    if supported:
        hwm = _status_kib("VmHWM")["VmHWM"]
        peak_mb = max(0, hwm - before) / 1024.0
    return peak_mb, py_peak / 2**20
