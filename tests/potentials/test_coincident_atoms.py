"""Coincident atoms are refused before any kernel runs, naming the atoms, their positions and distance."""

import numpy as np
import pytest
import torch

import miniff.potentials as P
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials.guards import COINCIDENT_DISTANCE, CoincidentAtomsError

SW = P.stillinger_weber_si("a")
FAMILIES = {
    "lj": P.lj_potential_family(epsilon=1.0, sigma=1.0, a=2.5, tag="a-a"),
    "harmonic": P.harmonic_repulsion_potential_family(a=2.0, epsilon=1.0, tag="a-a"),
    "sw": list(SW),
    "behler2": P.behler2_descriptor_family(a=2.5, eta=1.0, r_sphere=0.0, tag="a-a"),
    "behler4": P.behler4_descriptor_family(a=2.5, eta=0.1, l=1, zeta=2, tag="a-a-a"),
    "behler5": P.behler5_descriptor_family(a=2.5, eta=0.1, l=-1, zeta=1, tag="a-a-a"),
    "behler5x": P.behler5x_descriptor_family(a=2.5, eta1=0.1, eta2=0.3, cos_theta0=0.0, tag="a-a-a"),
}


def _nn_potential():
    from miniff.ml import NNPotential

    d = [P.behler2_descriptor_family(a=2.5, eta=e, r_sphere=0.0, tag="a-a") for e in (0.5, 1.0)]
    torch.manual_seed(0)
    return NNPotential(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)), d, tag="a")


def _cells():
    """(name, cell, pbc, (i, j)): coincident atoms in a periodic cell, a finite cell and through an image."""
    frac = np.array([[0.1, 0.1, 0.1], [0.5, 0.5, 0.5], [0.1, 0.1, 0.1], [0.3, 0.6, 0.2]])
    yield "periodic", Cell(np.eye(3) * 4.0, frac, ["a"] * 4), True, (0, 2)
    yield "finite", Cell(np.eye(3) * 4.0, frac, ["a"] * 4), False, (0, 2)
    # atom 2 sits on the periodic image of atom 0 (one cell vector away)
    image = frac.copy()
    image[2] = [1.1, 0.1, 0.1]
    yield "image", Cell(np.eye(3) * 4.0, image, ["a"] * 4), True, (0, 2)


@pytest.mark.parametrize("case", list(_cells()), ids=lambda c: c[0])
@pytest.mark.parametrize("name", [*FAMILIES, "nn"])
def test_every_evaluation_path_refuses_coincident_atoms(case, name):
    _, cell, pbc, (i, j) = case
    nw = NeighborWrapper(cell, pbc=pbc, cutoff=3.9, normalize=False)
    pot = _nn_potential() if name == "nn" else FAMILIES[name]
    pots = pot if isinstance(pot, list) else [pot]
    calls = [lambda: nw.total(pot), lambda: nw.grad(pot), lambda: nw.evaluate(pot, stress=True),
             lambda: nw.eval(pot), lambda: pots[0].compute(nw, grad=True)]
    if name.startswith("behler"):
        calls.append(lambda: P.eval_descriptors(nw, pots, grad=True))
    for call in calls:
        with pytest.raises(CoincidentAtomsError) as info:
            call()
        message = str(info.value)
        assert isinstance(info.value, ValueError)
        assert f"atom {i}" in message and f"atom {j}" in message, message
        assert "0.4" in message and "Å apart" in message, message  # positions (0.4 Å) and the distance


def test_kernels_never_run_and_the_ase_calculator_refuses(monkeypatch):
    from ase import Atoms

    from miniff.calculator import MiniffCalculator

    cell = next(iter(_cells()))[1]
    called = []
    backend = FAMILIES["lj"].family.backend
    monkeypatch.setattr(type(backend), "accumulate", lambda *a, **k: called.append(1))
    with pytest.raises(CoincidentAtomsError, match="atom 0"):
        NeighborWrapper(cell, cutoff=3.0).total(FAMILIES["lj"])
    assert not called
    monkeypatch.undo()
    atoms = Atoms("Ar4", cell=cell.vectors, scaled_positions=cell.coordinates, pbc=True)
    atoms.calc = MiniffCalculator(P.lj_potential_family(epsilon=1.0, sigma=1.0, a=2.5, tag="Ar-Ar"))
    with pytest.raises(CoincidentAtomsError, match="atom 0 at .* atom 2"):
        atoms.get_potential_energy()


def test_close_but_distinct_atoms_and_the_opt_out():
    frac = np.array([[0.1, 0.1, 0.1], [0.1 + 1e-5, 0.1, 0.1]])  # 4e-5 Å apart: not coincident
    nw = NeighborWrapper(Cell(np.eye(3) * 4.0, frac, ["a", "a"]), pbc=False, cutoff=3.0)
    assert nw.pairs.d_p.min() > COINCIDENT_DISTANCE
    e = nw.total(FAMILIES["harmonic"])
    assert np.isfinite(e) and np.isfinite(nw.grad(FAMILIES["harmonic"])).all()
    # a family finite at r = 0 opts out (energy 2 * epsilon / 2 for the pair seen from both atoms)
    nw = NeighborWrapper(Cell(np.eye(3) * 4.0, [[0.1] * 3, [0.1] * 3], ["a", "a"]), pbc=False, cutoff=3.0)
    pot = P.harmonic_repulsion_potential_family(a=2.0, epsilon=1.0, tag="a-a")
    with pytest.raises(CoincidentAtomsError):
        nw.total(pot)
    pot.allow_coincident = True
    assert nw.total(pot) == pytest.approx(1.0)
    assert not FAMILIES["harmonic"].allow_coincident  # set on one potential only
    family = P.LocalPotentialFamily({"a": (0, None, True, False)}, cutoff="a",
                                    kernels=FAMILIES["harmonic"].family.backend, tag="finite at zero",
                                    allow_coincident=True)
    assert family(a=2.0, tag="a-a").allow_coincident
