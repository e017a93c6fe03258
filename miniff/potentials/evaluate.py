"""The one evaluation path of potentials on a neighbour list (DEVELOPING.md, "Evaluation").

Functions of a wrapper ``nw`` (a ``NeighborWrapper`` with distances computed): ``eval_potentials`` (0.1.4's
``eval`` layouts), ``total``, ``gradient``, ``stress`` and ``evaluate`` (energy, per-atom energies, gradient
and stress in one pass). ``NeighborWrapper.eval/total/grad/stress/evaluate``, the relaxation and the ASE
calculator all call these. Everything is
computed from the per-atom energies and per-pair gradients of ``LocalPotential.compute`` (Contract 3);
the dense ``[N, N, 3]`` layout is only built when ``eval(..., "kernel_gradient")`` asks for it.

Units: eV, Å, eV/Å, eV/Å³. Stress follows ASE: Voigt order ``xx yy zz yz xz xy``, ``(1/V) dE/d strain``.
"""

import contextlib
import threading
import warnings
from typing import NamedTuple

import numpy as np

from miniff._ext import kernel_module as _k
from miniff.neighbors.displacement import position_derivative
from miniff.potentials.backends import accumulate_atoms, pair_only, plan_accumulation, run_sw_fused
from miniff.potentials.base import LocalPotential, pair_arrays, resolve_n_threads
from miniff.potentials.guards import check_coincident
from miniff.potentials.pairsearch import can_fuse, fused_pair_evaluation

__all__ = [
    "Evaluation",
    "potential_list",
    "accumulate_potential",
    "active_potentials",
    "eval_potentials",
    "total",
    "gradient",
    "stress",
    "evaluate",
    "pair_gradient_to_atoms",
    "long_range_terms",
    "virial_n",
    "stress_from",
    "numerical_energy_gradient",
]

_KERNEL_NAMES = ("kernel", "kernel_gradient", "kernel_numgrad", "kernel_cgradient")


class Evaluation(NamedTuple):
    """Results of ``NeighborWrapper.evaluate``."""

    #: total energy, eV
    energy: float
    #: per-atom energies, shape (n_atoms,), eV
    energy_n: np.ndarray
    #: dE/dr, shape (n_atoms, 3), eV/Å (forces are minus this), or None
    grad_nc: object
    #: stress, Voigt (6,), eV/Å³, or None
    stress: object
    #: per-atom stress, shape (n_atoms, 6), eV/Å³ (sums to ``stress``), or None
    stress_n: object


def potential_list(potentials):
    """``(list of potentials, single)`` from one potential or a list/tuple of them (TypeError otherwise)."""
    if isinstance(potentials, LocalPotential):
        return [potentials], True
    if isinstance(potentials, (list, tuple)):
        for k, p in enumerate(potentials):
            if not isinstance(p, LocalPotential):
                raise TypeError(f"potentials[{k}] must be a LocalPotential, got {type(p).__name__}")
        return list(potentials), False
    raise TypeError(f"potentials must be a LocalPotential or a list of them, got {type(potentials).__name__}")


def accumulate_potential(potential, nw, energy_n, grad_pc, n_threads):
    """Add one potential's ``energy_n`` [N] and ``grad_pc`` [P, 3] (if not None) into the buffers.

    Potentials that override only ``compute`` (e.g. neural networks) are computed and added.
    """
    cls = type(potential)
    if cls.compute is not LocalPotential.compute and cls.accumulate is LocalPotential.accumulate:
        e_n, g_pc = potential.compute(nw, grad=grad_pc is not None, n_threads=n_threads)
        energy_n += e_n
        if grad_pc is not None:
            grad_pc += g_pc
    else:
        potential.accumulate(nw, energy_n, grad_pc, n_threads=n_threads)


# Per-thread reusable [P, 3] gradient buffer (up to _SCRATCH_MAX_DOUBLES) shared by all wrappers: page-faulting
# a fresh buffer costs more than the SW pair loop itself, and MD / benchmarks make a new wrapper every step.
_SCRATCH = threading.local()
_SCRATCH_MAX_DOUBLES = 16 * 1024 * 1024  # 128 MB


@contextlib.contextmanager
def _gradient_buffer(nw, grad, n_threads):
    """An uninitialised float64 ``[P, 3]`` buffer for per-pair gradients while the block runs (None without
    ``grad``; ``_accumulated`` initialises it).

    Never handed out to users: it is reduced to atom gradients and stresses inside the block. The shared
    per-thread buffer is used unless it is already in use (re-entrant evaluation: then a fresh one).
    """
    pairs = getattr(nw, "pairs", None)
    if not grad or pairs is None:  # (without a pair list the evaluation raises before using it)
        yield None
        return
    n_pairs = int(pairs.indptr[-1])
    need = 3 * n_pairs
    shared = not getattr(_SCRATCH, "busy", False)
    if not shared:
        yield np.empty((n_pairs, 3))
        return
    if need > _SCRATCH_MAX_DOUBLES:  # large systems: keep it with the wrapper only
        buf = getattr(nw, "_grad_pc_scratch", None)
        if buf is None or buf.size < need or buf.size > 2 * need:
            buf = np.empty(need + need // 8)
            nw._grad_pc_scratch = buf
    else:
        buf = getattr(_SCRATCH, "buffer", None)
        if buf is None or buf.size < need:
            buf = np.empty(min(need + need // 8 + 3, max(need, _SCRATCH_MAX_DOUBLES)))
            _SCRATCH.buffer = buf
    out = buf[:need].reshape(n_pairs, 3)
    _SCRATCH.busy = True
    try:
        yield out
    finally:
        _SCRATCH.busy = False


def _voigt(m):
    """Symmetrised 3x3 (..., 3, 3) -> Voigt (..., 6) in the order xx yy zz yz xz xy."""
    s = 0.5 * (m + np.swapaxes(m, -1, -2))
    return np.stack([s[..., 0, 0], s[..., 1, 1], s[..., 2, 2], s[..., 1, 2], s[..., 0, 2], s[..., 0, 1]], axis=-1)


# ------------------------------------------------------------------ helpers


def active_potentials(nw, potentials, ignore_missing_species):
    """Check cutoffs and species; return the list, ``single`` and which entries contribute."""
    potentials, single = potential_list(potentials)
    pairs = getattr(nw, "pairs", None)
    if pairs is None:
        raise ValueError("no neighbour list: call compute_distances(cutoff) before evaluating potentials")
    for k, p in enumerate(potentials):
        if p.cutoff > pairs.cutoff * (1 + 1e-12):
            raise ValueError(
                f"potentials[{k}] has cutoff {p.cutoff} Å, larger than the neighbour list cutoff "
                f"{pairs.cutoff} Å: call compute_distances({p.cutoff}) or larger first"
            )
    active = _with_species(nw, potentials, ignore_missing_species)
    check_coincident(nw, [potentials[k] for k in active])  # before any kernel runs
    return potentials, single, active


def _with_species(nw, potentials, ignore_missing_species):
    """Indices of the potentials whose tag species are all in ``nw``; a missing one is a ``KeyError`` naming it
    unless ``ignore_missing_species``."""
    out = []
    for k, p in enumerate(potentials):
        try:
            p.species_codes(nw)
        except KeyError:
            if not ignore_missing_species:
                raise
            continue
        out.append(k)
    return out


def _accumulated(nw, potentials, ignore_missing_species, grad_pc, n_threads):
    """``energy_n`` [N] (eV) summed over the potentials and their per-pair gradients in ``grad_pc`` [P, 3]
    (eV/Å; an uninitialised buffer from ``_gradient_buffer``, set here, or None)."""
    potentials, _, active = active_potentials(nw, potentials, ignore_missing_species)
    n_threads = resolve_n_threads(nw, n_threads)
    indptr = pair_arrays(nw)[0]
    energy_n = np.zeros(len(indptr) - 1)
    jobs = plan_accumulation([potentials[k] for k in active], nw)
    # the buffer is not initialised: a fused SW job first overwrites it, otherwise it is zeroed here
    overwrite = grad_pc is not None and bool(jobs) and len(jobs[0]) == 2
    if grad_pc is not None and not overwrite:
        _k.zero_rows(grad_pc, n_threads)
    for job in jobs:
        if len(job) == 2:  # SW2 + SW3 of one centre species in one pass
            run_sw_fused(*job, nw, energy_n, grad_pc, n_threads, overwrite=overwrite)
            overwrite = False
        else:
            accumulate_potential(job[0], nw, energy_n, grad_pc, n_threads)
    return energy_n, grad_pc


def _accumulated_atoms(nw, potentials, ignore_missing_species, n_threads, grad=True, virial=False):
    """``(energy_n [N] eV, grad_nc [N, 3] eV/Å or None, virial_n [N, 3, 3] eV or None)`` gathered per atom
    without per-pair gradients when every potential is a plain compiled pair family (this uses the full
    pair list, Contract 1); None otherwise."""
    fused = _fused(nw, potentials, ignore_missing_species, n_threads, grad, virial)
    if fused is not None:  # no pair list: summed during the neighbour search
        return fused
    potentials, _, active = active_potentials(nw, potentials, ignore_missing_species)
    active = [potentials[k] for k in active]
    if not pair_only(active):
        return None
    n_threads = resolve_n_threads(nw, n_threads)
    n = len(pair_arrays(nw)[0]) - 1
    energy_n = np.zeros(n)
    grad_nc = np.zeros((n, 3)) if grad else None
    virial_n9 = np.zeros((n, 9)) if virial else None
    for p in active:
        accumulate_atoms(p, nw, energy_n, grad_nc, n_threads, virial_n9)
    return energy_n, grad_nc, (virial_n9.reshape(n, 3, 3) if virial else None)


def _fused(nw, potentials, ignore_missing_species, n_threads, grad, virial):
    """``_accumulated_atoms``'s result from ``pairsearch.fused_pair_evaluation`` when the wrapper has no pair
    list for its positions and every potential is a plain pair family (``pairsearch.can_fuse``); else None."""
    if getattr(nw, "has_pairs", True) or getattr(nw, "image_limit", True) is not None:
        return None
    potentials, _ = potential_list(potentials)
    list_cutoff = getattr(nw, "cutoff", None)
    if list_cutoff is not None and any(p.cutoff > list_cutoff * (1 + 1e-12) for p in potentials):
        return None  # the list path names the problem
    active = [potentials[k] for k in _with_species(nw, potentials, ignore_missing_species)]
    if not active and potentials and pair_only(potentials):  # every species missing: nothing contributes
        n = nw.size
        return np.zeros(n), (np.zeros((n, 3)) if grad else None), (np.zeros((n, 3, 3)) if virial else None)
    if not can_fuse(nw, active):
        return None
    return fused_pair_evaluation(nw, active, n_threads=n_threads, grad=grad, virial=virial)


def _list_free(nw, potentials, ignore_missing_species, n_threads, grad, virial):
    """``_accumulated_atoms``'s result from the potentials' own ``list_free_terms`` (the Ewald families: real
    space summed during the cell-list walk) when the wrapper has no pair list for its positions, no image limit,
    and every potential has that method; else None."""
    if getattr(nw, "has_pairs", True) or getattr(nw, "image_limit", True) is not None:
        return None
    potentials, _ = potential_list(potentials)
    if not potentials or not all(callable(getattr(p, "list_free_terms", None)) for p in potentials):
        return None
    list_cutoff = getattr(nw, "cutoff", None)
    if list_cutoff is not None and any(p.cutoff > list_cutoff * (1 + 1e-12) for p in potentials):
        return None  # the list path names the problem
    n = nw.size
    energy_n = np.zeros(n)
    grad_nc = np.zeros((n, 3)) if grad else None
    virial_n = np.zeros((n, 3, 3)) if virial else None
    for k in _with_species(nw, potentials, ignore_missing_species):
        e, g, v = potentials[k].list_free_terms(nw, grad=grad, virial=virial, n_threads=n_threads)
        energy_n += e
        if grad:
            grad_nc += g
        if virial:
            virial_n += v
    return energy_n, grad_nc, virial_n


def long_range_terms(nw, potentials, ignore_missing_species, n_threads, grad=True, virial=False):
    """Atom gradients ``[N, 3]`` (eV/Å) and virials ``[N, 3, 3]`` (eV) summed over the parts of potentials that
    are not sums over pairs (their ``long_range_terms`` method: Ewald's reciprocal sum and background), each
    None when no potential has such parts or it was not asked for."""
    potentials, _, active = active_potentials(nw, potentials, ignore_missing_species)
    grad_nc = virial_n = None
    for k in active:
        method = getattr(potentials[k], "long_range_terms", None)
        if not callable(method):
            continue
        g, v = method(nw, grad=grad, virial=virial, n_threads=n_threads)
        if g is not None:
            grad_nc = g.copy() if grad_nc is None else grad_nc + g
        if v is not None:
            virial_n = v.copy() if virial_n is None else virial_n + v
    return grad_nc, virial_n


def pair_gradient_to_atoms(nw, grad_pc, n_threads=None):
    """dE/dr [N, 3] eV/Å from per-pair gradients [P, 3] (deterministic for any thread count)."""
    indptr, j_p = pair_arrays(nw)[:2]
    out = np.zeros((len(indptr) - 1, 3))
    _k.pair_gradient_to_atoms(indptr, j_p, grad_pc, out, resolve_n_threads(nw, n_threads))
    return out


def virial_n(nw, grad_pc, n_threads):
    """Per-atom virial ``sum_p grad_pc[p] (x) D_pc[p]`` over the pairs of each atom, (N, 3, 3), eV."""
    indptr, _, _, D_pc, _ = pair_arrays(nw)
    out = np.zeros((len(indptr) - 1, 9))
    _k.pair_virial(indptr, grad_pc, D_pc, out, resolve_n_threads(nw, n_threads))
    return out.reshape(-1, 3, 3)


# ------------------------------------------------------------------ 0.1.4 API


def eval_potentials(nw, potentials, kname="kernel", squeeze=True, ignore_missing_species=False, out=None,
         resolving=True, n_threads=None, prefer_parallel=None):
    """Evaluate potentials with 0.1.4's output layouts.

    Parameters
    ----------
    potentials : LocalPotential or list of LocalPotential
        Each with a tag (``"a"``, ``"a-b"``, ``"a-b-c"``) or None (species code 0).
    kname : {"kernel", "kernel_gradient", "kernel_numgrad", "kernel_cgradient"}
        Values, analytic gradients, central finite-difference gradients, or (``resolving=False`` only) the
        gradient of the total by the charges ``[n_pot, N]`` eV/e (zero for charge-independent potentials).
    squeeze : bool
        A single (non-list) potential drops the leading axis.
    ignore_missing_species : bool
        Potentials naming species absent from the cell contribute zeros instead of raising ``KeyError``.
    out : ndarray, optional
        Buffer of exactly the output shape; the result is added to it and it is returned.
    resolving : bool
        True: per atom; False: totals.
    n_threads : int or None
        OpenMP threads (None: ``nw.n_threads``, else the default rule).
    prefer_parallel : bool or None
        0.1.4 compatibility: False means one thread.

    Returns
    -------
    ndarray
        ``"kernel"``: ``[n_pot, N]`` eV (``[n_pot]`` if not resolving). Gradient kernels:
        ``[n_pot, N, N, 3]`` with ``[k, i, j] = dE_i/dr_j`` (eV/Å; dense, O(N²) memory: prefer
        ``grad``), or ``[n_pot, N, 3]`` if not resolving.

    Raises
    ------
    ValueError
        Unknown ``kname``, a cutoff above the neighbour list cutoff, or ``out`` of the wrong shape.
    KeyError
        A species of a tag is missing (unless ``ignore_missing_species``).
    """
    if kname not in _KERNEL_NAMES:
        raise ValueError(f"kname must be one of {_KERNEL_NAMES}, got {kname!r}")
    if prefer_parallel is True or (prefer_parallel is False and n_threads is not None):
        warnings.warn(f"eval: prefer_parallel={prefer_parallel} is ignored (it is accepted only for miniff 0.1.4 "
                      "compatibility and will be removed): the threads follow n_threads; prefer_parallel=False "
                      "without n_threads means n_threads=1", DeprecationWarning, stacklevel=3)
    if prefer_parallel is False and n_threads is None:
        n_threads = 1
    potentials, single, active = active_potentials(nw, potentials, ignore_missing_species)
    n_threads = resolve_n_threads(nw, n_threads)
    indptr, j_p = pair_arrays(nw)[:2]
    n = len(indptr) - 1
    n_pot = len(potentials)
    if kname == "kernel":
        shape = (n_pot, n) if resolving else (n_pot,)
    elif kname == "kernel_cgradient":
        shape = (n_pot, n)
    else:
        shape = (n_pot, n, n, 3) if resolving else (n_pot, n, 3)
    out_shape = shape[1:] if (single and squeeze) else shape
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
        if out.shape != out_shape:
            raise ValueError(f"out has shape {out.shape}, expected {out_shape}")
    result = np.zeros(shape)
    for k in active:
        p = potentials[k]
        if kname == "kernel":
            e_n, _ = p.compute(nw, grad=False, n_threads=n_threads)
            result[k] = e_n if resolving else e_n.sum()
        elif kname == "kernel_cgradient":
            if resolving:
                raise ValueError("kname='kernel_cgradient' gives dE_total/dq only: pass resolving=False")
            method = getattr(p, "charge_gradient", None)
            result[k] = method(nw, n_threads=n_threads) if callable(method) else 0.0
        elif kname == "kernel_gradient":
            extra = long_range_terms(nw, p, False, n_threads)[0]
            _, g_pc = p.compute(nw, grad=True, n_threads=n_threads)
            if resolving and extra is not None:
                raise ValueError(f"potentials[{k}] ({p.family.tag}) is not a sum over pairs: it has no per-atom "
                                 "gradient dE_i/dr_j; use resolving=False (or nw.grad)")
            if resolving:
                i_p = np.repeat(np.arange(n), np.diff(indptr))
                dense = result[k].reshape(n * n, 3)
                np.add.at(dense, i_p * n + j_p, g_pc)
                np.add.at(dense, i_p * (n + 1), -g_pc)
            else:
                result[k] = pair_gradient_to_atoms(nw, g_pc, n_threads) + (0.0 if extra is None else extra)
        else:
            result[k] = numerical_energy_gradient(nw, p, resolving=resolving, n_threads=n_threads)
    if single and squeeze:
        result = result[0]
    if out is not None:
        out += result
        return out
    return result


def total(nw, potentials, kname="kernel", squeeze=False, resolving=False, ignore_missing_species=False,
          n_threads=None, **kwargs):
    """Total energy (eV, a float) of all potentials; with a gradient ``kname`` the total dE/dr [N, 3].

    Equivalent to ``eval(..., resolving=False).sum(axis=0)``, computed without per-potential arrays.
    """
    if kname in ("kernel", "kernel_gradient") and not resolving and not kwargs:
        grad = kname == "kernel_gradient"
        if not grad:
            fused = _fused(nw, potentials, ignore_missing_species, n_threads, False, False)
            if fused is not None:
                return float(fused[0].sum())
        if grad:
            direct = _accumulated_atoms(nw, potentials, ignore_missing_species, n_threads)
            if direct is not None:
                return direct[1]
        extra = long_range_terms(nw, potentials, ignore_missing_species, n_threads)[0] if grad else None
        with _gradient_buffer(nw, grad, n_threads) as grad_pc:
            energy_n, grad_pc = _accumulated(nw, potentials, ignore_missing_species, grad_pc, n_threads)
            if grad:
                grad_nc = pair_gradient_to_atoms(nw, grad_pc, n_threads)
                return grad_nc if extra is None else grad_nc + extra
        return float(energy_n.sum())
    result = eval_potentials(nw, potentials, kname=kname, squeeze=squeeze, resolving=resolving,
                       ignore_missing_species=ignore_missing_species, n_threads=n_threads, **kwargs)
    if np.ndim(result) == 0:
        return float(result)
    result = np.asarray(result).sum(axis=0)
    return float(result) if np.ndim(result) == 0 else result


def gradient(nw, potentials, kname="kernel_gradient", **kwargs):
    """Gradient of the total energy by the atomic positions, ``[N, 3]`` eV/Å (forces are ``-grad``)."""
    return total(nw, potentials, kname=kname, **kwargs)


def stress(nw, potentials, per_atom=False, ignore_missing_species=False, n_threads=None):
    """Virial stress of the potentials (ASE sign and Voigt order ``xx yy zz yz xz xy``), eV/Å³.

    ``sigma = sym(sum_p grad_pc[p] (x) D_pc[p]) / V`` with ``V = nw.volume``.

    Parameters
    ----------
    potentials : LocalPotential or list of LocalPotential
    per_atom : bool
        Return per-atom stresses ``[N, 6]`` (each pair assigned to its centre atom) that sum to the
        total.

    Returns
    -------
    ndarray of shape (6,) or (n_atoms, 6), eV/Å³
    """
    direct = _accumulated_atoms(nw, potentials, ignore_missing_species, n_threads, grad=False, virial=True)
    if direct is not None:
        return stress_from(nw, None, per_atom, n_threads, virial=direct[2])
    extra = long_range_terms(nw, potentials, ignore_missing_species, n_threads, grad=False, virial=True)[1]
    with _gradient_buffer(nw, True, n_threads) as grad_pc:
        _, grad_pc = _accumulated(nw, potentials, ignore_missing_species, grad_pc, n_threads)
        return stress_from(nw, grad_pc, per_atom, n_threads, extra_virial=extra)


def stress_from(nw, grad_pc, per_atom, n_threads, virial=None, extra_virial=None):
    """Voigt stress [6] (or per atom [N, 6]) eV/Å³ from per-pair gradients, or from per-atom ``virial``, plus
    per-atom ``extra_virial`` [N, 3, 3] (eV) of long-range terms: the one stress builder (ASE sign and order).

    Parameters
    ----------
    nw : NeighborWrapper
        Its volume (Å³) and pair list (for ``grad_pc``).
    grad_pc : ndarray [P, 3] (eV/Å) or None
        Per-pair gradients, used when ``virial`` is None.
    per_atom : bool
        Per-atom stresses [N, 6] instead of the total [6].
    n_threads : int or None
    virial, extra_virial : ndarray [N, 3, 3] (eV) or None
    """
    volume = float(nw.volume)
    if not volume > 0:
        raise ValueError(f"the cell volume is {volume}: stress needs a cell of positive volume")
    if virial is None:
        virial = virial_n(nw, grad_pc, n_threads)
    if extra_virial is not None:
        virial = virial + extra_virial
    if per_atom:
        return _voigt(virial) / volume
    return _voigt(virial.sum(axis=0)) / volume


def _atoms_evaluation(nw, energy_n, grad_nc, virial, stress, per_atom_stress, n_threads):
    """The ``Evaluation`` of per-atom energies, gradients and virials ``[N, 3, 3]`` (or None)."""
    stress_v = stress_n = None
    if virial is not None:
        stress_n = stress_from(nw, None, True, n_threads, virial=virial)
        stress_v = stress_n.sum(axis=0) if stress else None
        stress_n = stress_n if per_atom_stress else None
    return Evaluation(float(energy_n.sum()), energy_n, grad_nc, stress_v, stress_n)


def evaluate(nw, potentials, grad=True, stress=False, per_atom_stress=False, ignore_missing_species=False,
             n_threads=None):
    """Energy, per-atom energies, gradient and stress in one pass over the pairs.

    An SW2 and an SW3 potential of the same centre species are evaluated together in one pass; when all
    potentials are compiled pair families, atom gradients and virials are gathered directly from the
    (full) pair list without per-pair gradients.
    A wrapper without a pair list for its positions builds none when every potential can do without it:
    plain pair families (summed during the neighbour search) and the Ewald families (``list_free_terms``:
    real space during the cell-list walk, the rest per atom).

    Returns
    -------
    Evaluation
        ``(energy eV, energy_n [N] eV, grad_nc [N, 3] eV/Å or None, stress [6] eV/Å³ or None,
        stress_n [N, 6] eV/Å³ or None)``.
    """
    need_grad = grad or stress or per_atom_stress
    free = _list_free(nw, potentials, ignore_missing_species, n_threads, grad, stress or per_atom_stress)
    if free is not None:  # potentials that need no pair list (Ewald): none is built
        return _atoms_evaluation(nw, *free, stress, per_atom_stress, n_threads)
    if not need_grad:
        fused = _fused(nw, potentials, ignore_missing_species, n_threads, False, False)
        if fused is not None:
            return Evaluation(float(fused[0].sum()), fused[0], None, None, None)
    if need_grad:
        direct = _accumulated_atoms(nw, potentials, ignore_missing_species, n_threads, grad=grad,
                                         virial=stress or per_atom_stress)
        if direct is not None:  # pair potentials only: no per-pair buffer
            return _atoms_evaluation(nw, *direct, stress, per_atom_stress, n_threads)
    # long-range terms first: their energies, gradients and virials come from one pass, which accumulate reuses
    extra_grad, extra_virial = long_range_terms(nw, potentials, ignore_missing_species, n_threads, grad=grad,
                                                virial=stress or per_atom_stress)
    with _gradient_buffer(nw, need_grad, n_threads) as grad_pc:
        energy_n, grad_pc = _accumulated(nw, potentials, ignore_missing_species, grad_pc, n_threads)
        grad_nc = pair_gradient_to_atoms(nw, grad_pc, n_threads) if grad else None
        if grad_nc is not None and extra_grad is not None:
            grad_nc += extra_grad
        stress_v = stress_n = None
        if stress or per_atom_stress:
            stress_n = stress_from(nw, grad_pc, True, n_threads, extra_virial=extra_virial)
            stress_v = stress_n.sum(axis=0) if stress else None
            stress_n = stress_n if per_atom_stress else None
    return Evaluation(float(energy_n.sum()), energy_n, grad_nc, stress_v, stress_n)


def numerical_energy_gradient(nw, potentials, eps=1e-5, resolving=False, ignore_missing_species=False,
                              n_threads=None):
    """Central-difference gradient of the energy by the atomic positions (a reference for tests).

    Parameters
    ----------
    nw : NeighborWrapper
        With distances computed; displaced in place and restored.
    potentials : LocalPotential or list of LocalPotential
    eps : float
        Displacement step, Å.
    resolving : bool
        False: ``d E_total / d r`` ``[N, 3]``; True: ``d E_i / d r_j`` ``[N, N, 3]`` (per-atom energies).

    Returns
    -------
    ndarray, eV/Å
    """
    def energy():
        e = eval_potentials(nw, potentials, "kernel", squeeze=False, ignore_missing_species=ignore_missing_species,
                            n_threads=n_threads).sum(axis=0)
        return e if resolving else e.sum()

    return position_derivative(nw, energy, eps)
