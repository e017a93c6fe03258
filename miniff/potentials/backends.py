"""Backends: how each kind of family is evaluated on a pair list.

A backend is attached to a ``LocalPotentialFamily`` and implements

``accumulate(potential, nw, energy_n, grad_pc, n_threads)``
    add the potential's per-atom energies ``[N]`` (eV) and, when ``grad_pc`` is not None, its per-pair
    gradients ``[P, 3]`` (eV/Å) to the given float64 buffers (DEVELOPING.md, Contract 3);

and, for the descriptor families that can be evaluated many at a time (``eval_descriptors``),

``batch_key(potential, codes)`` / ``batch(items, codes, nw, values_nf, jac_pf3, grad, n_threads)``.

Compiled families call the loops of ``miniff/_ext`` (``pair``, ``triple``, ``angular``, ``lsp``); their family
codes are read from the compiled core. The general (Python callable) families are evaluated with numpy.
"""

import functools
import inspect
import math
from typing import NamedTuple

import numpy as np

from miniff._ext import kernel_module as _k
from miniff.potentials.base import pair_arrays

# family codes and limits of the compiled core, read from it (defined once: the enums of miniff/_ext/common.pxd)
PAIR_HARMONIC, PAIR_LJ, PAIR_SW2 = (_k.FAMILY_CODES[k] for k in ("PAIR_HARMONIC", "PAIR_LJ", "PAIR_SW2"))
FC_BEHLER2, FC_SIGMOID = (_k.FAMILY_CODES[k] for k in ("FC_BEHLER2", "FC_SIGMOID"))
TRIPLE_SW3, TRIPLE_BEHLER5X = (_k.FAMILY_CODES[k] for k in ("TRIPLE_SW3", "TRIPLE_BEHLER5X"))
BATCH_BEHLER5, BATCH_BEHLER4 = (_k.FAMILY_CODES[k] for k in ("BATCH_BEHLER5", "BATCH_BEHLER4"))
MAX_GROUP = _k.LIMITS["MAX_GROUP"]  # descriptors per batched call
MOMENT_MAX_ETA = _k.LIMITS["MOMENT_MAX_ETA"]  # distinct eta per moment-kernel call
MOMENT_MAX_ZETA = _k.LIMITS["MOMENT_MAX_ZETA"]  # integer zeta up to this use the moment kernel


class MonomialTable(NamedTuple):
    """Monomials ``u_x^a u_y^b u_z^c`` of degree <= zmax ordered by degree (the moment kernel's input)."""

    #: degree a + b + c, shape (M,), int32
    degree: np.ndarray
    #: multinomial weight n! / (a! b! c!), shape (M,)
    weight: np.ndarray
    #: index of the monomial of one degree less it is built from, shape (M,), int32
    parent: np.ndarray
    #: axis multiplied onto the parent, shape (M,), int32
    axis: np.ndarray
    #: index of alpha + e_m (0 at the top degree), shape (M, 3), int32
    plus: np.ndarray
    #: weight of alpha + e_m times its exponent of axis m, shape (M, 3)
    gw: np.ndarray


@functools.lru_cache(maxsize=None)
def monomial_tables(zmax):
    """The :class:`MonomialTable` of degree <= ``zmax`` (cached)."""
    alphas = [(a, b, n - a - b) for n in range(zmax + 1) for a in range(n, -1, -1) for b in range(n - a, -1, -1)]
    index = {al: k for k, al in enumerate(alphas)}
    deg = np.array([sum(al) for al in alphas], dtype=np.int32)
    weight = np.array([math.factorial(sum(al)) / (math.factorial(al[0]) * math.factorial(al[1])
                                                  * math.factorial(al[2])) for al in alphas])
    parent = np.zeros(len(alphas), dtype=np.int32)
    axis = np.zeros(len(alphas), dtype=np.int32)
    plus = np.zeros((len(alphas), 3), dtype=np.int32)
    gw = np.zeros((len(alphas), 3))
    for k, al in enumerate(alphas):
        if k:
            m = next(m for m in range(3) if al[m] > 0)
            axis[k] = m
            parent[k] = index[tuple(v - (c == m) for c, v in enumerate(al))]
        if sum(al) < zmax:
            for m in range(3):
                plus[k, m] = index[tuple(v + (c == m) for c, v in enumerate(al))]
    for k in range(len(alphas)):
        if deg[k] < zmax:
            for m in range(3):
                gw[k, m] = weight[plus[k, m]] * alphas[plus[k, m]][m]
    return MonomialTable(deg, weight, parent, axis, plus, gw)

_EMPTY_GRAD = np.zeros((0, 3))


def check_buffers(energy_n, grad_pc, n_atoms, n_pairs):
    """Check that accumulation buffers are C-contiguous float64 of shapes [N] and [P, 3]."""
    if not isinstance(energy_n, np.ndarray) or energy_n.dtype != np.float64 or energy_n.shape != (n_atoms,) \
            or not energy_n.flags.c_contiguous:
        raise ValueError(f"energy_n must be a C-contiguous float64 array of shape ({n_atoms},)")
    if grad_pc is not None:
        if not isinstance(grad_pc, np.ndarray) or grad_pc.dtype != np.float64 or grad_pc.shape != (n_pairs, 3) \
                or not grad_pc.flags.c_contiguous:
            raise ValueError(f"grad_pc must be a C-contiguous float64 array of shape ({n_pairs}, 3)")


def _vector(potential, names):
    values = potential.get_all_parameters()
    return np.array([float(values[n]) for n in names], dtype=np.float64)


def _small_integer(value, largest=64):
    """``int(value)`` when ``value`` is an integer in [0, largest] (fast integer-power path), else -1."""
    value = float(value)
    return int(value) if value.is_integer() and 0 <= value <= largest else -1


class PairBackend:
    """Compiled pair family without a shared cosine cutoff (harmonic, Lennard-Jones, SW2).

    SW2 parameters are followed by the exponents ``p``, ``q`` as small integers (or -1): the kernel then
    computes ``x^-p`` by repeated multiplication instead of ``pow``.
    """

    def __init__(self, code, names):
        self.code = code
        self.names = tuple(names)

    def parameters(self, potential):
        """The float64 parameter vector handed to ``pair_reduce``."""
        par = _vector(potential, self.names)
        if self.code == PAIR_SW2:
            values = potential.get_all_parameters()
            par = np.append(par, [_small_integer(values["p"]), _small_integer(values["q"])])
        return par

    def accumulate(self, potential, nw, energy_n, grad_pc, n_threads):
        codes = potential.species_codes(nw)
        indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, potential.cutoff)
        check_buffers(energy_n, grad_pc, len(spec_n), len(j_p))
        _k.pair_reduce(self.code, self.parameters(potential), potential.cutoff, indptr, j_p, d_p, D_pc,
                       spec_n, codes[0], codes[1], energy_n, _EMPTY_GRAD if grad_pc is None else grad_pc,
                       grad_pc is not None, n_threads)


class TripleBackend:
    """Compiled triplet family evaluated one potential at a time (SW3, Behler 5x)."""

    def __init__(self, code, names):
        self.code = code
        self.names = tuple(names)

    def accumulate(self, potential, nw, energy_n, grad_pc, n_threads):
        codes = potential.species_codes(nw)
        indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, potential.cutoff)
        check_buffers(energy_n, grad_pc, len(spec_n), len(j_p))
        _k.triple_reduce(self.code, _vector(potential, self.names), potential.cutoff, indptr, j_p, d_p, D_pc,
                         spec_n, codes[0], codes[1], codes[2], energy_n,
                         _EMPTY_GRAD if grad_pc is None else grad_pc, grad_pc is not None, n_threads)


def _plain(potential, backend_cls, code):
    """True when ``potential`` is evaluated by ``backend_cls`` with family ``code`` and its class does not
    override ``compute`` / ``accumulate`` (so a fused kernel computes exactly what ``accumulate`` would)."""
    from miniff.potentials.base import LocalPotential

    cls = type(potential)
    backend = getattr(getattr(potential, "family", None), "backend", None)
    return (cls.accumulate is LocalPotential.accumulate and cls.compute is LocalPotential.compute
            and type(backend) is backend_cls and backend.code == code)


def pair_only(potentials):
    """True when every potential is a plain compiled pair family (harmonic, LJ, SW2): then the per-atom
    gradient can be gathered directly from the full pair list (``accumulate_atoms``)."""
    for p in potentials:
        backend = getattr(getattr(p, "family", None), "backend", None)
        if not (type(backend) is PairBackend and _plain(p, PairBackend, backend.code)):
            return False
    return True


def accumulate_atoms(potential, nw, energy_n, grad_nc, n_threads, virial_n9=None):
    """Add a plain pair potential's energies to ``energy_n`` [N] (eV), its per-atom gradient dE/dr to
    ``grad_nc`` [N, 3] (eV/Å, if not None) and its per-atom virials to ``virial_n9`` [N, 9] (eV, if not None),
    without per-pair gradients (full pair list, Contract 1)."""
    backend = potential.family.backend
    codes = potential.species_codes(nw)
    indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, potential.cutoff)
    check_buffers(energy_n, None, len(spec_n), len(j_p))
    if grad_nc is not None and (not isinstance(grad_nc, np.ndarray) or grad_nc.dtype != np.float64
                                or grad_nc.shape != (len(spec_n), 3) or not grad_nc.flags.c_contiguous):
        raise ValueError(f"grad_nc must be a C-contiguous float64 array of shape ({len(spec_n)}, 3)")
    if virial_n9 is not None and (not isinstance(virial_n9, np.ndarray) or virial_n9.dtype != np.float64
                                  or virial_n9.shape != (len(spec_n), 9) or not virial_n9.flags.c_contiguous):
        raise ValueError(f"virial_n9 must be a C-contiguous float64 array of shape ({len(spec_n)}, 9)")
    _k.pair_reduce_atoms(backend.code, backend.parameters(potential), potential.cutoff, indptr, j_p, d_p, D_pc,
                         spec_n, codes[0], codes[1], energy_n, _EMPTY_GRAD if grad_nc is None else grad_nc,
                         grad_nc is not None, n_threads, virial_n9)


def plan_accumulation(potentials, nw):
    """Group potentials for one accumulation pass: a list of ``(potential,)`` and ``(sw2, sw3)`` jobs.

    An SW2 potential and an SW3 potential with the same centre species are fused (``run_sw_fused`` evaluates
    them with one pass over the pairs); every other potential is a job of its own. Fused jobs come first,
    the remaining potentials keep their order.
    """
    jobs, used = [], set()
    sw2 = [k for k, p in enumerate(potentials) if _plain(p, PairBackend, PAIR_SW2)]
    sw3 = [k for k, p in enumerate(potentials) if _plain(p, TripleBackend, TRIPLE_SW3)]
    for k3 in sw3:
        centre = potentials[k3].species_codes(nw)[0]
        for k2 in sw2:
            if k2 not in used and potentials[k2].species_codes(nw)[0] == centre:
                used.update((k2, k3))
                jobs.append((potentials[k2], potentials[k3]))
                break
    jobs.extend((p,) for k, p in enumerate(potentials) if k not in used)
    return jobs


def run_sw_fused(sw2, sw3, nw, energy_n, grad_pc, n_threads, overwrite=False):
    """Add SW2 ``sw2`` and SW3 ``sw3`` (same centre species) to ``energy_n`` [N] eV and ``grad_pc`` [P, 3]
    eV/Å (if not None) with one pass over the pair list; ``overwrite``: set ``grad_pc`` instead of adding
    (it may then hold anything on entry)."""
    codes2, codes3 = sw2.species_codes(nw), sw3.species_codes(nw)
    if codes2[0] != codes3[0]:
        raise ValueError("fused SW2 + SW3 needs the same centre species")
    indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, max(sw2.cutoff, sw3.cutoff))
    check_buffers(energy_n, grad_pc, len(spec_n), len(j_p))
    _k.sw_reduce(sw2.family.backend.parameters(sw2), sw2.cutoff, codes2[1],
                 _vector(sw3, sw3.family.backend.names), sw3.cutoff, codes3[0], codes3[1], codes3[2],
                 indptr, j_p, d_p, D_pc, spec_n, energy_n, _EMPTY_GRAD if grad_pc is None else grad_pc,
                 grad_pc is not None, n_threads, overwrite)


class _BatchedBackend:
    """A backend whose single-potential evaluation is a batch of one (column 0 of the outputs)."""

    def accumulate(self, potential, nw, energy_n, grad_pc, n_threads):
        codes = potential.species_codes(nw)
        indptr = pair_arrays(nw, potential.cutoff)[0]
        check_buffers(energy_n, grad_pc, len(indptr) - 1, int(indptr[-1]))
        values = energy_n.reshape(-1, 1)
        jac = _EMPTY_GRAD if grad_pc is None else grad_pc
        self.batch([(0, potential)], codes, nw, values, jac, grad_pc is not None, n_threads)



class CutoffPairBackend(_BatchedBackend):
    """Compiled pair descriptors ``h(r) f_c(r; a)`` (Behler 2, sigmoid), batched by shared ``a`` and tag."""

    def __init__(self, code, names):
        self.code = code
        self.names = tuple(names)

    def batch_key(self, potential, codes):
        return ("pair", self.code, potential.cutoff, codes)

    def batch(self, items, codes, nw, values_nf, jac_pf3, grad, n_threads, zero_jac=False):
        """Evaluate ``items`` = [(column, potential)] sharing the cutoff and tag into the output columns.

        ``zero_jac``: set every row of ``jac_pf3`` [P, 3 F] (all columns, every pair of the list) to 0 first, in
        the same sweep as the first kernel call (``eval_descriptors`` hands it a buffer holding anything).
        """
        indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, items[0][1].cutoff)
        for k, job in enumerate(self.jobs(items, codes)):
            _k.batch_pair_reduce(job.code, job.par, job.cols, job.cutoff, indptr, j_p, d_p, D_pc, spec_n, job.sa,
                                 job.sb, values_nf, jac_pf3, grad, n_threads, zero_jac and k == 0)

    def jobs(self, items, codes):
        """The kernel calls of ``items`` (at most MAX_GROUP descriptors each): a list of :class:`PairJob`."""
        out = []
        for start in range(0, len(items), MAX_GROUP):
            chunk = items[start:start + MAX_GROUP]
            par = np.ascontiguousarray([_vector(p, self.names) for _, p in chunk], dtype=np.float64)
            cols = np.array([c for c, _ in chunk], dtype=np.int32)
            out.append(PairJob(self.code, par, cols, float(chunk[0][1].cutoff), int(codes[0]), int(codes[1])))
        return out


class PairJob(NamedTuple):
    """One call of the batched pair-descriptor kernel (``batch_pair_reduce``), or its part of a fused sweep."""

    #: family code (Behler 2, sigmoid)
    code: int
    #: parameters [F, >= 2]
    par: np.ndarray
    #: output columns [F] int32
    cols: np.ndarray
    #: cutoff a, Å
    cutoff: float
    #: centre and neighbour species codes (-1: any)
    sa: int
    sb: int


def _moment_scratch(n_pairs, n_eta):
    """Scratch of the moment kernel's Jacobian pass: ``g_pe``, ``dg_pe`` [P, n_eta] and ``u_pc`` [P, 3] in one
    pooled block (``pooled_empty``: the block of the last call is reused, without the page faults of fresh
    memory; the kernel writes every entry it reads)."""
    flat = _k.pooled_empty((n_pairs * (2 * n_eta + 3),))
    size = n_pairs * n_eta
    return (flat[:size].reshape(n_pairs, n_eta), flat[size:2 * size].reshape(n_pairs, n_eta),
            flat[2 * size:].reshape(n_pairs, 3))


def _integer_zeta(zeta):
    if float(zeta).is_integer() and 0 <= zeta <= 64:
        return int(zeta)
    return -1


class AngularBackend(_BatchedBackend):
    """Compiled Behler type 4/5 descriptors, batched by shared ``a``, family and tag.

    Distinct ``eta`` and distinct ``(l, zeta)`` of a batch are evaluated once per pair / triplet.
    """

    def __init__(self, code):
        self.code = code

    def batch_key(self, potential, codes):
        return ("triple", self.code, potential.cutoff, codes)

    def batch(self, items, codes, nw, values_nf, jac_pf3, grad, n_threads, pair_job=None, zero_jac=False):
        """Evaluate ``items`` = [(column, potential)] sharing cutoff, family and tag.

        ``pair_job`` (a :class:`PairJob` of ``CutoffPairBackend.jobs``) and ``zero_jac`` (set every row of
        ``jac_pf3`` to 0 first) join the first moment-kernel sweep over the atoms (one parallel region, each
        atom's pairs read once); without a moment chunk they run first on their own.
        """
        cutoff = items[0][1].cutoff
        arrays = pair_arrays(nw, cutoff)
        moments, triplets = [], []
        for col, p in items:
            zeta = float(p.parameters["zeta"])
            use_moments = self.code == BATCH_BEHLER5 and zeta.is_integer() and zeta <= MOMENT_MAX_ZETA
            (moments if use_moments else triplets).append((col, p))
        first = {"pair_job": pair_job, "zero_jac": zero_jac}  # handed to the first moment call
        chunk, etas = [], set()
        for col, p in moments:
            eta = float(p.parameters["eta"])
            if len(chunk) == MAX_GROUP or (eta not in etas and len(etas) == MOMENT_MAX_ETA):
                self._run_moments(chunk, codes, cutoff, arrays, values_nf, jac_pf3, grad, n_threads, **first)
                first = {}
                chunk, etas = [], set()
            etas.add(eta)
            chunk.append((col, p))
        if chunk:
            self._run_moments(chunk, codes, cutoff, arrays, values_nf, jac_pf3, grad, n_threads, **first)
            first = {}
        if first.get("pair_job") is not None:
            job = first["pair_job"]
            _k.batch_pair_reduce(job.code, job.par, job.cols, job.cutoff, *arrays, job.sa, job.sb, values_nf,
                                 jac_pf3, grad, n_threads, zero_jac)
        elif first.get("zero_jac") and grad:
            _k.zero_rows(jac_pf3, n_threads)
        self._batch_triplets(triplets, codes, cutoff, arrays, values_nf, jac_pf3, grad, n_threads)

    def _run_moments(self, chunk, codes, cutoff, arrays, values_nf, jac_pf3, grad, n_threads, pair_job=None,
                     zero_jac=False):
        indptr, j_p, d_p, D_pc, spec_n = arrays
        etas = {}
        zetas = [int(float(p.parameters["zeta"])) for _, p in chunk]
        zmax = max(zetas)
        deg, weight, parent, axis, plus, gw = monomial_tables(zmax)
        coefn = np.zeros((len(chunk), zmax + 1))
        e_f = np.zeros(len(chunk), dtype=np.int32)
        for f, ((_, p), zeta) in enumerate(zip(chunk, zetas, strict=True)):
            par = p.parameters
            e_f[f] = etas.setdefault(float(par["eta"]), len(etas))
            pref = 2.0 ** (1 - zeta) * float(par["epsilon"])
            for n in range(zeta + 1):
                coefn[f, n] = pref * math.comb(zeta, n) * float(par["l"]) ** n
        nmono = np.array([(z + 1) * (z + 2) * (z + 3) // 6 for z in zetas], dtype=np.int32)
        cols = np.array([c for c, _ in chunk], dtype=np.int32)
        eta_e = np.array(list(etas), dtype=np.float64)
        g_pe, dg_pe, u_pc = _moment_scratch(len(j_p) if grad else 0, len(eta_e))
        _k.batch_moment_reduce(cutoff, eta_e, coefn, coefn.sum(axis=1), nmono, e_f, cols, deg, weight, parent, axis,
                               plus, gw, indptr, j_p, d_p, D_pc, spec_n, codes[0], codes[1], codes[2], g_pe, dg_pe,
                               u_pc, values_nf, jac_pf3, grad, n_threads,
                               *(() if pair_job is None else (pair_job.code, pair_job.par, pair_job.cols,
                                                              pair_job.cutoff, pair_job.sa, pair_job.sb)),
                               zero_jac=zero_jac)

    def _batch_triplets(self, items, codes, cutoff, arrays, values_nf, jac_pf3, grad, n_threads):
        indptr, j_p, d_p, D_pc, spec_n = arrays
        # split into chunks with at most MAX_GROUP descriptors, distinct eta and (l, zeta)
        chunk, etas, angs = [], {}, {}
        for col, p in items:
            par = p.get_all_parameters()
            eta, ang = float(par["eta"]), (float(par["l"]), float(par["zeta"]))
            if len(chunk) == MAX_GROUP or (eta not in etas and len(etas) == MAX_GROUP) \
                    or (ang not in angs and len(angs) == MAX_GROUP):
                self._run(chunk, etas, angs, codes, cutoff, indptr, j_p, d_p, D_pc, spec_n, values_nf, jac_pf3,
                          grad, n_threads)
                chunk, etas, angs = [], {}, {}
            etas.setdefault(eta, len(etas))
            angs.setdefault(ang, len(angs))
            chunk.append((col, etas[eta], angs[ang], 2.0 ** (1.0 - ang[1]) * float(par["epsilon"])))
        if chunk:
            self._run(chunk, etas, angs, codes, cutoff, indptr, j_p, d_p, D_pc, spec_n, values_nf, jac_pf3,
                      grad, n_threads)

    def _run(self, chunk, etas, angs, codes, cutoff, indptr, j_p, d_p, D_pc, spec_n, values_nf, jac_pf3, grad,
             n_threads):
        eta_e = np.array(list(etas), dtype=np.float64)
        l_k = np.array([a[0] for a in angs], dtype=np.float64)
        zeta_k = np.array([a[1] for a in angs], dtype=np.float64)
        izeta_k = np.array([_integer_zeta(a[1]) for a in angs], dtype=np.int32)
        cols = np.array([c[0] for c in chunk], dtype=np.int32)
        e_f = np.array([c[1] for c in chunk], dtype=np.int32)
        k_f = np.array([c[2] for c in chunk], dtype=np.int32)
        pref_f = np.array([c[3] for c in chunk], dtype=np.float64)
        if codes[1] == codes[2]:
            pref_f *= 2.0  # the kernel visits each unordered pair of equal-species neighbours once
        n_pairs = len(j_p)
        g_pe = np.empty((n_pairs, len(eta_e)))
        dg_pe = np.empty((n_pairs, len(eta_e)))
        u_pc = np.empty((n_pairs, 3))
        sel_p = np.empty(n_pairs, dtype=np.int64)
        _k.batch_triple_reduce(self.code, cutoff, eta_e, l_k, zeta_k, izeta_k, e_f, k_f, pref_f, cols, indptr,
                               j_p, d_p, D_pc, spec_n, codes[0], codes[1], codes[2], g_pe, dg_pe, u_pc, sel_p,
                               values_nf, jac_pf3, grad, n_threads)


class OnSiteBackend:
    """A constant energy ``v0`` for every atom of the tagged species (no gradient)."""

    def accumulate(self, potential, nw, energy_n, grad_pc, n_threads):
        (code,) = potential.species_codes(nw)
        spec_n = np.asarray(nw.spec_encoded_row)
        n_pairs = grad_pc.shape[0] if grad_pc is not None else 0
        check_buffers(energy_n, grad_pc, len(spec_n), n_pairs)
        energy_n[spec_n == code] += float(potential.parameters["v0"])


def _n_positional(fn):
    """Number of positional parameters a callable accepts (a large number for ``*args``)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 99
    n = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return 99
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


def _call(fn, name, expected_len, *args):
    """Call a user function with as many of ``args`` as it accepts; check the result is [expected_len]."""
    n = _n_positional(fn)
    out = fn(*args[: max(1, min(n, len(args)))])
    out = np.asarray(out, dtype=np.float64)
    if out.ndim == 0:
        out = np.full(expected_len, float(out))
    if out.shape != (expected_len,):
        raise ValueError(f"parameter {name!r} returned shape {out.shape}, expected ({expected_len},)")
    if not np.all(np.isfinite(out)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(f"parameter {name!r} returned {bad} non-finite value(s) (NaN or inf) for {expected_len} "
                         f"inputs; first at r = {float(args[0][~np.isfinite(out)][0]):g} Å")
    return out


def _selected_pairs(codes, cutoff, indptr, j_p, d_p, spec_n):
    i_p = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    mask = (d_p < cutoff) & (spec_n[i_p] == codes[0]) & (spec_n[j_p] == codes[1])
    return np.nonzero(mask)[0], i_p


class GeneralPairBackend:
    """Pair family from Python callables ``f(r, row, col)`` and ``df_dr(r, row, col)`` (numpy, serial).

    ``row``/``col`` are the species codes of the centre and neighbour atoms (int32 arrays, one per pair);
    a callable taking only ``r`` is called with ``r`` alone.
    """

    def accumulate(self, potential, nw, energy_n, grad_pc, n_threads):
        codes = potential.species_codes(nw)
        indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, potential.cutoff)
        check_buffers(energy_n, grad_pc, len(spec_n), len(j_p))
        sel, i_p = _selected_pairs(codes, potential.cutoff, indptr, j_p, d_p, spec_n)
        if len(sel) == 0:
            return
        r, row, col = d_p[sel], spec_n[i_p[sel]], spec_n[j_p[sel]]
        par = potential.parameters
        energy_n += np.bincount(i_p[sel], weights=_call(par["f"], "f", len(sel), r, row, col),
                                minlength=len(energy_n))
        if grad_pc is not None:
            df = _call(par["df_dr"], "df_dr", len(sel), r, row, col)
            grad_pc[sel] += (df / r)[:, None] * D_pc[sel]


class GeneralTripleBackend:
    """Triplet family from Python callables ``f(r1, r2, cos_t, row, col1, col2)`` and its derivatives
    ``df_dr1``, ``df_dr2``, ``df_dt`` (by ``cos_t``), evaluated on all ordered neighbour pairs (j, k),
    j != k, with numpy (serial)."""

    def accumulate(self, potential, nw, energy_n, grad_pc, n_threads):
        codes = potential.species_codes(nw)
        indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, potential.cutoff)
        check_buffers(energy_n, grad_pc, len(spec_n), len(j_p))
        i_p = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        valid = np.nonzero((d_p < potential.cutoff) & (spec_n[i_p] == codes[0]))[0]
        if len(valid) == 0:
            return
        # all ordered pairs of valid pairs sharing the centre atom
        counts = np.bincount(i_p[valid], minlength=len(indptr) - 1)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        per = counts[i_p[valid]]
        a = np.repeat(np.arange(len(valid)), per)
        offset = np.arange(len(a)) - np.repeat(np.cumsum(per) - per, per)
        b = starts[i_p[valid]][a] + offset
        p1, p2 = valid[a], valid[b]
        keep = (p1 != p2) & (spec_n[j_p[p1]] == codes[1]) & (spec_n[j_p[p2]] == codes[2])
        p1, p2 = p1[keep], p2[keep]
        if len(p1) == 0:
            return
        r1, r2 = d_p[p1], d_p[p2]
        u1, u2 = D_pc[p1] / r1[:, None], D_pc[p2] / r2[:, None]
        c = np.einsum("tc,tc->t", u1, u2)
        row, col1, col2 = spec_n[i_p[p1]], spec_n[j_p[p1]], spec_n[j_p[p2]]
        par = potential.parameters
        args = (r1, r2, c, row, col1, col2)
        energy_n += np.bincount(i_p[p1], weights=_call(par["f"], "f", len(p1), *args), minlength=len(energy_n))
        if grad_pc is not None:
            f1 = _call(par["df_dr1"], "df_dr1", len(p1), *args)
            f2 = _call(par["df_dr2"], "df_dr2", len(p1), *args)
            ft = _call(par["df_dt"], "df_dt", len(p1), *args)
            g1 = (f1 - ft * c / r1)[:, None] * u1 + (ft / r1)[:, None] * u2
            g2 = (f2 - ft * c / r2)[:, None] * u2 + (ft / r2)[:, None] * u1
            for k in range(3):
                grad_pc[:, k] += np.bincount(p1, weights=g1[:, k], minlength=len(j_p))
                grad_pc[:, k] += np.bincount(p2, weights=g2[:, k], minlength=len(j_p))
