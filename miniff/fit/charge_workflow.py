"""``ChargeFitWorkflow``: fit atomic charges (e) with one network per species, for fitted-charge electrostatics.

The reference charges are per atom in ``meta["charges"]`` (extxyz/ASE ``initial_charges`` or a ``charges``
array: Hirshfeld, Bader, DDEC... charges of the reference calculations); energies and forces are not needed.
The life cycle is that of :class:`~miniff.fit.workflow.FitWorkflow` (split, normalisation, checkpoints that
resume, a JSON Lines log, stall detection, the best epoch by validation loss, a summary at the end); the loss is
:func:`~miniff.fit.charges.charges_loss` and the saved potentials are NN potentials whose per-atom values are
charges.  :meth:`ChargeFitWorkflow.electrostatics` wraps them into the Ewald energy of the predicted charges
(``ewald_charge_wrapper_potential_family``).

Normalisation defaults (``normalization_kwargs``): charges per species minus their mean, divided by their range
(``offset_charges=True``); descriptors to ``[-1, 1]``; constant features or charges get a unit scale instead of
an error (``ignore_normalization_errors=True``: a fixed-charge species is a valid case).
"""

import copy
import hashlib
import json
import time

import numpy as np
import torch

from miniff.fit.charges import charge_metrics, charges_loss, simple_charges_closure
from miniff.fit.monitor import STALL_EPOCHS, STALL_TOLERANCE
from miniff.fit.workflow import FitWorkflow

__all__ = ["ChargeFitWorkflow", "check_reference_charges", "subtract_potentials"]


def check_reference_charges(cells, sources=None):
    """Raise ``ValueError`` naming the structure when a cell has no ``meta["charges"]``, a number of charges
    different from its number of atoms, or a NaN/infinite charge.

    Parameters
    ----------
    cells : list of Cell
    sources : list of (str, int) or None
        Where each cell came from (file label, index in it), used in the messages.
    """
    for k, c in enumerate(cells):
        where = f"structure {k}" if sources is None else f"{sources[k][0]}, structure {sources[k][1]}"
        q = c.meta.get("charges")
        if q is None:
            raise ValueError(f"fn_cells: {where} has no reference charges (meta['charges']; an extxyz "
                             f"'initial_charges' or 'charges' array)")
        q = np.asarray(q, dtype=float).reshape(-1)
        if len(q) != c.size:
            raise ValueError(f"fn_cells: {where} has {len(q)} charges for {c.size} atoms")
        if not np.isfinite(q).all():
            raise ValueError(f"fn_cells: {where}: the reference charges contain NaN or inf "
                             f"(atom {int(np.nonzero(~np.isfinite(q))[0][0])})")


def subtract_potentials(cells, potentials, n_threads=None):
    """Copies of ``cells`` whose reference energy, forces and stress no longer contain the part of ``potentials``.

    The second step of "short-range NN + fitted-charge electrostatics": with the electrostatics of a charge fit
    (:meth:`ChargeFitWorkflow.electrostatics`) as ``potentials``, the returned cells hold the remainder that a
    short-range :class:`~miniff.fit.workflow.FitWorkflow` then fits; the final model is the short-range
    potentials plus the electrostatics.

    Parameters
    ----------
    cells : list of Cell
        Structures with any of ``meta["total-energy"]`` (eV), ``meta["forces"]`` ``[N, 3]`` (eV/Å) and
        ``meta["stress"]`` ``[6]`` (Voigt, ASE sign, eV/Å³); ``meta["pbc"]`` is respected.
    potentials : LocalPotential or list of LocalPotential
        What to subtract (evaluated on a neighbour list reaching their largest cutoff; terms naming a species a
        cell does not have contribute nothing to it).
    n_threads : int or None
        Threads of the evaluation.

    Returns
    -------
    list of Cell
        New cells (the inputs are not modified) with the same positions and the remainders in ``meta``.
    """
    from miniff.kernel import NeighborWrapper
    from miniff.potentials.base import LocalPotential

    potentials = [potentials] if isinstance(potentials, LocalPotential) else list(potentials)
    if not potentials:
        raise ValueError("potentials must not be empty")
    cutoff = max(float(p.cutoff) for p in potentials)
    out = []
    for c in cells:
        meta = dict(c.meta)
        kw = {"pbc": tuple(bool(x) for x in meta["pbc"])} if "pbc" in meta else {}
        nw = NeighborWrapper(c, cutoff=cutoff, **kw)
        ev = nw.evaluate(potentials, grad="forces" in meta, stress="stress" in meta, ignore_missing_species=True,
                         n_threads=n_threads)
        if "total-energy" in meta:
            meta["total-energy"] = float(meta["total-energy"]) - float(ev.energy)
        if "forces" in meta:
            meta["forces"] = np.asarray(meta["forces"], dtype=float) + ev.grad_nc   # F - F_part = F + dE_part/dr
        if "stress" in meta:
            meta["stress"] = np.asarray(meta["stress"], dtype=float) - ev.stress
        new = c.copy()
        new.meta = meta
        out.append(new)
    return out


class ChargeFitWorkflow(FitWorkflow):
    """Fit one charge network per species to reference charges (see the module docstring).

    Parameters are those of :class:`~miniff.fit.base.Workflow` (default tag ``"charge"``).  Fields after
    :meth:`prepare` are those of :class:`~miniff.fit.workflow.FitWorkflow`; ``datasets`` hold the (normalised)
    reference charges, ``closure`` is a :class:`~miniff.fit.charges.ChargeClosure`.
    """

    default_tag = "charge"

    def prepare(self, fn_cells, fn_cells_root=None, cells_order="random", cells_subset=None, cells_append=False,
                cells_index=":", cells_selection=None, descriptors=None, cutoff=None, default_descriptor_kwargs=None,
                descriptor_recipe="behler", nw_kwargs=None, normalization_kwargs=None, test_set=0.1, split_seed=0,
                nn_kwargs=None, closure_kwargs=None, checkpoint=None, resume=True, load=None):
        """Load cells with reference charges, compute descriptors, split, normalise, build networks and the closure.

        Parameters
        ----------
        fn_cells, fn_cells_root, cells_order, cells_subset, cells_append, cells_index, cells_selection
            As in :meth:`FitWorkflow.prepare <miniff.fit.workflow.FitWorkflow.prepare>`; every structure needs
            ``meta["charges"]`` ``[N]`` (e), finite.
        descriptors, cutoff, default_descriptor_kwargs, descriptor_recipe, nw_kwargs, load
            The descriptors, as in :meth:`FitWorkflow.prepare <miniff.fit.workflow.FitWorkflow.prepare>`.
        normalization_kwargs : dict or None
            Arguments of ``ml.Normalization.from_dataset`` (defaults: ``offset_charges=True``,
            ``ignore_normalization_errors=True``).
        test_set, split_seed
            The validation share and the seed of the split.
        nn_kwargs : dict or None
            Arguments of :func:`~miniff.ml_util.behler_nn` (``n_layers=1`` gives charges linear in the
            descriptors).
        closure_kwargs : dict or None
            Arguments of :func:`~miniff.fit.charges.simple_charges_closure`: ``optimizer`` (default ``"auto"``,
            compact L-BFGS), ``optimizer_kwargs``, ``criterion``, ``convergence`` (``{"charge_rmse": e,
            "charge_maxresid": e}``).
        checkpoint, resume
            Checkpoint file and whether to resume from it.
        """
        self.forces = False
        n, n_test = self._load_cells(fn_cells, fn_cells_root, cells_order, cells_subset, cells_append, cells_index,
                                     cells_selection, test_set, split_seed)
        check_reference_charges(self.cells, getattr(self, "cell_sources", None))
        self._make_descriptors(descriptors, load, descriptor_recipe, cutoff, default_descriptor_kwargs, nw_kwargs)
        raw = self._make_charge_datasets(n, n_test, normalization_kwargs)
        self._make_networks({k: v for k, v in (nn_kwargs or {}).items() if k != "output_activation"})
        self._make_charge_closure(closure_kwargs)
        self._start_fit(checkpoint, resume, raw)
        return self

    def _make_charge_datasets(self, n, n_test, normalization_kwargs):
        """Descriptors and reference charges of all cells, split and normalised (sets what
        :meth:`~miniff.fit.prepare.FitPreparation._make_datasets` sets; returns the raw split)."""
        from miniff.ml.datasets import Dataset, PerCellDataset, PerPointDataset

        t0 = time.perf_counter()
        present = sorted({str(x) for c in self.cells for x in np.asarray(c.values)})
        missing = [s for s in present if s not in self.descriptors]
        if missing:
            raise KeyError(f"descriptors: no entry for species {missing} present in the cells "
                           f"(keys: {sorted(self.descriptors)})")
        n_atoms = max(c.size for c in self.cells)
        mask = torch.zeros(n, n_atoms, dtype=self.dtype)
        for s, c in enumerate(self.cells):
            mask[s, :c.size] = 1
        # energies are not fitted: the per-cell dataset only carries the atoms (energies where known, else 0)
        energy = torch.tensor([[float(c.meta.get("total-energy", 0.0))] for c in self.cells], dtype=self.dtype)
        per_point = [PerPointDataset.from_cells(self.cells_nw, self.descriptors[s], s, charge=True, dtype=self.dtype,
                                                n_threads=self.n_threads) for s in self.descriptors]
        full = Dataset(PerCellDataset(energy, mask), *per_point)
        raw = self._split_dataset(full, n, n_test, time.perf_counter() - t0)

        from miniff import ml

        norm_kwargs = {"offset_charges": True, "ignore_normalization_errors": True}
        norm_kwargs.update(normalization_kwargs or {})
        self.normalization = ml.Normalization.from_dataset(raw["learn"], **norm_kwargs)
        self.datasets = {k: self.normalization.fw(v) for k, v in raw.items()}
        return raw

    def _make_charge_closure(self, closure_kwargs):
        """The charge closure on the learning set (``optimizer: "auto"`` resolved as for energies)."""
        closure_kwargs = self._default_optimizer(dict(closure_kwargs or {}))
        self.closure = simple_charges_closure(self.nn, self.datasets["learn"], normalization=self.normalization,
                                              **closure_kwargs)

    @staticmethod
    def _split_key(raw):
        """A hash of the reference charges of the split (checkpoints are checked against it)."""
        return hashlib.sha256(json.dumps(
            {k: [np.round(d.charges.double().numpy().ravel(), 8).tolist() for d in raw[k].per_point_datasets]
             for k in raw}).encode()).hexdigest()

    # ------------------------------------------------------------------ losses and metrics
    def update_loss(self):
        """Charge losses of every dataset: ``{name: loss_result}`` (stored in ``self.losses``)."""
        self.losses = {}
        with torch.no_grad():
            for k, v in self.datasets.items():
                self.losses[k] = (self.closure.loss(v) if k == "learn"
                                  else charges_loss(self.nn, v, self.closure.criterion))
        return self.losses

    def metrics(self, name="learn"):
        """Charge errors (e) of the networks on dataset ``name`` (see :func:`~miniff.fit.charges.charge_metrics`)."""
        return charge_metrics(self.nn, self.datasets[name], self.normalization)

    def run(self, n_epochs=100, epoch_size=1, cleanup_optimizer=False, save=None, save_fn=None,
            checkpoint_every=10, log_file=None, early_stopping=None, restore_best=True, progress=None,
            after_epoch=None, save_policy=None, plot_kwargs=None, torch_threads=1, select_best="loss",
            stall_epochs=STALL_EPOCHS, stall_tolerance=STALL_TOLERANCE, summary=True):
        """Optimise, as :meth:`FitWorkflow.run <miniff.fit.workflow.FitWorkflow.run>` (the same parameters;
        ``save_fn`` default ``"{tag}.pt"`` with ``{tag}`` = ``"learn"``); ``select_best`` can only be ``"loss"``
        (the validation charge loss).  Returns the per-epoch records (``loss``, ``charge_rmse``, ``charge_max``,
        ``charge_mae``, ``charge_rmse_<species>`` in e; ``_valid`` for the validation set)."""
        if select_best != "loss":
            raise ValueError(f"select_best: a charge fit keeps the epoch of the lowest validation loss "
                             f"('loss'), got {select_best!r}")
        return super().run(n_epochs=n_epochs, epoch_size=epoch_size, cleanup_optimizer=cleanup_optimizer, save=save,
                           save_fn=save_fn, checkpoint_every=checkpoint_every, log_file=log_file,
                           early_stopping=early_stopping, restore_best=restore_best, progress=progress,
                           after_epoch=after_epoch, save_policy=save_policy, plot_kwargs=plot_kwargs,
                           torch_threads=torch_threads, select_best=select_best, stall_epochs=stall_epochs,
                           stall_tolerance=stall_tolerance, summary=summary)

    # ------------------------------------------------------------------ potentials
    def build_potentials(self):
        """Charge potentials, one per species (raw descriptors in, e out; ``miniff.ml.NNPotential`` with the
        training range of every descriptor)."""
        from miniff import ml

        nets = [copy.deepcopy(n) for n in self.nn]
        ranges = ml.descriptor_ranges(self.datasets["learn"], self.normalization)
        self.nn_potentials = ml.potentials_from_ml_data(nets, self.descriptors, normalization=self.normalization,
                                                        output="charge", descriptor_range=ranges)
        return self.nn_potentials

    def electrostatics(self, a, eta, charge_middleware="subtract_mean", **kwargs):
        """The Ewald energy of the fitted charges: ``ewald_charge_wrapper_potential_family`` around
        :meth:`build_potentials`.

        Parameters
        ----------
        a : float
            Real-space cutoff, Å.
        eta : float
            Ewald splitting parameter, 1/Å.
        charge_middleware : {"subtract_mean", None}
            Make every cell neutral by subtracting the mean predicted charge (default), or not.
        **kwargs
            Other parameters of the family (``accuracy``, ``k_cut``, ``scale``, ``method``, ``mesh``...).

        Returns
        -------
        EwaldChargeWrapperPotential
        """
        from miniff.potentials import ewald_charge_wrapper_potential_family

        return ewald_charge_wrapper_potential_family(descriptors=self.build_potentials(), a=a, eta=eta,
                                                     charge_middleware=charge_middleware, **kwargs)

    def predict(self, name="learn"):
        """Reference and predicted charges (e) of dataset ``name`` per species.

        Returns
        -------
        dict
            ``charges_ref``, ``charges_pred``: ``{species: ndarray [atoms of that species in the set]}``.
        """
        from miniff import ml

        ds = self.datasets[name]
        with torch.no_grad():
            pred = ml.fw_cauldron_charges(self.nn, ds, normalization=self.normalization)
        out = {"charges_ref": {}, "charges_pred": {}}
        for k, (p, d) in enumerate(zip(pred, ds.per_point_datasets, strict=True)):
            m = d.mask != 0
            out["charges_ref"][d.tag] = self.normalization.bw_charges(d.charges, k)[m][:, 0].numpy()
            out["charges_pred"][d.tag] = p[m][:, 0].numpy()
        return out

    def summary(self):
        """The end-of-fit report (printed by :meth:`run`): epochs, time, why the fit stopped, the epoch kept, and
        per data set and species the charge RMSE and largest error next to the spread of the reference charges
        (e).  The numbers are kept in ``summary_table`` (see :func:`miniff.fit.summary.charge_table`)."""
        from miniff.fit.summary import charge_fit_summary, charge_table

        rows = [(label, self.predict(name)) for name, label in (("learn", "training"), ("test", "validation"))
                if name in self.datasets]
        self.summary_table = charge_table(rows)
        return charge_fit_summary(self, self.summary_table)
