"""Conversions between ``ase.Atoms`` and :class:`miniff.kernel.Cell`, with training targets.

A :class:`~miniff.kernel.Cell` stores box vectors ``[3, 3]`` (Å, rows), fractional coordinates
``[N, 3]`` and species labels ``[N]``. Targets and extra data travel in ``cell.meta`` under the
keys defined here (units: eV, Å, eV/Å, eV/Å³).
"""

import warnings

import numpy as np

__all__ = [
    "ENERGY_KEY",
    "FORCES_KEY",
    "STRESS_KEY",
    "GROUP_KEY",
    "CHARGES_KEY",
    "PBC_KEY",
    "PREDICTED_ENERGY_KEY",
    "PREDICTED_FORCES_KEY",
    "PREDICTED_STRESS_KEY",
    "MissingDataWarning",
    "MissingEnergyWarning",
    "MissingForcesWarning",
    "atoms_to_cell",
    "cell_to_atoms",
    "complete_vectors",
]

#: meta key of the reference total energy, float, eV
ENERGY_KEY = "total-energy"
#: meta key of the reference forces, ndarray [N, 3], eV/Å
FORCES_KEY = "forces"
#: meta key of the reference stress, ndarray [6] (Voigt xx yy zz yz xz xy, ASE sign), eV/Å³
STRESS_KEY = "stress"
#: meta key of atomic charges, ndarray [N], e
CHARGES_KEY = "charges"
#: meta key of an optional group label (str), e.g. the kind of structure
GROUP_KEY = "group"
#: meta key of the periodic boundary conditions, ndarray [3] bool (as ``Cell.from_ase``)
PBC_KEY = "pbc"
#: meta key of a predicted total energy (written next to the reference), float, eV
PREDICTED_ENERGY_KEY = "predicted-energy"
#: meta key of predicted forces, ndarray [N, 3], eV/Å
PREDICTED_FORCES_KEY = "predicted-forces"
#: meta key of a predicted stress, ndarray [6] (Voigt xx yy zz yz xz xy, ASE sign), eV/Å³
PREDICTED_STRESS_KEY = "predicted-stress"

# Names used inside ASE containers (extxyz info/arrays, ase.db key-value pairs and data).
ASE_PREDICTED_ENERGY = "predicted_energy"
ASE_PREDICTED_FORCES = "predicted_forces"
ASE_PREDICTED_STRESS = "predicted_stress"
ASE_SPECIES = "miniff_species"
ASE_GROUP = "group"

#: info / key-value names accepted as the reference energy when no calculator result is present
DEFAULT_ENERGY_KEYS = ("energy", "total_energy", "total-energy", "free_energy", "Energy")
#: per-atom array / data names accepted as reference forces when no calculator result is present
DEFAULT_FORCES_KEYS = ("forces", "force", "Forces")


class MissingDataWarning(UserWarning):
    """Some structures of a training-data source lack a target (energy or forces)."""


class MissingEnergyWarning(MissingDataWarning):
    """Structures without a reference energy were read (they cannot be used to fit energies)."""


class MissingForcesWarning(MissingDataWarning):
    """Structures without reference forces were read: they are energy-only training data."""


def complete_vectors(vectors, pbc, positions):
    """Return invertible box vectors for a (possibly non-periodic) structure.

    ASE allows zero or degenerate cell vectors along non-periodic axes (molecules, slabs with
    ``cell[2] = 0``); :class:`~miniff.kernel.Cell` needs an invertible box. Degenerate vectors of
    non-periodic axes are replaced by vectors orthogonal to the others, as long as the extent of the
    atoms (at least 1 Å) along that direction.

    Parameters
    ----------
    vectors : array_like of shape (3, 3), Å
        Cell vectors (rows).
    pbc : array_like of shape (3,), bool
        Periodic axes.
    positions : ndarray of shape (n_atoms, 3), Å
        Cartesian positions, used to size the replacement vectors.

    Returns
    -------
    ndarray of shape (3, 3), float64, Å

    Raises
    ------
    ValueError
        If a periodic axis has a degenerate vector.
    """
    vectors = np.array(vectors, dtype=float).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    scale = max(1.0, float(np.abs(vectors).max(initial=0.0)))
    if abs(np.linalg.det(vectors)) > 1e-9 * scale**3:
        return vectors
    # Keep the independent vectors (periodic first), rebuild the rest.
    keep = []
    for axis in sorted(range(3), key=lambda a: not pbc[a]):
        trial = np.array([vectors[a] for a in keep] + [vectors[axis]])
        if np.linalg.matrix_rank(trial, tol=1e-9 * scale) == len(trial):
            keep.append(axis)
        elif pbc[axis]:
            raise ValueError(
                f"atoms.cell: the vector of periodic axis {axis} is zero or linearly dependent on the others"
            )
    extent = np.ptp(positions, axis=0).max(initial=0.0) if len(positions) else 0.0
    length = max(1.0, float(extent) + 1.0)
    out = vectors.copy()
    for axis in range(3):
        if axis in keep:
            continue
        basis = out[keep]
        best = None
        for candidate in np.roll(np.eye(3), -axis, axis=0):
            # component of the candidate orthogonal to the span of the kept vectors
            if len(basis):
                coef = np.linalg.lstsq(basis.T, candidate, rcond=None)[0]
                candidate = candidate - basis.T @ coef
            if best is None or np.linalg.norm(candidate) > np.linalg.norm(best) + 1e-12:
                best = candidate
        out[axis] = best / np.linalg.norm(best) * length
        keep.append(axis)
    return out


def _labels_to_symbols(labels):
    """Map species labels to chemical symbols (case-insensitive); None where a label is no element."""
    from ase.data import atomic_numbers

    lookup = {s.lower(): s for s in atomic_numbers if s != "X"}
    return [lookup.get(str(label).lower()) for label in labels]


def _first_key(mapping, keys):
    for key in keys:
        if key in mapping and mapping[key] is not None:
            return key
    return None


def _as_voigt(stress):
    stress = np.asarray(stress, dtype=float)
    if stress.shape == (3, 3):
        return stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]].copy()
    if stress.shape == (6,):
        return stress.copy()
    raise ValueError(f"stress must have shape (6,) or (3, 3), got {stress.shape}")


def atoms_to_cell(atoms, *, extra=None, energy_keys=DEFAULT_ENERGY_KEYS, forces_keys=DEFAULT_FORCES_KEYS, data=None):
    """Convert one ``ase.Atoms`` with optional targets into a :class:`~miniff.kernel.Cell`.

    Targets are taken, in this order, from the attached calculator's results (``energy``, else
    ``free_energy``; ``forces``; ``stress``), then from ``extra`` (ase.db key-value pairs), then
    ``atoms.info`` for the energy and ``atoms.arrays`` / ``data`` for the forces.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (positions in Å).
    extra : dict, optional
        Key-value pairs (e.g. of an ase.db row) searched after the calculator results.
    energy_keys, forces_keys : sequence of str
        Names accepted for the energy (eV) and forces (eV/Å) outside calculator results.
    data : dict, optional
        Array data (e.g. ``row.data`` of ase.db) searched for forces, predictions and labels.

    Returns
    -------
    miniff.kernel.Cell
        With ``meta`` holding ``"pbc"`` and, when found, ``"total-energy"`` (eV), ``"forces"``
        ``[N, 3]`` (eV/Å), ``"stress"`` ``[6]`` (eV/Å³), ``"group"``, ``"predicted-energy"``,
        ``"predicted-forces"``.
    """
    from miniff.neighbors.cell import Cell

    extra = dict(extra or {})
    data = dict(data or {})
    info = dict(atoms.info)
    results = dict(getattr(atoms.calc, "results", None) or {}) if atoms.calc is not None else {}
    n = len(atoms)
    positions = np.asarray(atoms.positions, dtype=float)
    pbc = tuple(bool(p) for p in atoms.pbc)
    vectors = complete_vectors(atoms.cell.array, pbc, positions)
    coordinates = np.linalg.solve(vectors.T, positions.T).T
    labels = data.get(ASE_SPECIES, atoms.arrays.get(ASE_SPECIES, atoms.arrays.get("species")))
    if labels is None:
        labels = np.array(atoms.get_chemical_symbols())
    labels = np.array([str(v) for v in labels])
    meta = {PBC_KEY: np.array(pbc, dtype=bool)}

    energy = results.get("energy", results.get("free_energy"))
    if energy is None:
        for source in (extra, info):
            key = _first_key(source, energy_keys)
            if key is not None:
                energy = source[key]
                break
    if energy is not None:
        meta[ENERGY_KEY] = float(energy)

    forces = results.get("forces")
    if forces is None:
        for source in (data, atoms.arrays):
            key = _first_key(source, forces_keys)
            if key is not None:
                forces = source[key]
                break
    if forces is not None:
        forces = np.array(forces, dtype=float)
        if forces.shape != (n, 3):
            raise ValueError(f"forces of a structure with {n} atoms must have shape ({n}, 3), got {forces.shape}")
        meta[FORCES_KEY] = forces

    stress = results.get("stress", info.get("stress"))
    if stress is not None:
        meta[STRESS_KEY] = _as_voigt(stress)

    charges = results.get("charges", atoms.arrays.get("charges", atoms.arrays.get("initial_charges")))
    if charges is not None:
        meta[CHARGES_KEY] = np.array(charges, dtype=float).reshape(n)

    group = extra.get(ASE_GROUP, info.get(ASE_GROUP))
    if group is not None:
        meta[GROUP_KEY] = str(group)

    pred_e = extra.get(ASE_PREDICTED_ENERGY, info.get(ASE_PREDICTED_ENERGY))
    if pred_e is not None:
        meta[PREDICTED_ENERGY_KEY] = float(pred_e)
    pred_f = data.get(ASE_PREDICTED_FORCES, atoms.arrays.get(ASE_PREDICTED_FORCES))
    if pred_f is not None:
        meta[PREDICTED_FORCES_KEY] = np.array(pred_f, dtype=float).reshape(n, 3)
    pred_s = data.get(ASE_PREDICTED_STRESS, info.get(ASE_PREDICTED_STRESS))
    if pred_s is not None:
        meta[PREDICTED_STRESS_KEY] = _as_voigt(pred_s)
    return Cell(vectors, coordinates, labels, meta=meta)


def cell_to_atoms(cell, *, pbc=None):
    """Convert a :class:`~miniff.kernel.Cell` into ``ase.Atoms`` carrying its targets.

    The reference energy, forces and stress (``meta`` keys ``"total-energy"``, ``"forces"``,
    ``"stress"``) are attached as a ``SinglePointCalculator``; ``"predicted-energy"`` goes to
    ``atoms.info["predicted_energy"]``, ``"predicted-forces"`` to
    ``atoms.arrays["predicted_forces"]``, ``"predicted-stress"`` to ``atoms.info["predicted_stress"]``,
    ``"group"`` to ``atoms.info["group"]``. Labels that are
    not chemical symbols spelled the ASE way (e.g. ``"bi"``, ``"a"``) are kept in
    ``atoms.arrays["miniff_species"]`` so that :func:`atoms_to_cell` restores them.

    Parameters
    ----------
    cell : miniff.kernel.Cell
    pbc : bool or array_like of shape (3,), optional
        Periodic axes; default ``cell.meta["pbc"]`` or all periodic.

    Returns
    -------
    ase.Atoms
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    meta = cell.meta
    if pbc is None:
        pbc = meta.get(PBC_KEY, True)
    vectors = np.asarray(cell.vectors, dtype=float)
    positions = np.asarray(cell.coordinates, dtype=float) @ vectors
    labels = [str(v) for v in np.asarray(cell.values).reshape(-1)]
    symbols = _labels_to_symbols(labels)
    numbers = [0 if s is None else _symbol_number(s) for s in symbols]
    atoms = Atoms(numbers=numbers, positions=positions, cell=vectors, pbc=pbc)
    if any(s != label for s, label in zip(symbols, labels, strict=True)):
        atoms.arrays[ASE_SPECIES] = np.array(labels)
    results = {}
    if meta.get(ENERGY_KEY) is not None:
        results["energy"] = float(meta[ENERGY_KEY])
        results["free_energy"] = results["energy"]
    n = len(atoms)
    for key in (FORCES_KEY, PREDICTED_FORCES_KEY):
        if meta.get(key) is not None and np.shape(meta[key]) != (n, 3):
            raise ValueError(f"cell.meta[{key!r}] must have shape ({n}, 3), got {np.shape(meta[key])}")
    if meta.get(FORCES_KEY) is not None:
        results["forces"] = np.array(meta[FORCES_KEY], dtype=float)
    if meta.get(STRESS_KEY) is not None:
        results["stress"] = _as_voigt(meta[STRESS_KEY])
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    if meta.get(GROUP_KEY) is not None:
        atoms.info[ASE_GROUP] = str(meta[GROUP_KEY])
    if meta.get(PREDICTED_ENERGY_KEY) is not None:
        atoms.info[ASE_PREDICTED_ENERGY] = float(meta[PREDICTED_ENERGY_KEY])
    if meta.get(PREDICTED_FORCES_KEY) is not None:
        atoms.arrays[ASE_PREDICTED_FORCES] = np.array(meta[PREDICTED_FORCES_KEY], dtype=float).reshape(-1, 3)
    if meta.get(PREDICTED_STRESS_KEY) is not None:
        atoms.info[ASE_PREDICTED_STRESS] = _as_voigt(meta[PREDICTED_STRESS_KEY])
    return atoms


def _symbol_number(symbol):
    from ase.data import atomic_numbers

    return atomic_numbers[symbol]


def warn_missing(cells, source):
    """Warn (once per source) about structures without energy or forces."""
    n = len(cells)
    no_e = sum(1 for c in cells if c.meta.get(ENERGY_KEY) is None)
    no_f = sum(1 for c in cells if c.meta.get(FORCES_KEY) is None)
    if no_e:
        warnings.warn(
            f"{no_e} of {n} structures read from {source!r} have no reference energy",
            MissingEnergyWarning,
            stacklevel=3,
        )
    if no_f:
        warnings.warn(
            f"{no_f} of {n} structures read from {source!r} have no forces: they are used as energy-only data",
            MissingForcesWarning,
            stacklevel=3,
        )
