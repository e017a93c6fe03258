"""``miniff.show_versions()``: what a bug report needs to know about this install."""

import platform
import sys
from importlib import metadata

_DEPENDENCIES = ("numpy", "scipy", "torch", "matplotlib", "ase", "pyyaml", "tqdm", "threadpoolctl", "cython")


def _version_of(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions_info():
    """Return an ordered dict of facts about this installation.

    Keys: ``miniff``, ``python``, ``platform``, one per dependency, ``openmp``
    (True/False, or the import error when the compiled core is missing) and
    ``threads`` (the thread count a kernel call uses by default).
    """
    from miniff.version import __version__

    info = {"miniff": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for name in _DEPENDENCIES:
        info[name] = _version_of(name)
    try:
        from miniff._ext.threads import effective_n_threads, openmp_enabled

        info["openmp"] = openmp_enabled()
        info["threads"] = effective_n_threads()
    except ImportError as error:
        info["openmp"] = f"compiled core missing ({str(error).splitlines()[0]})"
        info["threads"] = 1
    return info


def show_versions(file=None):
    """Print the versions of miniff and its dependencies, OpenMP support and threads.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default ``sys.stdout``).
    """
    file = sys.stdout if file is None else file
    info = versions_info()
    width = max(len(k) for k in info) + 1
    print("miniff installation", file=file)
    for key, value in info.items():
        label = {"openmp": "built with OpenMP", "threads": "effective threads"}.get(key, key)
        print(f"  {label:<{max(width, 18)}} {value}", file=file)
