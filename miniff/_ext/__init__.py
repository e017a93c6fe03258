"""miniff's compiled core: Cython/OpenMP extension modules, their loader and the thread-count rules.

Every loop of miniff that runs over atoms or pairs lives here, in C-contiguous arrays with explicit sizes, an
``n_threads`` argument and preallocated outputs; validation happens in the calling Python modules. The
extension modules (built by ``setup.py`` from ``miniff/_ext/<name>.pyx``):

``config``     how the core was built: ``openmp_enabled()``, ``openmp_max_threads()``, and ``FAMILY_CODES`` /
               ``LIMITS``, the family codes and compiled-in limits read by ``miniff.potentials.backends``.
``prepare``    positions before the neighbour search (finite check, wrapping into the cell, extent) and
               small Cartesian helpers (``rows_dot3``, ``pair_vectors``).
``neighbors``  the cell-list neighbour search (``neighbor_search``, ``neighbor_work_bytes``).
``pairpool``   the output memory pool of the search (``neighbor_pool``; its blocks back the pair arrays and, through
               ``pooled_empty``, the descriptor Jacobians).
``pair``       pair potentials and cutoff pair descriptors, per-pair gradients to atoms, virials.
``pairsearch`` plain pair potentials summed during the cell-list walk, without a pair list
               (``pair_search_reduce``).
``triple``     triplet potentials: Stillinger-Weber 3, Behler 5x, SW2 + SW3 fused.
``angular``    batched Behler type 4/5 descriptors (triplet loops and angular moments).
``lsp``        local structural parameters (PyFit-FF descriptors) through angular moments.
``weighted``   element-weighted radial and angular descriptors (wACSF, n2p2's types 12 and 13): every neighbour
               species contributes, multiplied by its species weight.
``chebyshev``  aenet's radial and angular Chebyshev descriptors with per-species weight tables (type spins).
``n2p2sf``     n2p2's symmetry functions (types 2, 3, 9, 12, 13, 20-25, every cutoff type) of the potentials read by
               ``miniff.io.read_n2p2``: values and the per-pair Jacobian, and its contraction with dE/dG.
``ewald``      Ewald sums of point charges: the real-space sum over a pair list or during the cell-list walk
               (half stencil, no list), erfc by a table, structure factors and reciprocal-space terms.
``pme``        smooth particle-mesh Ewald: spline weights, charge spreading and gathers.
``jacobian``   the contractions of the fits' sparse descriptor Jacobian (``miniff.ml.jacobian``): dE/dF to position
               gradients and back, one pass over the entries; and the per-pair gradients of K networks from the
               per-pair Jacobian (``miniff.ml.potential.contract_pairs``: NN potentials and committees).

Shared C declarations are ``.pxd`` files: ``common.pxd`` (inline helpers, family-code enum, limits), ``pairdesc.pxd``
(the batched pair descriptors of one atom, inline),
``_openmp.pxd`` (the only access to OpenMP), ``pair.pxd``, ``pairpool.pxd``, ``weighted.pxd`` and
``neighbors.pxd`` (C functions and structs used across modules). ``threads`` (pure Python) holds the thread-count rules.

Python code reaches the compiled functions through :data:`kernel_module`, one namespace holding the public
names (``__all__``) of every extension module: ``from miniff._ext import kernel_module as _k``, then
``_k.pair_reduce(...)``. Importing this package imports every extension module and raises an ImportError
that explains how to build them when one is missing.
"""

import importlib
import os
import types

__all__ = ["kernel_module", "EXTENSION_MODULES"]

EXTENSION_MODULES = ("config", "prepare", "neighbors", "pairpool", "pair", "pairsearch", "triple", "angular", "lsp",
                     "weighted", "chebyshev", "ewald", "pme", "n2p2sf", "jacobian")
"""Names of the extension modules ``miniff._ext.<name>`` (one per ``<name>.pyx``)."""

_BUILD_HELP = (
    "miniff's compiled core (extension module {module}) could not be imported: {error}\n"
    "You are probably running miniff from a source tree that has not been built. "
    "Build it with\n"
    "    pip install .            (a normal install)\n"
    "or, for development in place,\n"
    "    pip install -e .   or   python setup.py build_ext --inplace\n"
    "miniff was imported from {where}; that directory contains: {listing}"
)


def _import_extension(name):
    module = f"{__name__}.{name}"
    try:
        return importlib.import_module(module)
    except ImportError as error:  # pragma: no cover - exercised by a subprocess test
        here = os.path.dirname(os.path.abspath(__file__))
        listing = ", ".join(sorted(os.listdir(here)))
        raise ImportError(_BUILD_HELP.format(module=module, error=error, where=here, listing=listing)) from error


class _KernelNamespace(types.SimpleNamespace):
    """The public functions and constants of miniff's extension modules (see :mod:`miniff._ext`)."""


def _load_kernel():
    """One namespace with the public names of every extension module (each name exported by one module)."""
    names = {}
    owner = {}
    openmp = {}
    for name in EXTENSION_MODULES:
        mod = _import_extension(name)
        openmp[name] = mod._OPENMP_ENABLED
        for attr in mod.__all__:
            if attr in names:
                raise ImportError(f"miniff._ext: {attr!r} is exported by both {owner[attr]} and {name}")
            names[attr] = getattr(mod, attr)
            owner[attr] = name
    if len(set(openmp.values())) > 1:
        raise ImportError("miniff._ext: the extension modules disagree on OpenMP (a partial rebuild with other "
                          f"flags?): {openmp}; rebuild them all (pip install . or build_ext --inplace --force)")
    return _KernelNamespace(**names)


kernel_module = _load_kernel()
"""Every public function of the extension modules, plus ``FAMILY_CODES`` and ``LIMITS`` (``config``)."""
