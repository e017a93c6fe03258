"""What the numbers were measured on: date, machine, thread settings and versions of every tool."""

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess

__all__ = ["environment", "peer_version"]

_PACKAGES = ["miniff", "numpy", "scipy", "torch", "ase", "vesin", "matscipy", "dscribe", "torchani"]


def peer_version(name):
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _lammps_version():
    exe = shutil.which("lmp")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Large-scale Atomic/Molecular Massively Parallel Simulator"):
            return line.split(" - ", 1)[1].strip() if " - " in line else line.strip()
    return "unknown"


def _miniff_threads():
    try:
        from miniff._ext.threads import effective_n_threads, openmp_enabled

        return {"openmp": bool(openmp_enabled()), "effective_n_threads": int(effective_n_threads(None))}
    except Exception as exc:  # miniff not built: reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}


def environment():
    """A JSON-ready dict: date (UTC), machine, threads and versions."""
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count()
    versions = {name: peer_version(name) for name in _PACKAGES}
    versions["python"] = platform.python_version()
    versions["lammps"] = _lammps_version()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu_model": _cpu_model(),
            "cores": cores,
            "platform": platform.platform(),
            "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "threads": {
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "torch_num_threads": torch_threads,
            "miniff": _miniff_threads(),
        },
        "versions": versions,
    }
