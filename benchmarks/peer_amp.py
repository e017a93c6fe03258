"""Amp itself on its Pt/Cu example, over many network seeds: the peer side of ``benchmarks.fitting_seeds``.

Amp's validation error on this 20-frame set swings with the seed of its initial weights (0.022-0.11 eV/atom),
so a handful of quoted seeds is not enough to compare with.  This script trains Amp 1.0.1 exactly as its manual's
example (``Gaussian()`` descriptors, ``NeuralNetwork(hiddenlayers=(10, 10, 10))``, energy RMSE 0.001 eV/atom, or
with forces 0.02 eV/atom and 0.03 eV/Å) on ``examples/amp_ptcu`` for each seed (``randomseed``) and writes
``benchmarks/amp_peer_results.json``, which ``python -m benchmarks.fitting_seeds`` puts next to miniff's seeds.

It does not import miniff and runs with Amp's own interpreter (Amp 1.0.1 needs numpy < 2 and a Fortran build);
``benchmarks/setup_amp.sh`` makes that environment in ``benchmarks/.amp-venv``::

    bash benchmarks/setup_amp.sh
    benchmarks/.amp-venv/bin/python benchmarks/peer_amp.py --seeds 0-39            # energy only, ~5 s a seed
    benchmarks/.amp-venv/bin/python benchmarks/peer_amp.py --forces --seeds 0-2    # ~6 min a seed

One process, one core (Amp's ``cores=1``); the fingerprints are computed by the first seed and shared by the
others (Amp's fingerprint database): ``time_train`` is ``Amp.train`` wall time, fingerprints included only where
``fingerprints_cached`` is false; ``time_fingerprints`` and ``time_fit`` are Amp's own timers of that call.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "examples" / "amp_ptcu"
OUT = HERE / "amp_peer_results.json"


def parse_seeds(text):
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


def rmse(values):
    return float(np.sqrt(np.mean(np.square(values))))


def errors(calc, images, forces):
    """Energy RMSE per atom (eV/atom) and, with ``forces``, force-component RMSE (eV/Å) of ``calc`` on ``images``."""
    e, f = [], []
    for atoms in images:
        ref_e = atoms.get_potential_energy(apply_constraint=False)
        ref_f = atoms.get_forces(apply_constraint=False)
        e.append((calc.get_potential_energy(atoms) - ref_e) / len(atoms))
        if forces:
            f.append((calc.get_forces(atoms) - ref_f).ravel())
    out = {"e": rmse(e)}
    if forces:
        out["f"] = rmse(np.concatenate(f))
    return out


def fit_seed(seed, forces, work):
    """Train Amp with network seed ``seed``; returns a dict of times (s) and errors (eV/atom, eV/Å)."""
    import ase.io
    from amp import Amp
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork

    train = ase.io.read(DATA / "train.extxyz", ":")
    valid = ase.io.read(DATA / "valid.extxyz", ":")
    label = work / f"seed{seed}" / "amp"
    calc = Amp(descriptor=Gaussian(), model=NeuralNetwork(hiddenlayers=(10, 10, 10), randomseed=seed), cores=1,
               label=str(label), dblabel=str(work / "fingerprints"))
    convergence = {"energy_rmse": 0.02, "force_rmse": 0.03} if forces else {"energy_rmse": 0.001, "force_rmse": None}
    calc.model.lossfunction = LossFunction(convergence=convergence)  # Amp's defaults otherwise (forces: 0.04)
    cached = (work / "fingerprints-fingerprints.ampdb").exists()
    t0 = time.perf_counter()
    calc.train(images=train)
    t_train = time.perf_counter() - t0
    timers = {key[-1]: v for key, v in calc.timer.timers.items()}   # Amp's own timer (ase.utils.timing)
    result = {"seed": seed, "forces": forces, "time_train": t_train, "fingerprints_cached": cached,
              "time_fingerprints": timers.get("calculate_fingerprints"), "time_fit": timers.get("fit model")}
    tr, va = errors(calc, train, forces), errors(calc, valid, forces)
    result.update(train_e=tr["e"], valid_e=va["e"])
    if forces:
        result.update(train_f=tr["f"], valid_f=va["f"])
    return result


def save(results, meta, path=OUT):
    """Merge ``results`` into ``path`` (replacing runs of the same seed and mode), atomically."""
    old = json.loads(path.read_text())["runs"] if path.exists() else []
    keep = [r for r in old if (r["seed"], r["forces"]) not in {(r2["seed"], r2["forces"]) for r2 in results}]
    runs = sorted(keep + results, key=lambda r: (r["forces"], r["seed"]))
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({"meta": meta, "runs": runs}, f, indent=1)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0-39", help="network seeds, e.g. 0-39 or 0,3,5 (default 0-39)")
    p.add_argument("--forces", action="store_true", help="train on energies and forces (Amp's second example)")
    args = p.parse_args(argv)
    try:
        import amp
        from amp import fmodules  # noqa: F401  (Amp silently falls back to slow Python without it)
    except ImportError as exc:
        sys.exit(f"needs Amp 1.0.1 with its Fortran modules ({exc}); run: bash benchmarks/setup_amp.sh")
    version = Path(amp.__file__).with_name("VERSION")
    meta = {"code": "Amp " + (version.read_text().strip() if version.exists() else "?"),
            "numpy": np.__version__, "python": sys.version.split()[0], "cores": 1}
    work = Path(tempfile.mkdtemp(prefix="amp_peer_"))
    try:
        os.chdir(work)
        results = []
        for seed in parse_seeds(args.seeds):
            r = fit_seed(seed, args.forces, work)
            results.append(r)
            text = f"seed {seed}: train {r['time_train']:.1f} s, energy RMSE train {r['train_e']:.5f} valid " \
                   f"{r['valid_e']:.5f} eV/atom"
            if args.forces:
                text += f", forces train {r['train_f']:.4f} valid {r['valid_f']:.3f} eV/Å"
            print(text, flush=True)
            save([r], meta)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
