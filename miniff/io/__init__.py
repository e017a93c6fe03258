"""Training data in and out: structures with energies and forces from ASE files and databases; n2p2 potentials.

:func:`read_n2p2` reads an n2p2 potential folder (``input.nn``, ``scaling.data``, ``weights.NNN.data``) into
miniff potentials (eV, Å); :func:`write_n2p2` writes miniff NN potentials as such a folder (for n2p2 and LAMMPS
``pair_style hdnnp``), see ``docs/n2p2.md``.

:func:`read_cells` turns anything ``ase.io.read`` understands (extxyz, ASE trajectories, VASP
OUTCAR, ...), an ``ase.db`` database (SQLite ``*.db`` files or ``postgresql://`` URLs) or a 0.1.4
cells JSON file into a list of :class:`miniff.kernel.Cell` whose ``meta`` carries the targets:

========================  ===========================================  =========
meta key                  value                                        unit
========================  ===========================================  =========
``"total-energy"``        float                                        eV
``"forces"``              ndarray [N, 3]                               eV/Å
``"stress"``              ndarray [6], Voigt xx yy zz yz xz xy          eV/Å³
``"group"``               str, optional label of the structure
``"pbc"``                 tuple of 3 bools
``"predicted-energy"``    float, a model's prediction                  eV
``"predicted-forces"``    ndarray [N, 3], a model's prediction         eV/Å
========================  ===========================================  =========

:func:`write_cells` writes cells back into extxyz (or any format ``ase.io.write`` supports) or a
database, with predictions stored next to the references under separate names
(``predicted_energy``, ``predicted_forces``). File writes are atomic: a temporary file in the same
folder replaces the destination only once complete.

Example
-------
>>> from miniff.io import read_cells, write_cells
>>> cells = read_cells("train.extxyz")                      # doctest: +SKIP
>>> cells = read_cells("data.db", selection="group=bulk")   # doctest: +SKIP
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from miniff.io.atoms import (
    DEFAULT_ENERGY_KEYS,
    DEFAULT_FORCES_KEYS,
    ENERGY_KEY,
    FORCES_KEY,
    GROUP_KEY,
    PBC_KEY,
    PREDICTED_ENERGY_KEY,
    PREDICTED_FORCES_KEY,
    PREDICTED_STRESS_KEY,
    STRESS_KEY,
    MissingDataWarning,
    MissingEnergyWarning,
    MissingForcesWarning,
    atoms_to_cell,
    cell_to_atoms,
    warn_missing,
)
from miniff.io.database import is_db_path as _is_db_path
from miniff.io.database import is_db_url as _is_db_url
from miniff.io.database import read_db as _read_db
from miniff.io.database import redact_url as _redact_url
from miniff.io.database import write_db_rows as _write_db_rows
from miniff.io.n2p2_4g import N2p2Potential4G
from miniff.io.n2p2_model import N2p2ExtrapolationWarning, N2p2Potential
from miniff.io.n2p2_read import read_n2p2
from miniff.io.n2p2_write import write_n2p2

__all__ = [
    "read_n2p2",
    "write_n2p2",
    "N2p2Potential",
    "N2p2ExtrapolationWarning",
    "N2p2Potential4G",
    "read_cells",
    "write_cells",
    "cells_from_atoms",
    "cells_to_atoms",
    "atoms_to_cell",
    "cell_to_atoms",
    "MissingDataWarning",
    "MissingEnergyWarning",
    "MissingForcesWarning",
    "ENERGY_KEY",
    "FORCES_KEY",
    "STRESS_KEY",
    "GROUP_KEY",
    "PBC_KEY",
    "PREDICTED_ENERGY_KEY",
    "PREDICTED_FORCES_KEY",
    "PREDICTED_STRESS_KEY",
]

def _parse_index(index):
    """An ase-style index (int, slice, or a string like ``":"``, ``"-1"``, ``"2:10:2"``) as int or slice."""
    if index is None:
        return slice(None)
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        return int(index)
    if isinstance(index, slice):
        return index
    if isinstance(index, str):
        text = index.strip()
        try:
            if ":" not in text:
                return int(text)
            parts = [int(p) if p.strip() else None for p in text.split(":")]
        except ValueError:
            raise ValueError(f"index must be an int, a slice or a string like ':' or '0:10:2', got {index!r}") from None
        if len(parts) > 3:
            raise ValueError(f"index must be an int, a slice or a string like ':' or '0:10:2', got {index!r}")
        return slice(*parts)
    raise TypeError(f"index must be an int, a slice or a string, got {type(index).__name__}")


def _is_cells_json(path):
    """True if ``path`` is a 0.1.4 cells JSON file (and not, e.g., an ASE JSON database)."""
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096).lstrip()
    except UnicodeDecodeError:
        return False
    if head.startswith("["):
        return True
    if head.startswith("{"):
        return '"dfttools.' in head or '"vectors"' in head
    return False


def read_cells(
    source,
    index=":",
    selection=None,
    *,
    format=None,
    group=None,
    group_key=None,
    energy_keys=DEFAULT_ENERGY_KEYS,
    forces_keys=DEFAULT_FORCES_KEYS,
    warn_missing_targets=True,
    **kwargs,
):
    """Read structures with reference energies, forces and stress as a list of cells.

    This is the reader behind the workflows' ``fn_cells`` entries (``data.extxyz``, ``data.db``,
    ``cells.json``); its signature is kept stable.

    Parameters
    ----------
    source : str, os.PathLike, ase.Atoms or list of ase.Atoms
        * a path of anything ``ase.io.read`` reads (extxyz, ASE ``.traj``, VASP ``OUTCAR``/
          ``vasprun.xml``, ...);
        * an ``ase.db`` database: a path ending in ``.db`` (SQLite) or a URL
          ``postgresql://user:password@host:port/dbname`` (needs ``pip install 'miniff[postgresql]'``;
          see :mod:`miniff.io.database`);
        * a 0.1.4 cells JSON file (``*.json`` holding a list of cell objects), read by
          :meth:`miniff.kernel.Cell.load`;
        * ``ase.Atoms`` objects (one or a list).
    index : int, slice or str, optional
        Which structures, as in ``ase.io.read`` (``":"`` all, ``"-1"`` the last, ``"0:10:2"``);
        applied after ``selection`` for databases.
    selection : str, int, list or None, optional
        ASE database selection (e.g. ``"group=bulk,natoms<50"``); databases only.
    format : str, optional
        Format passed to ``ase.io.read`` when it cannot be guessed from the file name.
    group : str, optional
        Group label given to every structure read that has none of its own (``group_key``,
        ``info["group"]`` or a database key ``group``).
    group_key : str, optional
        Name of the database key-value pair (or ``atoms.info`` entry of files and ``Atoms``) whose value
        becomes the structure's group label (e.g. ``"config_type"``); structures without that key keep
        ``group`` / their ``group`` key.
    energy_keys, forces_keys : sequence of str, optional
        Names accepted for the energy (``atoms.info`` or database key-value pairs) and the forces
        (per-atom arrays or database data) when a structure carries no calculator results.
    warn_missing_targets : bool, optional
        Warn with :class:`MissingEnergyWarning` / :class:`MissingForcesWarning` when some
        structures have no energy / no forces (the latter are used as energy-only data).
    **kwargs
        Passed to ``ase.io.read``.

    Returns
    -------
    list of miniff.kernel.Cell
        Box vectors in Å, fractional coordinates, species labels (chemical symbols, or the labels
        stored by :func:`write_cells`), targets in ``meta`` (see the module docstring).

    Raises
    ------
    FileNotFoundError
        If the file does not exist (the message names the path).
    ValueError
        If the file cannot be parsed, holds no structures, is a database without ase.db's table,
        or ``selection`` is given for a source that is not a database (or is invalid for it).
    ConnectionError
        If a database server cannot be reached or refuses the login (the message names the URL
        without its password).
    ImportError
        For a ``postgresql://`` URL when ``ase-db-backends`` / ``psycopg2`` are not installed.
    TypeError
        If ``source`` has an unsupported type.
    """
    from ase import Atoms

    if group_key is not None and not isinstance(group_key, str):
        raise TypeError(f"group_key must be a string or None, got {type(group_key).__name__}")
    energy_keys = _as_keys(energy_keys, "energy_keys")
    forces_keys = _as_keys(forces_keys, "forces_keys")
    idx = _parse_index(index)
    if isinstance(source, Atoms):
        source = [source]
    if isinstance(source, (list, tuple)) and all(isinstance(a, Atoms) for a in source):
        if selection is not None:
            raise ValueError("selection applies to databases only, not to a list of Atoms")
        items = list(source)
        items = [items[idx]] if isinstance(idx, int) else items[idx]
        cells = cells_from_atoms(items, group=group, group_key=group_key, energy_keys=energy_keys,
                                 forces_keys=forces_keys)
        label = "<Atoms>"
    elif _is_db_url(source):
        label = _redact_url(source)
        cells = _read_db(source, label, idx, selection, group, group_key, energy_keys, forces_keys)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"source: no such file {str(path)!r}")
        if path.is_dir():
            raise ValueError(f"source: {str(path)!r} is a directory, expected a file or a database URL")
        label = str(path)
        if _is_db_path(path):
            cells = _read_db(str(path), label, idx, selection, group, group_key, energy_keys, forces_keys)
        else:
            if selection is not None:
                raise ValueError(f"selection applies to databases (*.db, postgresql://), not to {label!r}")
            if (format in (None, "json")) and path.suffix.lower() == ".json" and _is_cells_json(path):
                cells = _read_cells_json(path, idx)
                if group is not None:
                    for c in cells:
                        c.meta.setdefault(GROUP_KEY, str(group))
            else:
                cells = _read_ase_file(path, idx, format, group, group_key, energy_keys, forces_keys, kwargs)
    else:
        raise TypeError(
            f"source must be a path, a database URL or ase.Atoms, got {type(source).__name__}"
        )
    if not cells:
        raise ValueError(f"source: no structures read from {label!r} (index={index!r}, selection={selection!r})")
    if warn_missing_targets:
        warn_missing(cells, label)
    return cells


def _as_keys(keys, name):
    """A tuple of key names from one name or a sequence of names."""
    if isinstance(keys, str):
        return (keys,)
    try:
        keys = tuple(keys)
    except TypeError:
        raise TypeError(f"{name} must be a string or a sequence of strings, got {type(keys).__name__}") from None
    if not all(isinstance(k, str) for k in keys):
        raise TypeError(f"{name} must contain strings, got {keys!r}")
    return keys


def _read_cells_json(path, idx):
    from miniff.neighbors.cell import Cell

    try:
        loaded = Cell.load(str(path))
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"source: {str(path)!r} is not a valid cells JSON file: {e}") from e
    cells = list(loaded) if isinstance(loaded, (list, tuple, np.ndarray)) else [loaded]
    return [cells[idx]] if isinstance(idx, int) else cells[idx]


def _read_ase_file(path, idx, format, group, group_key, energy_keys, forces_keys, kwargs):
    import ase.io

    if path.stat().st_size == 0:
        raise ValueError(f"source: {str(path)!r} is empty")
    try:
        images = ase.io.read(str(path), index=idx, format=format, **kwargs)
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as e:  # ASE raises many types (ValueError, IndexError, StopIteration, ...)
        raise ValueError(f"source: could not read structures from {str(path)!r}: {type(e).__name__}: {e}") from e
    if not isinstance(images, list):
        images = [images]
    return cells_from_atoms(images, group=group, group_key=group_key, energy_keys=energy_keys,
                            forces_keys=forces_keys, source=path)


def cells_from_atoms(
    images, *, group=None, group_key=None, energy_keys=DEFAULT_ENERGY_KEYS, forces_keys=DEFAULT_FORCES_KEYS,
    source=None
):
    """Convert ``ase.Atoms`` objects into cells with their targets (see :func:`read_cells`).

    Parameters
    ----------
    images : list of ase.Atoms
    group : str, optional
        Group label for structures without one.
    group_key : str, optional
        ``atoms.info`` entry whose value becomes the group label.
    energy_keys, forces_keys : sequence of str, optional
        Names accepted outside calculator results (see :func:`read_cells`).
    source : str or path, optional
        Recorded as ``meta["source-file-name"]`` (as in 0.1.4).

    Returns
    -------
    list of miniff.kernel.Cell
    """
    cells = []
    for k, atoms in enumerate(images):
        try:
            cell = atoms_to_cell(atoms, energy_keys=energy_keys, forces_keys=forces_keys)
        except ValueError as e:
            where = f" in {str(source)!r}" if source is not None else ""
            raise ValueError(f"structure {k}{where}: {e}") from e
        if group_key is not None and atoms.info.get(group_key) is not None:
            cell.meta[GROUP_KEY] = str(atoms.info[group_key])
        if group is not None:
            cell.meta.setdefault(GROUP_KEY, str(group))
        if source is not None:
            cell.meta["source-file-name"] = str(source)
        cells.append(cell)
    return cells


def cells_to_atoms(cells, predicted=None):
    """Convert cells into ``ase.Atoms`` with references and (optional) predictions attached.

    Parameters
    ----------
    cells : Cell or list of Cell
    predicted : list of Cell, optional
        Cells of the same structures (e.g. from ``OneShotWorkflow``) whose ``"total-energy"`` /
        ``"forces"`` are a model's predictions; stored as ``predicted_energy`` /
        ``predicted_forces``. Predictions may also sit in each cell's own ``meta`` under
        ``"predicted-energy"`` / ``"predicted-forces"``.

    Returns
    -------
    list of ase.Atoms
    """
    cells = _as_cell_list(cells, "cells")
    if predicted is not None:
        predicted = _as_cell_list(predicted, "predicted")
        if len(predicted) != len(cells):
            raise ValueError(f"predicted must hold one cell per cell: got {len(predicted)} for {len(cells)} cells")
    out = []
    for k, cell in enumerate(cells):
        if predicted is not None:
            cell = _with_predictions(cell, predicted[k], k)
        out.append(cell_to_atoms(cell))
    return out


def _with_predictions(cell, pred, k):
    if pred.size != cell.size:
        raise ValueError(f"predicted[{k}] has {pred.size} atoms, cells[{k}] has {cell.size}")
    meta = dict(cell.meta)
    if pred.meta.get(ENERGY_KEY) is not None:
        meta[PREDICTED_ENERGY_KEY] = float(pred.meta[ENERGY_KEY])
    if pred.meta.get(FORCES_KEY) is not None:
        meta[PREDICTED_FORCES_KEY] = np.asarray(pred.meta[FORCES_KEY], dtype=float)
    if pred.meta.get(STRESS_KEY) is not None:
        meta[PREDICTED_STRESS_KEY] = np.asarray(pred.meta[STRESS_KEY], dtype=float)
    copy = cell.copy()
    copy.meta = meta
    return copy


def _as_cell_list(cells, name):
    from miniff.neighbors.cell import Cell

    if isinstance(cells, Cell):
        return [cells]
    try:
        cells = list(cells)
    except TypeError:
        raise TypeError(f"{name} must be a Cell or a list of cells, got {type(cells).__name__}") from None
    for k, c in enumerate(cells):
        if not isinstance(c, Cell):
            raise TypeError(f"{name}[{k}] must be a miniff.kernel.Cell, got {type(c).__name__}")
    return cells


def write_cells(cells, dest, *, predicted=None, format=None, append=False, key_value_pairs=None, **kwargs):
    """Write cells with their reference (and predicted) energies and forces.

    Parameters
    ----------
    cells : Cell or list of Cell
        Structures; ``meta`` targets are written as the reference energy (eV), forces (eV/Å) and
        stress (eV/Å³), plus ``group`` and any predictions.
    dest : str or os.PathLike
        Destination: a path ending in ``.json`` writes the 0.1.4 cells JSON (:meth:`Cell.save`,
        predictions as ``meta`` keys); a path ending in ``.db`` or a ``postgresql://`` URL writes an
        ase.db database
        (references as the row's calculator results, a ``SinglePointCalculator``; ``group`` and
        ``predicted_energy`` as key-value pairs; ``predicted_forces`` and ``predicted_stress`` in the
        row data; a server database must exist, its tables are created); any other path is written with
        ``ase.io.write`` (extxyz by default for ``.xyz``/``.extxyz``; predictions as
        ``predicted_energy`` info and ``predicted_forces`` per-atom arrays).
    predicted : list of Cell, optional
        The same structures with a model's ``"total-energy"``/``"forces"`` in ``meta``.
    format : str, optional
        ``ase.io.write`` format (default: guessed from the name, extxyz for ``.xyz``), or
        ``"cells-json"`` for the 0.1.4 cells JSON.
    append : bool, optional
        Add to an existing file/database instead of replacing it (rows are always added to a
        server database: it is never emptied).
    key_value_pairs : dict, optional
        Databases only: extra key-value pairs on every row (e.g. ``{"model": "nn-v2"}``).
    **kwargs
        Passed to ``ase.io.write``.

    Notes
    -----
    Files are written to a temporary file in the destination folder and moved into place with
    ``os.replace``, so a failure never leaves a half-written file (for SQLite with ``append=True``
    the existing database is copied first). PostgreSQL writes happen in one transaction.
    """
    is_db = _is_db_url(dest) or (isinstance(dest, (str, os.PathLike)) and _is_db_path(dest))
    if key_value_pairs is not None and not is_db:
        raise ValueError(f"key_value_pairs: only databases (*.db, postgresql://) take key-value pairs, not {dest!r}")
    if isinstance(dest, (str, os.PathLike)) and not _is_db_url(dest):
        if format == "cells-json" or (format is None and str(dest).lower().endswith(".json")):
            _write_cells_json(cells, Path(dest), predicted, append)
            return
    images = cells_to_atoms(cells, predicted=predicted)
    if _is_db_url(dest):
        _write_db_rows(dest, images, key_value_pairs)
        return
    if not isinstance(dest, (str, os.PathLike)):
        raise TypeError(f"dest must be a path or a database URL, got {type(dest).__name__}")
    path = Path(dest)
    if not path.parent.exists():
        raise FileNotFoundError(f"dest: folder {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if _is_db_path(path):
            os.unlink(tmp)
            tmp = tmp[: -len(".tmp")] + ".db"
            if append and path.exists():
                shutil.copyfile(path, tmp)
            _write_db_rows(tmp, images, key_value_pairs)
        else:
            if append and path.exists():
                shutil.copyfile(path, tmp)
            fmt = format
            if fmt is None and path.suffix.lower() in (".xyz", ".extxyz"):
                fmt = "extxyz"
            if fmt is None:
                from ase.io.formats import filetype

                try:
                    fmt = filetype(str(path), read=False)
                except ValueError as e:
                    raise ValueError(f"dest: cannot guess the file format of {str(path)!r}; pass format=") from e
            import ase.io

            ase.io.write(tmp, images, format=fmt, append=append, **kwargs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_cells_json(cells, path, predicted, append):
    """0.1.4 cells JSON via ``Cell.save`` (atomic), predictions merged into ``meta``."""
    from miniff.neighbors.cell import Cell

    cells = _as_cell_list(cells, "cells")
    if predicted is not None:
        predicted = _as_cell_list(predicted, "predicted")
        if len(predicted) != len(cells):
            raise ValueError(f"predicted must hold one cell per cell: got {len(predicted)} for {len(cells)} cells")
        cells = [_with_predictions(c, p, k) for k, (c, p) in enumerate(zip(cells, predicted, strict=True))]
    if not path.parent.exists():
        raise FileNotFoundError(f"dest: folder {str(path.parent)!r} does not exist")
    if append and path.exists():
        cells = _read_cells_json(path, slice(None)) + list(cells)
    Cell.save(list(cells), str(path))
