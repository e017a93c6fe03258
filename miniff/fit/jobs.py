"""YAML job files: schema validation and execution of workflow stages.

A job file maps stage names to ``init`` / ``prepare`` / ``run`` sections, run in file order::

    fit:                      # FitWorkflow
      init: {seed: 0}
      prepare: {fn_cells: data.extxyz, forces: true, cutoff: 5.0, checkpoint: fit.ckpt}
      run: {n_epochs: 50, save_fn: learn.pt, log_file: fit.jsonl}
    test-direct:              # OneShotWorkflow: errors of the saved potentials
      prepare: {fn_cells: test.extxyz, potentials: learn.pt}
    test-relax:               # SDWorkflow: relax structures with the saved potentials
      prepare: {fn_cells: start.extxyz, potentials: learn.pt}
    fit-minibatch:            # MiniBatchFitWorkflow: descriptors in an on-disk store, mini-batch training
      prepare: {fn_cells: data.extxyz, store: fit.store, batch_size: 32, optimizer: adam}
      run: {n_epochs: 100, save_fn: learn.pt}

A ``fit-charges`` stage (:class:`~miniff.fit.charge_workflow.ChargeFitWorkflow`) fits atomic charges to the
``charges`` arrays of its cells and saves charge potentials (``run: {save_fn: charges.pt}``).

A stage name is ``fit``, ``fit-charges``, ``test-direct``, ``test-relax``, ``fit-minibatch`` or ``active-learning``,
optionally followed by ``:label`` to run a kind twice (``fit:second``). ``active-learning`` runs an
:class:`~miniff.fit.active.ActiveLearningWorkflow` (``prepare: {fn_cells: data.extxyz, reference: emt, temperatures:
[600], threshold: 0.1}``, ``run: {n_rounds: 5, save_fn: active.pt}``). The keys of every section are the parameters of
the workflow's ``__init__`` / ``prepare`` / ``run``; anything else is an error that names the key and suggests the
closest valid one. A value of the wrong type (``cutoff: abc``, ``test_set: twenty``, a list where a mapping is
needed, a ``checkpoint`` that is a folder) is an error naming the key and the type expected (:data:`KEY_TYPES`),
raised before any stage starts, as is a ``fn_cells`` (or ``test_set``) file that does not exist.

The command line (:mod:`miniff.cli`) hands ``run_defaults={"summary": True, "progress": False}`` to
:func:`run_job_file`: every stage prints its summary at its end (``-q``: none; ``-v``: progress bars too).
"""

import difflib
import glob
import inspect
import logging
import os
import warnings
from pathlib import Path

from miniff.fit.active import ActiveLearningWorkflow
from miniff.fit.apply import OneShotWorkflow, SDWorkflow
from miniff.fit.charge_workflow import ChargeFitWorkflow
from miniff.fit.compat import deprecations_once
from miniff.fit.minibatch_workflow import MiniBatchFitWorkflow
from miniff.fit.workflow import FitWorkflow

__all__ = ["JobFileError", "WORKFLOWS", "KEY_TYPES", "check_key_type", "validate_description", "exec_workflows",
           "run_job_file", "run_workflow"]

#: Stage kind -> workflow class.
WORKFLOWS = {"fit": FitWorkflow, "fit-charges": ChargeFitWorkflow, "test-direct": OneShotWorkflow,
             "test-relax": SDWorkflow, "fit-minibatch": MiniBatchFitWorkflow, "active-learning": ActiveLearningWorkflow}

_SECTIONS = {"init": "__init__", "prepare": "prepare", "run": "run"}


class JobFileError(ValueError):
    """A job description that cannot run (unknown key, missing argument, missing data file...)."""


#: Expected types of job-file keys (any section): key -> (accepted Python types, words for the message).
#: Keys not listed here are checked by the workflow itself; ``None`` is accepted where the default is None;
#: a key whose name ends in ``_kwargs`` must be a mapping.
_NUMBER, _INT, _BOOL, _STR, _MAP = (int, float), (int,), (bool,), (str,), (dict,)
KEY_TYPES = {
    "cutoff": (_NUMBER, "a number (Å)"),
    "stall_tolerance": (_NUMBER, "a number"),
    "test_set": ((int, float, str), "a fraction (0.1), a count (20) or a file / glob pattern"),
    "fn_cells": ((str, list, dict), "a file, glob pattern or database URL, a list of them, or a mapping "
                                    "{group label: files}"),
    "fn_cells_root": (_STR, "a folder"),
    "torch_threads": ((int, str, type(None)), "an integer, null or 'auto'"),
    "cells_order": ((str, list, type(None)), "'random', null or a list of indices"),
    "potentials": ((str, list), "a potentials file or a list of them"),
    **{k: (_INT, "an integer") for k in ("n_epochs", "epoch_size", "checkpoint_every", "cells_subset", "split_seed",
                                         "seed", "early_stopping", "stall_epochs", "n_threads",
                                         "batch_size", "shuffle_seed", "store_workers", "validate_every")},
    **{k: (_BOOL, "true or false") for k in ("forces", "stress", "resume", "cells_append", "restore_best",
                                              "shuffle",
                                             "cleanup_optimizer", "save", "summary", "progress", "relax_cell",
                                             "allow_legacy_pickle", "units_are_known")},
    **{k: (_STR, "a string") for k in ("descriptor_recipe", "select_best", "dtype", "tag", "save_fn", "log_file",
                                       "checkpoint", "load", "fn_output", "method", "mpl_backend", "store")},
    **{k: (_MAP, "a mapping (key: value lines or {...})") for k in ("group_weights", "options", "descriptors",
                                                                           "lr_schedule")},
}


def _type_name(value):
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def check_key_type(key, value, param=None):
    """None when ``value`` fits ``key`` (see :data:`KEY_TYPES`), else the message naming the expected type."""
    if value is None and (param is None or param.default is None or param.default is inspect.Parameter.empty):
        return None
    if key in KEY_TYPES:
        types, words = KEY_TYPES[key]
    elif key.endswith("_kwargs"):
        types, words = _MAP, "a mapping (key: value lines or {...})"
    else:
        return None
    if key == "descriptors" and isinstance(value, str):
        return None   # a RuNNer input.nn file
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if ok and key == "test_set" and isinstance(value, float) and not 0 <= value < 1:
        return f"expected a fraction in [0, 1), a count or a file, got {value!r}"
    if ok and key == "fn_cells" and isinstance(value, list) and not all(isinstance(x, str) for x in value):
        return "expected a list of files, glob patterns or database URLs, got a list with other entries"
    return None if ok else f"expected {words}, got {_type_name(value)} {value!r}"


def _suggest(key, choices):
    close = difflib.get_close_matches(str(key), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parameters(cls, method):
    sig = inspect.signature(getattr(cls, method))
    params = [p for name, p in sig.parameters.items() if name != "self"
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return params, accepts_any


def stage_kind(name):
    """The workflow kind of a stage name (``"fit:second"`` -> ``"fit"``)."""
    kind = str(name).split(":", 1)[0]
    if kind not in WORKFLOWS:
        raise JobFileError(f"unknown stage {name!r}{_suggest(kind, WORKFLOWS)}; stages are "
                           f"{', '.join(WORKFLOWS)} (optionally followed by ':label')")
    return kind


def validate_description(description, where="job"):
    """Check a job description without running anything; raise :class:`JobFileError` naming the problem.

    Parameters
    ----------
    description : dict
        ``{stage: {"init": {...}, "prepare": {...}, "run": {...}}}``.
    where : str
        Prefix of error messages (the job file name).
    """
    if not isinstance(description, dict) or not description:
        raise JobFileError(f"{where}: expected a mapping of stages ({', '.join(WORKFLOWS)}), "
                           f"got {type(description).__name__ if description else 'nothing'}")
    for stage, sections in description.items():
        try:
            cls = WORKFLOWS[stage_kind(stage)]
        except JobFileError as error:
            raise JobFileError(f"{where}: {error}") from None
        if sections is None:
            sections = {}
        if not isinstance(sections, dict):
            raise JobFileError(f"{where}: {stage}: expected a mapping with init/prepare/run, "
                               f"got {type(sections).__name__}")
        for section, values in sections.items():
            if section not in _SECTIONS:
                raise JobFileError(f"{where}: {stage}: unknown section {section!r}{_suggest(section, _SECTIONS)}; "
                                   f"sections are init, prepare, run")
            if values is None:
                continue
            if not isinstance(values, dict):
                raise JobFileError(f"{where}: {stage}.{section}: expected a mapping of arguments, "
                                   f"got {type(values).__name__}")
            params, accepts_any = _parameters(cls, _SECTIONS[section])
            names = [p.name for p in params]
            if not accepts_any:
                for key in values:
                    if key not in names:
                        raise JobFileError(f"{where}: {stage}.{section}: unknown key {key!r}{_suggest(key, names)}")
            by_name = {p.name: p for p in params}
            for key, value in values.items():
                problem = check_key_type(str(key), value, by_name.get(key))
                if problem:
                    raise JobFileError(f"{where}: {stage}.{section}.{key}: {problem}")
            checkpoint = values.get("checkpoint") if section == "prepare" else None
            if isinstance(checkpoint, str) and os.path.isdir(checkpoint):
                raise JobFileError(f"{where}: {stage}.prepare.checkpoint: {checkpoint!r} is a folder; expected a "
                                   f"checkpoint file name (e.g. fit.ckpt)")
            missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in values]
            if missing:
                raise JobFileError(f"{where}: {stage}.{section}: missing required key(s) {missing}")
        prepare_params, _ = _parameters(cls, "prepare")
        required = [p.name for p in prepare_params if p.default is inspect.Parameter.empty]
        if required and "prepare" not in sections:
            raise JobFileError(f"{where}: {stage}: a 'prepare' section with {required} is required")


def _check_data_files(description, where):
    """Fail before any work when a ``fn_cells`` pattern matches no file."""
    for stage, sections in description.items():
        prepare = (sections or {}).get("prepare") or {}
        root = prepare.get("fn_cells_root")
        items = prepare.get("fn_cells")
        if isinstance(items, dict):
            items = [x for v in items.values() for x in (v if isinstance(v, (list, tuple)) else [v])]
        items = items if isinstance(items, (list, tuple)) else [items]
        for item in items:
            if not isinstance(item, (str, Path)) or "://" in str(item):
                continue
            pattern = str(item) if root is None or os.path.isabs(str(item)) else os.path.join(root, str(item))
            if not glob.glob(pattern):
                base = os.path.abspath(root) if root is not None else os.getcwd()
                raise FileNotFoundError(f"{where}: {stage}.prepare.fn_cells: no data file matches {str(item)!r} "
                                        f"(looked in {base!r})")
        test_set = prepare.get("test_set")
        if isinstance(test_set, str) and "://" not in test_set:
            pattern = test_set if root is None or os.path.isabs(test_set) else os.path.join(root, test_set)
            if not glob.glob(pattern):
                raise JobFileError(f"{where}: {stage}.prepare.test_set: expected a fraction (0.1), a count (20) or "
                                   f"a file / glob pattern; no file matches {test_set!r}")


def run_workflow(workflow_class, init=None, prepare=None, run=None, where=None):
    """Create a workflow, prepare it and run it; return the workflow.

    Parameters
    ----------
    workflow_class : type
        ``FitWorkflow``, ``OneShotWorkflow`` or ``SDWorkflow``.
    init, prepare, run : dict or None
        Keyword arguments of ``__init__``, ``prepare`` and ``run``.
    where : str or None
        Prefix (``"job.yml: fit"``) added, with the section, to a ``ValueError``, ``TypeError`` or ``KeyError``
        raised by a step (``"job.yml: fit.prepare: n_internal must be an int..."``); the type is kept.
    """
    wf = _step(where, "init", workflow_class, init)
    _step(where, "prepare", wf.prepare, prepare)
    _step(where, "run", wf.run, run)
    return wf


def _step(where, section, function, kwargs):
    """``function(**kwargs)``; a plain ValueError / TypeError / KeyError gets the ``where.section:`` prefix."""
    try:
        return function(**(kwargs or {}))
    except (ValueError, TypeError, KeyError) as error:
        if where is None or type(error) not in (ValueError, TypeError, KeyError, JobFileError):
            raise
        message = error.args[0] if error.args else ""
        raise type(error)(f"{where}.{section}: {message}") from error


def _run_defaults(cls, run, defaults):
    """``run`` completed by the ``defaults`` that ``cls.run`` accepts (the job file's own values win)."""
    run = dict(run or {})
    names = {p.name for p in _parameters(cls, "run")[0]}
    for key, value in (defaults or {}).items():
        if key in names:
            run.setdefault(key, value)
    return run


def _exec_stages(description, log, where, run_defaults=None):
    """Run the stages; return the workflows and the 0.1.4 compatibility deprecation messages (once each)."""
    validate_description(description, where)
    _check_data_files(description, where)
    log = log if log is not None else logging.getLogger("miniff.workflow")
    done, deprecated = [], []
    for stage, sections in description.items():
        sections = sections or {}
        cls = WORKFLOWS[stage_kind(stage)]
        init = dict(sections.get("init") or {})
        init.setdefault("log", log)
        init.setdefault("tag", stage)
        log.info("stage %s (%s)", stage, cls.__name__)

        def report(message, stage=stage):
            log.warning("%s: %s: %s", where, stage, message)

        with deprecations_once(deprecated, report):
            done.append(run_workflow(cls, init, sections.get("prepare"),
                                     _run_defaults(cls, sections.get("run"), run_defaults), where=f"{where}: {stage}"))
    return done, deprecated


def _warn_deprecated(messages, where, stacklevel):
    for message in messages:
        warnings.warn(f"{where}: {message}", DeprecationWarning, stacklevel=stacklevel + 1)


def exec_workflows(description, rtn=True, log=None, where="job", run_defaults=None):
    """Validate, then run the stages of a job description in order.

    A key accepted only for 0.1.4 compatibility and ignored (``plot_kwargs``, ``parallel``...; see
    :data:`miniff.fit.compat.IGNORED`) does not interrupt the job: its ``DeprecationWarning`` is logged as a
    warning on ``log`` when its stage starts, and raised once per job, after the last stage, as a
    ``DeprecationWarning`` at the caller (an error only under an ``error`` warnings filter, once the job's
    results are written).

    Parameters
    ----------
    description : dict
        ``{stage: {"init": {...}, "prepare": {...}, "run": {...}}}`` (see the module docstring).
    rtn : bool
        Return the list of workflows (True) or only the last one.
    log : logging.Logger or None
        Logger handed to every workflow.
    where : str
        Name used in error messages (the job file).
    run_defaults : dict or None
        Defaults of the ``run`` sections, where a stage's ``run`` accepts them (the command line sets
        ``summary`` and ``progress`` this way); the job file's values win.

    Returns
    -------
    list of Workflow, or the last Workflow
    """
    done, deprecated = _exec_stages(description, log, where, run_defaults)
    _warn_deprecated(deprecated, where, stacklevel=2)
    return done if rtn else done[-1]


def run_job_file(path, rtn=True, log=None, run_defaults=None):
    """Read a YAML job file and run it with :func:`exec_workflows`.

    Relative paths inside the file are relative to the current directory (as in 0.1.4).  Keys kept only for
    0.1.4 compatibility are reported once per job, and ``run_defaults`` apply, as in :func:`exec_workflows`.

    Raises
    ------
    FileNotFoundError
        The job file or a data file does not exist.
    JobFileError (a ValueError)
        The file is not valid YAML or not a valid job description.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"job file: no such file {str(path)!r}")
    try:
        with open(path) as f:
            description = yaml.safe_load(f)
    except yaml.YAMLError as error:
        raise JobFileError(f"{path}: not valid YAML: {error}") from None
    done, deprecated = _exec_stages(description, log, str(path), run_defaults)
    _warn_deprecated(deprecated, str(path), stacklevel=2)
    return done if rtn else done[-1]
