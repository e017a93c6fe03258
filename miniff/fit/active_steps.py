"""The steps of an active-learning round (:class:`~miniff.fit.active.ActiveLearningWorkflow`).

- :func:`resolve_reference`: the labelling calculator (an ASE calculator, ``"emt"`` or a miniff potentials file);
- :func:`explore`: ASE dynamics (Langevin MD at given temperatures, or FIRE relaxations) with the committee from
  starting structures, recording every ``sample_every`` steps the largest per-atom ``forces_std`` and the
  number of extrapolating atoms of the frame;
- :func:`select_frames`: the frames above the threshold (or extrapolating), without near-duplicates (mean
  descriptors per species within ``dedup_tolerance`` of the training range's width), by default a batch that is
  both uncertain and spread out in descriptor space (``SELECTIONS``: the rules it knows, ``"coverage"`` among
  them);
- :func:`label_frames`: reference energies and forces;
- :func:`held_out_errors`: the committee mean's errors and spread on held-out structures;
- :func:`frame_to_data` / :func:`frame_from_data`: labelled frames as plain data for checkpoints.

Units: eV, Å, eV/Å, fs (time step), K.
"""

import numpy as np
import torch

__all__ = ["resolve_reference", "explore", "select_frames", "label_frames", "held_out_errors", "frame_to_data",
           "frame_from_data", "Candidate", "SELECTIONS"]


class Candidate:
    """A frame of the exploration: ``atoms`` (a copy), ``max_std`` (eV/Å), ``n_extrapolating``, ``source`` (a
    description) and ``trajectory`` (which trajectory sampled it, any hashable; None: one common group)."""

    __slots__ = ("atoms", "max_std", "n_extrapolating", "source", "trajectory")

    def __init__(self, atoms, max_std, n_extrapolating, source, trajectory=None):
        self.atoms, self.max_std, self.n_extrapolating, self.source = atoms, max_std, n_extrapolating, source
        self.trajectory = trajectory


def resolve_reference(reference):
    """An ASE calculator from ``reference``: a calculator object (used as it is), ``"emt"`` (ASE's EMT) or the
    path of a miniff potentials file (a :class:`~miniff.calculator.MiniffCalculator` of its potentials)."""
    from pathlib import Path

    if hasattr(reference, "get_potential_energy") or hasattr(reference, "calculate"):
        return reference
    if isinstance(reference, str) and reference.lower() == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if isinstance(reference, (str, Path)):
        if not Path(reference).is_file():
            raise FileNotFoundError(f"reference: no such potentials file {str(reference)!r} (or use 'emt' or "
                                    f"an ASE calculator object)")
        from miniff.calculator import MiniffCalculator

        return MiniffCalculator(str(reference))
    raise TypeError(f"reference must be an ASE calculator, 'emt' or a miniff potentials file, got "
                    f"{type(reference).__name__}")


def _frame_spread(atoms):
    atoms.get_forces()
    results = atoms.calc.results
    return float(np.max(results["forces_std"])), int(results.get("n_extrapolating_atoms", 0))


def explore(starts, potentials, dynamics="md", temperatures=(300.0,), n_steps=100, timestep=2.0, sample_every=5,
            friction=0.01, fmax=0.05, max_spread=None, seed=0, n_threads=None):
    """Run the committee's dynamics from every start (and temperature); return the sampled frames.

    Parameters
    ----------
    starts : list of ase.Atoms
    potentials : list of LocalPotential
        With at least one :class:`~miniff.ml.CommitteePotential`.
    dynamics : {"md", "relax"}
        Langevin molecular dynamics (velocities from a Maxwell-Boltzmann distribution at the temperature) or a
        FIRE relaxation of the positions.
    temperatures : sequence of float
        K; MD runs every start at every temperature.
    n_steps : int
        Steps per trajectory (MD) or at most (relaxation).
    timestep : float
        fs (MD).
    sample_every : int
        Steps between sampled frames.
    friction : float
        Langevin friction, 1/fs.
    fmax : float
        Relaxations stop when every force is below it (eV/Å).
    max_spread : float or None
        A trajectory stops after a frame whose largest per-atom spread exceeds it (eV/Å): beyond, the
        committee's dynamics is not physical.
    seed : int
        Seeds the velocities and the Langevin noise (trajectory ``t`` uses ``seed + t``).
    n_threads : int or None

    Returns
    -------
    frames : list of Candidate
        Every sampled frame (the start included).
    stopped : int
        Trajectories stopped early (spread above ``max_spread``, or a failed evaluation such as atoms that
        collapsed onto each other).
    """
    from ase import units
    from ase.md import velocitydistribution
    from ase.md.langevin import Langevin
    from ase.optimize import FIRE

    from miniff.calculator import MiniffCalculator

    if dynamics not in ("md", "relax"):
        raise ValueError(f"dynamics must be 'md' or 'relax', got {dynamics!r}")
    runs = [(s, t) for s in range(len(starts)) for t in (temperatures if dynamics == "md" else [None])]
    frames, stopped = [], 0
    for traj, (s, temperature) in enumerate(runs):
        atoms = starts[s].copy()
        atoms.calc = MiniffCalculator(potentials, n_threads=n_threads)
        source = f"start {s}" + ("" if temperature is None else f", {temperature:g} K")
        if dynamics == "md":
            rng = np.random.default_rng(seed + traj)
            thermalize = getattr(velocitydistribution, "thermalize_momenta", None)   # ASE >= 3.29
            if thermalize is None:
                velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
            else:
                thermalize(atoms, temperature, rng=rng)
            dyn = Langevin(atoms, timestep * units.fs, temperature_K=temperature, friction=friction / units.fs,
                           fixcm=False, rng=rng, logfile=None)
        else:
            dyn = FIRE(atoms, logfile=None)
        step = 0
        while True:
            try:
                max_std, n_extra = _frame_spread(atoms)
            except ValueError:   # e.g. coincident atoms: the committee's dynamics broke down
                stopped += 1
                break
            frames.append(Candidate(atoms.copy(), max_std, n_extra, f"{source}, step {step}", traj))
            if max_spread is not None and max_std > max_spread:
                stopped += 1
                break
            if step >= n_steps:
                break
            n = min(sample_every, n_steps - step)
            try:
                converged = dyn.run(fmax=fmax, steps=n) if dynamics == "relax" else dyn.run(n)
            except ValueError:
                stopped += 1
                break
            step += n
            if dynamics == "relax" and converged:
                max_std, n_extra = _frame_spread(atoms)
                frames.append(Candidate(atoms.copy(), max_std, n_extra, f"{source}, step {step} (relaxed)", traj))
                break
    for f in frames:
        f.atoms.calc = None
    return frames, stopped


def _fingerprint(atoms, committees, n_threads):
    """Mean descriptors per species (committee order), in units of the training range width; zeros for a species
    without atoms in the frame."""
    from miniff.io import read_cells
    from miniff.kernel import NeighborWrapper
    from miniff.potentials.descriptors import eval_descriptors

    cell = read_cells([atoms.copy()], warn_missing_targets=False)[0]   # a copy: no calculator, no targets
    cutoff = max(c.cutoff for c in committees)
    nw = NeighborWrapper(cell, cutoff=cutoff, pbc=tuple(bool(x) for x in atoms.pbc))
    parts = []
    for c in committees:
        values, _ = eval_descriptors(nw, list(c.descriptors), ignore_missing_species=True, n_threads=n_threads)
        try:
            sel = c.members[0].selected_atoms(nw)
        except KeyError:   # the frame has no atom of this committee's species (e.g. Pt only for the Cu one)
            sel = np.zeros(cell.size, dtype=bool)
        mean = values[sel].mean(axis=0) if sel.any() else np.zeros(values.shape[1])
        rng = c.descriptor_range
        width = np.ones(len(mean)) if rng is None else np.maximum(rng[:, 1] - rng[:, 0], 1e-12)
        parts.append(mean / width)
    return np.concatenate(parts)


SELECTIONS = ("diverse", "spread", "balanced", "coverage")


def select_frames(frames, committees, threshold, select_extrapolating=True, max_frames=10, dedup_tolerance=0.01,
                  n_threads=None, selection="balanced"):
    """The frames to label: above ``threshold`` (or extrapolating), no near-duplicates, chosen by ``selection``.

    Parameters
    ----------
    frames : list of Candidate
    committees : list of CommitteePotential
        For the frames' fingerprints: mean descriptors per species in units of the training range's width.
    threshold : float
        eV/Å: a frame is a candidate when its largest per-atom ``forces_std`` exceeds it.
    select_extrapolating : bool
        Frames with extrapolating atoms are candidates too.
    max_frames : int
        At most this many frames.
    dedup_tolerance : float
        Two frames are duplicates when their fingerprints differ by less than this in every descriptor (a
        fraction of the training range); of two duplicates only the one chosen first is labelled.
    selection : {"diverse", "spread", "balanced", "coverage"}
        ``"balanced"`` (default; see below) or ``"diverse"``: a batch both uncertain and spread out in
        descriptor space.  ``"diverse"`` takes first the frame of largest spread; each next one maximises
        ``max_std x d``, ``d`` the distance of its fingerprint to the nearest frame chosen so far (the largest
        descriptor difference, as for duplicates): a spread-weighted farthest-point choice, with no parameter
        (the product's ranking does not depend on units).  Neighbouring frames of one hot trajectory, which all
        have large spreads and teach the fit much the same, then do not fill the batch.  ``"spread"``: largest
        spread first.  ``"balanced"`` (default): in rounds over the trajectories (``Candidate.trajectory``),
        each round the best remaining frame of every trajectory, trajectories in the order of their best
        spread; candidates of a single trajectory (or without one) are chosen as by ``"diverse"``.
        ``"coverage"``: each next frame the one that lowers most ``sum_j max_std_j x d_j`` over all candidates
        ``j``, ``d_j`` the distance of ``j``'s fingerprint to the nearest frame chosen (at first the largest
        distance between candidates): a spread-weighted facility-location (k-medoids) choice, which takes a
        frame typical of many uncertain ones before a lone outlier of larger spread, where "diverse" (farthest
        point) is drawn to outliers; no parameter either; memory grows as the square of the number of
        candidates.  The learning-efficiency benchmark (``benchmarks/README.md``) measures the rules against
        random selection from the same MD frames.

    Returns
    -------
    selected : list of Candidate
    n_candidates : int
        Frames above the threshold or extrapolating (before de-duplication and the ``max_frames`` cut).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    cands = [f for f in frames if f.max_std > threshold or (select_extrapolating and f.n_extrapolating > 0)]
    cands.sort(key=lambda f: (-f.max_std, -f.n_extrapolating))
    n_candidates = len(cands)
    if selection == "balanced" and len({f.trajectory for f in cands}) < 2:
        selection = "diverse"   # one trajectory (or none known): nothing to take turns over
    if selection == "diverse":
        return _farthest_spread(cands, committees, max_frames, dedup_tolerance, n_threads), n_candidates
    if selection == "coverage":
        return _spread_coverage(cands, committees, max_frames, dedup_tolerance, n_threads), n_candidates
    if selection == "balanced":
        cands = _round_robin(cands)
    selected, prints = [], []
    for f in cands:
        if len(selected) >= max_frames:
            break
        fp = _fingerprint(f.atoms, committees, n_threads)
        if any(np.max(np.abs(p - fp)) < dedup_tolerance for p in prints):
            continue
        selected.append(f)
        prints.append(fp)
    return selected, n_candidates


def _farthest_spread(cands, committees, max_frames, dedup_tolerance, n_threads):
    """Greedy choice among ``cands`` (largest spread first) by spread x distance to the nearest frame chosen
    (see :func:`select_frames`); a frame closer than ``dedup_tolerance`` to a chosen one is never taken."""
    if not cands:
        return []
    prints = np.array([_fingerprint(f.atoms, committees, n_threads) for f in cands])   # [C, D]
    weight = np.array([max(f.max_std, 0.0) for f in cands])
    nearest = np.full(len(cands), np.inf)
    chosen = [0]
    while len(chosen) < min(max_frames, len(cands)):
        nearest = np.minimum(nearest, np.abs(prints - prints[chosen[-1]]).max(axis=1))
        available = nearest >= dedup_tolerance
        available[chosen] = False
        if not available.any():
            break
        score = np.where(available, weight * nearest, -1.0)
        chosen.append(int(np.argmax(score)))
    return [cands[k] for k in chosen]


def _spread_coverage(cands, committees, max_frames, dedup_tolerance, n_threads):
    """Greedy choice among ``cands`` that covers their spread (see :func:`select_frames`): each next frame lowers
    most ``sum_j max_std_j x d_j``, ``d_j`` the distance of candidate ``j``'s fingerprint to the nearest frame
    chosen (at first the largest distance between two candidates); memory ``[C, C]`` for ``C`` candidates."""
    if not cands:
        return []
    prints = np.array([_fingerprint(f.atoms, committees, n_threads) for f in cands])   # [C, D]
    weight = np.array([max(f.max_std, 0.0) for f in cands])
    dist = np.array([np.abs(prints - p).max(axis=1) for p in prints])   # [C, C], symmetric
    nearest = np.full(len(cands), dist.max())
    chosen, blocked = [], np.zeros(len(cands), dtype=bool)
    while len(chosen) < min(max_frames, len(cands)):
        gain = weight @ np.maximum(nearest[:, None] - dist, 0.0)   # [C]: the drop if each were chosen
        gain[blocked] = -1.0
        k = int(np.argmax(gain))
        if gain[k] < 0:
            break
        chosen.append(k)
        nearest = np.minimum(nearest, dist[:, k])
        blocked |= dist[:, k] < dedup_tolerance
        blocked[k] = True
    return [cands[k] for k in chosen]


def _round_robin(cands):
    """``cands`` (sorted, largest spread first) reordered in rounds: the k-th frame of every trajectory in round
    k, trajectories by their best frame."""
    groups = {}
    for f in cands:
        groups.setdefault(f.trajectory, []).append(f)
    order = list(groups.values())   # dicts keep insertion order: by each trajectory's best frame
    return [g[k] for k in range(max(map(len, order), default=0)) for g in order if k < len(g)]


def label_frames(frames, reference):
    """Reference energy and forces of every frame (``ase.Atoms`` copies with a ``SinglePointCalculator``)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for k, atoms in enumerate(frames):
        a = atoms.copy()
        a.calc = reference
        try:
            energy, forces = a.get_potential_energy(), a.get_forces()
        except Exception as error:
            raise RuntimeError(f"reference: labelling frame {k} failed: {error}") from error
        a.calc = SinglePointCalculator(a, energy=float(energy), free_energy=float(energy),
                                       forces=np.array(forces, dtype=float))
        out.append(a)
    return out


def held_out_errors(potentials, cells, n_threads=None):
    """The committee mean's errors on held-out cells (with reference energies and forces) and its spread there.

    Returns
    -------
    dict
        ``energy_rmse`` (eV/atom), ``force_rmse`` (eV/Å, components), ``forces_std_mean`` and ``forces_std_max``
        (eV/Å, per atom, as reported: calibrated), ``spearman`` (per-atom spread vs error; NaN when undefined).
    """
    from miniff.kernel import NeighborWrapper
    from miniff.ml.calibration import calibrate_committee

    cutoff = max(p.cutoff for p in potentials)
    de = []
    for c in cells:
        if c.meta.get("total-energy") is None:
            continue
        nw = NeighborWrapper(c, cutoff=cutoff, pbc=tuple(bool(x) for x in c.meta.get("pbc", (True,) * 3)))
        energy = nw.total(potentials, n_threads=n_threads, ignore_missing_species=True)
        de.append((energy - float(c.meta["total-energy"])) / c.size)
    cal = calibrate_committee(potentials, cells, apply=False, n_threads=n_threads)
    factor = min(c.calibration for c in potentials if hasattr(c, "calibration"))
    return {"energy_rmse": float(np.sqrt(np.mean(np.square(de)))) if de else float("nan"),
            "force_rmse": float(np.sqrt(np.mean(cal.force_error ** 2))),
            "forces_std_mean": float(factor * cal.forces_std.mean()),
            "forces_std_max": float(factor * cal.forces_std.max()), "spearman": cal.spearman}


def frame_to_data(atoms):
    """A labelled frame as plain data (tensors, lists, numbers) for a checkpoint."""
    data = {"numbers": torch.as_tensor(atoms.numbers, dtype=torch.int64),
            "positions": torch.as_tensor(atoms.positions, dtype=torch.float64),
            "cell": torch.as_tensor(atoms.cell.array, dtype=torch.float64), "pbc": [bool(x) for x in atoms.pbc],
            "energy": float(atoms.get_potential_energy()),
            "forces": torch.as_tensor(atoms.get_forces(), dtype=torch.float64)}
    return data


def frame_from_data(data):
    """Inverse of :func:`frame_to_data`: ``ase.Atoms`` with a ``SinglePointCalculator``."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms(numbers=data["numbers"].numpy(), positions=data["positions"].numpy(), cell=data["cell"].numpy(),
                  pbc=data["pbc"])
    atoms.calc = SinglePointCalculator(atoms, energy=data["energy"], free_energy=data["energy"],
                                       forces=data["forces"].numpy())
    return atoms
