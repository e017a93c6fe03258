"""Fitted-charge electrostatics against the short-range NN alone: energy + forces of rattled NaCl (issue 19).

Two potentials on the same structure (rattled rock salt, ``bench_ewald.nacl_n``, 8 000 ions by default), both
timed from the positions (a ``NeighborWrapper`` with the descriptors' pair list, then one ``evaluate`` with
gradients, as the ASE calculator does):

- ``short-range``: one ``NNPotential`` per species (2 x 32 tanh hidden units) on 20 Behler descriptors per
  species (radial per neighbour species, angular per neighbour pair), cutoff 6 Å;
- ``short-range + charges``: the same, plus ``ewald_charge_wrapper_potential_family`` whose charges come from a
  second network per species on the same descriptors (mean subtracted: a neutral cell), Ewald real-space
  cutoff 10 Å at a requested accuracy of 1e-5 (the reciprocal grid from that accuracy); forces include the
  chain rule through the predicted charges.

The ratio (with charges / alone) is what fitted charges cost on top of a short-range NN. Before timing, the
forces of both are checked against central differences of their energies on a few components. Run::

    python -m benchmarks.bench_charge_wrapper [--n 8000] [--repeats 5] [--output charge_wrapper_results.json]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks import _miniff
from benchmarks.bench_ewald import nacl_n

SPECIES = ("Na", "Cl")
CUTOFF = 6.0
RADIAL_RS = (2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
ANGULAR = ((0.01, 1.0, 1.0), (0.01, 1.0, -1.0), (0.01, 4.0, 1.0), (0.01, 4.0, -1.0))
OUT = Path(__file__).with_name("charge_wrapper_results.json")


def _descriptors():
    from miniff.potentials import behler2_descriptor_family, behler5_descriptor_family

    out = {}
    for s in SPECIES:
        items = [behler2_descriptor_family(a=CUTOFF, eta=1.0, r_sphere=rs, tag=f"{s}-{t}")
                 for t in SPECIES for rs in RADIAL_RS]
        items += [behler5_descriptor_family(a=CUTOFF, eta=eta, zeta=zeta, l=lam, tag=f"{s}-{t1}-{t2}")
                  for t1, t2 in (("Na", "Na"), ("Na", "Cl"), ("Cl", "Cl")) for eta, zeta, lam in ANGULAR[:2]]
        items += [behler5_descriptor_family(a=CUTOFF, eta=eta, zeta=zeta, l=lam, tag=f"{s}-Na-Cl")
                  for eta, zeta, lam in ANGULAR[2:]]
        out[s] = items
    return out


def _networks(n_inputs, seed, scale):
    import torch

    torch.manual_seed(seed)
    nets = {}
    for s in SPECIES:
        net = torch.nn.Sequential(torch.nn.Linear(n_inputs, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32),
                                  torch.nn.Tanh(), torch.nn.Linear(32, 1)).double()
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(scale)
        nets[s] = net
    return nets


def potentials():
    """``(short_range, with_charges)``: lists of miniff potentials (see the module docstring)."""
    from miniff.ml import NNPotential
    from miniff.potentials import ewald_charge_wrapper_potential_family

    desc = _descriptors()
    n_inputs = len(desc["Na"])
    short = [NNPotential(net, desc[s], tag=s) for s, net in _networks(n_inputs, 0, 0.1).items()]
    charge_nets = [NNPotential(net, desc[s], tag=s) for s, net in _networks(n_inputs, 1, 1.0).items()]
    wrapper = ewald_charge_wrapper_potential_family(descriptors=charge_nets, a=10.0, eta=0.3, accuracy=1e-5)
    return short, short + [wrapper]


def _step(cell, pots, n_threads):
    from miniff.kernel import NeighborWrapper

    nw = NeighborWrapper(cell, cutoff=10.0 if len(pots) > 2 else CUTOFF, n_threads=n_threads)
    result = nw.evaluate(pots, grad=True)
    return float(result.energy), -np.asarray(result.grad_nc)


def _fd_check(cell, pots, n_threads, components=((0, 0), (7, 2)), h=1e-4):
    """Largest |force - central difference| over a few components (eV/Å)."""
    from miniff.kernel import Cell

    _, forces = _step(cell, pots, n_threads)
    worst = 0.0
    for atom, axis in components:
        e = []
        for sign in (1, -1):
            cart = cell.cartesian().copy()
            cart[atom, axis] += sign * h
            shifted = Cell(cell.vectors, cart @ np.linalg.inv(cell.vectors), cell.values)
            e.append(_step(shifted, pots, n_threads)[0])
        worst = max(worst, abs(forces[atom, axis] + (e[0] - e[1]) / (2 * h)))
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8000, help="ions (8 k^3)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="miniff threads (default: all cores)")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cell = _miniff.cell_from_atoms(nacl_n(args.n))
    short, charged = potentials()
    rows = {}
    check = {"fd_max_abs_ev_per_a": {}}
    for name, pots in (("short-range", short), ("short-range + charges", charged)):
        check["fd_max_abs_ev_per_a"][name] = _fd_check(cell, pots, args.threads)
    times = {name: [] for name in ("short-range", "short-range + charges")}
    for _ in range(args.repeats):   # interleaved
        for name, pots in (("short-range", short), ("short-range + charges", charged)):
            t0 = time.perf_counter()
            _step(cell, pots, args.threads)
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        rows[name] = {"median_s": float(np.median(ts)), "min_s": float(np.min(ts))}
    ratio = rows["short-range + charges"]["median_s"] / rows["short-range"]["median_s"]
    out = {"n_atoms": args.n, "rows": rows, "ratio_with_charges": ratio, "check": check,
           "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "load_average_1min": os.getloadavg()[0],
           "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    for name, r in rows.items():
        print(f"{name:24s} {r['median_s'] * 1e3:9.1f} ms (median of {args.repeats})  "
              f"FD check {check['fd_max_abs_ev_per_a'][name]:.1e} eV/Å")
    print(f"with charges / alone: {ratio:.2f}x at {args.n} ions")
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
