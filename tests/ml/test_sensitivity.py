"""Descriptor sensitivity of NN potentials: known answers (ignored descriptors, linear networks, finite
differences of the network) with descriptors computed by brute force."""

import numpy as np
import pytest
import torch
from support import brute_force_pairs

from miniff.kernel import Cell
from miniff.ml import NNPotential, descriptor_label, descriptor_sensitivity
from miniff.potentials import behler2_descriptor_family

CUTOFF = 4.5
ETAS = (0.3, 1.0, 3.0)  # 1/Å²


def _descriptors(tag="Cu-Cu"):
    return [behler2_descriptor_family(a=CUTOFF, eta=eta, r_sphere=0.0, tag=tag) for eta in ETAS]


def _cells(rng, n=4):
    """Rattled fcc Cu cells of 4 atoms (a = 3.6 Å) of different sizes: the descriptors vary."""
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cells = []
    for k in range(n):
        a = 3.5 + 0.1 * k
        cells.append(Cell(np.eye(3) * a, frac + rng.normal(scale=0.03, size=frac.shape), ["Cu"] * 4))
    return cells


def _brute_force_g2(cell):
    """[N, 3] Behler G2 values sum_j exp(-eta r^2) f_c(r) by brute force over periodic images."""
    cart = np.asarray(cell.coordinates) @ np.asarray(cell.vectors)
    i, _, _, d = brute_force_pairs(cell.vectors, cart, CUTOFF)
    fc = 0.5 * (1 + np.cos(np.pi * d / CUTOFF))
    out = np.zeros((cell.size, len(ETAS)))
    for f, eta in enumerate(ETAS):
        np.add.at(out[:, f], i, np.exp(-eta * d**2) * fc)
    return out


def _network(weights_first, seed=0):
    torch.manual_seed(seed)
    nn = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).to(torch.float64)
    with torch.no_grad():
        nn[0].weight.copy_(torch.as_tensor(weights_first))
    return nn


def test_a_descriptor_the_network_ignores_has_zero_sensitivity(rng):
    w = rng.normal(size=(4, 3))
    w[:, 1] = 0.0  # the network never reads descriptor 1
    pot = NNPotential(_network(w), _descriptors(), tag="Cu", simplify=False)
    (result,) = descriptor_sensitivity(pot, _cells(rng)).values()
    assert result.species == "Cu" and result.n_atoms == 16
    assert result.sensitivity[1] == 0.0
    assert np.all(result.sensitivity[[0, 2]] > 0)
    assert result.spread[1] > 0  # zero because of the network, not because the descriptor is constant
    assert list(result.ranking())[-1] == 1
    assert result.labels == ["Cu-Cu η=0.3 r_s=0", "Cu-Cu η=1 r_s=0", "Cu-Cu η=3 r_s=0"]


def test_linear_network_sensitivity_is_weight_times_spread(rng):
    cells = _cells(rng)
    w = np.array([0.7, -2.0, 0.05])
    lin = torch.nn.Sequential(torch.nn.Linear(3, 1)).to(torch.float64)
    with torch.no_grad():
        lin[0].weight.copy_(torch.as_tensor(w[None, :]))
    pot = NNPotential(lin, _descriptors(), tag="Cu", simplify=False)
    result = descriptor_sensitivity([pot], cells)["Cu"]
    g = np.concatenate([_brute_force_g2(c) for c in cells])
    np.testing.assert_allclose(result.spread, g.std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(result.mean_abs_gradient, np.abs(w), rtol=1e-12)
    np.testing.assert_allclose(result.sensitivity, np.abs(w) * g.std(axis=0), rtol=1e-10)


def test_nonlinear_gradient_matches_central_differences_of_the_network(rng):
    cells = _cells(rng)
    nn = _network(rng.normal(size=(4, 3)))
    pot = NNPotential(nn, _descriptors(), tag="Cu", simplify=False)
    result = descriptor_sensitivity(pot, cells)["Cu"]
    g = np.concatenate([_brute_force_g2(c) for c in cells])
    h = 1e-6
    reference = np.empty(3)
    with torch.no_grad():
        for f in range(3):
            step = np.zeros(3)
            step[f] = h
            up = nn(torch.as_tensor(g + step))[:, 0].numpy()
            down = nn(torch.as_tensor(g - step))[:, 0].numpy()
            reference[f] = np.mean(np.abs((up - down) / (2 * h)))
    np.testing.assert_allclose(result.mean_abs_gradient, reference, rtol=1e-6)
    np.testing.assert_allclose(result.sensitivity, reference * g.std(axis=0), rtol=1e-6)


def _descriptor_sum_gradient(cell, h=1e-5):
    """[N, 3, F] d(sum_i G_if)/dr_jc by central differences of the brute-force descriptors."""
    vectors = np.asarray(cell.vectors)
    cart = np.asarray(cell.coordinates) @ vectors
    out = np.zeros((cell.size, 3, len(ETAS)))
    for j in range(cell.size):
        for c in range(3):
            sums = []
            for sign in (1, -1):
                moved = cart.copy()
                moved[j, c] += sign * h
                sums.append(_brute_force_g2(Cell(vectors, moved @ np.linalg.inv(vectors), cell.values)).sum(0))
            out[j, c] = (sums[0] - sums[1]) / (2 * h)
    return out


def test_force_sensitivity_of_a_linear_network_by_finite_differences(rng):
    cells = _cells(rng, n=2)
    w = np.array([0.7, 0.0, -1.3])  # descriptor 1 ignored: no force flows through it
    lin = torch.nn.Sequential(torch.nn.Linear(3, 1)).to(torch.float64)
    with torch.no_grad():
        lin[0].weight.copy_(torch.as_tensor(w[None, :]))
    pot = NNPotential(lin, _descriptors(), tag="Cu", simplify=False)
    result = descriptor_sensitivity(pot, cells, forces=True)["Cu"]
    grads = np.concatenate([_descriptor_sum_gradient(c) for c in cells])  # [all atoms, 3, F]
    reference = np.abs(w) * np.sqrt(np.mean(grads**2, axis=(0, 1)))
    np.testing.assert_allclose(result.force_sensitivity, reference, rtol=1e-6, atol=1e-12)
    assert result.force_sensitivity[1] == 0.0 and result.force_sensitivity[0] > 0
    assert list(result.ranking(forces=True))[-1] == 1
    with pytest.raises(ValueError, match="forces=True"):
        descriptor_sensitivity(pot, cells)["Cu"].ranking(forces=True)


def test_force_contributions_add_up_to_the_potential_gradient(rng):
    from miniff.kernel import NeighborWrapper
    from miniff.ml.sensitivity import _force_contributions, _network_gradients
    from miniff.potentials import eval_descriptors

    cell = _cells(rng, n=1)[0]
    pot = NNPotential(_network(rng.normal(size=(4, 3))), _descriptors(), tag="Cu", simplify=False)
    nw = NeighborWrapper(cell, cutoff=CUTOFF)
    values, jac = eval_descriptors(nw, list(pot.descriptors), grad=True)
    sel = np.ones(cell.size, dtype=bool)
    parts = _force_contributions(nw, _network_gradients(pot.nn, values), jac, sel)  # [N, F, 3]
    np.testing.assert_allclose(parts.sum(axis=1), nw.grad(pot), atol=1e-12)


def test_species_without_atoms_and_bad_input(rng):
    pot = NNPotential(_network(rng.normal(size=(4, 3))), _descriptors("Pt-Pt"), tag="Pt", simplify=False)
    with pytest.raises(ValueError, match="no atom"):
        descriptor_sensitivity(pot, _cells(rng))
    with pytest.raises(TypeError, match="NNPotential"):
        descriptor_sensitivity(_descriptors(), _cells(rng))
    with pytest.raises(TypeError, match="cells"):
        descriptor_sensitivity(pot, [object()])
    # ase.Atoms are accepted
    from ase.build import bulk

    cu = NNPotential(_network(rng.normal(size=(4, 3))), _descriptors(), tag="Cu", simplify=False)
    result = descriptor_sensitivity(cu, [bulk("Cu", "fcc", a=3.6, cubic=True)])
    assert result["Cu"].n_atoms == 4
    np.testing.assert_allclose(result["Cu"].sensitivity, 0.0, atol=1e-12)  # all atoms alike: no spread


def test_descriptor_label_names_tag_and_parameters():
    d = behler2_descriptor_family(a=5.0, eta=4.0, r_sphere=2.2, tag="Cu-Pt")
    assert descriptor_label(d) == "Cu-Pt η=4 r_s=2.2"


def test_plot_descriptor_sensitivity_draws_the_ranked_values(rng):
    from matplotlib import pyplot

    from miniff.ml import DescriptorSensitivity
    from miniff.presentation import plot_descriptor_sensitivity

    a = DescriptorSensitivity("Cu", ["g0", "g1", "g2"], np.array([0.2, 0.0, 0.5]), np.ones(3), np.ones(3), 10)
    b = DescriptorSensitivity("Pt", ["h0", "h1"], np.array([0.1, 0.3]), np.ones(2), np.ones(2), 5)
    try:
        cu, pt = plot_descriptor_sensitivity({"Pt": b, "Cu": a})
        widths = [p.get_width() for p in cu.patches]
        ys = [p.get_y() + p.get_height() / 2 for p in cu.patches]
        # largest on top: bars in ranking order, from the top of the panel down
        np.testing.assert_allclose(widths, [0.5, 0.2, 0.0])
        np.testing.assert_allclose(ys, [2, 1, 0])
        labels = {round(t.get_position()[1]): t.get_text() for t in cu.get_yticklabels()}
        assert labels == {2: "g2", 1: "g0", 0: "g1"}
        assert cu.get_title() == "Cu (10 atoms)" and pt.get_title() == "Pt (5 atoms)"
        assert cu.get_xlabel() == "Sensitivity (eV)"
        a.force_sensitivity = np.array([0.0, 2.0, 1.0])
        forces = plot_descriptor_sensitivity(a, forces=True)
        np.testing.assert_allclose([p.get_width() for p in forces.patches], [2.0, 1.0, 0.0])
        assert forces.get_xlabel() == "Force sensitivity (eV/Å)"
        one = plot_descriptor_sensitivity(a, top=2)
        np.testing.assert_allclose([p.get_width() for p in one.patches], [0.5, 0.2])
        with pytest.raises(ValueError, match="top"):
            plot_descriptor_sensitivity(a, top=0)
    finally:
        pyplot.close("all")
