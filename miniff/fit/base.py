"""The common base of the workflows: loading cells, ordering them, building neighbour lists."""

import glob
import logging
import os
from pathlib import Path

import numpy as np
import torch

from miniff.fit.compat import warn_ignored

__all__ = ["Workflow", "resolve_dtype", "DEFAULT_UNITS", "check_targets", "warn_missing_summary"]

#: Display units of 0.1.4's ``units="default"`` (display only: miniff computes in eV and Å).
DEFAULT_UNITS = {"energy": "meV", "length": "angstrom", "force": "meV/angstrom"}

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "double": torch.float64, "float": torch.float32}


def resolve_dtype(dtype):
    """A torch floating dtype from a dtype or its name (``"float64"``, ``"float32"``)."""
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        return dtype
    if isinstance(dtype, str):
        key = dtype.replace("torch.", "").lower()
        if key in _DTYPES:
            return _DTYPES[key]
    raise ValueError(f"dtype must be 'float32', 'float64' or a torch floating dtype, got {dtype!r}")


def check_targets(cells, label):
    """Raise ValueError naming ``label``, the index and the quantity when a reference energy (eV), force (eV/Å)
    or stress (eV/Å³) in ``meta`` is NaN or infinite."""
    for k, c in enumerate(cells):
        for key, what in (("total-energy", "energy"), ("forces", "forces"), ("stress", "stress")):
            value = c.meta.get(key)
            if value is None:
                continue
            v = np.asarray(value, dtype=float)
            if not np.isfinite(v).all():
                where = ""
                if key == "forces" and v.ndim == 2:
                    where = f" (atom {int(np.nonzero(~np.isfinite(v).all(axis=1))[0][0])})"
                raise ValueError(f"fn_cells: {label}, structure {k}: the reference {what} contains NaN or "
                                 f"inf{where}")


def warn_missing_summary(cells, sources):
    """One warning for all the structures without reference forces (energy-only data) and one for those without
    an energy, with the count per source (``sources``: ``(label, index)`` per cell)."""
    import warnings

    from miniff.io import MissingEnergyWarning, MissingForcesWarning

    for key, category, what in (("total-energy", MissingEnergyWarning, "no reference energy"),
                                ("forces", MissingForcesWarning, "no forces: they are used as energy-only data")):
        per_source = {}
        for c, (label, _) in zip(cells, sources, strict=True):
            if c.meta.get(key) is None:
                per_source[label] = per_source.get(label, 0) + 1
        if per_source:
            detail = ", ".join(f"{label}: {n}" for label, n in list(per_source.items())[:5])
            more = f" and {len(per_source) - 5} more sources" if len(per_source) > 5 else ""
            warnings.warn(f"{sum(per_source.values())} of {len(cells)} structures have {what} ({detail}{more})",
                          category, stacklevel=4)


class Workflow:
    """Base of the fitting and evaluation workflows (init / prepare / run).

    Parameters
    ----------
    dtype : torch.dtype or str
        Floating-point type of datasets and networks (``"float64"`` by default).
    log : logging.Logger or None
        Where progress messages go (``logging.getLogger("miniff.workflow")`` by default).
    seed : int or None
        Seeds numpy's and torch's global generators (network initialisation).
    mpl_backend : str or None
        ``matplotlib.use(mpl_backend)`` when given.
    mpl_save_ext : str
        Extension of saved figures (0.1.4 compatibility: no workflow saves figures; another value than
        ``"png"`` emits a DeprecationWarning).
    units : None, "default" or dict
        Display units (0.1.4 compatibility; computations are always in eV and Å; only stored as ``units``;
        a value emits a DeprecationWarning).
    units_are_known : bool
        Accepted for 0.1.4 compatibility (units are always known now; True emits a DeprecationWarning).
    tag : str or None
        Name of the workflow (used in file names); a per-class default otherwise.
    n_threads : int or None
        Threads of the compiled kernels (None: OMP_NUM_THREADS or all cores).
    """

    default_tag = "workflow"

    def __init__(self, dtype="float64", log=None, seed=None, mpl_backend=None, mpl_save_ext="png", units=None,
                 units_are_known=False, tag=None, n_threads=None):
        self.dtype = resolve_dtype(dtype)
        self.log = log if log is not None else logging.getLogger("miniff.workflow")
        self.seed = seed
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise TypeError(f"seed must be an integer or None, got {type(seed).__name__}")
            np.random.seed(int(seed))
            torch.manual_seed(int(seed))
        if mpl_backend is not None:
            import matplotlib

            matplotlib.use(mpl_backend)
        self.mpl_save_ext = mpl_save_ext
        if units == "default":
            units = dict(DEFAULT_UNITS)
        elif units is not None and not isinstance(units, dict):
            raise ValueError(f"units must be None, 'default' or a dict, got {units!r}")
        self.units = units
        self.tag = self.default_tag if tag is None else str(tag)
        self.n_threads = n_threads
        self.cells = []
        self.cells_nw = None
        self._cutoff = None
        warn_ignored("Workflow", label=type(self).__name__, units=units, units_are_known=units_are_known,
                     mpl_save_ext=mpl_save_ext)

    # ------------------------------------------------------------------ cells
    @staticmethod
    def load_cells_individual(fn, index=":", selection=None, warn_missing_targets=True, group_key=None):
        """Read the cells of one file (any ASE-readable file, an ase.db, or a 0.1.4 cells JSON)."""
        from miniff.io import read_cells

        return list(read_cells(fn, index=index, selection=selection, group_key=group_key,
                               warn_missing_targets=warn_missing_targets))

    def _sources(self, item, root, index, selection, group_key=None):
        """``[(label, cells)]`` of one ``fn_cells`` entry (see :meth:`load_cells`)."""
        from ase import Atoms

        from miniff.kernel import Cell

        if isinstance(item, Cell):
            return [("cells", [item])]
        if isinstance(item, Atoms):
            return [("Atoms", self.load_cells_individual([item], ":", None, False, group_key))]
        if isinstance(item, (list, tuple)) and item and all(isinstance(c, Cell) for c in item):
            return [("cells", list(item))]
        if isinstance(item, (list, tuple)) and item and all(isinstance(a, Atoms) for a in item):
            return [("Atoms", self.load_cells_individual(list(item), index, None, False, group_key))]
        if isinstance(item, Path):
            path = item if root is None or item.is_absolute() else Path(root) / item
            if not path.exists():
                raise FileNotFoundError(f"fn_cells: no such file {str(path)!r}")
            return [(str(path), self.load_cells_individual(path, index, selection, False, group_key))]
        if isinstance(item, str):
            if "://" in item:
                from miniff.io import _redact_url

                return [(_redact_url(item), self.load_cells_individual(item, index, selection, False, group_key))]
            pattern = item if root is None or os.path.isabs(item) else os.path.join(root, item)
            matches = sorted(glob.glob(pattern))
            if not matches:
                where = os.path.abspath(root) if root is not None else os.getcwd()
                raise FileNotFoundError(f"fn_cells: no file matches {item!r} (looked in {where!r})")
            return [(m, self.load_cells_individual(m, index, selection, False, group_key)) for m in matches]
        raise TypeError(f"fn_cells entries must be paths, glob patterns, database URLs, Cells or ase.Atoms (or "
                        f"lists of them), got {type(item).__name__}")

    def load_cells(self, filenames, root=None, append=False, index=":", selection=None, warn_missing_targets=True,
                   group_key=None):
        """Load cells into ``self.cells`` (and where each came from into ``self.cell_sources``).

        Parameters
        ----------
        filenames : str, Path, Cell, ase.Atoms, a list of them (in any mix), or a dict
            Glob patterns (relative to ``root``), paths of anything :func:`miniff.io.read_cells` reads (ASE
            files, ``*.db`` databases, 0.1.4 cells JSON), database URLs (``postgresql://...``), ``Cell`` or
            ``ase.Atoms`` objects, or lists of cells / atoms.  A dict ``{group label: sources}`` gives its
            structures that label (``meta["group"]``) unless they carry one (``info["group"]``, a database key
            ``group``).
        root : str or None
            Folder the patterns are relative to (default: the current directory).
        append : bool
            Add to the cells already loaded instead of replacing them.
        index, selection, group_key
            Passed to :func:`miniff.io.read_cells` for every file and list of atoms (``group_key``: the
            database key / ``info`` entry whose value is the structure's group label).
        warn_missing_targets : bool
            One :class:`~miniff.io.MissingForcesWarning` (and :class:`~miniff.io.MissingEnergyWarning`) for all
            sources together, counting the structures without forces (used as energy-only data) or energy.

        Returns
        -------
        list of Cell

        Raises
        ------
        ValueError
            A reference energy, force or stress is NaN or infinite (the message names the source, the index of
            the structure in it and the quantity), or nothing was loaded.
        """
        from ase import Atoms

        from miniff.kernel import Cell

        if isinstance(filenames, dict):   # {group label: sources}
            cells = list(self.cells) if append else []
            sources = list(getattr(self, "cell_sources", [])) if append else []
            for label, group_sources in filenames.items():
                got = self.load_cells(group_sources, root=root, index=index, selection=selection,
                                      warn_missing_targets=warn_missing_targets, group_key=group_key)
                for c in got:
                    if "group" not in c.meta:
                        c = c.copy()   # never label the caller's own Cell objects
                        c.meta = dict(c.meta, group=str(label))
                    cells.append(c)
                sources.extend(self.cell_sources)
            self.cells, self.cell_sources = cells, sources
            return self.cells
        items = filenames if isinstance(filenames, (list, tuple)) else [filenames]
        if items and all(isinstance(x, Cell) for x in items) or items and all(isinstance(x, Atoms) for x in items):
            items = [list(items)]   # one source: structures numbered in the list
        cells, sources, read = [], [], []
        for i, item in enumerate(items):
            for label, got in self._sources(item, root, index, selection, group_key):
                label = f"fn_cells[{i}] ({label})" if label in ("cells", "Atoms") and len(items) > 1 else label
                check_targets(got, label)
                cells.extend(got)
                sources.extend((label, k) for k in range(len(got)))
                if not isinstance(item, Cell) and not (isinstance(item, list) and isinstance(item[0], Cell)):
                    read.extend(range(len(cells) - len(got), len(cells)))   # Cells given as such do not warn
        if not cells:
            raise ValueError("fn_cells: no cells loaded")
        if warn_missing_targets and read:
            warn_missing_summary([cells[i] for i in read], [sources[i] for i in read])
        self.cells = (list(self.cells) if append else []) + cells
        self.cell_sources = (list(getattr(self, "cell_sources", [])) if append else []) + sources
        self.cells_nw = None
        self.log.info("%d cells loaded", len(self.cells))
        return self.cells

    def reorder_cells(self, order="random", seed=None):
        """Reorder ``self.cells``: ``"random"`` (with ``seed``), or a sequence of indices."""
        n = len(self.cells)
        if isinstance(order, str):
            if order != "random":
                raise ValueError(f"cells_order must be 'random', None or a list of indices, got {order!r}")
            perm = np.random.default_rng(seed).permutation(n)
        else:
            perm = np.asarray(order, dtype=int)
            if sorted(perm.tolist()) != list(range(n)):
                raise ValueError(f"cells_order must be a permutation of range({n})")
        self.cells = [self.cells[i] for i in perm]
        if len(getattr(self, "cell_sources", [])) == n:
            self.cell_sources = [self.cell_sources[i] for i in perm]
        self.cells_nw = None
        return perm

    def subset_cells(self, n):
        """Keep the first ``n`` cells."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"cells_subset must be a positive integer, got {n!r}")
        self.cells = self.cells[:n]
        self.cell_sources = getattr(self, "cell_sources", [])[:n]
        self.cells_nw = None

    def save_cells(self, dest):
        """Write ``self.cells`` to ``dest`` (extxyz or any format of :func:`miniff.io.write_cells`)."""
        from miniff.io import write_cells

        write_cells(self.cells, dest)

    @property
    def cutoff(self):
        """The neighbour cutoff of the wrappers, Å."""
        return self._cutoff

    def compute_neighbors(self, cutoff, nw_kwargs=None, positions=None):
        """Wrap every cell in a ``NeighborWrapper`` with pair distances up to ``cutoff`` (Å); with ``positions``
        (indices of cells) only those cells, None in the places of the others."""
        from miniff.kernel import NeighborWrapper

        nw_kwargs = dict(nw_kwargs or {})
        self._cutoff = float(cutoff)
        wrappers = []
        keep = None if positions is None else set(int(i) for i in positions)
        for i, c in enumerate(self.cells):
            if keep is not None and i not in keep:
                wrappers.append(None)
                continue
            kw = dict(nw_kwargs)
            if "pbc" not in kw and "pbc" in c.meta:
                kw["pbc"] = tuple(bool(x) for x in c.meta["pbc"])
            wrappers.append(NeighborWrapper(c, cutoff=self._cutoff, **kw))
        self.cells_nw = wrappers
        return wrappers

    def groups(self):
        """The ``meta["group"]`` label of every cell (None when no cell carries one)."""
        labels = [c.meta.get("group") for c in self.cells]
        if all(g is None for g in labels):
            return None
        return [str(g) if g is not None else "-" for g in labels]
