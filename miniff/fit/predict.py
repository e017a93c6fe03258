"""Predictions of potentials on structures, and writing them into an ``ase.db`` database or a file.

:func:`predict_cells` evaluates potentials (classical, NN, n2p2, committees: any ``LocalPotential``) on cells
and returns copies carrying the predicted energy (eV), forces ``[N, 3]`` (eV/Å) and stress ``[6]`` (eV/Å³);
:func:`write_predictions` reads structures from any source :func:`miniff.io.read_cells` takes (files, SQLite
``*.db``, ``postgresql://`` URLs, cells, ``ase.Atoms``), predicts and writes the rows with
:func:`miniff.io.write_cells`.
"""

import numpy as np

__all__ = ["as_potentials", "predict_cells", "write_predictions"]


def as_potentials(potentials, allow_legacy_pickle=False):
    """Potential objects from potentials files and/or objects.

    Parameters
    ----------
    potentials : str, os.PathLike, LocalPotential or a list of them
        Saved potentials files (:func:`miniff.ml_util.save_potentials`) or objects with ``compute``.
    allow_legacy_pickle : bool
        Read 0.1.4 pickled ``.pt`` files (unsafe: see :func:`miniff.ml_util.load_potentials_014`).

    Returns
    -------
    list of LocalPotential
    """
    from miniff.ml.serialize import load_potentials, load_potentials_014

    items = potentials if isinstance(potentials, (list, tuple)) else [potentials]
    out = []
    for p in items:
        if isinstance(p, str) or hasattr(p, "__fspath__"):
            try:
                out.extend(load_potentials(p))
            except (ValueError, TypeError) as error:
                if not allow_legacy_pickle:
                    raise ValueError(f"potentials: cannot read {str(p)!r} as plain data ({error}); for a "
                                     f"0.1.4 pickle set allow_legacy_pickle: true (unsafe)") from error
                out.extend(load_potentials_014(p))
        elif hasattr(p, "compute"):
            out.append(p)
        else:
            raise TypeError(f"potentials entries must be file names or potentials, got {type(p).__name__}")
    if not out:
        raise ValueError("potentials: none loaded")
    return out


def _periodic(cell):
    return bool(np.all(np.asarray(cell.meta.get("pbc", True), dtype=bool)))


def predict_cells(cells, potentials, *, stress=None, n_threads=None, nw_kwargs=None):
    """Evaluate potentials on cells; return copies with the predictions in ``meta``.

    Parameters
    ----------
    cells : Cell or list of Cell
        Structures (``meta["pbc"]`` gives the periodic axes; default all periodic).
    potentials : list of LocalPotential, or files (see :func:`as_potentials`)
        Summed; species a potential does not have are ignored by it (as in ``OneShotWorkflow``).
    stress : bool or None
        Predict the stress: None (default) for cells periodic along all three axes only; True for every cell
        (a non-periodic one is a ``ValueError``); False never.
    n_threads : int or None
        Threads of the kernels.
    nw_kwargs : dict or None
        Extra arguments of ``NeighborWrapper``.

    Returns
    -------
    list of Cell
        Copies with ``meta["predicted-energy"]`` (float, eV), ``meta["predicted-forces"]`` ``[N, 3]`` (eV/Å)
        and, where computed, ``meta["predicted-stress"]`` ``[6]`` (Voigt xx yy zz yz xz xy, ASE sign, eV/Å³);
        the references (``"total-energy"``, ``"forces"``, ``"stress"``) are kept.
    """
    from miniff.io import PREDICTED_ENERGY_KEY, PREDICTED_FORCES_KEY, PREDICTED_STRESS_KEY
    from miniff.kernel import Cell, NeighborWrapper

    if isinstance(cells, Cell):
        cells = [cells]
    cells = list(cells)
    for k, c in enumerate(cells):
        if not isinstance(c, Cell):
            raise TypeError(f"cells[{k}] must be a miniff.kernel.Cell, got {type(c).__name__}")
    if stress is not None and not isinstance(stress, bool):
        raise TypeError(f"stress must be True, False or None, got {stress!r}")
    potentials = as_potentials(potentials)
    cutoff = max(float(p.cutoff) for p in potentials)
    out = []
    for k, cell in enumerate(cells):
        periodic = _periodic(cell)
        want_stress = periodic if stress is None else stress
        if want_stress and not periodic:
            raise ValueError(f"stress: cells[{k}] is not periodic along all axes; its stress is undefined "
                             f"(pass stress=None to skip non-periodic cells)")
        kw = dict(nw_kwargs or {})
        if "pbc" not in kw and "pbc" in cell.meta:
            kw["pbc"] = tuple(bool(x) for x in cell.meta["pbc"])
        nw = NeighborWrapper(cell, cutoff=cutoff, **kw)
        result = nw.evaluate(potentials, grad=True, stress=want_stress, ignore_missing_species=True,
                             n_threads=n_threads)
        c = cell.copy()
        c.meta = dict(cell.meta)
        c.meta[PREDICTED_ENERGY_KEY] = float(result.energy)
        c.meta[PREDICTED_FORCES_KEY] = -np.asarray(result.grad_nc, dtype=float)
        if want_stress:
            c.meta[PREDICTED_STRESS_KEY] = np.asarray(result.stress, dtype=float)
        else:
            c.meta.pop(PREDICTED_STRESS_KEY, None)
        out.append(c)
    return out


def write_predictions(source, potentials, dest, *, index=":", selection=None, group_key=None, stress=None,
                      as_results=False, key_value_pairs=None, append=True, n_threads=None):
    """Read structures, predict them with potentials and write the predictions into a database or a file.

    Parameters
    ----------
    source : str, os.PathLike, Cell, ase.Atoms or a list of them
        Anything :func:`miniff.io.read_cells` reads (an ``ase.db`` SQLite file or ``postgresql://`` URL
        included), or cells.
    potentials : list of LocalPotential, or potentials files
        See :func:`predict_cells`.
    dest : str or os.PathLike
        ``*.db`` (SQLite), ``postgresql://user:password@host:port/dbname``, or any file
        :func:`miniff.io.write_cells` writes (extxyz...).
    index, selection, group_key
        Passed to :func:`miniff.io.read_cells` when ``source`` is read.
    stress : bool or None
        See :func:`predict_cells`.
    as_results : bool
        How a row holds the predictions. False (default): the reference energy, forces and stress stay the row's
        calculator results (a ``SinglePointCalculator``) and the predictions go next to them: key-value pair
        ``predicted_energy`` (eV, usable in selections), data ``predicted_forces`` ``[N, 3]`` (eV/Å) and
        ``predicted_stress`` ``[6]`` (eV/Å³). True: the predictions *are* the row's calculator results (energy,
        forces, stress, as ``ase db`` shows them and :func:`miniff.io.read_cells` reads them back as targets)
        and the references are not written.
    key_value_pairs : dict or None
        Databases only: extra key-value pairs on every row, e.g. ``{"model": "si-nn-v2"}``.
    append : bool
        Add rows to an existing SQLite file (default) instead of replacing it; rows are always added to a
        server database.
    n_threads : int or None
        Threads of the kernels.

    Returns
    -------
    list of Cell
        The cells written, with ``meta["predicted-energy"]``, ``meta["predicted-forces"]`` (and
        ``meta["predicted-stress"]``).
    """
    from miniff.io import read_cells, write_cells
    from miniff.kernel import Cell

    if isinstance(source, Cell) or (isinstance(source, (list, tuple)) and source
                                    and all(isinstance(c, Cell) for c in source)):
        if selection is not None or group_key is not None:
            raise ValueError("selection and group_key apply when source is read, not to cells")
        cells = [source] if isinstance(source, Cell) else list(source)
    else:
        cells = read_cells(source, index=index, selection=selection, group_key=group_key,
                           warn_missing_targets=False)
    predicted = predict_cells(cells, potentials, stress=stress, n_threads=n_threads)
    written = [_as_results(c) for c in predicted] if as_results else predicted
    write_cells(written, dest, append=append, key_value_pairs=key_value_pairs)
    return predicted


def _as_results(cell):
    """A copy whose targets are the predictions (references dropped)."""
    from miniff.io import (
        ENERGY_KEY,
        FORCES_KEY,
        PREDICTED_ENERGY_KEY,
        PREDICTED_FORCES_KEY,
        PREDICTED_STRESS_KEY,
        STRESS_KEY,
    )

    c = cell.copy()
    meta = dict(cell.meta)
    for ref, pred in ((ENERGY_KEY, PREDICTED_ENERGY_KEY), (FORCES_KEY, PREDICTED_FORCES_KEY),
                      (STRESS_KEY, PREDICTED_STRESS_KEY)):
        meta.pop(ref, None)
        if pred in meta:
            meta[ref] = meta.pop(pred)
    c.meta = meta
    return c
