"""Fitting NN potentials: closures, descriptor recipes, workflows and YAML jobs.

This is the public face of miniff's training code (the pieces live in private ``miniff._fit_*`` modules):

- losses and closures: :func:`simple_energy_closure` (LBFGS with strong-Wolfe line search by default,
  :class:`CompactLBFGS` for small networks, Adam or any ``torch.optim`` optimizer by name),
  :func:`energy_loss`, :class:`SimpleClosure`, :func:`error_metrics`; energy, force and stress weights, per-structure
  weights, Amp-style convergence criteria on energy/force RMSE and maximum residual;
- recipes: :func:`behler_nn`, :func:`default_behler_descriptors`, :func:`default_behler_descriptors_3`,
  :func:`default_lsp_descriptors` (PyFit-FF's local structural parameters), :func:`default_wacsf_descriptors`
  (element-weighted radial and angular functions), :func:`default_chebyshev_descriptors` (aenet's Chebyshev
  set with type spins);
- workflows (``init`` -> ``prepare`` -> ``run``): :class:`FitWorkflow` (train/validation split, early stopping,
  per-group errors, progress bar, JSON Lines log, atomic checkpoints that resume), :class:`ChargeFitWorkflow`
  (atomic charges for fitted-charge electrostatics, with :func:`charges_loss` and
  :func:`simple_charges_closure`), :class:`OneShotWorkflow`
  (errors of saved potentials), :class:`SDWorkflow` (batch relaxation), :class:`ActiveLearningWorkflow`
  (committee dynamics -> frames with a large spread -> reference labels -> refit, per round);
  ``FitWorkflow.prepare(committee=...)`` fits a committee of networks in one run;
- predictions: :func:`predict_cells` (energies, forces, stresses of potentials on cells) and
  :func:`write_predictions` (into an ``ase.db`` on SQLite or PostgreSQL, or a file);
- several processes, machines, GPUs (``torchrun``; ``docs/distributed.md``): :func:`init_distributed`,
  :class:`DistContext`, :func:`resolve_device`, :func:`share_loss` (a part's share of the full-batch loss);
- jobs: :func:`exec_workflows`, :func:`run_job_file` (``python -m miniff jobs.yml``);
- parsers: :func:`parse_runner_input` (RuNNer ``symfunction_short`` lines), :func:`parse_lammps_input`
  (LAMMPS ``pair_style nn`` potential files);
- files: :func:`save_potentials` / :func:`load_potentials` (plain data), :func:`load_potentials_014`
  (explicit, unsafe opt-in for 0.1.4 pickles), :func:`read_fit_log`, :func:`example_data_path`.

Units: eV, Å, eV/Å; logged errors are eV/atom and eV/Å.

Example (the seed tutorial)::

    closure = ml_util.simple_energy_closure([nn], dataset, optimizer_kwargs={"tolerance_grad": 1e-14})
    closure.loss().loss_value        # initial loss
    closure.optimizer_init()
    closure.optimizer_step()         # LBFGS by default
    closure.last_loss.loss_value     # ~ 0
"""

from functools import partial
from pathlib import Path

from miniff.fit.active import ActiveLearningWorkflow
from miniff.fit.apply import OneShotWorkflow, SDWorkflow, prediction_errors
from miniff.fit.base import Workflow
from miniff.fit.bfgs import DenseBFGS
from miniff.fit.charge_workflow import ChargeFitWorkflow, subtract_potentials
from miniff.fit.charges import ChargeClosure, charge_metrics, charges_loss, simple_charges_closure
from miniff.fit.checkpoint import CheckpointError, atomic_torch_save, load_checkpoint
from miniff.fit.closures import (
    CONVERGENCE_KEYS,
    LBFGS,
    SimpleClosure,
    energy_loss,
    error_metrics,
    loss_result,
    resolve_optimizer,
    share_loss,
    simple_energy_closure,
)
from miniff.fit.distributed import DistContext, init_distributed, resolve_device
from miniff.fit.jobs import JobFileError, exec_workflows, run_job_file, run_workflow, validate_description
from miniff.fit.lbfgs import CompactLBFGS
from miniff.fit.log import FitLog, read_fit_log
from miniff.fit.minibatch import MiniBatchTrainer, resolve_lr_schedule
from miniff.fit.minibatch_workflow import MiniBatchFitWorkflow
from miniff.fit.parsers import group_by_species, parse_lammps_input, parse_runner_input
from miniff.fit.predict import predict_cells, write_predictions
from miniff.fit.recipes import (
    behler_nn,
    default_behler_descriptors,
    default_behler_descriptors_3,
    default_lsp_descriptors,
    eta_for_turning_point,
    shifted_grid,
)
from miniff.fit.recipes_weighted import default_chebyshev_descriptors, default_wacsf_descriptors
from miniff.fit.workflow import DEFAULT_CUTOFF, FitWorkflow
from miniff.ml.serialize import load_potentials, load_potentials_014, save_potentials, torch_load

__all__ = [
    "loss_result",
    "LBFGS",
    "CompactLBFGS",
    "DenseBFGS",
    "energy_loss",
    "share_loss",
    "SimpleClosure",
    "simple_energy_closure",
    "error_metrics",
    "charges_loss",
    "simple_charges_closure",
    "charge_metrics",
    "ChargeClosure",
    "ChargeFitWorkflow",
    "fit_charges",
    "subtract_potentials",
    "resolve_optimizer",
    "CONVERGENCE_KEYS",
    "behler_nn",
    "default_behler_descriptors",
    "default_behler_descriptors_3",
    "default_lsp_descriptors",
    "default_wacsf_descriptors",
    "default_chebyshev_descriptors",
    "eta_for_turning_point",
    "shifted_grid",
    "Workflow",
    "FitWorkflow",
    "ActiveLearningWorkflow",
    "MiniBatchFitWorkflow",
    "MiniBatchTrainer",
    "resolve_lr_schedule",
    "DistContext",
    "init_distributed",
    "resolve_device",
    "OneShotWorkflow",
    "SDWorkflow",
    "prediction_errors",
    "predict_cells",
    "write_predictions",
    "run_workflow",
    "fit",
    "test_direct",
    "test_relax",
    "exec_workflows",
    "run_job_file",
    "validate_description",
    "JobFileError",
    "parse_lammps_input",
    "parse_runner_input",
    "group_by_species",
    "save_potentials",
    "load_potentials",
    "load_potentials_014",
    "torch_load",
    "atomic_torch_save",
    "load_checkpoint",
    "CheckpointError",
    "FitLog",
    "read_fit_log",
    "example_data_path",
    "DEFAULT_CUTOFF",
]


#: 0.1.4 shortcuts: ``fit(init=..., prepare=..., run=...)`` etc.
fit = partial(run_workflow, FitWorkflow)
fit_charges = partial(run_workflow, ChargeFitWorkflow)
test_direct = partial(run_workflow, OneShotWorkflow)
test_relax = partial(run_workflow, SDWorkflow)


def example_data_path(name="cupt_emt.extxyz"):
    """Path of a bundled example data file (see ``miniff/data/README.md``).

    Parameters
    ----------
    name : str
        File name inside ``miniff/data`` (default: the Cu/Pt EMT set, 100 structures with energies and
        forces).
    """
    path = Path(__file__).parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"name: no bundled data file {name!r} in {str(path.parent)!r}")
    return path
