"""Many elements: three descriptor + network set-ups fitted with their defaults on one 5-element EMT alloy set.

The data come from ``examples/emt_alloys/generate.py`` (random fcc alloys of Al, Ni, Cu, Pd and Pt labelled by
ASE's EMT: bulk, vacancies, surfaces, large strains; 30-64 atoms; seed 0), split 80/20 by ``FitWorkflow``'s
seeded shuffle. The set-ups, each ``FitWorkflow(seed=0).prepare(data, test_set=0.2, forces=True,
cutoff=cutoff, <below>)`` then ``run(n_epochs=epochs)``, everything else at the defaults (one cutoff for all,
5 Å by default: at the recipes' 6.35 Å the Behler set's Jacobian would need about 15 GB for 300 structures):

(i) ``behler``: miniff's per-species-pair Behler recipe, one network per species;
(ii) ``wacsf``: the element-weighted recipe, one network per species;
(iii) ``chebyshev+singlenn``: aenet's Chebyshev type-spin recipe with one network for every species
    (``nn_kwargs={"single": True}``: a one-hot species input and a species-specific output layer).

All three get the same data, split, cutoff, epochs and optimizer (100 L-BFGS iterations per epoch) and end
with the networks of their best validation epoch; the networks differ as the defaults make them (one per species
with two hidden layers of 10 for (i) and (ii), ``FitWorkflow.prepare``'s default; one shared SingleNN with its own
default of 15 for (iii)).

Rows ``elements-fit`` (one per set-up, ``n_atoms`` = atoms in the data): the wall time of prepare + run (one run;
the three set-ups run one after the other); the check detail gives the descriptor count per species and the
validation energy (meV/atom) and force (meV/Å) RMSEs (``derived``: also the number of trained parameters).
Rows ``elements-descriptors``: descriptor values of the validation structures (neighbour lists prebuilt), timed
interleaved over the three set-ups; ``ratio`` = time of the set-up / time of (i). ``derived`` holds the numbers
the targets read, and the Chebyshev recipe's count for 2 and 7 elements.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._runner import Row
from benchmarks._timing import median, time_interleaved

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "emt_alloys" / "generate.py"
ELEMENTS = ("Al", "Ni", "Cu", "Pd", "Pt")
SETUPS = {
    "behler": {"descriptor_recipe": "behler"},
    "wacsf": {"descriptor_recipe": "wacsf"},
    "chebyshev+singlenn": {"descriptor_recipe": "chebyshev", "nn_kwargs": {"single": True}},
}


def _generate(folder, n_structures, elements, seed=0):
    path = Path(folder) / "alloys.extxyz"
    proc = subprocess.run([sys.executable, "-B", str(SCRIPT), "-n", str(n_structures), "--elements",
                           ",".join(elements), "--seed", str(seed), str(path)], capture_output=True, text=True,
                          timeout=1800, cwd=folder)
    if proc.returncode != 0:
        raise RuntimeError(f"generate.py failed: {proc.stderr[-300:]}")
    return path


def _fit(path, setup, epochs, cutoff):
    import torch

    from miniff.ml import unique_parameters
    from miniff.ml_util import FitWorkflow

    t0 = time.perf_counter()
    wf = FitWorkflow(seed=0)
    wf.prepare(str(path), test_set=0.2, forces=True, cutoff=cutoff, **SETUPS[setup])
    print(f"[elements] {setup}: prepared in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    wf.run(n_epochs=epochs, progress=False, summary=False,
           after_epoch=lambda w: print(f"[elements] {setup}: epoch {w.epoch} done at "
                                       f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    metrics = wf.metrics("test")
    counts = {s: len(d) for s, d in wf.descriptors.items()}
    n_parameters = len(torch.nn.utils.parameters_to_vector(unique_parameters(wf.nn)))
    print(f"[elements] {setup}: {max(counts.values())} descriptors, {n_parameters} parameters, {wall:.0f} s, "
          f"validation {1000 * metrics['energy_rmse']:.2f} meV/atom, "
          f"{1000 * metrics.get('force_rmse', float('nan')):.1f} meV/Å",
          file=sys.stderr, flush=True)
    return wf, wall, metrics, counts, n_parameters


def _descriptor_call(wf):
    """A callable evaluating the set-up's descriptors on the validation cells (lists prebuilt), and the atom
    count."""
    from miniff.kernel import NeighborWrapper
    from miniff.potentials import eval_descriptors

    cutoff = max(d.cutoff for v in wf.descriptors.values() for d in v)
    n_test = len(wf.datasets["test"].per_cell_dataset.energy)
    cells = wf.cells[-n_test:]
    wrappers = [NeighborWrapper(c, cutoff=cutoff) for c in cells]
    flat = [d for v in wf.descriptors.values() for d in v]

    def call():
        for nw in wrappers:
            eval_descriptors(nw, flat, ignore_missing_species=True)

    return call, sum(len(c.values) for c in cells)


def run(settings, n_structures=300, epochs=10, elements=ELEMENTS, cutoff=5.0):
    """Rows ``elements-fit`` and ``elements-descriptors`` (see the module docstring).

    Parameters
    ----------
    settings : TimingSettings
        Rounds of the interleaved descriptor timing.
    n_structures : int
        Structures generated (the issue's set: 300).
    epochs : int
        Epochs of every fit (each the default optimizer: 100 L-BFGS iterations per epoch).
    elements : sequence of str
        EMT elements of the alloys.
    cutoff : float or None
        Descriptor cutoff of every set-up, Å (None: the recipes' default, 6.35 Å). The Behler set's sparse
        Jacobian with forces needs about 2.5 GB per 100 structures at 5 Å (twice that at 6.35 Å).
    """
    fits = {}
    with tempfile.TemporaryDirectory(prefix="miniff-bench-elements-") as folder:
        path = _generate(folder, n_structures, elements)
        for setup in SETUPS:
            wf, wall, metrics, counts, n_parameters = _fit(path, setup, epochs, cutoff)
            fits[setup] = {"wf": wf, "wall": wall, "metrics": metrics, "counts": counts, "parameters": n_parameters}
    return rows_of_fits(fits, settings, n_structures, epochs, elements, cutoff)


def rows_of_fits(fits, settings, n_structures, epochs, elements, cutoff):
    """The rows and derived numbers of :func:`run` from its fits (``{setup: {"wf", "wall", "metrics", "counts",
    "parameters"}}``; ``wf`` needs only the cells, data sets and descriptors: the descriptor timing uses them).
    Also used to assemble set-ups fitted in separate processes (``benchmarks/README.md``)."""
    from miniff.ml_util import default_chebyshev_descriptors

    rows = []
    n_atoms = sum(len(c.values) for c in fits["behler"]["wf"].cells)
    calls = {}
    for setup, fit in fits.items():
        calls[setup], n_desc_atoms = _descriptor_call(fit["wf"])
    times, errors = time_interleaved(calls, settings)
    derived = {"n_structures": n_structures, "elements": list(elements), "epochs": epochs, "cutoff": cutoff}
    for setup, fit in fits.items():
        m = fit["metrics"]
        count = max(fit["counts"].values())
        energy, force = 1000 * m["energy_rmse"], 1000 * m.get("force_rmse", float("nan"))
        finite = energy == energy and force == force
        detail = (f"{count} descriptors per species; validation RMSE {energy:.2f} meV/atom, {force:.1f} meV/Å; "
                  f"{epochs} epochs")
        rows.append(Row("elements-fit", n_atoms, f"miniff {setup}", median_s=fit["wall"], runs_s=[fit["wall"]],
                        check=finite, check_detail=detail, threads="OpenMP (default) + torch",
                        note="prepare + run, one run"))
        t = times.get(setup) or []
        t_ref = times.get("behler") or []
        per_atom = median(t) / n_desc_atoms if t else None
        rows.append(Row("elements-descriptors", n_desc_atoms, f"miniff {setup}",
                        status="ok" if t else "error", median_s=median(t) if t else None, runs_s=t,
                        ratio=median(t) / median(t_ref) if t and t_ref else None, check=bool(t),
                        check_detail=f"{count} descriptors per species" if t else errors.get(setup, ""),
                        threads="OpenMP (default)",
                        note="values of the validation cells, lists prebuilt; ratio: time / time of behler"))
        derived[setup] = {"descriptors": count, "parameters": fit["parameters"], "fit_s": fit["wall"],
                          "energy_rmse_mev": energy, "force_rmse_mev": force,
                          "descriptor_us_per_atom": None if per_atom is None else 1e6 * per_atom}
    derived["chebyshev_count_2_to_7"] = [
        max(len(v) for v in default_chebyshev_descriptors(list(e), a=6.35).values())
        for e in (("Al", "Ni"), ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"))]
    return rows, {"setups": derived}
