"""Thin adapters from the benchmark inputs (ASE atoms, plain parameters) to the miniff API.

Every function raises :class:`~benchmarks._timing.Unavailable` with status ``"not available yet"`` while the
part of miniff it needs is missing, so a case reports that instead of failing.
"""

import importlib

import numpy as np

from benchmarks._timing import Unavailable

__all__ = [
    "require",
    "cell_from_atoms",
    "neighbor_wrapper",
    "behler_descriptors",
    "sw_potentials",
    "lj_potentials",
    "nn_potentials",
    "calculator",
]


def require(module, *names):
    """Import ``miniff.<module>`` and return the attributes ``names`` (one object if one name).

    Raises
    ------
    Unavailable
        ``"not available yet"`` naming what is missing.
    """
    try:
        mod = importlib.import_module(f"miniff.{module}")
    except ImportError as exc:
        raise Unavailable("not available yet", f"miniff.{module} cannot be imported ({exc})") from None
    found = []
    for name in names:
        if not hasattr(mod, name):
            raise Unavailable("not available yet", f"miniff.{module}.{name} does not exist yet")
        found.append(getattr(mod, name))
    return found[0] if len(found) == 1 else tuple(found)


def cell_from_atoms(atoms):
    """A :class:`miniff.kernel.Cell` with the atoms' box, fractional coordinates and chemical symbols."""
    cell_cls = require("kernel", "Cell")
    return cell_cls(np.array(atoms.cell), atoms.get_scaled_positions(wrap=False),
                    np.array(atoms.get_chemical_symbols()))


def neighbor_wrapper(atoms, cutoff):
    """A :class:`miniff.kernel.NeighborWrapper` of the periodic atoms with its pair list computed."""
    nw_cls = require("kernel", "NeighborWrapper")
    return nw_cls(cell_from_atoms(atoms), cutoff=cutoff)


def _tagged(potential, tag):
    """``potential`` with its species tag set (the seed's ``copy(tag=...)``)."""
    if hasattr(potential, "copy"):
        return potential.copy(tag=tag)
    potential.tag = tag
    return potential


def behler_descriptors(spec, species="Si"):
    """The descriptor set of the kernel issue as tagged miniff potentials.

    Parameters
    ----------
    spec : dict
        ``{"cutoff": a, "g2": [(eta, r_sphere), ...], "g5": [(eta, zeta, lambda), ...]}``.
    species : str

    Returns
    -------
    list of LocalPotential
        Behler-2 (tag ``"Si-Si"``) then Behler-5 (tag ``"Si-Si-Si"``) descriptors, in ``spec`` order.
    """
    b2, b5 = require("potentials", "behler2_descriptor_family", "behler5_descriptor_family")
    a = spec["cutoff"]
    out = [_tagged(b2(a=a, eta=eta, r_sphere=rs), f"{species}-{species}") for eta, rs in spec["g2"]]
    out += [_tagged(b5(a=a, eta=eta, zeta=zeta, l=lam), f"{species}-{species}-{species}")
            for eta, zeta, lam in spec["g5"]]
    return out


def sw_potentials(sw, species="Si"):
    """Stillinger–Weber silicon in miniff's per-atom convention, equal in total to LAMMPS ``pair_style sw``.

    miniff sums a pair term ``"Si-Si"`` from both atoms and the three-body term over *ordered* neighbour pairs
    (j, k), while LAMMPS counts every pair once and every triplet once per centre, so the two-body epsilon and
    the three-body lambda are halved.

    Parameters
    ----------
    sw : dict
        LAMMPS ``Si.sw`` parameters: epsilon, sigma, a, lambda, gamma, costheta0, A, B, p, q.
    """
    sw2, sw3 = require("potentials", "sw2_potential_family", "sw3_potential_family")
    two = sw2(epsilon=sw["epsilon"] / 2, sigma=sw["sigma"], a=sw["a"], p=sw["p"], q=sw["q"],
              gauge_a=sw["A"], gauge_b=sw["B"])
    three = sw3(epsilon=sw["epsilon"], sigma=sw["sigma"], a=sw["a"], l=sw["lambda"] / 2, gamma=sw["gamma"],
                cos_theta0=sw["costheta0"])
    return [_tagged(two, f"{species}-{species}"), _tagged(three, f"{species}-{species}-{species}")]


def lj_potentials(epsilon, sigma, cutoff, species="Ar"):
    """Unshifted Lennard-Jones in miniff's convention (pair term counted from both atoms: epsilon halved)."""
    lj = require("potentials", "lj_potential_family")
    return [_tagged(lj(epsilon=epsilon / 2, sigma=sigma, a=cutoff / sigma), f"{species}-{species}")]


def nn_potentials(net, descriptors, species="Si"):
    """NN potentials (one species) from a torch network and tagged descriptors: ``miniff.ml.NNPotential``
    (the seed's name), or the 0.1.4 ``miniff.ml.potentials_from_ml_data`` where only that exists."""
    try:
        nn_cls = require("ml", "NNPotential")
    except Unavailable:
        make = require("ml", "potentials_from_ml_data")
        return list(make([net], {species: descriptors}))
    return [nn_cls(net, descriptors, tag=species)]


def calculator(potentials):
    """A :class:`miniff.calculator.MiniffCalculator` for a list of potentials."""
    calc_cls = require("calculator", "MiniffCalculator")
    return calc_cls(potentials)

