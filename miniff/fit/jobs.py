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

A stage name is ``fit``, ``test-direct`` or ``test-relax``, optionally followed by ``:label`` to run a
kind twice (``fit:second``).  The keys of every section are the parameters of the workflow's
``__init__`` / ``prepare`` / ``run``; anything else is an error that names the key and suggests the
closest valid one.  Every data file named by ``fn_cells`` is checked before any stage starts.
"""

import difflib
import glob
import inspect
import logging
import os
import warnings
from pathlib import Path

from miniff.fit.apply import OneShotWorkflow, SDWorkflow
from miniff.fit.compat import deprecations_once
from miniff.fit.workflow import FitWorkflow

__all__ = ["JobFileError", "WORKFLOWS", "validate_description", "exec_workflows", "run_job_file", "run_workflow"]

#: Stage kind -> workflow class.
WORKFLOWS = {"fit": FitWorkflow, "test-direct": OneShotWorkflow, "test-relax": SDWorkflow}

_SECTIONS = {"init": "__init__", "prepare": "prepare", "run": "run"}


class JobFileError(ValueError):
    """A job description that cannot run (unknown key, missing argument, missing data file...)."""


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
        items = items if isinstance(items, (list, tuple)) else [items]
        for item in items:
            if not isinstance(item, (str, Path)) or "://" in str(item):
                continue
            pattern = str(item) if root is None or os.path.isabs(str(item)) else os.path.join(root, str(item))
            if not glob.glob(pattern):
                base = os.path.abspath(root) if root is not None else os.getcwd()
                raise FileNotFoundError(f"{where}: {stage}.prepare.fn_cells: no data file matches {str(item)!r} "
                                        f"(looked in {base!r})")


def run_workflow(workflow_class, init=None, prepare=None, run=None):
    """Create a workflow, prepare it and run it; return the workflow.

    Parameters
    ----------
    workflow_class : type
        ``FitWorkflow``, ``OneShotWorkflow`` or ``SDWorkflow``.
    init, prepare, run : dict or None
        Keyword arguments of ``__init__``, ``prepare`` and ``run``.
    """
    wf = workflow_class(**(init or {}))
    wf.prepare(**(prepare or {}))
    wf.run(**(run or {}))
    return wf


def _exec_stages(description, log, where):
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
            done.append(run_workflow(cls, init, sections.get("prepare"), sections.get("run")))
    return done, deprecated


def _warn_deprecated(messages, where, stacklevel):
    for message in messages:
        warnings.warn(f"{where}: {message}", DeprecationWarning, stacklevel=stacklevel + 1)


def exec_workflows(description, rtn=True, log=None, where="job"):
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

    Returns
    -------
    list of Workflow, or the last Workflow
    """
    done, deprecated = _exec_stages(description, log, where)
    _warn_deprecated(deprecated, where, stacklevel=2)
    return done if rtn else done[-1]


def run_job_file(path, rtn=True, log=None):
    """Read a YAML job file and run it with :func:`exec_workflows`.

    Relative paths inside the file are relative to the current directory (as in 0.1.4).  Keys kept only for
    0.1.4 compatibility are reported once per job, as in :func:`exec_workflows`.

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
    done, deprecated = _exec_stages(description, log, str(path))
    _warn_deprecated(deprecated, str(path), stacklevel=2)
    return done if rtn else done[-1]
