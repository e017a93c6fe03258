"""0.1.4 parameters of the evaluation and the relaxation that miniff ignores warn, naming the parameter."""

import warnings

import numpy as np
import pytest

from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import lj_potential_family

LJ = lj_potential_family(epsilon=0.01, sigma=2.0, a=2.5, tag="Ar-Ar")


def _wrapper():
    cell = Cell(np.eye(3) * 6.0, [[0, 0, 0], [0.4, 0.1, 0.0], [0.1, 0.5, 0.3]], ["Ar"] * 3)
    return NeighborWrapper(cell, cutoff=5.0)


def test_eval_prefer_parallel_true_is_ignored_with_a_warning():
    nw = _wrapper()
    with pytest.warns(DeprecationWarning, match="prefer_parallel=True is ignored"):
        e = nw.eval(LJ, prefer_parallel=True)
    np.testing.assert_array_equal(e, nw.eval(LJ))


def test_eval_prefer_parallel_false_means_one_thread_and_does_not_warn():
    nw = _wrapper()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = nw.eval(LJ, prefer_parallel=False)
    np.testing.assert_array_equal(e, nw.eval(LJ, n_threads=1))
    with pytest.warns(DeprecationWarning, match="prefer_parallel=False is ignored"):
        nw.eval(LJ, prefer_parallel=False, n_threads=2)


def test_relax_prefer_parallel_warns_and_default_is_silent():
    nw = _wrapper()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a 3-step relaxation may not converge
        with pytest.warns(DeprecationWarning, match="relax: prefer_parallel is ignored"):
            nw.relax(LJ, prefer_parallel=True, options={"maxiter": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # a 3-step relaxation may not converge
        nw.relax(LJ, options={"maxiter": 3})
