"""CompactLBFGS against independent references: the two-loop recursion, exact minimisers, the Wolfe conditions."""

import numpy as np
import pytest
import torch
from support import minimise_quadratic, random_quadratic, seed_dataset

from miniff import ml_util
from miniff.fit.lbfgs import _strong_wolfe


def two_loop(pairs, g):
    """Textbook L-BFGS two-loop recursion: ``H g`` for pairs ``[(s, y), ...]`` (oldest first)."""
    q = g.copy()
    alphas = []
    for s, y in reversed(pairs):
        a = (s @ q) / (s @ y)
        q -= a * y
        alphas.append(a)
    s, y = pairs[-1]
    r = (s @ y) / (y @ y) * q
    for (s, y), a in zip(pairs, reversed(alphas), strict=True):
        r += s * (a - (y @ r) / (s @ y))
    return r


@pytest.mark.parametrize("n_pairs", [1, 3, 5, 12])
def test_direction_is_the_two_loop_recursion(n_pairs):
    rng = np.random.default_rng(n_pairs)
    n, m = 17, 5
    opt = ml_util.CompactLBFGS([torch.zeros(n, dtype=torch.float64, requires_grad=True)], history_size=m)
    h = opt._history()
    a = rng.normal(size=(n, n))
    a = a @ a.T + n * np.eye(n)   # positive definite: every pair has s.y > 0
    pairs = []
    for _ in range(n_pairs):      # more pairs than slots: the oldest are dropped (circular storage)
        s = rng.normal(size=n)
        assert opt._push(h, s, a @ s + 0.1 * rng.normal(size=n), m) is not None
        pairs.append((s, h["W"][(h["head"] - 1) % m + m].copy()))
    g = rng.normal(size=n)
    expected = -two_loop(pairs[-m:], g)
    d, yd, _ = opt._direction(h, g, m)
    np.testing.assert_allclose(d, expected, rtol=1e-10, atol=1e-12)
    ys = np.array([y for _, y in pairs[-m:]])
    np.testing.assert_allclose(yd, ys @ expected, rtol=1e-9, atol=1e-12)   # Y d from the Gram matrices


def test_empty_slots_are_never_read():
    """Before the history wraps, products with W use only the filled rows: NaN in the empty ones changes nothing
    (the work per iteration follows the pairs stored, not history_size)."""
    rng = np.random.default_rng(4)
    n, m, k = 9, 40, 3
    opt = ml_util.CompactLBFGS([torch.zeros(n, dtype=torch.float64, requires_grad=True)], history_size=m)
    h = opt._history()
    pairs = []
    for _ in range(k):
        s = rng.normal(size=n)
        y = 2.0 * s + 0.05 * rng.normal(size=n)
        assert opt._push(h, s, y, m) is not None
        pairs.append((s, y))
    h["W"][k:m] = np.nan
    h["W"][m + k:] = np.nan
    g = rng.normal(size=n)
    d, yd, wg = opt._direction(h, g, m)
    np.testing.assert_allclose(d, -two_loop(pairs, g), rtol=1e-10, atol=1e-12)
    assert np.all(np.isfinite(yd)) and np.all(np.isfinite(wg))
    s = rng.normal(size=n)
    assert opt._push(h, s, 2.0 * s, m) is not None
    assert np.all(np.isfinite(h["SY"][:k + 1, :k + 1])) and np.all(np.isfinite(h["YY"][:k + 1, :k + 1]))


def test_pair_with_negative_curvature_is_skipped():
    opt = ml_util.CompactLBFGS([torch.zeros(3, dtype=torch.float64, requires_grad=True)], history_size=4)
    h = opt._history()
    assert opt._push(h, np.array([1.0, 0, 0]), np.array([-1.0, 0, 0]), 4) is None
    assert h["k"] == 0
    g = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(opt._direction(h, g, 4)[0], -g)


def test_history_invariants_after_many_iterations():
    """The Gram matrices updated without products (from ``Y d`` and the carried ``W g``) equal ``S Y^T`` and
    ``Y Y^T`` recomputed from the stored pairs, after the circular storage wrapped around several times."""
    a, b = random_quadratic(25, 5)
    at, bt = torch.tensor(a), torch.tensor(b)
    x = torch.zeros(25, dtype=torch.float64, requires_grad=True)
    opt = ml_util.CompactLBFGS([x], max_iter=23, history_size=4, tolerance_grad=0, tolerance_change=0)

    def closure():
        opt.zero_grad()
        f = 0.5 * x @ at @ x - bt @ x + 0.05 * (x ** 4).sum()
        f.backward()
        return f

    opt.step(closure)
    h = opt._history()
    assert h["k"] == 4 and h["n_iter"] >= 16
    order = (h["head"] - 4 + np.arange(4)) % 4
    s_rows, y_rows = h["W"][order], h["W"][4 + order]
    np.testing.assert_allclose(h["SY"], s_rows @ y_rows.T, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(h["YY"], y_rows @ y_rows.T, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("history_size", [3, 50])
def test_quadratic_minimum(history_size):
    a, b = random_quadratic(30, 0)
    x, _ = minimise_quadratic(lambda p: ml_util.CompactLBFGS(p, max_iter=500, history_size=history_size,
                                                             tolerance_grad=1e-11, tolerance_change=0), a, b)
    # the line search compares losses: x is exact to about sqrt(machine epsilon)
    np.testing.assert_allclose(x.detach().numpy(), np.linalg.solve(a, b), rtol=1e-6, atol=1e-7)


def test_rosenbrock_in_two_parameter_tensors_and_float32():
    xs = [torch.full((3,), -1.2, requires_grad=True), torch.full((2, 2), 0.5, dtype=torch.float64, requires_grad=True)]
    opt = ml_util.CompactLBFGS(xs, max_iter=2000, history_size=7, tolerance_grad=1e-7, tolerance_change=0)

    def closure():
        opt.zero_grad()
        z = torch.cat([xs[0].double(), xs[1].reshape(-1)])
        f = (100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2).sum()
        f.backward()
        return f

    opt.step(closure)
    assert xs[0].dtype == torch.float32
    np.testing.assert_allclose(xs[0].detach().numpy(), 1, atol=1e-3)   # float32 parameters: float32 accuracy
    np.testing.assert_allclose(xs[1].detach().numpy(), 1, atol=1e-3)


@pytest.mark.parametrize("alpha0", [1e-4, 1.0, 50.0])
def test_line_search_meets_the_strong_wolfe_conditions(alpha0):
    # phi(a) = f(x0 + a d) for a 1-D non-convex function
    def f(a):
        return (a - 2.0) ** 2 * (1 + 0.3 * np.sin(3 * a)), 2 * (a - 2.0) * (1 + 0.3 * np.sin(3 * a)) + (
            a - 2.0) ** 2 * 0.9 * np.cos(3 * a)

    def phi(a):
        v, d = f(a)
        return v, np.array([d]), d

    f0, d0 = f(0.0)
    c1, c2 = 1e-4, 0.9
    alpha, fa, ga = _strong_wolfe(phi, f0, d0, alpha0, c1, c2, 30)
    assert fa <= f0 + c1 * alpha * d0
    assert abs(ga[0]) <= c2 * abs(d0)
    assert fa == pytest.approx(f(alpha)[0], rel=1e-14)


def test_state_dict_round_trip_continues_bitwise():
    a, b = random_quadratic(40, 3)
    at, bt = torch.tensor(a), torch.tensor(b)

    def run(n_steps, split):
        x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
        opt = ml_util.CompactLBFGS([x], max_iter=3, history_size=4)

        def closure():
            opt.zero_grad()
            f = 0.5 * x @ at @ x - bt @ x + 0.01 * (x ** 4).sum()
            f.backward()
            return f

        for i in range(n_steps):
            if i == split:   # a fresh optimizer from the saved state (as a resumed checkpoint does)
                state = opt.state_dict()
                opt = ml_util.CompactLBFGS([x], max_iter=3, history_size=4)
                opt.load_state_dict(state)
            opt.step(closure)
        return x.detach().clone(), opt.state_dict()["state"][0]

    x_ref, st_ref = run(4, split=None)
    x_res, st_res = run(4, split=2)
    torch.testing.assert_close(x_ref, x_res, rtol=0, atol=0)
    # max_eval = 3 per step counts the step's first evaluation: 2 iterations per step, 4 stored pairs
    assert st_ref["n_iter"] == st_res["n_iter"] == 8 and st_ref["k"] == st_res["k"] == 4


def test_stops_at_the_first_evaluation_meeting_convergence():
    torch.manual_seed(0)
    dataset, _, _ = seed_dataset(torch.float64)
    nn = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    closure = ml_util.simple_energy_closure([nn], dataset, optimizer="compact-lbfgs", per_atom=True,
                                            convergence={"energy_rmse": 0.02},
                                            optimizer_kwargs={"max_iter": 1000})
    assert isinstance(closure.optimizer, ml_util.CompactLBFGS)
    seen = []
    closure.optimizer.callback = lambda c: seen.append(c.last_rmse()["energy_rmse"]) and False
    closure.optimizer_step()
    assert closure.optimizer.stop_reason == "converged"
    metrics = closure.metrics()   # an independent full evaluation at the final parameters
    assert metrics["energy_rmse"] <= 0.02
    assert metrics["energy_rmse"] == pytest.approx(closure.last_rmse()["energy_rmse"], rel=1e-10)
    # the callback saw every evaluation: all above the target but the last
    assert all(v > 0.02 for v in seen[:-1]) and seen[-1] <= 0.02 and len(seen) >= 2
    assert closure.converged(metrics)


def test_callback_ends_the_step_at_that_evaluation():
    x = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
    count = []
    opt = ml_util.CompactLBFGS([x], max_iter=100, callback=lambda closure: len(count) >= 5)

    def closure():
        opt.zero_grad()
        count.append(1)
        f = (x ** 2).sum() + (x ** 4).sum()
        f.backward()
        return f

    opt.step(closure)
    assert len(count) == 5 and opt.stop_reason == "callback"


def test_last_rmse_is_none_when_the_loss_does_not_measure_it():
    dataset, _, _ = seed_dataset(torch.float64)
    nn = torch.nn.Sequential(torch.nn.Linear(3, 1)).double()
    closure = ml_util.simple_energy_closure([nn], dataset, convergence={"energy_rmse": 1.0})  # per_atom=False
    closure.loss()
    assert closure.last_rmse() is None and not closure.converged_last()


def test_bad_arguments():
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="max_iter"):
        ml_util.CompactLBFGS(p, max_iter=0)
    with pytest.raises(ValueError, match="history_size"):
        ml_util.CompactLBFGS(p, history_size=2.5)
    with pytest.raises(ValueError, match="c1, c2"):
        ml_util.CompactLBFGS(p, c1=0.9, c2=0.1)
    with pytest.raises(TypeError, match="callback"):
        ml_util.CompactLBFGS(p, callback=3)
    with pytest.raises(ValueError, match="single parameter group"):
        ml_util.CompactLBFGS([{"params": p}, {"params": [torch.zeros(1, requires_grad=True)]}])
    with pytest.raises(ValueError, match="compact_lbfgs"):
        ml_util.resolve_optimizer("compact-lbfgsx")
    x = torch.ones(2, dtype=torch.float64, requires_grad=True)
    opt = ml_util.CompactLBFGS([x])

    def closure():
        opt.zero_grad()
        f = (x ** 2).sum() / (x[0] - 1)   # infinite at the start
        f.backward()
        return f

    with pytest.raises(RuntimeError, match="not finite"):
        opt.step(closure)
