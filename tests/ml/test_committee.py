"""CommitteePotential and committee_spread: the mean is a potential, the spread equals numpy over the members."""

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from support import central_difference

from miniff import ml
from miniff.calculator import MiniffCalculator
from miniff.kernel import Cell, NeighborWrapper
from miniff.ml import descriptor_data
from miniff.potentials import behler2_descriptor_family, behler5_descriptor_family, lj_potential_family

CUTOFF = 3.4
K = 3


def _descriptors(species):
    return [
        behler2_descriptor_family(a=CUTOFF, eta=0.5, r_sphere=1.2, tag=f"{species}-a"),
        behler2_descriptor_family(a=CUTOFF, eta=0.2, r_sphere=2.0, tag=f"{species}-b"),
        behler5_descriptor_family(a=CUTOFF, eta=0.05, l=1.0, zeta=1.0, tag=f"{species}-a-b"),
    ]


def _member(species, seed):
    torch.manual_seed(seed)
    net = ml.SequentialSoleEnergyNN(3, n_internal=4, n_layers=2, activation="tanh")
    return ml.NNPotential(net, _descriptors(species), tag=species)


def _members(species, seeds):
    return [_member(species, s) for s in seeds]


@pytest.fixture
def wrapper(triclinic_box):
    vectors, frac, species, pbc = triclinic_box
    nw = NeighborWrapper(Cell(vectors, frac, species), cutoff=CUTOFF, pbc=pbc)
    nw.n_threads = 1
    return nw


@pytest.fixture
def model():
    """Committees for both species (K = 3, different seeds) plus a classical pair term."""
    lj = lj_potential_family(epsilon=0.01, sigma=1.5, a=CUTOFF / 1.5, tag="a-b")
    return [ml.CommitteePotential(_members("a", [1, 2, 3])), ml.CommitteePotential(_members("b", [4, 5, 6])), lj]


def _member_models(model):
    """Model k = member k of every committee + the other potentials (evaluated one by one)."""
    committees = [p for p in model if isinstance(p, ml.CommitteePotential)]
    others = [p for p in model if not isinstance(p, ml.CommitteePotential)]
    return [[c.members[k] for c in committees] + others for k in range(K)]


def _numpy_spread(nw, model):
    """Independent reference: evaluate every member model separately and take numpy standard deviations."""
    evs = [nw.evaluate(m, grad=True, stress=True) for m in _member_models(model)]
    e_k = np.array([e.energy for e in evs])
    e_kn = np.stack([e.energy_n for e in evs])
    f_knc = -np.stack([e.grad_nc for e in evs])
    s_k6 = np.stack([e.stress for e in evs])
    mean_f = f_knc.mean(axis=0)
    forces_std = np.sqrt(((f_knc - mean_f) ** 2).mean(axis=(0, 2)))
    return e_k, e_kn, f_knc, s_k6, forces_std


def test_identical_members_have_zero_spread_and_equal_the_member(wrapper):
    member = _member("a", 7)
    single = [member, _member("b", 8)]
    committee = [ml.CommitteePotential([member, _member("a", 7), member]),
                 ml.CommitteePotential([_member("b", 8)] * 2 + [_member("b", 8)])]
    ref = wrapper.evaluate(single, grad=True, stress=True)
    got = wrapper.evaluate(committee, grad=True, stress=True)
    assert got.energy == pytest.approx(ref.energy, rel=1e-13)
    np.testing.assert_allclose(got.energy_n, ref.energy_n, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(got.grad_nc, ref.grad_nc, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got.stress, ref.stress, rtol=1e-12, atol=1e-14)
    spread = ml.committee_spread(wrapper, committee)
    assert spread.n_members == 3
    assert spread.energy_std == pytest.approx(0.0, abs=1e-13)
    np.testing.assert_allclose(spread.energies_std, 0.0, atol=1e-13)
    np.testing.assert_allclose(spread.forces_std, 0.0, atol=1e-12)
    np.testing.assert_allclose(spread.stress_std, 0.0, atol=1e-13)


def test_mean_and_spread_equal_numpy_over_members(wrapper, model):
    e_k, e_kn, f_knc, s_k6, forces_std = _numpy_spread(wrapper, model)
    got = wrapper.evaluate(model, grad=True, stress=True)
    assert got.energy == pytest.approx(e_k.mean(), rel=1e-12)
    np.testing.assert_allclose(got.energy_n, e_kn.mean(axis=0), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(-got.grad_nc, f_knc.mean(axis=0), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(got.stress, s_k6.mean(axis=0), rtol=1e-11, atol=1e-13)
    spread = ml.committee_spread(wrapper, model)
    assert e_k.std() > 1e-3  # members really differ
    assert spread.energy_std == pytest.approx(e_k.std(), rel=1e-11)
    np.testing.assert_allclose(spread.energies_std, e_kn.std(axis=0), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(spread.forces_std, forces_std, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(spread.stress_std, s_k6.std(axis=0), rtol=1e-10, atol=1e-13)
    assert spread.forces_std.shape == (12,) and spread.stress_std.shape == (6,)
    only = ml.committee_spread(wrapper, model, forces=False, stress=False)
    assert only.forces_std is None and only.stress_std is None
    assert only.energy_std == pytest.approx(e_k.std(), rel=1e-11)


def test_batched_members_equal_members_one_by_one(wrapper, model):
    """Members of one structure run as one batch (batched matrix products over stacked weights); a committee
    whose members differ in structure (other widths, other activation, a custom module) runs them one by
    one; both equal the members' own evaluations (the numpy reference over members)."""
    assert all(c._stackable_networks() is not None for c in model[:2])
    wider = _members("a", [1, 2])
    torch.manual_seed(3)
    wider.append(ml.NNPotential(ml.SequentialSoleEnergyNN(3, n_internal=5, n_layers=2, activation="tanh"),
                                _descriptors("a"), tag="a"))
    torch.manual_seed(4)
    other_act = ml.NNPotential(ml.SequentialSoleEnergyNN(3, n_internal=4, n_layers=2, activation="sigmoid"),
                               _descriptors("b"), tag="b")
    mixed = [ml.CommitteePotential(wider), ml.CommitteePotential(_members("b", [4, 5]) + [other_act]), model[2]]
    assert all(c._stackable_networks() is None for c in mixed[:2])
    for m in (model, mixed):
        e_k, e_kn, f_knc, s_k6, forces_std = _numpy_spread(wrapper, m)
        got = wrapper.evaluate(m, grad=True, stress=True)
        np.testing.assert_allclose(got.energy_n, e_kn.mean(axis=0), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(-got.grad_nc, f_knc.mean(axis=0), rtol=1e-11, atol=1e-12)
        spread = ml.committee_spread(wrapper, m)
        np.testing.assert_allclose(spread.forces_std, forces_std, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(spread.energies_std, e_kn.std(axis=0), rtol=1e-11, atol=1e-13)
    # a custom activation module (settings a repr may not show): one by one
    class Scaled(torch.nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return torch.tanh(self.factor * x)

    custom = _members("a", [1, 2])
    for m, factor in zip(custom, (1.0, 2.0), strict=True):
        m.nn[1] = Scaled(factor)
    assert ml.CommitteePotential(custom)._stackable_networks() is None
    # a member's network replaced by one of another structure: the check is redone
    c = model[0]
    c.members[1].parameters["nn"] = wider[2].nn
    assert c._stackable_networks() is None


def test_descriptors_evaluated_once_for_energy_and_spread(wrapper, model, monkeypatch):
    calls = []
    real = descriptor_data.eval_descriptors_hook()

    def counting(*args, **kwargs):
        calls.append(kwargs.get("grad"))
        return real(*args, **kwargs)

    monkeypatch.setattr(descriptor_data, "eval_descriptors_hook", lambda: counting)
    # by default forces come from the mean's descriptor derivative alone: a spread of the forces evaluates again
    mean_only = wrapper.evaluate(model, grad=True, stress=True)
    assert len(calls) == 2  # one per committee (species), not one per member
    ml.committee_spread(wrapper, model, stress=False)
    assert len(calls) == 4
    for c in model[:2]:   # the committees
        c.keep_member_gradients = True
    wrapper.set_cell_cartesian(wrapper.cartesian_row.copy(), normalize=False)   # new pair list, same positions
    wrapper.compute_distances(CUTOFF)
    calls.clear()
    kept = wrapper.evaluate(model, grad=True, stress=True)
    assert len(calls) == 2
    ml.committee_spread(wrapper, model)
    assert len(calls) == 2  # the spread of the same positions reuses them
    # both paths give the same mean (the contraction is linear)
    np.testing.assert_allclose(kept.grad_nc, mean_only.grad_nc, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(kept.stress, mean_only.stress, rtol=1e-12, atol=1e-15)
    assert kept.energy == pytest.approx(mean_only.energy, rel=1e-14)
    cart = wrapper.cartesian_row.copy()
    cart[0] += 0.01
    wrapper.set_cell_cartesian(cart, normalize=False)
    wrapper.compute_distances(CUTOFF)
    ml.committee_spread(wrapper, model)
    assert len(calls) == 4  # new positions: evaluated again


def test_forces_and_stress_match_finite_differences(wrapper, model):
    ev = wrapper.evaluate(model, grad=True, stress=True)
    cart0 = wrapper.cartesian_row.copy()
    vectors0 = np.array(wrapper.vectors)

    def energy(cart_sub):
        cart = cart0.copy()
        cart[:4] = cart_sub
        wrapper.set_cell_cartesian(cart, normalize=False)
        wrapper.compute_distances(CUTOFF)
        return wrapper.total(model)

    np.testing.assert_allclose(ev.grad_nc[:4], central_difference(energy, cart0[:4], eps=1e-5), atol=1e-7)

    def strained(strain):
        deform = np.eye(3) + 0.5 * (strain + strain.T)  # sigma_ij = (1/V) dE/d strain_ij, symmetric strain
        cell = Cell(vectors0 @ deform, np.linalg.solve(vectors0.T, cart0.T).T, np.asarray(wrapper.values))
        nw = NeighborWrapper(cell, cutoff=CUTOFF, pbc=(True, True, True), normalize=False)
        return nw.total(model)

    d_strain = central_difference(strained, np.zeros((3, 3)), eps=1e-6)
    volume = abs(np.linalg.det(vectors0))
    ref = np.array([d_strain[0, 0], d_strain[1, 1], d_strain[2, 2], d_strain[1, 2], d_strain[0, 2],
                    d_strain[0, 1]]) / volume
    np.testing.assert_allclose(ev.stress, ref, atol=1e-7)


def test_calculator_results_equal_wrapper(wrapper, model):
    vectors = np.array(wrapper.vectors)
    atoms = Atoms(symbols=["H" if s == "a" else "He" for s in np.asarray(wrapper.values)],
                  positions=np.array(wrapper.cartesian_row), cell=vectors, pbc=True)
    atoms.calc = MiniffCalculator(model, species_map={"H": "a", "He": "b"}, n_threads=1)
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    ev = wrapper.evaluate(model, grad=True, stress=True)
    spread = ml.committee_spread(wrapper, model)
    assert energy == pytest.approx(ev.energy, rel=1e-12)
    np.testing.assert_allclose(forces, -ev.grad_nc, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stress, ev.stress, rtol=1e-10, atol=1e-13)
    results = atoms.calc.results
    assert results["energy_std"] == pytest.approx(spread.energy_std, rel=1e-10)
    np.testing.assert_allclose(results["energies_std"], spread.energies_std, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(results["forces_std"], spread.forces_std, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(results["stress_std"], spread.stress_std, rtol=1e-10, atol=1e-13)


def test_calculator_without_committee_has_no_spread(wrapper):
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.5]], cell=np.eye(3) * 8, pbc=True)
    atoms.calc = MiniffCalculator(_members("a", [1]), species_map={"H": "a"})
    atoms.get_forces()
    assert "forces_std" not in atoms.calc.results and "energy_std" not in atoms.calc.results


@pytest.mark.parametrize("suffix", [".json", ".pt"])
def test_save_load_round_trip(tmp_path, wrapper, model, suffix):
    path = tmp_path / f"committee{suffix}"
    ml.save_potentials(model, path)
    if suffix == ".json":
        data = json.loads(path.read_text())
        assert data["potentials"][0]["tag"] == "ml committee" and len(data["potentials"][0]["members"]) == K
    loaded = ml.load_potentials(path)
    assert isinstance(loaded[0], ml.CommitteePotential) and loaded[0].n_members == K
    ref = wrapper.evaluate(model, grad=True, stress=True)
    got = wrapper.evaluate(loaded, grad=True, stress=True)
    np.testing.assert_array_equal(got.energy_n, ref.energy_n)
    np.testing.assert_array_equal(got.grad_nc, ref.grad_nc)
    np.testing.assert_array_equal(ml.committee_spread(wrapper, loaded).forces_std,
                                  ml.committee_spread(wrapper, model).forces_std)


def test_load_rejects_bad_committee_file(tmp_path, model):
    path = tmp_path / "committee.json"
    ml.save_potentials(model[:1], path)
    data = json.loads(path.read_text())
    data["potentials"][0]["members"][1] = {"tag": "Lennard-Jones", "parameters": {}}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"members'\]\[1\]"):
        ml.load_potentials(path)


def test_bad_members_raise_clear_errors():
    with pytest.raises(TypeError, match="members"):
        ml.CommitteePotential(_member("a", 1))
    with pytest.raises(ValueError, match="at least 2"):
        ml.CommitteePotential([_member("a", 1)])
    with pytest.raises(ValueError, match="same species"):
        ml.CommitteePotential([_member("a", 1), _member("b", 1)])
    other = _member("a", 2)
    other.descriptors = other.descriptors[:2] + (behler2_descriptor_family(a=CUTOFF, eta=0.9, r_sphere=1.0,
                                                                           tag="a-a"),)
    with pytest.raises(ValueError, match="same descriptors"):
        ml.CommitteePotential([_member("a", 1), other])
    with pytest.raises(TypeError, match=r"members\[1\]"):
        ml.CommitteePotential([_member("a", 1), lj_potential_family(epsilon=1.0, sigma=1.0, a=3.0, tag="a-a")])


def test_spread_needs_committees_of_equal_size(wrapper):
    with pytest.raises(ValueError, match="no CommitteePotential"):
        ml.committee_spread(wrapper, [_member("a", 1)])
    mixed = [ml.CommitteePotential(_members("a", [1, 2])), ml.CommitteePotential(_members("b", [1, 2, 3]))]
    with pytest.raises(ValueError, match="different numbers of members"):
        ml.committee_spread(wrapper, mixed)


def test_spread_checks_the_wrapper(triclinic_box, model):
    vectors, frac, species, pbc = triclinic_box
    nw = NeighborWrapper(Cell(vectors, frac, species), pbc=pbc)
    with pytest.raises(ValueError, match="no neighbour list"):
        ml.committee_spread(nw, model)
    nw.compute_distances(2.0)
    with pytest.raises(ValueError, match="larger than the neighbour list cutoff"):
        ml.committee_spread(nw, model)
    only_a = NeighborWrapper(Cell(vectors, frac, ["a"] * len(species)), cutoff=CUTOFF, pbc=pbc)
    spread = ml.committee_spread(only_a, model[:1] + model[1:2])  # the "b" committee has no atoms: skipped
    ref = [only_a.total(m, ignore_missing_species=True) for m in _member_models(model[:2])]
    assert np.std(ref) > 1e-3 and spread.energy_std == pytest.approx(np.std(ref), rel=1e-11)


def test_threads_do_not_change_committee(wrapper, model):
    spreads, evals = [], []
    for n_threads in (1, 2):
        for c in model[:2]:
            c._last = None  # no reuse between the two thread counts
        evals.append(wrapper.evaluate(model, grad=True, stress=True, n_threads=n_threads))
        spreads.append(ml.committee_spread(wrapper, model, n_threads=n_threads))
    np.testing.assert_allclose(evals[0].grad_nc, evals[1].grad_nc, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(spreads[0].forces_std, spreads[1].forces_std, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(spreads[0].stress_std, spreads[1].stress_std, rtol=1e-12, atol=1e-14)
