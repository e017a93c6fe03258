"""Access to the compiled core with a helpful error when it is missing.

Every module that needs ``miniff._ext._kernel`` imports it from here.
"""

import os

__all__ = ["kernel_module"]

_BUILD_HELP = (
    "miniff's compiled core (miniff._ext._kernel) could not be imported: {error}\n"
    "You are probably running miniff from a source tree that has not been built. "
    "Build it with\n"
    "    pip install .            (a normal install)\n"
    "or, for development in place,\n"
    "    pip install -e .   or   python setup.py build_ext --inplace\n"
    "miniff was imported from {where}; that directory contains: {listing}"
)


def _import_kernel():
    try:
        from miniff._ext import _kernel
    except ImportError as error:  # pragma: no cover - exercised by a subprocess test
        here = os.path.dirname(os.path.abspath(__file__))
        listing = ", ".join(sorted(os.listdir(here)))
        raise ImportError(_BUILD_HELP.format(error=error, where=here, listing=listing)) from error
    return _kernel


kernel_module = _import_kernel()
