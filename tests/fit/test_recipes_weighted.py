"""The wACSF recipe: counts that do not grow with the number of elements, the radial grid from the shortest
distance, errors naming the argument, and a fit chosen by ``descriptor_recipe="wacsf"`` (as a job file does)."""

import numpy as np
import pytest
from support import brute_force_pairs

import miniff.potentials as P
from miniff import ml_util
from miniff.fit.recipes import behler_turning_point
from miniff.io import read_cells

ELEMENTS = ["Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"]


@pytest.mark.parametrize("n_elements", [2, 5, 7])
def test_the_count_per_species_does_not_depend_on_the_elements(n_elements):
    out = ml_util.default_wacsf_descriptors(ELEMENTS[:n_elements], a=6.0, d_min=2.3)
    assert sorted(out) == sorted(ELEMENTS[:n_elements])
    for centre, items in out.items():
        assert len(items) == 2 * (6 + 2 * 8)   # two channels of 6 radial + 2 widths x 4 zeta x 2 lambda angular
        assert {d.tag for d in items} == {centre}
        assert [d.parameters["weights"] for d in items] == ["unit"] * 22 + ["Z"] * 22
        kinds = [d.family for d in items]
        assert kinds == ([P.weighted_radial_descriptor_family] * 6 + [P.weighted_angular_descriptor_family] * 16) * 2
        assert sorted({d.parameters["eta"] for d in items[6:22]}) == [0.0, 0.3]
    one = ml_util.default_wacsf_descriptors(["Cu"], a=6.0, d_min=2.3, weights=["Z", "unit"])
    assert [d.parameters["weights"] for d in one["Cu"]] == ["Z"] * 22  # one species: the channels are proportional
    radial = ml_util.default_wacsf_descriptors("Cu", a=6.0, eta=[0.1, 0.5], angular=False, weights={"Cu": 2.0})
    assert [d.parameters["eta"] for d in radial["Cu"]] == [0.1, 0.5]


def test_the_radial_grid_starts_at_the_shortest_distance():
    cells = read_cells(ml_util.example_data_path(), index=":6")
    out = ml_util.default_wacsf_descriptors(cells, a=6.0, n=4, left=1.0)
    d_min = min(brute_force_pairs(c.vectors, c.cartesian(), 6.0)[3].min() for c in cells)
    turning = [behler_turning_point(6.0, d.parameters["eta"]) for d in out["Cu"][:4]]
    np.testing.assert_allclose(turning, np.linspace(d_min, 3.0, 4), rtol=1e-8)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="give d_min"):
        ml_util.default_wacsf_descriptors(["Cu", "Pt"], a=6.0)
    with pytest.raises(ValueError, match="a must be a positive cutoff"):
        ml_util.default_wacsf_descriptors(["Cu"], a=-1.0, d_min=2.0)
    with pytest.raises(ValueError, match="d_min"):
        ml_util.default_wacsf_descriptors(["Cu"], a=4.0, d_min=2.5)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        ml_util.default_wacsf_descriptors(["Cu"], a=6.0, d_min=2.0, n=0)
    with pytest.raises(ValueError, match="eta must be non-negative"):
        ml_util.default_wacsf_descriptors(["Cu"], a=6.0, eta=[-1.0])
    with pytest.raises(ValueError, match="weights"):
        ml_util.default_wacsf_descriptors(["Cu"], a=6.0, d_min=2.0, weights=[])
    with pytest.raises(ValueError, match=r"weights\['Cu'\]"):
        ml_util.default_wacsf_descriptors(["Cu"], a=6.0, d_min=2.0, weights={"Cu": float("nan")})
    with pytest.raises(ValueError, match="zeta must be finite"):
        ml_util.default_wacsf_descriptors(["Cu"], a=6.0, d_min=2.0, zeta=[np.inf])


def test_wacsf_recipe_fits_and_the_potential_matches_the_training_path(tmp_path):
    """``descriptor_recipe="wacsf"`` on the Cu/Pt example data: the loss falls, the saved potential
    evaluates the energies the training path predicts."""
    from miniff.kernel import NeighborWrapper

    cells = read_cells(ml_util.example_data_path(), index=":24")
    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(cells, cells_order=None, descriptor_recipe="wacsf", cutoff=5.5, test_set=4,
               default_descriptor_kwargs={"n": 3, "zeta": [1, 4]}, nn_kwargs={"n_internal": 4, "n_layers": 1})
    assert {s: len(v) for s, v in wf.descriptors.items()} == {"Cu": 22, "Pt": 22}
    wf.run(n_epochs=3, save=True, save_fn=str(tmp_path / "w.json"), progress=False)
    losses = [h["loss"] for h in wf.history]
    assert losses[-1] < losses[0]
    pots = ml_util.load_potentials(tmp_path / "w.json")
    predicted = wf.predict("test")["energy_pred"]
    for k, cell in enumerate(cells[20:24]):
        nw = NeighborWrapper(cell, cutoff=5.5)
        energy = nw.total(pots, ignore_missing_species=True)
        assert energy / len(cell.values) == pytest.approx(predicted[k], rel=1e-9, abs=1e-12)


def test_a_job_file_chooses_the_wacsf_recipe(tmp_path, monkeypatch):
    import shutil

    import yaml

    monkeypatch.chdir(tmp_path)
    shutil.copy(ml_util.example_data_path(), tmp_path / "cupt.extxyz")
    job = {"fit": {"init": {"seed": 0},
                   "prepare": {"fn_cells": "cupt.extxyz", "cells_index": ":12", "cutoff": 5.5, "test_set": 2,
                               "descriptor_recipe": "wacsf",
                               "default_descriptor_kwargs": {"n": 2, "zeta": [1], "weights": ["Z"]},
                               "nn_kwargs": {"n_internal": 3, "n_layers": 1}},
                   "run": {"n_epochs": 1, "save_fn": "w.pt", "progress": False}}}
    (tmp_path / "job.yml").write_text(yaml.safe_dump(job, sort_keys=False))
    (fit,) = ml_util.run_job_file(tmp_path / "job.yml")
    # 2 radial, 2 angular widths x 1 zeta x 2 lambda
    assert {s: [d.family.tag for d in v] for s, v in fit.descriptors.items()} == \
        {s: ["weighted radial"] * 2 + ["weighted angular"] * 4 for s in ("Cu", "Pt")}
    (pot_cu, pot_pt) = sorted(ml_util.load_potentials(tmp_path / "w.pt"), key=lambda p: p.tag)
    assert pot_cu.tag == "Cu" and pot_cu.descriptors[0].parameters["weights"] == "Z"
    job["fit"]["prepare"]["descriptor_recipe"] = "wacs"
    (tmp_path / "job.yml").write_text(yaml.safe_dump(job, sort_keys=False))
    with pytest.raises(ValueError, match="descriptor_recipe must be 'behler', 'lsp', 'wacsf' or 'chebyshev'"):
        ml_util.run_job_file(tmp_path / "job.yml")
