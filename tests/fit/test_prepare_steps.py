"""FitWorkflow.prepare as a sequence of named steps: the job-file schema (its signature) is unchanged, the
steps run in order and set the attributes their docstrings name, and steps composed by hand give the same
fit state as prepare."""

import inspect

import numpy as np
import pytest
import torch

from miniff import ml_util
from miniff.fit.prepare import DEFAULT_FORCE_WEIGHT, DEFAULT_NN_KWARGS, FitPreparation
from miniff.fit.workflow import FitWorkflow
from miniff.io import read_cells

#: The job-file schema of ``prepare``: names, order and defaults (``inspect.Parameter.empty``: required).
PREPARE_SCHEMA = [
    ("fn_cells", inspect.Parameter.empty), ("fn_cells_root", None), ("cells_order", "random"),
    ("cells_subset", None), ("cells_append", False), ("cells_index", ":"), ("cells_selection", None),
    ("cells_group_key", None),
    ("descriptors", None), ("cutoff", None), ("default_descriptor_kwargs", None), ("descriptor_recipe", "behler"),
    ("nw_kwargs", None), ("learn_cauldron_kwargs", None), ("normalization_kwargs", None), ("test_set", 0.1),
    ("split_seed", 0), ("nn_kwargs", None), ("closure_kwargs", None), ("forces", None), ("group_weights", None),
    ("checkpoint", None), ("resume", True), ("load", None), ("parallel", False), ("cuda", None),
    ("plot_kwargs", None), ("committee", None), ("stress", None), ("device", "cpu"),
]

SMALL = {"cells_subset": 12, "cutoff": 5.0, "test_set": 3, "forces": True,
         "default_descriptor_kwargs": {"n": 2, "three_point": False}, "nn_kwargs": {"n_internal": 3, "n_layers": 2}}


@pytest.fixture(scope="module")
def cells():
    out = list(read_cells(str(ml_util.example_data_path())))[:16]
    for k, c in enumerate(out):
        c.meta["group"] = "odd" if k % 2 else "even"
    return out


def test_prepare_signature_is_the_job_file_schema():
    params = list(inspect.signature(FitWorkflow.prepare).parameters.values())[1:]
    assert [(p.name, p.default) for p in params] == PREPARE_SCHEMA
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
    assert FitWorkflow.prepare.__doc__.startswith("Load cells, compute descriptors and datasets, split, normalise")


def test_steps_run_in_order(cells, monkeypatch):
    wf = FitWorkflow(seed=0)
    calls = []
    for name in ("_fit_options", "_load_cells", "_make_descriptors", "_make_datasets", "_make_networks",
                 "_make_closure", "_start_fit"):
        method = getattr(wf, name)

        def record(*args, _name=name, _method=method, **kwargs):
            calls.append(_name)
            return _method(*args, **kwargs)

        monkeypatch.setattr(wf, name, record)
    assert wf.prepare(cells, **SMALL) is wf
    assert calls == ["_fit_options", "_load_cells", "_make_descriptors", "_make_datasets", "_make_networks",
                     "_make_closure", "_start_fit"]
    for name in ("_fit_options", "_load_cells", "_make_descriptors", "_make_datasets", "_make_networks",
                 "_make_closure", "init_default_descriptors", "_test_count", "_init_output_ranges"):
        assert name in vars(FitPreparation) and getattr(FitPreparation, name).__doc__, name


def test_steps_by_hand_give_the_state_of_prepare(cells):
    wf = FitWorkflow(seed=0).prepare(cells, **SMALL)

    by_hand = FitWorkflow(seed=0)
    lk, ck = by_hand._fit_options(None, True, None, None)
    assert by_hand.forces and lk == {"grad": True} and ck == {"w_gradients": DEFAULT_FORCE_WEIGHT}
    n, n_test = by_hand._load_cells(cells, None, "random", 12, False, ":", None, 3, 0)
    assert (n, n_test) == (12, 3) and len(by_hand.cells) == 12
    np.testing.assert_array_equal(by_hand.order, wf.order)
    by_hand._make_descriptors(None, None, "behler", 5.0, {"n": 2, "three_point": False}, None)
    assert by_hand.cutoff == 5.0 and len(by_hand.cells_nw) == 12
    raw = by_hand._make_datasets(n, n_test, lk, None)
    assert sorted(raw) == ["learn", "test"] and raw["learn"].n_samples == 9
    assert by_hand.cell_indices == {"learn": list(range(9)), "test": [9, 10, 11]}
    by_hand._make_networks({"n_internal": 3, "n_layers": 2}, defaults=DEFAULT_NN_KWARGS)
    by_hand._make_closure(ck, None)
    by_hand._start_fit(None, True, raw)

    assert by_hand._fingerprint == wf._fingerprint and by_hand._split_fingerprint == wf._split_fingerprint
    assert by_hand.cell_groups == wf.cell_groups and by_hand.epoch == 0 and by_hand.history == []
    for a, b in zip(wf.nn, by_hand.nn, strict=True):
        assert [type(m) for m in a] == [type(m) for m in b]
        for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.equal(pa, pb)
    for name in ("learn", "test"):
        assert torch.equal(wf.datasets[name].per_cell_dataset.energy, by_hand.datasets[name].per_cell_dataset.energy)


def test_default_networks_complete_the_nn_kwargs(cells):
    small = {k: v for k, v in SMALL.items() if k != "nn_kwargs"}
    wf = FitWorkflow(seed=0).prepare(cells, **small)
    n_features = [len(v) for v in wf.descriptors.values()]
    for net, n_f in zip(wf.nn, n_features, strict=True):   # n_f -> 10 -> 10 -> 1, tanh between the layers
        assert [type(m).__name__ for m in net] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
        assert [(m.in_features, m.out_features) for m in net if isinstance(m, torch.nn.Linear)] == \
            [(n_f, 10), (10, 10), (10, 1)]
    assert wf.nn_kwargs == DEFAULT_NN_KWARGS   # what the members of a committee are built from
    wf = FitWorkflow(seed=0).prepare(cells, nn_kwargs={"n_internal": 4, "activation": "sigmoid"}, **small)
    assert [type(m).__name__ for m in wf.nn[0]] == ["Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]
    assert wf.nn[0][0].out_features == 4 and wf.nn_kwargs["n_layers"] == 3


def test_group_weights_follow_the_learning_cells(cells):
    wf = FitWorkflow(seed=0).prepare(cells, group_weights={"odd": 3.0}, **SMALL)
    expected = [3.0 if g == "odd" else 1.0 for g in wf.cell_groups["learn"]]
    assert wf.closure.loss_function_kwargs["weights"] == expected
    unlabelled = [c.copy() for c in cells]
    for c in unlabelled:
        c.meta = {k: v for k, v in c.meta.items() if k != "group"}
    with pytest.raises(ValueError, match="no meta\\['group'\\] labels"):
        FitWorkflow(seed=0).prepare(unlabelled, group_weights={"odd": 3.0}, **SMALL)
    with pytest.raises(KeyError, match=r"no cells in groups \['nope'\]; groups: \['even', 'odd'\]"):
        FitWorkflow(seed=0).prepare(cells, group_weights={"nope": 3.0}, **SMALL)
