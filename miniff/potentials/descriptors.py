"""Batched descriptor evaluation: many descriptors in one pass over pairs / triplets (Contract 3)."""

import numpy as np

from miniff._ext import kernel_module
from miniff.potentials.backends import MAX_GROUP, AngularBackend, CutoffPairBackend
from miniff.potentials.base import LocalPotential, pair_arrays, resolve_n_threads
from miniff.potentials.guards import check_coincident

__all__ = ["eval_descriptors"]


def _as_list(descriptors):
    if isinstance(descriptors, LocalPotential):
        return [descriptors]
    if not isinstance(descriptors, (list, tuple)):
        raise TypeError(f"descriptors must be a list of LocalPotential, got {type(descriptors).__name__}")
    for k, d in enumerate(descriptors):
        if not isinstance(d, LocalPotential):
            raise TypeError(f"descriptors[{k}] must be a LocalPotential, got {type(d).__name__}")
    return list(descriptors)


def _first_sweep(groups, nw, values_nf, jac_2d, grad, n_threads):
    """Run (and remove from ``groups``) the batches of the first sweep over the atoms, which also zeroes the
    Jacobian ``jac_2d`` [P, 3 F] (with ``grad``; it holds anything before): a pair-descriptor batch (Behler 2,
    sigmoid) together with an angular batch in one parallel region when both exist (each atom's pairs read once,
    its Jacobian rows written while in cache), else the pair batch alone, else a zeroing sweep of its own."""
    pair_key = next((key for key, (b, _, items) in groups.items()
                     if type(b) is CutoffPairBackend and len(items) <= MAX_GROUP), None)
    angular_key = next((key for key, (b, _, _) in groups.items() if type(b) is AngularBackend), None)
    if pair_key is not None and angular_key is not None:
        backend, codes, items = groups.pop(pair_key)
        job = backend.jobs(items, codes)[0]
        backend, codes, items = groups.pop(angular_key)
        backend.batch(items, codes, nw, values_nf, jac_2d, grad, n_threads, pair_job=job, zero_jac=grad)
    elif pair_key is not None:
        backend, codes, items = groups.pop(pair_key)
        backend.batch(items, codes, nw, values_nf, jac_2d, grad, n_threads, zero_jac=grad)
    elif grad:
        kernel_module.zero_rows(jac_2d, n_threads)


def eval_descriptors(nw, descriptors, grad=False, n_threads=None, ignore_missing_species=False):
    """Values and per-pair Jacobian of many tagged descriptors at once.

    Descriptors of one compiled family sharing the cutoff and the tag are evaluated together in a single
    pass over pairs (Behler 2, sigmoid) or triplets (Behler 4, 5), with per-pair cutoff and exponential
    factors computed once. Other families (and Python or NN descriptors) are evaluated one by one.

    Parameters
    ----------
    nw : NeighborWrapper
        With distances computed up to at least the largest descriptor cutoff.
    descriptors : list of LocalPotential
        Tagged descriptors (``"a-b"``, ``"a-b-c"``); F of them.
    grad : bool
        Also return the per-pair Jacobian.
    n_threads : int or None
        OpenMP threads (None: ``nw.n_threads``, else the default rule).
    ignore_missing_species : bool
        A descriptor whose tag names a species absent from the cell gives zeros instead of ``KeyError``.

    Returns
    -------
    values_nf : ndarray of shape (n_atoms, F), float64
        ``values_nf[i, f]``: descriptor ``f`` of atom ``i`` (0 where atom ``i`` is not the tag's centre
        species).
    jac_pfc : ndarray of shape (n_pairs, F, 3), float64, 1/Å, or None
        ``d values_nf[i_p, f] / d D_pc[p]`` (only with ``grad=True``). The derivative by the position of
        atom ``j`` is ``+jac`` over pairs with neighbour ``j`` and ``-jac`` over pairs centred on ``j``.

    Raises
    ------
    KeyError
        Naming a species of a tag missing from the cell (unless ``ignore_missing_species``).
    ValueError
        If a descriptor's cutoff exceeds the neighbour list cutoff; ``CoincidentAtomsError`` (a ValueError) if
        two atoms sit at the same position (see ``miniff.potentials.guards``).
    """
    descriptors = _as_list(descriptors)
    n_threads = resolve_n_threads(nw, n_threads)
    indptr = pair_arrays(nw)[0]
    n_atoms, n_pairs, n_f = len(indptr) - 1, int(indptr[-1]), len(descriptors)
    values_nf = np.zeros((n_atoms, n_f))
    check_coincident(nw, descriptors)  # before any kernel runs
    groups, singles = {}, []
    for f, d in enumerate(descriptors):
        try:
            codes = d.species_codes(nw)
        except KeyError:
            if ignore_missing_species:
                continue
            raise
        pair_arrays(nw, d.cutoff)  # cutoff check before any work
        backend = getattr(d.family, "backend", None)
        batchable = hasattr(backend, "batch_key") and type(d).compute is LocalPotential.compute \
            and type(d).accumulate is LocalPotential.accumulate
        if batchable:
            groups.setdefault(backend.batch_key(d, codes), (backend, codes, []))[2].append((f, d))
        else:
            singles.append((f, d))
    if grad:
        # the largest output, in a pooled block (the Jacobian of an earlier call, if the caller dropped it: no
        # page faults of fresh memory); it holds anything until zeroed by the threads that then fill it
        jac_pfc = kernel_module.pooled_empty((n_pairs, n_f, 3))
        jac_2d = jac_pfc.reshape(n_pairs, 3 * n_f)
    else:
        jac_pfc, jac_2d = None, np.zeros((0, 3))
    _first_sweep(groups, nw, values_nf, jac_2d, grad, n_threads)
    for backend, codes, items in groups.values():
        backend.batch(items, codes, nw, values_nf, jac_2d, grad, n_threads)
    for f, d in singles:  # after the zeroing: they set their columns
        e_n, g_pc = d.compute(nw, grad=grad, n_threads=n_threads)
        values_nf[:, f] = e_n
        if grad:
            jac_pfc[:, f, :] = g_pc
    return values_nf, jac_pfc
