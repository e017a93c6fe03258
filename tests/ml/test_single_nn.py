"""SingleNN (one network for every species, the species as inputs): the folded per-species networks equal the
concatenated inputs through the shared body, one species equals a plain per-species network with the same
weights, forces and stress match central differences, save/load round trips, and the fit path (prepare with
``nn_kwargs: {single: true}``, job files) trains one shared set of parameters."""

import numpy as np
import pytest
import torch
from support import make_nw, separated_fractions

import miniff.potentials as P
from miniff import ml_util
from miniff.io import read_cells
from miniff.ml import (
    NNPotential,
    SequentialSoleEnergyNN,
    SingleNN,
    SpeciesNetwork,
    load_potentials,
    potentials_from_ml_data,
    save_potentials,
    single_nn_networks,
    unique_parameters,
)
from miniff.numerical import numerical_forces, numerical_stress

CUT = 4.3
ELEMENTS = ("Al", "Ni", "Cu", "Pd", "Ag")


def _descriptors(centre):
    rad = [P.weighted_radial_descriptor_family(a=CUT, tag=centre, weights=w, eta=eta)
           for w in ("unit", "Z") for eta in (0.2, 1.0)]
    ang = [P.weighted_angular_descriptor_family(a=CUT, tag=centre, weights="unit", eta=0.05, l=l, zeta=2.0)
           for l in (-1.0, 1.0)]
    return rad + ang


def _system(rng, elements, n_atoms=10):
    vectors = np.array([[6.0, 0.0, 0.0], [0.5, 5.8, 0.0], [-0.3, 0.6, 6.1]])
    frac = separated_fractions(rng, vectors, n_atoms, 1.5)
    species = np.array([elements[k % len(elements)] for k in range(n_atoms)])
    return vectors, frac, species, (True, True, True)


def _reference(single, x, k):
    """Species ``k``'s energies of ``x`` by hand: the embedding row appended to the inputs, every layer of the
    body applied in turn with the output layer replaced by a copy carrying the species' offsets."""
    h = torch.cat([x, single.embedding[k].expand(len(x), -1)], dim=1)
    for i, module in enumerate(single.body):
        if i == single.output_index and single.species_output:
            out = torch.nn.Linear(module.in_features, 1, dtype=torch.float64)
            with torch.no_grad():
                out.weight.copy_(module.weight + single.output_weight[k])
                out.bias.copy_(module.bias + single.output_bias[k])
            module = out
        h = module(h)
    return h


@pytest.mark.parametrize("embedding,species_output,n_layers,output_activation",
                         [("one-hot", True, 3, False), (3, True, 3, False), ("one-hot", False, 3, False),
                          ("one-hot", True, 1, False), (2, True, 2, True)])
def test_species_networks_equal_the_shared_body_on_concatenated_inputs(embedding, species_output, n_layers,
                                                                        output_activation):
    torch.manual_seed(0)
    single = SingleNN(5, ELEMENTS, embedding=embedding, species_output=species_output, n_internal=7,
                      n_layers=n_layers, activation="tanh", dtype=torch.float64, output_activation=output_activation)
    if species_output:  # offsets away from their zero start, different per species
        with torch.no_grad():
            single.output_weight.normal_()
            single.output_bias.normal_()
    x = torch.randn(11, 5, dtype=torch.float64)
    species_index = torch.arange(11) % len(ELEMENTS)
    mixed = single(x, species_index)
    for k, view in enumerate(single.species_networks()):
        expected = _reference(single, x, k)
        if species_output:
            assert not torch.allclose(expected, _reference(single, x, (k + 1) % len(ELEMENTS)))
        torch.testing.assert_close(view(x), expected, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(single(x, torch.full((11,), k)), expected, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(mixed[species_index == k], expected[species_index == k], rtol=1e-14, atol=1e-14)
        plain = view.to_sequential()
        assert isinstance(plain, torch.nn.Sequential) and plain[0].in_features == 5
        assert all(type(m) is not SequentialSoleEnergyNN for m in plain)
        torch.testing.assert_close(plain(x), expected, rtol=1e-13, atol=1e-14)
    assert view.body is single.body


def test_one_species_equals_the_per_species_network_with_the_same_weights(rng):
    system = _system(rng, ["Cu"])
    nw = make_nw(system, CUT)
    ds = _descriptors("Cu")
    torch.manual_seed(2)
    single = SingleNN(len(ds), ["Cu"], n_internal=5, n_layers=2, activation="tanh", dtype=torch.float64)
    # the same weights as a per-species network: the one-hot column of the first layer is a bias
    w = single.body[0].weight.detach()
    first = torch.nn.Linear(len(ds), 5, dtype=torch.float64)
    with torch.no_grad():
        first.weight.copy_(w[:, :-1])
        first.bias.copy_(single.body[0].bias.detach() + w[:, -1])
    plain = torch.nn.Sequential(first, torch.nn.Tanh(), single.body[2])
    (view,) = single.species_networks()
    a = NNPotential(view, ds, tag="Cu", simplify=False)
    b = NNPotential(plain, ds, tag="Cu", simplify=False)
    assert nw.total(a) == pytest.approx(nw.total(b), rel=1e-14)
    np.testing.assert_allclose(nw.grad(a), nw.grad(b), rtol=1e-12, atol=1e-14)


def _fitted_like_potentials(rng, elements):
    """Potentials of a SingleNN over ``elements`` with a normalisation-free set of random weights."""
    descriptors = {s: _descriptors(s) for s in elements}
    torch.manual_seed(3)
    views = single_nn_networks(descriptors, embedding=2, n_internal=4, n_layers=2, activation="tanh",
                               dtype=torch.float64)
    with torch.no_grad():
        views[0].body[0].weight.mul_(0.05)
        views[0].single.output_weight.normal_(0.0, 0.5)   # species-specific output layers
        views[0].single.output_bias.normal_(0.0, 0.5)
    return potentials_from_ml_data(views, descriptors)


def test_forces_and_stress_match_central_differences(rng):
    elements = ELEMENTS[:3]
    nw = make_nw(_system(rng, elements), CUT)
    pots = _fitted_like_potentials(rng, elements)
    assert all(type(p.nn) is torch.nn.Sequential for p in pots)
    forces = -nw.grad(pots)
    assert np.abs(forces).max() > 1e-3
    np.testing.assert_allclose(forces, numerical_forces(nw, pots), atol=1e-7)
    np.testing.assert_allclose(nw.evaluate(pots, stress=True).stress, numerical_stress(nw, pots), atol=1e-8)


@pytest.mark.parametrize("suffix", [".json", ".pt"])
def test_save_and_load_round_trip(rng, tmp_path, suffix):
    elements = ELEMENTS[:3]
    nw = make_nw(_system(rng, elements), CUT)
    pots = _fitted_like_potentials(rng, elements)
    save_potentials(pots, tmp_path / f"single{suffix}")
    loaded = load_potentials(tmp_path / f"single{suffix}")
    assert nw.total(loaded) == pytest.approx(nw.total(pots), rel=1e-14)
    np.testing.assert_allclose(nw.grad(loaded), nw.grad(pots), rtol=1e-12, atol=1e-14)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="embedding must be one of"):
        SingleNN(3, ["Cu"], embedding="onehot")
    with pytest.raises(ValueError, match="embedding must be >= 1"):
        SingleNN(3, ["Cu"], embedding=0)
    with pytest.raises(TypeError, match="n_inputs must be an int"):
        SingleNN(2.5, ["Cu"])
    with pytest.raises(ValueError, match="species must not repeat"):
        SingleNN(3, ["Cu", "Cu"])
    with pytest.raises(TypeError, match="species_output must be a bool"):
        SingleNN(3, ["Cu"], species_output="yes")
    with pytest.raises(ValueError, match="k must be a species index below 1"):
        SingleNN(3, ["Cu"]).species_network(1)
    with pytest.raises(ValueError, match="same number of descriptors for every species"):
        single_nn_networks({"Cu": _descriptors("Cu"), "Pt": _descriptors("Pt")[:2]})


def test_unique_parameters_lists_shared_tensors_once():
    single = SingleNN(4, ["Cu", "Pt"], embedding=2, n_internal=3, n_layers=2)
    views = single.species_networks()
    # embedding, 2 x (weight, bias) of the body, the output weight and bias offsets
    assert len(unique_parameters(views)) == len(list(single.parameters())) == 7
    assert sum(len(list(v.parameters())) for v in views) == 14


def test_fit_with_single_network_shares_parameters_and_predicts_what_it_saves(tmp_path):
    from miniff.kernel import NeighborWrapper

    cells = read_cells(ml_util.example_data_path(), index=":20")
    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(cells, cells_order=None, descriptor_recipe="wacsf", cutoff=5.5, test_set=4,
               default_descriptor_kwargs={"n": 3, "zeta": [1, 4]},
               nn_kwargs={"single": True, "embedding": "one-hot", "n_internal": 4, "n_layers": 2})
    assert all(isinstance(n, SpeciesNetwork) for n in wf.nn) and wf.nn[0].single is wf.nn[1].single
    params = wf.closure.learning_parameters()
    assert len(params) == len({id(p) for p in params}) == len(list(wf.nn[0].single.parameters()))
    wf.run(n_epochs=3, save=True, save_fn=str(tmp_path / "s.json"), progress=False)
    assert wf.history[-1]["loss"] < wf.history[0]["loss"]
    assert wf.nn[0].single.output_weight.abs().max() > 0   # the per-species output layers were fitted
    pots = ml_util.load_potentials(tmp_path / "s.json")
    predicted = wf.predict("test")["energy_pred"]
    for k, cell in enumerate(cells[16:20]):
        energy = NeighborWrapper(cell, cutoff=5.5).total(pots, ignore_missing_species=True)
        assert energy / len(cell.values) == pytest.approx(predicted[k], rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError, match="embedding is an option of SingleNN"):
        ml_util.FitWorkflow(seed=0).prepare(cells[:6], descriptor_recipe="wacsf", cutoff=5.5, test_set=1,
                                            default_descriptor_kwargs={"n": 2, "zeta": [1]},
                                            nn_kwargs={"embedding": 2})
    with pytest.raises(ValueError, match="species_output is an option of SingleNN"):
        ml_util.FitWorkflow(seed=0).prepare(cells[:6], descriptor_recipe="wacsf", cutoff=5.5, test_set=1,
                                            default_descriptor_kwargs={"n": 2, "zeta": [1]},
                                            nn_kwargs={"species_output": False})


def test_a_job_file_fits_chebyshev_descriptors_and_a_single_network_with_a_learned_embedding(tmp_path,
                                                                                             monkeypatch):
    import shutil

    import yaml

    monkeypatch.chdir(tmp_path)
    shutil.copy(ml_util.example_data_path(), tmp_path / "cupt.extxyz")
    job = {"fit": {"init": {"seed": 0},
                   "prepare": {"fn_cells": "cupt.extxyz", "cells_index": ":12", "cutoff": 5.5, "test_set": 2,
                               "descriptor_recipe": "chebyshev",
                               "default_descriptor_kwargs": {"radial_order": 3, "angular_order": 2},
                               "nn_kwargs": {"single": True, "embedding": 2, "species_output": False,
                                             "n_internal": 3, "n_layers": 2}},
                   "run": {"n_epochs": 1, "save_fn": "s.pt", "progress": False}}}
    (tmp_path / "job.yml").write_text(yaml.safe_dump(job, sort_keys=False))
    (fit,) = ml_util.run_job_file(tmp_path / "job.yml")
    assert fit.nn[0].single.embedding.shape == (2, 2) and fit.nn[0].single.embedding.requires_grad
    assert fit.nn[0].single.output_weight is None   # species_output: false, every layer after the input shared
    assert {s: [d.family.tag for d in v] for s, v in fit.descriptors.items()} == \
        {s: (["Chebyshev radial"] * 4 + ["Chebyshev angular"] * 3) * 2 for s in ("Cu", "Pt")}
    assert fit.descriptors["Cu"][-1].parameters["weights"] == {"Cu": -1.0, "Pt": 1.0}
    assert sorted(p.tag for p in ml_util.load_potentials(tmp_path / "s.pt")) == ["Cu", "Pt"]


def test_a_checkpoint_resumes_the_shared_network(tmp_path):
    cells = read_cells(ml_util.example_data_path(), index=":10")
    kwargs = dict(cells_order=None, descriptor_recipe="chebyshev", cutoff=5.0, test_set=2,
                  default_descriptor_kwargs={"radial_order": 2, "angular_order": 1},
                  nn_kwargs={"single": True, "embedding": 2, "n_internal": 3, "n_layers": 2},
                  checkpoint=str(tmp_path / "fit.ckpt"))
    wf = ml_util.FitWorkflow(seed=0).prepare(cells, **kwargs)
    wf.run(n_epochs=1, progress=False, summary=False, checkpoint_every=1)
    again = ml_util.FitWorkflow(seed=1).prepare(cells, **kwargs)
    assert again.epoch == wf.epoch == 1 and again.nn[0].single is again.nn[1].single
    for a, b in zip(wf.nn[0].single.parameters(), again.nn[0].single.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
