"""Shared helpers of the potential / evaluation tests (no tests here).

``make_nw`` returns a ``miniff.kernel.NeighborWrapper`` when it is available and otherwise a small
stand-in built on the brute-force pair list of ``reference.py`` (same attributes as Contract 2, with
the evaluation methods of ``EvaluationMixin``). ``reference_*`` are direct numpy implementations of
the formulas of API.md §2.4 on brute-force pairs, independent of miniff's kernels.
"""

import itertools

import numpy as np
from reference import brute_force_pairs

from miniff.neighbors.pairlist import PairList
from miniff.potentials.evaluate import EvaluationMixin


class _Cell:
    def __init__(self, vectors, coordinates, values, meta=None):
        self.vectors = np.array(vectors, dtype=float)
        self.coordinates = np.array(coordinates, dtype=float)
        self.values = np.asarray(values)
        self.meta = dict(meta or {})

    @property
    def size(self):
        return len(self.coordinates)

    @property
    def volume(self):
        return abs(np.linalg.det(self.vectors))

    def copy(self):
        return _Cell(self.vectors.copy(), self.coordinates.copy(), self.values.copy(), self.meta)

    def cartesian(self):
        return self.coordinates @ self.vectors


class StandInWrapper(EvaluationMixin):
    """Brute-force stand-in for NeighborWrapper (no wrapping of coordinates)."""

    def __init__(self, cell, pbc=True, cutoff=None, n_threads=None):
        self.pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        self.n_threads = n_threads
        self.pairs = None
        self.cutoff = None
        self.set_cell(cell)
        if cutoff is not None:
            self.compute_distances(cutoff)

    def set_cell(self, cell, normalize=True):
        self.cell = cell.copy()
        self.pairs = None

    def set_cell_cartesian(self, cartesian, normalize=True):
        self.cell.coordinates = np.asarray(cartesian, dtype=float) @ np.linalg.inv(self.cell.vectors)
        self.pairs = None

    @property
    def cartesian_row(self):
        return self.cell.cartesian()

    @property
    def vectors(self):
        return self.cell.vectors

    @property
    def volume(self):
        return self.cell.volume

    @property
    def size(self):
        return self.cell.size

    def compute_distances(self, cutoff=None):
        cutoff = self.cutoff if cutoff is None else cutoff
        self.cutoff = cutoff
        cart = self.cartesian_row
        i, j, s, d = brute_force_pairs(self.cell.vectors, cart, cutoff, self.pbc)
        D = cart[j] + s @ self.cell.vectors - cart[i]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=len(cart)))]).astype(np.int64)
        self.pairs = PairList(indptr, j.astype(np.int32), s.astype(np.int32), D, d, float(cutoff))
        self.species, inverse = np.unique(self.cell.values, return_inverse=True)
        self.spec_encoded_row = inverse.reshape(-1).astype(np.int32)
        self.species_lookup = {k: n for n, k in enumerate(self.species)}


def separated_fractions(rng, vectors, n, d_min):
    """``n`` random fractional positions ``[n, 3]`` in the periodic cell ``vectors`` with no pair (minimum image)
    closer than ``d_min`` (Å), drawn by rejection from ``rng``."""
    frac = []
    while len(frac) < n:
        x = rng.random(3)
        trial = np.array(frac + [x])
        d = trial[:, None, :] - trial[None, :, :]
        d -= np.round(d)
        dist = np.linalg.norm(d @ vectors, axis=-1) + np.eye(len(trial)) * 10
        if dist.min() > d_min:
            frac.append(x)
    return np.array(frac)


def real_wrapper_available():
    try:
        from miniff.kernel import Cell, NeighborWrapper  # noqa: F401
    except ImportError:
        return False
    return True


def make_nw(system, cutoff, n_threads=1, standin=False):
    """A wrapper with distances up to ``cutoff`` for a conftest system ``(vectors, frac, species, pbc)``.

    One thread by default: tests of many tiny evaluations (finite differences) are dominated by thread
    start-up on a loaded machine; thread independence is tested explicitly with ``n_threads=``.
    """
    vectors, frac, species, pbc = system
    if not standin and real_wrapper_available():
        from miniff.kernel import Cell, NeighborWrapper

        return NeighborWrapper(Cell(vectors, frac, species), pbc=pbc, cutoff=cutoff, n_threads=n_threads)
    return StandInWrapper(_Cell(vectors, frac, species), pbc=pbc, cutoff=cutoff, n_threads=n_threads)


# --------------------------------------------------------------------------------- numpy references


def neighbours(system, cutoff):
    """Per atom: list of (j, D vector) within cutoff from the brute-force list; also cartesian positions."""
    vectors, frac, species, pbc = system
    vectors = np.asarray(vectors, dtype=float)
    cart = np.asarray(frac) @ vectors
    i, j, s, d = brute_force_pairs(vectors, cart, cutoff, pbc)
    D = cart[j] + s @ vectors - cart[i]
    out = [[] for _ in range(len(cart))]
    for a, b, vec in zip(i, j, D, strict=True):
        out[a].append((b, vec))
    return out


def fc(r, a):
    return np.where(r < a, 0.5 * (1 + np.cos(np.pi * r / a)), 0.0)


def reference_pair(system, cutoff, tag, f):
    """E_i = sum over neighbours j (species per tag) within cutoff of f(r_ij)."""
    species = np.asarray(system[2])
    sa, sb = tag.split("-")
    out = np.zeros(len(species))
    for i, neigh in enumerate(neighbours(system, cutoff)):
        if species[i] != sa:
            continue
        for j, vec in neigh:
            if species[j] == sb:
                out[i] += f(np.linalg.norm(vec))
    return out


def reference_triple(system, cutoff, tag, f):
    """E_i = sum over ordered neighbour pairs (j, k), j != k, of f(r_ij, r_ik, cos, D_ij, D_ik)."""
    species = np.asarray(system[2])
    sa, sb, sc = tag.split("-")
    out = np.zeros(len(species))
    for i, neigh in enumerate(neighbours(system, cutoff)):
        if species[i] != sa:
            continue
        for (n1, (j, v1)), (n2, (k, v2)) in itertools.product(enumerate(neigh), repeat=2):
            if n1 == n2 or species[j] != sb or species[k] != sc:
                continue
            r1, r2 = np.linalg.norm(v1), np.linalg.norm(v2)
            out[i] += f(r1, r2, v1 @ v2 / (r1 * r2), v1, v2)
    return out


def dense_descriptor_jacobian(nw, jac_pfc):
    """``[N, F, N, 3]`` d values[i, f] / d r[a] from the per-pair Jacobian of ``eval_descriptors``
    (``+jac`` on the neighbour, ``-jac`` on the centre atom of every pair)."""
    n = len(nw.pairs.indptr) - 1
    dense = np.zeros((n, jac_pfc.shape[1], n, 3))
    i_p, j_p = nw.pairs.i_p, nw.pairs.j_p
    for p in range(nw.pairs.n_pairs):
        dense[i_p[p], :, j_p[p]] += jac_pfc[p]
        dense[i_p[p], :, i_p[p]] -= jac_pfc[p]
    return dense
