"""Checks that run before any kernel: coincident atoms.

Most families are singular at ``r = 0`` (Lennard-Jones, Stillinger-Weber) or have an undefined gradient
direction there (``D / r`` in every pair gradient, descriptors included), so two atoms at the same position
would give NaN energies, forces or Jacobians. Every evaluation path calls :func:`check_coincident` first; it
reuses the pair distances of the neighbour list (their minimum is taken once per list and kept with the
wrapper), so it costs no pass over atoms and no kernel.

A family that is finite at ``r = 0`` (energy *and* gradient) opts out with
``LocalPotentialFamily(..., allow_coincident=True)``; one potential opts out with
``potential.allow_coincident = True``.
"""

import numpy as np

__all__ = ["COINCIDENT_DISTANCE", "CoincidentAtomsError", "check_coincident", "closest_pair", "shortest_distance"]

#: Pairs closer than this (Å) count as coincident atoms. Real structures never have atoms within 0.1 Å;
#: above this distance every built-in family is finite in float64 (e.g. Lennard-Jones ``(sigma/r)**12`` stays
#: below 1e90 for sigma up to 30 Å).
COINCIDENT_DISTANCE = 1e-6


class CoincidentAtomsError(ValueError):
    """Two atoms (or an atom and a periodic image of an atom) sit at the same position."""


def shortest_distance(nw):
    """The shortest pair distance of the wrapper's list, Å (``inf`` without pairs).

    One ``min`` over ``d_p`` per pair list (kept on the wrapper, keyed by the identity of ``nw.pairs``): about
    0.1 ns per pair, far below the cost of building the list or evaluating any potential on it.
    """
    pairs = nw.pairs
    cached = getattr(nw, "_shortest_distance", None)
    if cached is not None and cached[0] is pairs:
        return cached[1]
    out = float(pairs.d_p.min()) if len(pairs.d_p) else float("inf")
    try:
        nw._shortest_distance = (pairs, out)
    except AttributeError:  # a wrapper that takes no attributes: no cache
        pass
    return out


def closest_pair(nw):
    """The shortest pair of the wrapper's list: ``(p, distance)`` (``(-1, inf)`` without pairs)."""
    d_p = nw.pairs.d_p
    if len(d_p) == 0:
        return -1, float("inf")
    p = int(np.argmin(d_p))
    return p, float(d_p[p])


def check_coincident(nw, potentials):
    """Refuse coincident atoms before any kernel of ``potentials`` runs.

    Parameters
    ----------
    nw : NeighborWrapper
        With distances computed.
    potentials : list of LocalPotential
        Potentials or descriptors about to be evaluated; those with ``allow_coincident`` true are exempt.

    Raises
    ------
    CoincidentAtomsError
        (a ``ValueError``) naming the two atoms, their positions (Å), the image shift and the distance.
    """
    checked = [p for p in potentials if not getattr(p, "allow_coincident", False) and getattr(p, "cutoff", 1) > 0]
    if not checked or getattr(nw, "pairs", None) is None:
        return
    if shortest_distance(nw) >= COINCIDENT_DISTANCE:
        return
    p, distance = closest_pair(nw)
    pairs = nw.pairs
    i = int(np.searchsorted(pairs.indptr, p, side="right") - 1)
    j = int(pairs.j_p[p])
    shift = np.asarray(pairs.S_pc[p]).tolist()
    n_close = int(np.count_nonzero(pairs.d_p < COINCIDENT_DISTANCE)) // 2
    cart = np.asarray(nw.cartesian_row)
    image = "" if not any(shift) else f" (periodic image shifted by {shift} cell vectors)"
    names = sorted({getattr(getattr(q, "family", None), "tag", None) or type(q).__name__ for q in checked})
    raise CoincidentAtomsError(
        f"coincident atoms: atom {i} at {np.round(cart[i], 6).tolist()} Å and atom {j}{image} at "
        f"{np.round(cart[j], 6).tolist()} Å are {distance:.3g} Å apart (less than {COINCIDENT_DISTANCE:g} Å; "
        f"{n_close} such pair(s) in all); {', '.join(map(str, names))} cannot be evaluated there (NaN). Remove the "
        f"duplicate atoms (a supercell built twice or a broken file?), or set allow_coincident=True on a potential "
        f"that is finite at r = 0"
    )
