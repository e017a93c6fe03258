"""One MD step (velocity Verlet, 1 fs) through ASE calculators.

miniff's ``MiniffCalculator`` with the NN potential of ``bench_nn`` (float64) and with Stillinger–Weber
silicon, against TorchANI's ASE calculator with the same network (float32, no stress). Each tool drives its
own copy of the same structure (diamond Si with 0.05 Å noise, Maxwell–Boltzmann velocities at 300 K, fixed
seed); a timed call is one ``VelocityVerlet.run(1)`` (one energy + forces evaluation, and for miniff the
Verlet-skin bookkeeping of its neighbour list). Check before timing: on the starting structure, with a
radial-only network, the two calculators give the same energy and forces (as in ``bench_nn``); the SW
calculator's forces match ``NeighborWrapper.grad`` of the same potentials. TorchANI's calculator reads the
model output as Hartree, so its last layer is divided by ``ase.units.Hartree`` to give the same eV.
"""

import copy

import numpy as np

from benchmarks import _miniff
from benchmarks._checks import compare_arrays
from benchmarks._peers import DESCRIPTOR_SPEC, ani_model, make_network
from benchmarks._runner import run_comparison
from benchmarks._structures import si_diamond_n
from benchmarks.bench_lammps import find_sw_file, read_sw_file
from benchmarks.bench_nn import radial_only

TIMESTEP_FS = 1.0


def _prepare(atoms, seed=7):
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = atoms.copy()
    MaxwellBoltzmannDistribution(atoms, temperature_K=300.0, rng=np.random.default_rng(seed))
    return atoms


def _stepper(atoms, calc):
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=TIMESTEP_FS * units.fs)
    atoms.get_forces()

    def step():
        dyn.run(1)

    return step


def _energy_forces(atoms, calc):
    atoms = atoms.copy()
    atoms.calc = calc
    return float(atoms.get_potential_energy()), np.asarray(atoms.get_forces())


def _miniff_nn(atoms, net):
    def factory():
        descriptors = _miniff.behler_descriptors(DESCRIPTOR_SPEC)
        calc = _miniff.calculator(_miniff.nn_potentials(net.double(), descriptors))
        check_calc = _miniff.calculator(_miniff.nn_potentials(radial_only(net).double(), descriptors))
        check = {"radial": _energy_forces(atoms, check_calc)}
        step = _stepper(atoms, calc)

        def run():
            step()
            return check

        return run

    return factory


def _in_hartree(net):
    """Copy of ``net`` with its output divided by Hartree (TorchANI's calculator multiplies it back)."""
    import torch
    from ase.units import Hartree

    out = copy.deepcopy(net)
    with torch.no_grad():
        out[-1].weight /= Hartree
        out[-1].bias /= Hartree
    return out


def _torchani_calc(atoms, net):
    def factory():
        calc = ani_model(_in_hartree(net)).ase()
        check = {"radial": _energy_forces(atoms, ani_model(_in_hartree(radial_only(net, radial_scale=4.0))).ase())}
        step = _stepper(atoms, calc)

        def run():
            step()
            return check

        return run

    return factory


def _miniff_sw(atoms, sw):
    def factory():
        potentials = _miniff.sw_potentials(sw)
        calc = _miniff.calculator(potentials)
        e, f = _energy_forces(atoms, calc)
        nw = _miniff.neighbor_wrapper(atoms, sw["a"] * sw["sigma"])
        check = {"sw": (e, f, float(nw.total(potentials)), -np.asarray(nw.grad(potentials)))}
        step = _stepper(atoms, calc)

        def run():
            step()
            return check

        return run

    return factory


def _check_nn(outputs):
    if "miniff" not in outputs or "torchani" not in outputs:
        return {t: (None, "needs miniff and TorchANI") for t in outputs}
    e_ref, f_ref = outputs["miniff"]["radial"]
    e, f = outputs["torchani"]["radial"]
    ok_e = abs(e - e_ref) <= 2e-6 * max(1.0, abs(e_ref))
    ok_f, detail = compare_arrays(f, f_ref, atol=1e-4 * max(1e-3, np.abs(f_ref).max()))
    text = f"radial-only net via the calculators: E {e:.7f} vs {e_ref:.7f} eV, forces {detail}"
    return {t: (ok_e and ok_f, text) for t in outputs}


def _check_sw(outputs):
    e, f, e_nw, f_nw = outputs["miniff-sw"]["sw"]
    ok_f, detail = compare_arrays(f, f_nw, atol=1e-9 * max(1.0, np.abs(f_nw).max()))
    ok_e = abs(e - e_nw) <= 1e-10 * max(1.0, abs(e_nw))
    return {"miniff-sw": (ok_e and ok_f, f"calculator vs NeighborWrapper: E {e:.8f} vs {e_nw:.8f}, F {detail}")}


def run(settings, sizes):
    """MD-step rows: ``md-nn`` (miniff NN vs TorchANI calculator) and ``md-sw`` (miniff SW alone)."""
    import torch

    net = make_network(dtype=torch.float32)
    sw_file = find_sw_file()
    rows = []
    for n in sizes:
        atoms = _prepare(si_diamond_n(n))
        rows += run_comparison("md-nn", len(atoms), {"miniff": _miniff_nn(atoms, copy.deepcopy(net)),
                                                     "torchani": _torchani_calc(atoms, net)},
                               _check_nn, settings,
                               threads={"miniff": "OpenMP (default)", "torchani": f"torch {torch.get_num_threads()}"},
                               notes={"miniff": "MiniffCalculator, NN float64", "torchani": "ANI calculator, float32"})
        if sw_file:
            rows += run_comparison("md-sw", len(atoms), {"miniff-sw": _miniff_sw(atoms, read_sw_file(sw_file))},
                                   _check_sw, settings, reference="miniff-sw",
                                   threads={"miniff-sw": "OpenMP (default)"},
                                   notes={"miniff-sw": "MiniffCalculator, Stillinger-Weber (LAMMPS Si.sw)"})
    return rows, {}
