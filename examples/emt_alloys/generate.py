"""Generate multi-element training data: random fcc alloys of up to seven metals with ASE's EMT calculator.

ASE's effective-medium theory (EMT) covers Al, Ni, Cu, Pd, Ag, Pt and Au; every frame is a random substitutional
alloy of the chosen elements (each site draws its element uniformly), on an fcc lattice whose constant is the
composition average of the elements' EMT-relaxed fcc constants (Vegard's rule), and belongs to one of four
groups (``info["group"]``):

``bulk``
    A 2x2x2, 2x2x3 or 2x2x4 supercell of the cubic fcc cell (32, 48 or 64 atoms), strained by a random
    symmetric strain of up to ``--strain`` (default 4 %) per component and rattled (``--rattle``, 0.08 Å).
``vacancy``
    The same, with one or two random atoms removed (30 to 63 atoms).
``surface``
    An fcc(111) or fcc(100) slab (3x3x4 = 36 or 4x4x3 = 48 atoms) with 6 Å of vacuum on each side, rattled.
    Periodic along all three axes: the 12 Å of vacuum is more than any descriptor cutoff used with these data.
``strained``
    Bulk cells under a large isotropic strain between -6 % and +8 % (rattled): the repulsive and the
    stretched part of the energy curve.

Energies (eV) and forces (eV/Å) are EMT's; the stress (eV/Å³) is stored too. The output is deterministic for a
given seed and ASE version. Examples::

    python generate.py                                   # 60 frames of all seven elements -> emt_alloys.extxyz
    python generate.py -n 300 --elements Al,Ni,Cu,Pd,Pt out.extxyz   # the 5-element benchmark set

EMT is a model, not DFT: the data exist to test and benchmark fitting with many elements.
"""

import argparse
import sys
import time

import numpy as np
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

#: The elements ASE's EMT calculator parameterises.
EMT_ELEMENTS = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
#: Share of each group in the output (bulk, vacancy, surface, strained).
GROUPS = {"bulk": 0.4, "vacancy": 0.2, "surface": 0.25, "strained": 0.15}


def emt_lattice_constant(element):
    """The fcc lattice constant (Å) of a pure element with EMT: the minimum of E(a) on a fine grid around the
    experimental value, refined by a parabola through the three lowest points."""
    from ase.data import atomic_numbers, reference_states

    a0 = reference_states[atomic_numbers[element]]["a"]
    grid = a0 * np.linspace(0.94, 1.06, 25)
    energies = []
    for a in grid:
        atoms = bulk(element, "fcc", a=a, cubic=True)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy())
    k = int(np.clip(np.argmin(energies), 1, len(grid) - 2))
    c = np.polyfit(grid[k - 1:k + 2], energies[k - 1:k + 2], 2)
    return float(-c[1] / (2 * c[0]))


def _symbols(rng, n, elements):
    """``n`` random element symbols, every element at least once when ``n`` allows."""
    out = list(rng.choice(elements, size=n))
    if n >= len(elements):
        for k, e in enumerate(rng.permutation(elements)):
            out[k] = e
        out = list(rng.permutation(out))
    return out


def _alloy_constant(symbols, constants):
    return float(np.mean([constants[s] for s in symbols]))


def _label(atoms, group):
    """``atoms`` with EMT energy, forces and stress attached (as stored results) and the group label."""
    atoms.calc = EMT()
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
    atoms.info["group"] = group
    return atoms


def bulk_frame(rng, elements, constants, strain, rattle, vacancies=0, iso=None):
    """A strained, rattled random alloy supercell (32, 48 or 64 atoms, minus ``vacancies``)."""
    reps = (2, 2, int(rng.integers(2, 5)))
    atoms = bulk("Cu", "fcc", a=1.0, cubic=True).repeat(reps)
    symbols = _symbols(rng, len(atoms), elements)
    atoms.set_chemical_symbols(symbols)
    atoms.set_cell(atoms.cell[:] * _alloy_constant(symbols, constants), scale_atoms=True)
    if iso is None:
        eps = rng.uniform(-strain, strain, size=(3, 3))
        deformation = np.eye(3) + (eps + eps.T) / 2
    else:
        deformation = np.eye(3) * (1 + iso)
    atoms.set_cell(atoms.cell[:] @ deformation, scale_atoms=True)
    if vacancies:
        del atoms[[int(i) for i in rng.choice(len(atoms), size=vacancies, replace=False)]]
    atoms.rattle(rattle, seed=int(rng.integers(2**31)))
    return atoms


def surface_frame(rng, elements, constants, rattle):
    """A rattled random-alloy fcc(111) (3x3x4) or fcc(100) (4x4x3) slab with 6 Å of vacuum on each side."""
    build, size = (fcc111, (3, 3, 4)) if rng.random() < 0.5 else (fcc100, (4, 4, 3))
    symbols = _symbols(rng, int(np.prod(size)), elements)
    atoms = build("Cu", size=size, a=_alloy_constant(symbols, constants), vacuum=6.0)
    atoms.info.pop("adsorbate_info", None)
    atoms.set_chemical_symbols(symbols)
    atoms.pbc = True
    atoms.rattle(rattle, seed=int(rng.integers(2**31)))
    return atoms


def generate(n, elements=EMT_ELEMENTS, seed=0, strain=0.04, rattle=0.08, progress=None):
    """``n`` labelled frames (a list of ``ase.Atoms``) in the shares of :data:`GROUPS`, in random order."""
    unknown = sorted(set(elements) - set(EMT_ELEMENTS))
    if unknown or not elements:
        raise ValueError(f"elements must be a non-empty subset of {EMT_ELEMENTS}, got {list(elements)}")
    if n < 1:
        raise ValueError(f"n must be a positive number of frames, got {n}")
    rng = np.random.default_rng(seed)
    constants = {e: emt_lattice_constant(e) for e in elements}
    counts = {g: int(round(share * n)) for g, share in GROUPS.items()}
    counts["bulk"] += n - sum(counts.values())
    kinds = [g for g, c in counts.items() for _ in range(c)]
    frames = []
    for k, group in enumerate(kinds):
        if group == "bulk":
            atoms = bulk_frame(rng, elements, constants, strain, rattle)
        elif group == "vacancy":
            atoms = bulk_frame(rng, elements, constants, strain, rattle, vacancies=int(rng.integers(1, 3)))
        elif group == "surface":
            atoms = surface_frame(rng, elements, constants, rattle)
        else:
            atoms = bulk_frame(rng, elements, constants, strain, rattle, iso=float(rng.uniform(-0.06, 0.08)))
        frames.append(_label(atoms, group))
        if progress is not None:
            progress(k + 1, len(kinds))
    return [frames[i] for i in rng.permutation(len(frames))]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Random fcc alloys labelled with ASE's EMT (extended XYZ).")
    parser.add_argument("output", nargs="?", default="emt_alloys.extxyz", help="output file (extxyz)")
    parser.add_argument("-n", type=int, default=60, help="number of frames (default 60)")
    parser.add_argument("--elements", default=",".join(EMT_ELEMENTS),
                        help=f"comma-separated subset of {','.join(EMT_ELEMENTS)} (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--strain", type=float, default=0.04, help="largest strain component (default 0.04)")
    parser.add_argument("--rattle", type=float, default=0.08, help="rattle amplitude, Å (default 0.08)")
    args = parser.parse_args(argv)
    elements = tuple(e.strip() for e in args.elements.split(",") if e.strip())
    t0 = time.perf_counter()

    def progress(k, total):
        if k % max(1, total // 10) == 0 or k == total:
            print(f"  {k}/{total} frames", file=sys.stderr)

    try:
        frames = generate(args.n, elements, args.seed, args.strain, args.rattle, progress=progress)
    except ValueError as error:
        parser.error(str(error))
    write(args.output, frames, format="extxyz")
    sizes = [len(f) for f in frames]
    groups = {g: sum(f.info["group"] == g for f in frames) for g in GROUPS}
    print(f"{len(frames)} frames ({', '.join(f'{c} {g}' for g, c in groups.items())}), {min(sizes)}-{max(sizes)} "
          f"atoms, elements {'/'.join(elements)} -> {args.output} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
