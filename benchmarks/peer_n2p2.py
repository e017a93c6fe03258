"""miniff's :func:`miniff.io.read_n2p2` against n2p2's own ``nnp-predict`` on n2p2's published example potentials.

n2p2 (github.com/CompPhysVienna/n2p2, GPL-3) is run as an external program on a checkout of its repository;
nothing of it is copied into miniff.  Build it first with ``benchmarks/setup_n2p2.sh``::

    bash benchmarks/setup_n2p2.sh /path/to/n2p2
    python -m benchmarks.peer_n2p2 --n2p2 /path/to/n2p2            # H2O_RPBE-D3 and Cu2S_PBE

For every example folder (``examples/nnp-predict/<name>``) the script copies the folder to a scratch
directory, runs ``nnp-predict 0`` there (0: without its slow per-atom ``structure.out`` report; energies in
``energy.out``, forces in ``nnforces.out``, in the files' units), evaluates the same structures with miniff
(files' units converted to eV and Å exactly with ``miniff.units``), and writes the differences and wall times
to ``benchmarks/n2p2_peer_results.json``.
With ``--4g`` it also runs the 4G-HDNNP examples (``Carbon_chain_4G``, ``H2O_RPBE-D3_4G``, ``AlAuMgO_4G``) and
compares the energy, charges and forces of ``nnp-predict``'s ``output.data`` (full precision, files' units)
with miniff's (target 1e-8 each; energies per atom), under the key ``"4g"`` (``--examples ""`` skips the 2G
examples; results of examples not rerun are kept in the output file).
Agreement targets: 1e-9 eV/atom for the energy, 1e-8 eV/Å for every force component.  The times are one
process each: ``nnp-predict`` from start to exit (reading the files, the neighbour list, the symmetry
functions, the networks and writing its outputs; n2p2's default build has no OpenMP), and that time minus the
same program on one atom per element (``time_nnp_predict_marginal_s``: about the neighbour list, symmetry
functions, networks and output of the example structure; ``nnp-predict`` predicts the first structure of
``input.data`` only); miniff from positions to forces (neighbour list, symmetry functions, networks; reading
the potential files not included; best of ``--repeats``).

``--threads 1,2`` times miniff at each thread count (``n_threads``) and, with ``--lammps``, n2p2's library
``libnnp`` through LAMMPS ``pair_style hdnnp`` at the same count (``OMP_NUM_THREADS``; build that LAMMPS and an
OpenMP libnnp with ``benchmarks/setup_lammps_hdnnp.sh``): the example structure as a LAMMPS data file (Å, eV,
``units metal``, ``cflength``/``cfenergy`` converting to the files' units), ``run 0`` (its energy and forces are
compared with miniff too), then ``run`` blocks of ``--steps`` force evaluations without an integrator and with
the neighbour list rebuilt at every step (``neigh_modify every 1 delay 0 check no``, skin 0): LAMMPS's "Loop
time" per step is libnnp's time from positions to forces including the neighbour list, without reading files
(best block kept).  ``--nnp-predict`` names another n2p2 build whose ``bin/nnp-predict`` is timed at those thread
counts too (the OpenMP one of ``setup_lammps_hdnnp.sh``).
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "n2p2_peer_results.json"
#: example folder -> (length unit, energy unit) of its files
EXAMPLES = {"H2O_RPBE-D3": ("bohr", "hartree"), "Cu2S_PBE": ("angstrom", "eV"),
            # molecular models with the compact functions (types 20 and 22); units assumed Bohr/Hartree
            "Ethylbenzene_SCAN": ("bohr", "hartree"), "Anisole_SCAN": ("bohr", "hartree"),
            "DMABN_SCAN": ("bohr", "hartree")}
TARGET_ENERGY = 1e-9  # eV/atom
TARGET_FORCE = 1e-8  # eV/Å


def read_structures(path):
    """``[(lattice [3, 3] or None, positions [N, 3], elements)]`` of an n2p2 ``input.data`` (files' units)."""
    out, lattice, pos, elements = [], [], [], []
    for line in Path(path).read_text().splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "begin":
            lattice, pos, elements = [], [], []
        elif words[0] == "lattice":
            lattice.append([float(x) for x in words[1:4]])
        elif words[0] == "atom":
            pos.append([float(x) for x in words[1:4]])
            elements.append(words[4])
        elif words[0] == "end":
            out.append((np.array(lattice) if lattice else None, np.array(pos), elements))
    return out


def read_predictions(folder):
    """Energies ``[S]`` and per-structure forces ``[N, 3]`` printed by ``nnp-predict`` (files' units)."""
    rows = [line.split() for line in (folder / "energy.out").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    energies = [float(r[3]) for r in rows]
    forces = {}
    for line in (folder / "nnforces.out").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            w = line.split()
            forces.setdefault(int(w[0]), []).append([float(x) for x in w[5:8]])
    return energies, [np.array(forces[k]) for k in sorted(forces)]


def miniff_side(folder, length_unit, energy_unit, structures, repeats, n_threads=None):
    from miniff import io, units
    from miniff.kernel import Cell, NeighborWrapper

    length = units.BOHR if length_unit == "bohr" else 1.0
    energy = units.HARTREE if energy_unit == "hartree" else 1.0
    pots = io.read_n2p2(folder, length_unit=length_unit, energy_unit=energy_unit)
    cutoff = max(p.cutoff for p in pots)
    results, times = [], []
    for lattice, pos, elements in structures:
        cart = pos * length
        if lattice is None:
            span = np.ptp(cart, axis=0) + 2 * cutoff + 1.0
            vectors, pbc = np.diag(span), False
            cart = cart - cart.min(0) + cutoff
        else:
            vectors, pbc = lattice * length, True
        best = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            nw = NeighborWrapper(Cell(vectors, cart @ np.linalg.inv(vectors), elements), pbc=pbc, cutoff=cutoff,
                                 n_threads=n_threads)
            ev = nw.evaluate(pots, grad=True)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        times.append(best)
        results.append((ev.energy, -ev.grad_nc, sum(p.last_extrapolations for p in pots)))
    return results, times, energy, energy / length


def run_nnp_predict(exe, source, work, threads=None):
    """Run ``nnp-predict 0`` on a copy of the example folder ``source`` in ``work`` (``OMP_NUM_THREADS=threads``
    if given); returns ``(energies, forces, extrapolation warnings, whole-program seconds, fixed seconds)``, the
    fixed cost being the same program on one atom per element without periodic images."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    shutil.copytree(source, work)
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), "0"], cwd=work, capture_output=True, text=True, env=env)
    t_total = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"nnp-predict failed in {work}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    ref_e, ref_f = read_predictions(work)
    warnings = proc.stdout.count("### NNP EXTRAPOLATION WARNING")
    tiny, seen = ["begin"], set()
    for line in (source / "input.data").read_text().splitlines():
        w = line.split()
        if w and w[0] == "atom" and w[4] not in seen:
            seen.add(w[4])
            tiny.append(" ".join(w[:5] + ["0.0", "0.0", "0.0", "0.0", "0.0"]))
    (work / "input.data").write_text("\n".join(tiny + ["energy 0.0", "charge 0.0", "end"]) + "\n")
    t0 = time.perf_counter()
    subprocess.run([str(exe), "0"], cwd=work, capture_output=True, check=True, env=env)
    return ref_e, ref_f, warnings, t_total, time.perf_counter() - t0


def run_example(n2p2, name, repeats):
    length_unit, energy_unit = EXAMPLES[name]
    source = n2p2 / "examples" / "nnp-predict" / name
    with tempfile.TemporaryDirectory() as tmp:
        ref_e, ref_f, n2p2_extrapolations, t_n2p2, t_fixed = run_nnp_predict(n2p2 / "bin" / "nnp-predict", source,
                                                                              Path(tmp) / name)
        t_marginal = max(t_n2p2 - t_fixed, 0.0)
    structures = read_structures(source / "input.data")
    ours, times, e_unit, f_unit = miniff_side(source, length_unit, energy_unit, structures, repeats)
    rows = []
    for (e, f, extra), t, e_ref, f_ref, (_, pos, _) in zip(ours, times, ref_e, ref_f, structures, strict=True):
        n = len(pos)
        rows.append({
            "atoms": n, "energy_ev": e, "energy_n2p2_ev": e_ref * e_unit,
            "energy_diff_ev_per_atom": abs(e - e_ref * e_unit) / n,
            "force_max_diff_ev_per_a": float(np.abs(f - f_ref * f_unit).max()),
            "force_max_ev_per_a": float(np.abs(f).max()),
            "miniff_extrapolations": extra, "n2p2_extrapolation_warnings": n2p2_extrapolations,
            "time_miniff_s": t, "time_nnp_predict_s": t_n2p2, "time_nnp_predict_marginal_s": t_marginal,
            "us_per_atom_miniff": 1e6 * t / n, "us_per_atom_nnp_predict_total": 1e6 * t_n2p2 / n,
            "us_per_atom_nnp_predict_marginal": 1e6 * t_marginal / n,
        })
    return {"files": f"{length_unit}/{energy_unit}", "structures": rows,
            "agrees": all(r["energy_diff_ev_per_atom"] <= TARGET_ENERGY and r["force_max_diff_ev_per_a"] <= TARGET_FORCE
                          for r in rows)}


MASSES = {"H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "S": 32.06, "Cu": 63.546}


def write_lammps_data(path, vectors, positions, elements, order):
    """A LAMMPS ``atomic`` data file (Å) of a periodic cell whose vectors are lower triangular (LAMMPS's
    restricted triclinic form), positions wrapped into the cell; atom type ``k + 1`` is ``order[k]``."""
    vectors = np.asarray(vectors, dtype=float)
    if abs(vectors[0, 1]) + abs(vectors[0, 2]) + abs(vectors[1, 2]) > 1e-12 * np.abs(vectors).max():
        raise ValueError("write_lammps_data needs lower-triangular cell vectors (a along x, b in the xy plane)")
    frac = np.mod(np.asarray(positions, dtype=float) @ np.linalg.inv(vectors), 1.0)
    cart = frac @ vectors
    (ax, _, _), (bx, by, _), (cx, cy, cz) = vectors.tolist()
    lines = ["n2p2 example for miniff's peer benchmark", "", f"{len(elements)} atoms", f"{len(order)} atom types", "",
             f"0.0 {ax!r} xlo xhi", f"0.0 {by!r} ylo yhi", f"0.0 {cz!r} zlo zhi", f"{bx!r} {cx!r} {cy!r} xy xz yz",
             "", "Masses", ""] + [f"{k + 1} {MASSES[e]}" for k, e in enumerate(order)] + ["", "Atoms # atomic", ""]
    lines += [f"{n + 1} {order.index(e) + 1} {x!r} {y!r} {z!r}" for n, ((x, y, z), e) in
              enumerate(zip(cart.tolist(), elements, strict=True))]
    Path(path).write_text("\n".join(lines) + "\n")


def lammps_side(lmp, folder, length_unit, energy_unit, structure, threads, steps, blocks):
    """n2p2's libnnp through LAMMPS ``pair_style hdnnp`` on one periodic structure (files' units) with
    ``OMP_NUM_THREADS=threads``: ``(energy eV, forces [N, 3] eV/Å, best seconds per force evaluation)``."""
    from miniff import units

    length = units.BOHR if length_unit == "bohr" else 1.0
    energy = units.HARTREE if energy_unit == "hartree" else 1.0
    lattice, pos, elements = structure
    order = sorted(set(elements), key=elements.index)
    cutoff = max(p.cutoff for p in _read(folder, length_unit, energy_unit))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(folder, work / "nnp")
        write_lammps_data(work / "cell.data", lattice * length, pos * length, elements, order)
        script = ["units metal", "boundary p p p", "atom_style atomic", "read_data cell.data",
                  f"pair_style hdnnp {cutoff!r} dir nnp showew no showewsum 0 resetew no maxew 100000000 "
                  f"cflength {1.0 / length!r} cfenergy {1.0 / energy!r}",
                  f"pair_coeff * * {' '.join(order)}", "neighbor 0.0 bin", "neigh_modify every 1 delay 0 check no",
                  "thermo_style custom step pe", "thermo_modify format float %.17g", "run 0",
                  "write_dump all custom forces.dump id fx fy fz modify sort id format float %.17g"]
        script += [f"run {steps}"] * blocks
        (work / "in.lmp").write_text("\n".join(script) + "\n")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        proc = subprocess.run([str(lmp), "-in", "in.lmp", "-log", "log.lmp", "-screen", "none"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=3600)
        log = (work / "log.lmp").read_text() if (work / "log.lmp").exists() else ""
        if proc.returncode:
            raise RuntimeError(f"LAMMPS failed in {work}:\n{log[-2000:]}\n{proc.stderr[-2000:]}")
        lines = log.splitlines()
        k = next(k for k, line in enumerate(lines) if line.split()[:2] == ["Step", "PotEng"])
        e = float(lines[k + 1].split()[1])
        rows = (work / "forces.dump").read_text().splitlines()
        start = next(k for k, line in enumerate(rows) if line.startswith("ITEM: ATOMS")) + 1
        forces = np.array([[float(x) for x in line.split()[1:4]] for line in rows[start:]])
    loops = [float(m) for m in re.findall(r"Loop time of ([0-9.eE+-]+) on", log)][1:]  # the first is run 0
    return e, forces, min(loops) / steps


def _read(folder, length_unit, energy_unit):
    from miniff import io

    return io.read_n2p2(folder, length_unit=length_unit, energy_unit=energy_unit)


def run_speed(n2p2, name, threads, repeats, lammps=None, nnp_predict=None, steps=5, blocks=3):
    """Side-by-side times of the first structure of an example at every thread count of ``threads``: miniff
    from positions to forces, libnnp through LAMMPS (``lammps``: its ``lmp``) and ``nnp-predict`` of the n2p2
    build ``nnp_predict`` (whole program and minus its fixed cost); LAMMPS's energy and forces vs miniff's."""
    length_unit, energy_unit = EXAMPLES[name]
    source = n2p2 / "examples" / "nnp-predict" / name
    structure = read_structures(source / "input.data")[0]
    n = len(structure[1])
    rows = []
    for t in threads:
        ((e, f, _),), (t_miniff,), _, _ = miniff_side(source, length_unit, energy_unit, [structure], repeats, t)
        row = {"threads": t, "atoms": n, "time_miniff_s": t_miniff, "us_per_atom_miniff": 1e6 * t_miniff / n}
        if lammps is not None:
            e_l, f_l, t_l = lammps_side(lammps, source, length_unit, energy_unit, structure, t, steps, blocks)
            row.update({"time_lammps_libnnp_s": t_l, "us_per_atom_lammps_libnnp": 1e6 * t_l / n,
                        "miniff_over_libnnp": t_miniff / t_l,
                        "lammps_energy_diff_ev_per_atom": abs(e_l - e) / n,
                        "lammps_force_max_diff_ev_per_a": float(np.abs(f_l - f).max())})
        if nnp_predict is not None:
            with tempfile.TemporaryDirectory() as tmp:
                _, _, _, t_total, t_fixed = run_nnp_predict(nnp_predict / "bin" / "nnp-predict", source,
                                                            Path(tmp) / name, t)
            row.update({"time_nnp_predict_s": t_total, "time_nnp_predict_marginal_s": max(t_total - t_fixed, 0.0),
                        "miniff_over_nnp_predict_marginal": t_miniff / max(t_total - t_fixed, 1e-9)})
        rows.append(row)
    return rows


def write_input_data(path, lattice, positions, elements):
    """One structure as n2p2's ``input.data`` (``lattice`` None for a molecule), every digit kept."""
    lines = ["begin"] + (["lattice " + " ".join(repr(float(x)) for x in v) for v in lattice] if lattice is not None
                         else [])
    lines += [f"atom {x!r} {y!r} {z!r} {el} 0.0 0.0 0.0 0.0 0.0" for (x, y, z), el in
              zip(np.asarray(positions, dtype=float).tolist(), elements, strict=True)]
    Path(path).write_text("\n".join(lines + ["energy 0.0", "charge 0.0", "end"]) + "\n")


def run_exported(n2p2, n_frames=5):
    """A potential fitted by miniff (the ``examples/amp_ptcu`` energy job, about 20 s), written with
    ``write_n2p2`` and run by ``nnp-predict`` on its validation frames (Å, eV), as given and doubled along every
    cell vector shorter than the cutoff (an atom neighbouring its own image)."""
    from miniff.cli import main as miniff_main
    from miniff.io import read_cells, write_n2p2
    from miniff.kernel import Cell, NeighborWrapper
    from miniff.ml import load_potentials

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "amp_ptcu"
        shutil.copytree(HERE.parent / "examples" / "amp_ptcu", job)
        cwd = Path.cwd()
        try:
            os.chdir(job)
            if miniff_main(["-q", "fit_energy.yml"]):
                raise RuntimeError("the amp_ptcu fit failed")
        finally:
            os.chdir(cwd)
        pots = load_potentials(job / "amp_energy.pt")
        write_n2p2(pots, job / "nnp")
        cutoff = max(p.cutoff for p in pots)
        for k, cell in enumerate(read_cells(job / "valid.extxyz")[:n_frames]):
            short = np.linalg.norm(cell.vectors, axis=1) < cutoff
            for repeat in ([1, 1, 1], np.where(short, 2, 1)) if short.any() else ([1, 1, 1],):
                big = cell.repeated(*[int(r) for r in repeat]) if max(repeat) > 1 else cell
                nw = NeighborWrapper(Cell(big.vectors, big.coordinates, big.values), pbc=True, cutoff=cutoff)
                ev = nw.evaluate(pots, grad=True)
                work = Path(tmp) / f"run{k}_{''.join(str(int(r)) for r in repeat)}"
                shutil.copytree(job / "nnp", work)
                write_input_data(work / "input.data", big.vectors, nw.cartesian_row, list(big.values))
                proc = subprocess.run([str(n2p2 / "bin" / "nnp-predict"), "0"], cwd=work, capture_output=True,
                                      text=True)
                if proc.returncode:
                    raise RuntimeError(f"nnp-predict failed in {work}:\n{proc.stdout[-2000:]}")
                (e_ref,), (f_ref,) = read_predictions(work)
                n = len(f_ref)
                rows.append({"frame": k, "repeat": [int(r) for r in repeat], "atoms": n,
                             "cell_lengths_a": np.linalg.norm(big.vectors, axis=1).round(4).tolist(),
                             "energy_diff_ev_per_atom": abs(ev.energy - e_ref) / n,
                             "force_max_diff_ev_per_a": float(np.abs(-ev.grad_nc - f_ref).max()),
                             "force_max_ev_per_a": float(np.abs(f_ref).max()),
                             "n2p2_extrapolation_warnings": proc.stdout.count("### NNP EXTRAPOLATION WARNING")})
    return {"job": "examples/amp_ptcu/fit_energy.yml (Pt/Cu EMT, Behler 2/4 descriptors, tanh network)",
            "cutoff_a": cutoff, "structures": rows}


#: 4G-HDNNP example folders -> (length unit, energy unit) of their files (all three in atomic units)
EXAMPLES_4G = {"Carbon_chain_4G": ("bohr", "hartree"), "H2O_RPBE-D3_4G": ("bohr", "hartree"),
               "AlAuMgO_4G": ("bohr", "hartree")}
#: Carbon_chain_4G's weights.NNN.data hold fewer values than the short-range networks of its input.nn have
#: connections (381 for 646, 501 for 826): nnp-predict does not check and reads past the end of its array, which
#: here gives short-range energies of ~1e-75 (its nnatoms.out); miniff refuses the folder.  Both programs are
#: therefore compared on a copy whose short-range weights are all zero (nnp-predict prints the same energy,
#: charges and forces for it as for the original): charges, electrostatics and the charge response.
ZERO_SHORT_RANGE = ("Carbon_chain_4G",)
TARGET_4G = 1e-8  # energies (per atom), forces and charges as nnp-predict prints them, files' units


def read_output_data(path):
    """``(energy, charges [N], forces [N, 3])`` of the first structure of ``nnp-predict``'s ``output.data``."""
    charges, forces, energy = [], [], None
    for line in Path(path).read_text().splitlines():
        w = line.split()
        if w and w[0] == "atom":
            charges.append(float(w[5]))
            forces.append([float(x) for x in w[7:10]])
        elif w and w[0] == "energy":
            energy = float(w[1])
        elif w and w[0] == "end":
            break
    return energy, np.array(charges), np.array(forces)


#: The data-set normalisation given to a copy of H2O_RPBE-D3_4G (no published 4G example is normalised):
#: mean_energy (Hartree/atom), conv_energy, conv_length, conv_charge (see :func:`normalise_4g`).
NORMALISATION_4G = {"H2O_RPBE-D3_4G": (-0.41, 37.5, 2.3, 1.7)}


def normalise_4g(folder, mean_energy, conv_energy, conv_length, conv_charge=1.0):
    """Give the 4G potential in ``folder`` n2p2's data-set normalisation without changing its predictions, as
    n2p2 defines it: positions times ``conv_length`` and energies ``(E - N mean_energy) conv_energy`` inside
    the networks; symmetry-function parameters, ``fixed_gausswidth``, ``four_pi_epsilon``, the screening and
    ``hardness.NNN.data`` stay in physical units (n2p2 converts them) and the electronegativity networks output
    physical values (n2p2 converts them), so only the short-range networks change: the weights of their charge
    input (which sees ``Q conv_charge``) are divided by ``conv_charge``, and their linear output layer becomes
    ``conv_energy (out - mean_energy)``."""
    from miniff.io.n2p2_4g_files import read_connections
    from miniff.io.n2p2_files import parse_n2p2_folder

    model = parse_n2p2_folder(folder, generation=4)
    if model.activations[-1] != "l":
        raise ValueError(f"{folder}: the short-range networks must end with a linear layer")
    for element in model.elements:
        path = folder / f"weights.{element.number:03d}.data"
        widths = [len(element.functions) + 1] + model.nodes + [1]
        weights, biases = read_connections(path, widths)
        for row in weights[0]:
            row[-1] /= conv_charge
        weights[-1] = [[w * conv_energy for w in row] for row in weights[-1]]
        biases[-1] = [(b - mean_energy) * conv_energy for b in biases[-1]]
        values = []
        for w, b in zip(weights, biases, strict=True):
            values += [w[k][j] for j in range(len(w[0])) for k in range(len(w))] + list(b)
        path.write_text("".join(f"{v!r}\n" for v in values))
    with open(folder / "input.nn", "a") as f:
        f.write(f"\nmean_energy {mean_energy!r}\nconv_energy {conv_energy!r}\nconv_length {conv_length!r}\n"
                f"conv_charge {conv_charge!r}\n")


def run_example_4g(n2p2, name, repeats, normalisation=None):
    """One 4G example: ``nnp-predict`` (energy, charges and forces of its ``output.data``) against
    ``read_n2p2``'s 4G potential on the first structure of ``input.data``; differences in the files' units.
    ``normalisation``: the arguments of :func:`normalise_4g`, applied to a copy of the example first."""
    from miniff import io, units
    from miniff.kernel import Cell, NeighborWrapper

    length_unit, energy_unit = EXAMPLES_4G[name]
    source = n2p2 / "examples" / "nnp-predict" / name
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / name
        shutil.copytree(source, work)
        if name in ZERO_SHORT_RANGE:
            _zero_short_range(work)
        if normalisation is not None:
            normalise_4g(work, *normalisation)
        t0 = time.perf_counter()
        proc = subprocess.run([str(n2p2 / "bin" / "nnp-predict"), "0"], cwd=work, capture_output=True, text=True)
        t_n2p2 = time.perf_counter() - t0
        if proc.returncode:
            raise RuntimeError(f"nnp-predict failed in {work}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        e_ref, q_ref, f_ref = read_output_data(work / "output.data")
        (pot,) = io.read_n2p2(work, length_unit=length_unit, energy_unit=energy_unit, extrapolation="ignore")
    total_charge = 0.0
    for line in (source / "input.data").read_text().splitlines():
        if line.split()[:1] == ["charge"]:
            total_charge = float(line.split()[1])
            break
    lattice, pos, elements = read_structures(source / "input.data")[0]
    length = units.BOHR if length_unit == "bohr" else 1.0
    energy = units.HARTREE if energy_unit == "hartree" else 1.0
    cart = pos * length
    if lattice is None:
        span = np.ptp(cart, axis=0) + 2 * pot.cutoff + 1.0
        vectors, pbc = np.diag(span), False
        cart = cart - cart.min(0) + pot.cutoff
    else:
        vectors, pbc = lattice * length, True
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        cell = Cell(vectors, cart @ np.linalg.inv(vectors), elements)
        cell.meta["total_charge"] = total_charge
        nw = NeighborWrapper(cell, pbc=pbc, cutoff=pot.cutoff)
        ev = nw.evaluate([pot], grad=True)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    n = len(pos)
    e_ours = ev.energy / energy
    f_ours = -ev.grad_nc / (energy / length)
    q_ours = pot.charges(nw)
    published = "read"
    try:
        io.read_n2p2(source, length_unit=length_unit, energy_unit=energy_unit, extrapolation="ignore")
    except ValueError as error:
        published = f"refused by miniff: {error}"
    row = {"atoms": n, "periodic": bool(pbc), "files": f"{length_unit}/{energy_unit}", "published_folder": published,
           "normalisation": None if normalisation is None else dict(zip(
               ("mean_energy", "conv_energy", "conv_length", "conv_charge"), normalisation, strict=True)),
           "short_range_weights": "zeroed (see ZERO_SHORT_RANGE)" if name in ZERO_SHORT_RANGE else "as published",
           "energy": e_ours, "energy_n2p2": e_ref,
           "energy_diff_per_atom": abs(e_ours - e_ref) / n,
           "force_max_diff": float(np.abs(f_ours - f_ref).max()), "force_max": float(np.abs(f_ref).max()),
           "charge_max_diff": float(np.abs(q_ours - q_ref).max()), "charge_max": float(np.abs(q_ref).max()),
           "time_miniff_s": best, "time_nnp_predict_s": t_n2p2}
    row["agrees"] = all(row[k] <= TARGET_4G for k in ("energy_diff_per_atom", "force_max_diff", "charge_max_diff"))
    return row


def _zero_short_range(folder):
    """Replace every ``weights.NNN.data`` of a 4G folder by zeros, as many as its short-range networks have
    connections."""
    from miniff.io.n2p2_files import parse_n2p2_folder

    model = parse_n2p2_folder(folder, generation=4)
    for element in model.elements:
        widths = [len(element.functions) + 1] + model.nodes + [1]
        count = sum(widths[k] * widths[k + 1] + widths[k + 1] for k in range(len(widths) - 1))
        (folder / f"weights.{element.number:03d}.data").write_text("0.0\n" * count)


def _predict_4g(n2p2, folder, lattice, atoms, moved=None):
    """nnp-predict on one structure written into ``folder``: ``(energy, charges, forces)`` (files' units);
    ``moved`` = (atom, component, step) displaces one coordinate."""
    lines = ["begin"] + [f"lattice {a:.16e} {b:.16e} {c:.16e}" for a, b, c in lattice]
    for k, (symbol, r) in enumerate(atoms):
        r = np.array(r, dtype=float)
        if moved is not None and moved[0] == k:
            r[moved[1]] += moved[2]
        lines.append(f"atom {r[0]:.16e} {r[1]:.16e} {r[2]:.16e} {symbol} 0.0 0.0 0.0 0.0 0.0")
    (folder / "input.data").write_text("\n".join(lines + ["energy 0.0", "charge 0.0", "end"]) + "\n")
    subprocess.run([str(n2p2 / "bin" / "nnp-predict"), "0"], cwd=folder, capture_output=True, check=True)
    return read_output_data(folder / "output.data")


def run_small_cell_4g(n2p2, step=1e-4):
    """H2O_RPBE-D3_4G on its first 6 atoms in an 11 x 11.5 x 12.5 Bohr cell (shorter than the 12 Bohr screening
    radius and symmetry-function cutoff): with ``self_image_screening="n2p2"`` miniff's energy and charges are
    n2p2's; its forces are compared with n2p2's printed forces and with central differences of n2p2's energy
    (``step`` Bohr)."""
    from miniff import io, units
    from miniff.kernel import Cell, NeighborWrapper

    name = "H2O_RPBE-D3_4G"
    source = n2p2 / "examples" / "nnp-predict" / name
    _, pos, elements = read_structures(source / "input.data")[0]
    atoms = list(zip(elements[:6], pos[:6], strict=True))
    lattice = np.diag([11.0, 11.5, 12.5])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / name
        shutil.copytree(source, work)
        e_ref, q_ref, f_ref = _predict_4g(n2p2, work, lattice, atoms)
        f_fd = np.zeros_like(f_ref)
        for k in range(len(atoms)):
            for c in range(3):
                e_plus = _predict_4g(n2p2, work, lattice, atoms, (k, c, step))[0]
                e_minus = _predict_4g(n2p2, work, lattice, atoms, (k, c, -step))[0]
                f_fd[k, c] = -(e_plus - e_minus) / (2 * step)
    (pot,) = io.read_n2p2(source, length_unit="bohr", energy_unit="hartree", extrapolation="ignore")
    out = {}
    for mode in ("n2p2", "once"):
        pot.self_image_screening = mode
        vectors = lattice * units.BOHR
        cart = np.array([r for _, r in atoms]) * units.BOHR
        nw = NeighborWrapper(Cell(vectors, cart @ np.linalg.inv(vectors), [s for s, _ in atoms]), pbc=True,
                             cutoff=pot.cutoff)
        ev = nw.evaluate([pot], grad=True)
        f_ours = -ev.grad_nc / (units.HARTREE / units.BOHR)
        out[mode] = {"energy_diff_per_atom": abs(ev.energy / units.HARTREE - e_ref) / len(atoms),
                     "charge_max_diff": float(np.abs(pot.charges(nw) - q_ref).max()),
                     "force_max_diff_vs_printed": float(np.abs(f_ours - f_ref).max()),
                     "force_max_diff_vs_n2p2_central_differences": float(np.abs(f_ours - f_fd).max())}
    out["n2p2_printed_vs_its_central_differences"] = float(np.abs(f_ref - f_fd).max())
    out["note"] = ("cell shorter than the screening radius and the symmetry-function cutoff: n2p2 counts the "
                   "screening of an atom with its own images twice (self_image_screening='n2p2' reproduces it) and "
                   "its printed forces are not the derivative of its energy there")
    print(f"4G small cell (6 atoms): n2p2 mode dE {out['n2p2']['energy_diff_per_atom']:.1e}/atom  dQ "
          f"{out['n2p2']['charge_max_diff']:.1e}  dF vs printed {out['n2p2']['force_max_diff_vs_printed']:.1e}, vs "
          f"n2p2's central differences {out['n2p2']['force_max_diff_vs_n2p2_central_differences']:.1e}; n2p2 printed "
          f"vs its differences {out['n2p2_printed_vs_its_central_differences']:.1e}")
    return out


def run_4g(n2p2, repeats):
    """Every 4G example (:func:`run_example_4g`), printed as it goes."""
    out = {"target_files_units": TARGET_4G, "examples": {}}
    cases = [(name, name, None) for name in EXAMPLES_4G]
    cases += [(f"{name} normalised", name, norm) for name, norm in NORMALISATION_4G.items()]
    for label, name, norm in cases:
        out["examples"][label] = r = run_example_4g(n2p2, name, repeats, norm)
        print(f"4G {label:27s} {r['atoms']:4d} atoms  dE {r['energy_diff_per_atom']:.1e}/atom  "
              f"max dF {r['force_max_diff']:.1e}  max dQ {r['charge_max_diff']:.1e} (files' units)  "
              f"miniff {r['time_miniff_s']:.3f} s  nnp-predict {r['time_nnp_predict_s']:.3f} s  agrees={r['agrees']}")
        if norm is not None:  # n2p2's own invariance: the normalised copy against the published folder
            plain = out["examples"][name]
            r["n2p2_normalised_vs_published"] = {
                "energy_diff_per_atom": abs(r["energy_n2p2"] - plain["energy_n2p2"]) / r["atoms"]}
    out["small_cell"] = run_small_cell_4g(n2p2)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n2p2", required=True, type=Path, help="n2p2 checkout with bin/nnp-predict built")
    parser.add_argument("--examples", default=",".join(EXAMPLES), help="comma-separated example folders")
    parser.add_argument("--repeats", type=int, default=3, help="miniff timing repeats (best kept)")
    parser.add_argument("--output", type=Path, default=OUT)
    parser.add_argument("--n2p2-commit", default=None, help="record this commit (for a checkout without .git)")
    parser.add_argument("--4g", dest="four_g", action="store_true",
                        help="also compare the 4G-HDNNP examples (energies, charges, forces)")
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts: time miniff (and --lammps / --nnp-predict) at each")
    parser.add_argument("--lammps", type=Path, default=None,
                        help="an lmp with pair_style hdnnp (benchmarks/setup_lammps_hdnnp.sh): libnnp's time per step")
    parser.add_argument("--nnp-predict", type=Path, default=None,
                        help="another n2p2 build (e.g. with OpenMP) whose bin/nnp-predict is timed with --threads")
    parser.add_argument("--speed-examples", default="H2O_RPBE-D3,Cu2S_PBE", help="examples timed with --threads")
    parser.add_argument("--exported", action="store_true",
                        help="also fit examples/amp_ptcu, write it with write_n2p2 and run nnp-predict on it")
    args = parser.parse_args(argv)
    if not (args.n2p2 / "bin" / "nnp-predict").is_file():
        parser.error(f"{args.n2p2}/bin/nnp-predict not found: run bash benchmarks/setup_n2p2.sh {args.n2p2}")
    names = [x for x in args.examples.split(",") if x]
    unknown = [x for x in names if x not in EXAMPLES]
    if unknown:
        parser.error(f"unknown example(s) {unknown}; supported: {sorted(EXAMPLES)}")
    commit = subprocess.run(["git", "-C", str(args.n2p2), "rev-parse", "HEAD"], capture_output=True, text=True)
    results = {"n2p2_commit": args.n2p2_commit or commit.stdout.strip() or "unknown (not a git checkout)",
               "machine": platform.platform(), "python": sys.version.split()[0],
               "targets": {"energy_ev_per_atom": TARGET_ENERGY, "force_ev_per_a": TARGET_FORCE}, "examples": {}}
    for name in names:
        results["examples"][name] = out = run_example(args.n2p2, name, args.repeats)
        for r in out["structures"]:
            print(f"{name:12s} {r['atoms']:5d} atoms  dE {r['energy_diff_ev_per_atom']:.2e} eV/atom  "
                  f"max dF {r['force_max_diff_ev_per_a']:.2e} eV/Å  miniff {r['time_miniff_s']:.3f} s  "
                  f"nnp-predict {r['time_nnp_predict_s']:.3f} s (whole program), "
                  f"{r['time_nnp_predict_marginal_s']:.3f} s (minus fixed cost)  agrees={out['agrees']}")
    if args.four_g:
        results["4g"] = run_4g(args.n2p2, args.repeats)
    if args.threads:
        results["speed"] = {}
        for name in [x for x in args.speed_examples.split(",") if x]:
            rows = results["speed"][name] = run_speed(args.n2p2, name, [int(t) for t in args.threads.split(",")],
                                                      args.repeats, args.lammps, args.nnp_predict)
            for r in rows:
                print(f"{name:12s} {r['threads']} thread(s)  miniff {r['us_per_atom_miniff']:.1f} us/atom"
                      + (f"  libnnp (LAMMPS) {r['us_per_atom_lammps_libnnp']:.1f} us/atom  ratio "
                         f"{r['miniff_over_libnnp']:.2f}  LAMMPS vs miniff dE {r['lammps_energy_diff_ev_per_atom']:.1e}"
                         f" eV/atom  max dF {r['lammps_force_max_diff_ev_per_a']:.1e} eV/A" if args.lammps else "")
                      + (f"  nnp-predict {r['time_nnp_predict_s']:.3f} s (marginal "
                         f"{r['time_nnp_predict_marginal_s']:.3f} s)" if args.nnp_predict else ""))
    if args.exported:
        results["exported"] = out = run_exported(args.n2p2)
        for r in out["structures"]:
            print(f"exported frame {r['frame']} x{r['repeat']} {r['atoms']:4d} atoms  dE "
                  f"{r['energy_diff_ev_per_atom']:.2e} eV/atom  max dF {r['force_max_diff_ev_per_a']:.2e} eV/Å")
    if args.output.is_file():  # keep what this run did not redo (e.g. the 2G examples of a --4g-only run)
        previous = json.loads(args.output.read_text())
        previous_examples = previous.get("examples", {})
        if results["n2p2_commit"].startswith("unknown"):
            results["n2p2_commit"] = previous.get("n2p2_commit", results["n2p2_commit"])
        previous.update({k: v for k, v in results.items() if k != "examples"})
        previous["examples"] = {**previous_examples, **results["examples"]}
        results = previous
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print("wrote", args.output)
    four_g = results.get("4g", {}).get("examples", {}) if args.four_g else {}
    return 0 if all(o["agrees"] for o in list(results["examples"].values()) + list(four_g.values())) else 1


if __name__ == "__main__":
    sys.exit(main())
