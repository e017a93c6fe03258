"""Fitting the seed systems' own data sets, side by side with the seeds' numbers on this machine.

Runs the example jobs of ``examples/amp_ptcu`` (Amp's Pt/Cu EMT example, energy-only and with forces) and
``examples/pyfit_si`` (PyFit-FF's silicon set and its full set) through :class:`miniff.ml_util.FitWorkflow`
with the job files' own ``init``/``prepare`` sections, and measures the wall time to reach the anchor's
training error (descriptor computation included), the validation error there, and a learning curve
(validation error against wall time).  Writes ``benchmarks/FITTING.md`` (the table),
``benchmarks/fitting_results.json`` and ``benchmarks/fitting_<dataset>.png``::

    python -m benchmarks.fitting_seeds [--quick] [--only amp_energy pyfit_si ...] [--seeds 0 1 2]

The jobs run as written (``optimizer: compact_lbfgs``, which stops at the first function evaluation meeting
the job's convergence criteria), with three changes:

- one thread (``torch.set_num_threads(1)``, ``n_threads=1``, and ``threadpoolctl`` limits OpenBLAS/OpenMP pools),
  like the anchors (1 core);
- a wall-time budget per fit and, for the full silicon set, no convergence criterion (it runs the anchor's 527 s);
- the optimizer's ``callback`` records the learning curve (validation RMSE against wall time) and the time at
  which the anchor's training RMSE is reached; ``restore_best`` is off (the final networks are reported; the
  best validation point is read from the curve).

Wall times are ``time.perf_counter`` from the start of ``FitWorkflow.prepare`` (reading the data, neighbour
lists, descriptors, normalisation) to the stop; interpreter start-up and imports are not counted, and the
time spent evaluating validation errors for the learning curve is subtracted.
"""

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent

#: The anchors' own numbers on this machine (from the data folders' READMEs): times in s, errors in eV/atom
#: and eV/Å.
ANCHORS = {
    "amp_energy": {"code": "Amp 1.0.1", "setup": 1.7, "train": 4.2, "train_e": 0.00098, "valid_e": 0.030,
                   "valid_e_seeds": [0.030, 0.089, 0.028]},
    "amp_forces": {"code": "Amp 1.0.1", "setup": 1.7, "train": 375.0, "train_e": 0.00028, "train_f": 0.030,
                   "valid_e": 0.90, "valid_f": 16.2, "valid_e_seeds": [0.90, 0.20, 0.57]},
    "pyfit_si": {"code": "PyFit-FF", "setup": 3.5, "train": 26.5, "train_e": 0.00378, "valid_e": 0.00357,
                 "valid_e_seeds": [0.00357, 0.00293]},
    "pyfit_si_full": {"code": "PyFit-FF", "setup": 11.6, "train": 527.0, "train_e": 0.0093, "valid_e": 0.0099},
}

#: Benchmark cases: job file, time budget (s), seeds; ``target`` None runs the whole budget without the job's
#: convergence criteria (else the job's own criteria stop the fit), ``valid_target`` records when the validation
#: RMSE first reaches it (eV/atom).
CASES = {
    # 40 seeds: the validation error of this 20-frame set swings with the seed (Amp's too: peer_amp.py)
    "amp_energy": {"job": "examples/amp_ptcu/fit_energy.yml", "budget": 30.0, "seeds": list(range(40))},
    "amp_forces": {"job": "examples/amp_ptcu/fit_forces.yml", "budget": 380.0, "seeds": list(range(10))},
    # the job stops below the anchor's training error (about half of it): the validation error is then below the
    # anchor's too (at the anchor's own 3.78 meV/atom it was 3.9-4.7 meV/atom)
    "pyfit_si": {"job": "examples/pyfit_si/fit_si.yml", "budget": 60.0, "seeds": [0, 1, 2, 3]},
    # no stop: the best validation error in the anchor's 527 s, and the time to reach its 9.9 meV/atom
    "pyfit_si_full": {"job": "examples/pyfit_si/fit_si_full.yml", "target": None, "valid_target": 0.0099,
                      "budget": 527.0, "seeds": [0]},
}

#: Per-seed rows in the main table (the summary covers every seed).
TABLE_SEEDS = 5

#: Amp run here over many seeds by ``benchmarks/peer_amp.py`` (optional): case -> its ``forces`` flag.
PEER_AMP = OUT / "amp_peer_results.json"
PEER_CASES = {"amp_energy": False, "amp_forces": True}


def peer_runs(case, path=None):
    """Amp's own runs of ``case`` measured by ``benchmarks/peer_amp.py`` (a list, empty if none)."""
    path = PEER_AMP if path is None else path
    if case not in PEER_CASES or not Path(path).exists():
        return []
    return [r for r in json.loads(Path(path).read_text())["runs"] if r["forces"] == PEER_CASES[case]]


QUICK = {"amp_energy": (5.0, [0]), "amp_forces": (5.0, [0]), "pyfit_si": (5.0, [0]), "pyfit_si_full": (15.0, [0])}


# ---------------------------------------------------------------------------------------------- one fit
def warm_up():
    """Do the one-time lazy imports (ASE's readers, torch's optimizer machinery, SciPy) outside the clock."""
    import ase.io  # noqa: F401
    import scipy.optimize  # noqa: F401
    import torch

    import miniff.io  # noqa: F401
    from miniff import ml_util  # noqa: F401

    torch.optim.LBFGS([torch.zeros(1, requires_grad=True)])


def load_job(job):
    """The ``init``, ``prepare`` and ``run`` sections of the ``fit`` stage of a job file."""
    import yaml

    with open(job) as f:
        description = yaml.safe_load(f)
    fit = description["fit"]
    return dict(fit.get("init") or {}), dict(fit.get("prepare") or {}), dict(fit.get("run") or {})


def fit_case(name, seed=0, budget=None, job=None, target="default", curve_points=60, out_dir=None,
             cells_subset=None, test_set=None):
    """Fit one case with one seed; return a dict of timings, errors and the learning curve.

    Parameters
    ----------
    name : str
        A key of :data:`CASES`.
    seed : int
        Network initialisation seed (the split is the job file's).
    budget : float or None
        Wall-time budget, s (default: the case's).
    job : str or Path or None
        Job file (default: the case's example job); its optimizer must be ``compact_lbfgs``.
    target : "default", dict or None
        Convergence criteria (``energy_rmse`` eV/atom, ``force_rmse`` eV/Å): "default" = the job's (or None if the
        case says so); None: no criteria, run the whole budget.
    curve_points : int
        About this many validation points on the learning curve.
    out_dir : Path or None
        Where to save the fitted potentials (``<name>_seed<seed>.pt``); None: not saved.
    cells_subset, test_set : int or None
        Override the job's (shortened runs).
    """
    import torch

    from miniff import ml_util
    from miniff.fit.closures import error_metrics

    case = CASES[name]
    budget = case["budget"] if budget is None else float(budget)
    job = ROOT / case["job"] if job is None else Path(job)
    init, prepare, run = load_job(job)
    init.update(seed=seed, n_threads=1)
    prepare["fn_cells_root"] = str(job.parent)
    prepare.pop("checkpoint", None)
    if cells_subset is not None:   # the first cells of the job's own order (its split order for PyFit-FF)
        prepare["cells_subset"] = int(cells_subset)
    if test_set is not None:
        prepare["test_set"] = int(test_set)
    closure_kwargs = dict(prepare.get("closure_kwargs") or {})
    if target == "default":
        target = case["target"] if "target" in case else closure_kwargs.get("convergence")
    if target is None:
        closure_kwargs.pop("convergence", None)
    else:
        closure_kwargs["convergence"] = dict(target)
    prepare["closure_kwargs"] = closure_kwargs

    torch.set_num_threads(1)
    warm_up()
    clock = {"monitor": 0.0}
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    wf = ml_util.FitWorkflow(**init)
    wf.prepare(**prepare)
    t_prepare = time.perf_counter() - t0
    if not isinstance(wf.closure.optimizer, ml_util.CompactLBFGS):   # DenseBFGS is one too
        raise ValueError(f"{job}: the benchmark needs a job with optimizer: compact_lbfgs or bfgs")

    forces = bool(wf.forces)
    curve = []
    state = {"reached": None, "reached_cpu": None, "n_eval": 0, "anchor_train": None}
    anchor = ANCHORS[name]
    anchor_train = {"energy_rmse": anchor["train_e"], **({"force_rmse": anchor["train_f"]} if "train_f" in anchor
                                                         else {})}
    interval = min(budget, anchor["setup"] + anchor["train"]) / max(curve_points, 1)

    def elapsed():
        return time.perf_counter() - t0 - clock["monitor"]

    def monitor(closure, now, train):
        if curve and now - curve[-1]["time"] < interval:
            return
        t_m = time.perf_counter()
        point = {"time": now, "n_eval": state["n_eval"], "train_e": train["energy_rmse"]}
        if forces:
            point["train_f"] = train["force_rmse"]
        if "test" in wf.datasets:
            v = error_metrics(wf.nn, wf.datasets["test"], wf.normalization, forces=forces)
            point["valid_e"] = v["energy_rmse"]
            if forces:
                point["valid_f"] = v["force_rmse"]
        curve.append(point)
        clock["monitor"] += time.perf_counter() - t_m

    def callback(closure):
        """After every evaluation: record the anchor's and the target's first times, the curve; stop at the budget."""
        state["n_eval"] += 1
        now = elapsed()
        train = closure.last_rmse()
        if state["anchor_train"] is None and all(train[k] <= v for k, v in anchor_train.items() if k in train):
            state["anchor_train"] = now
        if target is not None and state["reached"] is None and closure.converged_last():
            state["reached"] = now
            state["reached_cpu"] = time.process_time() - cpu0 - clock["monitor"]
        monitor(closure, now, train)
        return now >= budget

    wf.closure.optimizer.callback = callback
    wf.run(n_epochs=int(run.get("n_epochs", 100)), save=False, progress=False, restore_best=False,
           after_epoch=lambda w: elapsed() < budget)
    t_total = elapsed()
    cpu_total = time.process_time() - cpu0 - clock["monitor"]

    train = wf.metrics("learn")
    result = {"case": name, "seed": seed, "budget": budget, "target": target, "time_prepare": t_prepare,
              "time_descriptors": wf.timings.get("descriptors"), "time_total": t_total,
              "time_to_target": state["reached"], "n_eval": state["n_eval"],
              "time_to_anchor_train": state["anchor_train"], "stop_reason": wf.stop_reason,
              "cpu_total": cpu_total, "cpu_to_target": state["reached_cpu"],
              "n_train": len(wf.datasets["learn"]), "n_valid": len(wf.datasets["test"]) if "test" in wf.datasets else 0,
              "n_inputs": {k: len(v) for k, v in wf.descriptors.items()},
              "n_parameters": int(sum(p.numel() for n in wf.nn for p in n.parameters())),
              "train_e": train["energy_rmse"], "curve": curve}
    if forces:
        result["train_f"] = train["force_rmse"]
    if "test" in wf.datasets:
        valid = wf.metrics("test")
        result["valid_e"] = valid["energy_rmse"]
        if forces:
            result["valid_f"] = valid["force_rmse"]
        curve.append({"time": t_total, "n_eval": state["n_eval"], "train_e": result["train_e"],
                      "valid_e": result["valid_e"], **({"train_f": result["train_f"], "valid_f": result["valid_f"]}
                                                      if forces else {})})
        best = min(curve, key=lambda p: p["valid_e"])
        result["best_valid_e"], result["best_valid_time"] = best["valid_e"], best["time"]
        vt = case.get("valid_target")
        if vt is not None:
            hit = [p["time"] for p in curve if p["valid_e"] <= vt]
            result["time_to_valid_target"] = hit[0] if hit else None
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        wf.save_potentials(out_dir / f"{name}_seed{seed}.pt")
    return result


# ---------------------------------------------------------------------------------------------- report
def _fmt(x, unit="", scale=1.0, digits=3):
    if x is None:
        return "–"
    return f"{x * scale:.{digits}g}{unit}"


def _target_text(target):
    parts = []
    if "energy_rmse" in target:
        parts.append(_fmt(target["energy_rmse"], " meV/atom", 1000))
    if "force_rmse" in target:
        parts.append(_fmt(target["force_rmse"], " eV/Å"))
    return ", ".join(parts)


def _at_time(r, t):
    """Training RMSE of the last learning-curve point at or before ``t`` (s)."""
    pts = [p for p in r.get("curve", []) if p["time"] <= t]
    if not pts:
        return "–"
    p = pts[-1]
    text = f"{_fmt(p['train_e'], scale=1000)} meV/atom"
    if "train_f" in p:
        text += f", {_fmt(p['train_f'])} eV/Å"
    return text + f" ({p['time']:.2g} s)"


def write_report(results, out_dir=OUT, quick=False, machine=None):
    """Write ``FITTING.md`` and one ``fitting_<dataset>.png`` per data set from ``results`` (a list)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Fitting the seeds' own data sets (miniff vs Amp and PyFit-FF)", ""]
    if quick:
        lines += ["**Quick run (`--quick`): short budgets, one seed; not the reference numbers.**", ""]
    lines += [
        "Written by `python -m benchmarks.fitting_seeds`. Jobs: `examples/amp_ptcu/fit_energy.yml`, "
        "`fit_forces.yml`, `examples/pyfit_si/fit_si.yml`, `fit_si_full.yml`, run as written (optimizer "
        "`compact_lbfgs`, stopping at the job's convergence criteria) with one thread and a time budget; the full "
        "set runs its budget without criteria. "
        "Times are wall times on this shared 2-core machine, from reading the data "
        "to the stop (the anchor's training RMSE, or a lower one where the stop column says so), descriptors "
        "included. Anchor times: setup (fingerprints) + "
        "training, measured on the same machine by the data folders' READMEs.",
        "",
        "| data set | seed | anchor time (s) | miniff time (s) | ratio | miniff CPU (s) | evaluations "
        "| train RMSE (miniff / anchor) | validation RMSE (miniff / anchor) | parameters | stop "
        "| miniff train RMSE at 0.1 x anchor time | time to the anchor's train RMSE (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    shown = [r for r in results if [q["seed"] for q in results if q["case"] == r["case"]].index(r["seed"])
             < TABLE_SEEDS]
    for r in shown:
        a = ANCHORS[r["case"]]
        t_anchor = a["setup"] + a["train"]
        t_ours = r["time_to_target"] if r.get("time_to_target") is not None else r["time_total"]
        cpu = r.get("cpu_to_target") if r.get("time_to_target") is not None else r.get("cpu_total")
        if r.get("time_to_target") is not None:
            stop = "target reached" + ("" if r["target"] is None or all(
                r["target"].get(k) == v for k, v in (("energy_rmse", a["train_e"]), ("force_rmse", a.get("train_f")))
                if k in r["target"]) else f" (stop at {_target_text(r['target'])})")
        elif r["time_total"] < 0.99 * r["budget"]:
            stop = f"{r.get('stop_reason', 'fit stopped')} (budget {r['budget']:.0f} s)"
        else:
            stop = f"budget {r['budget']:.0f} s"
        seeds = a.get("valid_e_seeds")
        anchor_valid = _fmt(a["valid_e"], scale=1000) + (f" (seeds: {', '.join(_fmt(v, scale=1000) for v in seeds)})"
                                                          if seeds else "")
        train = f"{_fmt(r['train_e'], scale=1000)} / {_fmt(a['train_e'], scale=1000)} meV/atom"
        valid = f"{_fmt(r.get('valid_e'), scale=1000)} / {anchor_valid} meV/atom"
        if "train_f" in r:
            train += f"; {_fmt(r['train_f'])} / {_fmt(a['train_f'])} eV/Å"
            valid += f"; {_fmt(r.get('valid_f'))} / {_fmt(a['valid_f'])} eV/Å"
        if r["case"] == "pyfit_si_full":
            best = _fmt(r.get("best_valid_e"), scale=1000)
            valid += (f"; best {best} meV/atom at {r.get('best_valid_time', 0):.0f} s"
                      f"; ≤ 9.9 meV/atom after {_fmt(r.get('time_to_valid_target'), ' s')}")
        lines.append(f"| {r['case']} | {r['seed']} | {a['setup']:.1f} + {a['train']:.1f} | "
                     f"{r['time_prepare']:.2f} + {t_ours - r['time_prepare']:.2f} | {t_ours / t_anchor:.3f} | "
                     f"{_fmt(cpu)} | {r['n_eval']} | "
                     f"{train} | {valid} | {r['n_parameters']} | {stop} | {_at_time(r, 0.1 * t_anchor)} | "
                     f"{_fmt(r.get('time_to_anchor_train'))} |")
    lines += ["", "miniff time = prepare (read + neighbours + descriptors + normalisation) + optimisation, wall "
              "clock; CPU = process CPU time over the same span (one thread; it shows how much of the wall time "
              "the busy machine took away). Evaluations = loss + gradient evaluations of the optimizer. "
              "Ratio = miniff wall time / anchor wall time (the target is ≤ 0.1). "
              f"The table shows the first {TABLE_SEEDS} seeds of each data set; the summary below covers all.", ""]
    lines += _summary(results)
    machine = machine or {}
    if machine.get("loadavg_at_start"):
        load = ", ".join(f"{x:.1f}" for x in machine["loadavg_at_start"])
        lines += [f"Load average when the last run started: {load} on {machine.get('cpus')} CPUs.", ""]
    lines += ["Learning curves (validation RMSE against wall time): " + ", ".join(
        f"`fitting_{c}.png`" for c in sorted({r['case'] for r in results})), ""]
    (out_dir / "FITTING.md").write_text("\n".join(lines))
    _plots(results, out_dir)
    return out_dir / "FITTING.md"


def _summary(results):
    """Per data set over its seeds: the range and median of the time ratio and of the validation errors, next to
    the anchor's seeds (the validation of these small sets swings with the seed)."""
    lines = ["## Over the seeds", "",
             "| data set | seeds | time ratio (min / median / max) | validation energy RMSE, meV/atom (miniff "
             "median, mean (range) / anchor the same) | validation force RMSE, eV/Å (miniff / anchor, the same) |",
             "|---|---|---|---|---|"]
    for case in [c for c in CASES if any(r["case"] == c for r in results)]:
        rs = [r for r in results if r["case"] == case]
        a = ANCHORS[case]
        t_anchor = a["setup"] + a["train"]
        ratios = [(r["time_to_target"] if r.get("time_to_target") is not None else r["time_total"]) / t_anchor
                  for r in rs]
        ve = [1000 * r["valid_e"] for r in rs if r.get("valid_e") is not None]
        peers = peer_runs(case)
        ae = [1000 * p["valid_e"] for p in peers] or [1000 * v for v in a.get("valid_e_seeds", [a["valid_e"]])]

        def stats(v, digits=3):
            return (f"{np.median(v):.{digits}g}, mean {np.mean(v):.{digits}g} ({min(v):.{digits}g}–"
                    f"{max(v):.{digits}g})") if v else "–"

        vf = [r["valid_f"] for r in rs if r.get("valid_f") is not None]
        af = [p["valid_f"] for p in peers if p.get("valid_f") is not None] or [a.get("valid_f")]
        forces = f"{stats(vf)} / {stats(af) if None not in af else '–'}" if vf else "–"
        anchor_seeds = f"{len(peers)} seeds run here" if peers else "quoted seeds"
        lines.append(f"| {case} | {_seed_text([r['seed'] for r in rs])} | "
                     f"{min(ratios):.3f} / {np.median(ratios):.3f} / {max(ratios):.3f} | "
                     f"{stats(ve)} / {stats(ae)} ({anchor_seeds}) | {forces} |")
    lines += ["", "Anchor validation: Amp's seeds measured here by `benchmarks/peer_amp.py` (Amp 1.0.1 with its "
              "Fortran modules, its manual's example, `randomseed` = seed; `benchmarks/amp_peer_results.json`) where "
              "present, else the seeds quoted in the data folders' READMEs.", ""]
    return lines + _time_quantiles(results)


def peer_times(runs):
    """Amp's wall time per seed, s: its fit plus the fingerprints every fresh run computes (Amp's own timers; the
    first uncached seed's fingerprint time, as the others read them from its database).  Runs recorded without
    timers count ``Amp.train``'s wall time, plus that fingerprint time (or the anchor's) where they were cached."""
    measured = [p["time_fingerprints"] for p in runs if not p.get("fingerprints_cached") and p.get("time_fit")]
    fingerprints = measured[0] if measured else ANCHORS["amp_energy"]["setup"]
    return [p["time_fit"] + fingerprints if p.get("time_fit") is not None
            else p["time_train"] + (fingerprints if p.get("fingerprints_cached") else 0.0) for p in runs]


def _time_quantiles(results):
    """Time to the anchor's criteria over the seeds, quantile against quantile with Amp's seeds run here (the
    slow seeds of both codes are the tail: compare the distributions, not one anchor seed)."""
    qs = (50, 75, 90, 100)
    rows = []
    for case in PEER_CASES:
        rs = [r for r in results if r["case"] == case and r.get("time_to_target") is not None]
        amp = peer_times(peer_runs(case))
        if not rs or not amp:
            continue
        ours = [r["time_to_target"] for r in rs]
        cells = [f"{np.percentile(ours, q):.2f} s / {np.percentile(amp, q):.1f} s = "
                 f"{np.percentile(ours, q) / np.percentile(amp, q):.3f}" for q in qs]
        rows.append(f"| {case} | {len(ours)}, {len(amp)} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    header = "| data set | seeds (miniff, Amp) | " + " | ".join(f"{q}%" if q < 100 else "max" for q in qs) + " |"
    return ["Time to the anchor's criteria, quantile against quantile over the seeds (miniff / Amp run here "
            "= ratio; Amp: its fit + its fingerprints):", "", header, "|---|---|" + "---|" * len(qs), *rows, ""]


def _seed_text(seeds):
    """``[0, 1, 2, 3, 7]`` -> ``"0–3, 7"``."""
    parts, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            parts.append(f"{start}" if s == start else f"{start}–{s}")
            start = None
    return ", ".join(parts)


def _plots(results, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for case in sorted({r["case"] for r in results}):
        a = ANCHORS[case]
        fig, ax = pyplot.subplots(figsize=(6, 4))
        for r in [r for r in results if r["case"] == case][:TABLE_SEEDS]:
            if not r["curve"]:
                continue
            pts = [p for p in r["curve"] if "valid_e" in p]
            ax.plot([p["time"] for p in pts], [1000 * p["valid_e"] for p in pts], label=f"miniff seed {r['seed']}")
        ax.axhline(1000 * a["valid_e"], color="k", ls="--", lw=1, label=f"{a['code']} validation")
        ax.axvline(a["setup"] + a["train"], color="k", ls=":", lw=1, label=f"{a['code']} time")
        ax.axvline(0.1 * (a["setup"] + a["train"]), color="r", ls=":", lw=1, label="0.1 x anchor time")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("validation energy RMSE (meV/atom)")
        ax.set_title(case)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / f"fitting_{case}.png", dpi=100)
        pyplot.close(fig)


def _machine():
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "loadavg_at_start": load}


def _one_thread_fit(name, seed, budget):
    """:func:`fit_case` with every native thread pool (OpenBLAS, OpenMP) limited to one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return fit_case(name, seed=seed, budget=budget)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.fitting_seeds", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short budgets, one seed (a smoke run)")
    p.add_argument("--only", nargs="+", choices=sorted(CASES), help="run only these cases")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the case's)")
    p.add_argument("--budget", type=float, help="wall-time budget per fit, s (default: the case's)")
    p.add_argument("--out", default=str(OUT), help="output folder (default: benchmarks/)")
    p.add_argument("--fresh", action="store_true", help="drop earlier results of other cases")
    p.add_argument("--report-only", action="store_true", help="rewrite FITTING.md and the plots from the JSON")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "fitting_results.json"
    if args.report_only:
        data = json.loads(store.read_text())
        results = data["results"]
        report = write_report(results, out, quick=any(r.get("quick") for r in results), machine=data["machine"])
        print(f"wrote {report}")
        return 0
    from threadpoolctl import threadpool_limits

    # one native thread for the whole run; after warm_up, which loads SciPy's own OpenBLAS (a limit only reaches
    # libraries already loaded). With 2 OpenBLAS threads L-BFGS-B's iterations were up to 20x slower here.
    warm_up()
    threadpool_limits(limits=1)
    names = args.only or list(CASES)
    results = []
    machine = _machine()
    for name in names:
        budget, seeds = (QUICK[name] if args.quick else (CASES[name]["budget"], CASES[name]["seeds"]))
        seeds = args.seeds or seeds
        budget = args.budget or budget
        for seed in seeds:
            r = _one_thread_fit(name, seed, budget)
            r["quick"] = bool(args.quick)
            results.append(r)
            print(f"{name} seed {seed}: {r['time_total']:.2f} s (to target: {_fmt(r['time_to_target'])}), "
                  f"train {1000 * r['train_e']:.3g} meV/atom, valid {1000 * r.get('valid_e', math.nan):.3g} meV/atom"
                  + (f", forces {r['train_f']:.3g} / {r['valid_f']:.3g} eV/Å" if "train_f" in r else ""), flush=True)
    previous = []   # read at the end: another run (e.g. the long full-set fit) may have written meanwhile
    if store.exists() and not args.fresh:
        previous = json.loads(store.read_text()).get("results", [])
    kept = [r for r in previous if r["case"] not in names]
    merged = sorted(kept + results, key=lambda r: (list(CASES).index(r["case"]), r["seed"]))
    tmp = store.with_name(store.name + ".tmp")
    tmp.write_text(json.dumps({"machine": machine, "anchors": ANCHORS, "results": merged}, indent=1))
    os.replace(tmp, store)
    report = write_report(merged, out, quick=any(r.get("quick") for r in merged), machine=machine)
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
