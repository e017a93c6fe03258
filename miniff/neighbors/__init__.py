"""Structures and their neighbour lists: the layer below every potential.

``cell`` (``Cell``: box, fractional coordinates, species, metadata), ``species`` (label encoding),
``pairlist`` (``PairList``, the full CSR list every kernel consumes), ``search`` (the front end of the
compiled cell-list search), ``wrapper`` (``NeighborWrapper`` without evaluation), ``analysis`` and ``batch``
(radial and angular distribution functions), ``displacement`` (moving or straining a wrapper and putting it
back, for finite differences). Nothing here knows of potentials; users reach these names through
``miniff.kernel``.
"""
