"""Streamed normalisation statistics equal the in-memory ones."""

import numpy as np
import pytest
import torch
from support_store import store_cells, store_descriptors

from miniff import ml
from miniff.ml.normalization import NormalizationInputs
from miniff.store import RunningMoments, StoreDataset, normalization_from_store, prepare_store, stream_statistics


def test_running_moments_merge_equals_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4)) * [1, 10, 1e-3, 5] + [0, 100, 3, -2]
    m = RunningMoments(4)
    for block in np.split(x, [3, 4, 20, 37]):
        m.update(block)
    m.update(x[:0])
    assert m.count == 50
    np.testing.assert_allclose(m.mean, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(m.variance, x.var(0), rtol=1e-12)
    np.testing.assert_array_equal(m.min, x.min(0))
    np.testing.assert_array_equal(m.max, x.max(0))


def test_running_moments_of_shares_merge_to_those_of_the_whole():
    """What the ranks of a distributed fit do: moments of contiguous shares (one empty) merged in rank order."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(41, 3)) * [2, 1e3, 1e-2] + [5, -50, 0.1]
    shares = []
    for part in np.array_split(x, [0, 17, 30]):
        m = RunningMoments(3)
        m.update(part)
        shares.append(m)
    total = RunningMoments(3)
    for m in shares:
        total.merge(m)
    assert total.count == 41
    np.testing.assert_allclose(total.mean, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(total.variance, x.var(0), rtol=1e-12)
    np.testing.assert_array_equal(total.min, x.min(0))
    np.testing.assert_array_equal(total.max, x.max(0))


@pytest.mark.parametrize("kwargs", [{"offset_energy": True}, {"offset_energy": True, "energy_spread": "per_atom",
                                                                "offset_charges": True, "offset_features": True}])
def test_streamed_statistics_equal_in_memory(tmp_path, kwargs):
    cells, desc = store_cells(10), store_descriptors()
    prepare_store(tmp_path / "s", cells, desc)
    ds = StoreDataset(tmp_path / "s")
    stats = stream_statistics(ds, forces=True)
    ref_ds = ml.learn_cauldron(cells, desc, grad=True, normalize=False, extract_charges=True)
    ref = NormalizationInputs.of_dataset(ref_ds)
    got = stats.inputs
    assert torch.equal(got.energy, ref.energy) and torch.equal(got.counts, ref.counts)
    assert got.energy_g_range[0] == ref.energy_g_range[0] and got.energy_g_range[1] == ref.energy_g_range[1]
    for k in range(2):
        assert torch.equal(got.features_range[k][0], ref.features_range[k][0])
        assert torch.equal(got.features_range[k][1], ref.features_range[k][1])
        x = ref.points[k].numpy()
        np.testing.assert_allclose(stats.features[k].mean, x.mean(0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(stats.features[k].variance, x.var(0), rtol=1e-12, atol=1e-15)
    a = normalization_from_store(ds, **kwargs).state_dict()
    b = ml.Normalization.from_dataset(ref_ds, **kwargs).state_dict()
    for key in a:
        x, y = a[key], b[key]
        if x is None:
            assert y is None
            continue
        for u, v in zip(x if isinstance(x, list) else [x], y if isinstance(y, list) else [y], strict=True):
            if key == "charges_offsets":   # a streamed mean: equal up to rounding
                torch.testing.assert_close(u, v, rtol=1e-13, atol=1e-15)
            else:
                assert torch.equal(u, v), key


def test_pca_needs_memory(tmp_path):
    prepare_store(tmp_path / "s", store_cells(4), store_descriptors())
    with pytest.raises(ValueError, match="pca_features needs the features in memory"):
        normalization_from_store(StoreDataset(tmp_path / "s"), pca_features=2)
