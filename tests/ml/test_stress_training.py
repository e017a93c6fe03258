"""Stress training: strain derivatives of the features, predicted stresses, the stress loss and its gradient.

References are independent of the code under test: central finite differences of descriptors and energies over
strained cells (``miniff.neighbors.displacement``), the NN potential's stress from the evaluation path
(``NeighborWrapper.stress``: per-pair gradients times pair vectors), central differences of the loss over the
network parameters, and brute-force numpy sums of the loss formula.
"""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from miniff import ml
from miniff.fit.closures import energy_loss
from miniff.io import read_cells
from miniff.kernel import NeighborWrapper
from miniff.neighbors.displacement import VOIGT_PAIRS, Displacement
from miniff.numerical import numerical_stress
from miniff.potentials import behler2_descriptor_family, behler5_descriptor_family, eval_descriptors
from miniff.util import central_differences

CUTOFF = 4.2


def _descriptors():
    def b2(tag, eta, rs):
        return behler2_descriptor_family(a=CUTOFF, eta=eta, r_sphere=rs, tag=tag)

    def b5(tag, eta, l):
        return behler5_descriptor_family(a=CUTOFF, eta=eta, l=l, zeta=2.0, tag=tag)

    return {
        "Cu": [b2("Cu-Cu", 0.6, 2.5), b2("Cu-Pt", 0.4, 2.7), b5("Cu-Cu-Pt", 0.05, 1.0), b5("Cu-Pt-Pt", 0.02, -1.0)],
        "Pt": [b2("Pt-Cu", 0.5, 2.6), b2("Pt-Pt", 0.3, 2.8), b5("Pt-Cu-Cu", 0.03, 1.0)],
    }


def _frames(n, seed=0):
    """Strained, rattled 8-atom Cu/Pt fcc cells (triclinic strains) labelled with ASE's EMT, stress included."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((2, 1, 1))
        atoms.set_chemical_symbols(rng.choice(["Cu", "Pt"], size=len(atoms)) if k else ["Cu"] * len(atoms))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        atoms.calc = EMT()
        atoms.get_stress()
        out.append(atoms)
    return out


def _nets(dtype=torch.float64):
    torch.manual_seed(5)
    return [ml.SequentialSoleEnergyNN(len(d), n_internal=5, n_layers=3, activation="tanh").to(dtype)
            for _, d in sorted(_descriptors().items())]


@pytest.fixture(scope="module")
def cells():
    return read_cells(_frames(5))


@pytest.fixture(scope="module")
def data(cells):
    return ml.learn_cauldron(cells, _descriptors(), grad=True, stress=True)


def test_features_strain_equal_finite_differences(cells):
    """``features_strain`` = central differences of the descriptors over the six symmetric strains."""
    desc = _descriptors()
    ds = ml.learn_cauldron(cells[:3], desc, grad=False, stress=True, normalize=False)
    assert ds.per_point_datasets[0].features_g is None  # the strain derivatives do not need the Jacobian
    eps = 1e-6
    for s, c in enumerate(cells[:3]):
        nw = NeighborWrapper(c, cutoff=CUTOFF)
        for k, species in enumerate(sorted(desc)):
            idx = np.flatnonzero(np.asarray(c.values) == species)
            ref = np.zeros((len(idx), len(desc[species]), 6))
            with Displacement(nw) as disp:
                for v, (a, b) in enumerate(VOIGT_PAIRS):
                    values = []
                    for sign in (1, -1):
                        x = np.eye(3)
                        x[a, b] += sign * eps / (1 if a == b else 2)
                        x[b, a] += 0 if a == b else sign * eps / 2
                        disp.strain(x)
                        values.append(eval_descriptors(nw, desc[species], ignore_missing_species=True)[0][idx])
                    ref[:, :, v] = (values[0] - values[1]) / (2 * eps)
            got = ds.per_point_datasets[k].features_strain[s, :len(idx)].numpy()
            np.testing.assert_allclose(got, ref, atol=1e-7 * max(1.0, np.abs(ref).max(initial=0)))
            assert not ds.per_point_datasets[k].features_strain[s, len(idx):].any()


def test_predicted_stress_equals_evaluation_path(cells, data):
    """forward_cauldron's stresses of an NN = the NNPotential's stress through the evaluation path (1e-10),
    and = central differences of its energy over strains."""
    ds, norm = data
    nets = _nets()
    with torch.no_grad():
        energy, grad, stress = ml.forward_cauldron(nets, ds, grad=True, stress=True, normalization=norm)
        energy_only, stress_only = ml.forward_cauldron(nets, ds, stress=True, normalization=norm)
    np.testing.assert_array_equal(stress.numpy(), stress_only.numpy())
    np.testing.assert_array_equal(energy.numpy(), energy_only.numpy())
    potentials = ml.potentials_from_ml_data(nets, _descriptors(), normalization=norm)
    for s, c in enumerate(cells):
        nw = NeighborWrapper(c, cutoff=CUTOFF)
        ref = nw.stress(potentials, ignore_missing_species=True)
        np.testing.assert_allclose(stress[s].numpy(), ref, rtol=0, atol=1e-10)
        assert np.abs(ref).max() > 1e-4  # a real test: the stress is not zero
        if s < 2:
            np.testing.assert_allclose(stress[s].numpy(), numerical_stress(nw, potentials, ignore_missing_species=True),
                                       atol=1e-8)


def _flat_parameters(nets):
    return [p for n in nets for p in n.parameters()]


def test_stress_loss_gradient_equals_finite_differences(data):
    """d loss / d parameters of the full loss with a stress term (one structure without a stress) = central
    differences of the loss."""
    ds, _ = data
    ds = ds.subset(torch.arange(ds.n_samples))
    ds.per_cell_dataset.has_stress = torch.tensor([True, False, True, True, True])
    nets = _nets()
    params = _flat_parameters(nets)
    kw = dict(w_energy=1.0, w_gradients=0.3, w_stress=2.0, per_atom=True)

    loss = energy_loss(nets, ds, **kw)
    assert set(loss.components) == {"energy", "gradients", "stress"}
    loss.loss_value.backward()
    got = torch.cat([p.grad.reshape(-1) for p in params]).numpy()
    theta = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_at(x):
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.as_tensor(x), params)
            return float(energy_loss(nets, ds, **kw).loss_value)

    # every 7th parameter (all layers and both networks) and two random directions
    rng = np.random.default_rng(0)
    picks = np.arange(0, len(theta), 7)

    def at_picks(x):
        y = theta.numpy().copy()
        y[picks] = x
        return loss_at(y)

    ref = central_differences(at_picks, theta.numpy()[picks], 1e-6)
    np.testing.assert_allclose(got[picks], ref, rtol=1e-6, atol=1e-8)
    for _ in range(2):
        d = rng.normal(size=len(theta))
        ref = central_differences(lambda t, d=d: loss_at(theta.numpy() + t[0] * d), np.zeros(1), 1e-6)[0]
        np.testing.assert_allclose(got @ d, ref, rtol=1e-6)


@pytest.mark.parametrize("per_atom", [False, True])
def test_stress_term_equals_brute_force_sum(data, per_atom):
    """The stress term = ``w_stress * sum_s h_s w_s sum_v ((pred - ref) V_s / m_s)^2 / (6 sum_s h_s w_s)``, in
    numpy; structures without a stress do not change it."""
    ds, _ = data
    ds = ds.subset(torch.arange(ds.n_samples))
    pcd = ds.per_cell_dataset
    has = np.array([True, True, False, True, False])
    pcd.has_stress = torch.tensor(has)
    weights = np.array([1.0, 2.0, 3.0, 0.5, 1.5])
    nets = _nets()
    with torch.no_grad():
        loss = energy_loss(nets, ds, w_energy=0, w_stress=3.0, weights=weights, per_atom=per_atom)
        _, pred = ml.forward_cauldron(nets, ds, stress=True)
    pred, ref, volume = pred.numpy(), pcd.stress.numpy(), pcd.volume.numpy()
    m = ds.atoms_per_sample().numpy() if per_atom else np.ones(len(has))
    sq = (((pred - ref) * (volume / m)[:, None]) ** 2).sum(axis=1)
    expected = 3.0 * (weights * has * sq).sum() / (6 * (weights * has).sum())
    np.testing.assert_allclose(float(loss.components["stress"].loss_value), expected, rtol=1e-12)
    # changing the stress of a structure without one changes nothing
    pcd.stress = pcd.stress.clone()
    pcd.stress[2] += 1.0
    with torch.no_grad():
        again = energy_loss(nets, ds, w_energy=0, w_stress=3.0, weights=weights, per_atom=per_atom)
    assert float(again.components["stress"].loss_value) == float(loss.components["stress"].loss_value)
    # a subset without any stress (a validation set): the term is 0, not NaN
    none = ds.subset([2, 4])
    with torch.no_grad():
        assert float(energy_loss(nets, none, w_stress=3.0).components["stress"].loss_value) == 0.0


def test_stress_metrics_in_physical_units(cells, data):
    """error_metrics' stress RMSE (eV/Å³) = the RMSE of the NN potential's stresses against the references."""
    from miniff.fit.metrics import error_metrics

    ds, norm = data
    nets = _nets()
    metrics = error_metrics(nets, ds, norm, forces=False, groups=["x", "y", "x", "y", "y"])
    potentials = ml.potentials_from_ml_data(nets, _descriptors(), normalization=norm)
    diff = np.array([NeighborWrapper(c, cutoff=CUTOFF).stress(potentials, ignore_missing_species=True)
                     - c.meta["stress"] for c in cells])
    np.testing.assert_allclose(metrics["stress_rmse"], np.sqrt(np.mean(diff**2)), rtol=1e-9)
    np.testing.assert_allclose(metrics["stress_max"], np.abs(diff).max(), rtol=1e-9)
    np.testing.assert_allclose(metrics["group_x_stress_rmse"], np.sqrt(np.mean(diff[[0, 2]] ** 2)), rtol=1e-9)
    assert "force_rmse" not in metrics


def test_normalization_round_trip_and_subsets(data):
    ds, norm = data
    raw = norm.bw(ds)
    again = norm.fw(raw)
    for a, b in ((ds, again),):
        torch.testing.assert_close(a.per_cell_dataset.stress, b.per_cell_dataset.stress, rtol=1e-12, atol=0)
        for p, q in zip(a.per_point_datasets, b.per_point_datasets, strict=True):
            torch.testing.assert_close(p.features_strain, q.features_strain, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(raw.per_cell_dataset.stress * norm.energy_scale / norm.energy_scale,
                               raw.per_cell_dataset.stress)
    part = ds.subset([3, 1])
    torch.testing.assert_close(part.per_cell_dataset.stress, ds.per_cell_dataset.stress[[3, 1]])
    torch.testing.assert_close(part.per_cell_dataset.volume, ds.per_cell_dataset.volume[[3, 1]])
    joined = ml.Dataset.cat([ds.subset([0]), ds.subset([4])])
    torch.testing.assert_close(joined.per_point_datasets[1].features_strain[1],
                               ds.per_point_datasets[1].features_strain[4])


def test_cells_without_stress_and_errors(cells):
    desc = _descriptors()
    mixed = [c.copy() for c in cells[:3]]
    del mixed[1].meta["stress"]
    slab = NeighborWrapper(mixed[2], cutoff=CUTOFF, pbc=(True, True, False))   # no stress without 3D periodicity
    ds = ml.learn_cauldron(mixed[:2] + [slab], desc, grad=False, stress=True, normalize=False)
    assert ds.per_cell_dataset.stress_mask().tolist() == [True, False, False]
    for c in mixed:
        c.meta.pop("stress", None)
    with pytest.raises(ValueError, match="no cell has meta\\['stress'\\]"):
        ml.learn_cauldron(mixed, desc, stress=True, normalize=False)
    plain = ml.learn_cauldron(cells[:2], desc, grad=True, normalize=False)
    with pytest.raises(ValueError, match="w_stress"):
        energy_loss(_nets(), plain, w_stress=1.0)
    with pytest.raises(ValueError, match="stress=True"):
        ml.forward_cauldron(_nets(), plain, stress=True)
    with pytest.raises(ValueError, match="volume must be positive"):
        ml.PerCellDataset(torch.zeros(2, 1), stress=torch.zeros(2, 6), volume=torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="stress must have shape"):
        ml.PerCellDataset(torch.zeros(2, 1), stress=torch.zeros(2, 3), volume=torch.ones(2))
    with pytest.raises(ValueError, match="stress requires volume"):
        ml.PerCellDataset(torch.zeros(2, 1), stress=torch.zeros(2, 6))
