"""One training epoch with energies and forces on Si structures of 64 atoms.

Data: ``n_structures`` diamond Si cells (2x2x2, 64 atoms) with a random strain (|e| <= 2 %) and 0.1 Å random
displacements, labelled with Stillinger–Weber silicon (LAMMPS's ``Si.sw`` parameters) computed by miniff.
miniff: descriptors + sparse Jacobians once (``learn_cauldron(..., grad=True)``, row ``training-prepare``),
then one epoch = one full-batch Adam step of ``simple_energy_closure`` with energy and force terms
(row ``training-epoch``). TorchANI: the same network size on its AEVs, one epoch = energies and forces of every
structure (its batches need one cell, and every structure has its own) + backward + one Adam step (AEVs are
recomputed, as TorchANI training does). The descriptor functions differ, so there is no common value to
compare: the check is that every loss is finite and that two epochs lower it.
"""

import copy
import math

import numpy as np

from benchmarks import _miniff
from benchmarks._peers import DESCRIPTOR_SPEC, ani_model, make_network
from benchmarks._runner import run_comparison
from benchmarks._structures import si_diamond
from benchmarks._timing import Unavailable
from benchmarks.bench_lammps import find_sw_file, read_sw_file


def make_dataset(n_structures, reps, seed=11):
    """Strained, displaced Si cells labelled with SW energies and forces by miniff.

    Returns
    -------
    list of ase.Atoms
        With ``info["energy"]`` (eV) and ``arrays["forces_ref"]`` (eV/Å).
    """
    sw_file = find_sw_file()
    if sw_file is None:
        raise Unavailable("missing", "the SW labels use LAMMPS's Si.sw (apt-get install lammps)")
    sw = read_sw_file(sw_file)
    potentials = _miniff.sw_potentials(sw)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_structures):
        atoms = si_diamond(reps, noise=0.1, seed=seed + k)
        strain = rng.uniform(-0.02, 0.02, size=(3, 3))
        atoms.set_cell(np.array(atoms.cell) @ (np.eye(3) + 0.5 * (strain + strain.T)), scale_atoms=True)
        atoms.wrap()
        nw = _miniff.neighbor_wrapper(atoms, sw["a"] * sw["sigma"])
        atoms.info["energy"] = float(nw.total(potentials))
        atoms.arrays["forces_ref"] = -np.asarray(nw.grad(potentials))
        out.append(atoms)
    return out


def _scalar(value):
    """A float from a python number or a (possibly grad-requiring) tensor."""
    return float(value.detach()) if hasattr(value, "detach") else float(value)


def _miniff_cells(data):
    nw_cls = _miniff.require("kernel", "NeighborWrapper")
    cells = []
    for atoms in data:
        cell = _miniff.cell_from_atoms(atoms)
        cell.meta["total-energy"] = atoms.info["energy"]
        cell.meta["forces"] = atoms.arrays["forces_ref"]
        cells.append(nw_cls(cell, cutoff=DESCRIPTOR_SPEC["cutoff"]))
    return cells


def _miniff_prepare(data):
    def factory():
        learn_cauldron = _miniff.require("ml", "learn_cauldron")
        descriptors = {"Si": _miniff.behler_descriptors(DESCRIPTOR_SPEC)}
        cells = _miniff_cells(data)

        def run():
            learn_cauldron(cells, descriptors, grad=True)
            return None

        return run

    return factory


def _miniff_epoch(data, net):
    def factory():
        import torch

        learn_cauldron = _miniff.require("ml", "learn_cauldron")
        closure_fn = _miniff.require("ml_util", "simple_energy_closure")
        descriptors = {"Si": _miniff.behler_descriptors(DESCRIPTOR_SPEC)}
        dataset, _ = learn_cauldron(_miniff_cells(data), descriptors, grad=True)
        model = copy.deepcopy(net).double()
        closure = closure_fn([model], dataset, optimizer=torch.optim.Adam, optimizer_kwargs={"lr": 1e-3},
                             w_energy=1, w_gradients=1)
        losses = []
        for _ in range(2):
            losses.append(_scalar(closure.loss().loss_value))
            closure.optimizer_step()
        losses.append(_scalar(closure.loss().loss_value))

        def run():
            closure.optimizer_step()
            return losses

        return run

    return factory


def _torchani_epoch(data, net):
    def factory():
        import torch

        model = ani_model(copy.deepcopy(net))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = []
        for atoms in data:
            species = torch.full((1, len(atoms)), 14, dtype=torch.long)
            coords = torch.tensor(atoms.positions, dtype=torch.float32)[None]
            cell = torch.tensor(np.array(atoms.cell), dtype=torch.float32)
            batch.append((species, coords, cell, torch.tensor(atoms.info["energy"], dtype=torch.float32),
                          torch.tensor(atoms.arrays["forces_ref"], dtype=torch.float32)))
        pbc = torch.tensor([True, True, True])

        def epoch():
            optimizer.zero_grad()
            e_loss = f_loss = 0.0
            for species, coords, cell, e_ref, f_ref in batch:
                x = coords.clone().requires_grad_(True)
                energy = model((species, x), cell=cell, pbc=pbc).energies.sum()
                (grad,) = torch.autograd.grad(energy, x, create_graph=True)
                e_loss = e_loss + (energy - e_ref) ** 2
                f_loss = f_loss + ((-grad[0] - f_ref) ** 2).mean()
            loss = (e_loss + f_loss) / len(batch)
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        losses = [epoch() for _ in range(3)]

        def run():
            epoch()
            return losses

        return run

    return factory


def _check(outputs):
    verdicts = {}
    for tool, losses in outputs.items():
        if losses is None:
            verdicts[tool] = (None, "descriptor preparation only")
            continue
        ok = all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
        verdicts[tool] = (ok, "loss over 2 epochs: " + " -> ".join(f"{v:.4g}" for v in losses))
    return verdicts


def run(settings, n_structures, reps):
    """Training rows (``training-prepare``, ``training-epoch``)."""
    import torch

    n_atoms = 8 * int(np.prod(reps))
    data = make_dataset(n_structures, reps)
    net = make_network(dtype=torch.float32)
    threads = {"miniff": "OpenMP (default) + torch", "torchani": f"torch {torch.get_num_threads()}"}
    note = f"{n_structures} structures x {n_atoms} atoms"
    rows = run_comparison("training-prepare", n_atoms * n_structures, {"miniff": _miniff_prepare(data)}, _check,
                          settings, threads=threads, notes={"miniff": "learn_cauldron(grad=True), " + note})
    rows += run_comparison("training-epoch", n_atoms * n_structures,
                           {"miniff": _miniff_epoch(data, net), "torchani": _torchani_epoch(data, net)}, _check,
                           settings, threads=threads,
                           notes={"miniff": "one full-batch Adam step, float64, " + note,
                                  "torchani": "per-structure forward + forces, one Adam step, float32, " + note})
    return rows, {}
