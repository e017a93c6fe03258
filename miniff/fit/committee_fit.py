"""Committee training: K networks per species fitted in one :class:`~miniff.fit.workflow.FitWorkflow` run.

``FitWorkflow.prepare(..., committee=...)`` turns a fit into a committee fit.  ``prepare`` runs once: the cells
are loaded, their descriptors and Jacobians computed, split and normalised once, and every member uses those
same datasets and the same normalisation; members differ only in their networks:

- the initial weights, drawn with the member's seed (``seeds``, default ``seed + k`` of the workflow's
  ``seed``, or ``k`` without one);
- with ``bootstrap``, the training structures: member ``k`` draws ``S`` structures with replacement from the
  ``S`` training structures (generator seeded with its seed) and weighs each structure by the number of times
  it was drawn (0 for the about 37 % left out), which is the same loss as a resampled data set without a copy
  of the data;
- their own optimizer, best epoch and stop reason.

Members run one after the other, or in ``processes`` worker processes at once (``concurrent.futures`` with
the ``spawn`` start method: a worker gets the member's networks, datasets and settings, builds its own
closure, runs the epochs with one torch thread and sends back the networks and the history; the compiled
kernels are not used while training).  ``processes="auto"`` takes one process per member up to the number of
cores this process may use (``os.sched_getaffinity``); with one core the members run in this process.  A
member's result does not depend on whether it ran in a worker or here: its generator is seeded before its
epochs start.

With a ``checkpoint`` file ``fit.ckpt`` member ``k`` writes ``fit.member<k>.ckpt`` and resumes from it; with a
``log_file`` ``fit.jsonl`` it writes ``fit.member<k>.jsonl``.  After ``run`` the workflow's ``members`` holds
the K member workflows; :meth:`~miniff.fit.workflow.FitWorkflow.predict`, ``summary`` and
``build_potentials`` / ``save_potentials`` then describe the committee (the mean of the members, one
:class:`~miniff.ml.CommitteePotential` per species in one file of plain data).
"""

import concurrent.futures
import copy
import multiprocessing
import os
from pathlib import Path

import numpy as np
import torch

from miniff.fit.closures import simple_energy_closure
from miniff.fit.distributed import state_to_cpu

__all__ = ["committee_options", "run_committee", "committee_predict", "committee_potentials", "committee_summary",
           "member_path", "COMMITTEE_KEYS"]

#: Keys of the ``committee`` mapping of ``FitWorkflow.prepare``.
COMMITTEE_KEYS = ("members", "seeds", "bootstrap", "processes", "warm_start")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def committee_options(committee, seed=None):
    """Check the ``committee`` argument of ``FitWorkflow.prepare``; None (no committee) or a dict.

    Parameters
    ----------
    committee : None, int or dict
        None: an ordinary fit.  An int K >= 2: K members.  A dict with ``members`` (K >= 2), ``seeds`` (K
        ints; default ``seed + k``), ``bootstrap`` (bool, default False), ``processes`` (an int >= 1 or
        ``"auto"``, the default) and ``warm_start`` (None, or per member a list of network state dicts, one
        per species, the members' networks start from).
    seed : int or None
        The workflow's seed (base of the default member seeds).

    Returns
    -------
    dict or None
        ``{"members": K, "seeds": [K ints], "bootstrap": bool, "processes": int or "auto", "warm_start": ...}``.
    """
    if committee is None:
        return None
    if _is_int(committee):
        committee = {"members": int(committee)}
    if not isinstance(committee, dict):
        raise TypeError(f"committee must be None, an integer (members) or a mapping with keys "
                        f"{list(COMMITTEE_KEYS)}, got {type(committee).__name__}")
    unknown = sorted(set(committee) - set(COMMITTEE_KEYS))
    if unknown:
        raise ValueError(f"committee: unknown key(s) {unknown}; keys are {list(COMMITTEE_KEYS)}")
    k = committee.get("members")
    if not _is_int(k) or k < 2:
        raise ValueError(f"committee.members must be an integer >= 2, got {k!r}")
    k = int(k)
    base = 0 if seed is None else int(seed)
    seeds = committee.get("seeds")
    if seeds is None:
        seeds = [base + i for i in range(k)]
    if not isinstance(seeds, (list, tuple)) or len(seeds) != k or not all(_is_int(s) for s in seeds):
        raise ValueError(f"committee.seeds must be a list of {k} integers (one per member), got {seeds!r}")
    bootstrap = committee.get("bootstrap", False)
    if not isinstance(bootstrap, bool):
        raise TypeError(f"committee.bootstrap must be true or false, got {bootstrap!r}")
    processes = committee.get("processes", "auto")
    if processes != "auto" and (not _is_int(processes) or processes < 1):
        raise ValueError(f"committee.processes must be a positive integer or 'auto', got {processes!r}")
    warm = committee.get("warm_start")
    if warm is not None and (not isinstance(warm, (list, tuple)) or len(warm) != k):
        raise ValueError(f"committee.warm_start must be None or a list of {k} entries (per member, the network "
                         f"state dicts of every species), got {type(warm).__name__}")
    return {"members": k, "seeds": [int(s) for s in seeds], "bootstrap": bootstrap, "processes": processes,
            "warm_start": None if warm is None else list(warm)}


def member_path(path, k):
    """``fit.ckpt`` -> ``fit.member<k>.ckpt`` (None stays None)."""
    if path is None:
        return None
    path = Path(path)
    return path.with_name(f"{path.stem}.member{k}{path.suffix}")


def _n_processes(processes, k):
    if processes == "auto":
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:   # not on Linux
            cores = os.cpu_count() or 1
        processes = cores
    return max(1, min(int(processes), k))


def bootstrap_weights(n, seed):
    """``[n]`` float: how many times each of ``n`` structures is drawn in ``n`` draws with replacement."""
    draws = np.random.default_rng(seed).integers(0, n, size=n)
    return np.bincount(draws, minlength=n).astype(float)


def _member(wf, k, opts):
    """Member ``k``: a shallow copy of the prepared workflow with its own networks and fit state (no closure)."""
    member = copy.copy(wf)
    member.committee, member.members, member.member_index = None, None, k
    torch.manual_seed(opts["seeds"][k])
    member._make_networks(wf.nn_kwargs)
    if opts["warm_start"] is not None:
        states = opts["warm_start"][k]
        if len(states) != len(member.nn):
            raise ValueError(f"committee.warm_start[{k}] has {len(states)} networks, the fit has {len(member.nn)}")
        for net, state in zip(member.nn, states, strict=True):
            net.load_state_dict(state)
    member.checkpoint_path = member_path(wf.checkpoint_path, k)
    member.epoch, member.wall_time, member.history, member.best, member.stale_epochs = 0, 0.0, [], None, 0
    member.resumed_from, member.losses, member.closure = None, None, None
    return member


def _closure_kwargs(wf, k, opts):
    kwargs = dict(wf.closure_kwargs)
    if opts["bootstrap"]:
        n = wf.datasets["learn"].n_samples
        w = bootstrap_weights(n, opts["seeds"][k])
        if kwargs.get("weights") is not None:
            w = w * np.asarray(kwargs["weights"], dtype=float)
        if not w.any():
            w[0] = 1.0   # every drawn structure had weight 0: keep the loss defined
        kwargs["weights"] = w.tolist()
    return kwargs


def _train(member, closure_kwargs, seed, resume, run_kwargs):
    """Build the member's closure, resume it from its checkpoint, run it; return its results as plain data."""
    member.closure = simple_energy_closure(member.nn, member.datasets["learn"], normalization=member.normalization,
                                           **closure_kwargs)
    torch.manual_seed(seed)
    if member.checkpoint_path is not None and resume and member.checkpoint_path.exists():
        member.load_checkpoint(member.checkpoint_path)
    member.run(**run_kwargs)
    return {"networks": [state_to_cpu(n.state_dict()) for n in member.nn], "history": member.history,
            "best": member.best,
            "epoch": member.epoch, "wall_time": member.wall_time, "stop_reason": member.stop_reason,
            "best_epoch_info": member.best_epoch_info, "resumed_from": member.resumed_from}


def _train_in_worker(member_class, state, closure_kwargs, seed, resume, run_kwargs):
    """The worker side of a parallel committee fit: rebuild the member from plain attributes and train it."""
    member = member_class.__new__(member_class)
    member.__dict__.update(state)
    return _train(member, closure_kwargs, seed, resume, run_kwargs)


def _apply(member, result):
    for net, state in zip(member.nn, result["networks"], strict=True):
        net.load_state_dict(state)
    for key in ("history", "best", "epoch", "wall_time", "stop_reason", "best_epoch_info", "resumed_from"):
        setattr(member, key, result[key])


def _member_run_kwargs(run_kwargs, k):
    kw = dict(run_kwargs)
    kw.update(save=False, save_fn=None, summary=False, log_file=member_path(kw.get("log_file"), k))
    return kw


def run_committee(wf, run_kwargs):
    """Fit the K members of a prepared committee workflow (see the module docstring); returns ``wf.members``.

    ``run_kwargs`` are the arguments of ``FitWorkflow.run``; ``save``/``save_fn`` save the committee,
    ``summary`` prints :func:`committee_summary`, ``log_file`` is one file per member, the rest applies to
    every member.  Returns the members' histories (lists of per-epoch records).
    """
    opts = wf.committee
    k_members = opts["members"]
    members = [_member(wf, k, opts) for k in range(k_members)]
    n_proc = _n_processes(opts["processes"], k_members)
    if wf.device.type != "cpu":
        n_proc = 1   # members on a GPU are fitted one after another in this process
    resume = getattr(wf, "resume", True)
    wf.log.info("committee %s: %d members in %d process(es)", wf.tag, k_members, n_proc)
    if n_proc == 1:
        for k, m in enumerate(members):
            _train(m, _closure_kwargs(wf, k, opts), opts["seeds"][k], resume, _member_run_kwargs(run_kwargs, k))
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=n_proc, mp_context=ctx) as pool:
            futures = []
            for k, m in enumerate(members):
                state = {key: v for key, v in m.__dict__.items() if key not in ("cells_nw", "closure", "_losses")}
                kw = _member_run_kwargs(run_kwargs, k)
                kw["progress"] = False
                if kw.get("torch_threads", "auto") == "auto":
                    kw["torch_threads"] = 1   # the member processes share the cores
                futures.append(pool.submit(_train_in_worker, type(m), state, _closure_kwargs(wf, k, opts),
                                           opts["seeds"][k], resume, kw))
            for k, (m, f) in enumerate(zip(members, futures, strict=True)):
                try:
                    _apply(m, f.result())
                except concurrent.futures.process.BrokenProcessPool as error:
                    raise RuntimeError(
                        f"committee: the worker process of member {k} died ({error}). Worker processes start "
                        f"with the 'spawn' method, which imports the main script again: a script that fits a "
                        f"committee in parallel must run it under `if __name__ == \"__main__\":`; or set "
                        f"committee processes to 1") from None
    wf.members = members
    wf.nn = members[0].nn
    wf.epoch = max(m.epoch for m in members)
    wf.wall_time = sum(m.wall_time for m in members)
    wf.history = members[0].history
    wf.stop_reason = "committee"
    save, save_fn = run_kwargs.get("save"), run_kwargs.get("save_fn")
    if save is None:
        save = save_fn is not None
    if save:
        wf.save_potentials(("{tag}.pt" if save_fn is None else str(save_fn)).format(tag="learn"))
    text = wf.summary()
    if run_kwargs.get("summary", True):
        print(text, flush=True)
    return [m.history for m in members]


def committee_predict(wf, name="learn", per_structure=False):
    """``FitWorkflow.predict`` of a committee: the mean of the members' predictions, and their spread.

    Returns the dict of ``predict`` (the committee mean) plus ``energy_std`` ([S], eV/atom) and, with
    forces, ``forces_std`` (per force component, or per structure ``[n_s, 3]`` arrays, eV/Å): the population
    standard deviations over the members.
    """
    preds = [m.predict(name, per_structure=per_structure) for m in wf.members]
    out = {"energy_ref": preds[0]["energy_ref"]}
    e = np.stack([p["energy_pred"] for p in preds])
    out["energy_pred"], out["energy_std"] = e.mean(axis=0), e.std(axis=0)
    if "forces_ref" in preds[0]:
        out["forces_ref"] = preds[0]["forces_ref"]
        if per_structure:
            f = [np.stack([p["forces_pred"][s] for p in preds]) for s in range(len(out["energy_ref"]))]
            out["forces_pred"] = [x.mean(axis=0) for x in f]
            out["forces_std"] = [x.std(axis=0) for x in f]
        else:
            f = np.stack([p["forces_pred"] for p in preds])
            out["forces_pred"], out["forces_std"] = f.mean(axis=0), f.std(axis=0)
    return out


def committee_potentials(wf):
    """One :class:`~miniff.ml.CommitteePotential` per species (sorted) from the fitted members."""
    from miniff.ml.committee import CommitteePotential

    per_member = [m.build_potentials() for m in wf.members]
    wf.nn_potentials = [CommitteePotential([pots[s] for pots in per_member]) for s in range(len(per_member[0]))]
    return wf.nn_potentials


def committee_summary(wf):
    """The end-of-fit text of a committee: one line per member (epochs, why it stopped, validation RMSEs), then
    the table of the committee mean (``summary_table``, as for a single fit)."""
    from miniff.fit.summary import STOP_REASONS, error_table, format_table

    lines = [f"fit {wf.tag}: committee of {len(wf.members)} members"
             f"{' (bootstrap resampling)' if wf.committee['bootstrap'] else ''}; {wf.wall_time:.1f} s in total"]
    for k, m in enumerate(wf.members):
        last = m.history[-1] if m.history else {}
        errors = ", ".join(f"{what} {1000 * last[key]:.2f} {unit}"
                           for key, what, unit in (("energy_rmse_valid", "validation E", "meV/atom"),
                                                   ("force_rmse_valid", "F", "meV/Å")) if key in last)
        why = STOP_REASONS.get(m.stop_reason, m.stop_reason)
        lines.append(f"  member {k} (seed {wf.committee['seeds'][k]}): {m.epoch} epochs, stopped: {m.stop_reason} "
                     f"({why})" + (f"; last epoch {errors}" if errors else ""))
    rows = []
    for name, label in (("learn", "training"), ("test", "validation")):
        if name in wf.datasets:
            p = committee_predict(wf, name, per_structure=True)
            p["groups"] = None if wf.cell_groups is None else wf.cell_groups[name]
            rows.append((label, p))
    wf.summary_table = error_table(rows)
    lines.append("committee mean:")
    lines.extend(format_table(wf.summary_table))
    return "\n".join(lines)
