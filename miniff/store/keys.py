"""Record keys: a hash of the structure, of the descriptor set and of the data-format version.

``record_key(cell, descriptor_key)`` = blake2b-32 of ``(RECORD_FORMAT, descriptor_key, structure_hash(cell))``,
so a record is reused exactly when the same structure meets the same descriptors under the same format;
changing any position, the cell, the periodicity, a species, a descriptor parameter or the cutoff gives a
new key (and the record is computed again).
"""

import hashlib
import json

import numpy as np

from miniff.ml.descriptor_data import species_of
from miniff.neighbors.cell import Cell
from miniff.store.records import RECORD_FORMAT

__all__ = ["structure_hash", "descriptor_set_key", "record_key", "cell_pbc"]


def _h(*chunks):
    h = hashlib.blake2b(digest_size=32)
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h


def cell_pbc(cell):
    """Periodicity ``[3] bool`` of a ``Cell`` (``meta["pbc"]``, default periodic) or ``NeighborWrapper``."""
    if isinstance(cell, Cell):   # (a Cell has no ``pbc`` attribute; asking for one is slow)
        pbc = cell.meta.get("pbc")
    else:
        pbc = getattr(cell, "pbc", None)
        if pbc is None and isinstance(getattr(cell, "meta", None), dict):
            pbc = cell.meta.get("pbc")
    return np.broadcast_to(np.asarray(True if pbc is None else pbc, dtype=bool), (3,)).copy()


def structure_hash(cell):
    """Hex digest of a structure's lattice vectors, fractional coordinates, periodicity and species labels.

    Parameters
    ----------
    cell : Cell or NeighborWrapper
        A wrapper is hashed through its ``cell``.
    """
    c = cell.cell if hasattr(cell, "cell") and hasattr(cell.cell, "vectors") else cell
    vectors = np.ascontiguousarray(c.vectors, dtype="<f8")
    coords = np.ascontiguousarray(c.coordinates, dtype="<f8")
    species = "\0".join(species_of(c)).encode()
    return _h(vectors.tobytes(), coords.tobytes(), cell_pbc(cell).astype("|b1").tobytes(), species).hexdigest()


def _jsonable(v):
    a = np.asarray(v)
    if a.dtype.kind in "fiub":
        return a.tolist()
    return str(v)


def descriptor_set_key(descriptors):
    """Hex digest of a descriptor set ``{species: [descriptor potentials]}``: per species and descriptor its tag,
    family, parameters and cutoff (Å); the order of descriptors within a species counts (it is the feature order).
    """
    items = []
    for species in sorted(descriptors):
        for d in descriptors[species]:
            params = d.get_all_parameters() if hasattr(d, "get_all_parameters") else {}
            family = getattr(getattr(d, "family", None), "tag", None) or type(d).__name__
            items.append([str(species), str(d.tag), str(family), float(d.cutoff),
                          {str(k): _jsonable(v) for k, v in sorted(params.items())}])
    text = json.dumps(items, sort_keys=True, separators=(",", ":"))
    return _h(text.encode()).hexdigest()


def record_key(cell, descriptor_key):
    """The 32-byte LMDB key of the record of ``cell`` under a descriptor set (see the module docstring)."""
    return _h(str(RECORD_FORMAT).encode(), descriptor_key.encode(), structure_hash(cell).encode()).digest()
