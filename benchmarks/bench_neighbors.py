"""Neighbour lists: miniff vs vesin, matscipy, ase.neighborlist and scipy cKDTree.

Input: diamond Si with 0.05 Å noise, cutoff 5 Å, full list (both directions). Every tool is asked for
i, j, S, D and d where it can (cKDTree gives i, j, d only). Check: same number of pairs and same sum of
distances (relative 1e-9) as the reference peer, before any timing.

miniff reuses the memory of a dropped pair list for the next one (see ``miniff.neighbors.pairlist.PairList``), so
its timed (post warm-up) calls see no page faults for the output; its first call does.
"""

import numpy as np

from benchmarks import _miniff
from benchmarks._checks import close, loglog_exponent
from benchmarks._runner import run_comparison
from benchmarks._structures import si_diamond_n
from benchmarks._timing import Unavailable

CUTOFF = 5.0
#: Peers in the order used to pick the reference of the check (the first that ran).
REFERENCE_ORDER = ("ase", "vesin", "matscipy", "scipy-ckdtree")


def _miniff_factory(atoms):
    def factory():
        cell = _miniff.cell_from_atoms(atoms)
        nw_cls = _miniff.require("kernel", "NeighborWrapper")

        def run():
            pairs = nw_cls(cell, cutoff=CUTOFF).pairs
            return pairs.n_pairs, float(np.sum(pairs.d_p))

        return run

    return factory


def _vesin_factory(atoms):
    def factory():
        try:
            from vesin import NeighborList
        except ImportError:
            raise Unavailable("missing", "pip install vesin") from None
        points, box = atoms.positions, np.array(atoms.cell)
        nl = NeighborList(cutoff=CUTOFF, full_list=True)

        def run():
            i, j, S, D, d = nl.compute(points, box, periodic=True, quantities="ijSDd")
            return len(i), float(d.sum())

        return run

    return factory


def _matscipy_factory(atoms):
    def factory():
        try:
            from matscipy.neighbours import neighbour_list
        except ImportError:
            raise Unavailable("missing", "pip install matscipy") from None

        def run():
            i, j, S, D, d = neighbour_list("ijSDd", atoms, CUTOFF)
            return len(i), float(d.sum())

        return run

    return factory


def _ase_factory(atoms):
    def factory():
        from ase.neighborlist import neighbor_list

        def run():
            i, j, S, D, d = neighbor_list("ijSDd", atoms, CUTOFF)
            return len(i), float(d.sum())

        return run

    return factory


def _ckdtree_factory(atoms):
    def factory():
        from scipy.spatial import cKDTree

        box = np.array(atoms.cell)
        if not np.allclose(box, np.diag(np.diag(box))):
            raise Unavailable("skipped", "cKDTree's periodic boxsize needs an orthorhombic box")
        lengths = np.diag(box).copy()
        points = np.mod(atoms.positions, lengths)

        def run():
            tree = cKDTree(points, boxsize=lengths)
            pairs = tree.sparse_distance_matrix(tree, CUTOFF, output_type="ndarray")
            keep = pairs["i"] != pairs["j"]
            return int(keep.sum()), float(pairs["v"][keep].sum())

        return run

    return factory


FACTORIES = {
    "miniff": _miniff_factory,
    "vesin": _vesin_factory,
    "matscipy": _matscipy_factory,
    "ase": _ase_factory,
    "scipy-ckdtree": _ckdtree_factory,
}


def _check(outputs):
    ref_tool = next((t for t in REFERENCE_ORDER if t in outputs), None)
    if ref_tool is None:
        return {tool: (None, "no peer ran: nothing to compare with") for tool in outputs}
    n_ref, sum_ref = outputs[ref_tool]
    verdicts = {}
    for tool, (n, s) in outputs.items():
        ok = n == n_ref and close(s, sum_ref, 1e-9)
        verdicts[tool] = (ok, f"pairs {n} vs {n_ref}, sum d {s:.6f} vs {sum_ref:.6f} Å ({ref_tool})")
    return verdicts


def _threads():
    return {"miniff": "OpenMP (default)", "vesin": "n_threads=0 (all cores)", "matscipy": "1",
            "ase": "1", "scipy-ckdtree": "1"}


def _skipped(reason):
    def factory():
        raise Unavailable("skipped", reason)

    return factory


def run(sizes, settings, solo_sizes=(), check_only_peer="vesin", ase_max=None):
    """Run the neighbour-list rows.

    Parameters
    ----------
    sizes : sequence of int
        Approximate atom counts compared with every peer.
    settings : TimingSettings
    solo_sizes : sequence of int
        Atom counts timed for miniff alone; ``check_only_peer`` runs once (untimed) as the check reference.
    ase_max : int or None
        Largest N for ``ase.neighborlist`` (pure numpy, seconds per call at 8k): larger sizes get a
        ``skipped`` row so that a run stays within its time budget.

    Returns
    -------
    rows : list of Row
    derived : dict
        ``{"exponent": {tool: slope}}`` of log(time) vs log(N) over N >= 8 000 (all sizes if fewer than two).
    """
    rows = []
    for n in sizes:
        atoms = si_diamond_n(n)
        factories = {tool: make(atoms) for tool, make in FACTORIES.items()}
        if ase_max is not None and len(atoms) > ase_max:
            factories["ase"] = _skipped(f"ase.neighborlist limited to N <= {ase_max} in this profile (slow)")
        rows += run_comparison("neighbors", len(atoms), factories, _check, settings, threads=_threads())
    for n in solo_sizes:
        atoms = si_diamond_n(n)
        reference = {}
        try:
            reference[check_only_peer] = FACTORIES[check_only_peer](atoms)()()
        except Exception as exc:  # the check reference is optional: the row then has check None
            reference = {}
            note = f"no check reference ({exc})"
        else:
            note = f"{check_only_peer} ran once, untimed, as the check reference"

        def check(outputs, reference=reference):
            return _check({**reference, **outputs})

        rows += run_comparison("neighbors", len(atoms), {"miniff": FACTORIES["miniff"](atoms)}, check, settings,
                               threads=_threads(), notes={"miniff": note})
    return rows, {"exponent": _exponents(rows)}


def _exponents(rows):
    by_tool = {}
    for row in rows:
        if row.status == "ok" and row.median_s:
            by_tool.setdefault(row.tool, []).append((row.n_atoms, row.median_s))
    out = {}
    for tool, points in by_tool.items():
        big = [p for p in points if p[0] >= 8000 and p[0] <= 216000]
        use = big if len(big) >= 2 else points
        out[tool] = loglog_exponent([p[0] for p in use], [p[1] for p in use])
    return out
