"""learn_cauldron / forward_cauldron with the compiled descriptors: values, sparse Jacobians, forces.

References: descriptor values from ``NeighborWrapper.eval`` of each descriptor, forces from central finite
differences of recomputed energies, and the NN potential evaluated through the kernel (an independent path).
"""

import numpy as np
import pytest
import torch
from support import central_difference, spy

from miniff import ml
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import behler2_descriptor_family, behler5_descriptor_family

CUTOFF = 3.6


def _descriptors():
    def b2(tag, eta, rs):
        return behler2_descriptor_family(a=CUTOFF, eta=eta, r_sphere=rs, tag=tag)

    def b5(tag, eta, l):
        return behler5_descriptor_family(a=CUTOFF, eta=eta, l=l, zeta=2.0, tag=tag)

    return {
        "a": [b2("a-a", 0.6, 1.5), b2("a-b", 0.4, 2.0), b5("a-a-b", 0.05, 1.0), b5("a-a-a", 0.02, -1.0)],
        "b": [b2("b-a", 0.5, 1.8), b2("b-b", 0.3, 1.0), b5("b-a-a", 0.03, 1.0)],
    }


def _cells(rng):
    """Mixed cells: different sizes, species sets (one without 'b'), periodic and not; with targets."""
    out = []
    specs = [
        (np.diag([5.0, 5.5, 6.0]), ["a", "b", "a", "a", "b", "a", "b"], True),
        (np.array([[4.6, 0, 0], [0.8, 4.9, 0], [-0.5, 0.7, 5.2]]), ["a", "a", "a", "a", "a"], True),
        (np.eye(3) * 6.0, ["b", "a", "b", "b", "a", "a", "a", "b", "a"], False),
    ]
    for vectors, species, pbc in specs:
        n = len(species)
        frac = rng.random((n, 3)) if pbc else 0.25 + 0.5 * rng.random((n, 3))
        meta = {"total-energy": rng.normal(), "forces": rng.normal(size=(n, 3)), "pbc": np.array([pbc] * 3)}
        out.append(Cell(vectors, frac, species, meta=meta))
    return out


def _nets(dtype=torch.float64, activation="tanh"):
    torch.manual_seed(3)
    return [ml.SequentialSoleEnergyNN(len(d), n_internal=6, n_layers=3, activation=activation).to(dtype)
            for _, d in sorted(_descriptors().items())]


def test_features_match_kernel_and_padding(rng):
    cells = _cells(rng)
    desc = _descriptors()
    ds = ml.learn_cauldron(cells, desc, grad=False, normalize=False)
    assert ds.tags == ("a", "b")
    assert ds.n_atoms == 9 and [p.n_points for p in ds.per_point_datasets] == [5, 4]
    np.testing.assert_array_equal(ds.atom_counts().numpy(), [[4, 3], [5, 0], [5, 4]])
    for s, c in enumerate(cells):
        nw = NeighborWrapper(c, cutoff=CUTOFF, pbc=bool(c.meta["pbc"][0]))
        for k, species in enumerate(("a", "b")):
            idx = np.flatnonzero(np.asarray(c.values) == species)
            ref = np.stack([nw.eval(d, "kernel", ignore_missing_species=True) for d in desc[species]], axis=1)
            got = ds.per_point_datasets[k].features[s].numpy()
            np.testing.assert_allclose(got[:len(idx)], ref[idx], rtol=1e-12, atol=1e-14)
            assert not got[len(idx):].any()
        np.testing.assert_allclose(ds.per_cell_dataset.energy[s, 0], c.meta["total-energy"])


def test_forces_equal_finite_differences_of_energies(rng):
    cells = _cells(rng)
    desc = _descriptors()
    nets = _nets()
    ds = ml.learn_cauldron(cells, desc, grad=True, normalize=False)
    energy, gradients = ml.forward_cauldron(nets, ds, grad=True)
    assert gradients.shape == (3, 9, 3)
    for s in (0, 2):
        c = cells[s]

        cart = c.coordinates @ c.vectors

        def e_of(cart_sub, c=c, cart0=cart):
            full = cart0.copy()
            full[:4] = cart_sub  # the first 4 atoms hold both species
            moved = Cell(c.vectors, full @ np.linalg.inv(c.vectors), c.values, meta=c.meta)
            d1 = ml.learn_cauldron([moved], desc, normalize=False, n_threads=1)
            with torch.no_grad():
                return float(ml.forward_cauldron(nets, d1)[0, 0])

        assert e_of(cart[:4]) == pytest.approx(float(energy[s, 0].detach()), rel=1e-12)
        ref = central_difference(e_of, cart[:4], eps=1e-5)
        np.testing.assert_allclose(gradients[s, :4].detach().numpy(), ref, atol=1e-7)
        assert not gradients[s, c.size:].any()


def test_gradcheck_force_path():
    rng = np.random.default_rng(5)
    cells = _cells(rng)[:2]
    desc = _descriptors()
    ds = ml.learn_cauldron(cells, desc, grad=True, normalize=False)
    nets = _nets()
    names = [[n for n, _ in net.named_parameters()] for net in nets]
    flat = [p.detach().clone().requires_grad_(True) for net in nets for p in net.parameters()]

    class Functional(torch.nn.Module):
        def __init__(self, net, params):
            super().__init__()
            self.net, self.params = net, params

        def forward(self, x):
            return torch.func.functional_call(self.net, self.params, (x,))

    def forces(*params):
        it = iter(params)
        mods = [Functional(net, {n: next(it) for n in nn}) for net, nn in zip(nets, names, strict=True)]
        return ml.forward_cauldron(mods, ds, grad=True)[1]

    assert torch.autograd.gradcheck(forces, flat, eps=1e-6, atol=1e-6)


def test_normalized_training_data_and_potentials_agree(rng):
    """forward_cauldron(normalization=...) on a normalised dataset == NNPotential through the kernel."""
    cells = _cells(rng)
    desc = _descriptors()
    ds, norm = ml.learn_cauldron(cells, desc, grad=True, norm_kwargs={"offset_energy": True})
    nets = _nets()
    energy, gradients = ml.forward_cauldron(nets, ds, grad=True, normalization=norm)
    pots = ml.potentials_from_ml_data(nets, desc, normalization=norm)
    assert [p.tag for p in pots] == ["a", "b"]
    for s, c in enumerate(cells):
        nw = NeighborWrapper(c, cutoff=CUTOFF, pbc=bool(c.meta["pbc"][0]))
        present = [p for p in pots if p.tag in set(c.values)]
        assert nw.total(present) == pytest.approx(float(energy[s, 0].detach()), rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(nw.grad(present), gradients[s, :c.size].detach().numpy(), rtol=1e-9,
                                   atol=1e-10)
    # the targets came back in physical units
    back = norm.bw(ds)
    np.testing.assert_allclose(back.per_cell_dataset.energy[:, 0].numpy(), [c.meta["total-energy"] for c in cells])
    np.testing.assert_allclose(back.per_cell_dataset.energy_g[0, :7].numpy(), -cells[0].meta["forces"])


def test_energies_p_and_subset(rng):
    cells = _cells(rng)
    ds = ml.learn_cauldron(cells, _descriptors(), grad=True, normalize=False)
    nets = _nets()
    parts = ml.forward_cauldron(nets, ds, energies_p=True)
    total = ml.forward_cauldron(nets, ds)
    torch.testing.assert_close(sum(p.sum(1) for p in parts), total)
    assert not parts[1][1].any()  # cell 1 has no 'b' atoms
    sub = ds[[2, 0]]
    e_sub, g_sub = ml.forward_cauldron(nets, sub, grad=True)
    e_all, g_all = ml.forward_cauldron(nets, ds, grad=True)
    torch.testing.assert_close(e_sub, e_all[[2, 0]])
    torch.testing.assert_close(g_sub, g_all[[2, 0]])


def test_threads_do_not_change_results(rng):
    cells = _cells(rng)
    d1 = ml.learn_cauldron(cells, _descriptors(), grad=True, normalize=False, n_threads=1)
    d2 = ml.learn_cauldron(cells, _descriptors(), grad=True, normalize=False, n_threads=2)
    for a, b in zip(d1.per_point_datasets, d2.per_point_datasets, strict=True):
        torch.testing.assert_close(a.features, b.features, rtol=1e-12, atol=0)
        torch.testing.assert_close(a.features_g.to_dense(), b.features_g.to_dense(), rtol=1e-12, atol=1e-15)


def test_bad_input(rng):
    cells = _cells(rng)
    desc = _descriptors()
    with pytest.raises(KeyError, match=r"no entry for species \['b'\]"):
        ml.learn_cauldron(cells, {"a": desc["a"]}, normalize=False)
    with pytest.raises(ValueError, match="centre species must be 'b'"):
        ml.learn_cauldron(cells, {"a": desc["a"], "b": desc["a"]}, normalize=False)
    no_energy = Cell(cells[1].vectors, cells[1].coordinates, cells[1].values)
    with pytest.raises(KeyError, match="total-energy"):
        ml.learn_cauldron([no_energy], desc, normalize=False)
    bad_forces = Cell(cells[1].vectors, cells[1].coordinates, cells[1].values,
                      meta={"total-energy": 1.0, "forces": np.zeros((3, 3))})
    with pytest.raises(ValueError, match=r"cells\[0\].meta\['forces'\] must have shape \(5, 3\)"):
        ml.learn_cauldron([bad_forces], desc, grad=True, normalize=False)
    nan_energy = Cell(cells[1].vectors, cells[1].coordinates, cells[1].values, meta={"total-energy": np.nan})
    with pytest.raises(ValueError, match="energy"):
        ml.learn_cauldron([nan_energy], desc, normalize=False)
    with pytest.raises(TypeError, match=r"cells\[0\] must be a Cell"):
        ml.learn_cauldron(["x"], desc, normalize=False)
    ds = ml.learn_cauldron(cells, desc, normalize=False)
    with pytest.raises(ValueError, match="modules has 1 networks"):
        ml.forward_cauldron(_nets()[:1], ds)
    with pytest.raises(TypeError, match="modules.0. has dtype torch.float32"):
        ml.forward_cauldron(_nets(torch.float32), ds)
    with pytest.raises(ValueError, match="grad=True needs feature Jacobians"):
        ml.forward_cauldron(_nets(), ds, grad=True)


def test_wrappers_charges_partial_energies_and_progress(rng, capsys):
    cells = _cells(rng)[:2]
    wrappers = []
    for c in cells:
        nw = NeighborWrapper(c, pbc=True)  # no distances yet: learn_cauldron computes them
        nw.meta["charges"] = rng.normal(size=c.size)
        nw.meta["partial-energy"] = rng.normal(size=c.size)
        wrappers.append(nw)
    ds = ml.learn_cauldron(wrappers, _descriptors(), normalize=False, extract_charges=True, energies_p=True,
                           progress=True)
    assert "descriptors" in capsys.readouterr().err
    for k, species in enumerate(("a", "b")):
        idx = np.flatnonzero(np.asarray(cells[0].values) == species)
        pp = ds.per_point_datasets[k]
        np.testing.assert_array_equal(pp.charges[0, :len(idx), 0].numpy(), wrappers[0].meta["charges"][idx])
        np.testing.assert_array_equal(pp.energies_p[0, :len(idx), 0].numpy(),
                                      wrappers[0].meta["partial-energy"][idx])
    one = ml.PerPointDataset.from_cells(wrappers, _descriptors()["b"], 1)  # index into sorted species
    assert one.tag == "b"
    torch.testing.assert_close(one.features, ds.per_point_datasets[1].features)
    wrappers[1].meta["charges"] = np.full(cells[1].size, np.nan)
    with pytest.raises(ValueError, match="charges contains NaN"):
        ml.learn_cauldron(wrappers, _descriptors(), normalize=False, extract_charges=True)


def test_encode_species_mixed_sizes(rng):
    cells = _cells(rng)
    values, key = ml.encode_species(cells)
    assert key.tolist() == ["a", "b"]
    assert values.shape == (3, 9) and values.dtype == torch.int64
    for s, c in enumerate(cells):
        expected = [key.tolist().index(x) for x in c.values] + [-1] * (9 - c.size)
        assert values[s].tolist() == expected
    atoms = ml.collect_atoms(cells)
    assert atoms.shape == (3, 9) and atoms.mask[1].sum() == 4 and atoms[0, 1] == "b"


def test_compact_and_padded_evaluation_agree(rng, monkeypatch):
    """Real-atoms-only network evaluation (used when padding dominates) = the padded evaluation, energies,
    gradients and parameter gradients; and the gathered features are re-gathered when the dataset changes."""
    from miniff.ml import cauldron as _ml_cauldron

    cells = _cells(rng) + [Cell(np.eye(3) * 7.0, [[0.1, 0.2, 0.3]], ["a"], meta={
        "total-energy": 0.3, "forces": np.zeros((1, 3)), "pbc": np.array([True] * 3)})]
    ds = ml.learn_cauldron(cells, _descriptors(), grad=True, normalize=False)
    nets = _nets()
    results = {}
    gathered = spy(monkeypatch, _ml_cauldron, "_gather_real_points")
    for fill in (0.0, 1.0):  # 0: always padded; 1: always compact
        monkeypatch.setattr(_ml_cauldron, "COMPACT_MAX_FILL", fill)
        gathered.clear()
        energy, gradients = ml.forward_cauldron(nets, ds, grad=True)
        (energy.sum() + (gradients ** 2).sum()).backward()
        results[fill] = (energy.detach(), gradients.detach(), [q.grad.clone() for n in nets for q in n.parameters()])
        for n in nets:
            n.zero_grad()
        # a new threshold is a new decision: every species is gathered once (None: the padded evaluation) ...
        assert len(gathered) == len(ds.per_point_datasets)
        compact = _ml_cauldron._compact_points(ds.per_point_datasets[0])
        assert (compact is None) == (fill == 0.0)
        # ... and kept: asking again returns the very object forward_cauldron used, without gathering again
        assert compact is gathered[0].result and len(gathered) == len(ds.per_point_datasets)
    (e0, g0, p0), (e1, g1, p1) = results[0.0], results[1.0]
    torch.testing.assert_close(e1, e0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g1, g0, rtol=1e-12, atol=1e-12)
    for a, b in zip(p1, p0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # a changed feature tensor (in place) is gathered again
    with torch.no_grad():
        ds.per_point_datasets[0].features.mul_(2.0)
    e2 = ml.forward_cauldron(nets, ds)
    monkeypatch.setattr(_ml_cauldron, "COMPACT_MAX_FILL", 0.0)
    torch.testing.assert_close(e2, ml.forward_cauldron(nets, ds), rtol=1e-12, atol=1e-12)
