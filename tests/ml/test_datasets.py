"""Datasets, sparse Jacobians, normalisation and networks of miniff.ml (no compiled kernel needed)."""

import numpy as np
import pytest
import torch
from support import seed_dataset, seed_toy, spy

from miniff import ml

# ----------------------------------------------------------------------------------------------------
# the seed tutorial "Toy function fitting", as written
# ----------------------------------------------------------------------------------------------------


def test_seed_tutorial_with_ml_util_closure():
    from miniff import ml_util

    dataset, _, _ = seed_dataset()
    torch.manual_seed(0)
    nn = ml.SequentialSoleEnergyNN(3, n_layers=1, bias=False)
    tolerance = dict(tolerance_change=1e-14, tolerance_grad=1e-14)
    closure = ml_util.simple_energy_closure([nn], dataset, optimizer_kwargs=tolerance)
    assert closure.loss().loss_value.item() > 1e-4
    closure.optimizer_init()
    closure.optimizer_step()
    assert closure.last_loss.loss_value.item() < 1e-8
    weights = nn[0].weight.detach().squeeze().numpy()
    np.testing.assert_allclose(weights.squeeze(), [1, -1, 1], atol=1e-3)


def test_seed_toy_dataset_and_linear_fit():
    r, g_r, f_r = seed_toy()
    dataset, _, _ = seed_dataset()
    nn = ml.SequentialSoleEnergyNN(3, n_layers=1, bias=False)
    assert isinstance(nn, torch.nn.Sequential) and len(nn) == 1
    opt = torch.optim.LBFGS(nn.parameters(), line_search_fn="strong_wolfe", tolerance_change=1e-14,
                            tolerance_grad=1e-14)

    def closure():
        opt.zero_grad()
        loss = torch.mean((ml.forward_cauldron([nn], dataset) - dataset.per_cell_dataset.energy) ** 2)
        loss.backward()
        return loss

    opt.step(closure)
    assert closure().item() < 1e-8
    weights = nn[0].weight.detach().squeeze().numpy()
    np.testing.assert_allclose(weights, [1, -1, 1], atol=1e-3)
    # the seed's nn_fit: the network applied to [100, 3] descriptors directly
    out = nn(torch.tensor(g_r.T, dtype=torch.float32)).detach().numpy().squeeze()
    np.testing.assert_allclose(out, f_r, atol=1e-5)


def test_energy_must_be_a_column():
    with pytest.raises(ValueError, match="energy must be a column"):
        ml.PerCellDataset(energy=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="energy must be 2-D"):
        ml.PerCellDataset(energy=torch.zeros(4))


# ----------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------


def _ppd(s=3, p=2, d=4, dtype=torch.float64, **kw):
    return ml.PerPointDataset(torch.rand(s, p, d, dtype=dtype), torch.ones(s, p, dtype=dtype), **kw)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(energy=torch.zeros(3, 1), mask=torch.ones(4, 2)), "mask has 4 samples"),
        (dict(energy=torch.zeros(3, 1), mask=torch.ones(3)), "mask must be 2-D"),
        (dict(energy=torch.zeros(3, 1, dtype=torch.float64), mask=torch.ones(3, 2)), "mask has dtype"),
        (dict(energy=torch.zeros(3, 1), mask=torch.ones(3, 2), energy_g=torch.zeros(3, 3, 3)), "energy_g has 3 atoms"),
        (dict(energy=torch.zeros(3, 1), energy_g=torch.zeros(3, 2, 3)), "energy_g requires mask"),
        (dict(energy=torch.tensor([[1.0], [float("nan")]])), "energy contains NaN"),
        (dict(energy=torch.zeros(2, 1), mask=torch.ones(2, 1), energy_g=torch.full((2, 1, 3), float("inf"))),
         "energy_g contains NaN"),
        (dict(energy=torch.zeros(2, 1, dtype=torch.int64)), "energy must be a floating-point"),
    ],
)
def test_per_cell_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ml.PerCellDataset(**kwargs)


def test_per_cell_type_error():
    with pytest.raises(TypeError, match="energy must be a torch.Tensor"):
        ml.PerCellDataset(energy=np.zeros((3, 1)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(features=torch.zeros(3, 2), mask=torch.ones(3, 2)), "features must be 3-D"),
        (dict(features=torch.zeros(3, 2, 4), mask=torch.ones(3, 3)), "mask has 3 points"),
        (dict(features=torch.zeros(3, 2, 4), mask=torch.ones(2, 2)), "mask has 2 samples"),
        (dict(features=torch.zeros(3, 2, 4, dtype=torch.float64), mask=torch.ones(3, 2)), "mask has dtype"),
        (dict(features=torch.zeros(3, 2, 4), mask=torch.ones(3, 2), charges=torch.zeros(3, 2, 2)),
         "charges must have shape"),
        (dict(features=torch.zeros(3, 2, 4), mask=torch.ones(3, 2), energies_p=torch.zeros(3, 1, 1)),
         "energies_p has 1 points"),
        (dict(features=torch.zeros(3, 2, 4), mask=torch.ones(3, 2),
              energies_p=torch.full((3, 2, 1), float("nan"))), "energies_p contains NaN"),
        (dict(features=torch.full((3, 2, 4), float("nan")), mask=torch.ones(3, 2)), "features contains NaN"),
        (dict(features=torch.zeros(3, 2, 4), mask=torch.ones(3, 2), features_g=torch.zeros(3, 2, 4, 5)),
         "features_g must be 5-D"),
        (dict(features=torch.zeros(3, 2, 4), mask=torch.ones(3, 2),
              features_g=torch.zeros(3, 2, 4, 5, 3, dtype=torch.float64)), "features_g has dtype"),
    ],
)
def test_per_point_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ml.PerPointDataset(**kwargs)


def test_bool_mask_accepted():
    d = ml.PerPointDataset(torch.zeros(2, 3, 1, dtype=torch.float64), torch.ones(2, 3, dtype=torch.bool))
    assert d.n_points == 3 and d.dtype == torch.float64


def test_dataset_validation():
    pc = ml.PerCellDataset(torch.zeros(3, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"per_point_datasets\[0\] has 4 samples"):
        ml.Dataset(pc, _ppd(s=4))
    with pytest.raises(ValueError, match=r"per_point_datasets\[1\] has dtype torch.float32"):
        ml.Dataset(pc, _ppd(), _ppd(dtype=torch.float32))
    with pytest.raises(TypeError, match="per_point_datasets"):
        ml.Dataset(pc, "x")
    with pytest.raises(ValueError, match="at least one"):
        ml.Dataset(pc)


# ----------------------------------------------------------------------------------------------------
# sparse Jacobian
# ----------------------------------------------------------------------------------------------------


def _random_dense_jac(rng, s=3, p=2, d=4, a=5):
    dense = rng.normal(size=(s, p, d, a, 3))
    dense[rng.random((s, p, 1, a, 1)).repeat(d, 2).repeat(3, 4) < 0.4] = 0
    return torch.from_numpy(dense)


def test_sparse_jacobian_dense_round_trip_and_contraction(rng):
    dense = _random_dense_jac(rng)
    jac = ml.SparseJacobian.from_dense(dense)
    torch.testing.assert_close(jac.to_dense(), dense, rtol=0, atol=0)
    dE_dF = torch.from_numpy(rng.normal(size=(3, 2, 4)))
    ref = torch.einsum("spd,spdac->sac", dE_dF, dense)
    torch.testing.assert_close(jac.contract(dE_dF), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ml.energy_gradients(dE_dF, jac, resolve=True),
                               torch.einsum("spd,spdac->spac", dE_dF, dense), rtol=1e-12, atol=1e-12)
    sub = jac.subset(torch.tensor([2, 0, 2]))
    torch.testing.assert_close(sub.to_dense(), dense[[2, 0, 2]], rtol=0, atol=0)
    both = ml.SparseJacobian.cat([jac, sub.padded(n_atoms=7)])
    assert both.n_atoms == 7 and both.n_samples == 6
    torch.testing.assert_close(both.to_dense()[:3, :, :, :5], dense, rtol=0, atol=0)


def test_sparse_jacobian_validation():
    with pytest.raises(ValueError, match="sample_e must be sorted"):
        ml.SparseJacobian(torch.tensor([1, 0]), torch.tensor([0, 0]), torch.tensor([0, 0]),
                          torch.zeros(2, 1, 3), 2, 1, 1)
    with pytest.raises(ValueError, match="atom_e has indices outside"):
        ml.SparseJacobian(torch.tensor([0]), torch.tensor([0]), torch.tensor([3]), torch.zeros(1, 1, 3), 1, 1, 2)
    with pytest.raises(ValueError, match="NaN"):
        ml.SparseJacobian(torch.tensor([0]), torch.tensor([0]), torch.tensor([0]),
                          torch.full((1, 1, 3), float("nan")), 1, 1, 1)


# ----------------------------------------------------------------------------------------------------
# subset / cat / split / to
# ----------------------------------------------------------------------------------------------------


def _dataset(rng, sizes=((2, 1), (1, 0), (3, 2)), d=(3, 2), dtype=torch.float64):
    """A random two-species dataset with dense legacy Jacobians; sizes = atoms of each species per sample."""
    items = []
    for na, nb in sizes:
        n = na + nb
        pc = ml.PerCellDataset(torch.tensor([[rng.normal()]], dtype=dtype), torch.ones(1, n, dtype=dtype),
                               torch.from_numpy(rng.normal(size=(1, n, 3))).to(dtype))
        pps = []
        for k, m in enumerate((na, nb)):
            g = torch.from_numpy(rng.normal(size=(1, m, d[k], n, 3))).to(dtype)
            pps.append(ml.PerPointDataset(torch.from_numpy(rng.normal(size=(1, m, d[k]))).to(dtype),
                                          torch.ones(1, m, dtype=dtype), g, tag="ab"[k]))
        items.append(ml.Dataset(pc, *pps))
    return ml.Dataset.cat(items)


def test_cat_pads_and_subset_selects(rng):
    ds = _dataset(rng)
    assert ds.n_samples == 3 and ds.n_atoms == 5
    assert [p.n_points for p in ds.per_point_datasets] == [3, 2]
    torch.testing.assert_close(ds.atom_counts(), torch.tensor([[2, 1], [1, 0], [3, 2]], dtype=torch.float64))
    assert ds.atoms_per_sample().tolist() == [3, 1, 5]
    sub = ds[[2, 0]]
    assert isinstance(sub, ml.Dataset) and sub.n_samples == 2
    torch.testing.assert_close(sub.per_point_datasets[0].features, ds.per_point_datasets[0].features[[2, 0]])
    torch.testing.assert_close(sub.per_point_datasets[1].features_g.to_dense(),
                               ds.per_point_datasets[1].features_g.to_dense()[[2, 0]])
    learn, test = ds.split(1)
    assert (learn.n_samples, test.n_samples) == (2, 1)
    torch.testing.assert_close(test.per_cell_dataset.energy, ds.per_cell_dataset.energy[2:])
    f32 = ds.to(torch.float32)
    assert f32.dtype == torch.float32 and f32.per_point_datasets[0].features_g.dtype == torch.float32
    with pytest.raises(ValueError, match="items"):
        ml.Dataset.cat([ds, ds.to(torch.float32)])


# ----------------------------------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------------------------------


def test_lsq_energy_offsets_recover_species_energies(rng):
    counts = torch.tensor([[2.0, 1.0], [1.0, 0.0], [3.0, 2.0], [0.0, 4.0]], dtype=torch.float64)
    mu = torch.tensor([[-3.5], [1.25]], dtype=torch.float64)
    pc = ml.PerCellDataset(counts @ mu)
    pps = [ml.PerPointDataset(torch.zeros(4, 4, 1, dtype=torch.float64),
                              (torch.arange(4)[None, :] < counts[:, k:k + 1]).to(torch.float64)) for k in range(2)]
    ds = ml.Dataset(pc, *pps)
    torch.testing.assert_close(ml.Normalization.lsq_energy_offsets(ds), mu, rtol=1e-10, atol=1e-10)


def test_normalization_round_trip_and_ranges(rng):
    ds = _dataset(rng)
    norm = ml.Normalization.from_dataset(ds, offset_energy=True)
    fw = norm.fw(ds)
    for p in fw.per_point_datasets:
        x = p.features[p.mask != 0]
        torch.testing.assert_close(x.min(0).values, -torch.ones(x.shape[1], dtype=x.dtype))
        torch.testing.assert_close(x.max(0).values, torch.ones(x.shape[1], dtype=x.dtype))
    back = norm.bw(fw)
    torch.testing.assert_close(back.per_cell_dataset.energy, ds.per_cell_dataset.energy)
    torch.testing.assert_close(back.per_cell_dataset.energy_g, ds.per_cell_dataset.energy_g)
    for a, b in zip(back.per_point_datasets, ds.per_point_datasets, strict=True):
        torch.testing.assert_close(a.features, b.features)
        torch.testing.assert_close(a.features_g.to_dense(), b.features_g.to_dense())
    # in place returns the same object
    same = norm.fw(ds, inplace=True)
    assert same is ds
    torch.testing.assert_close(ds.per_cell_dataset.energy, fw.per_cell_dataset.energy)
    # state dict round trip
    again = ml.Normalization.from_state_dict(norm.state_dict())
    torch.testing.assert_close(again.fw_features(ds.per_point_datasets[0].features, 0),
                               norm.fw_features(ds.per_point_datasets[0].features, 0))


def test_normalization_constant_energy_is_an_error():
    pc = ml.PerCellDataset(torch.ones(3, 1, dtype=torch.float64))
    ds = ml.Dataset(pc, _ppd())
    with pytest.raises(ValueError, match="energy is constant"):
        ml.Normalization.from_dataset(ds)
    norm = ml.Normalization.from_dataset(ds, ignore_normalization_errors=True)
    assert float(norm.energy_scale) == 1


def test_apply_to_module_folds_normalization(rng):
    ds = _dataset(rng)
    norm = ml.Normalization.from_dataset(ds, offset_energy=True, pca_features=2)
    torch.manual_seed(0)
    net = ml.SequentialSoleEnergyNN(2, n_internal=5, n_layers=2, activation="tanh").double()
    raw = norm.apply_to_module(net, 0, fw=False)
    x = ds.per_point_datasets[0].features
    expected = norm.bw_energy_components(net(norm.fw_features(x, 0)), 0)
    torch.testing.assert_close(raw(x), expected)
    assert sum(isinstance(m, torch.nn.Linear) for m in raw) == 2  # input/output maps fused


# ----------------------------------------------------------------------------------------------------
# networks
# ----------------------------------------------------------------------------------------------------


def test_sequential_sole_energy_nn_layout():
    nn = ml.SequentialSoleEnergyNN(4, n_internal=7, n_layers=3)
    assert [type(m).__name__ for m in nn] == ["Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]
    assert (nn[0].in_features, nn[2].in_features, nn[4].out_features) == (4, 7, 1)
    assert type(ml.behler_nn(3, activation=torch.nn.SiLU)[1]) is torch.nn.SiLU
    assert type(ml.SequentialSoleEnergyNN(3, n_layers=2, activation="gelu")[1]) is torch.nn.GELU
    with pytest.raises(ValueError, match="activation 'nope'"):
        ml.SequentialSoleEnergyNN(3, activation="nope")
    with pytest.raises(ValueError, match="n_layers must be >= 1"):
        ml.SequentialSoleEnergyNN(3, n_layers=0)


def test_sequential_data_round_trip_many_layers():
    torch.manual_seed(1)
    seq = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.CELU(alpha=0.7), torch.nn.Linear(6, 6, dtype=torch.float64).float(),
        torch.nn.Softplus(beta=2.0, threshold=10.0), torch.nn.Dropout(p=0.1), torch.nn.Identity(),
        torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.GELU(approximate="tanh")), torch.nn.PReLU(),
        torch.nn.LeakyReLU(0.05), torch.nn.Linear(5, 1, bias=False), torch.nn.Tanh(),
    ).eval()
    data = ml.sequential_to_data(seq)
    back = ml.sequential_from_data(data).eval()
    assert str(back) == str(seq)
    x = torch.randn(9, 4)
    torch.testing.assert_close(back(x), seq(x), rtol=0, atol=0)

    class Custom(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="cannot be stored as data"):
        ml.sequential_to_data(torch.nn.Sequential(torch.nn.Linear(2, 1), Custom()))
    with pytest.raises(ValueError, match="unknown type 'Evil'"):
        ml.sequential_from_data({"type": "Sequential", "layers": [{"type": "Evil"}]})


def test_forward_helpers_and_dataloader(rng):
    ds = _dataset(rng)
    torch.manual_seed(4)
    nets = [ml.SequentialSoleEnergyNN(d, n_internal=4, n_layers=2).double() for d in (3, 2)]
    out = [net(p.features) for net, p in zip(nets, ds.per_point_datasets, strict=True)]
    ref = sum(ml.total_energy(o, p.mask) for o, p in zip(out, ds.per_point_datasets, strict=True))
    torch.testing.assert_close(ml.forward_cauldron(nets, ds), ref)
    # brute-force gradients through the dense legacy Jacobian
    e, g = ml.forward_cauldron(nets, ds, grad=True)
    dense = 0
    for net, p in zip(nets, ds.per_point_datasets, strict=True):
        x = p.features.clone().requires_grad_(True)
        (dx,) = torch.autograd.grad(ml.total_energy(net(x), p.mask).sum(), x)
        dense = dense + torch.einsum("spd,spdac->sac", dx, p.features_g.to_dense())
    torch.testing.assert_close(g, dense, rtol=1e-12, atol=1e-12)
    charges = ml.fw_cauldron_charges(nets, ds)
    torch.testing.assert_close(charges[0], ml.total_energy(out[0], ds.per_point_datasets[0].mask, resolve=True))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=ml.Dataset.cat)
    batches = list(loader)
    assert [b.n_samples for b in batches] == [2, 1]
    torch.testing.assert_close(ml.forward_cauldron(nets, batches[1]), ml.forward_cauldron(nets, ds)[2:])


def test_sparse_contraction_gradcheck(rng):
    jac = ml.SparseJacobian.from_dense(_random_dense_jac(rng, s=2, p=2, d=3, a=3))
    dE_dF = torch.from_numpy(rng.normal(size=(2, 2, 3))).requires_grad_(True)
    values = jac.values_edc.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, v: jac.with_values(v).contract(x), (dE_dF, values))
    assert torch.autograd.gradgradcheck(lambda x: jac.contract(x) ** 2, (dE_dF,))


def test_normalization_bad_parameters():
    with pytest.raises(ValueError, match="energy_scale must be finite and nonzero"):
        ml.Normalization(0.0, [torch.ones(2)], torch.zeros(1, 1), [torch.zeros(2)])
    with pytest.raises(ValueError, match="energy_offsets must have shape"):
        ml.Normalization(1.0, [torch.ones(2)], torch.zeros(2, 1), [torch.zeros(2)])
    with pytest.raises(ValueError, match=r"features_offsets\[0\] must have shape"):
        ml.Normalization(1.0, [torch.ones(2)], torch.zeros(1, 1), [torch.zeros(3)])
    norm = ml.Normalization(2.0, [torch.ones(2)], torch.zeros(1, 1), [torch.zeros(2)])
    with pytest.raises(ValueError, match="no length_scale"):
        norm.fw_energy_g(torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match="unknown Normalization state keys"):
        norm.load_state_dict({**norm.state_dict(), "junk": 1})


def test_normalization_per_atom_energy_spread(rng):
    ds = _dataset(rng, sizes=((2, 1), (1, 0), (3, 2), (6, 6)))
    counts = ds.atom_counts().sum(1, keepdim=True)
    energy = ds.per_cell_dataset.energy
    total = ml.Normalization.from_dataset(ds, scale_energy=2)
    per_atom = ml.Normalization.from_dataset(ds, scale_energy=2, energy_spread="per_atom")
    assert float(total.energy_scale) == pytest.approx(float(energy.max() - energy.min()) / 2, rel=1e-12)
    e_atom = energy / counts
    assert float(per_atom.energy_scale) == pytest.approx(float(e_atom.max() - e_atom.min()) / 2, rel=1e-12)
    with pytest.raises(ValueError, match="energy_spread"):
        ml.Normalization.from_dataset(ds, energy_spread="atoms")


def test_normalization_without_feature_scaling(rng):
    ds = _dataset(rng)
    with torch.no_grad():  # a constant feature is fine when features are not scaled
        ds.per_point_datasets[0].features[..., 0] = 3.0
    norm = ml.Normalization.from_dataset(ds, scale_features=None, offset_energy=True)
    fw = norm.fw(ds)
    for raw, scaled in zip(ds.per_point_datasets, fw.per_point_datasets, strict=True):
        real = raw.mask != 0
        torch.testing.assert_close(scaled.features[real], raw.features[real], rtol=0, atol=0)
    torch.testing.assert_close(norm.bw(fw).per_cell_dataset.energy, ds.per_cell_dataset.energy)


def test_sparse_and_dense_contractions_agree(rng, monkeypatch):
    """contract() uses a cached dense per-sample product for small cells and index arithmetic otherwise: both
    give the einsum of the dense Jacobian, with first and second derivatives."""
    dense = _random_dense_jac(rng, s=3, p=2, d=4, a=5)
    dense[rng.random(dense.shape[:4]) < 0.6] = 0.0  # sparse: about 40 % of (s, p, d, a) blocks present
    jac = ml.SparseJacobian.from_dense(dense)
    dE_dF = torch.from_numpy(rng.normal(size=(3, 2, 4))).requires_grad_(True)
    ref = torch.einsum("spd,spdac->sac", dE_dF, dense)
    out = {}
    layouts = spy(monkeypatch, ml.SparseJacobian, "_dense")
    for ratio in (0.0, 1e9):
        monkeypatch.setattr(ml.SparseJacobian, "DENSE_MAX_RATIO", ratio)
        layouts.clear()
        g = jac.contract(dE_dF)
        (call,) = layouts  # contract() asked for the dense layout once: None = index arithmetic
        assert (call.result is not None) == (ratio > 0)
        assert jac._dense(*call.args[1:]) is call.result  # a dense layout is kept: the same tensor again
        torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-12)
        (first,) = torch.autograd.grad((g ** 2).sum(), dE_dF, create_graph=True)
        (second,) = torch.autograd.grad(first.sum(), dE_dF)
        out[ratio] = (first.detach(), second)
    torch.testing.assert_close(out[1e9][0], out[0.0][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[1e9][1], out[0.0][1], rtol=1e-12, atol=1e-12)
    padded = torch.cat([dE_dF.detach(), torch.from_numpy(rng.normal(size=(3, 1, 4)))], dim=1)  # a wider P
    torch.testing.assert_close(jac.contract(padded), ref.detach(), rtol=1e-12, atol=1e-12)
