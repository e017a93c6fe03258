"""NN potential evaluation on a device (``NNPotential.set_device``, ``MiniffCalculator(device=...)``): the device
path on the CPU equals the default path, saved files do not change, a clear error without CUDA, and GPU = CPU in
float64 when torch sees a GPU."""

import numpy as np
import pytest
import torch
from ase import Atoms

from miniff import ml
from miniff.calculator import MiniffCalculator
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import behler2_descriptor_family, behler5_descriptor_family, lj_potential_family

CUTOFF = 3.4


def _descriptors(species):
    return [behler2_descriptor_family(a=CUTOFF, eta=0.5, r_sphere=1.2, tag=f"{species}-a"),
            behler2_descriptor_family(a=CUTOFF, eta=0.2, r_sphere=2.0, tag=f"{species}-b"),
            behler5_descriptor_family(a=CUTOFF, eta=0.05, l=1.0, zeta=1.0, tag=f"{species}-a-b")]


def _nn(species, seed):
    torch.manual_seed(seed)
    return ml.NNPotential(ml.SequentialSoleEnergyNN(3, n_internal=4, n_layers=2, activation="tanh"),
                          _descriptors(species), tag=species)


def _model():
    """Two species (each NN potential evaluates a subset of the atoms), a committee and a classical term."""
    lj = lj_potential_family(epsilon=0.01, sigma=1.5, a=CUTOFF / 1.5, tag="a-b")
    return [_nn("a", 1), ml.CommitteePotential([_nn("b", 2), _nn("b", 3)]), lj]


def _atoms(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    return Atoms(symbols=["H" if s == "a" else "He" for s in species], scaled_positions=frac, cell=vectors, pbc=True)


def _results(model, atoms, **kwargs):
    a = atoms.copy()
    a.calc = MiniffCalculator(model, species_map={"H": "a", "He": "b"}, **kwargs)
    return a.get_potential_energy(), a.get_forces(), a.get_stress(), a.calc.results["forces_std"]


def test_device_path_on_cpu_equals_default(triclinic_box):
    """``device="cpu"`` runs the device path (a copy of the network, the contraction out of place, results
    copied back) for potentials of a subset of the atoms and of all atoms; the numbers equal the default path."""
    atoms = _atoms(triclinic_box)
    ref = _results(_model(), atoms)
    model = _model()
    states = [p.state_dict() for p in model[:1]]
    got = _results(model, atoms, device="cpu")
    assert model[0].device == torch.device("cpu") and model[1].device == torch.device("cpu")
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    assert str(model[0].state_dict()) == str(states[0])   # the saved form does not change
    one = [_nn("a", 4)]                                    # all atoms of one species: the other branch
    cell = Cell(np.eye(3) * 4.0, np.random.default_rng(0).random((6, 3)), np.array(["a"] * 6))
    nw = NeighborWrapper(cell, cutoff=CUTOFF)
    ref_one = nw.evaluate(one, grad=True)
    one[0].set_device("cpu")
    got_one = nw.evaluate(one, grad=True)
    assert got_one.energy == pytest.approx(ref_one.energy, rel=1e-13)
    np.testing.assert_allclose(got_one.grad_nc, ref_one.grad_nc, rtol=1e-12, atol=1e-14)
    assert one[0].set_device(None).device is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees a CUDA GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
        MiniffCalculator(_model(), device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        _nn("a", 1).set_device("tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_equals_cpu_in_float64(triclinic_box):
    atoms = _atoms(triclinic_box)
    ref = _results(_model(), atoms)
    model = _model()
    got = _results(model, atoms, device="cuda")
    assert model[0].device.type == "cuda"
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
