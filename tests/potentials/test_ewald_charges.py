"""Ewald energy of predicted charges: fixed charges reproduced, chain rule vs finite differences, state dicts."""

import numpy as np
import pytest

from miniff.kernel import Cell, NeighborWrapper
from miniff.numerical import numerical_forces, numerical_stress
from miniff.potentials import (
    behler2_descriptor_family,
    ewald_charge_wrapper_potential_family,
    ewald_total_potential_family,
    on_site_potential_family,
    potential_from_state_dict,
)

from .test_ewald import random_ionic


def predicted(net_species=(0.7, -0.7)):
    return [on_site_potential_family(v0=net_species[0], tag="a"), on_site_potential_family(v0=net_species[1], tag="b"),
            behler2_descriptor_family(a=4.0, eta=0.3, r_sphere=2.0, tag="a-b"),
            behler2_descriptor_family(a=4.0, eta=0.5, r_sphere=1.5, tag="b-b")]


def test_fixed_charges_per_species_reproduce_the_ewald_total(rng):
    cell = random_ionic(rng, n=8)
    cell.meta["charges"] = np.where(cell.values == "a", 0.9, -0.9)
    kwargs = {"a": 6.0, "eta": 0.55, "k_cut": 3.0}
    fixed = ewald_total_potential_family(**kwargs)
    wrapper = ewald_charge_wrapper_potential_family(
        descriptors=[on_site_potential_family(v0=0.9, tag="a"), on_site_potential_family(v0=-0.9, tag="b")],
        charge_middleware=None, **kwargs)
    nw = NeighborWrapper(cell, cutoff=6.0)
    np.testing.assert_allclose(wrapper.charges(nw), cell.meta["charges"])
    a, b = nw.evaluate(fixed, stress=True), nw.evaluate(wrapper, stress=True)
    assert b.energy == pytest.approx(a.energy, rel=1e-13)
    np.testing.assert_allclose(b.grad_nc, a.grad_nc, atol=1e-12)
    np.testing.assert_allclose(b.stress, a.stress, atol=1e-13)


@pytest.mark.parametrize("middleware", [None, "subtract_mean"])
def test_chain_rule_through_the_charges(rng, middleware):
    cell = random_ionic(rng, n=8, net=0.0)
    del cell.meta["charges"]  # the wrapper predicts them
    pot = ewald_charge_wrapper_potential_family(descriptors=predicted(), a=6.0, eta=0.55, k_cut=3.0,
                                                charge_middleware=middleware)
    nw = NeighborWrapper(cell, cutoff=6.0)
    q = pot.charges(nw)
    assert np.ptp(q[cell.values == "a"]) > 0.01  # the charges do depend on the environment
    if middleware:
        assert abs(q.sum()) < 1e-12
    ev = nw.evaluate(pot, stress=True)
    np.testing.assert_allclose(-ev.grad_nc, numerical_forces(nw, pot, eps=1e-5), atol=3e-6)
    np.testing.assert_allclose(ev.stress, numerical_stress(nw, pot, eps=1e-6), atol=3e-7)


def test_state_dict_round_trip_and_errors(rng):
    pot = ewald_charge_wrapper_potential_family(descriptors=predicted(), a=6.0, eta=0.55, accuracy=1e-6)
    data = pot.state_dict()
    assert len(data["descriptors"]) == 4
    back = potential_from_state_dict(data)
    cell = random_ionic(rng, n=6)
    nw = NeighborWrapper(cell, cutoff=6.0)
    assert nw.total(back) == pytest.approx(nw.total(pot), rel=1e-14)
    assert pot.cutoff == 6.0
    with pytest.raises(ValueError, match="descriptors"):
        ewald_charge_wrapper_potential_family(a=6.0, eta=0.5)
    with pytest.raises(ValueError, match="charge_middleware"):
        ewald_charge_wrapper_potential_family(descriptors=predicted(), a=6.0, eta=0.5, charge_middleware="scale")
    with pytest.raises(TypeError, match=r"descriptors\[0\]"):
        ewald_charge_wrapper_potential_family(descriptors=["x"], a=6.0, eta=0.5)


def test_no_charges_needed_on_the_cell(rng):
    cell = Cell(np.eye(3) * 5, [[0, 0, 0], [0.5, 0.5, 0.5]], ["a", "b"])
    pot = ewald_charge_wrapper_potential_family(descriptors=predicted()[:2], a=5.0, eta=0.6, accuracy=1e-8)
    nw = NeighborWrapper(cell, cutoff=5.0)
    fixed = ewald_total_potential_family(a=5.0, eta=0.6, accuracy=1e-8)
    cell.meta["charges"] = [0.7, -0.7]
    assert nw.total(pot) == pytest.approx(NeighborWrapper(cell, cutoff=5.0).total(fixed), rel=1e-13)


def test_terms_of_absent_species_are_skipped(rng):
    cell = Cell(np.eye(3) * 5, [[0, 0, 0], [0.5, 0.5, 0.5]], ["a", "b"])
    charges = predicted()[:2] + [on_site_potential_family(v0=3.0, tag="c")]  # no "c" atom in the cell
    pot = ewald_charge_wrapper_potential_family(descriptors=charges, a=5.0, eta=0.6, accuracy=1e-8)
    nw = NeighborWrapper(cell, cutoff=5.0)
    np.testing.assert_allclose(pot.charges(nw), [0.7, -0.7])
