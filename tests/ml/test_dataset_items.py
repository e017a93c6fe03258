"""0.1.4 dataset facts: ``ds[i]`` is a tuple of tensors, a non-tensor field is a ValueError naming it, and
``PerPointDataset.features_g`` has the logical dense shape ``[S, P, D, A, 3]`` and ``to_dense()``."""

import pickle

import numpy as np
import pytest
import torch

from miniff import ml


def _per_point(rng, s=3, p=2, d=4, a=5, charges=True):
    dense = torch.from_numpy(rng.normal(size=(s, p, d, a, 3)))
    dense[:, :, :, -1] = 0  # an atom no feature depends on: stays out of the sparse entries
    extra = {"charges": torch.from_numpy(rng.normal(size=(s, p, 1))),
             "energies_p": torch.from_numpy(rng.normal(size=(s, p, 1)))} if charges else {}
    return ml.PerPointDataset(torch.from_numpy(rng.normal(size=(s, p, d))), torch.ones(s, p, dtype=torch.float64),
                              dense, tag="a", **extra), dense


def _per_cell(rng, s=3, a=5):
    return ml.PerCellDataset(torch.from_numpy(rng.normal(size=(s, 1))), torch.ones(s, a, dtype=torch.float64),
                             torch.from_numpy(rng.normal(size=(s, a, 3))))


def test_items_are_tuples_of_tensors(rng):
    pp, dense = _per_point(rng)
    pc = _per_cell(rng)
    ds = ml.Dataset(pc, pp)
    for i in (0, 2, -1, np.int64(1), torch.tensor(1)):
        k = int(i) % 3
        energy, mask, energy_g = pc[i]
        torch.testing.assert_close(energy, pc.energy[k])
        torch.testing.assert_close(mask, pc.mask[k])
        torch.testing.assert_close(energy_g, pc.energy_g[k])
        item = pp[i]
        assert isinstance(item, tuple) and len(item) == 5 and all(isinstance(t, torch.Tensor) for t in item)
        torch.testing.assert_close(item[0], pp.features[k])
        torch.testing.assert_close(item[2], dense[k])  # the sample's dense Jacobian [P, D, A, 3]
        torch.testing.assert_close(item[3], pp.charges[k])
        sample = ds[i]
        assert isinstance(sample, tuple) and len(sample) == 2
        torch.testing.assert_close(sample[0][0], pc.energy[k])
        torch.testing.assert_close(sample[1][2], dense[k])
    without = ml.PerCellDataset(torch.zeros(2, 1))
    assert len(without[1]) == 1  # fields that are None are left out
    with pytest.raises(IndexError, match="out of range"):
        pc[3]
    # slices, index lists and masks still select a dataset
    assert isinstance(ds[1:], ml.Dataset) and ds[1:].n_samples == 2
    assert isinstance(pp[[0, 2]], ml.PerPointDataset)
    # items collate back into a dataset (DataLoader with Dataset.cat) or with torch's default collate
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=ml.Dataset.cat)
    batches = list(loader)
    assert [b.n_samples for b in batches] == [2, 1]
    torch.testing.assert_close(batches[0].per_point_datasets[0].features_g.to_dense(), dense[:2])
    again = pickle.loads(pickle.dumps(ds[1]))
    torch.testing.assert_close(again[1][0], pp.features[1])
    assert ml.Dataset.cat([again, ds[0]]).n_samples == 2
    batch = next(iter(torch.utils.data.DataLoader(pp, batch_size=3)))
    torch.testing.assert_close(batch[0], pp.features)
    torch.testing.assert_close(batch[2], dense)


def test_features_g_has_the_logical_dense_shape(rng):
    pp, dense = _per_point(rng)
    assert pp.features_g.shape == (3, 2, 4, 5, 3) == dense.shape
    assert isinstance(pp.features_g.shape, torch.Size) and pp.features_g.ndim == 5
    torch.testing.assert_close(pp.features_g.to_dense(), dense, rtol=0, atol=0)
    assert pp.features_g.n_entries < 3 * 2 * 5  # stored sparse


@pytest.mark.parametrize("make, name", [
    (lambda rng: ml.PerCellDataset([[1.0]]), "energy"),
    (lambda rng: ml.PerCellDataset(torch.zeros(2, 1), np.ones((2, 3))), "mask"),
    (lambda rng: ml.PerCellDataset(torch.zeros(2, 1), torch.ones(2, 3), 0.0), "energy_g"),
    (lambda rng: ml.PerPointDataset(np.zeros((2, 1, 3)), torch.ones(2, 1)), "features"),
    (lambda rng: ml.PerPointDataset(torch.zeros(2, 1, 3), [[1.0], [1.0]]), "mask"),
    (lambda rng: ml.PerPointDataset(torch.zeros(2, 1, 3), torch.ones(2, 1), charges=np.zeros((2, 1, 1))),
     "charges"),
    (lambda rng: ml.PerPointDataset(torch.zeros(2, 1, 3), torch.ones(2, 1), energies_p=1.0), "energies_p"),
])
def test_a_non_tensor_field_is_a_value_error_naming_it(rng, make, name):
    with pytest.raises(ValueError, match=f"{name} must be a torch.Tensor"):
        make(rng)


@pytest.mark.parametrize("index", ["a", {"x": 1}, 0.5])
def test_bad_sample_indices(index):
    with pytest.raises(IndexError, match="sample"):
        ml.PerCellDataset(torch.zeros(2, 1))[index]
