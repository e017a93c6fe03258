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


def _cu_frames(n_frames, temperature, seed, size=2, every=10):
    """Frames of an EMT Langevin MD of fcc Cu (``4 size^3`` atoms), labelled with EMT."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(size)
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


def _fit_committee(frames, n_epochs, seed):
    fit_cls = _miniff.require("ml_util", "FitWorkflow")
    fit = fit_cls(seed=seed)
    fit.prepare(frames, forces=True, cutoff=5.0, test_set=0, default_descriptor_kwargs={"n": 5},
                nn_kwargs={"n_internal": 10, "n_layers": 2}, committee={"members": 3, "processes": 1})
    fit.run(n_epochs=n_epochs, summary=False, progress=False)
    return fit.build_potentials()


def _force_rmse(potentials, held):
    force_errors = _miniff.require("ml", "committee_force_errors")
    return float(np.sqrt(np.mean(force_errors(potentials, held)[1] ** 2)))


def learning_efficiency(seeds=(0, 1), n_initial=10, step=10, n_random=(10, 25, 50, 100), max_active=100,
                        n_epochs=20):
    """Held-out force RMSE against the number of labelled structures: committee-spread selection vs random.

    The pool: frames of EMT Langevin MD of 32-atom Cu at 300, 600, 900 and 1200 K (every 10 steps); held-out
    frames come from other trajectories at the same temperatures.  Both start from the same ``n_initial`` random
    pool frames.  Random selection adds random pool frames; active learning refits a K = 3 committee and adds
    the ``step`` pool frames with the largest maximum per-atom force spread (``committee_spread``), until its
    held-out error reaches random selection's at ``n_random[-1]`` labelled structures (or ``max_active``).
    """
    spread = _miniff.require("ml", "committee_spread")
    read_cells = _miniff.require("io", "read_cells")
    nw_cls = _miniff.require("kernel", "NeighborWrapper")
    temps = (300, 600, 900, 1200)
    pool = [f for t, temp in enumerate(temps) for f in _cu_frames(30, temp, seed=10 + t)]
    held = [f for t, temp in enumerate(temps) for f in _cu_frames(5, temp, seed=20 + t)]
    pool_cells = read_cells(pool)
    out = []
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(pool))
        random_curve = {n: _force_rmse(_fit_committee([pool[i] for i in order[:n]], n_epochs, seed), held)
                        for n in n_random}
        target = random_curve[n_random[-1]]
        chosen, active_curve = list(order[:n_initial]), {}
        while True:
            pots = _fit_committee([pool[i] for i in chosen], n_epochs, seed)
            active_curve[len(chosen)] = _force_rmse(pots, held)
            if active_curve[len(chosen)] <= target or len(chosen) >= max_active:
                break
            left = [i for i in range(len(pool)) if i not in set(chosen)]
            scores = [spread(nw_cls(pool_cells[i], cutoff=5.0), pots, stress=False).forces_std.max() for i in left]
            chosen += [left[j] for j in np.argsort(scores)[::-1][:step]]
        reached = [n for n, e in active_curve.items() if e <= target]
        out.append({"seed": seed, "random": random_curve, "active": active_curve,
                    "active_labelled_to_match_random": min(reached) if reached else None})
    return out


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
        derived["learning_efficiency"] = learning_efficiency(**(learning_kwargs or {}))
    return rows, derived
