"""Potentials files and NN potentials: non-finite weights, wrong output sizes and wrong tensor lengths are
refused at load and at construction, naming the file, the potential and the tensor."""

import copy
import json

import pytest
import torch

import miniff.potentials as P
from miniff.ml import NNPotential, load_potentials, save_potentials


def _descriptors(n=4):
    return [P.behler2_descriptor_family(a=3.0, eta=0.5 * (k + 1), r_sphere=0.0, tag="a-a") for k in range(n)]


def _network(n_out=1):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, n_out))


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "nn.json"
    save_potentials([P.lj_potential_family(epsilon=1, sigma=1, a=2.5, tag="a-a"),
                     NNPotential(_network(), _descriptors(), tag="a")], path)
    return path, json.loads(path.read_text())


def _layer0(data):
    return data["potentials"][1]["parameters"]["nn"]["layers"][0]["tensors"]


def _nan_weight(data):
    _layer0(data)["weight"]["data"][3] = float("nan")


def _inf_bias(data):
    _layer0(data)["bias"]["data"][0] = float("-inf")


def _short_weight(data):
    _layer0(data)["weight"]["data"].pop()


def _bad_shape(data):
    _layer0(data)["weight"]["shape"] = [5, "4"]


def _three_outputs(data):
    last = data["potentials"][1]["parameters"]["nn"]["layers"][2]
    last["args"]["out_features"] = 3
    last["tensors"]["weight"] = {"__tensor__": "float64", "shape": [3, 5], "data": [0.1] * 15}
    last["tensors"]["bias"] = {"__tensor__": "float64", "shape": [3], "data": [0.0] * 3}


def _nan_classical(data):
    data["potentials"][0]["parameters"]["epsilon"] = float("nan")


CASES = [
    (_nan_weight, ["potentials[1]", "'0.weight'", "non-finite"]),
    (_inf_bias, ["potentials[1]", "'0.bias'", "non-finite"]),
    (_short_weight, ["potentials[1]", "potentials[1].parameters.nn.layers[0].tensors.weight", "20 values", "19"]),
    (_bad_shape, ["potentials[1].parameters.nn.layers[0].tensors.weight", "shape"]),
    (_three_outputs, ["potentials[1]", "one output per atom", "[3]"]),
    (_nan_classical, ["potentials[0]", "'epsilon'", "NaN"]),
]


@pytest.mark.parametrize("corrupt, texts", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_bad_json_potentials_files_are_refused(saved, tmp_path, corrupt, texts):
    _, data = saved
    bad = copy.deepcopy(data)
    corrupt(bad)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError) as info:
        load_potentials(path)
    message = str(info.value)
    for text in [str(path), *texts]:
        assert text in message, message


def test_bad_pt_potentials_files_are_refused(tmp_path):
    pot = NNPotential(_network(), _descriptors(), tag="a")
    pot.nn[0].weight.data[1, 2] = float("nan")  # corrupt after construction, then save
    path = tmp_path / "nan.pt"
    save_potentials([pot], path)
    with pytest.raises(ValueError, match=r"nan\.pt.*potentials\[0\].*'0\.weight'.*non-finite"):
        load_potentials(path)


@pytest.mark.parametrize("network, text", [
    (lambda: _network(3), "one output per atom"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Linear(3, 1)), "cannot be evaluated"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(5, 1)), "takes 5 inputs but there are 4 descriptors"),
])
def test_networks_are_checked_at_construction(network, text):
    with pytest.raises(ValueError, match=text):
        NNPotential(network(), _descriptors(), tag="a")
    net = _network()
    with torch.no_grad():
        net[2].bias.fill_(float("inf"))
    with pytest.raises(ValueError, match=r"nn tensor '.*bias'.*non-finite"):
        NNPotential(net, _descriptors(), tag="a", simplify=False)
