"""Distribution functions averaged over many structures (``batch_rdf``)."""

import numpy as np

from miniff.neighbors.cell import Cell
from miniff.neighbors.wrapper import NeighborWrapper
from miniff.util import dict_reduce

__all__ = ["batch_rdf"]


def batch_rdf(cells, *args, inner=None, **kwargs):
    """Mean of ``inner(nw, *args, **kwargs)`` (default: :func:`rdf`) over structures, per key.

    Parameters
    ----------
    cells : iterable of NeighborWrapper (or Cell)
        A ``Cell`` is wrapped with a cutoff of ``max(r) + 5 sigma`` taken from ``args``.
    """
    if inner is None:
        inner = NeighborWrapper.rdf
    results = []
    for item in cells:
        if isinstance(item, Cell):
            if len(args) < 2:
                raise TypeError("batch_rdf of Cell objects needs r and sigma to choose a cutoff")
            item = NeighborWrapper(item, cutoff=float(np.max(args[0])) + 5 * float(args[1]))
        results.append(inner(item, *args, **kwargs))
    if not results:
        raise ValueError("cells is empty")
    return dict_reduce(results, lambda values: np.mean(values, axis=0))
