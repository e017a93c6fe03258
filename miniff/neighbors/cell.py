"""The ``Cell``: a box (three lattice vectors) with atoms in fractional coordinates."""

import itertools

import numpy as np

from miniff import units
from miniff.util import rows_dot3

__all__ = ["Cell"]

_STATE_TYPES = ("dfttools.utypes.CrystalCell", "dfttools.types.UnitCell")
# meta keys with one entry per atom (replicated by ``repeated``)
_PER_ATOM_META = ("forces", "charges", "partial-energy", "energies", "magmoms", "velocities", "momenta", "masses")
# meta keys proportional to the number of atoms (scaled by ``repeated``)
_EXTENSIVE_META = ("total-energy", "free-energy", "energy")
# meta keys never replicated
_INTENSIVE_META = ("stress", "virial", "pbc")
# how 0.1.4 annotated units in the cells JSON
_META_UNITS = {"total-energy": "eV", "free-energy": "eV", "forces": "eV/angstrom", "stress": "eV/angstrom**3",
               "partial-energy": "eV", "energies": "eV"}


def _as_finite_array(value, name, ndim, dtype=np.float64):
    if np.iscomplexobj(value):  # numpy would drop the imaginary part with only a warning
        raise TypeError(f"{name} must be real numbers, got a complex array")
    try:
        arr = np.array(value, dtype=dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}") from None
    if arr.size == 0 and ndim == 2 and arr.ndim != 2:
        arr = arr.reshape(0, 3)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-dimensional array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


class Cell:
    """A periodic (or not) box with atoms.

    Parameters
    ----------
    vectors : array-like [3, 3]
        Box vectors (rows), Cartesian, Å. Must be non-singular; left-handed cells are allowed.
    coordinates : array-like [N, 3]
        Fractional coordinates (in the basis of ``vectors``); values outside [0, 1) are kept.
    values : array-like [N]
        Species labels (usually strings such as ``"Si"``).
    meta : dict or None
        Metadata, shallow-copied: ``"total-energy"`` (eV), ``"forces"`` ([N, 3] eV/Å),
        ``"charges"`` ([N], e), ``"stress"`` ([6] Voigt eV/Å³), anything else.

    Raises
    ------
    ValueError
        Wrong shapes, NaN/inf, a singular cell, ``len(values) != len(coordinates)``.
    """

    def __init__(self, vectors, coordinates, values, meta=None):
        vectors = _as_finite_array(vectors, "vectors", 2)
        if vectors.shape != (3, 3):
            raise ValueError(f"vectors must have shape (3, 3), got {vectors.shape}")
        scale = np.prod(np.linalg.norm(vectors, axis=1))
        if scale == 0 or abs(np.linalg.det(vectors)) <= 1e-10 * scale:
            raise ValueError("vectors are singular (the cell has zero volume)")
        coordinates = _as_finite_array(coordinates, "coordinates", 2)
        if coordinates.shape[1] != 3:
            if coordinates.size == 0:
                coordinates = coordinates.reshape(0, 3)
            else:
                raise ValueError(f"coordinates must have shape (N, 3), got {coordinates.shape}")
        values = np.asanyarray(values)
        if values.ndim != 1:
            if values.size == 0:
                values = values.reshape(0)
            else:
                raise ValueError(f"values must be a 1-dimensional array, got shape {values.shape}")
        if len(values) != len(coordinates):
            raise ValueError(f"len(values) = {len(values)} differs from len(coordinates) = {len(coordinates)}")
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
        self.vectors = vectors
        self.coordinates = coordinates
        self.values = values
        self.meta = dict(meta) if meta is not None else {}

    # --- basic properties -------------------------------------------------------------------------------------
    @property
    def size(self):
        """Number of atoms."""
        return len(self.coordinates)

    @property
    def volume(self):
        """Cell volume ``|det(vectors)|``, Å³."""
        return float(abs(np.linalg.det(self.vectors)))

    def __repr__(self):
        return f"Cell(size={self.size}, species={sorted(set(map(str, self.values)))}, volume={self.volume:.3f})"

    def copy(self):
        """A copy: new arrays, shallow copy of ``meta``."""
        return Cell(self.vectors.copy(), self.coordinates.copy(), self.values.copy(), meta=self.meta)

    def cartesian(self):
        """Cartesian positions ``coordinates @ vectors``, ``[N, 3]`` Å."""
        return rows_dot3(self.coordinates, self.vectors)

    def transform_from_cartesian(self, xyz):
        """Fractional coordinates of Cartesian points ``xyz`` ([..., 3] Å): ``xyz @ inv(vectors)``."""
        xyz = np.asarray(xyz, dtype=float)
        if xyz.shape[-1:] != (3,):
            raise ValueError(f"xyz must have shape (..., 3), got {xyz.shape}")
        return rows_dot3(xyz, np.linalg.inv(self.vectors))

    def distances(self, cutoff=None, other=None):
        """Plain Euclidean distances between atoms (no periodic images).

        Parameters
        ----------
        cutoff : float or None
            ``None``: a dense ``[N, N']`` matrix; otherwise a scipy sparse (dok) matrix of the
            distances below ``cutoff`` (Å).
        other : Cell, ndarray [N', 3] (Cartesian, Å) or None
            The second set of points; ``None`` = this cell.
        """
        this = self.cartesian()
        if other is None:
            that = this
        elif isinstance(other, Cell):
            that = other.cartesian()
        else:
            that = np.asarray(other, dtype=float)
            if that.ndim != 2 or that.shape[1] != 3:
                raise ValueError(f"other must be a Cell or an (N, 3) array, got shape {that.shape}")
        if cutoff is None:
            return np.linalg.norm(this[:, None, :] - that[None, :, :], axis=-1)
        from scipy.spatial import cKDTree

        return cKDTree(this).sparse_distance_matrix(cKDTree(that), float(cutoff))

    # --- supercells -------------------------------------------------------------------------------------------
    def repeated(self, *args):
        """Supercell ``n1 x n2 x n3`` (copy-major order: all atoms of copy 0, then copy 1, ...).

        ``meta`` is kept: per-atom entries (``forces``, ``charges``, ``partial-energy``, ...) are
        tiled, total energies are multiplied by the number of copies, intensive entries (``stress``)
        and everything else are kept as they are.

        Parameters
        ----------
        *args : int
            Three positive repetition counts (or one sequence of three).
        """
        if len(args) == 1 and np.ndim(args[0]) == 1:
            args = tuple(args[0])
        if len(args) != 3:
            raise ValueError(f"repeated needs three repetition counts, got {args!r}")
        reps = []
        for n in args:
            if isinstance(n, (bool, np.bool_)) or int(n) != n or int(n) < 1:
                raise ValueError(f"repetition counts must be positive integers, got {args!r}")
            reps.append(int(n))
        reps = np.array(reps)
        copies = np.array(list(itertools.product(*(range(r) for r in reps))), dtype=float)
        n_copies = len(copies)
        coordinates = ((self.coordinates[None, :, :] + copies[:, None, :]) / reps).reshape(-1, 3)
        values = np.tile(self.values, n_copies)
        meta = {}
        for key, value in self.meta.items():
            if key in _EXTENSIVE_META and np.ndim(value) == 0:
                meta[key] = value * n_copies
            elif key not in _INTENSIVE_META and np.ndim(value) >= 1 and len(value) == self.size and (
                key in _PER_ATOM_META or isinstance(value, np.ndarray)
            ):
                meta[key] = np.concatenate([np.asarray(value)] * n_copies, axis=0)
            else:
                meta[key] = value
        return Cell(self.vectors * reps[:, None], coordinates, values, meta=meta)

    # --- state dicts and files --------------------------------------------------------------------------------
    def state_dict(self):
        """``{"type", "vectors", "coordinates", "values", "meta"}`` (0.1.4 layout, arrays not copied)."""
        return {
            "type": _STATE_TYPES[0],
            "vectors": self.vectors,
            "coordinates": self.coordinates,
            "values": self.values,
            "meta": self.meta,
        }

    @classmethod
    def from_state_dict(cls, data):
        """Rebuild a cell from :meth:`state_dict` output (or a 0.1.4 cells JSON object).

        ``c_basis``: ``None`` (fractional coordinates) or ``"cartesian"``.

        Raises
        ------
        ValueError
            Unknown ``type``, unknown ``c_basis``, missing or extra keys.
        """
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        data = dict(data)
        kind = data.pop("type", None)
        if kind not in _STATE_TYPES:
            raise ValueError(f"data['type'] must be one of {_STATE_TYPES}, got {kind!r}")
        missing = {"vectors", "coordinates", "values"} - set(data)
        if missing:
            raise ValueError(f"data is missing {sorted(missing)}")
        vectors = data.pop("vectors")
        coordinates = data.pop("coordinates")
        values = data.pop("values")
        meta = data.pop("meta", None)
        basis = data.pop("c_basis", None)
        if data:
            raise ValueError(f"data has unknown keys {sorted(data)}")
        if basis == "cartesian":
            coordinates = np.asarray(coordinates, dtype=float) @ np.linalg.inv(np.asarray(vectors, dtype=float))
        elif basis is not None:
            raise ValueError(f"data['c_basis'] must be None or 'cartesian', got {basis!r}")
        return cls(vectors, coordinates, values, meta=meta)

    def _json_state(self):
        meta = {}
        for key, value in self.meta.items():
            if key in _META_UNITS and np.asarray(value).dtype.kind in "fiu":
                meta[key] = units.Quantity(np.asarray(value), _META_UNITS[key])
            else:
                meta[key] = value
        return {
            "type": _STATE_TYPES[0],
            "vectors": units.Quantity(self.vectors, "angstrom"),
            "coordinates": self.coordinates,
            "values": np.asarray(self.values),
            "meta": meta,
        }

    @classmethod
    def load(cls, f):
        """Read cells from the cells JSON of miniff 0.1.4 (see ``docs/formats.md``), converting units to eV/Å.

        Parameters
        ----------
        f : str, path or file object

        Returns
        -------
        Cell or list of Cell
            One cell for a top-level object, a list for a top-level list.
        """
        try:
            data = units.load(f)
        except ValueError as error:
            raise ValueError(f"cannot read cells from {f!r}: {error}") from error
        if isinstance(data, list):
            return [cls._from_json(d, k) for k, d in enumerate(data)]
        return cls._from_json(data, None)

    @classmethod
    def _from_json(cls, data, index):
        where = "" if index is None else f" (cell #{index})"
        if not isinstance(data, dict):
            raise ValueError(f"a cell must be a JSON object{where}, got {type(data).__name__}")
        try:
            return cls.from_state_dict(data)
        except (ValueError, TypeError) as error:
            raise ValueError(f"invalid cell{where}: {error}") from error

    @staticmethod
    def save(cells, f):
        """Write one cell (JSON object) or a list of cells (JSON list) in the 0.1.4 format.

        Writing to a path is atomic (temporary file + ``os.replace``).

        Parameters
        ----------
        cells : Cell or list/tuple/ndarray of Cell
        f : str, path or file object
        """
        if isinstance(cells, (list, tuple, np.ndarray)):
            for c in cells:
                if not isinstance(c, Cell):
                    raise TypeError(f"cells must contain Cell objects, got {type(c).__name__}")
            data = [c._json_state() for c in cells]
        elif isinstance(cells, Cell):
            data = cells._json_state()
        else:
            raise TypeError(f"cells must be a Cell or a list of cells, got {type(cells).__name__}")
        units.dump(data, f)

    # --- ASE --------------------------------------------------------------------------------------------------
    @classmethod
    def from_ase(cls, atoms):
        """Cell from an ``ase.Atoms``.

        Energy, forces, stress and charges are taken from ``atoms.calc.results`` when a calculator
        is attached, else from ``atoms.info`` / ``atoms.arrays``; they are stored in ``meta`` as
        ``"total-energy"`` (eV), ``"forces"`` ([N, 3] eV/Å), ``"stress"`` ([6] Voigt eV/Å³),
        ``"charges"`` ([N] e). The periodic flags go to ``meta["pbc"]``.
        """
        if not hasattr(atoms, "get_scaled_positions") or not hasattr(atoms, "cell"):
            raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
        vectors = np.array(atoms.cell.array, dtype=float)
        if abs(np.linalg.det(vectors)) < 1e-12:
            raise ValueError("atoms has no (or a degenerate) cell; set atoms.cell first")
        coordinates = atoms.get_scaled_positions(wrap=False)
        if "species" in atoms.arrays:
            values = np.array(atoms.arrays["species"])
        else:
            values = np.array(atoms.get_chemical_symbols())
        meta = {"pbc": np.array(atoms.pbc, dtype=bool)}
        results = dict(getattr(atoms.calc, "results", None) or {}) if atoms.calc is not None else {}
        info, arrays = atoms.info, atoms.arrays
        energy = results.get("energy", info.get("total-energy", info.get("energy")))
        if energy is not None:
            meta["total-energy"] = float(energy)
        if "free_energy" in results:
            meta["free-energy"] = float(results["free_energy"])
        forces = results.get("forces", arrays.get("forces"))
        if forces is not None:
            meta["forces"] = np.array(forces, dtype=float)
        stress = results.get("stress", info.get("stress"))
        if stress is not None:
            stress = np.array(stress, dtype=float)
            if stress.shape == (3, 3):
                stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            meta["stress"] = stress
        charges = results.get("charges", arrays.get("charges", arrays.get("initial_charges")))
        if charges is not None and (not np.allclose(charges, 0) or "charges" in results or "charges" in arrays):
            meta["charges"] = np.array(charges, dtype=float)
        return cls(vectors, coordinates, values, meta=meta)

    def to_ase(self, pbc=None):
        """An ``ase.Atoms`` with this cell, positions and species.

        ``meta`` energy/forces/stress/charges go to a ``SinglePointCalculator``. Labels that are not
        chemical symbols become dummy atoms ``"X"`` and are kept in ``atoms.arrays["species"]``.

        Parameters
        ----------
        pbc : bool, three bools or None
            ``None``: ``meta["pbc"]`` if present, else fully periodic.
        """
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.data import atomic_numbers

        if pbc is None:
            pbc = self.meta.get("pbc", True)
        labels = [str(v) for v in self.values]
        symbolic = all(label in atomic_numbers for label in labels)
        atoms = Atoms(
            symbols=labels if symbolic else ["X"] * len(labels),
            scaled_positions=self.coordinates,
            cell=self.vectors,
            pbc=pbc,
        )
        if not symbolic:
            atoms.arrays["species"] = np.array(labels)
        results = {}
        if "total-energy" in self.meta:
            results["energy"] = float(self.meta["total-energy"])
        if "free-energy" in self.meta:
            results["free_energy"] = float(self.meta["free-energy"])
        if "forces" in self.meta:
            results["forces"] = np.array(self.meta["forces"], dtype=float)
        if "stress" in self.meta:
            results["stress"] = np.array(self.meta["stress"], dtype=float)
        if "charges" in self.meta:
            results["charges"] = np.array(self.meta["charges"], dtype=float)
            atoms.set_initial_charges(results["charges"])
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms
