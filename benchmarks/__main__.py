"""Command line: ``python -m benchmarks run [--quick] [--only CASES]`` and ``python -m benchmarks report``."""

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from benchmarks import RESULTS_SCHEMA
from benchmarks._env import environment
from benchmarks._report import format_table, update_readme, write_json
from benchmarks._runner import Row
from benchmarks._targets import evaluate_targets
from benchmarks._timing import TimingSettings, Unavailable

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results.json"
README = HERE / "README.md"

#: Case name -> module (each has ``run(settings, **sizes) -> (rows, derived)``).
CASES = {
    "neighbors": "benchmarks.bench_neighbors",
    "descriptors": "benchmarks.bench_descriptors",
    "nn": "benchmarks.bench_nn",
    "md": "benchmarks.bench_md",
    "training": "benchmarks.bench_training",
    "lammps": "benchmarks.bench_lammps",
    "workflow": "benchmarks.bench_workflow",
    "ewald": "benchmarks.bench_ewald",
    "uncertainty": "benchmarks.bench_uncertainty",
    "store": "benchmarks.bench_store",
    "elements": "benchmarks.bench_elements",
    "distributed": "benchmarks.bench_distributed",
}

#: Sizes per profile and case (keyword arguments of the case's ``run``), and the timing settings.
PROFILES = {
    "smoke": {
        "settings": TimingSettings(warmup=0, repeat=5),
        "neighbors": {"sizes": [64]},
        "descriptors": {"sizes": [64], "threads_n": 64},
        "nn": {"sizes": [64]},
        "md": {"sizes": [64]},
        "training": {"n_structures": 4, "reps": (1, 1, 1)},
        "lammps": {"sw_sizes": [64], "lj_sizes": [256], "steps": 2, "lj_solo_sizes": [500]},
        "workflow": {"quick_job": True, "epochs": 6},
        "ewald": {"sizes": [64], "steps": 1, "mesh_sizes": [64], "scaling_sizes": [64, 512]},
        "uncertainty": {"sizes": [64], "calibrate": False},
        "store": {"n_structures": 8, "batch_sizes": [4], "memory_counts": [], "workers": (1,)},
        "elements": {"n_structures": 10, "epochs": 1},
        "distributed": {"n_structures": 8, "batch_size": 4, "epochs": 1},
    },
    "quick": {
        "settings": TimingSettings(warmup=1, repeat=5),
        "neighbors": {"sizes": [1000, 8000], "ase_max": 1000},
        "descriptors": {"sizes": [1000], "threads_n": 1000},
        "nn": {"sizes": [1000]},
        "md": {"sizes": [1000]},
        "training": {"n_structures": 20, "reps": (2, 2, 2)},
        "lammps": {"sw_sizes": [8000], "lj_sizes": [32000], "steps": 5},
        "workflow": {"quick_job": True, "epochs": 6},
        "ewald": {"sizes": [1000], "mesh_sizes": [8000]},
        "uncertainty": {"sizes": [1000], "calibration_kwargs": {"n_train": 12, "n_held": 6, "n_epochs": 10}},
        "store": {"n_structures": 64, "batch_sizes": [8, 64], "memory_counts": [100, 400]},
        "elements": {"n_structures": 60, "epochs": 5},
        "distributed": {"n_structures": 256, "batch_size": 32, "epochs": 2},
    },
    "full": {
        "settings": TimingSettings(warmup=1, repeat=7),
        "neighbors": {"sizes": [1000, 8000, 64000, 216000], "solo_sizes": [1_000_000], "ase_max": 64000},
        "descriptors": {"sizes": [1000, 8000], "threads_n": 8000},
        "nn": {"sizes": [1000]},
        "md": {"sizes": [1000, 10000]},
        "training": {"n_structures": 200, "reps": (2, 2, 2)},
        "lammps": {"sw_sizes": [8000, 64000], "lj_sizes": [32000, 256000], "steps": 10,
                   "lj_solo_sizes": [1_000_000]},
        "workflow": {"quick_job": False},
        "ewald": {"sizes": [1000, 8000], "mesh_sizes": [8000, 64000],
                  "scaling_sizes": [8000, 64000, 216000, 1000000]},
        "uncertainty": {"sizes": [1000], "learning": True},
        "store": {"n_structures": 256, "batch_sizes": [8, 16, 32, 64], "memory_counts": [1000, 10000]},
        "elements": {"n_structures": 300, "epochs": 10},
        "distributed": {"n_structures": 2000, "batch_size": 32, "epochs": 3},
    },
}


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmarks, print the table, write results.json")
    run.add_argument("--quick", action="store_true", help="small sizes (< 3 minutes in total)")
    run.add_argument("--profile", choices=sorted(PROFILES), default=None,
                     help="size profile (default: full; --quick = quick; smoke = tiny sizes for the test suite)")
    run.add_argument("--only", default=None, help=f"comma-separated cases among: {','.join(CASES)}")
    run.add_argument("--output", default=str(DEFAULT_OUTPUT), help="where to write the JSON results")
    run.add_argument("--readme", action="store_true", help="also write the table into benchmarks/README.md")
    run.add_argument("--update", action="store_true",
                     help="keep the rows and derived numbers of the other cases of the existing --output file "
                          "(replace only what this run measured)")
    rep = sub.add_parser("report", help="print (and optionally write into the README) saved results")
    rep.add_argument("--input", default=str(DEFAULT_OUTPUT))
    rep.add_argument("--readme", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "run":
        if args.quick and args.profile not in (None, "quick"):
            parser.error("--quick and --profile disagree")
        args.profile = "quick" if args.quick else (args.profile or "full")
        cases = list(CASES) if args.only is None else [c.strip() for c in args.only.split(",") if c.strip()]
        unknown = [c for c in cases if c not in CASES]
        if unknown:
            parser.error(f"unknown case(s) {', '.join(unknown)}; choose among {', '.join(CASES)}")
        args.cases = cases
    return args


#: Row statuses of a miniff row that make ``run`` exit with an error: miniff itself did not run.
FAILED_MINIFF_STATUSES = ("not available yet", "error")


class MiniffNotBuilt(RuntimeError):
    """Neither the source tree nor an installed package offers miniff with its compiled core."""


def _is_under(path, root):
    try:
        Path(path).resolve().relative_to(root)
    except ValueError:
        return False
    return True


def locate_miniff(root=HERE.parent):
    """Import miniff with its compiled core and return the folder of the package it was imported from.

    ``python -m benchmarks`` runs from the repository root, which puts the source folder ``miniff/`` first on
    ``sys.path``. That folder is used when its compiled core is built in place (``tools/build.sh``); when it is
    not, the source folder is taken off ``sys.path`` and the installed package (``pip install .``) is measured
    instead. Subprocesses started by the cases (the main job) get the same package through ``PYTHONPATH``.

    Raises
    ------
    MiniffNotBuilt
        With what to run, when neither is importable.
    """
    root = Path(root).resolve()
    errors = []
    for attempt in ("as found", "installed"):
        try:
            import miniff
            import miniff.kernel  # noqa: F401  (imports the compiled core)
        except ImportError as exc:
            errors.append(f"{attempt}: {exc}".splitlines()[0])
            for name in [m for m in sys.modules if m == "miniff" or m.startswith("miniff.")]:
                del sys.modules[name]
            sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != root]
            importlib.invalidate_caches()
            continue
        location = Path(miniff.__file__).resolve().parent
        parent = str(location.parent)
        if _is_under(location, root):  # the in-place build: subprocesses must see it too
            paths = [parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        else:  # the installed package: keep the unbuilt source folder off subprocesses' paths
            paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                     if p and not (Path(p) / "miniff").is_dir()]
        if paths:
            os.environ["PYTHONPATH"] = os.pathsep.join(paths)
        else:
            os.environ.pop("PYTHONPATH", None)
        return location
    raise MiniffNotBuilt(
        "miniff with its compiled core cannot be imported (" + "; ".join(errors) + "). Install it with "
        "`pip install .` (or build the source tree in place with `bash tools/build.sh`), then run "
        "`python -m benchmarks run` again from the repository root.")


def failed_miniff_rows(rows):
    """The miniff rows (dicts) whose status says miniff itself did not run (:data:`FAILED_MINIFF_STATUSES`)."""
    return [r for r in rows if r["tool"].startswith("miniff") and r["status"] in FAILED_MINIFF_STATUSES]


def run_cases(profile, cases, log=print):
    """Run ``cases`` with the sizes of ``profile`` and return the results dict (see README)."""
    config = PROFILES[profile]
    settings = config["settings"]
    rows, derived = [], {}
    start = time.perf_counter()
    env = environment()
    for case in cases:
        t0 = time.perf_counter()
        log(f"[benchmarks] {case} ...", flush=True)
        try:
            module = importlib.import_module(CASES[case])
            case_rows, case_derived = module.run(settings=settings, **config[case])
        except Unavailable as exc:  # the case needs a peer's file or tool that is not installed
            case_rows = [Row(case, 0, "miniff", status="skipped", note=str(exc))]
            case_derived = {}
        except Exception as exc:  # a broken case is reported as a row, the others still run
            case_rows = [Row(case, 0, "miniff", status="error", note=f"{type(exc).__name__}: {exc}")]
            case_derived = {}
        rows += case_rows
        if case_derived:
            derived[case] = case_derived
        log(f"[benchmarks] {case} done in {time.perf_counter() - t0:.1f} s", flush=True)
    row_dicts = [r.to_dict() for r in rows]
    return {
        "schema": RESULTS_SCHEMA,
        "profile": profile,
        "cases": cases,
        "repeat": settings.repeat,
        "warmup": settings.warmup,
        "environment": env,
        "rows": row_dicts,
        "derived": derived,
        "targets": evaluate_targets(row_dicts, derived),
        "wall_s": time.perf_counter() - start,
    }


def update_results(previous, results):
    """``results`` with the rows and derived numbers of ``previous`` (an earlier results dict) that it does not
    replace: a row is replaced when this run has rows of its ``case`` name, a ``derived`` entry when this run
    measured that case.  The targets are judged again on the union; ``updated`` lists what was kept (cases and
    the date of their run)."""
    if previous.get("schema") != results["schema"]:
        raise ValueError(f"cannot update results of schema {previous.get('schema')!r} with schema {results['schema']}")
    new_row_cases = {r["case"] for r in results["rows"]}
    kept_rows = [r for r in previous.get("rows", []) if r["case"] not in new_row_cases]
    kept_derived = {c: v for c, v in previous.get("derived", {}).items() if c not in results["cases"]}
    merged = {**previous, **results}
    merged["rows"] = kept_rows + results["rows"]
    merged["derived"] = {**kept_derived, **results["derived"]}
    merged["cases"] = [c for c in previous.get("cases", []) if c not in results["cases"]] + list(results["cases"])
    merged["targets"] = evaluate_targets(merged["rows"], merged["derived"])
    kept = [c for c in previous.get("cases", []) if c not in results["cases"]]
    merged["updated"] = list(previous.get("updated", [])) + [
        {"kept_cases": kept, "kept_from": (previous.get("environment") or {}).get("date"),
         "new_cases": list(results["cases"]), "new_date": (results.get("environment") or {}).get("date")}]
    return merged


def _print_results(results):
    print(format_table(results["rows"]))
    for case, values in results["derived"].items():
        print(f"{case}: {values}")
    for t in results["targets"]:
        print(f"issue {t['issue']}: {t['target']}: {t['measured']} -> {t['verdict']}")


def main(argv=None):
    """Entry point of ``python -m benchmarks``."""
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    # Idle OpenMP threads sleep instead of spinning (libgomp, used by miniff and torch alike): on a busy,
    # oversubscribed machine spinning threads slow parallel regions down by 10-50x. Export
    # OMP_WAIT_POLICY=ACTIVE to measure with spinning threads. Set before miniff or torch are imported.
    os.environ.setdefault("MINIFF_BENCH_USER_OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", ""))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = _parse(sys.argv[1:] if argv is None else argv)
    failed = []
    if args.command == "run":
        try:
            location = locate_miniff()
        except MiniffNotBuilt as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        previous = None
        if args.update and os.path.exists(args.output):   # read before the run: a bad file stops it at once
            import json

            try:
                with open(args.output) as f:
                    previous = json.load(f)
                if not isinstance(previous, dict) or previous.get("schema") != RESULTS_SCHEMA:
                    raise ValueError(f"not a results file of schema {RESULTS_SCHEMA}")
            except (OSError, ValueError) as exc:
                print(f"error: --update: cannot read {args.output} ({exc})", file=sys.stderr)
                return 2
        print(f"[benchmarks] measuring miniff {_miniff_version()} from {location}", flush=True)
        results = run_cases(args.profile, args.cases)
        results["environment"]["miniff_location"] = str(location)
        if previous is not None:
            results = update_results(previous, results)
        write_json(results, args.output)
        _print_results(results)
        print(f"results written to {args.output} ({results['wall_s']:.1f} s)")
        failed = failed_miniff_rows(results["rows"])
    else:
        import json

        with open(args.input) as f:
            results = json.load(f)
        _print_results(results)
    if args.readme:
        update_readme(str(README), results)
        print(f"table written into {README}")
    if failed:
        print(f"error: {len(failed)} miniff row(s) did not run:", file=sys.stderr)
        for r in failed:
            print(f"  {r['case']} (N={r['n_atoms']}, {r['tool']}): {r['status']}: {r['note']}", file=sys.stderr)
        return 1
    return 0


def _miniff_version():
    import miniff

    return getattr(miniff, "__version__", "?")


if __name__ == "__main__":
    sys.exit(main())
