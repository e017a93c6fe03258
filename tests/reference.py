"""Independent brute-force references used by the tests (plain numpy, O(N^2 * images))."""

import itertools

import numpy as np


def image_range(vectors, cutoff, pbc):
    """Per-axis image range n_a so that shifts -n_a..n_a cover a sphere of radius cutoff
    around any point of the cell (plane spacing h_a = V / |b x c|)."""
    vectors = np.asarray(vectors, dtype=float)
    volume = abs(np.linalg.det(vectors))
    out = []
    for a in range(3):
        if not pbc[a]:
            out.append(0)
            continue
        b, c = vectors[(a + 1) % 3], vectors[(a + 2) % 3]
        h = volume / np.linalg.norm(np.cross(b, c))
        out.append(int(np.ceil(cutoff / h)) + 1)
    return out


def brute_force_pairs(vectors, positions, cutoff, pbc=(True, True, True)):
    """All ordered pairs (i, j, S) with |r_j + S @ vectors - r_i| < cutoff, self pair excluded.

    ``positions`` are Cartesian (Å). Returns (i, j, S [P, 3], d [P]) sorted by (i, j, S).
    """
    positions = np.asarray(positions, dtype=float)
    vectors = np.asarray(vectors, dtype=float)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    ranges = image_range(vectors, cutoff, pbc)
    ii, jj, ss, dd = [], [], [], []
    n = len(positions)
    for shift in itertools.product(*(range(-r, r + 1) for r in ranges)):
        shift = np.array(shift)
        delta = positions[None, :, :] + shift @ vectors - positions[:, None, :]
        d = np.linalg.norm(delta, axis=-1)
        mask = d < cutoff
        if not shift.any():
            mask[np.arange(n), np.arange(n)] = False
        i, j = np.nonzero(mask)
        ii.append(i)
        jj.append(j)
        ss.append(np.repeat(shift[None], len(i), axis=0))
        dd.append(d[i, j])
    i = np.concatenate(ii)
    j = np.concatenate(jj)
    s = np.concatenate(ss).reshape(-1, 3)
    d = np.concatenate(dd)
    order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
    return i[order], j[order], s[order], d[order]


def central_difference(f, x, eps=1e-5):
    """Central finite-difference gradient of scalar f at array x (any shape)."""
    x = np.array(x, dtype=float)
    g = np.zeros_like(x)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        fp = f(x)
        flat[k] = old - eps
        fm = f(x)
        flat[k] = old
        gflat[k] = (fp - fm) / (2 * eps)
    return g
