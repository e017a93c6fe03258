"""Atomic networks: Amp's bounded, scaled output (``output_activation``) and Glorot-uniform initialisation."""

import math

import numpy as np
import pytest
import torch
from support import lj_cells, radial_basis

from miniff import ml
from miniff.ml.networks import has_output_scaling


def _amp_net(n_inputs=20, activation="tanh", **kwargs):
    return ml.SequentialSoleEnergyNN(n_inputs, n_internal=10, n_layers=4, activation=activation,
                                     output_activation=True, **kwargs).double()


def test_output_activation_layout_and_parameter_count():
    """Amp's 20-10-10-10-1 network with its output slope and intercept has 443 parameters per element (886 for
    two elements, the count Amp reports)."""
    net = _amp_net()
    assert [type(m).__name__ for m in net] == ["Linear", "Tanh"] * 4 + ["Linear"]
    assert (net[-1].in_features, net[-1].out_features) == (1, 1)
    n_ref = (20 * 10 + 10) + 2 * (10 * 10 + 10) + (10 + 1) + 2
    assert sum(p.numel() for p in net.parameters()) == n_ref == 443
    assert has_output_scaling(net)
    assert not has_output_scaling(ml.SequentialSoleEnergyNN(3, n_layers=2))


@pytest.mark.parametrize(("activation", "a", "b"), [("tanh", -1.0, 1.0), ("sigmoid", 0.0, 1.0),
                                                    ("softsign", -1.0, 1.0)])
def test_init_output_range_maps_the_activation_range(activation, a, b):
    """slope * act(z) + intercept with act's range [a, b] mapped onto [low, high]; huge inputs saturate there."""
    torch.manual_seed(3)
    net = _amp_net(5, activation=activation)
    low, high = -0.25, 1.75
    ml.init_output_range(net, low, high)
    slope = (high - low) / (b - a)
    assert net[-1].weight.item() == pytest.approx(slope, rel=1e-15)
    assert net[-1].bias.item() == pytest.approx(low - slope * a, rel=1e-15, abs=1e-15)
    x = torch.randn(200, 5, dtype=torch.float64)
    z = net[:-1](x)  # the activation's output
    torch.testing.assert_close(net(x), z * slope + (low - slope * a), rtol=1e-15, atol=1e-15)
    with torch.no_grad():
        big = net(1e4 * torch.randn(500, 5, dtype=torch.float64))
    assert float(big.min()) >= low - 1e-12 and float(big.max()) <= high + 1e-12


def test_new_networks_start_in_minus_one_one():
    net = _amp_net(4)
    assert net[-1].weight.item() == 1.0 and net[-1].bias.item() == 0.0


def test_xavier_uniform_weights_and_biases():
    """Every parameter of layer k lies in +-sqrt(6 / (fan_in + fan_out)) and is spread uniformly over it
    (standard deviation bound / sqrt(3)); the output scaling is not randomised."""
    torch.manual_seed(11)
    net = ml.SequentialSoleEnergyNN(300, n_internal=200, n_layers=3, activation="tanh", init="xavier_uniform",
                                    output_activation=True)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)][:-1]
    for layer in linears:
        bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
        for p in (layer.weight, layer.bias):
            values = p.detach().numpy().ravel()
            assert np.all(np.abs(values) <= bound)
        w = layer.weight.detach().numpy().ravel()
        if w.size > 10_000:
            assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
            assert abs(w.mean()) < 0.02 * bound
    # biases use the weights' range, wider than torch's default 1/sqrt(fan_in)
    b0 = linears[0].bias.detach().numpy()
    assert np.abs(b0).max() > 1 / math.sqrt(300)
    assert net[-1].weight.item() == 1.0 and net[-1].bias.item() == 0.0


def test_xavier_uniform_follows_the_global_seed():
    torch.manual_seed(5)
    a = ml.behler_nn(6, n_internal=4, init="xavier_uniform")
    torch.manual_seed(5)
    b = ml.behler_nn(6, n_internal=4, init="xavier_uniform")
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_output_scaling_round_trips_as_plain_data():
    torch.manual_seed(2)
    net = _amp_net(7, init="xavier_uniform")
    ml.init_output_range(net, 0.3, 0.9)
    back = ml.sequential_from_data(ml.sequential_to_data(net)).double()
    x = torch.randn(13, 7, dtype=torch.float64)
    torch.testing.assert_close(back(x), net(x), rtol=0, atol=0)
    assert has_output_scaling(back)


def test_bad_arguments():
    with pytest.raises(ValueError, match="init must be one of"):
        ml.SequentialSoleEnergyNN(3, init="he")
    with pytest.raises(TypeError, match="output_activation must be a bool"):
        ml.SequentialSoleEnergyNN(3, output_activation="yes")
    with pytest.raises(ValueError, match="bounded activation"):
        ml.SequentialSoleEnergyNN(3, activation="relu", output_activation=True)
    with pytest.raises(ValueError, match="output_activation=True"):
        ml.init_output_range(ml.SequentialSoleEnergyNN(3), 0.0, 1.0)
    net = _amp_net(3)
    for low, high in ((1.0, 1.0), (2.0, 1.0), (0.0, math.inf), (math.nan, 1.0)):
        with pytest.raises(ValueError, match="low < high"):
            ml.init_output_range(net, low, high)


def test_workflow_starts_the_outputs_on_the_energies_per_atom(tmp_path):
    """FitWorkflow with ``output_activation``: each network's output range is the learning set's range of
    (normalised) energies per atom, computed here from the raw energies and the normalisation's constants; the
    fit then lowers the loss and the saved potential evaluates the trained networks."""
    from miniff import ml_util

    cells = lj_cells(12, seed=4)
    wf = ml_util.FitWorkflow(seed=0)
    wf.prepare(cells, descriptors=radial_basis(6), test_set=2, normalization_kwargs={"offset_energy": False},
               nn_kwargs={"n_internal": 5, "n_layers": 2, "activation": "tanh", "output_activation": True,
                          "init": "xavier_uniform"})
    learn = wf.cells[:10]  # the workflow's order (shuffled)
    raw = np.array([c.meta["total-energy"] for c in learn])
    n_atoms = np.array([c.size for c in learn])
    per_atom = raw / float(wf.normalization.energy_scale) / n_atoms
    low, high = per_atom.min(), per_atom.max()
    net = wf.nn[0]
    assert net[-1].weight.item() == pytest.approx((high - low) / 2, rel=1e-12)
    assert net[-1].bias.item() == pytest.approx((high + low) / 2, rel=1e-12)
    wf.run(n_epochs=3, save=True, save_fn=str(tmp_path / "amp_like.pt"), progress=False, restore_best=False)
    assert wf.history[-1]["loss"] < wf.history[0]["loss"]
    pred = wf.predict("learn")["energy_pred"] * n_atoms
    from miniff.kernel import NeighborWrapper

    pots = ml_util.load_potentials(tmp_path / "amp_like.pt")
    kernel = np.array([NeighborWrapper(c, cutoff=2.5).total(pots) for c in learn])
    np.testing.assert_allclose(kernel, pred, rtol=1e-10)
