"""NN energy + forces: miniff's ``NNPotential`` (float64) vs TorchANI (float32 and float64), 1k Si atoms.

Network 16 -> 32 -> 32 -> 1 with tanh on the descriptor set of the kernel issue, the same weights in
every tool. Both sides are timed from positions (pair list / cell list included). Checks before timing:
miniff's energy equals the network applied to miniff's own descriptor values (relative 1e-10); and with the
angular inputs of the first layer zeroed (TorchANI's angular terms are a different function), miniff and
TorchANI give the same energy and forces (TorchANI's radial inputs are 0.25 x Behler-2, so its radial
weights are multiplied by 4).
"""

import copy

import numpy as np

from benchmarks import _miniff
from benchmarks._checks import compare_arrays
from benchmarks._peers import DESCRIPTOR_SPEC, ani_inputs, ani_model, import_torchani, make_network
from benchmarks._runner import run_comparison
from benchmarks._structures import si_diamond_n

N_G2 = len(DESCRIPTOR_SPEC["g2"])


def radial_only(net, radial_scale=1.0):
    """Copy of ``net`` whose first layer ignores the angular inputs and scales the radial ones."""
    import torch

    out = copy.deepcopy(net)
    first = out[0]
    with torch.no_grad():
        first.weight[:, N_G2:] = 0.0
        first.weight[:, :N_G2] *= radial_scale
    return out


def _miniff_energy_forces(cell, nw_cls, potentials):
    """Energy (eV) and forces [N, 3] (eV/Å) from positions: list, descriptors and network once
    (``NeighborWrapper.evaluate``, as the ASE calculator; ``total`` then ``grad`` would run everything twice)."""
    nw = nw_cls(cell, cutoff=DESCRIPTOR_SPEC["cutoff"])
    if hasattr(nw, "evaluate"):
        result = nw.evaluate(potentials)
        return float(result.energy), -np.asarray(result.grad_nc)
    return float(nw.total(potentials)), -np.asarray(nw.grad(potentials))  # miniff 0.1.4


def _miniff_tool(atoms, net):
    def factory():
        import torch

        nw_cls = _miniff.require("kernel", "NeighborWrapper")
        eval_descriptors = _miniff.require("potentials", "eval_descriptors")
        descriptors = _miniff.behler_descriptors(DESCRIPTOR_SPEC)
        cell = _miniff.cell_from_atoms(atoms)
        potentials = _miniff.nn_potentials(net.double(), descriptors)
        energy, _ = _miniff_energy_forces(cell, nw_cls, potentials)
        values, _ = eval_descriptors(nw_cls(cell, cutoff=DESCRIPTOR_SPEC["cutoff"]), descriptors)
        with torch.no_grad():
            direct = float(net.double()(torch.as_tensor(np.asarray(values))).sum())
        check_pots = _miniff.nn_potentials(radial_only(net).double(), descriptors)
        e_rad, f_rad = _miniff_energy_forces(cell, nw_cls, check_pots)
        check = {"energy": energy, "direct": direct, "radial": (e_rad, f_rad)}

        def run():
            _miniff_energy_forces(cell, nw_cls, potentials)
            return check

        return run

    return factory


def _torchani(atoms, net, dtype_name):
    def factory():
        import_torchani()
        import torch

        dtype = getattr(torch, dtype_name)
        species, coords, cell, pbc = ani_inputs(atoms, dtype)
        species = torch.full_like(species, 14)  # atomic numbers (periodic_table_index=True)

        def energy_forces(model):
            x = coords.clone().requires_grad_(True)
            energy = model((species, x), cell=cell, pbc=pbc).energies.sum()
            (grad,) = torch.autograd.grad(energy, x)
            return float(energy.detach()), -grad[0].double().numpy()

        model = ani_model(net).to(dtype)
        check_model = ani_model(radial_only(net, radial_scale=4.0)).to(dtype)
        check = {"radial": energy_forces(check_model)}

        def run():
            energy_forces(model)
            return check

        return run

    return factory


def _check(outputs):
    verdicts = {}
    mini = outputs.get("miniff")
    texts, ok_all = [], True
    if mini is not None:
        ok = abs(mini["energy"] - mini["direct"]) <= 1e-10 * max(1.0, abs(mini["direct"]))
        ok_all = ok
        texts.append(f"E {mini['energy']:.10f} vs network on eval_descriptors {mini['direct']:.10f} eV")
    for tool in ("torchani", "torchani-f64"):
        if tool not in outputs:
            continue
        if mini is None:
            verdicts[tool] = (None, "miniff did not run")
            continue
        e_ref, f_ref = mini["radial"]
        e, f = outputs[tool]["radial"]
        tol = 2e-6 if tool == "torchani" else 1e-10
        ok_e = abs(e - e_ref) <= tol * max(1.0, abs(e_ref))
        ok_f, detail = compare_arrays(f, f_ref, atol=50 * tol * max(1e-3, np.abs(f_ref).max()))
        text = f"radial-only net: E {e:.8f} vs {e_ref:.8f} eV, forces {detail}"
        verdicts[tool] = (ok_e and ok_f, text)
        ok_all = ok_all and ok_e and ok_f
        texts.append(f"{tool}: {text}")
    if mini is not None:
        verdicts["miniff"] = (ok_all, "; ".join(texts))
    return verdicts


def run(settings, sizes):
    """NN energy + forces rows; ratios are miniff (float64) time / tool time."""
    import torch

    net = make_network(dtype=torch.float32)
    rows = []
    threads = {"miniff": "OpenMP (default) + torch", "torchani": f"torch {torch.get_num_threads()}",
               "torchani-f64": f"torch {torch.get_num_threads()}"}
    for n in sizes:
        atoms = si_diamond_n(n)
        factories = {"miniff": _miniff_tool(atoms, copy.deepcopy(net)),
                     "torchani": _torchani(atoms, net, "float32"),
                     "torchani-f64": _torchani(atoms, net, "float64")}
        rows += run_comparison("nn-energy-forces", len(atoms), factories, _check, settings, threads=threads,
                               notes={"miniff": "float64, NeighborWrapper + evaluate",
                                      "torchani": "float32", "torchani-f64": "float64"})
    return rows, {}
