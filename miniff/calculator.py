"""An ASE calculator for any list of miniff potentials (classical, neural-network, or both).

Example
-------
>>> from ase.build import bulk
>>> from miniff.calculator import MiniffCalculator
>>> atoms = bulk("Si", "diamond", a=5.431, cubic=True)                 # doctest: +SKIP
>>> atoms.calc = MiniffCalculator(potentials)                          # doctest: +SKIP
>>> atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()  # doctest: +SKIP

Neighbour lists are built with ``cutoff = max(potential cutoffs) + skin`` and reused while every
atom stays within ``skin / 2`` of where it was at the last build (a Verlet skin): only the pair
vectors are refreshed (``NeighborWrapper.refresh_pair_vectors``). Any change of cell, periodicity
or species, or a larger displacement, rebuilds the list.
"""

import os

import numpy as np
from ase.calculators.calculator import (
    Calculator,
    CalculatorSetupError,
    PropertyNotImplementedError,
    all_changes,
)

from miniff.io.atoms import complete_vectors

__all__ = ["MiniffCalculator", "UnknownSpeciesError"]

# Voigt order of ASE: xx yy zz yz xz xy
_VOIGT_A = np.array([0, 1, 2, 1, 0, 0])
_VOIGT_B = np.array([0, 1, 2, 2, 2, 1])


class UnknownSpeciesError(CalculatorSetupError, KeyError):
    """The atoms contain a species that none of the calculator's potentials describes."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _load_potentials_file(path):
    """Load a saved list of potentials (plain data, see ``miniff.ml.load_potentials``)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"potentials: no such file {os.fspath(path)!r}")
    try:
        from miniff.ml import load_potentials
    except ImportError:  # pragma: no cover - depends on the ml module being present
        from miniff.ml_util import load_potentials
    try:
        return load_potentials(path)
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as e:
        raise ValueError(f"potentials: could not load potentials from {os.fspath(path)!r}: {e}") from e


def _tag_species(potential):
    """Species named by a potential's tag (``"a"``, ``"a-b"``, ``"a-b-c"``), or None for tag None."""
    tag = getattr(potential, "tag", None)
    if tag is None:
        return None
    if not isinstance(tag, str):
        raise TypeError(f"potentials: the tag of {potential!r} must be a string like 'a-b' or None, got {tag!r}")
    return tuple(tag.split("-"))


class MiniffCalculator(Calculator):
    """ASE calculator evaluating miniff potentials with the compiled core.

    Parameters
    ----------
    potentials : LocalPotential, list of LocalPotential, str or os.PathLike
        The potentials (classical families, ``miniff.ml.NNPotential``, or a mix); their energies
        add up. A path loads a saved potentials file (``miniff.ml.load_potentials``).
    skin : float, optional
        Verlet skin in Å (default 0.5): the neighbour list is built up to
        ``max(potential cutoffs) + skin`` and reused until an atom moves more than ``skin / 2``.
        ``0`` rebuilds at every position change.
    n_threads : int or None, optional
        OpenMP threads for the kernels (None: ``OMP_NUM_THREADS`` or all cores).
    species_map : dict, optional
        Maps ASE chemical symbols to the species labels used in the potentials' tags, e.g.
        ``{"Bi": "bi", "Se": "se"}``. Without it symbols are used as they are, or matched
        case-insensitively when that is unambiguous.
    **kwargs
        Passed to ``ase.calculators.calculator.Calculator`` (e.g. ``label``).

    Notes
    -----
    Implemented properties: ``energy``, ``free_energy`` (eV, equal), ``energies`` (per atom,
    ``[N]``, eV, summing to the energy), ``forces`` (``[N, 3]``, eV/Å), ``stress`` (Voigt ``[6]``,
    ``xx yy zz yz xz xy``, eV/Å³, ASE sign) and ``stresses`` (per atom, ``[N, 6]``, eV/Å³,
    summing to ``stress``). Stress needs a cell periodic along all three axes; otherwise it
    raises ``PropertyNotImplementedError``. Atoms may lie outside the box.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]
    default_parameters = {}
    nolabel = True

    def __init__(self, potentials, skin=0.5, n_threads=None, species_map=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(potentials, (str, os.PathLike)):
            potentials = _load_potentials_file(potentials)
        if not isinstance(potentials, (list, tuple)):
            potentials = [potentials]
        potentials = list(potentials)
        if not potentials:
            raise ValueError("potentials: the list is empty")
        for k, p in enumerate(potentials):
            if not callable(getattr(p, "compute", None)) or not hasattr(p, "cutoff"):
                raise TypeError(
                    f"potentials[{k}] must be a miniff potential (with .compute and .cutoff), got {type(p).__name__}"
                )
        cutoffs = [float(p.cutoff) for p in potentials]
        if not all(np.isfinite(c) and c >= 0 for c in cutoffs):
            raise ValueError(f"potentials: cutoffs must be finite and >= 0, got {cutoffs}")
        try:
            skin = float(skin)
        except (TypeError, ValueError):
            raise TypeError(f"skin must be a number (Å), got {type(skin).__name__}") from None
        if not np.isfinite(skin) or skin < 0:
            raise ValueError(f"skin must be finite and >= 0 (Å), got {skin}")
        if n_threads is not None:
            from miniff._ext.threads import effective_n_threads

            effective_n_threads(n_threads)  # validates
        if species_map is not None and not isinstance(species_map, dict):
            raise TypeError(f"species_map must be a dict {{symbol: label}}, got {type(species_map).__name__}")
        self.potentials = potentials
        self.skin = skin
        self.n_threads = n_threads
        self.species_map = dict(species_map or {})
        self.cutoff = max(cutoffs)
        tags = [_tag_species(p) for p in potentials]
        self._known_species = sorted({s for t in tags if t is not None for s in t})
        self._untagged = any(t is None for t in tags)
        self._tags = tags
        self._reset_neighbors()

    # ------------------------------------------------------------------ neighbour state
    def _reset_neighbors(self):
        self._nw = None  # NeighborWrapper
        self._ref_positions = None  # [N, 3] ASE positions at the last build, Å
        self._nw_positions = None  # [N, 3] ASE positions of the current pair vectors, Å
        self._offset = None  # [N, 3] wrapper position minus ASE position (lattice translations), Å
        self._ref_numbers = None
        self._ref_cell = None
        self._ref_pbc = None
        self._active = None  # potentials whose species are all present
        self._i_p = None  # centre atom of every pair (the topology stays fixed between builds)
        self._j_p = None
        self._cache = None  # (positions, energy_n, grad_pc) of the last evaluation
        self.n_builds = 0  #: number of neighbour-list builds so far (diagnostics)

    def reset(self):
        """Clear results and the neighbour list (the next call rebuilds it)."""
        super().reset()
        self._reset_neighbors()

    def _labels(self, atoms):
        symbols = atoms.get_chemical_symbols()
        known = set(self._known_species)
        lower = {}
        for s in self._known_species:
            lower.setdefault(s.lower(), []).append(s)
        mapping = {}
        unknown = []
        for sym in sorted(set(symbols)):
            if sym in self.species_map:
                label = str(self.species_map[sym])
            elif sym in known:
                label = sym
            elif len(lower.get(sym.lower(), ())) == 1:
                label = lower[sym.lower()][0]
            else:
                label = sym
            if label not in known and not self._untagged:
                unknown.append(sym)
            mapping[sym] = label
        if unknown:
            raise UnknownSpeciesError(
                f"atoms contain species {unknown} that no potential describes "
                f"(the potentials know {self._known_species}); pass species_map= if the labels differ"
            )
        return np.array([mapping[s] for s in symbols])

    def _build(self, atoms):
        from miniff.kernel import Cell, NeighborWrapper

        positions = np.array(atoms.positions, dtype=float)
        pbc = np.array(atoms.pbc, dtype=bool)
        labels = self._labels(atoms)
        vectors = complete_vectors(atoms.cell.array, pbc, positions)
        coordinates = np.linalg.solve(vectors.T, positions.T).T
        cell = Cell(vectors, coordinates, labels)
        list_cutoff = self.cutoff + self.skin
        if list_cutoff <= 0:  # on-site terms only: any positive cutoff gives a valid (unused) list
            list_cutoff = 1.0
        nw = NeighborWrapper(cell, pbc=pbc, cutoff=list_cutoff, normalize=True, n_threads=self.n_threads)
        present = set(labels.tolist())
        self._active = [
            p for p, t in zip(self.potentials, self._tags, strict=True) if t is None or present.issuperset(t)
        ]
        self._nw = nw
        self._ref_positions = positions
        self._nw_positions = positions  # the ASE positions the pair vectors currently describe
        self._offset = np.asarray(nw.cartesian_row, dtype=float) - positions
        self._ref_numbers = atoms.numbers.copy()
        self._ref_cell = atoms.cell.array.copy()
        self._ref_pbc = pbc
        pairs = nw.pairs
        self._i_p = np.asarray(pairs.i_p, dtype=np.intp)
        self._j_p = np.asarray(pairs.j_p, dtype=np.intp)
        # flat indices (3 * atom + component) of every pair entry, for one bincount per scatter
        self._i3 = (3 * self._i_p[:, None] + np.arange(3)).reshape(-1)
        self._j3 = (3 * self._j_p[:, None] + np.arange(3)).reshape(-1)
        self.n_builds += 1

    def _update_neighbors(self, atoms):
        """Build the list or refresh its pair vectors; returns True if it was rebuilt."""
        positions = np.asarray(atoms.positions, dtype=float)
        if not np.all(np.isfinite(positions)):
            raise ValueError("atoms.positions contain NaN or inf")
        if not np.all(np.isfinite(atoms.cell.array)):
            raise ValueError("atoms.cell contains NaN or inf")
        if (
            self._nw is None
            or len(positions) != len(self._ref_positions)
            or not np.array_equal(atoms.numbers, self._ref_numbers)
            or not np.array_equal(atoms.pbc, self._ref_pbc)
            or not np.array_equal(atoms.cell.array, self._ref_cell)
        ):
            self._build(atoms)
            return True
        if np.array_equal(positions, self._nw_positions):
            return False
        disp2 = np.einsum("nc,nc->n", positions - self._ref_positions, positions - self._ref_positions)
        if self.skin == 0 or disp2.max(initial=0.0) > 0.25 * self.skin**2:
            self._build(atoms)
            return True
        self._nw.refresh_pair_vectors(positions + self._offset)
        self._nw_positions = positions.copy()
        return False

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, atoms, grad):
        positions = np.asarray(atoms.positions, dtype=float)
        c = self._cache
        if c is not None and (c[2] is not None or not grad) and np.array_equal(c[0], positions):
            return c[1], c[2]
        self._update_neighbors(atoms)
        nw = self._nw
        n = len(positions)
        energy_n = np.zeros(n)
        grad_pc = np.zeros((len(self._j_p), 3)) if grad else None
        for k, p in enumerate(self._active):
            e_n, g_pc = p.compute(nw, grad=grad, n_threads=self.n_threads)
            if k == 0:  # the first potential's arrays are fresh: use them instead of adding to zeros
                energy_n = np.asarray(e_n, dtype=float).reshape(n)
                grad_pc = np.asarray(g_pc, dtype=float).reshape(-1, 3) if grad else None
            else:
                energy_n = energy_n + e_n
                if grad:
                    grad_pc = grad_pc + g_pc
        self._cache = (positions.copy(), energy_n, grad_pc)
        return energy_n, grad_pc

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Compute the requested properties of ``atoms`` (see the class docstring)."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = "stress" in properties or "stresses" in properties
        if want_stress and not (atoms.pbc.all() and atoms.cell.rank == 3):
            raise PropertyNotImplementedError(
                f"stress needs a cell periodic along all three axes (pbc={atoms.pbc.tolist()})"
            )
        if set(system_changes) - {"positions", "initial_charges", "initial_magmoms"}:
            self._cache = None  # cell, pbc or numbers changed: positions alone no longer identify a result
        grad = want_stress or "forces" in properties
        energy_n, grad_pc = self._evaluate(atoms, grad)
        energy = float(energy_n.sum())
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = energy_n.copy()
        if grad:
            n = len(atoms)
            w = grad_pc.reshape(-1)
            # forces = -dE/dr: dE/dr[j_p] += grad_pc[p], dE/dr[i_p] -= grad_pc[p]
            forces = np.bincount(self._i3, weights=w, minlength=3 * n)
            forces -= np.bincount(self._j3, weights=w, minlength=3 * n)
            self.results["forces"] = forces.reshape(n, 3)
        if want_stress:
            D_pc = self._nw.pairs.D_pc
            volume = abs(np.linalg.det(atoms.cell.array))
            w_pv = grad_pc[:, _VOIGT_A] * D_pc[:, _VOIGT_B]
            w_pv[:, 3:] += grad_pc[:, _VOIGT_B[3:]] * D_pc[:, _VOIGT_A[3:]]
            w_pv[:, 3:] *= 0.5
            n = len(atoms)
            stresses = np.empty((n, 6))
            for v in range(6):
                stresses[:, v] = np.bincount(self._i_p, weights=w_pv[:, v], minlength=n)
            stresses /= volume
            self.results["stresses"] = stresses
            self.results["stress"] = stresses.sum(axis=0)
