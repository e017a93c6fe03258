"""NeighborWrapper.relax: positions and cell with scipy minimisers (BFGS, CG, L-BFGS-B)."""

import warnings

import numpy as np
import pytest
from support import diamond, make_nw

import miniff.potentials as P
from miniff.kernel import OptimizationWarning

E_SI = -4.3366  # eV/atom, Stillinger-Weber diamond silicon at a = 5.431 Å


@pytest.mark.parametrize("method", [None, "CG", "L-BFGS-B"])
def test_positions_relax_to_the_diamond_minimum(rng, method):
    sw = P.stillinger_weber_si()
    nw = make_nw(diamond(5.431, noise=0.05, rng=rng), 3.8)
    e_start = nw.total(sw)
    cart_start = nw.cartesian_row.copy()
    kwargs = {} if method is None else {"method": method}
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizationWarning)
        history = nw.relax(sw, rtn_history=True, **kwargs)
    assert len(history) > 3, "the optimiser must not stop at step 0"
    energies = [c.meta["total-energy"] for c in history]
    assert energies[0] == pytest.approx(e_start, rel=1e-12)
    final = history[-1]
    assert final.meta["total-energy"] / 8 == pytest.approx(E_SI, abs=1e-5)
    assert np.abs(final.meta["forces"]).max() < 5e-3
    assert final.meta["forces"].shape == (8, 3)
    # inplace=False restores the wrapper
    np.testing.assert_allclose(nw.cartesian_row, cart_start, atol=1e-12)
    assert nw.total(sw) == pytest.approx(e_start, rel=1e-12)


def test_inplace_relaxation_updates_the_wrapper(rng):
    sw = P.stillinger_weber_si()
    nw = make_nw(diamond(5.431, noise=0.05, rng=rng), 3.8)
    cell = nw.relax(sw, inplace=True)
    assert nw.total(sw) == pytest.approx(cell.meta["total-energy"], rel=1e-12)
    assert cell.meta["total-energy"] / 8 == pytest.approx(E_SI, abs=1e-5)
    assert np.abs(nw.grad(sw)).max() < 5e-3


def test_cell_relaxation_returns_to_the_published_lattice_constant():
    sw = P.stillinger_weber_si()
    vectors, frac, species, pbc = diamond(5.431)
    strained = vectors @ np.array([[1.03, 0.01, 0.0], [0.01, 0.98, 0.0], [0.0, 0.0, 1.02]])
    nw = make_nw((strained, frac, species, pbc), 3.8)
    assert nw.total(sw) / 8 > E_SI + 1e-3
    cell = nw.relax(sw, relax_cell=True)
    assert cell.meta["total-energy"] / 8 == pytest.approx(E_SI, abs=1e-5)
    lengths = np.linalg.norm(cell.vectors, axis=1)
    np.testing.assert_allclose(lengths, 5.431, atol=2e-3)
    gram = cell.vectors @ cell.vectors.T
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=2e-2)
    np.testing.assert_allclose(cell.meta["stress"], 0, atol=1e-4)


def test_non_convergence_warns():
    sw = P.stillinger_weber_si()
    vectors, frac, species, pbc = diamond(5.431)
    frac = frac.copy()
    frac[0] += 0.02
    nw = make_nw((vectors, frac, species, pbc), 3.8)
    with pytest.warns(OptimizationWarning, match="did not converge"):
        nw.relax(sw, options={"maxiter": 1})


def test_custom_driver_and_errors():
    sw = P.stillinger_weber_si()
    nw = make_nw(diamond(5.431), 3.8)
    calls = []

    def driver(fun, x0, jac):
        calls.append(fun(x0))
        assert jac(x0).shape == x0.shape
        return x0

    cell = nw.relax(sw, driver=driver)
    assert calls and cell.meta["total-energy"] == pytest.approx(calls[0])
    with pytest.raises(TypeError, match="driver must be callable"):
        nw.relax(sw, driver=3)
    with pytest.raises(ValueError, match="fmax must be a positive number"):
        nw.relax(sw, fmax=-1.0)
