"""``ActiveLearningWorkflow``: explore with a committee, label what it does not know, refit; repeat.

Round 0 fits a committee (:mod:`miniff.fit.committee_fit`) to the initial structures.  Every later round

1. runs ASE dynamics with the committee from the starting structures (Langevin MD at every temperature, or FIRE
   relaxations; :func:`~miniff.fit.active_steps.explore`), sampling a frame every ``sample_every`` steps;
2. keeps the frames whose largest per-atom force spread ``forces_std`` exceeds ``threshold`` (eV/Å) or that
   have extrapolating atoms, drops near-duplicates and chooses at most ``max_frames`` of them, by default
   uncertain and far apart in descriptor space (:func:`~miniff.fit.active_steps.select_frames`);
3. labels them with the reference calculator (energies and forces) and adds them to the training set;
4. refits the committee on the grown set, every member starting from its networks of the previous round
   (warm start; the descriptors stay those of round 0, the normalisation is recomputed from the grown set);
5. measures the committee mean's errors and its spread on the held-out structures;
6. writes the checkpoint (labelled frames, members' networks, potentials, the per-round log) atomically.

The loop ends after ``n_rounds`` rounds, or earlier when no sampled frame exceeds the threshold
(``stop_reason = "converged"``).  A run that was killed resumes from its last checkpoint: the rounds done are
not repeated and the remaining ones give the same frames and networks as an uninterrupted run (dynamics,
committee seeds and splits are seeded per round).
"""

import json
import time
from pathlib import Path

import numpy as np

from miniff._atomic import atomic_write_text
from miniff.fit import active_steps as steps
from miniff.fit.base import Workflow
from miniff.fit.checkpoint import atomic_torch_save, load_checkpoint
from miniff.fit.committee_fit import committee_options
from miniff.fit.workflow import FitWorkflow

__all__ = ["ActiveLearningWorkflow", "ACTIVE_CHECKPOINT_FORMAT"]

ACTIVE_CHECKPOINT_FORMAT = "miniff-active-learning-1"

_STOPS = {"n_rounds": "the number of rounds was reached",
          "converged": "no sampled frame exceeded the threshold",
          "after_round": "after_round asked to stop"}


class ActiveLearningWorkflow(Workflow):
    """Active learning with a committee of NN potentials; see the module docstring.

    Parameters are those of :class:`~miniff.fit.base.Workflow`.  After :meth:`run`: ``potentials`` (the last
    committee, one :class:`~miniff.ml.CommitteePotential` per species), ``labelled`` (the labelled frames,
    ``ase.Atoms``), ``history`` (one record per round, see :meth:`run`), ``stop_reason``, ``fit`` (the last
    round's :class:`~miniff.fit.workflow.FitWorkflow`).
    """

    default_tag = "active"

    def prepare(self, fn_cells, reference, starts=None, held_out=None, committee=5, fit_kwargs=None,
                fit_run_kwargs=None, dynamics="md", temperatures=(300.0,), n_steps=100, timestep=2.0,
                sample_every=5, friction=0.01, fmax=0.05, threshold=0.1, max_spread=None,
                select_extrapolating=True, max_frames=10, dedup_tolerance=0.01, selection="balanced", checkpoint=None,
                resume=True):
        """Load the structures, check the settings, resume from a checkpoint when one exists.

        Parameters
        ----------
        fn_cells : str, list, Cell or ase.Atoms
            The initial training structures with reference energies and forces (anything
            :meth:`FitWorkflow.prepare <miniff.fit.workflow.FitWorkflow.prepare>` accepts).
        reference : ASE calculator, "emt" or str
            Labels new frames: any ASE calculator object (EMT, a DFT code's calculator, a
            :class:`~miniff.calculator.MiniffCalculator` of a classical potential), ``"emt"`` or the path of a
            miniff potentials file (job files).
        starts : str, list, Cell or ase.Atoms, optional
            Starting structures of the dynamics (default: the training structures).
        held_out : str, list, Cell or ase.Atoms, optional
            Structures with reference energies and forces, never trained on, on which every round reports the
            committee's errors and spread.
        committee : int or dict
            The committee (``members``, ``seeds``, ``bootstrap``, ``processes``; see
            :func:`~miniff.fit.committee_fit.committee_options`); default 5 members (the spread of K networks
            is an estimate with a relative error of about 1 / sqrt(2 (K - 1)): 50 % at K = 3, 35 % at K = 5,
            and the frames chosen follow it).
        fit_kwargs : dict, optional
            Arguments of ``FitWorkflow.prepare`` for every round's fit (``descriptors``, ``cutoff``,
            ``nn_kwargs``, ``closure_kwargs``, ``test_set``...); ``forces`` defaults to True.
        fit_run_kwargs : dict, optional
            Arguments of ``FitWorkflow.run`` (``n_epochs``...); the fits print no summary.
        dynamics : {"md", "relax"}
            Langevin molecular dynamics or FIRE relaxations.
        temperatures : list of float
            K (MD): every start runs at every temperature.
        n_steps, timestep, sample_every, friction, fmax
            Steps per trajectory, time step (fs), steps between sampled frames, Langevin friction (1/fs),
            relaxation force tolerance (eV/Å).
        threshold : float
            eV/Å: frames whose largest per-atom committee force spread exceeds it are labelled.
        max_spread : float or None
            A trajectory stops at a frame whose spread exceeds this (eV/Å; default 10 x ``threshold``).
        select_extrapolating : bool
            Label frames with atoms outside the descriptors' training range too.
        max_frames : int
            Frames labelled per round at most.
        dedup_tolerance : float
            Near-duplicate frames (mean descriptors per species within this fraction of the training range)
            are labelled once.
        selection : {"diverse", "spread", "balanced", "coverage"}
            How the ``max_frames`` are chosen among the candidates (:func:`~miniff.fit.active_steps.select_frames`):
            ``"balanced"`` (default) takes the most uncertain remaining frame of every trajectory (one per
            starting structure and temperature) in turn, the most uncertain trajectories first, so every
            condition explored gets labels (one trajectory: as ``"diverse"``); ``"diverse"`` weighs each frame's
            spread by its distance in descriptor space to the frames already chosen, so one round's batch is not
            a run of neighbouring frames of the hottest trajectory; ``"spread"``: largest spread first;
            ``"coverage"``: the frames that leave the least spread far from every frame chosen (typical uncertain
            frames before outliers).  The learning-efficiency benchmark (``benchmarks/README.md``) compares them.
        checkpoint : str or None
            Checkpoint file written after every round; with ``resume`` an existing one is continued.
        resume : bool
        """
        self.cells = self._structures(fn_cells, "fn_cells")
        self.reference = steps.resolve_reference(reference)
        start_cells = self.cells if starts is None else self._structures(starts, "starts")
        from miniff.io import cell_to_atoms

        self.starts = [cell_to_atoms(c) for c in start_cells]
        for a in self.starts:
            a.calc = None
        self.held_out = None if held_out is None else self._structures(held_out, "held_out")
        self.committee = committee_options(committee, self.seed)
        self.fit_kwargs = dict(fit_kwargs or {})
        self.fit_kwargs.setdefault("forces", True)
        bad = {"fn_cells", "committee", "checkpoint"} & set(self.fit_kwargs)
        if bad:
            raise ValueError(f"fit_kwargs: {sorted(bad)} are set by the active-learning workflow")
        self.fit_run_kwargs = dict(fit_run_kwargs or {})
        if dynamics not in ("md", "relax"):
            raise ValueError(f"dynamics must be 'md' or 'relax', got {dynamics!r}")
        temperatures = [temperatures] if isinstance(temperatures, (int, float)) else list(temperatures)
        if dynamics == "md" and (not temperatures or not all(isinstance(t, (int, float)) and t > 0
                                                            for t in temperatures)):
            raise ValueError(f"temperatures must be positive numbers (K), got {temperatures!r}")
        for name, value in (("n_steps", n_steps), ("sample_every", sample_every), ("max_frames", max_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("threshold", threshold), ("timestep", timestep), ("friction", friction),
                            ("fmax", fmax), ("dedup_tolerance", dedup_tolerance)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        self.explore_kwargs = {"dynamics": dynamics, "temperatures": [float(t) for t in temperatures],
                               "n_steps": n_steps, "timestep": float(timestep), "sample_every": sample_every,
                               "friction": float(friction), "fmax": float(fmax),
                               "max_spread": 10 * float(threshold) if max_spread is None else float(max_spread)}
        self.threshold, self.select_extrapolating = float(threshold), bool(select_extrapolating)
        self.max_frames, self.dedup_tolerance = max_frames, float(dedup_tolerance)
        if selection not in steps.SELECTIONS:
            raise ValueError(f"selection must be one of {steps.SELECTIONS}, got {selection!r}")
        self.selection = selection
        self.checkpoint_path = None if checkpoint is None else Path(checkpoint)
        self.round, self.history, self.labelled, self.potentials, self.fit = -1, [], [], None, None
        self.stop_reason, self._warm, self._descriptors, self.resumed_from = None, None, None, None
        if self.checkpoint_path is not None and resume and self.checkpoint_path.exists():
            self.load_checkpoint(self.checkpoint_path)
        return self

    def _structures(self, source, name):
        try:
            return Workflow(log=self.log).load_cells(source, warn_missing_targets=False)
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise type(error)(f"{name}: {error}") from None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self):
        """Plain data: round, labelled frames, members' networks, potentials, history, stop reason."""
        from miniff.ml.serialize import to_plain

        return {"format": ACTIVE_CHECKPOINT_FORMAT, "round": self.round, "n_cells": len(self.cells),
                "labelled": [steps.frame_to_data(a) for a in self.labelled], "members": self._warm,
                "potentials": to_plain([p.state_dict() for p in self.potentials]),
                "history": [dict(r) for r in self.history], "stop_reason": self.stop_reason}

    def load_checkpoint(self, path):
        """Continue from a checkpoint of :meth:`checkpoint_state` (written for the same initial structures)."""
        from miniff.ml.serialize import from_plain
        from miniff.potentials.registry import potential_from_state_dict

        data = load_checkpoint(path, expected_format=ACTIVE_CHECKPOINT_FORMAT)
        if data["n_cells"] != len(self.cells):
            raise ValueError(f"checkpoint: {str(path)!r} was written for {data['n_cells']} initial structures, not "
                             f"{len(self.cells)}; delete it or set resume: false")
        self.round, self.history, self.stop_reason = int(data["round"]), list(data["history"]), data["stop_reason"]
        self.labelled = [steps.frame_from_data(f) for f in data["labelled"]]
        self._warm = data["members"]
        self.potentials = [potential_from_state_dict(s) for s in from_plain(data["potentials"], "potentials")]
        self._descriptors = {p.tag: list(p.descriptors) for p in self.potentials}
        self.resumed_from = self.round
        self.log.info("active learning resumed from %s after round %d", path, self.round)

    # ------------------------------------------------------------------ rounds
    def _fit_round(self, round_):
        """Fit the committee to the initial structures and the labelled frames (warm start after round 0)."""
        kw = dict(self.fit_kwargs)
        if self._descriptors is not None:
            kw["descriptors"] = self._descriptors
        kw["committee"] = dict(self.committee, warm_start=self._warm)
        fit = FitWorkflow(dtype=self.dtype, log=self.log, seed=self.seed, tag=f"{self.tag}-round{round_}",
                          n_threads=self.n_threads)
        fit.prepare(list(self.cells) + list(self.labelled), **kw)
        fit.run(**dict(self.fit_run_kwargs, summary=False, save=False, progress=False))
        self.fit = fit
        self.potentials = fit.build_potentials()
        self._warm = [[{k: v.detach().clone() for k, v in n.state_dict().items()} for n in m.nn]
                      for m in fit.members]
        self._descriptors = fit.descriptors

    def _held_out(self, rec):
        if self.held_out:
            rec.update({f"held_out_{k}": v for k, v in steps.held_out_errors(self.potentials, self.held_out,
                                                                                self.n_threads).items()})

    def run(self, n_rounds=5, save_fn=None, log_file=None, summary=True, after_round=None):
        """Round 0 (the first fit) and up to ``n_rounds`` rounds of explore -> select -> label -> refit.

        Parameters
        ----------
        n_rounds : int
            Rounds after the first fit (a resumed run does the remaining ones).
        save_fn : str or None
            Save the committee potentials after every round (plain data, one file).
        log_file : str or None
            JSON Lines, one record per round (rewritten atomically after every round).
        summary : bool
            Print :meth:`summary` at the end.
        after_round : callable or None
            ``after_round(workflow)`` after every round; False stops the loop.

        Returns
        -------
        list of dict
            ``self.history``: per round ``round``, ``n_train`` (structures fitted), ``n_sampled`` (frames of
            the dynamics), ``n_candidates`` (above the threshold or extrapolating), ``n_labelled``,
            ``n_stopped`` (trajectories stopped early), ``spread_max`` / ``spread_median`` (eV/Å, over the
            sampled frames of their largest per-atom spread), with held-out structures ``held_out_energy_rmse``
            (eV/atom), ``held_out_force_rmse``, ``held_out_forces_std_mean``, ``held_out_forces_std_max``
            (eV/Å) and ``held_out_spearman``, and the seconds spent fitting, exploring and labelling.
        """
        if not hasattr(self, "committee"):
            raise RuntimeError("run: call prepare() first")
        if isinstance(n_rounds, bool) or not isinstance(n_rounds, int) or n_rounds < 0:
            raise ValueError(f"n_rounds must be a non-negative integer, got {n_rounds!r}")
        if self.round < 0:
            t0 = time.perf_counter()
            self._fit_round(0)
            rec = {"round": 0, "n_train": len(self.cells), "n_labelled": 0, "fit_time": time.perf_counter() - t0}
            self._held_out(rec)
            self._end_round(0, rec, save_fn, log_file)
        if self.stop_reason != "converged":
            self.stop_reason = "n_rounds"
        while self.round < n_rounds and self.stop_reason != "converged":
            if self._one_round(self.round + 1, save_fn, log_file) is False:
                break
            if after_round is not None and after_round(self) is False:
                self.stop_reason = "after_round"
                break
        text = self.summary()
        if summary:
            print(text, flush=True)
        return self.history

    def _one_round(self, r, save_fn, log_file):
        from miniff.ml.committee import committees_of

        rec = {"round": r}
        t0 = time.perf_counter()
        frames, stopped = steps.explore(self.starts, self.potentials, seed=(self.seed or 0) + 1000 * r,
                                        n_threads=self.n_threads, **self.explore_kwargs)
        spreads = np.array([f.max_std for f in frames]) if frames else np.zeros(1)
        selected, n_cand = steps.select_frames(frames, committees_of(self.potentials), self.threshold,
                                               self.select_extrapolating, self.max_frames, self.dedup_tolerance,
                                               self.n_threads, selection=self.selection)
        rec.update(n_sampled=len(frames), n_candidates=n_cand, n_stopped=stopped, spread_max=float(spreads.max()),
                   spread_median=float(np.median(spreads)), explore_time=time.perf_counter() - t0)
        self.log.info("active %s round %d: %d frames sampled, %d above %.3g eV/Å, %d to label", self.tag, r,
                      len(frames), n_cand, self.threshold, len(selected))
        if not selected:
            rec.update(n_train=len(self.cells) + len(self.labelled), n_labelled=0)
            self._held_out(rec)   # the same committee as the round before: recorded for a complete log
            self.stop_reason = "converged"
            self._end_round(r, rec, save_fn, log_file)
            return False
        t0 = time.perf_counter()
        self.labelled.extend(steps.label_frames([f.atoms for f in selected], self.reference))
        rec["label_time"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._fit_round(r)
        rec.update(n_train=len(self.cells) + len(self.labelled), n_labelled=len(selected),
                   fit_time=time.perf_counter() - t0)
        self._held_out(rec)
        self._end_round(r, rec, save_fn, log_file)
        return True

    def _end_round(self, r, rec, save_fn, log_file):
        self.round = r
        self.history = [h for h in self.history if h["round"] < r] + [rec]
        if save_fn is not None:
            from miniff.ml.serialize import save_potentials

            save_potentials(self.potentials, save_fn)
        if log_file is not None:
            atomic_write_text(log_file, "".join(json.dumps(h) + "\n" for h in self.history))
        if self.checkpoint_path is not None:
            atomic_torch_save(self.checkpoint_state(), self.checkpoint_path)

    def summary(self):
        """One line per round: structures fitted, frames sampled / above the threshold / labelled, largest
        spread, held-out errors; then why the loop stopped."""
        lines = [f"active learning {self.tag}: {len(self.history) - 1} rounds after the first fit, "
                 f"{len(self.labelled)} frames labelled; stopped: {self.stop_reason} "
                 f"({_STOPS.get(self.stop_reason, self.stop_reason)})",
                 f"{'round':>5s} {'fitted':>6s} {'sampled':>7s} {'above':>5s} {'labelled':>8s} "
                 f"{'max spread':>12s} {'held-out E':>15s} {'held-out F':>13s}"]
        for h in self.history:
            spread = f"{1000 * h['spread_max']:7.1f} meV/Å" if "spread_max" in h else ""
            e = f"{1000 * h['held_out_energy_rmse']:6.2f} meV/atom" if "held_out_energy_rmse" in h else ""
            f = f"{1000 * h['held_out_force_rmse']:6.1f} meV/Å" if "held_out_force_rmse" in h else ""
            lines.append(f"{h['round']:5d} {h.get('n_train', 0):6d} {h.get('n_sampled', 0):7d} "
                         f"{h.get('n_candidates', 0):5d} {h['n_labelled']:8d} {spread:>12s} {e:>15s} {f:>13s}")
        return "\n".join(lines)
