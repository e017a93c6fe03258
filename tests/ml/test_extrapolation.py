"""Descriptor training ranges: counts of extrapolating descriptors per atom, warn/raise, fits record the range."""

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from support import LJ_RC, lj_cells, radial_basis

from miniff import ml, ml_util
from miniff.calculator import MiniffCalculator
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import behler2_descriptor_family, eval_descriptors

CUTOFF = 3.4


def _descriptors():
    return [behler2_descriptor_family(a=CUTOFF, eta=eta, r_sphere=1.5, tag="a-a") for eta in (0.3, 1.0, 3.0)]


def _member(seed, **kwargs):
    torch.manual_seed(seed)
    net = ml.SequentialSoleEnergyNN(3, n_internal=4, n_layers=2, activation="tanh")
    return ml.NNPotential(net, _descriptors(), tag="a", **kwargs)


def _wrapper(scale=1.0, rng_seed=0):
    """A rattled simple-cubic cell of 8 atoms with side 2.2 * scale Å per atom."""
    rng = np.random.default_rng(rng_seed)
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], dtype=float) / 2
    frac = grid + rng.normal(scale=0.01, size=grid.shape)
    nw = NeighborWrapper(Cell(np.eye(3) * 4.4 * scale, frac, ["a"] * 8), cutoff=CUTOFF, pbc=(True, True, True))
    nw.n_threads = 1
    return nw


def _range_of(nw):
    values, _ = eval_descriptors(nw, _descriptors())
    return np.stack([values.min(axis=0), values.max(axis=0)], axis=1), values


def test_counts_equal_numpy_on_an_out_of_range_structure():
    rng_train, _ = _range_of(_wrapper())
    pot = _member(1, descriptor_range=rng_train)
    nw = _wrapper()
    pot.compute(nw)
    np.testing.assert_array_equal(pot.last_extrapolation(nw), 0)  # the training structure itself: inside
    compressed = _wrapper(scale=0.85)
    e = pot.compute(compressed)[0]
    _, values = _range_of(compressed)
    ref = ((values < rng_train[:, 0]) | (values > rng_train[:, 1])).sum(axis=1)
    assert ref.sum() > 0  # the compressed cell leaves the range
    np.testing.assert_array_equal(pot.last_extrapolation(compressed), ref)
    assert pot.last_extrapolation(nw) is None  # counts belong to the last wrapper evaluated
    assert np.isfinite(e).all()


def test_warn_and_raise():
    rng_train, _ = _range_of(_wrapper())
    compressed = _wrapper(scale=0.85)
    pot = _member(1, descriptor_range=rng_train, on_extrapolation="warn")
    with pytest.warns(ml.ExtrapolationWarning, match="outside the training range"):
        compressed.total(pot)
    pot.on_extrapolation = "raise"
    with pytest.raises(ml.ExtrapolationError, match="8 atom"):
        compressed.grad(pot)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _wrapper().total(pot)  # inside the range: silent
    with pytest.raises(ValueError, match="on_extrapolation"):
        pot.on_extrapolation = "loud"
    with pytest.raises(ValueError, match=r"descriptor_range must have shape \(3, 2\)"):
        _member(1, descriptor_range=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="min <= max"):
        _member(1, descriptor_range=[[1, 0], [0, 1], [0, 1]])


def test_committee_uses_the_union_of_ranges_and_calculator_reports_counts():
    rng_train, _ = _range_of(_wrapper())
    wide = rng_train.copy()
    wide[0] = [-1e3, 1e3]  # member 2 saw every value of descriptor 0
    committee = ml.CommitteePotential([_member(1, descriptor_range=rng_train), _member(2, descriptor_range=wide)])
    np.testing.assert_array_equal(committee.descriptor_range[0], [-1e3, 1e3])
    compressed = _wrapper(scale=0.85)
    _, values = _range_of(compressed)
    union = committee.descriptor_range
    ref = ((values < union[:, 0]) | (values > union[:, 1])).sum(axis=1)
    atoms = Atoms("H8", positions=np.array(compressed.cartesian_row), cell=np.array(compressed.vectors), pbc=True)
    atoms.calc = MiniffCalculator([committee], species_map={"H": "a"}, n_threads=1)
    atoms.get_forces()
    np.testing.assert_array_equal(atoms.calc.results["extrapolating_descriptors"], ref)
    assert atoms.calc.results["n_extrapolating_atoms"] == int((ref > 0).sum())
    committee.on_extrapolation = "raise"
    with pytest.raises(ml.ExtrapolationError):
        compressed.total(committee)


@pytest.mark.parametrize("suffix", [".json", ".pt"])
def test_range_and_policy_survive_save_and_load(tmp_path, suffix):
    rng_train, _ = _range_of(_wrapper())
    pots = [_member(1, descriptor_range=rng_train, on_extrapolation="warn"),
            ml.CommitteePotential([_member(2, descriptor_range=rng_train), _member(3)], on_extrapolation="raise")]
    ml.save_potentials(pots, tmp_path / f"p{suffix}")
    single, committee = ml.load_potentials(tmp_path / f"p{suffix}")
    np.testing.assert_array_equal(single.descriptor_range, rng_train)
    assert single.on_extrapolation == "warn" and committee.on_extrapolation == "raise"
    assert committee.descriptor_range is None  # a member without a range: no check


def test_fit_workflow_records_the_training_range():
    cells = lj_cells(10, seed=3)
    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(cells, cells_order=None, descriptors=radial_basis(4), test_set=2)
    (pot,) = wf.build_potentials()
    learn = [cells[i] for i in wf.cell_indices["learn"]]
    values = np.concatenate([eval_descriptors(NeighborWrapper(c, cutoff=LJ_RC), radial_basis(4)["Ar"])[0]
                             for c in learn])
    ref = np.stack([values.min(axis=0), values.max(axis=0)], axis=1)
    np.testing.assert_allclose(pot.descriptor_range, ref, rtol=1e-10, atol=1e-12)
