"""Small mixed data sets for the store tests: two species, cells of different sizes, periodic and not, some
without forces, with charges, stresses, groups and weights."""

import numpy as np

from miniff.kernel import Cell
from miniff.potentials import behler2_descriptor_family, behler5_descriptor_family

CUTOFF = 3.6


def store_descriptors(eta=0.6, cutoff=CUTOFF):
    def b2(tag, e, rs):
        return behler2_descriptor_family(a=cutoff, eta=e, r_sphere=rs, tag=tag)

    def b5(tag, e, l):
        return behler5_descriptor_family(a=cutoff, eta=e, l=l, zeta=2.0, tag=tag)

    return {
        "a": [b2("a-a", eta, 1.5), b2("a-b", 0.4, 2.0), b5("a-a-b", 0.05, 1.0), b5("a-a-a", 0.02, -1.0)],
        "b": [b2("b-a", 0.5, 1.8), b2("b-b", 0.3, 1.0), b5("b-a-a", 0.03, 1.0)],
    }


def store_cells(n=10, seed=0, charges=True):
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n):
        size = 5 + s % 4
        species = ["a" if rng.random() < 0.6 else "b" for _ in range(size)]
        species[0] = "a"
        pbc = s % 3 != 2
        vectors = np.diag([5.0, 5.5, 6.0]) + rng.uniform(-0.3, 0.3, (3, 3))
        frac = rng.random((size, 3)) if pbc else 0.25 + 0.5 * rng.random((size, 3))
        meta = {"total-energy": float(rng.normal() + 0.5 * size), "pbc": np.array([pbc] * 3),
                "stress": rng.normal(size=6), "group": "g%d" % (s % 2), "weight": 1.0 + 0.5 * (s % 3)}
        if s % 5 != 4:
            meta["forces"] = rng.normal(size=(size, 3))
        if charges:
            meta["charges"] = rng.normal(size=size)
        out.append(Cell(vectors, frac, species, meta=meta))
    return out


def prepare_then_sigkill(path, n_cells, after):
    """Prepare a store of ``store_cells(n_cells)`` and kill this process (SIGKILL) once ``after`` structures are
    committed (run in a child process)."""
    import os
    import signal

    from miniff.store import prepare_store

    def kill(done, total):
        if done >= after:
            os.kill(os.getpid(), signal.SIGKILL)

    prepare_store(path, store_cells(n_cells), store_descriptors(), commit_every=2, on_commit=kill)
