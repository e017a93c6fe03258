"""The descriptor store: bit-exact round trip against ``learn_cauldron``, cache keys, resumable and parallel
preparation, checksums."""

import numpy as np
import pytest
import torch
from support_store import store_cells, store_descriptors

from miniff import ml
from miniff.kernel import Cell
from miniff.store import (
    CorruptRecordError,
    DescriptorStore,
    StoreCollate,
    StoreDataset,
    decode_record,
    encode_record,
    prepare_store,
)


@pytest.fixture
def cells():
    return store_cells()


@pytest.fixture
def descriptors():
    return store_descriptors()


def test_record_round_trip_and_checksum():
    arrays = {"x": np.arange(12.0).reshape(3, 4), "i": np.arange(5), "b": np.array([True, False])}
    data = encode_record(arrays, {"n": 3, "g": "x"})
    got, info = decode_record(data, "k")
    assert info == {"n": 3, "g": "x"}
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 1
    with pytest.raises(CorruptRecordError, match="store record abc: checksum"):
        decode_record(bytes(bad), "abc")
    with pytest.raises(CorruptRecordError, match="truncated|checksum"):
        decode_record(data[:-7], "abc")
    with pytest.raises(TypeError, match="arrays\\['o'\\]"):
        encode_record({"o": np.array(["s"], dtype=object)})


def _assert_same_dataset(a, b):
    """``a`` from the store, ``b`` from learn_cauldron: equal bit for bit on real entries."""
    pa, pb = a.per_cell_dataset, b.per_cell_dataset
    assert torch.equal(pa.energy, pb.energy)
    n = pa.n_atoms
    assert torch.equal(pa.mask, pb.mask[:, :n]) and torch.equal(pa.energy_g, pb.energy_g[:, :n])
    assert torch.equal(pa.force_mask(), pb.force_mask()[:, :n])
    for da, db in zip(a.per_point_datasets, b.per_point_datasets, strict=True):
        m = da.n_points
        assert torch.equal(da.features, db.features[:, :m]) and torch.equal(da.mask, db.mask[:, :m])
        assert torch.equal(da.features_g.to_dense(), db.features_g.padded(n_atoms=db.n_atoms).to_dense()[:, :m, :, :n])
        assert torch.equal(da.charges, db.charges[:, :m])


def test_round_trip_is_bit_exact(tmp_path, cells, descriptors):
    report = prepare_store(tmp_path / "s", cells, descriptors)
    assert report.computed == len(cells) and report.reused == 0
    ds = StoreDataset(tmp_path / "s")
    assert len(ds) == len(cells) and ds.species == ["a", "b"]
    batch = StoreCollate(ds.species, grad=True, forces=True)([ds[i] for i in range(len(ds))])
    ref = ml.learn_cauldron(cells, descriptors, grad=True, normalize=False, extract_charges=True)
    _assert_same_dataset(batch.dataset, ref)
    np.testing.assert_array_equal(batch.weights.numpy(), [c.meta["weight"] for c in cells])
    assert batch.groups == [c.meta["group"] for c in cells]
    item = ds[3]
    np.testing.assert_array_equal(item.targets["stress"], cells[3].meta["stress"])
    assert ds.store.verify() == 2 * len(cells)


def _moved(original, change):
    c = original.copy()
    vectors, coords, values = c.vectors.copy(), c.coordinates.copy(), list(c.values)
    if change == "position":
        coords[1, 0] += 1e-9
    if change == "cell":
        vectors[0, 0] *= 1.0 + 1e-12
    if change == "species":
        values[1] = "b" if values[1] == "a" else "a"
    return Cell(vectors, coords, values, meta=c.meta)


@pytest.mark.parametrize("change", ["none", "position", "cell", "species", "parameter", "cutoff", "energy"])
def test_cache_hit_and_miss(tmp_path, change):
    cells = store_cells(4)
    prepare_store(tmp_path / "s", cells, store_descriptors())
    desc = store_descriptors()
    cells2 = list(cells)
    if change in ("position", "cell", "species"):
        cells2[2] = _moved(cells[2], change)
    elif change == "parameter":
        desc = store_descriptors(eta=0.6000001)
    elif change == "cutoff":
        desc = store_descriptors(cutoff=3.7)
    elif change == "energy":
        cells2[2] = cells[2].copy()
        cells2[2].meta = dict(cells[2].meta, **{"total-energy": 7.0})
    report = prepare_store(tmp_path / "s", cells2, desc)
    expected = {"none": 0, "position": 1, "cell": 1, "species": 1, "parameter": 4, "cutoff": 4, "energy": 0}[change]
    assert report.computed == expected and report.reused == 4 - expected
    assert report.targets_written == (1 if change in ("position", "cell", "species", "energy") else
                                      4 if change in ("parameter", "cutoff") else 0)
    ds = StoreDataset(tmp_path / "s")
    assert float(ds[2].targets["energy"][0]) == float(cells2[2].meta["total-energy"])


class _Killed(Exception):
    pass


def test_killed_preparation_resumes_to_the_same_store(tmp_path, cells, descriptors):
    def kill(done, total):
        if done >= 4:
            raise _Killed

    with pytest.raises(_Killed):
        prepare_store(tmp_path / "s", cells, descriptors, commit_every=2, on_commit=kill)
    with DescriptorStore(tmp_path / "s") as store:
        assert store.index_names() == []   # no data set is listed before it is complete
        store.verify()                     # every committed record is whole
    report = prepare_store(tmp_path / "s", cells, descriptors)
    assert report.reused == 4 and report.computed == len(cells) - 4
    prepare_store(tmp_path / "ref", cells, descriptors)
    a, b = StoreDataset(tmp_path / "s"), StoreDataset(tmp_path / "ref")
    for i in range(len(cells)):
        assert a.store.raw(a.record_keys(i)[0]) == b.store.raw(b.record_keys(i)[0])


def test_sigkilled_preparation_resumes(tmp_path, cells, descriptors):
    import multiprocessing

    from support_store import prepare_then_sigkill

    child = multiprocessing.get_context("spawn").Process(target=prepare_then_sigkill, args=(tmp_path / "s", 10, 6))
    child.start()
    child.join(60)
    assert child.exitcode == -9
    report = prepare_store(tmp_path / "s", cells, descriptors)
    assert report.reused == 6 and report.computed == 4
    with DescriptorStore(tmp_path / "s") as store:
        assert store.verify() == 2 * len(cells)


def test_parallel_preparation_equals_serial(tmp_path, descriptors):
    cells = store_cells(6)
    prepare_store(tmp_path / "one", cells, descriptors)
    report = prepare_store(tmp_path / "two", cells, descriptors, n_workers=2, progress=False)
    assert report.computed == 6 and report.n_workers == 2
    a, b = StoreDataset(tmp_path / "one"), StoreDataset(tmp_path / "two")
    for i in range(len(cells)):
        assert a.store.raw(a.record_keys(i)[0]) == b.store.raw(b.record_keys(i)[0])


def test_corrupt_record_is_named(tmp_path, cells, descriptors):
    prepare_store(tmp_path / "s", cells, descriptors)
    ds = StoreDataset(tmp_path / "s")
    key = ds.record_keys(1)[0]
    data = bytearray(ds.store.raw(key))
    ds.store.close()
    data[100] ^= 0xFF
    with DescriptorStore(tmp_path / "s") as store:
        store.put_many([(bytes.fromhex(key), bytes(data))])
        with pytest.raises(CorruptRecordError, match=key):
            store.verify()
        store.put_many([(bytes.fromhex(key), bytes(data[:50]))])
    ds = StoreDataset(tmp_path / "s")
    ds[0]
    with pytest.raises(CorruptRecordError, match=f"{key}.*truncated|{key}.*checksum"):
        ds[1]


def test_bad_input(tmp_path, cells, descriptors):
    with pytest.raises(KeyError, match="species \\['b'\\]"):
        prepare_store(tmp_path / "s", cells, {"a": descriptors["a"]})
    with pytest.raises(ValueError, match="n_workers"):
        prepare_store(tmp_path / "s", cells, descriptors, n_workers=0)
    with pytest.raises(ValueError, match="cells must not be empty"):
        prepare_store(tmp_path / "s", [], descriptors)
    bad = cells[0].copy()
    bad.meta = {k: v for k, v in bad.meta.items() if k != "total-energy"}
    with pytest.raises(KeyError, match="cells\\[1\\].meta has no 'total-energy'"):
        prepare_store(tmp_path / "s", [cells[1], bad], descriptors)
    with pytest.raises(FileNotFoundError, match="no descriptor store"):
        StoreDataset(tmp_path / "missing")
    prepare_store(tmp_path / "s", cells[:2], descriptors)
    with pytest.raises(KeyError, match="no data set 'other'"):
        StoreDataset(tmp_path / "s", name="other")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        DescriptorStore(tmp_path / "f")


def test_dataset_pickles_by_path_and_subsets(tmp_path, cells, descriptors):
    import pickle

    prepare_store(tmp_path / "s", cells, descriptors)
    ds = StoreDataset(tmp_path / "s").subset([3, 1])
    copy = pickle.loads(pickle.dumps(ds))   # what a DataLoader worker receives: the path, reopened read-only
    assert len(copy) == 2 and copy.store.readonly
    for i in range(2):
        a, b = ds[i], copy[i]
        assert a.index == b.index == [3, 1][i]
        for k in a.descriptors:
            np.testing.assert_array_equal(a.descriptors[k], b.descriptors[k])
    with pytest.raises(IndexError, match="out of range"):
        ds[2]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=StoreCollate(ds.species), num_workers=1,
                                         multiprocessing_context="spawn")
    (batch,) = list(loader)
    assert batch.indices.tolist() == [3, 1]
    forked = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=StoreCollate(ds.species), num_workers=1,
                                         multiprocessing_context="fork")
    with pytest.raises(RuntimeError, match="multiprocessing_context='spawn'"):
        list(forked)
