"""Species labels to int32 codes, for cells and for the tags of potentials."""

import copy

import numpy as np

__all__ = ["encode_species", "encode_potentials", "SpeciesEncoder"]


def encode_species(species, lookup, default=None):
    """Map species labels to integer codes.

    Parameters
    ----------
    species : iterable
        Labels (usually strings).
    lookup : dict
        ``{label: code}``.
    default : int or None
        Code for labels missing from ``lookup``; ``None`` raises instead.

    Returns
    -------
    ndarray [len(species)] int32

    Raises
    ------
    KeyError
        A label is missing from ``lookup`` and ``default`` is None.
    """
    out = []
    for s in species:
        if s in lookup:
            out.append(lookup[s])
        elif default is not None:
            out.append(default)
        else:
            raise KeyError(f"species {s!r} is not present (known species: {sorted(map(str, lookup))})")
    return np.array(out, dtype=np.int32)


def encode_potentials(potentials, lookup, default=None):
    """Copy potentials with their string tags ``"a-b[-c]"`` encoded into int32 arrays.

    Parameters
    ----------
    potentials : iterable of LocalPotential
        Each with a ``tag`` attribute: a string, or None (left as None).
    lookup : dict
        ``{label: code}``.
    default : int or None
        Code for unknown labels; ``None`` raises ``KeyError``.

    Returns
    -------
    list
        Shallow copies of the potentials; nested ``descriptors`` are encoded too.
    """
    out = []
    for potential in potentials:
        encoded = copy.copy(potential)
        tag = getattr(potential, "tag", None)
        if tag is not None:
            if not isinstance(tag, str):
                raise TypeError(f"potential tag must be a string or None, got {tag!r}")
            encoded.tag = encode_species(tag.split("-"), lookup, default=default)
        descriptors = getattr(potential, "descriptors", None)
        if descriptors is not None:
            encoded.descriptors = tuple(encode_potentials(descriptors, lookup, default=default))
        out.append(encoded)
    return out


def _factorize(values, max_fast=16):
    """Sorted unique labels and int32 codes; fast path for few distinct labels (vectorised compares)."""
    values = values.reshape(-1)
    if values.size == 0:
        return values.copy(), np.zeros(0, dtype=np.int32)
    codes = np.full(values.size, -1, dtype=np.int32)
    found = []
    start = 0
    while len(found) < max_fast:
        todo = np.flatnonzero(codes[start:] < 0)
        if todo.size == 0:
            order = np.argsort(np.array(found), kind="stable")
            rank = np.empty(len(found), dtype=np.int32)
            rank[order] = np.arange(len(found), dtype=np.int32)
            return np.array(found, dtype=values.dtype)[order], rank[codes]
        start += todo[0]
        label = values[start]
        codes[values == label] = len(found)
        found.append(label)
    unique, inverse = np.unique(values, return_inverse=True)
    return unique, np.asarray(inverse, dtype=np.int32).reshape(-1)


class SpeciesEncoder:
    """Mixin holding the species of a structure and their integer codes.

    Parameters
    ----------
    species : array-like [N]
        Species labels of the atoms.

    Attributes
    ----------
    species : ndarray
        Sorted unique labels.
    spec_encoded_row : ndarray [N] int32
        Code (index into ``species``) of every atom.
    species_lookup : dict
        ``{label: code}``.
    """

    def __init__(self, species):
        self.species, self.spec_encoded_row = _factorize(np.asarray(species))
        self.species_lookup = {s.item() if isinstance(s, np.generic) else s: i for i, s in enumerate(self.species)}

    def encode_species(self, species, default=None):
        """Codes of ``species`` labels in this structure (see :func:`encode_species`)."""
        return encode_species(species, self.species_lookup, default=default)

    encode = encode_species

    def encode_potentials(self, potentials, default=None):
        """Potentials with tags encoded for this structure (see :func:`encode_potentials`)."""
        return encode_potentials(potentials, self.species_lookup, default=default)
