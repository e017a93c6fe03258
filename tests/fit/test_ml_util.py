"""ml_util closures, losses, metrics and descriptor recipes against independent references."""

import numpy as np
import pytest
import torch
from support import seed_dataset

from miniff import ml, ml_util


def test_seed_tutorial_closure():
    torch.manual_seed(0)
    dataset, g_r, f_r = seed_dataset()
    nn = ml.SequentialSoleEnergyNN(3, n_layers=1, bias=False)
    closure = ml_util.simple_energy_closure([nn], dataset, optimizer_kwargs=dict(tolerance_change=1e-14,
                                                                                 tolerance_grad=1e-14))
    assert closure.last_loss is None
    w0 = nn[0].weight.detach().double().numpy().ravel()
    initial = closure.loss().loss_value.item()
    assert initial == pytest.approx(np.mean((w0 @ g_r - f_r) ** 2), rel=1e-5)  # plain MSE, numpy
    assert isinstance(closure.optimizer, torch.optim.LBFGS)
    assert closure.optimizer.defaults["line_search_fn"] == "strong_wolfe"
    closure.optimizer_init()
    closure.optimizer_step()
    assert closure.last_loss.loss_value.item() < 1e-8
    np.testing.assert_allclose(nn[0].weight.detach().squeeze().numpy(), [1, -1, 1], atol=1e-3)


def test_energy_weight_applies_without_forces():
    dataset, g_r, f_r = seed_dataset(torch.float64)
    nn = ml_util.behler_nn(3, n_layers=1, bias=False).to(torch.float64)
    base = ml_util.simple_energy_closure([nn], dataset).loss().loss_value.item()
    double = ml_util.simple_energy_closure([nn], dataset, w_energy=2.5).loss()
    assert double.loss_id == "energy"
    assert double.loss_value.item() == pytest.approx(2.5 * base, rel=1e-12)


def test_structure_weights_and_per_atom():
    dataset, g_r, f_r = seed_dataset(torch.float64)
    nn = ml_util.behler_nn(3, n_layers=1, bias=False).to(torch.float64)
    w = np.linspace(0.5, 2, 100)
    pred = nn[0].weight.detach().numpy().ravel() @ g_r
    loss = ml_util.simple_energy_closure([nn], dataset, weights=w, w_energy=3.0).loss().loss_value.item()
    assert loss == pytest.approx(3.0 * np.sum(w * (pred - f_r) ** 2) / np.sum(w), rel=1e-10)
    with pytest.raises(ValueError, match="weights"):
        ml_util.simple_energy_closure([nn], dataset, weights=w[:5]).loss()
    with pytest.raises(ValueError, match="weights"):
        ml_util.simple_energy_closure([nn], dataset, weights=w, criterion=torch.nn.L1Loss()).loss()


def test_optimizer_choice_and_errors():
    dataset, _, _ = seed_dataset(torch.float64)
    nn = ml_util.behler_nn(3, n_layers=1, bias=False).to(torch.float64)
    closure = ml_util.simple_energy_closure([nn], dataset, optimizer="adam", optimizer_kwargs={"lr": 0.05})
    assert isinstance(closure.optimizer, torch.optim.Adam) and closure.learning_rate == 0.05
    first = closure.loss().loss_value.item()
    for _ in range(50):
        closure.optimizer_step()
    assert closure.loss().loss_value.item() < first
    assert isinstance(closure.optimizer_init("SGD", lr=0.1), torch.optim.SGD)
    with pytest.raises(ValueError, match="optimizer"):
        ml_util.simple_energy_closure([nn], dataset, optimizer="adamm")
    with pytest.raises(TypeError, match="networks"):
        ml_util.simple_energy_closure(["nope"], dataset)
    with pytest.raises(ValueError, match="dataset"):
        ml_util.simple_energy_closure([nn]).loss()
    with pytest.raises(KeyError, match="convergence"):
        ml_util.simple_energy_closure([nn], dataset, convergence={"energy_rsme": 1e-3})
    with pytest.raises(ValueError, match="w_gradients"):
        ml_util.simple_energy_closure([nn], dataset, w_gradients=1.0).loss()


def test_convergence_criteria():
    dataset, g_r, f_r = seed_dataset(torch.float64)
    nn = ml_util.behler_nn(3, n_layers=1, bias=False).to(torch.float64)
    closure = ml_util.simple_energy_closure([nn], dataset, convergence={"energy_rmse": 1e-6, "energy_maxresid": 1e-5})
    m = closure.metrics()
    residual = nn[0].weight.detach().numpy().ravel() @ g_r - f_r  # one atom per structure
    assert m["energy_rmse"] == pytest.approx(np.sqrt(np.mean(residual**2)), rel=1e-10)
    assert m["energy_max"] == pytest.approx(np.abs(residual).max(), rel=1e-10)
    assert not closure.converged(m)
    with torch.no_grad():
        nn[0].weight.copy_(torch.tensor([[1.0, -1.0, 1.0]]))
    assert closure.converged()
    assert not ml_util.simple_energy_closure([nn], dataset).converged()  # no criterion set: never converged


def _second_derivative_fd(r, a, eta, h=1e-4):
    g = lambda x: np.exp(-eta * x**2) * 0.5 * (1 + np.cos(np.pi * x / a))  # noqa: E731
    return (g(r + h) - 2 * g(r) + g(r - h)) / h**2


def test_turning_points():
    a = 6.0
    for t in (1.0, 2.0, 2.9):
        eta = ml_util.eta_for_turning_point(a, t)
        assert abs(_second_derivative_fd(t, a, eta)) < 1e-5
        assert _second_derivative_fd(t - 0.05, a, eta) * _second_derivative_fd(t + 0.05, a, eta) < 0
    assert ml_util.eta_for_turning_point(a, a / 2) == 0
    from miniff import potentials

    eta = ml_util.eta_for_turning_point(a, 1.7)
    assert potentials.behler_turning_point(a, eta, 0) == pytest.approx(1.7, rel=1e-6)
    with pytest.raises(ValueError, match="turning point"):
        ml_util.eta_for_turning_point(a, 3.5)


def test_default_behler_descriptors():
    d = ml_util.default_behler_descriptors({"Cu-Pt": 2.4, "Cu-Cu": 2.3, "Pt-Pt": 2.6}, n=4, a=6.0)
    assert sorted(d) == ["Cu", "Pt"]
    assert [x.tag for x in d["Cu"]] == ["Cu-Cu"] * 4 + ["Cu-Pt"] * 4
    assert [x.tag for x in d["Pt"]] == ["Pt-Cu"] * 4 + ["Pt-Pt"] * 4
    etas = [x.parameters["eta"] for x in d["Cu"][:4]]
    assert etas == [x.parameters["eta"] for x in d["Pt"][4:]]  # common eta grid
    assert etas[-1] == 0  # the last turning point is a/2
    separate = ml_util.default_behler_descriptors({"Cu-Cu": 2.0}, n=3, a=5.0, common_eta=False)
    from miniff import potentials

    points = [potentials.behler_turning_point(5.0, x.parameters["eta"], 0) for x in separate["Cu"]]
    np.testing.assert_allclose(points, [2.0, 2.25, 2.5], rtol=1e-6)
    with pytest.raises(ValueError, match="exceeds"):
        ml_util.default_behler_descriptors({"Cu-Cu": 3.0}, n=3, a=5.0)
    with pytest.raises(ValueError, match="n must"):
        ml_util.default_behler_descriptors({"Cu-Cu": 2.0}, n=0, a=5.0)
    # explicit widths (Amp's defaults: eta / a^2), the same for every pair, any shortest distance
    amp = np.array([0.05, 0.2321, 1.0772, 5.0]) / 6.5**2
    explicit = ml_util.default_behler_descriptors({"Cu-Pt": 4.0, "Cu-Cu": 2.3}, n=None, a=6.5, eta=amp)
    for species, tags in (("Cu", ["Cu-Cu"] * 4 + ["Cu-Pt"] * 4), ("Pt", ["Pt-Cu"] * 4)):
        assert [x.tag for x in explicit[species]] == tags
        np.testing.assert_array_equal([x.parameters["eta"] for x in explicit[species]],
                                      np.tile(amp, len(tags) // 4))
        assert all(x.parameters["r_sphere"] == 0 for x in explicit[species])
    with pytest.raises(ValueError, match="must equal"):
        ml_util.default_behler_descriptors({"Cu-Cu": 2.0}, n=3, a=6.5, eta=amp)
    with pytest.raises(ValueError, match="eta must"):
        ml_util.default_behler_descriptors({"Cu-Cu": 2.0}, n=None, a=6.5, eta=[0.1, -1.0])


def test_default_behler_descriptors_from_cells(fcc_ar):
    from miniff.kernel import Cell

    vectors, frac, species, _ = fcc_ar
    d = ml_util.default_behler_descriptors([Cell(vectors, frac, species)], n=2, a=8.0, common_eta=False)
    from miniff import potentials

    nn_distance = 5.26 / np.sqrt(2)
    assert potentials.behler_turning_point(8.0, d["Ar"][0].parameters["eta"], 0) == pytest.approx(nn_distance,
                                                                                                  rel=1e-6)


def test_default_behler_descriptors_3():
    d = ml_util.default_behler_descriptors_3(["b", "a"], a=5.0, eta=[0.0, 0.1], zeta=(1, 2))
    # per centre: 3 neighbour pairs x 2 eta x 2 zeta x 2 lambda
    assert len(d["a"]) == len(d["b"]) == 24
    assert {x.tag for x in d["a"]} == {"a-a-a", "a-a-b", "a-b-b"}
    d5x = ml_util.default_behler_descriptors_3(["a"], a=5.0, eta=[0.0, 0.1, 0.2], family="5x")
    assert len(d5x["a"]) == 6  # pairs (i, j >= i) of 3 widths
    with pytest.raises(ValueError, match="arg"):
        ml_util.default_behler_descriptors_3([], a=5.0)
    with pytest.raises(ValueError, match="family"):
        ml_util.default_behler_descriptors_3(["a"], a=5.0, family=7)


def test_behler_nn_shape():
    nn = ml_util.behler_nn(4, n_internal=7, n_layers=3)
    assert [type(m).__name__ for m in nn] == ["Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]
    assert nn(torch.zeros(2, 5, 4)).shape == (2, 5, 1)
    with pytest.raises(ValueError, match="bias"):
        ml_util.behler_nn(4, n_layers=2, bias=[True])


def test_example_data():
    from miniff.io import read_cells

    cells = read_cells(ml_util.example_data_path())
    assert len(cells) == 100 and max(c.size for c in cells) <= 16
    assert {c.meta["group"] for c in cells} == {"slab", "bulk", "surface"}
    assert all(np.asarray(c.meta["forces"]).shape == (c.size, 3) for c in cells)
    with pytest.raises(FileNotFoundError, match="name"):
        ml_util.example_data_path("nope.xyz")


def test_legacy_pickle_is_opt_in(tmp_path):
    from miniff import potentials
    from miniff.kernel import Cell, NeighborWrapper

    descriptors = [potentials.behler2_descriptor_family(a=5.0, eta=e, r_sphere=0.0, tag="x-x") for e in (0.1, 0.5)]
    torch.manual_seed(1)
    net = ml_util.behler_nn(2, n_internal=3, n_layers=2).to(torch.float64)
    legacy = [{"tag": "ml potential", "ptag": "x",
               "parameters": {"nn": net.state_dict(), "descriptor_fidelity_histograms": None},
               "descriptors": [d.state_dict() for d in descriptors]}]
    torch.save(legacy, tmp_path / "old.pt")
    (pot,) = ml_util.load_potentials_014(tmp_path / "old.pt")
    cell = Cell(np.eye(3) * 10, np.array([[0.1, 0.1, 0.1], [0.4, 0.1, 0.1], [0.1, 0.35, 0.1]]), ["x"] * 3)
    nw = NeighborWrapper(cell, cutoff=5.0)
    d_n = np.zeros((3, 2))  # descriptors by brute force: sum_j exp(-eta r^2) f_c(r)
    cart = cell.cartesian()
    for i in range(3):
        for j in range(3):
            r = np.linalg.norm(cart[i] - cart[j])
            if i != j and r < 5.0:
                d_n[i] += np.exp(-np.array([0.1, 0.5]) * r**2) * 0.5 * (1 + np.cos(np.pi * r / 5.0))
    expected = net(torch.tensor(d_n)).detach().numpy().sum()
    assert nw.total([pot]) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="potentials"):  # the plain-data loader refuses 0.1.4 files
        ml_util.load_potentials(tmp_path / "old.pt")


def test_parse_runner_input(tmp_path):
    a0 = 0.529177210903  # Bohr in Å
    text = """# RuNNer symmetry functions
symfunction_short Si 2 Si 0.01 0.0 12.0
symfunction_short Si 3 Si O 0.002 -1.0 4.0 12.0   # angular

symfunction_short O 2 Si 0.5 1.5 10.0
"""
    (tmp_path / "input.nn").write_text(text)
    ds = ml_util.parse_runner_input(tmp_path / "input.nn")
    assert [d.tag for d in ds] == ["Si-Si", "Si-Si-O", "O-Si"]
    assert ds[0].parameters["eta"] == pytest.approx(0.01 / a0**2)
    assert ds[0].cutoff == pytest.approx(12 * a0)
    assert ds[1].parameters["l"] == -1 and ds[1].parameters["zeta"] == 4
    assert ds[2].parameters["r_sphere"] == pytest.approx(1.5 * a0)
    assert sorted(ml_util.group_by_species(ds)) == ["O", "Si"]
    (tmp_path / "bad.nn").write_text(text + "nn_type_short 1\n")
    with pytest.raises(ValueError, match="line 6"):
        ml_util.parse_runner_input(tmp_path / "bad.nn")
    assert len(ml_util.parse_runner_input(tmp_path / "bad.nn", strict=False)) == 3


def test_default_lsp_descriptors():
    d = ml_util.default_lsp_descriptors(["Si"])
    assert list(d) == ["Si"] and len(d["Si"]) == 30  # PyFit-FF's example: 6 Gaussians x orders 0-4
    par = [(x.parameters["order"], x.parameters["r0"]) for x in d["Si"]]
    assert par[:7] == [(0, 2.0), (0, 2.25), (0, 2.5), (0, 3.0), (0, 3.5), (0, 4.0), (1, 2.0)]
    assert {x.cutoff for x in d["Si"]} == {4.5} and {x.tag for x in d["Si"]} == {"Si-Si-Si"}
    two = ml_util.default_lsp_descriptors(["b", "a"], a=5.0, r0=[2.0], orders=[0, 2], asinh=False)
    assert len(two["a"]) == len(two["b"]) == 6  # 3 neighbour pairs x 2 orders x 1 centre
    assert [x.tag for x in two["b"][::2]] == ["b-a-a", "b-a-b", "b-b-b"]
    assert {x.parameters["asinh"] for x in two["a"]} == {0}
    with pytest.raises(ValueError, match="r0"):
        ml_util.default_lsp_descriptors(["a"], r0=[])
    with pytest.raises(ValueError, match="arg"):
        ml_util.default_lsp_descriptors([])


def test_l2_penalty_on_weight_matrices():
    dataset, g_r, f_r = seed_dataset(torch.float64)
    torch.manual_seed(1)
    nn = ml_util.behler_nn(3, n_internal=4, n_layers=2).to(torch.float64)
    base = ml_util.simple_energy_closure([nn], dataset).loss()
    penalised = ml_util.simple_energy_closure([nn], dataset, w_l2=0.3).loss()
    squares = float((nn[0].weight ** 2).sum().detach() + (nn[2].weight ** 2).sum().detach())  # matrices, no biases
    assert penalised.loss_id == "total" and set(penalised.components) == {"energy", "l2"}
    assert penalised.components["l2"].loss_value.item() == pytest.approx(0.3 * squares, rel=1e-12)
    assert penalised.loss_value.item() == pytest.approx(base.loss_value.item() + 0.3 * squares, rel=1e-12)
    with pytest.raises(ValueError, match="w_l2"):
        ml_util.simple_energy_closure([nn], dataset, w_l2=-1.0).loss()


def test_shifted_grid():
    # centres evenly spaced from r_min with spacing h = (a - r_min) / n; widths 1 / (2 h^2)
    grid = ml_util.shifted_grid(2.0, 6.0, 4)
    np.testing.assert_allclose(grid[4:], [2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(grid[:4], 0.5)
    for bad in ((0.0, 6.0, 4), (6.5, 6.0, 4), (2.0, 6.0, 0), (2.0, 6.0, True)):
        with pytest.raises(ValueError):
            ml_util.shifted_grid(*bad)


def test_default_behler_descriptors_shifted():
    d = ml_util.default_behler_descriptors({"Cu-Pt": 2.4, "Cu-Cu": 2.0}, n=4, a=6.0, left=1, shifted=True,
                                           common_eta=False)
    assert [x.tag for x in d["Cu"]] == ["Cu-Cu"] * 4 + ["Cu-Pt"] * 4
    centres = [x.parameters["r_sphere"] for x in d["Cu"]]
    np.testing.assert_allclose(centres, [2.0, 3.0, 4.0, 5.0, 2.4, 3.3, 4.2, 5.1])
    np.testing.assert_allclose([x.parameters["eta"] for x in d["Cu"][:4]], 0.5)
    common = ml_util.default_behler_descriptors({"Cu-Pt": 2.4, "Cu-Cu": 2.0}, n=4, a=6.0, shifted=True)
    np.testing.assert_allclose([x.parameters["r_sphere"] for x in common["Pt"][:4]],
                               [2.2, 3.15, 4.1, 5.05])   # the mean of the two grids
    with pytest.raises(ValueError, match="cannot be combined"):
        ml_util.default_behler_descriptors({"Cu-Cu": 2.0}, n=None, a=6.0, eta=[0.1], shifted=True)
    with pytest.raises(ValueError, match="left"):
        ml_util.default_behler_descriptors({"Cu-Cu": 2.0}, n=4, a=6.0, left=3.5, shifted=True)
