"""Calibration of a committee's spread against held-out force errors, and the spread-vs-error figure."""

import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.stats import spearmanr

from miniff import ml, presentation
from miniff.calculator import MiniffCalculator
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import behler2_descriptor_family

CUTOFF = 3.5


def _member(seed):
    torch.manual_seed(seed)
    descriptors = [behler2_descriptor_family(a=CUTOFF, eta=e, r_sphere=r, tag="Ar-Ar")
                   for e, r in ((0.5, 1.2), (0.3, 2.0), (1.0, 2.5))]
    return ml.NNPotential(ml.SequentialSoleEnergyNN(3, n_internal=5, n_layers=2, activation="tanh"), descriptors,
                          tag="Ar")


def _structures(rng, n=4):
    out = []
    for _ in range(n):
        cart = rng.uniform(0, 4.0, size=(8, 3))
        out.append(Cell(np.eye(3) * 4.0, cart / 4.0, ["Ar"] * 8, meta={"pbc": np.array([True] * 3)}))
    return out


def _member_forces(cell, member):
    return -NeighborWrapper(cell, cutoff=CUTOFF).grad([member])


def test_known_answer_two_members(rng):
    # With K = 2 members the per-component spread is |F0 - F1| / 2.  References F_ref = mean - 2 (F0 - mean)
    # have per-component errors 2 |F0 - F1| / 2: every atom's error is exactly twice its spread, so the
    # calibration factor is 2 and the rank correlation 1.
    members = [_member(1), _member(2)]
    committee = ml.CommitteePotential(members)
    cells = _structures(rng)
    for c in cells:
        f0, f1 = (_member_forces(c, m) for m in members)
        mean = (f0 + f1) / 2
        c.meta["forces"] = mean - 2 * (f0 - mean)
    cells.append(Cell(np.eye(3) * 4.0, np.zeros((1, 3)), ["Ar"]))   # no forces: skipped
    cal = ml.calibrate_committee([committee], cells)
    assert cal.n_structures == 4 and cal.forces_std.shape == (32,)
    np.testing.assert_allclose(cal.force_error, 2 * cal.forces_std, rtol=1e-10)
    assert cal.factor == pytest.approx(2.0, rel=1e-10) and cal.spearman == pytest.approx(1.0)
    # brute force: the raw spread from the members one by one
    f = np.stack([np.concatenate([_member_forces(c, m) for c in cells[:4]]) for m in members])
    np.testing.assert_allclose(cal.forces_std, np.sqrt(f.var(axis=0).mean(axis=1)), rtol=1e-10)
    # applied: stored, saved, and every spread reported afterwards is scaled
    assert committee.calibration == pytest.approx(2.0)
    nw = NeighborWrapper(cells[0], cutoff=CUTOFF)
    raw = ml.committee_spread(nw, [committee], calibrated=False)
    scaled = ml.committee_spread(nw, [committee])
    np.testing.assert_allclose(scaled.forces_std, 2 * raw.forces_std, rtol=1e-12)
    np.testing.assert_allclose(scaled.energies_std, 2 * raw.energies_std, rtol=1e-12)
    assert scaled.energy_std == pytest.approx(2 * raw.energy_std, rel=1e-12)
    np.testing.assert_allclose(scaled.stress_std, 2 * raw.stress_std, rtol=1e-12)
    # the mean (energies, forces) does not change
    np.testing.assert_allclose(nw.grad([committee]), -np.mean(f[:, :8], axis=0), rtol=1e-10, atol=1e-13)
    atoms = Atoms("Ar8", scaled_positions=cells[0].coordinates, cell=np.eye(3) * 4.0, pbc=True)
    atoms.calc = MiniffCalculator([committee])
    atoms.get_forces()
    np.testing.assert_allclose(atoms.calc.results["forces_std"], scaled.forces_std, rtol=1e-10)
    back = ml.CommitteePotential.from_state_dict(committee.state_dict())
    assert back.calibration == pytest.approx(2.0)


def test_spearman_matches_scipy_on_real_errors(rng):
    members = [_member(s) for s in (3, 4, 5)]
    committee = ml.CommitteePotential(members)
    cells = _structures(rng, 3)
    for c in cells:
        c.meta["forces"] = rng.normal(scale=0.1, size=(8, 3))
    cal = ml.calibrate_committee([committee], cells, apply=False)
    assert committee.calibration == 1.0
    rho, p = spearmanr(cal.forces_std, cal.force_error)
    assert cal.spearman == pytest.approx(rho) and cal.pvalue == pytest.approx(p)
    assert cal.factor == pytest.approx(np.sqrt(np.mean((cal.force_error / cal.forces_std) ** 2)))


def test_calibration_errors(rng):
    member = _member(1)
    cells = _structures(rng, 1)
    cells[0].meta["forces"] = np.zeros((8, 3))
    with pytest.raises(ValueError, match="zero spread"):
        ml.calibrate_committee([ml.CommitteePotential([member, member])], cells)
    with pytest.raises(ValueError, match="no CommitteePotential"):
        ml.calibrate_committee([member], cells)
    committee = ml.CommitteePotential([_member(1), _member(2)])
    with pytest.raises(ValueError, match="none has reference forces"):
        ml.calibrate_committee([committee], _structures(rng, 1))
    with pytest.raises(TypeError, match=r"structures\[0\]"):
        ml.calibrate_committee([committee], ["x"])
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="calibration must be"):
            committee.calibration = bad


def test_plot_spread_vs_error(rng, pyplot):
    std = rng.lognormal(size=200)
    err = std * rng.lognormal(sigma=0.3, size=200)
    ax = presentation.plot_spread_vs_error(std, err, factor=2.0)
    assert len(ax.collections[0].get_offsets()) == 200
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], 2 * std)
    assert ax.get_xscale() == "log" and "2 x std" in ax.get_xlabel() and "eV/Å" in ax.get_ylabel()
    assert "Spearman ρ = " in ax.texts[0].get_text()
    labels = [line.get_label() for line in ax.lines]
    assert "error = spread" in labels and "RMS error per spread bin" in labels
    cal = ml.CommitteeCalibration(0.7, 0.01, 1.5, std, err, 3)
    ax2 = presentation.plot_spread_vs_error(cal)
    assert "ρ = 0.70" in ax2.texts[0].get_text() and "factor 1.5" in ax2.texts[0].get_text()
    with pytest.raises(ValueError, match="force_error"):
        presentation.plot_spread_vs_error(std)
    with pytest.raises(ValueError, match="equal"):
        presentation.plot_spread_vs_error(std, err[:10])
    with pytest.raises(ValueError, match="factor"):
        presentation.plot_spread_vs_error(std, err, factor=0)


def test_committees_of_species_absent_from_a_structure_are_skipped(rng):
    # an "Ne" committee next to the "Ar" one: structures of Ar only calibrate the model without a KeyError
    def ne_member(seed):
        torch.manual_seed(seed)
        descriptors = [behler2_descriptor_family(a=CUTOFF, eta=0.5, r_sphere=r, tag="Ne-Ne") for r in (1.0, 2.0, 3.0)]
        return ml.NNPotential(ml.SequentialSoleEnergyNN(3, n_internal=4, activation="tanh"), descriptors, tag="Ne")

    model = [ml.CommitteePotential([_member(1), _member(2)]), ml.CommitteePotential([ne_member(3), ne_member(4)])]
    cells = _structures(rng, 2)
    for c in cells:
        c.meta["forces"] = np.zeros((8, 3))
    cal = ml.calibrate_committee(model, cells)
    alone = ml.calibrate_committee(model[:1], cells, apply=False)
    np.testing.assert_allclose(cal.forces_std, alone.forces_std, rtol=1e-12)
    assert model[0].calibration == model[1].calibration == pytest.approx(cal.factor)
