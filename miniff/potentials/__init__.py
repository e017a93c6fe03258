"""Classical potentials and descriptors (the public face of ``miniff.potentials``).

A *family* (``LocalPotentialFamily``) is a factory of *potentials* (``LocalPotential``)::

    from miniff.potentials import lj_potential_family
    lj = lj_potential_family(epsilon=0.0104, sigma=3.4, a=2.5, tag="Ar-Ar")
    energy = nw.total(lj)          # eV; nw is a NeighborWrapper with distances computed

Tags select species: ``"a"`` (on-site), ``"a-b"`` (pairs: the energy of every ``a`` atom gets a term per
``b`` neighbour), ``"a-b-c"`` (triplets: a term per ordered pair (j, k), j != k, of ``b``/``c``
neighbours). Energies are per atom and the total is their plain sum (no 1/2). Units: eV and Å.

Every potential computes ``(energy_n [N], grad_pc [P, 3])`` on a neighbour list
(``LocalPotential.compute``); many descriptors are evaluated at once with ``eval_descriptors``.
Built-in families: ``on_site_potential_family``, ``harmonic_repulsion_potential_family``,
``lj_potential_family``, ``sw2_potential_family``, ``sw3_potential_family``,
``behler2_descriptor_family``, ``behler4_descriptor_family``, ``behler5_descriptor_family``,
``behler5x_descriptor_family``, ``sigmoid_descriptor_family``, ``general_pair_potential_family``,
``general_triple_potential_family``, ``lsp_descriptor_family`` (PyFit-FF's local structural parameters),
``weighted_radial_descriptor_family``, ``weighted_angular_descriptor_family`` (element-weighted wACSF, n2p2's
types 12 and 13: tag ``"a"``, every neighbour species contributes with its weight),
``chebyshev_radial_descriptor_family``, ``chebyshev_angular_descriptor_family`` (aenet's Chebyshev expansions,
weighted the same way; ``type_spins`` gives aenet's per-element weights),
``ewald_real_potential_family``, ``ewald_k_potential_family``, ``ewald_self_potential_family``,
``ewald_total_potential_family`` (point charges from ``cell.meta["charges"]``; ``charge_gradient``),
``ewald_charge_wrapper_potential_family`` (Ewald energy of charges predicted per atom);
``stillinger_weber_si()`` builds silicon.
"""

from collections import namedtuple

from miniff.potentials.base import (
    LocalPotential,
    LocalPotentialFamily,
    PotentialRuntimeWarning,
    ScaledLocalPotential,
    ScaledLocalPotentialFamily,
)
from miniff.potentials.chebyshev import (
    chebyshev_angular_descriptor_family,
    chebyshev_radial_descriptor_family,
    type_spins,
)
from miniff.potentials.descriptors import eval_descriptors
from miniff.potentials.ewald import (
    charge_gradient,
    ewald_k_potential_family,
    ewald_real_potential_family,
    ewald_self_potential_family,
    ewald_total_potential_family,
)
from miniff.potentials.ewald_charges import ewald_charge_wrapper_potential_family
from miniff.potentials.families import (
    SW_SILICON,
    SW2PotentialFamily,
    behler2_descriptor_family,
    behler2_p2,
    behler4_descriptor_family,
    behler5_descriptor_family,
    behler5x_descriptor_family,
    behler_turning_point,
    exp_fn,
    general_pair_potential_family,
    general_triple_potential_family,
    harmonic_repulsion_potential_family,
    lj_potential_family,
    on_site_potential_family,
    sigmoid_descriptor_family,
    sine_cutoff_fn,
    sine_cutoff_fp,
    stillinger_weber_si,
    sw2_potential_family,
    sw3_potential_family,
)
from miniff.potentials.guards import COINCIDENT_DISTANCE, CoincidentAtomsError
from miniff.potentials.lsp import lsp_descriptor_family
from miniff.potentials.registry import UnknownFamilyError, known_families, potential_from_state_dict, register_family
from miniff.potentials.weighted import (
    species_weights,
    weighted_angular_descriptor_family,
    weighted_radial_descriptor_family,
)

#: 0.1.4's kernel lookup key (kept for compatibility).
kernel_kind = namedtuple("kernel_kind", ("name", "parallel", "resolving"))

__all__ = [
    "LocalPotential",
    "LocalPotentialFamily",
    "ScaledLocalPotential",
    "ScaledLocalPotentialFamily",
    "SW2PotentialFamily",
    "PotentialRuntimeWarning",
    "CoincidentAtomsError",
    "COINCIDENT_DISTANCE",
    "UnknownFamilyError",
    "known_families",
    "register_family",
    "potential_from_state_dict",
    "eval_descriptors",
    "kernel_kind",
    "general_pair_potential_family",
    "general_triple_potential_family",
    "on_site_potential_family",
    "harmonic_repulsion_potential_family",
    "lj_potential_family",
    "sw2_potential_family",
    "sw3_potential_family",
    "behler2_descriptor_family",
    "behler4_descriptor_family",
    "behler5_descriptor_family",
    "behler5x_descriptor_family",
    "sigmoid_descriptor_family",
    "lsp_descriptor_family",
    "weighted_radial_descriptor_family",
    "weighted_angular_descriptor_family",
    "species_weights",
    "chebyshev_radial_descriptor_family",
    "chebyshev_angular_descriptor_family",
    "type_spins",
    "ewald_real_potential_family",
    "ewald_k_potential_family",
    "ewald_self_potential_family",
    "ewald_total_potential_family",
    "ewald_charge_wrapper_potential_family",
    "charge_gradient",
    "stillinger_weber_si",
    "SW_SILICON",
    "behler2_p2",
    "behler_turning_point",
    "sine_cutoff_fn",
    "sine_cutoff_fp",
    "exp_fn",
]
