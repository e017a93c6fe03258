"""Workflows that apply saved potentials: ``SDWorkflow`` (batch relaxation) and ``OneShotWorkflow`` (errors)."""

import math
import warnings

import numpy as np

from miniff.fit.base import Workflow
from miniff.fit.compat import warn_ignored
from miniff.fit.predict import as_potentials

__all__ = ["SDWorkflow", "OneShotWorkflow", "prediction_errors"]


def prediction_errors(cells, groups=None):
    """Energy, force and stress errors of cells carrying predictions and references.

    Parameters
    ----------
    cells : list of Cell
        With ``meta["total-energy"]`` (prediction, eV), ``meta["reference-energy"]`` (eV) and, where
        available, ``meta["forces"]`` / ``meta["reference-forces"]`` ``[N, 3]`` eV/Å and ``meta["stress"]`` /
        ``meta["reference-stress"]`` ``[6]`` eV/Å³.
    groups : list of str or None
        Group label of every cell (adds ``group_<label>_...`` entries).

    Returns
    -------
    dict
        ``n_cells``, ``energy_rmse``, ``energy_mae``, ``energy_max`` (eV/atom) and, with forces,
        ``force_rmse``, ``force_mae``, ``force_max`` (eV/Å, per component), with stresses ``stress_rmse``,
        ``stress_mae``, ``stress_max`` (eV/Å³, per Voigt component).
    """

    def _stats(sel):
        de = [(c.meta["total-energy"] - c.meta["reference-energy"]) / c.size for c in sel
              if "reference-energy" in c.meta]
        out = {"n_cells": len(sel)}
        if de:
            de = np.asarray(de)
            out.update(energy_rmse=math.sqrt(float(np.mean(de**2))), energy_mae=float(np.mean(np.abs(de))),
                       energy_max=float(np.max(np.abs(de))))
        for name, key in (("force", "forces"), ("stress", "stress")):
            d = [np.asarray(c.meta[key]) - np.asarray(c.meta[f"reference-{key}"]) for c in sel
                 if f"reference-{key}" in c.meta]
            if d:
                d = np.concatenate([x.reshape(-1) for x in d])
                out.update({f"{name}_rmse": math.sqrt(float(np.mean(d**2))), f"{name}_mae": float(np.mean(np.abs(d))),
                            f"{name}_max": float(np.max(np.abs(d)))})
        return out

    result = _stats(list(cells))
    if groups is not None:
        for g in sorted(set(groups)):
            sub = _stats([c for c, x in zip(cells, groups, strict=True) if x == g])
            result.update({f"group_{g}_{k}": v for k, v in sub.items()})
    return result


class SDWorkflow(Workflow):
    """Relax a batch of cells with saved potentials (0.1.4's ``test-relax`` stage, which never worked there).

    Parameters are those of :class:`~miniff.fit.base.Workflow`.  After :meth:`run`, ``cells_result`` holds
    the relaxed cells with ``meta["total-energy"]`` (eV) and ``meta["forces"]`` (eV/Å).
    """

    default_tag = "relax"

    def prepare(self, fn_cells, potentials="learn.pt", fn_cells_root=None, cells_order=None, cells_subset=None,
                cells_index=":", cells_selection=None, nw_kwargs=None, allow_legacy_pickle=False,
                cells_group_key=None):
        """Load the cells and the potentials.

        Parameters
        ----------
        fn_cells : str, Path, Cell or list
            Cells (ASE-readable files, ase.db, 0.1.4 cells JSON; glob patterns allowed).
        potentials : str, list of str, or list of LocalPotential
            Saved potentials files (:func:`miniff.ml_util.save_potentials`) or potential objects.
        fn_cells_root : str or None
            Folder the patterns are relative to.
        cells_order : "random", None or list
            Reorder the cells (``seed`` of the workflow).
        cells_subset : int or None
            Keep only the first n cells.
        cells_index, cells_selection, cells_group_key
            ``index``, ``selection`` and ``group_key`` of :func:`miniff.io.read_cells`.
        nw_kwargs : dict or None
            Extra arguments of ``NeighborWrapper``.
        allow_legacy_pickle : bool
            Read 0.1.4 pickled ``.pt`` files (unsafe: see :func:`miniff.ml_util.load_potentials_014`).
        """
        self.load_cells(fn_cells, root=fn_cells_root, index=cells_index, selection=cells_selection,
                        group_key=cells_group_key)
        if cells_order is not None:
            self.reorder_cells(cells_order, seed=self.seed)
        if cells_subset is not None:
            self.subset_cells(cells_subset)
        self.potentials = self.load_potentials(potentials, allow_legacy_pickle=allow_legacy_pickle)
        cutoff = max(p.cutoff for p in self.potentials)
        self.compute_neighbors(cutoff, nw_kwargs)
        return self

    def load_potentials(self, potentials, allow_legacy_pickle=False):
        """Potential objects from files / objects (a list; see :func:`miniff.fit.predict.as_potentials`)."""
        return as_potentials(potentials, allow_legacy_pickle=allow_legacy_pickle)

    def _evaluate(self, nw):
        energy = float(nw.total(self.potentials, ignore_missing_species=True))
        forces = -np.asarray(nw.grad(self.potentials, ignore_missing_species=True))
        return energy, forces

    def run(self, method=None, options=None, relax_cell=False, parallel=False, pool_kwargs=None):
        """Relax every cell; return (and store in ``cells_result``) the relaxed cells.

        Parameters
        ----------
        method : str or None
            None (default): miniff's L-BFGS with a trust radius (no atom moves more than 0.2 Å per step,
            converged at a largest force of 1e-5 eV/Å; see ``NeighborWrapper.relax``); or a scipy minimiser name
            (``"L-BFGS-B"``, 0.1.4's default, ...).
        options : dict or None
            Optimiser options (default ``{"maxiter": 10000}``).
        relax_cell : bool
            Also relax the cell shape and volume (zero stress).
        parallel, pool_kwargs
            Accepted for 0.1.4 job files; relaxations run one after another (the kernels are OpenMP-parallel).
            Ignored: a value other than the default emits a DeprecationWarning.
        """
        warn_ignored("SDWorkflow.run", label=f"{type(self).__name__}.run", parallel=parallel, pool_kwargs=pool_kwargs)
        from miniff.kernel import OptimizationWarning

        options = {"maxiter": 10000} if options is None else dict(options)
        self.cells_result = []
        for k, nw in enumerate(self.cells_nw):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", OptimizationWarning)
                cell = nw.relax(self.potentials, method=method, options=options, relax_cell=relax_cell,
                                ignore_missing_species=True, n_threads=self.n_threads)
            flagged = [w for w in caught if issubclass(w.category, OptimizationWarning)]
            for w in caught:
                if not issubclass(w.category, OptimizationWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            cell = cell.copy() if hasattr(cell, "copy") else cell
            if "total-energy" not in cell.meta:
                cell.meta["total-energy"] = float(nw.total(self.potentials, ignore_missing_species=True))
            cell.meta["flag-potential-warning"] = bool(flagged)
            if flagged:
                self.log.warning("cell %d: relaxation did not converge (%s)", k, flagged[0].message)
            self.cells_result.append(cell)
        return self.cells_result


class OneShotWorkflow(SDWorkflow):
    """Energies, forces (and stresses) of saved potentials on a set of cells, and their errors against the
    references.

    :meth:`run` returns copies of the cells with the predictions in ``meta["total-energy"]`` (eV) and
    ``meta["forces"]`` (eV/Å), as 0.1.4 did, the references moved to ``meta["reference-energy"]`` /
    ``meta["reference-forces"]``; cells with a reference ``meta["stress"]`` (periodic along all axes) get the
    predicted stress (eV/Å³) there and the reference in ``meta["reference-stress"]``; ``errors`` holds
    :func:`prediction_errors` (with per-group entries).
    """

    default_tag = "test"

    def run(self, fn_output=None, summary=True):
        """Predict every cell; optionally write the cells with predictions to ``fn_output`` (extxyz).

        Parameters
        ----------
        fn_output : str or None
            Write the cells with references and predictions here.
        summary : bool
            Print :meth:`summary` (the errors, with the spread of the reference values).

        Returns
        -------
        list of Cell
        """
        out = []
        for nw, cell in zip(self.cells_nw, self.cells, strict=True):
            energy, forces = self._evaluate(nw)
            c = cell.copy()
            c.meta = dict(cell.meta)
            if "total-energy" in cell.meta:
                c.meta["reference-energy"] = float(cell.meta["total-energy"])
            if "forces" in cell.meta:
                c.meta["reference-forces"] = np.asarray(cell.meta["forces"], dtype=float)
            c.meta["total-energy"] = energy
            c.meta["forces"] = forces
            if "stress" in cell.meta and bool(np.all(nw.pbc)):
                c.meta["reference-stress"] = np.asarray(cell.meta["stress"], dtype=float)
                c.meta["stress"] = np.asarray(nw.stress(self.potentials, ignore_missing_species=True))
            out.append(c)
        self.cells_result = out
        self.errors = prediction_errors(out, self.groups())
        for k, unit in (("energy_rmse", "meV/atom"), ("force_rmse", "meV/Å"), ("stress_rmse", "meV/Å³")):
            if k in self.errors:
                self.log.info("%s: %s = %.3f %s", self.tag, k, 1000 * self.errors[k], unit)
        if fn_output is not None:
            self._write(out, fn_output)
        text = self.summary()   # also sets summary_table
        if summary:
            print(text, flush=True)
        return out

    def summary(self):
        """The errors of the potentials on the cells (after :meth:`run`): RMSE of per-atom energies (meV/atom),
        force components (meV/Å) and stress components (meV/Å³, cells with a reference stress) with the standard
        deviation of the reference values, per group too.  The numbers are kept in ``summary_table`` (eV/atom,
        eV/Å, eV/Å³)."""
        from miniff.fit.summary import error_table, errors_summary

        cells = [c for c in self.cells_result if "reference-energy" in c.meta]
        groups = self.groups()
        p = {"energy_ref": [c.meta["reference-energy"] / c.size for c in cells],
             "energy_pred": [c.meta["total-energy"] / c.size for c in cells],
             "groups": None if groups is None else [g for g, c in zip(groups, self.cells_result, strict=True)
                                                    if "reference-energy" in c.meta]}
        if any("reference-forces" in c.meta for c in cells):
            p["forces_ref"] = [c.meta.get("reference-forces", np.zeros((0, 3))) for c in cells]
            p["forces_pred"] = [c.meta["forces"] if "reference-forces" in c.meta else np.zeros((0, 3))
                                for c in cells]
        if any("reference-stress" in c.meta for c in cells):
            p["stress_ref"] = [c.meta.get("reference-stress", np.zeros(0)) for c in cells]
            p["stress_pred"] = [c.meta["stress"] if "reference-stress" in c.meta else np.zeros(0) for c in cells]
        self.summary_table = error_table([("test", p)])
        return errors_summary(self.tag, len(self.cells_result), self.summary_table)

    @staticmethod
    def _write(cells, fn_output):
        from miniff.io import write_cells

        refs = []
        for c in cells:
            r = c.copy()
            r.meta = dict(c.meta)
            if "reference-energy" in c.meta:
                r.meta["total-energy"] = c.meta["reference-energy"]
            if "reference-forces" in c.meta:
                r.meta["forces"] = c.meta["reference-forces"]
            if "reference-stress" in c.meta:
                r.meta["stress"] = c.meta["reference-stress"]
            for k in ("reference-energy", "reference-forces", "reference-stress"):
                r.meta.pop(k, None)
            refs.append(r)
        write_cells(refs, fn_output, predicted=list(cells))
