"""Fast paths of force training: written-out input gradients of plain MLPs, one autograd call for the other
networks, cached masks/Jacobians/atom counts.

References are computed independently in the tests: per species, ``torch.autograd.grad`` of the masked atomic
energies by the features contracted with the dense Jacobian (``features_g.to_dense()``), and the loss formulas
of ``miniff.fit.closures`` written with plain tensor operations.
"""

import numpy as np
import pytest
import torch
from support import spy

from miniff import ml
from miniff.fit.closures import _atom_counts, energy_loss
from miniff.kernel import Cell
from miniff.ml import cauldron as _ml_cauldron
from miniff.potentials import behler2_descriptor_family, behler5_descriptor_family

CUTOFF = 3.6


def _descriptors():
    def b2(tag, eta, rs):
        return behler2_descriptor_family(a=CUTOFF, eta=eta, r_sphere=rs, tag=tag)

    return {
        "a": [b2("a-a", 0.6, 1.5), b2("a-b", 0.4, 2.0),
              behler5_descriptor_family(a=CUTOFF, eta=0.05, l=1.0, zeta=2.0, tag="a-a-b")],
        "b": [b2("b-a", 0.5, 1.8), b2("b-b", 0.3, 1.0)],
    }


def _dataset(rng, padded=True):
    """Two species; with ``padded`` the cells differ in size and composition (padding in both species)."""
    specs = [(np.diag([5.0, 5.5, 6.0]), ["a", "b", "a", "b", "b", "a"]),
             (np.array([[4.6, 0, 0], [0.8, 4.9, 0], [-0.5, 0.7, 5.2]]), ["b", "a", "a", "b", "a", "b"])]
    if padded:
        specs.append((np.eye(3) * 5.0, ["a", "a", "b"]))
    cells = []
    for vectors, species in specs:
        n = len(species)
        meta = {"total-energy": rng.normal(), "forces": rng.normal(size=(n, 3)), "pbc": np.array([True] * 3)}
        cells.append(Cell(vectors, rng.random((n, 3)), species, meta=meta))
    return ml.learn_cauldron(cells, _descriptors(), grad=True, normalize=False)


def _nets(activation="tanh", n_layers=3, **kwargs):
    torch.manual_seed(7)
    return [ml.SequentialSoleEnergyNN(len(d), n_internal=5, n_layers=n_layers, activation=activation, **kwargs).double()
            for _, d in sorted(_descriptors().items())]


class _Wrapped(torch.nn.Module):
    """A network autograd must differentiate (not a plain Sequential)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def _reference(nets, ds):
    """Energies [S, 1] and dE/dr [S, A, 3]: autograd per species and the dense Jacobian."""
    energy = gradients = 0
    for net, d in zip(nets, ds.per_point_datasets, strict=True):
        x = d.features.detach().requires_grad_(True)
        e = (net(x) * (d.mask != 0).to(x.dtype)[..., None]).sum(1)
        (dx,) = torch.autograd.grad(e.sum(), x, create_graph=True)
        dense = d.features_g.padded(n_atoms=ds.n_atoms).to_dense()
        energy = energy + e
        gradients = gradients + torch.einsum("spd,spdac->sac", dx, dense)
    return energy, gradients


def _with_parameter_gradients(nets, compute):
    """``compute()`` -> (energy, gradients); also the gradients of a force loss by every parameter."""
    for n in nets:
        n.zero_grad()
    energy, gradients = compute()
    ((energy ** 2).sum() + (gradients ** 2).sum()).backward()
    return energy.detach(), gradients.detach(), [p.grad.clone() for n in nets for p in n.parameters()]


def _assert_same(got, ref):
    for a, b in zip(got[:2], ref[:2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    for a, b in zip(got[2], ref[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _count_autograd_calls(monkeypatch):
    calls = []
    grad = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(len(args[1]) if isinstance(args[1], (list, tuple)) else 1)
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    return calls


@pytest.mark.parametrize(("activation", "n_layers", "padded", "output_activation"),
                         [("tanh", 3, True, False), ("sigmoid", 2, True, False), ("tanh", 1, True, False),
                          ("tanh", 3, False, False), ("tanh", 4, True, True), ("sigmoid", 2, False, True)])
def test_written_out_input_gradients_equal_autograd(rng, monkeypatch, activation, n_layers, padded, output_activation):
    """Plain Linear/Tanh/Sigmoid sequentials (also with Amp's bounded, scaled output): forces and their parameter
    derivatives equal autograd's, and no autograd call is needed in forward_cauldron."""
    ds = _dataset(rng, padded)
    nets = _nets(activation, n_layers, output_activation=output_activation)
    if output_activation:  # a slope and intercept far from the identity
        for net in nets:
            ml.init_output_range(net, -0.7, 2.9)
    assert all(_ml_cauldron._plain_mlp(n) is not None for n in nets)
    ref = _with_parameter_gradients(nets, lambda: _reference(nets, ds))
    masks = spy(monkeypatch, _ml_cauldron, "_real_mask")
    calls = _count_autograd_calls(monkeypatch)
    got = _with_parameter_gradients(nets, lambda: ml.forward_cauldron(nets, ds, grad=True))
    assert calls == []
    _assert_same(got, ref)
    d0 = ds.per_point_datasets[0]
    used = [c.result for c in masks if c.args[0] is d0]  # the masks forward_cauldron multiplied species 0 by
    assert len(used) == 1 and (used[0] is None) == (not padded)
    assert _ml_cauldron._real_mask(d0) is used[0]  # kept on the dataset: the same tensor again


def test_other_networks_share_one_autograd_call(rng, monkeypatch):
    """Networks that are not plain sequentials (SiLU, a wrapper) are differentiated by a single autograd call for
    all species; mixed with a plain network the results still equal the per-species reference."""
    ds = _dataset(rng)
    for nets in (_nets("silu"), [_Wrapped(n) for n in _nets()], [_nets()[0], _Wrapped(_nets("silu")[1])]):
        ref = _with_parameter_gradients(nets, lambda nets=nets: _reference(nets, ds))
        calls = _count_autograd_calls(monkeypatch)
        got = _with_parameter_gradients(nets, lambda nets=nets: ml.forward_cauldron(nets, ds, grad=True))
        n_generic = sum(_ml_cauldron._plain_mlp(n) is None for n in nets)
        assert calls == [n_generic]
        _assert_same(got, ref)
        monkeypatch.undo()


@pytest.mark.parametrize("wrap", [False, True])
def test_compact_and_padded_paths_agree(rng, monkeypatch, wrap):
    ds = _dataset(rng)
    nets = [_Wrapped(n) for n in _nets()] if wrap else _nets()
    ref = _with_parameter_gradients(nets, lambda: _reference(nets, ds))
    gathered = spy(monkeypatch, _ml_cauldron, "_gather_real_points")
    for fill in (0.0, 1.0):  # 0: always padded; 1: always compact
        monkeypatch.setattr(_ml_cauldron, "COMPACT_MAX_FILL", fill)
        gathered.clear()
        got = _with_parameter_gradients(nets, lambda: ml.forward_cauldron(nets, ds, grad=True))
        compact = _ml_cauldron._compact_points(ds.per_point_datasets[0])
        assert (compact is None) == (fill == 0.0)
        # gathered once per species by forward_cauldron (None: padded), and the kept result is the one it used
        assert len(gathered) == len(ds.per_point_datasets) and compact is gathered[0].result
        _assert_same(got, ref)


def test_plain_mlp_recognition():
    tanh = _nets()[0]
    assert [type(m) for m in _ml_cauldron._plain_mlp(tanh)] == [type(m) for m in tanh]
    assert _ml_cauldron._plain_mlp(_nets("silu")[0]) is None
    assert _ml_cauldron._plain_mlp(torch.nn.Sequential(torch.nn.Linear(3, 2))) is None  # two outputs
    assert _ml_cauldron._plain_mlp(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())) is None
    assert _ml_cauldron._plain_mlp(torch.nn.Sequential(tanh)) is None  # nested

    class Scaled(torch.nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    assert _ml_cauldron._plain_mlp(Scaled(*_nets()[0])) is None
    hooked = _nets()[0]
    handle = hooked[2].register_forward_hook(lambda m, i, o: 2 * o)
    assert _ml_cauldron._plain_mlp(hooked) is None
    handle.remove()
    assert _ml_cauldron._plain_mlp(hooked) is not None


def test_hooks_and_subclasses_are_honoured(rng):
    """A forward hook changes the network: forward_cauldron takes the autograd path and sees it."""
    ds = _dataset(rng)
    nets = _nets()
    nets[1][0].register_forward_hook(lambda m, i, o: torch.tanh(o) + 0.5 * o)
    ref = _with_parameter_gradients(nets, lambda: _reference(nets, ds))
    _assert_same(_with_parameter_gradients(nets, lambda: ml.forward_cauldron(nets, ds, grad=True)), ref)


def test_no_grad_and_feature_gradients(rng):
    """Under no_grad the results are plain tensors equal to the graph-building ones; features that require
    gradients get the same second derivatives as autograd's."""
    ds = _dataset(rng)
    nets = _nets()
    e1, g1 = ml.forward_cauldron(nets, ds, grad=True)
    with torch.no_grad():
        e0, g0 = ml.forward_cauldron(nets, ds, grad=True)
    assert not (e0.requires_grad or g0.requires_grad)
    torch.testing.assert_close(e0, e1.detach(), rtol=0, atol=0)
    torch.testing.assert_close(g0, g1.detach(), rtol=0, atol=0)
    features = [d.features.clone().requires_grad_(True) for d in ds.per_point_datasets]
    leaf = ml.Dataset(ds.per_cell_dataset, *(d._replace(features=f) for d, f in
                                             zip(ds.per_point_datasets, features, strict=True)))
    out = {}
    for name, mods in (("plain", nets), ("autograd", [_Wrapped(n) for n in nets])):
        _, g = ml.forward_cauldron(mods, leaf, grad=True)
        out[name] = torch.autograd.grad((g ** 2).sum(), features)
    for a, b in zip(out["plain"], out["autograd"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_caches_follow_in_place_changes(rng, monkeypatch):
    """Masks, atom counts and the gathered real atoms are recomputed when the dataset changes in place."""
    ds = _dataset(rng, padded=False)
    nets = _nets()
    counts = _atom_counts(ds)
    torch.testing.assert_close(counts, torch.full((2,), 6.0, dtype=torch.float64))
    masks = spy(monkeypatch, _ml_cauldron, "_real_mask")
    loss = energy_loss(nets, ds, w_gradients=1.0, per_atom=True)  # fills the caches
    used = [c.result for c in masks if c.args[0] is ds.per_point_datasets[1]]
    assert used and all(m is None for m in used)  # every point real: no mask
    assert _ml_cauldron._real_mask(ds.per_point_datasets[1]) is None
    with torch.no_grad():  # drop the last 'b' point of sample 1 and its atom from the force term
        ds.per_point_datasets[1].mask[1, -1] = 0
        ds.per_cell_dataset.mask[1, 5] = 0
    torch.testing.assert_close(_atom_counts(ds), torch.tensor([6.0, 5.0], dtype=torch.float64))
    energy, gradients = ml.forward_cauldron(nets, ds, grad=True)
    ref_energy, ref_gradients = _reference(nets, ds)
    torch.testing.assert_close(energy, ref_energy, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(gradients, ref_gradients, rtol=1e-12, atol=1e-13)
    changed = energy_loss(nets, ds, w_gradients=1.0, per_atom=True)
    expected = _loss_reference(ref_energy, ref_gradients, ds, w_gradients=1.0, per_atom=True)
    torch.testing.assert_close(changed.loss_value, expected, rtol=1e-12, atol=0)
    assert not torch.isclose(changed.loss_value, loss.loss_value)


def _loss_reference(energy, gradients, ds, w_gradients, per_atom, weights=None):
    """The documented loss with plain operations (weights w_s, masks of real atoms)."""
    pcd = ds.per_cell_dataset
    n_s = sum((d.mask != 0).sum(1) for d in ds.per_point_datasets).to(energy.dtype)
    w_s = torch.ones(len(n_s), dtype=energy.dtype) if weights is None else torch.as_tensor(weights).double()
    de_s = (energy - pcd.energy)[:, 0] / (n_s if per_atom else 1)
    mask = pcd.mask.to(energy.dtype)
    sq_s = (((gradients - pcd.energy_g) ** 2).sum(2) * mask).sum(1)
    return (w_s * de_s ** 2).sum() / w_s.sum() + w_gradients * (w_s * sq_s).sum() / (3 * (w_s * mask.sum(1)).sum())


@pytest.mark.parametrize(("padded", "per_atom", "weights"), [(True, True, None), (False, False, [0.3, 1.2]),
                                                             (True, False, [1.0, 0.0, 2.0])])
def test_loss_equals_its_formula(rng, padded, per_atom, weights):
    ds = _dataset(rng, padded)
    nets = _nets()
    result = energy_loss(nets, ds, w_gradients=0.7, per_atom=per_atom, weights=weights)
    energy, gradients = _reference(nets, ds)
    expected = _loss_reference(energy, gradients, ds, 0.7, per_atom, weights)
    torch.testing.assert_close(result.loss_value, expected, rtol=1e-12, atol=0)
    assert set(result.components) == {"energy", "gradients"}
    torch.testing.assert_close(result.loss_value, result.components["energy"].loss_value
                               + result.components["gradients"].loss_value, rtol=0, atol=0)


def test_dense_jacobian_cache_of_padded_copies(rng, monkeypatch):
    """A padded copy of a Jacobian whose dense layout is cached builds its own (wider) layout."""
    ds = _dataset(rng)
    jac = ds.per_point_datasets[0].features_g
    dE_dF = torch.from_numpy(rng.normal(size=(jac.n_samples, jac.n_points, jac.n_features)))
    layouts = spy(monkeypatch, ml.SparseJacobian, "_dense")
    small = jac.contract(dE_dF)
    (call,) = layouts
    assert call.args[0] is jac and call.result is not None  # the dense per-sample product was used ...
    assert jac._dense(*call.args[1:]) is call.result  # ... and is kept: the same tensor again
    wide = jac.padded(n_atoms=jac.n_atoms + 2).contract(dE_dF)
    own = layouts[-1]
    assert own.args[0] is not jac and own.result.shape[-1] == (jac.n_atoms + 2) * 3  # its own, wider layout
    assert wide.shape == (jac.n_samples, jac.n_atoms + 2, 3)
    torch.testing.assert_close(wide[:, :jac.n_atoms], small, rtol=0, atol=0)
    assert not wide[:, jac.n_atoms:].any()
