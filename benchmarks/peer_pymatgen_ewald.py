"""Direct Ewald sums side by side with pymatgen's ``EwaldSummation`` (issue 19; a peer outside the harness).

The rattled NaCl cells of the ``ewald`` case (``bench_ewald.nacl_n``), with LAMMPS's splitting parameter for a
relative force accuracy of 1e-5 (``g_ewald`` 0.30821542 1/Å at these densities), a 10 Å real-space cutoff and
the reciprocal cutoff of LAMMPS's k-vectors (``kmax`` 9 at 1 000 ions, 18 at 8 000). pymatgen takes the same
cutoffs (its ``eta`` is ``g_ewald**2``; ``erfc(sqrt(eta) r)``); it builds dense N x N matrices, so it is run
at the sizes where it fits in memory and time. Timed: energy + forces from the positions, best of ``repeats``
for miniff and one run for pymatgen (seconds per call); checked: energies agree to 1e-6 relative and forces
to 1e-5 eV/Å (the same truncated sums; the k-vectors on the cutoff sphere and the erfc evaluations differ at
the 1e-8 level). Run::

    pip install pymatgen && python -m benchmarks.peer_pymatgen_ewald [--sizes 1000,8000]
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_ewald import QQR2E, R_CUT, _cell, _evaluate, _potential, nacl_n

G_EWALD = 0.30821542
KMAX = {1000: 9, 8000: 18}
OUT = Path(__file__).with_name("pymatgen_ewald_results.json")


def _pymatgen(atoms, eta, k_cut):
    from pymatgen.analysis.ewald import EwaldSummation
    from pymatgen.io.ase import AseAtomsAdaptor

    structure = AseAtomsAdaptor.get_structure(atoms)
    structure.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    t0 = time.perf_counter()
    ewald = EwaldSummation(structure, real_space_cut=R_CUT, recip_space_cut=k_cut, eta=eta * eta,
                           compute_forces=True)
    energy, forces = float(ewald.total_energy), np.asarray(ewald.forces)
    return energy, forces, time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,8000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = []
    for n in [int(x) for x in args.sizes.split(",") if x]:
        atoms = nacl_n(n)
        length = float(atoms.cell[0, 0])
        potential, cutoff = _potential(G_EWALD, [KMAX[n]] * 3, length)
        k_cut = 2 * math.pi * KMAX[n] / length * math.sqrt(1.00001)
        cell = _cell(atoms)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ev = _evaluate(cell, potential, cutoff)
            times.append(time.perf_counter() - t0)
        e_pm, f_pm, t_pm = _pymatgen(atoms, G_EWALD, k_cut)
        de = abs(ev.energy - e_pm) / abs(e_pm)
        df = float(np.abs(-np.asarray(ev.grad_nc) - f_pm).max())
        row = {"n": n, "miniff_s": min(times), "pymatgen_s": t_pm, "ratio": min(times) / t_pm,
               "energy_rel_diff": de, "force_max_diff_ev_per_a": df, "agrees": bool(de < 1e-6 and df < 1e-5)}
        rows.append(row)
        print(f"{n:6d} ions: miniff {row['miniff_s'] * 1e3:.1f} ms, pymatgen {t_pm:.2f} s (ratio {row['ratio']:.4f}); "
              f"energy rel diff {de:.1e}, max |dF| {df:.1e} eV/Å")
    out = {"rows": rows, "eta": G_EWALD, "scale": QQR2E, "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "load_average_1min": os.getloadavg()[0]}
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
