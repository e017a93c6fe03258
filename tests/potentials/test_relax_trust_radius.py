"""relax: the default optimiser limits every step (trust radius) and converges forces to fmax."""

import numpy as np
import pytest

import miniff.potentials as P
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials.relax import FMAX, MAX_STEP

SIGMA = 1.3
LJ = P.lj_potential_family(epsilon=0.7, sigma=SIGMA, a=2.5, tag="a-a")


def _trimer(separation):
    """Three atoms at ``separation`` Å (a scalene triangle) in a non-periodic box."""
    shape = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.45, 0.8, 0.1]])
    cart = shape * separation + 10.0
    return NeighborWrapper(Cell(np.eye(3) * 20.0, cart / 20.0, ["a"] * 3), pbc=False, cutoff=LJ.cutoff)


@pytest.mark.parametrize("separation", [0.25, 0.3, 0.4, 0.5])
def test_compressed_lj_trimer_relaxes_to_the_nearest_minimum(separation):
    nw = _trimer(separation)
    history = nw.relax(LJ, rtn_history=True)
    final = history[-1]
    x = final.cartesian()
    distances = [np.linalg.norm(x[i] - x[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    np.testing.assert_allclose(distances, 2 ** (1 / 6) * SIGMA, rtol=1e-6)
    assert np.linalg.norm(final.meta["forces"], axis=1).max() <= FMAX
    # the trust radius: no atom moved more than MAX_STEP between accepted points
    accepted = [h.cartesian() for h in history]
    energies = [h.meta["total-energy"] for h in history]
    for k in range(1, len(accepted)):
        assert np.linalg.norm(accepted[k] - accepted[k - 1], axis=1).max() <= MAX_STEP * (1 + 1e-9)
    assert energies[-1] == pytest.approx(-6 * 0.7, rel=1e-10)  # 3 pairs, each counted from both atoms


def test_max_step_and_fmax_are_honoured():
    nw = _trimer(0.4)
    history = nw.relax(LJ, rtn_history=True, max_step=0.05, fmax=1e-3)
    steps = [np.linalg.norm(b.cartesian() - a.cartesian(), axis=1).max()
             for a, b in zip(history, history[1:], strict=False)]
    assert max(steps) <= 0.05 * (1 + 1e-9)
    assert np.linalg.norm(history[-1].meta["forces"], axis=1).max() <= 1e-3


def test_a_crystal_relaxes_to_1e_5_eV_per_angstrom(rng):
    sw = P.stillinger_weber_si()
    a = 5.431
    frac = np.array([[0, 0, 0], [0.25, 0.25, 0.25], [0, 0.5, 0.5], [0.25, 0.75, 0.75], [0.5, 0, 0.5],
                     [0.75, 0.25, 0.75], [0.5, 0.5, 0], [0.75, 0.75, 0.25]]) + rng.normal(scale=0.01, size=(8, 3))
    nw = NeighborWrapper(Cell(np.eye(3) * a, frac, ["Si"] * 8), cutoff=3.8)
    cell = nw.relax(sw)
    assert np.linalg.norm(cell.meta["forces"], axis=1).max() <= 1e-5
    assert cell.meta["total-energy"] / 8 == pytest.approx(-4.3366, abs=1e-4)


@pytest.mark.parametrize("kwargs, error, text", [
    ({"fmax": 0}, ValueError, "fmax"),
    ({"fmax": "x"}, TypeError, "fmax"),
    ({"max_step": -1.0}, ValueError, "max_step"),
    ({"max_step": float("nan")}, ValueError, "max_step"),
    ({"options": {"gtol": 1e-3}}, ValueError, "gtol"),
    ({"tol": 1e-3}, ValueError, "tol"),
    ({"options": {"maxiter": -1}}, ValueError, "maxiter"),
    ({"options": {"maxiter": "abc"}}, TypeError, "maxiter"),
    ({"options": {"memory": 0}}, ValueError, "memory"),
])
def test_bad_relax_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        _trimer(0.5).relax(LJ, **kwargs)


def test_an_empty_cell_is_a_clear_error():
    nw = NeighborWrapper(Cell(np.eye(3) * 3.0, np.zeros((0, 3)), []), cutoff=2.0)
    with pytest.raises(ValueError, match="no atoms"):
        nw.relax(LJ)
    with pytest.raises(ValueError, match="no atoms"):
        nw.relax(LJ, method="BFGS", ignore_missing_species=True)


def test_minimize_max_step_on_a_quadratic_and_a_wrong_gradient(rng):
    from miniff.potentials.minimize import minimize_max_step

    m = rng.normal(size=(6, 6))
    hessian = m @ m.T + 6 * np.eye(6)
    minimum = rng.normal(size=6)
    points = []

    def fun_grad(x):
        points.append(x.copy())
        return 0.5 * (x - minimum) @ hessian @ (x - minimum), hessian @ (x - minimum)

    result = minimize_max_step(fun_grad, minimum + 10.0, max_step=0.5, fmax=1e-10)
    assert result.success and result.nit < 100
    np.testing.assert_allclose(result.x, minimum, atol=1e-9)
    steps = [np.linalg.norm((b - a).reshape(-1, 3), axis=1).max() for a, b in zip(points, points[1:], strict=False)]
    assert max(steps) <= 0.5 * (1 + 1e-12)
    # a gradient pointing uphill: no step lowers the energy, reported without success
    wrong = minimize_max_step(lambda x: (float(x @ x), -2 * x), np.ones(3), max_step=0.1, fmax=1e-8)
    assert not wrong.success and "no step lowers the energy" in wrong.message
    assert minimize_max_step(fun_grad, minimum + 1.0, max_step=0.5, fmax=1e-10, maxiter=2).message == \
        "reached maxiter=2 steps"
