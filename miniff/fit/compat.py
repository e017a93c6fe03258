"""Parameters that miniff accepts only so that miniff 0.1.4 job files and scripts run, and then ignores.

Giving one of them a value other than its default emits a ``DeprecationWarning`` that names the parameter,
says why it is ignored and what to use instead (:func:`warn_ignored`; the table is :data:`IGNORED`).  Every
such message contains :data:`PHRASE` (so do those of ``miniff.ml.learn_cauldron(prefer_parallel=...)`` and
``ScalarFunctionWrapper(prefer_parallel=...)``): the job-file runner recognises them by it and reports each
one once per job (:func:`deprecations_once`) instead of letting it pass unseen or abort a stage.
"""

import contextlib
import re
import warnings

__all__ = ["PHRASE", "IGNORED", "warn_ignored", "deprecations_once"]

#: The phrase every deprecation message of a 0.1.4 compatibility parameter contains.
PHRASE = "accepted only for miniff 0.1.4 compatibility and will be removed"

_THREADS = "set the threads with the n_threads of the workflow (init: {n_threads: N} in a job file)"

#: ``{(owner, parameter): (values that do not warn, why the parameter is ignored and what to use instead)}``.
IGNORED = {
    ("Workflow", "units"): (
        (None,), "miniff always computes and reports in eV and Å (the value is only stored as .units)"),
    ("Workflow", "units_are_known"): ((False,), "units are always known: miniff works in eV and Å"),
    ("Workflow", "mpl_save_ext"): (
        ("png",), "the workflows save no figures; save those of miniff.presentation with fig.savefig"),
    ("FitWorkflow.prepare", "parallel"): (
        (None, False), f"descriptors are always computed by the OpenMP kernels; {_THREADS}"),
    ("FitWorkflow.prepare", "cuda"): ((None, False), "FitWorkflow trains on the CPU"),
    ("FitWorkflow.prepare", "plot_kwargs"): (
        (None,), "there are no live plots; plot the run's log_file with miniff.presentation.plot_convergence, "
                 "or draw from run(after_epoch=...)"),
    ("FitWorkflow.run", "save_policy"): (
        (None,), "the potentials are saved once, at the end of run (save_fn); for intermediate states use "
                 "prepare(checkpoint=...) with run(checkpoint_every=...)"),
    ("FitWorkflow.run", "plot_kwargs"): (
        (None,), "there are no live plots; plot log_file with miniff.presentation.plot_convergence, or draw "
                 "from after_epoch"),
    ("SDWorkflow.run", "parallel"): (
        (None, False), f"cells are relaxed one after another and the kernels are OpenMP-parallel; {_THREADS}"),
    ("SDWorkflow.run", "pool_kwargs"): (
        (None,), f"there is no process pool: cells are relaxed one after another; {_THREADS}"),
}


def _is_default(value, defaults):
    return any(value is d or (isinstance(value, (bool, int, float, str)) and value == d) for d in defaults)


def warn_ignored(owner, label=None, stacklevel=2, **values):
    """Warn about every parameter of ``values`` (``name=value``) of ``owner`` whose value is not a default.

    Parameters
    ----------
    owner : str
        The key of :data:`IGNORED` (``"FitWorkflow.prepare"``...).
    label : str or None
        Name shown in the message (default ``owner``; e.g. the workflow class for ``"Workflow"``).
    stacklevel : int
        Frames above the caller of this function: 2 points the warning at the caller's caller (the code
        that passed the parameter).
    **values
        The parameters as given, checked in this order.
    """
    for name, value in values.items():
        defaults, why = IGNORED[owner, name]
        if not _is_default(value, defaults):
            warnings.warn(f"{label or owner}: {name} is ignored: {why} ({name} is {PHRASE})", DeprecationWarning,
                          stacklevel=stacklevel + 1)


@contextlib.contextmanager
def deprecations_once(seen, report):
    """Within the block, collect the 0.1.4 compatibility ``DeprecationWarning`` s instead of showing or raising them.

    A message (it contains :data:`PHRASE`) not yet in ``seen`` (a list shared by the blocks of one job) is
    appended to it and passed to ``report(message)``; repeats are dropped.  Other warnings are untouched:
    they follow the filters in force and are shown where they were.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("always", message=".*" + re.escape(PHRASE), category=DeprecationWarning)
        show = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            text = str(message)
            if not (issubclass(category, DeprecationWarning) and PHRASE in text):
                show(message, category, filename, lineno, file, line)
            elif text not in seen:
                seen.append(text)
                report(text)

        warnings.showwarning = showwarning
        yield seen
