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

from miniff._ext.threads import effective_n_threads
from miniff.io.atoms import complete_vectors
from miniff.ml.committee import committee_spread, committees_of
from miniff.ml.serialize import load_potentials
from miniff.neighbors.cell import Cell
from miniff.potentials.evaluate import evaluate
from miniff.potentials.wrapper import NeighborWrapper

__all__ = ["MiniffCalculator", "UnknownSpeciesError"]


class UnknownSpeciesError(CalculatorSetupError, KeyError):
    """The atoms contain a species that none of the calculator's potentials describes."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _load_potentials_file(path):
    """Load a saved list of potentials (plain data, see ``miniff.ml.load_potentials``)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"potentials: no such file {os.fspath(path)!r}")
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
    device : str or None, optional
        Evaluate the NN potentials' networks and their Jacobian contraction on this device (``"cuda"``,
        ``"cuda:N"``, ``"cpu"`` or ``"auto"``; ``miniff.ml.NNPotential.set_device``): worth it for large systems
        on a GPU. Descriptors, neighbour lists and classical potentials stay on the CPU. None (default): the CPU
        path. ``"cuda"`` when torch sees no GPU is a ``ValueError``. Sets the device of the potential objects
        given (they are shared, not copied).
    **kwargs
        Passed to ``ase.calculators.calculator.Calculator`` (e.g. ``label``).

    Notes
    -----
    Implemented properties: ``energy``, ``free_energy`` (eV, equal), ``energies`` (per atom,
    ``[N]``, eV, summing to the energy), ``forces`` (``[N, 3]``, eV/Å), ``stress`` (Voigt ``[6]``,
    ``xx yy zz yz xz xy``, eV/Å³, ASE sign) and ``stresses`` (per atom, ``[N, 6]``, eV/Å³,
    summing to ``stress``). Stress needs a cell periodic along all three axes; otherwise it
    raises ``PropertyNotImplementedError``. Atoms may lie outside the box. Potentials needing charges
    (the Ewald families) take them from ``atoms.get_initial_charges()`` (e). Potentials that equilibrate
    charges (the 4G-HDNNPs of ``miniff.io.read_n2p2``) report them as ``charges`` (``[N]``, e;
    ``atoms.get_charges()``), at the total charge of ``atoms.get_initial_charges()``.

    When the potentials include a ``miniff.ml.CommitteePotential``, every calculation also stores the
    committee spread (``miniff.ml.committee_spread``) in ``results``: ``energy_std`` (eV), ``energies_std``
    (``[N]``, eV), with forces ``forces_std`` (``[N]``, eV/Å, RMS over Cartesian components) and with stress
    ``stress_std`` (``[6]``, eV/Å³). The descriptors are evaluated once for the mean and the spread (the
    calculator sets the committees' ``keep_member_gradients``, which changes no result, only what is kept).
    NN potentials that know their training range (``descriptor_range``; n2p2 potentials: ``scaling.data``) add
    ``extrapolating_descriptors`` (``[N]`` int: descriptors outside the range per atom) and
    ``n_extrapolating_atoms`` (int).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses", "charges"]
    default_parameters = {}
    nolabel = True

    def __init__(self, potentials, skin=0.5, n_threads=None, species_map=None, device=None, **kwargs):
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

            effective_n_threads(n_threads)  # validates
        if species_map is not None and not isinstance(species_map, dict):
            raise TypeError(f"species_map must be a dict {{symbol: label}}, got {type(species_map).__name__}")
        if device is not None:
            from miniff.ml.device import resolve_device

            device = resolve_device(device)   # a clear error first, whatever the potentials
            for p in potentials:
                if callable(getattr(p, "set_device", None)):
                    p.set_device(device)
        self.device = device
        self.potentials = potentials
        self.skin = skin
        self.n_threads = n_threads
        self.species_map = dict(species_map or {})
        self.cutoff = max(cutoffs)
        tags = [_tag_species(p) for p in potentials]
        self._known_species = sorted({s for t in tags if t is not None for s in t})
        self._untagged = any(t is None for t in tags)
        self._tags = tags
        self._needs_charges = any(getattr(p, "needs_charges", False) for p in potentials)
        self._equilibrates = any(getattr(p, "equilibrates_charges", False) for p in potentials)
        self._has_committee = bool(committees_of(potentials))
        for c in committees_of(potentials):   # forces_std follows every evaluation: keep the members' gradients
            c.keep_member_gradients = True
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
        self._cache = None  # (positions, Evaluation, with gradient, with stress) of the last evaluation
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
    def _evaluate(self, atoms, grad, stress):
        """The ``Evaluation`` of ``atoms`` (through ``miniff.potentials.evaluate.evaluate``, the one evaluation
        path), reusing the last one when the positions did not change and it holds what is asked."""
        positions = np.asarray(atoms.positions, dtype=float)
        c = self._cache
        if c is not None and (c[2] or not grad) and (c[3] or not stress) and np.array_equal(c[0], positions):
            return c[1]
        self._update_neighbors(atoms)
        if self._needs_charges:  # Ewald terms: the charges are atoms.get_initial_charges() (e)
            self._nw.meta["charges"] = np.array(atoms.get_initial_charges(), dtype=float)
        if self._equilibrates:  # 4G-HDNNPs: the total charge is that of atoms.get_initial_charges() (e)
            self._nw.meta["total_charge"] = float(np.sum(atoms.get_initial_charges()))
        result = evaluate(self._nw, self._active, grad=grad, per_atom_stress=stress, n_threads=self.n_threads)
        self._cache = (positions.copy(), result, grad, stress)
        return result

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Compute the requested properties of ``atoms`` (see the class docstring)."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = "stress" in properties or "stresses" in properties
        if want_stress and not (atoms.pbc.all() and atoms.cell.rank == 3):
            raise PropertyNotImplementedError(
                f"stress needs a cell periodic along all three axes (pbc={atoms.pbc.tolist()})"
            )
        if set(system_changes) - {"positions", "initial_magmoms"}:
            self._cache = None  # cell, pbc, numbers or charges changed: positions alone no longer identify a result
        result = self._evaluate(atoms, "forces" in properties or want_stress, want_stress)
        self.results["energy"] = result.energy
        self.results["free_energy"] = result.energy
        self.results["energies"] = result.energy_n.copy()
        if result.grad_nc is not None:
            self.results["forces"] = -result.grad_nc
        if want_stress:
            self.results["stresses"] = result.stress_n.copy()
            self.results["stress"] = result.stress_n.sum(axis=0)
        for p in self._active:
            if getattr(p, "equilibrates_charges", False):  # 4G-HDNNPs: the equilibrated charges (e)
                self.results["charges"] = p.charges(self._nw, n_threads=self.n_threads)
        counts = [p.last_extrapolation(self._nw) for p in self._active if hasattr(p, "last_extrapolation")]
        counts = [c for c in counts if c is not None]
        if counts:  # NN potentials with a training range: descriptors outside it per atom
            self.results["extrapolating_descriptors"] = np.sum(counts, axis=0)
            self.results["n_extrapolating_atoms"] = int((self.results["extrapolating_descriptors"] > 0).sum())
        if self._has_committee and committees_of(self._active):
            spread = committee_spread(self._nw, self._active, forces=result.grad_nc is not None, stress=want_stress,
                                      n_threads=self.n_threads)
            self.results["energy_std"] = spread.energy_std
            self.results["energies_std"] = spread.energies_std
            if spread.forces_std is not None:
                self.results["forces_std"] = spread.forces_std
            if spread.stress_std is not None:
                self.results["stress_std"] = spread.stress_std
