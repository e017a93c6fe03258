"""The two tutorials of the seed documentation ("Toy function fitting", "Computing descriptors").

Every miniff call below is written exactly as the seed writes it (same positional and keyword arguments), and
the seed's own checks are asserted, next to independent numpy references. The surrounding code is ours.
"""

import numpy as np
import pytest
from numpy import testing

# ---------------------------------------------------------------------------------------------------------------
# "Toy function fitting"


def target(r):
    """The toy function f(r) = (r^2 - r + 1) exp(-r)."""
    return (r**2 - r + 1) * np.exp(-r)


def basis(r, i):
    """Descriptor g_i(r) = r^i exp(-r)."""
    return r**i * np.exp(-r)


@pytest.fixture
def toy_data():
    r = np.linspace(0.1, 10, 100)
    f_r = target(r)
    g_r = np.array(tuple(basis(r, i) for i in range(3)))
    return r, f_r, g_r


def test_toy_least_squares_reference(toy_data):
    # the numpy half of the tutorial: the exact map is f = g_2 - g_1 + g_0
    r, f_r, g_r = toy_data
    gf_map, *_ = np.linalg.lstsq(g_r.T, f_r, rcond=None)
    testing.assert_allclose(gf_map, (1, -1, 1))


def test_toy_dataset_construction(toy_data):
    import torch

    from miniff import ml

    r, f_r, g_r = toy_data
    rhs = ml.PerCellDataset(
        energy=torch.tensor(f_r, dtype=torch.float32)[:, None],
    )
    lhs = ml.PerPointDataset(
        features=torch.tensor(g_r.T, dtype=torch.float32)[:, None, :],
        mask=torch.ones(len(r), 1),
    )
    dataset = ml.Dataset(rhs, lhs)
    assert len(dataset) == 100
    # "energy" must be a column: anything else is a ValueError
    with pytest.raises(ValueError):
        ml.PerCellDataset(energy=torch.tensor(f_r, dtype=torch.float32))


def test_toy_function_fitting(toy_data):
    import torch

    from miniff import ml, ml_util

    torch.manual_seed(0)
    r, f_r, g_r = toy_data
    rhs = ml.PerCellDataset(
        energy=torch.tensor(f_r, dtype=torch.float32)[:, None],
    )
    lhs = ml.PerPointDataset(
        features=torch.tensor(g_r.T, dtype=torch.float32)[:, None, :],
        mask=torch.ones(len(r), 1),
    )
    dataset = ml.Dataset(rhs, lhs)

    nn = ml.SequentialSoleEnergyNN(3, n_layers=1, bias=False)

    tolerance = dict(
        tolerance_change=1e-14,
        tolerance_grad=1e-14,
    )
    closure = ml_util.simple_energy_closure([nn], dataset,
        optimizer_kwargs=tolerance)

    # the initial random guess is not optimal: its loss is the mean squared error of the random linear map
    initial = closure.loss().loss_value.item()
    w0 = nn[0].weight.detach().double().numpy().squeeze()
    np.testing.assert_allclose(initial, np.mean((g_r.T @ w0 - f_r) ** 2), rtol=1e-4)
    assert initial > 1e-4

    closure.optimizer_init()
    closure.optimizer_step()  # LBFGS by default
    loss = closure.last_loss.loss_value.item()
    assert loss < 1e-8

    weights = nn[0].weight.detach().squeeze().numpy()
    testing.assert_allclose(weights.squeeze(), [1, -1, 1], atol=1e-3)

    # "Checking the result": the network applied to descriptors reproduces the function
    descriptors = np.array(tuple(basis(r, i) for i in range(3)))
    result = nn(torch.tensor(descriptors.T, dtype=torch.float32)).detach().numpy().squeeze()
    testing.assert_allclose(result, f_r, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# "Computing descriptors"


def kernel_fn(r, a):
    """The tutorial's cosine kernel: (1 + cos(pi r / a)) / 2 for r < a."""
    return (1 + np.cos(np.pi * r / a)) / 2 * (r < a)


def test_computing_descriptors(rng, pyplot):
    from miniff.kernel import Cell, NeighborWrapper
    from miniff.potentials import sigmoid_descriptor_family
    from miniff.presentation import plot_potential_2

    n = 100
    a = 0.3
    r = rng.random((n, 3))

    # naive: all pair distances, then the kernel summed over neighbours (minus the self term)
    mdist = np.linalg.norm(r[:, None, :] - r[None, :, :], axis=-1)
    result = kernel_fn(mdist, a).sum(axis=0) - 1
    n_pairs_naive = int(((mdist < a) & ~np.eye(n, dtype=bool)).sum())

    cell = Cell(np.eye(3), r, ['a'] * len(r))
    nw = NeighborWrapper(cell, (1, 1, 1))  # the box alone, no periodic replica
    nw.compute_distances(a)
    assert len(nw.sparse_pair_distances.data) == n_pairs_naive

    descriptor = sigmoid_descriptor_family(r0=10 * a, dr=a / 10, a=a)

    ax = plot_potential_2(descriptor, energy_unit="1", length_unit="1")
    assert ax.get_xlabel() == "r (1)"
    assert ax.get_ylabel() == "Energy (1)"
    x, y = ax.lines[0].get_data()
    sigmoid = 1 / (1 + np.exp((x - 10 * a) / (a / 10)))
    np.testing.assert_allclose(y, sigmoid * kernel_fn(x, a), atol=1e-12)

    result_miniff = nw.eval(descriptor.copy(tag="a-a"), "kernel")
    assert result_miniff.shape == (n,)
    # the sigmoid factor is 1 - O(exp(-90)) inside the cutoff: the same numbers as the naive count
    np.testing.assert_allclose(result_miniff, result, rtol=1e-12, atol=1e-12)
    _, bins = np.histogram(result)
    np.testing.assert_array_equal(np.histogram(result_miniff, bins)[0], np.histogram(result, bins)[0])


def test_computing_descriptors_gradient(rng):
    # the seed mentions "kernel_gradient": dense [N, N, 3], entry [i, j] = d value_i / d r_j
    from miniff.kernel import Cell, NeighborWrapper
    from miniff.potentials import sigmoid_descriptor_family

    a = 0.3
    r = rng.random((30, 3))
    descriptor = sigmoid_descriptor_family(r0=10 * a, dr=a / 10, a=a)

    def values(coords):
        nw = NeighborWrapper(Cell(np.eye(3), coords, ['a'] * len(coords)), (1, 1, 1))
        nw.compute_distances(a)
        return nw, nw.eval(descriptor.copy(tag="a-a"), "kernel")

    nw, _ = values(r)
    grad = nw.eval(descriptor.copy(tag="a-a"), "kernel_gradient")
    assert grad.shape == (30, 30, 3)
    h = 1e-6
    for j, c in [(0, 0), (7, 2)]:
        plus, minus = r.copy(), r.copy()
        plus[j, c] += h
        minus[j, c] -= h
        fd = (values(plus)[1] - values(minus)[1]) / (2 * h)
        np.testing.assert_allclose(grad[:, j, c], fd, atol=1e-6)
