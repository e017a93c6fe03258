"""DenseBFGS against independent references: the textbook BFGS update, exact minimisers, state round trips."""

import numpy as np
import pytest
import torch
from support import minimise_quadratic, random_quadratic, seed_dataset

from miniff import ml_util
from miniff.fit.bfgs import MAX_PARAMETERS


def textbook_update(h, s, y):
    """``(I - rho s y^T) H (I - rho y s^T) + rho s s^T`` with full matrices (Nocedal and Wright, eq. 6.17)."""
    rho = 1.0 / (s @ y)
    eye = np.eye(len(s))
    return (eye - rho * np.outer(s, y)) @ h @ (eye - rho * np.outer(y, s)) + rho * np.outer(s, s)


def _optimizer(n, **kwargs):
    return ml_util.DenseBFGS([torch.zeros(n, dtype=torch.float64, requires_grad=True)], **kwargs)


def test_updates_are_the_textbook_formula_and_meet_the_secant_condition():
    rng = np.random.default_rng(0)
    n = 12
    opt = _optimizer(n)
    h = opt._history()
    a = rng.normal(size=(n, n))
    a = a @ a.T + n * np.eye(n)
    ref = None
    for _ in range(7):
        s = rng.normal(size=n)
        y = a @ s + 0.1 * rng.normal(size=n)
        if ref is None:
            ref = (s @ y) / (y @ y) * np.eye(n)   # the first pair scales the identity (N-W eq. 6.20)
        ref = textbook_update(ref, s, y)
        assert opt._push(h, s, y, 1) is None
        got = np.tril(h["H"]) + np.tril(h["H"], -1).T   # one triangle is stored
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got @ y, s, rtol=1e-9, atol=1e-11)   # secant condition H y = s
        g = rng.normal(size=n)
        d, yd, wg = opt._direction(h, g, 1)
        np.testing.assert_allclose(d, -ref @ g, rtol=1e-10, atol=1e-12)
        assert yd is None and wg is None
    assert h["k"] == 7


def test_pair_with_negative_curvature_is_skipped_and_reset_restarts():
    opt = _optimizer(3)
    h = opt._history()
    assert opt._push(h, np.array([1.0, 0, 0]), np.array([-1.0, 0, 0]), 1) is None and h["k"] == 0
    g = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(opt._direction(h, g, 1)[0], -g)
    opt._push(h, np.array([1.0, 0, 0]), np.array([2.0, 0, 0]), 1)
    opt._reset(h)
    np.testing.assert_array_equal(opt._direction(h, g, 1)[0], -g)
    opt._push(h, np.array([0.0, 1.0, 0]), np.array([0, 4.0, 0]), 1)   # restarts from (s.y / y.y) I
    np.testing.assert_allclose(np.diag(h["H"]), [0.25, 0.25, 0.25])


def test_quadratic_minimum_in_fewer_iterations_than_lbfgs():
    a, b = random_quadratic(30, 0)
    x, opt = minimise_quadratic(lambda p: ml_util.DenseBFGS(p, max_iter=500, tolerance_grad=1e-11,
                                                            tolerance_change=0), a, b)
    np.testing.assert_allclose(x.detach().numpy(), np.linalg.solve(a, b), rtol=1e-6, atol=1e-7)
    # the full curvature information pays: fewer iterations than L-BFGS with 3 pairs on the same problem
    y, lbfgs = minimise_quadratic(lambda p: ml_util.CompactLBFGS(p, max_iter=500, history_size=3,
                                                                 tolerance_grad=1e-11, tolerance_change=0), a, b)
    assert opt.state[x]["n_iter"] < lbfgs.state[y]["n_iter"]


def _rosenbrock(xs):
    """A closure factory: ``closure(opt)`` evaluates the Rosenbrock function of the concatenated ``xs``."""
    def closure(opt):
        opt.zero_grad()
        z = torch.cat([x.reshape(-1) for x in xs])
        f = (100 * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2).sum()
        f.backward()
        return f

    return closure


def test_rosenbrock_and_state_dict_resume():
    def make(values=None):
        xs = values or [torch.full((3,), -1.2, dtype=torch.float64), torch.full((2, 2), 0.5, dtype=torch.float64)]
        xs = [x.detach().clone().requires_grad_(True) for x in xs]
        opt = ml_util.DenseBFGS(xs, max_iter=7, tolerance_grad=1e-9, tolerance_change=0)
        f = _rosenbrock(xs)
        return xs, opt, lambda: f(opt)

    xs, opt, closure = make()
    for _ in range(100):
        opt.step(closure)
    np.testing.assert_allclose(torch.cat([xs[0], xs[1].reshape(-1)]).detach().numpy(), 1, atol=1e-6)
    # a fresh optimizer loaded from the state after 3 steps continues exactly like the uninterrupted one
    xa, opt_a, closure_a = make()
    xb, opt_b, closure_b = make()
    for _ in range(3):
        opt_a.step(closure_a)
        opt_b.step(closure_b)
    xc, opt_c, closure_c = make(xb)
    opt_c.load_state_dict(opt_b.state_dict())
    for _ in range(3):
        opt_a.step(closure_a)
        opt_c.step(closure_c)
    for p, q in zip(xa, xc, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_workflow_with_bfgs_stops_at_the_criteria():
    """A fit with ``optimizer: bfgs`` through the closure and its convergence criteria."""
    torch.manual_seed(0)
    dataset, _, _ = seed_dataset(torch.float64)
    nn = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    closure = ml_util.simple_energy_closure([nn], dataset, optimizer="bfgs", per_atom=True,
                                            convergence={"energy_rmse": 1e-3},
                                            optimizer_kwargs={"max_iter": 500})
    assert isinstance(closure.optimizer, ml_util.DenseBFGS)
    closure.optimizer_step()
    assert closure.optimizer.stop_reason == "converged"
    metrics = ml_util.error_metrics([nn], dataset)
    assert metrics["energy_rmse"] <= 1e-3


def test_bad_arguments():
    with pytest.raises(ValueError, match="at most"):
        _optimizer(MAX_PARAMETERS + 1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        ml_util.resolve_optimizer("bfgz")
    assert ml_util.resolve_optimizer("dense-bfgs") is ml_util.DenseBFGS
