"""NNPotential through the kernel: linear networks equal descriptor sums; plain-data state round trips."""

import json

import numpy as np
import pytest
import torch
from support import central_difference

from miniff import ml
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import (
    behler2_descriptor_family,
    behler5_descriptor_family,
    potential_from_state_dict,
)

CUTOFF = 3.4


def _descriptors(species="a"):
    return [
        behler2_descriptor_family(a=CUTOFF, eta=0.5, r_sphere=1.2, tag=f"{species}-a"),
        behler2_descriptor_family(a=CUTOFF, eta=0.2, r_sphere=2.0, tag=f"{species}-b"),
        behler5_descriptor_family(a=CUTOFF, eta=0.05, l=1.0, zeta=1.0, tag=f"{species}-a-b"),
        behler5_descriptor_family(a=CUTOFF, eta=0.01, l=-1.0, zeta=2.0, tag=f"{species}-a-a"),
    ]


@pytest.fixture
def wrapper(triclinic_box):
    vectors, frac, species, pbc = triclinic_box
    return NeighborWrapper(Cell(vectors, frac, species), cutoff=CUTOFF, pbc=pbc)


def _linear(w, bias=None):
    net = ml.SequentialSoleEnergyNN(len(w), n_layers=1, bias=bias is not None).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([w], dtype=torch.float64))
        if bias is not None:
            net[0].bias.fill_(bias)
    return net


def test_linear_network_equals_descriptor_sum(wrapper):
    w = [0.7, -1.3, 0.25, 2.0]
    desc = _descriptors()
    pot = ml.NNPotential(_linear(w, bias=-0.4), desc, tag="a")
    assert isinstance(pot, ml.NNPotential) and pot.cutoff == CUTOFF
    is_a = np.asarray(wrapper.values) == "a"
    ref_e = sum(wk * wrapper.eval(d, "kernel") for wk, d in zip(w, desc, strict=True)) - 0.4 * is_a
    np.testing.assert_allclose(wrapper.eval(pot, "kernel"), ref_e, rtol=1e-12, atol=1e-13)
    assert wrapper.total(pot) == pytest.approx(ref_e.sum(), rel=1e-12)
    ref_g = sum(wk * wrapper.grad(d) for wk, d in zip(w, desc, strict=True))
    np.testing.assert_allclose(wrapper.grad(pot), ref_g, rtol=1e-11, atol=1e-12)
    ref_s = sum(wk * wrapper.stress(d) for wk, d in zip(w, desc, strict=True))
    np.testing.assert_allclose(wrapper.stress(pot), ref_s, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("net_kwargs", [{"activation": "silu"},
                                        {"activation": "tanh", "output_activation": True, "init": "xavier_uniform"}])
def test_nonlinear_forces_match_finite_differences(wrapper, net_kwargs):
    torch.manual_seed(0)
    net = ml.SequentialSoleEnergyNN(4, n_internal=5, **net_kwargs)
    pots = [ml.NNPotential(net, _descriptors("a"), tag="a"), ml.NNPotential(net, _descriptors("b"), tag="b")]
    wrapper.n_threads = 1  # many tiny kernel calls: avoid thread start-up noise
    cart0 = wrapper.cartesian_row.copy()
    g = wrapper.grad(pots)

    def energy(cart_sub):
        cart = cart0.copy()
        cart[:4] = cart_sub
        wrapper.set_cell_cartesian(cart, normalize=False)
        wrapper.compute_distances(CUTOFF)
        return wrapper.total(pots)

    ref = central_difference(energy, cart0[:4], eps=1e-5)  # atoms of both species
    np.testing.assert_allclose(g[:4], ref, atol=1e-7)


def test_threads_do_not_change_nn_potential(wrapper):
    torch.manual_seed(1)
    pot = ml.NNPotential(ml.SequentialSoleEnergyNN(4, activation="tanh"), _descriptors(), tag="a")
    e1, g1 = pot.compute(wrapper, grad=True, n_threads=1)
    e2, g2 = pot.compute(wrapper, grad=True, n_threads=2)
    np.testing.assert_allclose(e1, e2, rtol=1e-12, atol=0)
    np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-15)


LAYER_STACKS = {
    "sigmoid": lambda: ml.SequentialSoleEnergyNN(4, n_internal=5),
    "tanh-relu": lambda: torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 5),
                                             torch.nn.ReLU(), torch.nn.Linear(5, 1)),
    "mixed": lambda: torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.CELU(0.5), torch.nn.Dropout(0.2),
                                         torch.nn.Linear(6, 6), torch.nn.Softplus(beta=3.0), torch.nn.Identity(),
                                         torch.nn.Linear(6, 4), torch.nn.GELU(approximate="tanh"),
                                         torch.nn.Linear(4, 1, bias=False)),
}


@pytest.mark.parametrize("name", sorted(LAYER_STACKS))
@pytest.mark.parametrize("suffix", [".json", ".pt"])
def test_state_dict_round_trip(wrapper, tmp_path, name, suffix):
    torch.manual_seed(2)
    pot = ml.NNPotential(LAYER_STACKS[name](), _descriptors(), tag="a")
    e, g = pot.compute(wrapper, grad=True)
    again = ml.NNPotential.from_state_dict(pot.state_dict())
    also = potential_from_state_dict(pot.state_dict())
    path = tmp_path / f"pots{suffix}"
    ml.save_potentials([pot], path)
    if suffix == ".pt":
        data = torch.load(path, weights_only=True)
        assert data["format"] == "miniff-potentials"
    else:
        json.loads(path.read_text())
    (loaded,) = ml.load_potentials(path)
    for p in (again, also, loaded):
        assert isinstance(p, ml.NNPotential) and p.tag == "a"
        assert str(p.nn) == str(pot.nn)
        e2, g2 = p.compute(wrapper, grad=True)
        np.testing.assert_array_equal(e2, e)
        np.testing.assert_array_equal(g2, g)


def test_copy_and_missing_species(wrapper):
    pot = ml.NNPotential(_linear([1.0, 0, 0, 0]), _descriptors(), tag="a")
    other = pot.copy(tag="b")
    assert other.tag == "b" and pot.tag == "a"
    with pytest.raises(KeyError, match="'zz'"):
        ml.NNPotential(_linear([1.0, 0, 0, 0]), _descriptors("zz"), tag="zz").compute(wrapper)


def test_bad_state_and_files(tmp_path):
    pot = ml.NNPotential(_linear([1.0, 2.0, 3.0, 4.0]), _descriptors(), tag="a")
    state = pot.state_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        ml.NNPotential.from_state_dict({**state, "junk": 1})
    bad = {**state, "parameters": {**state["parameters"], "nn": {"type": "Sequential",
                                                                  "layers": [{"type": "os.system"}]}}}
    with pytest.raises(ValueError, match="unknown type 'os.system'"):
        ml.NNPotential.from_state_dict(bad)
    corrupt = tmp_path / "x.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a"):
        ml.load_potentials(corrupt)
    corrupt_json = tmp_path / "x.json"
    corrupt_json.write_text("{")
    with pytest.raises(ValueError, match="not a readable"):
        ml.load_potentials(corrupt_json)
    with pytest.raises(ValueError, match="nn takes 4 inputs but there are 3"):
        ml.NNPotential(_linear([1.0, 2.0, 3.0, 4.0]), _descriptors()[:3], tag="a")
    with pytest.raises(ValueError, match="centre species must be 'b'"):
        ml.NNPotential(_linear([1.0, 2.0, 3.0, 4.0]), _descriptors("a"), tag="b")
    with pytest.raises(ValueError, match="nn has 1 networks but descriptors has 2"):
        ml.potentials_from_ml_data([_linear([1.0] * 4)], {"a": _descriptors("a"), "b": _descriptors("b")})


def test_load_potentials_in_a_fresh_process_with_only_ml_imported(tmp_path):
    # Regression: the built-in descriptor families must be known even when only miniff.ml is imported.
    import subprocess
    import sys

    desc = [behler2_descriptor_family(a=5.0, eta=1.0, r_sphere=0.0, tag="Si-Si")]
    net = ml.SequentialSoleEnergyNN(1).double()
    path = tmp_path / "pots.pt"
    ml.save_potentials(ml.potentials_from_ml_data([net], {"Si": desc}), path)
    code = f"import miniff.ml as ml; p = ml.load_potentials({str(path)!r}); print(type(p[0]).__name__, len(p))"
    import os
    from pathlib import Path

    import miniff

    env = dict(os.environ, PYTHONPATH=str(Path(miniff.__file__).resolve().parent.parent))   # the miniff under test
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["NNPotential", "1"]
