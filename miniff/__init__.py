"""miniff: classical and Behler-Parrinello neural-network interatomic potentials.

The public modules are ``miniff.kernel`` (structures, neighbour lists),
``miniff.potentials`` (potentials and descriptors), ``miniff.ml`` (neural-network
potentials), ``miniff.ml_util`` (fitting workflows), ``miniff.presentation``
(plots), ``miniff.calculator`` (the ASE calculator) and ``miniff.io``.
Units are eV and Å throughout.
"""

from miniff._show_versions import show_versions
from miniff.version import __version__

__all__ = ["__version__", "show_versions", "MiniffCalculator"]


def __getattr__(name):
    # Imported lazily so that ``import miniff`` stays light (no torch, no ASE).
    if name == "MiniffCalculator":
        from miniff.calculator import MiniffCalculator

        return MiniffCalculator
    raise AttributeError(f"module 'miniff' has no attribute {name!r}")
