"""The family registry: the one table from family names to families, used to rebuild saved potentials.

A state dict (``LocalPotential.state_dict()``) names its family by the family's ``tag``. The built-in
families are listed below with the module that defines them; a module is imported only when one of its
families is looked up, so finding a family never depends on what happened to be imported before.
Families of users are added with :func:`register_family`.
"""

import importlib
from collections.abc import Mapping

__all__ = ["BUILTIN_FAMILIES", "UnknownFamilyError", "known_families", "get_family", "register_family",
           "potential_from_state_dict"]

#: Built-in families: name stored in state dicts -> (module, attribute).
BUILTIN_FAMILIES = {
    "general pair": ("miniff.potentials.families", "general_pair_potential_family"),
    "general triple": ("miniff.potentials.families", "general_triple_potential_family"),
    "on-site": ("miniff.potentials.families", "on_site_potential_family"),
    "harmonic repulsion": ("miniff.potentials.families", "harmonic_repulsion_potential_family"),
    "Lennard-Jones": ("miniff.potentials.families", "lj_potential_family"),
    "Stillinger-Weber type 2": ("miniff.potentials.families", "sw2_potential_family"),
    "Stillinger-Weber type 3": ("miniff.potentials.families", "sw3_potential_family"),
    "Behler type 2": ("miniff.potentials.families", "behler2_descriptor_family"),
    "Sigmoid": ("miniff.potentials.families", "sigmoid_descriptor_family"),
    "Behler type 4": ("miniff.potentials.families", "behler4_descriptor_family"),
    "Behler type 5": ("miniff.potentials.families", "behler5_descriptor_family"),
    "Behler type 5x": ("miniff.potentials.families", "behler5x_descriptor_family"),
    "local structural parameter": ("miniff.potentials.lsp", "lsp_descriptor_family"),
    "weighted radial": ("miniff.potentials.weighted", "weighted_radial_descriptor_family"),
    "weighted angular": ("miniff.potentials.weighted", "weighted_angular_descriptor_family"),
    "Chebyshev radial": ("miniff.potentials.chebyshev", "chebyshev_radial_descriptor_family"),
    "Chebyshev angular": ("miniff.potentials.chebyshev", "chebyshev_angular_descriptor_family"),
    "ml potential": ("miniff.ml.potential", "ml_potential_family"),
    "ml committee": ("miniff.ml.committee", "committee_family"),
    "Ewald-real": ("miniff.potentials.ewald", "ewald_real_potential_family"),
    "Ewald-k": ("miniff.potentials.ewald", "ewald_k_potential_family"),
    "Ewald-self": ("miniff.potentials.ewald", "ewald_self_potential_family"),
    "Ewald-total": ("miniff.potentials.ewald", "ewald_total_potential_family"),
    "Ewald charge wrapper potential": ("miniff.potentials.ewald_charges", "ewald_charge_wrapper_potential_family"),
}

_registered = {}  # families added by register_family (they take precedence over built-ins with replace=True)


class UnknownFamilyError(KeyError, ValueError):
    """A state dict names a family that is not in the registry."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def get_family(name):
    """The family registered under ``name``.

    Raises
    ------
    UnknownFamilyError
        (a ``KeyError`` and ``ValueError``) naming the known families.
    """
    family = _registered.get(name)
    if family is not None:
        return family
    location = BUILTIN_FAMILIES.get(name) if isinstance(name, str) else None
    if location is None:
        raise UnknownFamilyError(f"unknown potential family {name!r}; known: {sorted(family_names())}")
    module, attribute = location
    return getattr(importlib.import_module(module), attribute)


def family_names():
    """Names of every built-in and registered family."""
    return set(BUILTIN_FAMILIES) | set(_registered)


def register_family(family, replace=False):
    """Add a family of your own under ``family.tag`` (returns ``family``).

    Raises
    ------
    ValueError
        If the family has no tag, or another family is known under that tag and not ``replace``.
    """
    tag = getattr(family, "tag", None)
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"family.tag must be a non-empty string to register a family, got {tag!r}")
    if tag in family_names() and not replace and get_family(tag) is not family:
        raise ValueError(f"a family named {tag!r} is already registered")
    _registered[tag] = family
    return family


class _KnownFamilies(Mapping):
    """Read-only view ``{name: family}`` of the registry (``miniff.potentials.known_families``)."""

    def __getitem__(self, name):
        try:
            return get_family(name)
        except UnknownFamilyError:
            raise KeyError(name) from None

    def __iter__(self):
        return iter(sorted(family_names()))

    def __len__(self):
        return len(family_names())

    def __repr__(self):
        return f"known_families({sorted(family_names())})"


#: All families by name (built-in and registered), a read-only mapping.
known_families = _KnownFamilies()


def potential_from_state_dict(data):
    """Rebuild a potential from ``state_dict()`` output.

    Parameters
    ----------
    data : dict
        ``{"tag": family name, "parameters": dict, "ptag": species tag or None}`` (families may accept
        more keys, e.g. nested descriptors).

    Returns
    -------
    LocalPotential

    Raises
    ------
    TypeError
        If ``data`` is not a dict.
    UnknownFamilyError
        (a ``KeyError`` and ``ValueError``) if ``data["tag"]`` is not a known family.
    ValueError
        On unknown keys or bad parameters.
    """
    if not isinstance(data, dict):
        raise TypeError(f"data must be a dict (a potential state dict), got {type(data).__name__}")
    if "tag" not in data:
        raise ValueError("data has no 'tag' key: it is not a potential state dict")
    try:
        family = get_family(data["tag"])
    except UnknownFamilyError:
        raise UnknownFamilyError(
            f"unknown potential family {data['tag']!r} in data['tag']; known: {sorted(family_names())}"
        ) from None
    return family.instance_from_state_dict(data)
