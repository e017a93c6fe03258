"""Structures and neighbour lists: the public face of miniff's ``kernel`` module.

- :class:`Cell`: a box with atoms in fractional coordinates and metadata;
- :class:`NeighborWrapper`: a cell with its full neighbour list (a cell-list search in the
  compiled core, OpenMP-parallel, any triclinic cell and mixed periodicity) and the evaluation of
  potentials (``eval``, ``total``, ``grad``, ``stress``, ``relax``);
- species encoding helpers, radial/angular distribution functions, energy profiles and
  :class:`ScalarFunctionWrapper` (energy and gradient of flat coordinates, for scipy).

Periodicity: ``NeighborWrapper(cell, x)`` takes per-axis replica counts ``x``; ``(1, 1, 1)`` is the
box alone (the seed tutorial's call), an odd ``n`` keeps images ``-(n-1)/2 .. (n-1)/2`` of that axis,
and ``x=None`` (default) finds every image within the cutoff along the ``pbc`` axes.

Units: Å, eV, radians.

Examples
--------
>>> import numpy as np
>>> from miniff.kernel import Cell, NeighborWrapper
>>> cell = Cell(np.eye(3) * 5.43, [[0, 0, 0], [0.25, 0.25, 0.25]], ["Si", "Si"])
>>> nw = NeighborWrapper(cell, cutoff=3.0)
>>> nw.pairs.n_pairs  # one bond, both directions
2
>>> nw.pairs.d_p.round(3).tolist()
[2.351, 2.351]
"""

from miniff._ext.threads import MAX_N_THREADS
from miniff.neighbors.batch import batch_rdf
from miniff.neighbors.cell import Cell
from miniff.neighbors.pairlist import PairList
from miniff.neighbors.species import SpeciesEncoder, encode_potentials, encode_species
from miniff.potentials.profiles import profile, profile_directed_strain, profile_strain
from miniff.potentials.relax import OptimizationWarning
from miniff.potentials.scalar import ScalarFunctionWrapper
from miniff.potentials.wrapper import NeighborWrapper

__all__ = [
    "Cell",
    "NeighborWrapper",
    "PairList",
    "ScalarFunctionWrapper",
    "SpeciesEncoder",
    "encode_species",
    "encode_potentials",
    "batch_rdf",
    "profile",
    "profile_strain",
    "profile_directed_strain",
    "OptimizationWarning",
    "MAX_N_THREADS",
]
