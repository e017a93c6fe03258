"""Extrapolation counts: descriptors outside the range a potential was trained on (the one implementation).

A machine-learned potential that knows the range ``[F, 2]`` (min, max) of its descriptors counts, in every
evaluation, the descriptors of each atom outside it, keeps the counts ``[N]`` for the wrapper it evaluated
(:meth:`ExtrapolationCounting.last_extrapolation`, which the ASE calculator reports) and, following its
``on_extrapolation`` policy, says nothing, warns (:class:`ExtrapolationWarning`) or raises
(:class:`ExtrapolationError`).  miniff's ``NNPotential`` and ``CommitteePotential`` and the n2p2 potentials of
``miniff.io.read_n2p2`` (the ranges of ``scaling.data``) share it.
"""

import warnings

import numpy as np

__all__ = ["ExtrapolationError", "ExtrapolationWarning", "ON_EXTRAPOLATION", "ExtrapolationCounting",
           "check_descriptor_range", "check_on_extrapolation", "extrapolation_counts", "act_on_extrapolation",
           "report_extrapolation"]

#: What an evaluation does when atoms have descriptors outside the training range.
ON_EXTRAPOLATION = ("ignore", "warn", "raise")


class ExtrapolationError(ValueError):
    """Atoms have descriptors outside the training range of a potential (``on_extrapolation="raise"``)."""


class ExtrapolationWarning(RuntimeWarning):
    """Atoms have descriptors outside the training range of a potential (``on_extrapolation="warn"``)."""


def check_descriptor_range(descriptor_range, n_descriptors, name="descriptor_range"):
    """``[F, 2]`` float64 (min, max per descriptor) or None; ValueError naming ``name`` otherwise."""
    if descriptor_range is None:
        return None
    r = np.array(descriptor_range, dtype=float)
    if r.shape != (n_descriptors, 2):
        raise ValueError(f"{name} must have shape ({n_descriptors}, 2) (min, max of every descriptor), got "
                         f"{r.shape}")
    if not np.isfinite(r).all() or (r[:, 0] > r[:, 1]).any():
        raise ValueError(f"{name} must hold finite (min, max) pairs with min <= max")
    return r


def check_on_extrapolation(value):
    """``value`` if it is one of :data:`ON_EXTRAPOLATION`, else ValueError naming ``on_extrapolation``."""
    if value not in ON_EXTRAPOLATION:
        raise ValueError(f"on_extrapolation must be one of {ON_EXTRAPOLATION}, got {value!r}")
    return value


def extrapolation_counts(descriptor_range, values_nf, sel):
    """``[N]`` int: how many descriptors of every selected atom lie outside ``descriptor_range`` ``[F, 2]``
    (``values_nf`` ``[N, F]``, ``sel`` ``[N]`` bool)."""
    lo, hi = descriptor_range[:, 0], descriptor_range[:, 1]
    count_n = ((values_nf < lo) | (values_nf > hi)).sum(axis=1)
    return np.where(sel, count_n, 0).astype(np.int64)


def report_extrapolation(owner, nw, count_n, policy):
    """Keep the counts ``[N]`` on ``owner`` for ``nw`` and warn or raise following ``policy``."""
    owner._last_extrapolation = (nw, count_n)
    n_bad = int((count_n > 0).sum())
    if n_bad and policy != "ignore":
        atoms = np.flatnonzero(count_n)[:5].tolist()
        msg = (f"{owner!r}: {n_bad} atom(s) (first: {atoms}) have descriptors outside the training range "
               f"({int(count_n.sum())} value(s)); the energies there are extrapolated")
        if policy == "raise":
            raise ExtrapolationError(msg)
        warnings.warn(msg, ExtrapolationWarning, stacklevel=5)
    return count_n


def act_on_extrapolation(owner, nw, descriptor_range, policy, values_nf, sel):
    """Count the extrapolating descriptors, keep the counts on ``owner`` (``last_extrapolation``) and warn or
    raise following ``policy``. Returns the counts ``[N]`` (None without a range)."""
    if descriptor_range is None:
        owner._last_extrapolation = None
        return None
    return report_extrapolation(owner, nw, extrapolation_counts(descriptor_range, values_nf, sel), policy)


class ExtrapolationCounting:
    """Gives a potential :meth:`last_extrapolation` (set ``_last_extrapolation`` through the functions above)."""

    _last_extrapolation = None
    _on_extrapolation = "ignore"

    @property
    def on_extrapolation(self):
        """``"ignore"``, ``"warn"`` or ``"raise"``: what an evaluation outside the known descriptor range does."""
        return self._on_extrapolation

    @on_extrapolation.setter
    def on_extrapolation(self, value):
        self._on_extrapolation = check_on_extrapolation(value)

    def last_extrapolation(self, nw):
        """``[N]`` int: descriptors outside the training range per atom at the last evaluation of ``nw``
        (0 for other species), or None (no range, or ``nw`` was not the last wrapper evaluated)."""
        last = self._last_extrapolation
        return last[1] if last is not None and last[0] is nw else None
