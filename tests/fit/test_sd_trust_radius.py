"""The test-relax stage (SDWorkflow) relaxes strongly compressed starts to the nearest minimum."""

import numpy as np
import pytest

import miniff.potentials as P
from miniff import ml_util
from miniff.kernel import Cell

SIGMA = 1.1


@pytest.mark.parametrize("separation", [0.25, 0.5])
def test_sd_workflow_relaxes_a_compressed_trimer(separation):
    shape = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.45, 0.8, 0.1]])
    cell = Cell(np.eye(3) * 20.0, (shape * separation + 10.0) / 20.0, ["Ar"] * 3)
    lj = P.lj_potential_family(epsilon=0.01, sigma=SIGMA, a=2.5, tag="Ar-Ar")
    wf = ml_util.SDWorkflow()
    wf.prepare([cell], potentials=[lj], nw_kwargs={"pbc": False})
    (relaxed,) = wf.run()
    x = relaxed.cartesian()
    distances = [np.linalg.norm(x[i] - x[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    np.testing.assert_allclose(distances, 2 ** (1 / 6) * SIGMA, rtol=1e-5)
    assert not relaxed.meta["flag-potential-warning"]
    assert np.linalg.norm(relaxed.meta["forces"], axis=1).max() <= 1e-5
