"""How well a committee's spread predicts its error, and the factor that rescales the spread to the error.

On held-out structures with reference forces, every atom gives two numbers (eV/Å):

- ``forces_std``: the raw committee spread, ``sqrt(mean_c std_k(F_kic)^2)`` (:func:`~miniff.ml.committee_spread`
  with ``calibrated=False``);
- ``force_error``: the committee mean's error on the same scale, ``sqrt(mean_c (F_ic - F_ref_ic)^2)``.

:func:`calibrate_committee` reports the Spearman rank correlation of the two (does a larger spread mean a larger
error?) and the calibration factor ``s = sqrt(mean_i error_i^2 / std_i^2)`` (atoms with a zero spread left out): the
maximum-likelihood scale when every force component's error is Gaussian with standard deviation ``s std_i``.  It
weighs every atom alike whatever the size of its force (a factor from the ratio of mean squares would be set by
the few atoms with the largest errors).  Stored as ``CommitteePotential.calibration``
(and saved with it), the factor multiplies every spread the committee reports afterwards.
"""

from typing import NamedTuple

import numpy as np

from miniff.ml.committee import committee_spread, committees_of

__all__ = ["CommitteeCalibration", "committee_force_errors", "calibrate_committee"]


class CommitteeCalibration(NamedTuple):
    """The result of :func:`calibrate_committee`."""

    #: Spearman rank correlation of ``forces_std`` and ``force_error`` (NaN when either is constant)
    spearman: float
    #: its two-sided p-value (scipy.stats.spearmanr; NaN when either is constant)
    pvalue: float
    #: ``sqrt(mean(force_error^2 / forces_std^2))``: the maximum-likelihood scale of the spread
    factor: float
    #: per atom of every structure with reference forces, the raw spread (uncalibrated), ``[A]`` eV/Å
    forces_std: np.ndarray
    #: per atom the RMS over components of the committee mean's force error, ``[A]`` eV/Å
    force_error: np.ndarray
    #: structures used (those with reference forces)
    n_structures: int


def _cells(structures):
    from ase import Atoms

    from miniff.io import read_cells
    from miniff.kernel import Cell

    if isinstance(structures, (Cell, Atoms)):
        structures = [structures]
    out = []
    for k, s in enumerate(structures):
        if isinstance(s, Atoms):
            out.extend(read_cells([s], warn_missing_targets=False))
        elif isinstance(s, Cell):
            out.append(s)
        else:
            raise TypeError(f"structures[{k}] must be a Cell or ase.Atoms, got {type(s).__name__}")
    return out


def committee_force_errors(potentials, structures, n_threads=None):
    """Per-atom raw committee spread and force error of the committee mean on structures with reference forces.

    Parameters
    ----------
    potentials : list of LocalPotential
        The model, with at least one :class:`~miniff.ml.CommitteePotential`.
    structures : Cell, ase.Atoms or a list of them
        Held-out structures; reference forces (eV/Å) from ``meta["forces"]`` (``Cell``) or the attached
        calculator's results / arrays (``ase.Atoms``, as :func:`miniff.io.read_cells` reads them).  Structures
        without forces are skipped.
    n_threads : int or None

    Returns
    -------
    forces_std : ndarray of shape (A,), eV/Å
        Raw (uncalibrated) spread of every atom of the structures with forces.
    force_error : ndarray of shape (A,), eV/Å
        ``sqrt(mean_c (F_ic - F_ref_ic)^2)`` of the committee mean.
    n_structures : int
    """
    from miniff.kernel import NeighborWrapper
    from miniff.potentials.evaluate import potential_list

    pots, _ = potential_list(potentials)
    if not committees_of(pots):
        raise ValueError("potentials: no CommitteePotential in the list, so there is no committee spread")
    cutoff = max(p.cutoff for p in pots)
    stds, errors, n = [], [], 0
    for k, cell in enumerate(_cells(structures)):
        ref = cell.meta.get("forces")
        if ref is None:
            continue
        ref = np.asarray(ref, dtype=float)
        if ref.shape != (cell.size, 3):
            raise ValueError(f"structures[{k}]: reference forces of shape {ref.shape}, expected ({cell.size}, 3)")
        pbc = tuple(bool(x) for x in cell.meta.get("pbc", (True, True, True)))
        nw = NeighborWrapper(cell, cutoff=cutoff, pbc=pbc)
        forces = -nw.grad(pots, n_threads=n_threads, ignore_missing_species=True)
        spread = committee_spread(nw, pots, forces=True, stress=False, n_threads=n_threads, calibrated=False)
        stds.append(spread.forces_std)
        errors.append(np.sqrt(((forces - ref) ** 2).mean(axis=1)))
        n += 1
    if not n:
        raise ValueError("structures: none has reference forces")
    return np.concatenate(stds), np.concatenate(errors), n


def calibrate_committee(potentials, structures, apply=True, n_threads=None):
    """Spearman correlation of per-atom spread and error on held-out data, and the calibration factor.

    Parameters
    ----------
    potentials : list of LocalPotential
        The model, with at least one :class:`~miniff.ml.CommitteePotential`.
    structures : Cell, ase.Atoms or a list of them
        Held-out structures with reference forces (see :func:`committee_force_errors`); never the training
        data, whose errors are smaller than elsewhere.
    apply : bool
        Store the factor as ``calibration`` of every committee in ``potentials`` (then saved with them and
        applied to every spread they report).
    n_threads : int or None

    Returns
    -------
    CommitteeCalibration
    """
    from scipy.stats import spearmanr

    std, err, n = committee_force_errors(potentials, structures, n_threads=n_threads)
    positive = std > 0
    if not positive.any():
        raise ValueError("potentials: the committee members agree exactly on these structures (zero spread), so "
                         "the spread cannot be calibrated; train members from different seeds")
    factor = float(np.sqrt(np.mean((err[positive] / std[positive]) ** 2)))
    if np.ptp(std) > 0 and np.ptp(err) > 0:
        rho, p = spearmanr(std, err)
        rho, p = float(rho), float(p)
    else:
        rho = p = float("nan")
    if apply:
        for c in committees_of(potentials):
            c.calibration = factor
    return CommitteeCalibration(rho, p, factor, std, err, n)
