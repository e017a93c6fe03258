"""Committees: the cost of K = 5 members against one, and how well the spread ranks the errors.

``committee-cost``: energy + forces of a K = 5 ``CommitteePotential`` (the benchmark network 16 -> 32 -> 32 -> 1
with 5 seeds, the descriptor set of the kernel issue) against one member alone, 1k Si atoms, both from positions
(pair list included).  Check before timing: the committee's energy and forces equal the mean of the five members
evaluated one by one (relative 1e-10).

``calibration`` (a derived number, no timing): a K = 5 committee (bootstrap resampling) fitted with
``FitWorkflow`` to EMT copper (32-atom cells from 300 K Langevin MD), then ``miniff.ml.calibrate_committee`` on
held-out frames of 600 K and 900 K MD: the Spearman rank correlation of per-atom force spread and force error
and the calibration factor.

``learning_efficiency`` (derived, full profile only): held-out force RMSE against the number of labelled
structures for committee-spread selection and for random selection from the same pool of MD frames.
"""

import numpy as np

from benchmarks import _miniff
from benchmarks._peers import DESCRIPTOR_SPEC, make_network
from benchmarks._runner import run_comparison
from benchmarks._structures import si_diamond_n

K_MEMBERS = 5


def _tool(atoms, potentials, members):
    def factory():
        nw_cls = _miniff.require("kernel", "NeighborWrapper")
        cell = _miniff.cell_from_atoms(atoms)

        def energy_forces(pots):
            nw = nw_cls(cell, cutoff=DESCRIPTOR_SPEC["cutoff"])
            return float(nw.total(pots)), -np.asarray(nw.grad(pots))

        check = {"value": energy_forces(potentials)}
        if members is not None:
            each = [energy_forces([m]) for m in members]
            check["mean"] = (float(np.mean([e for e, _ in each])), np.mean([f for _, f in each], axis=0))

        def run():
            energy_forces(potentials)
            return check

        return run

    return factory


def _check(outputs):
    committee = outputs.get("miniff")
    if committee is None:
        return {}
    (e, f), (e_ref, f_ref) = committee["value"], committee["mean"]
    ok = abs(e - e_ref) <= 1e-10 * max(1.0, abs(e_ref)) and np.allclose(f, f_ref, rtol=1e-10, atol=1e-12)
    text = f"committee E {e:.10f} vs mean of members {e_ref:.10f} eV; forces max diff {np.abs(f - f_ref).max():.2e}"
    return {"miniff": (ok, text), "one member": (True, "")}


def _cu_frames(n_frames, temperature, seed, size=2, every=10, cubic=True):
    """Frames of an EMT Langevin MD of fcc Cu (``4 size^3`` atoms with the cubic cell, ``size^3`` with the
    primitive one), labelled with EMT."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin

    atoms = bulk("Cu", "fcc", a=3.61, cubic=cubic).repeat(size)
    atoms.rattle(0.05, seed=seed)
    atoms.calc = EMT()
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.05 / units.fs, fixcm=False,
                   rng=np.random.default_rng(seed))
    frames = []
    for _ in range(n_frames):
        dyn.run(every)
        frame = atoms.copy()
        frame.calc = EMT()
        frame.get_forces()
        frames.append(frame)
    return frames


def calibration(n_train=24, n_held=8, n_epochs=30):
    """Spearman correlation and factor of a K = 5 committee on held-out hotter MD frames of EMT Cu."""
    calibrate_committee = _miniff.require("ml", "calibrate_committee")
    fit_cls = _miniff.require("ml_util", "FitWorkflow")
    train = _cu_frames(n_train, 300, seed=1)
    held = _cu_frames(n_held, 600, seed=2) + _cu_frames(n_held, 900, seed=3)
    fit = fit_cls(seed=0)
    fit.prepare(train, forces=True, cutoff=5.0, test_set=0.1, default_descriptor_kwargs={"n": 5},
                nn_kwargs={"n_internal": 10, "n_layers": 2},
                committee={"members": K_MEMBERS, "bootstrap": True, "processes": "auto"})
    fit.run(n_epochs=n_epochs, summary=False, progress=False)
    cal = calibrate_committee(fit.build_potentials(), held)
    return {"spearman": cal.spearman, "factor": cal.factor, "n_atoms": int(cal.forces_std.size),
            "held_out_force_rmse": float(np.sqrt(np.mean(cal.force_error ** 2)))}


#: The committee of the learning-efficiency runs: K = 3 members of 2 x 20 hidden units on Behler descriptors
#: (6 radial + angular, 5 Å): ~1 000 parameters per member, which 10 labelled 8-atom frames (240 force
#: components) do not determine.
LEARNING_FIT = {"cutoff": 5.0, "default_descriptor_kwargs": {"n": 6}, "nn_kwargs": {"n_internal": 20, "n_layers": 2}}


def _fit_committee(frames, n_epochs, seed, fit_kwargs=None):
    fit_cls = _miniff.require("ml_util", "FitWorkflow")
    fit = fit_cls(seed=seed)
    fit.prepare(frames, forces=True, test_set=0, committee={"members": 3, "processes": 1},
                **(fit_kwargs or {"cutoff": 5.0, "default_descriptor_kwargs": {"n": 5},
                                  "nn_kwargs": {"n_internal": 10, "n_layers": 2}}))
    fit.run(n_epochs=n_epochs, summary=False, progress=False)
    return fit.build_potentials()


def _force_rmse(potentials, held):
    force_errors = _miniff.require("ml", "committee_force_errors")
    return float(np.sqrt(np.mean(force_errors(potentials, held)[1] ** 2)))


def _select_active(pots, pool, left, step, trajectory_of, balance):
    """``step`` pool positions among ``left`` chosen as the active-learning workflow chooses frames: the spread
    and extrapolation count of each frame from ``MiniffCalculator`` (as ``explore`` records them), then
    ``select_frames`` (largest maximum per-atom force spread first, extrapolating frames too, no near-duplicates,
    with ``balance``: in rounds over the MD trajectories, ``trajectory_of(pool position)``)."""
    calc_cls = _miniff.require("calculator", "MiniffCalculator")
    committees_of = _miniff.require("ml.committee", "committees_of")
    candidate_cls, select_frames = _miniff.require("fit.active_steps", "Candidate", "select_frames")
    calc, candidates = calc_cls(pots), []
    for i in left:
        atoms = pool[i].copy()
        atoms.calc = calc
        atoms.get_forces()
        res = calc.results
        candidates.append(candidate_cls(atoms, float(np.max(res["forces_std"])),
                                        int(res.get("n_extrapolating_atoms", 0)), i, trajectory_of(i)))
    selected, _ = select_frames(candidates, committees_of(pots), threshold=0.0, max_frames=step,
                                balance_trajectories=balance)
    return [c.source for c in selected]


def learning_efficiency(seeds=(0, 1, 2), n_initial=10, step=10, n_random=(10, 25, 50, 100), max_active=50,
                        n_epochs=8, pool_per_temperature=50, held_per_temperature=5, balance_trajectories=False,
                        progress=True):
    """Held-out force RMSE against the number of labelled structures: committee-spread selection vs random.

    The pool: ``pool_per_temperature`` frames of EMT Langevin MD of 8-atom Cu cells (the primitive fcc cell
    repeated 2 x 2 x 2) at each of 300, 600, 900 and 1200 K (every 10 steps of 2 fs; 200 frames by default, so
    random selection at 100 takes half the pool).  Small cells make every labelled structure count: with
    32-atom cells 10 frames already hold 960 force components and the held-out error no longer falls between 10
    and 100 labelled structures (measured: 0.0143 and 0.0141 eV/Å), so nothing could tell the selections apart;
    held-out frames come from other trajectories at the same temperatures.  Every fit is a fresh K = 3 committee
    (``n_epochs`` epochs of the default full-batch optimizer).  Both curves start from the same ``n_initial``
    random pool frames (one permutation per seed).  Random selection labels the next frames of that permutation;
    active learning refits and adds ``step`` pool frames chosen by ``select_frames`` of the active-learning
    workflow, until its held-out error reaches random selection's at ``n_random[-1]`` labelled structures (or
    ``max_active``, by default 50: the target's bound).  Random selection's largest count is fitted first (the
    target).  ``balance_trajectories``: the option of ``select_frames`` (frames in rounds over the four
    trajectories).  The fits are deterministic: a second run gives the same numbers.
    """
    import time

    temps = (300, 600, 900, 1200)
    pool = [f for t, temp in enumerate(temps) for f in _cu_frames(pool_per_temperature, temp, seed=10 + t, cubic=False)]
    held = [f for t, temp in enumerate(temps) for f in _cu_frames(held_per_temperature, temp, seed=20 + t, cubic=False)]
    out = []
    t0 = time.perf_counter()

    def say(text):
        if progress:
            print(f"[learning_efficiency {time.perf_counter() - t0:7.0f} s] {text}", flush=True)

    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(pool))
        fitted = {}

        def random_at(n, seed=seed, order=order, fitted=fitted):
            if n not in fitted:
                fitted[n] = _fit_committee([pool[i] for i in order[:n]], n_epochs, seed, LEARNING_FIT)
                say(f"seed {seed} random {n}: {_force_rmse(fitted[n], held):.4f} eV/A")
            return fitted[n]

        random_curve = {n_random[-1]: _force_rmse(random_at(n_random[-1]), held)}   # the target first
        target = random_curve[n_random[-1]]
        chosen, active_curve = [int(i) for i in order[:n_initial]], {}
        pots = random_at(n_initial)   # both curves start from the same fit
        while True:
            active_curve[len(chosen)] = _force_rmse(pots, held)
            say(f"seed {seed} active {len(chosen)}: {active_curve[len(chosen)]:.4f} eV/A (target {target:.4f})")
            if active_curve[len(chosen)] <= target or len(chosen) >= max_active:
                break
            taken = set(chosen)
            chosen += _select_active(pots, pool, [i for i in range(len(pool)) if i not in taken], step,
                                     lambda i: i // pool_per_temperature, balance_trajectories)
            pots = _fit_committee([pool[i] for i in chosen], n_epochs, seed, LEARNING_FIT)
        for n in n_random:
            random_curve[n] = _force_rmse(random_at(n), held)
        random_curve = dict(sorted(random_curve.items()))
        reached = [n for n, e in active_curve.items() if e <= target]
        out.append({"seed": seed, "random": random_curve, "active": active_curve,
                    "active_temperatures": [temps[i // pool_per_temperature] for i in chosen[n_initial:]],
                    "active_labelled_to_match_random": min(reached) if reached else None})
    return out


LEARNING_RESULTS = "uncertainty_results.json"
LEARNING_PLOT = "uncertainty_learning.png"


def write_learning_results(runs, settings, out_dir=None, balanced_runs=None):
    """Write ``benchmarks/uncertainty_results.json`` (the runs, the settings, the machine; ``balanced_runs``: the
    runs with ``balance_trajectories=True``, if any) and the plot ``benchmarks/uncertainty_learning.png``
    (held-out force RMSE against labelled structures, every seed)."""
    import json
    import os
    import time
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(__file__).resolve().parent if out_dir is None else Path(out_dir)
    data = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_1min": os.getloadavg()[0],
            "settings": settings, "runs": runs}
    if balanced_runs:
        data["runs_balance_trajectories"] = balanced_runs
    tmp = out_dir / (LEARNING_RESULTS + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(out_dir / LEARNING_RESULTS)
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, r in enumerate(runs):
        color = f"C{k}"
        for key, style in (("random", "o--"), ("active", "s-")):
            points = sorted((int(n), e) for n, e in r[key].items())
            ax.plot([n for n, _ in points], [e for _, e in points], style, color=color,
                    label=f"{key}, seed {r['seed']}")
        ax.axhline(r["random"][max(r["random"], key=int)], color=color, lw=0.6, ls=":")
    for k, r in enumerate(balanced_runs or []):
        points = sorted((int(n), e) for n, e in r["active"].items())
        ax.plot([n for n, _ in points], [e for _, e in points], "^:", color=f"C{k}", alpha=0.6,
                label=f"active, balanced, seed {r['seed']}")
    ax.set_xlabel("labelled structures (8-atom EMT Cu frames)")
    ax.set_ylabel("held-out force RMSE (eV/Å)")
    ax.set_title("Active (committee spread) vs random selection\n(dotted: random's error at its largest count)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / LEARNING_PLOT, dpi=100)
    plt.close(fig)
    return out_dir / LEARNING_RESULTS


def run(settings, sizes, calibrate=True, calibration_kwargs=None, learning=False, learning_kwargs=None):
    """Committee cost rows (ratio = committee time / one member's time) and the calibration numbers."""
    import torch

    committee_cls = _miniff.require("ml", "CommitteePotential")
    descriptors = _miniff.behler_descriptors(DESCRIPTOR_SPEC)
    members = [_miniff.nn_potentials(make_network(dtype=torch.float64, seed=s).double(), descriptors)[0]
               for s in range(K_MEMBERS)]
    committee = [committee_cls(members)]
    rows = []
    for n in sizes:
        atoms = si_diamond_n(n)
        factories = {"miniff": _tool(atoms, committee, members), "one member": _tool(atoms, [members[0]], None)}
        rows += run_comparison("committee-cost", len(atoms), factories, _check, settings,
                               notes={"miniff": f"K = {K_MEMBERS} committee, float64",
                                      "one member": "one NNPotential, float64"})
    derived = {"calibration": calibration(**(calibration_kwargs or {}))} if calibrate else {}
    if learning:
        runs = learning_efficiency(**(learning_kwargs or {}))
        derived["learning_efficiency"] = runs
        write_learning_results(runs, dict(learning_kwargs or {}))
    return rows, derived


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the learning-efficiency benchmark alone (writes "
                                     f"benchmarks/{LEARNING_RESULTS} and benchmarks/{LEARNING_PLOT})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8, help="epochs of every committee fit")
    parser.add_argument("--pool", type=int, default=50, help="pool frames per temperature")
    parser.add_argument("--max-active", type=int, default=50,
                        help="stop active learning at this many labelled structures (50: just the target's verdict)")
    parser.add_argument("--out-dir", default=None, help="folder of the results file and plot (default: benchmarks/)")
    parser.add_argument("--balance-trajectories", action="store_true",
                        help="select_frames(balance_trajectories=True): frames in rounds over the trajectories")
    args = parser.parse_args()
    kwargs = {"balance_trajectories": args.balance_trajectories, "seeds": tuple(args.seeds), "n_epochs": args.epochs,
              "pool_per_temperature": args.pool, "max_active": args.max_active}
    print(write_learning_results(learning_efficiency(**kwargs), kwargs, args.out_dir))
