"""Plain pair potentials evaluated during the neighbour search, without a pair list.

When every potential of an evaluation is a plain compiled pair family (harmonic, Lennard-Jones, SW2; see
``backends.pair_only``) and the wrapper holds no pair list for its current positions, ``evaluate`` sums the
energies, the per-atom gradient and the per-atom virials while the cell list is walked
(``pair_search_reduce`` of ``miniff/_ext/pairsearch.pyx``): memory O(N) instead of O(pairs), and no pair
list written and read back. The walk uses Newton's third law: the half stencil (bin offsets ``k >= 0``)
meets every pair once and adds its terms to both atoms (per-thread buffers, summed in thread order). The
result is the list path's up to the order of floating-point sums, reproducible for a given thread count.

Units: eV, Å, eV/Å, eV (virials).
"""

import functools

import numpy as np

from miniff._ext import kernel_module as _k
from miniff.neighbors.search import DEFAULT_MAX_PAIRS, prepared_search
from miniff.potentials.backends import pair_only
from miniff.potentials.base import LocalPotential
from miniff.potentials.guards import COINCIDENT_DISTANCE, CoincidentAtomsError

__all__ = ["fused_pair_evaluation", "can_fuse"]


def _half_stencil(offsets):
    """``half_stencil`` of the search's offsets, cached (the offsets repeat for a cell and cutoff)."""
    offsets = np.ascontiguousarray(offsets, dtype=np.intc)
    return _cached_half_stencil(offsets.tobytes())


@functools.lru_cache(maxsize=32)
def _cached_half_stencil(offsets_bytes):
    half = _k.half_stencil(np.frombuffer(offsets_bytes, dtype=np.intc).reshape(-1, 3))
    half.setflags(write=False)
    return half


def can_fuse(nw, potentials):
    """True when ``fused_pair_evaluation`` applies: plain pair potentials only, a wrapper without a pair list
    for its current positions (``nw.has_pairs`` false) and without an image limit (replica counts)."""
    return (
        len(potentials) > 0
        and len(potentials) <= _k.MAX_PAIR_TERMS
        and all(isinstance(p, LocalPotential) for p in potentials)
        and not getattr(nw, "has_pairs", True)
        and getattr(nw, "image_limit", True) is None
        and pair_only(potentials)
    )


def fused_pair_evaluation(nw, potentials, n_threads=None, grad=True, virial=False):
    """Energies, gradient and virials of plain pair potentials from the wrapper's positions in one walk.

    Parameters
    ----------
    nw : NeighborWrapper
        Positions, cell, periodicity and species; its pair list is neither used nor built.
    potentials : list of LocalPotential
        Plain pair families (``can_fuse``), species present in ``nw``.
    n_threads : int or None
        OpenMP threads (None: the wrapper's, else automatic).
    grad, virial : bool
        Also return dE/dr and the per-atom virials.

    Returns
    -------
    energy_n : ndarray (N,), eV
    grad_nc : ndarray (N, 3), eV/Å, or None
    virial_n : ndarray (N, 3, 3), eV, or None
        ``sum_p dE_i/dD_p (x) D_p`` over the pairs of atom i (as ``evaluate.virial_n``).

    Raises
    ------
    CoincidentAtomsError
        (a ``ValueError``) when two atoms are closer than ``guards.COINCIDENT_DISTANCE`` and a potential does
        not allow it (``allow_coincident``), naming them.
    """
    n = nw.size
    fam = np.array([p.family.backend.code for p in potentials], dtype=np.int32)
    par = np.zeros((len(potentials), 9))
    for k, p in enumerate(potentials):
        values = np.asarray(p.family.backend.parameters(p), dtype=float)
        par[k, : len(values)] = values
    cut = np.array([p.cutoff for p in potentials], dtype=float)
    codes = np.array([p.species_codes(nw)[:2] for p in potentials], dtype=np.int32).reshape(-1, 2)
    spec_n = np.ascontiguousarray(nw.spec_encoded_row, dtype=np.int32)
    energy_n = np.zeros(n)
    grad_nc = np.zeros((n, 3)) if grad else None
    virial_n9 = np.zeros((n, 9)) if virial else None
    if n_threads is None:
        n_threads = getattr(nw, "n_threads", None)
    checked = [p for p in potentials if not getattr(p, "allow_coincident", False)]
    with prepared_search(nw.cartesian_row, nw.cell.vectors, nw.pbc, float(cut.max()), None, n_threads,
                         getattr(nw, "max_pairs", DEFAULT_MAX_PAIRS), getattr(nw, "max_memory", None),
                         store_pairs=False) as inputs:
        if inputs is None:
            coincident = None
        else:
            coincident = _k.pair_search_reduce(
                inputs.frac, inputs.xyz, inputs.wrap, inputs.vectors, inputs.n_bins, inputs.periodic,
                inputs.frac_min, inputs.width, _half_stencil(inputs.offsets), inputs.cutoff, inputs.n_threads,
                inputs.work,
                spec_n, fam, par, cut, np.ascontiguousarray(codes[:, 0]), np.ascontiguousarray(codes[:, 1]),
                energy_n, grad_nc, virial_n9, COINCIDENT_DISTANCE if checked else -1.0)
    if coincident is not None:
        i, j = coincident
        cart = np.asarray(nw.cartesian_row)
        names = sorted({p.family.tag for p in checked})
        raise CoincidentAtomsError(
            f"coincident atoms: atom {i} at {np.round(cart[i], 6).tolist()} Å and atom {j} (or one of its periodic "
            f"images) at {np.round(cart[j], 6).tolist()} Å are less than {COINCIDENT_DISTANCE:g} Å apart; "
            f"{', '.join(names)} cannot be evaluated there (NaN). Remove the duplicate atoms (a supercell built twice "
            "or a broken file?), or set allow_coincident=True on a potential that is finite at r = 0")
    return energy_n, grad_nc, (virial_n9.reshape(n, 3, 3) if virial else None)
