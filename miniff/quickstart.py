"""The README's main job: ``miniff quickstart [--quick] [--out DIR]`` (or ``python -m miniff.quickstart``).

1. fits a Behler-Parrinello NN potential to the energies and forces of the bundled Cu/Pt EMT data
   (:func:`miniff.ml_util.example_data_path`), 80 % training / 20 % validation (fixed seed);
2. keeps the networks of the epoch with the lowest validation energy RMSE and prints the fit's summary: why it
   stopped, training and validation RMSEs (energy in meV/atom, forces in
   meV/Å) next to the spread of the reference values, per structure group;
3. saves the potential as plain data (``cupt-nn.pt``) and reads it back;
4. relaxes a Pt(100) slab with two Cu adatoms with the fitted potential and compares the relaxed energy
   with EMT at the same geometry;
5. writes a parity plot (``parity.png``), the convergence plot (``convergence.png``), the per-epoch log
   (``fit.jsonl``) and the checkpoint (``fit.ckpt``) into the output folder (``./quickstart-out``).

``--quick`` uses a smaller data subset, fewer descriptors and epochs (seconds; used by the test suite).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main", "SETTINGS"]

#: Fit settings of the full and the quick run.
SETTINGS = {
    "full": {   # the defaults of FitWorkflow.prepare(forces=True), 14 epochs (docs/fit-your-data.md), but
        "cells_subset": None,   # 0.1.4's radial functions (6 centred at 0): the README's output and times were
        "cutoff": None,         # measured with them, before the default became 10 shifted Gaussians per pair
        "descriptors": {"n": 6, "left": 1, "shifted": False},
        "nn": None,
        "max_iter": 100,
        "n_epochs": 14,
        "select_best": "energy",   # keeps the epoch of lowest validation energy RMSE ("loss" is ruled by forces)
        "relax_maxiter": 500,
    },
    "quick": {
        "cells_subset": 24,
        "cutoff": 5.0,
        "descriptors": {"n": 4, "zeta": (1,), "eta3": 0.0},
        "nn": {"n_internal": 6, "n_layers": 2},
        "max_iter": 10,
        "n_epochs": 2,
        "select_best": "loss",
        "relax_maxiter": 10,
    },
}


def _parser(prog=None):
    description = ("Run the README's main job: fit an NN potential to the bundled Cu/Pt data, check it, relax a "
                   "slab and plot the fit.")
    p = argparse.ArgumentParser(prog=prog or "python -m miniff.quickstart", description=description)
    p.add_argument("--quick", action="store_true", help="a small, fast run (for tests)")
    p.add_argument("--out", default="quickstart-out", help="output folder (default: ./quickstart-out)")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (default: 14, --quick: 2)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def _slab():
    """Pt(100) 2x2x3 with two Cu hollow-site adatoms, 0.3 Å off their sites (a ``Cell``)."""
    from ase import Atom
    from ase.build import fcc100

    from miniff.io import read_cells

    atoms = fcc100("Pt", size=(2, 2, 3), vacuum=6.0)
    atoms.info.pop("adsorbate_info", None)
    top, a = atoms.positions[:, 2].max(), atoms.cell[0, 0] / 2
    atoms.append(Atom("Cu", (0.5 * a + 0.3, 0.5 * a, top + 2.2)))
    atoms.append(Atom("Cu", (1.5 * a, 1.5 * a - 0.3, top + 1.6)))
    atoms.pbc = True
    return read_cells([atoms], warn_missing_targets=False)[0]


def _emt_energy(cell):
    from ase.calculators.emt import EMT

    from miniff.io import cells_to_atoms

    atoms = cells_to_atoms([cell])[0]
    atoms.pbc = True
    atoms.calc = EMT()
    return float(atoms.get_potential_energy())


def _parity_plot(fit, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    from miniff import presentation

    axes = presentation.plot_parity({"training": fit.predict("learn"), "validation": fit.predict("test")})
    fig = axes[0].figure
    fig.savefig(path, dpi=110)
    pyplot.close(fig)


def _convergence_plot(log_file, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    from miniff import presentation

    columns = ["energy_rmse", "energy_rmse_valid", "force_rmse", "force_rmse_valid"]
    axes = presentation.plot_convergence(str(log_file), columns=columns)
    fig = axes[0].figure
    fig.savefig(path, dpi=110)
    pyplot.close(fig)


def main(argv=None, prog=None):
    """Run the quick start; returns the process exit code (0) and prints a summary.

    ``prog`` is the program name shown by ``--help`` (``"miniff quickstart"`` from the command line).
    """
    args = _parser(prog).parse_args(argv)
    settings = dict(SETTINGS["quick" if args.quick else "full"])
    if args.epochs is not None:
        if args.epochs < 1:
            raise SystemExit("--epochs must be positive")
        settings["n_epochs"] = args.epochs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from miniff import ml_util
    from miniff.kernel import NeighborWrapper, OptimizationWarning

    t_start = time.perf_counter()
    data = ml_util.example_data_path()
    print(f"data: {data.name} (Cu/Pt, EMT energies and forces)")
    fit = ml_util.FitWorkflow(seed=0)
    fit.prepare(str(data), cells_subset=settings["cells_subset"], cutoff=settings["cutoff"], forces=True,
                test_set=0.2, split_seed=0, default_descriptor_kwargs=settings["descriptors"],
                nn_kwargs=settings["nn"], closure_kwargs={"optimizer_kwargs": {"max_iter": settings["max_iter"]}},
                checkpoint=out / "fit.ckpt", resume=False)
    n_learn, n_test = (fit.datasets[k].n_samples for k in ("learn", "test"))
    n_desc = ", ".join(f"{s}: {len(v)}" for s, v in fit.descriptors.items())
    print(f"{n_learn} training + {n_test} validation structures; descriptors per species {n_desc}; "
          f"cutoff {fit.cutoff:.2f} Å")
    # run() prints the summary: epochs, time, why it stopped, the epoch kept, errors next to the data's spread
    fit.run(n_epochs=settings["n_epochs"], save_fn=str(out / "cupt-nn.pt"), log_file=out / "fit.jsonl",
            checkpoint_every=10, progress=False if args.no_progress else None, select_best=settings["select_best"],
            torch_threads=None)   # torch's threads (all cores): the force fit's Jacobian products are large

    potentials = ml_util.load_potentials(out / "cupt-nn.pt")
    print(f"saved {out / 'cupt-nn.pt'} ({len(potentials)} NN potentials, plain data) and read it back")
    slab = _slab()
    nw = NeighborWrapper(slab, cutoff=fit.cutoff)
    e0 = float(nw.total(potentials))
    with warnings.catch_warnings(record=True) as caught:  # a non-converged relaxation is reported below
        warnings.simplefilter("always", OptimizationWarning)
        relaxed = nw.relax(potentials, method="L-BFGS-B", options={"maxiter": settings["relax_maxiter"]})
    converged = not any(issubclass(w.category, OptimizationWarning) for w in caught)
    e1 = float(relaxed.meta["total-energy"])
    f_max = float(np.abs(relaxed.meta["forces"]).max())
    e_emt = _emt_energy(relaxed)
    status = "relaxed" if converged else f"relaxed ({settings['relax_maxiter']} steps, not converged)"
    print(f"{status} Pt(100) + 2 Cu: E = {e0:.3f} -> {e1:.3f} eV, max |F| = {1000 * f_max:.1f} meV/Å; "
          f"EMT at the relaxed geometry {e_emt:.3f} eV ({1000 * (e1 - e_emt) / relaxed.size:+.1f} meV/atom)")

    _parity_plot(fit, out / "parity.png")
    _convergence_plot(out / "fit.jsonl", out / "convergence.png")
    print(f"wrote {out / 'parity.png'}, {out / 'convergence.png'}, {out / 'fit.jsonl'}, {out / 'fit.ckpt'}")
    print(f"total wall time {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
