# cython: language_level=3
"""miniff's compiled core (private).

Every function here takes C-contiguous float64 / int32 / int64 arrays with explicit
sizes, an ``n_threads`` argument, and writes into preallocated outputs. All
validation happens in the calling Python modules before the call: these loops
trust their inputs and never check bounds.

The module is assembled from include files, one responsibility each:

``_neighbors.pxi``   cell-list neighbour search (pair lists with shifts).
``_reductions.pxi``  pair and triplet reductions: values, per-pair gradients.
``_red_lsp.pxi``     local structural parameters (PyFit-FF descriptors) through angular moments.
"""

from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    """True when this extension was compiled with OpenMP."""
    return bool(MINIFF_OPENMP_ENABLED)


def openmp_max_threads():
    """OpenMP's default team size (``omp_get_max_threads``); 1 without OpenMP."""
    return int(omp_get_max_threads())


include "_neighbors.pxi"
include "_reductions.pxi"
include "_red_lsp.pxi"
