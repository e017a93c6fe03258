# cython: language_level=3
"""How miniff's compiled core was built and the constants it shares with Python (private).

``openmp_enabled()`` / ``openmp_max_threads()`` report the OpenMP build; ``FAMILY_CODES`` maps the names of
the family codes of the compiled reductions to their values and ``LIMITS`` the limits compiled into the
kernels, both built from the enums of ``common.pxd`` (their only definition; ``miniff/potentials/backends.py``
reads them from here).
"""

from miniff._ext.common cimport (
    RED_PAIR_HARMONIC, RED_PAIR_LJ, RED_PAIR_SW2, RED_FC_BEHLER2, RED_FC_SIGMOID, RED_TRIPLE_SW3,
    RED_TRIPLE_BEHLER5X, RED_BATCH_BEHLER5, RED_BATCH_BEHLER4, RED_MAX_GROUP, RED_MOM_E, RED_MOM_Z,
    LSP_MAX_RADIAL, LSP_MAX_ORDER,
)
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED, omp_get_max_threads

__all__ = ["openmp_enabled", "openmp_max_threads", "FAMILY_CODES", "LIMITS"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext

FAMILY_CODES = {
    "PAIR_HARMONIC": int(RED_PAIR_HARMONIC),
    "PAIR_LJ": int(RED_PAIR_LJ),
    "PAIR_SW2": int(RED_PAIR_SW2),
    "FC_BEHLER2": int(RED_FC_BEHLER2),
    "FC_SIGMOID": int(RED_FC_SIGMOID),
    "TRIPLE_SW3": int(RED_TRIPLE_SW3),
    "TRIPLE_BEHLER5X": int(RED_TRIPLE_BEHLER5X),
    "BATCH_BEHLER5": int(RED_BATCH_BEHLER5),
    "BATCH_BEHLER4": int(RED_BATCH_BEHLER4),
}
"""Family code of every compiled family kind (the RED_* enum of ``common.pxd``)."""

LIMITS = {
    "MAX_GROUP": int(RED_MAX_GROUP),
    "MOMENT_MAX_ETA": int(RED_MOM_E),
    "MOMENT_MAX_ZETA": int(RED_MOM_Z),
    "LSP_MAX_RADIAL": int(LSP_MAX_RADIAL),
    "LSP_MAX_ORDER": int(LSP_MAX_ORDER),
}
"""Sizes compiled into the kernels: descriptors per batched call, distinct eta and largest integer zeta of
the moment kernel, distinct radial functions and largest Legendre order of the LSP kernel."""


def openmp_enabled():
    """True when this extension was compiled with OpenMP."""
    return bool(MINIFF_OPENMP_ENABLED)


def openmp_max_threads():
    """OpenMP's default team size (``omp_get_max_threads``); 1 without OpenMP."""
    return int(omp_get_max_threads())
