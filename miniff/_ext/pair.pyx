# cython: language_level=3
"""Pair reductions of miniff's compiled core (private; called through ``miniff._ext.kernel_module``).

Pair potentials (harmonic, Lennard-Jones, Stillinger-Weber 2) as per-pair gradients (``pair_reduce``) or
gathered per atom with virials (``pair_reduce_atoms``), batched cutoff pair descriptors
(``batch_pair_reduce``), per-pair gradients to atoms (``pair_gradient_to_atoms``), virials (``pair_virial``),
``zero_rows``, and the argument checks shared with ``triple.pyx`` (declared in ``pair.pxd``).
"""

# Every kernel loops (OpenMP ``prange``) over centre atoms ``i`` and the pairs
# ``p = indptr[i] .. indptr[i + 1] - 1`` of the CSR pair list (DEVELOPING.md,
# Contract 1). Work for atom ``i`` is done by one thread in a fixed order, and
# a pair's gradient is only written by the thread owning its centre atom, so
# results do not depend on the number of threads. Outputs are *accumulated*
# (``+=``) into preallocated, zero-initialised arrays (``sw_reduce(overwrite=True)``
# sets every gradient instead). The def functions check shapes and that indptr
# never decreases; a neighbour index outside [0, N) is never used to index
# (it matches no species; ``pair_gradient_to_atoms`` raises). Pairs with
# ``d_p >= cutoff`` of the potential are skipped (the list may be longer:
# Verlet skin). Radial factors exp(x) with x < RED_EXP_FLOOR count as 0.
#
# Species selection: ``sa`` centre, ``sb``/``sc`` neighbours (int32 codes of
# ``spec_n``); ``-1`` matches every species.
#
# Gradients are per pair: ``grad_pc[p] = d energy_n[i_p] / d D_pc[p]``.

from libc.math cimport exp
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memset
from cython.parallel cimport prange

from miniff._ext.common cimport (
    RED_PAIR_HARMONIC, RED_PAIR_LJ, RED_PAIR_SW2, RED_FC_BEHLER2, RED_FC_SIGMOID, RED_TRIPLE_SW3,
    RED_TRIPLE_BEHLER5X, RED_MAX_GROUP, PairConst, PairSums, SW2Const, _match, _nb_spec, _cosine_cutoff,
    _pair_const, _pair_term, _sums_add, _sums_store, _sw2_const, _sw2_term, _vexp,
)
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED
from miniff._ext.pairdesc cimport _batch_pair_atom, _zero_atom_rows

__all__ = ["pair_reduce", "pair_reduce_atoms", "batch_pair_reduce", "pair_gradient_to_atoms", "pair_virial",
           "zero_rows"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext


# ---------------------------------------------------------------------------------------------
# Pair families without a cosine cutoff (harmonic repulsion, Lennard-Jones, Stillinger-Weber 2)
# ---------------------------------------------------------------------------------------------

# Number of parameters ``par`` must hold for each pair / triplet family code (checked in the def functions).
cdef inline int _n_par(int fam) noexcept nogil:
    if fam == RED_PAIR_HARMONIC:
        return 2
    if fam == RED_PAIR_LJ:
        return 2
    if fam == RED_PAIR_SW2:
        return 9
    if fam == RED_TRIPLE_SW3:
        return 6
    if fam == RED_TRIPLE_BEHLER5X:
        return 5
    return -1


cdef void _pair_atom(Py_ssize_t i, Py_ssize_t n, int fam, const double* par, double cutoff,
                     const int64_t* indptr, const int32_t* j_p, const double* d_p, const double* D_pc,
                     const int32_t* spec_n, int sb, double* energy_n, double* grad_pc, bint grad) noexcept nogil:
    """Pairs of centre atom ``i``: energy_n[i] += sum f(r), grad_pc[p] += f'(r) D_pc[p] / r.

    ``par`` (see ``_n_par``): harmonic (a, epsilon); LJ (epsilon, sigma); SW2 (epsilon, sigma, a, p, q,
    gauge_a, gauge_b, int p or -1, int q or -1): integer exponents use repeated multiplication, others pow().
    """
    cdef Py_ssize_t p
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef double r, ir, f, g, e = 0.0
    cdef double c0, c1, t, s2, s6
    cdef SW2Const k2
    if fam == RED_PAIR_SW2:
        k2 = _sw2_const(par)
        for p in range(p0, pe):
            r = d_p[p]
            if r >= cutoff or (sb >= 0 and _nb_spec(spec_n, j_p[p], n) != sb):
                continue
            e = e + _sw2_term(&k2, r, 1.0 / r, 0.0, &g)
            if grad:
                grad_pc[3 * p] += g * D_pc[3 * p]
                grad_pc[3 * p + 1] += g * D_pc[3 * p + 1]
                grad_pc[3 * p + 2] += g * D_pc[3 * p + 2]
    elif fam == RED_PAIR_LJ:
        # f = 4 eps ((sigma / r)^12 - (sigma / r)^6)
        c0 = 4.0 * par[0]
        c1 = par[1] * par[1]
        for p in range(p0, pe):
            r = d_p[p]
            if r >= cutoff or (sb >= 0 and _nb_spec(spec_n, j_p[p], n) != sb):
                continue
            ir = 1.0 / r
            s2 = c1 * ir * ir
            s6 = s2 * s2 * s2
            e = e + c0 * (s6 * s6 - s6)
            if grad:
                g = c0 * (6.0 * s6 - 12.0 * s6 * s6) * ir * ir
                grad_pc[3 * p] += g * D_pc[3 * p]
                grad_pc[3 * p + 1] += g * D_pc[3 * p + 1]
                grad_pc[3 * p + 2] += g * D_pc[3 * p + 2]
    elif fam == RED_PAIR_HARMONIC:
        # f = eps (r - a)^2 / (2 a^2)
        c0 = par[1] / (par[0] * par[0])
        for p in range(p0, pe):
            r = d_p[p]
            if r >= cutoff or (sb >= 0 and _nb_spec(spec_n, j_p[p], n) != sb):
                continue
            t = r - par[0]
            e = e + 0.5 * c0 * t * t
            if grad:
                g = c0 * t / r
                grad_pc[3 * p] += g * D_pc[3 * p]
                grad_pc[3 * p + 1] += g * D_pc[3 * p + 1]
                grad_pc[3 * p + 2] += g * D_pc[3 * p + 2]
    energy_n[i] += e


cdef int _check_indptr(const int64_t[::1] indptr, Py_ssize_t n_pairs, int n_threads) except -1:
    """indptr [N+1] must start at 0, end at n_pairs and never decrease (so every row lies inside the pairs)."""
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    cdef long nbad = 0
    if n < 0 or indptr[0] != 0 or indptr[n] != n_pairs:
        raise ValueError("indptr must start at 0 and end at the number of pairs")
    if n_threads > 1 and n > 500000:
        for i in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
            if indptr[i + 1] < indptr[i]:
                nbad += 1
    else:
        with nogil:
            for i in range(n):
                if indptr[i + 1] < indptr[i]:
                    nbad += 1
    if nbad:
        raise ValueError("indptr must be non-decreasing")
    return 0


cdef int _check_reduce_args(int fam, const double[::1] par, const int64_t[::1] indptr, const int32_t[::1] j_p,
                            const double[::1] d_p, const double[:, ::1] D_pc, const int32_t[::1] spec_n,
                            double[::1] energy_n, double[:, ::1] grad_pc, bint grad, int n_threads=1,
                            bint check_rows=True) except -1:
    """Consistency checks of the arrays handed to pair_reduce / triple_reduce (raise ValueError): shapes, and
    with ``check_rows`` that indptr never decreases (O(N))."""
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef Py_ssize_t n_pairs = j_p.shape[0]
    if _n_par(fam) < 0 or par.shape[0] < _n_par(fam):
        raise ValueError(f"family code {fam} needs {_n_par(fam)} parameters, got {par.shape[0]}")
    if n < 0 or spec_n.shape[0] != n or energy_n.shape[0] != n:
        raise ValueError("indptr, spec_n and energy_n disagree on the number of atoms")
    if indptr[0] != 0 or indptr[n] != n_pairs or d_p.shape[0] != n_pairs or D_pc.shape[0] != n_pairs \
            or D_pc.shape[1] != 3:
        raise ValueError("indptr, j_p, d_p and D_pc disagree on the number of pairs")
    if grad and (grad_pc.shape[0] != n_pairs or grad_pc.shape[1] != 3):
        raise ValueError("grad_pc must have shape (n_pairs, 3)")
    if check_rows:
        _check_indptr(indptr, n_pairs, n_threads)
    return 0


def pair_reduce(int fam, const double[::1] par, double cutoff,
                const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb,
                double[::1] energy_n, double[:, ::1] grad_pc, bint grad, int n_threads):
    """Accumulate a pair family's per-atom energies [N] (eV) and per-pair gradients [P, 3] (eV/Å)."""
    _check_reduce_args(fam, par, indptr, j_p, d_p, D_pc, spec_n, energy_n, grad_pc, grad, n_threads)
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    if n == 0 or j_p.shape[0] == 0:
        return
    cdef const double* ppar = &par[0]
    cdef const int64_t* pind = &indptr[0]
    cdef const int32_t* pj = &j_p[0]
    cdef const double* pd = &d_p[0]
    cdef const double* pD = &D_pc[0, 0]
    cdef const int32_t* pspec = &spec_n[0]
    cdef double* pe = &energy_n[0]
    cdef double* pg = &grad_pc[0, 0] if grad else NULL
    for i in prange(n, nogil=True, num_threads=max(1, n_threads), schedule="guided"):
        if _match(pspec[i], sa):
            _pair_atom(i, n, fam, ppar, cutoff, pind, pj, pd, pD, pspec, sb, pe, pg, grad)


cdef void _pair_atom_direct(Py_ssize_t i, Py_ssize_t n, int fam, const double* par, double cutoff,
                            const int64_t* indptr, const int32_t* j_p, const double* d_p, const double* D_pc,
                            const int32_t* spec_n, int sa, int sb, double* energy_n, double* grad_nc,
                            bint grad, double* vir_n9) noexcept nogil:
    """Pair term of tag sa-sb at atom ``i``: its energy (when i is of species sa) and dE/dr_i of the whole
    term, gathered from the pairs of row i: pair p counts once for i's energy (i in sa, j in sb) and once
    for j's energy through the reverse pair (j in sa, i in sb), and both give -f'(r) D_p / r.
    ``vir_n9`` (or NULL): atom i's virial sum_p dE_i/dD_p (x) D_p over its own pairs, [N, 9] eV."""
    cdef Py_ssize_t p
    cdef Py_ssize_t p0 = indptr[i]
    cdef Py_ssize_t pe = indptr[i + 1]
    cdef int32_t si = spec_n[i], sj
    cdef bint ia = _match(si, sa)
    cdef bint ib = _match(si, sb)
    cdef int wt
    cdef double r, f, g
    cdef PairConst k
    cdef PairSums a
    if not (ia or ib):
        return
    k = _pair_const(fam, par)
    memset(&a, 0, sizeof(PairSums))
    for p in range(p0, pe):
        r = d_p[p]
        if r >= cutoff:
            continue
        sj = _nb_spec(spec_n, j_p[p], n)
        wt = 0
        if ia and (sb < 0 or sj == sb):
            wt = 1
        if ib and (sa < 0 or sj == sa) and sj != -2:
            wt = wt + 2
        if wt == 0:
            continue
        f = _pair_term(&k, r, 1.0 / r, &g)
        _sums_add(&a, wt, f, g, D_pc[3 * p], D_pc[3 * p + 1], D_pc[3 * p + 2], vir_n9 != NULL)
    _sums_store(&a, i, energy_n, grad_nc if grad else NULL, vir_n9)


def pair_reduce_atoms(int fam, const double[::1] par, double cutoff,
                      const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                      const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb,
                      double[::1] energy_n, double[:, ::1] grad_nc, bint grad, int n_threads,
                      double[:, ::1] virial_n9=None):
    """Pair family: accumulate per-atom energies [N] (eV), the per-atom gradient dE/dr [N, 3] (eV/Å) and,
    when ``virial_n9`` [N, 9] is given, the per-atom virials sum_p grad_pc[p] (x) D_pc[p] (eV, the same as
    ``pair_virial`` of the per-pair gradients) directly, without per-pair gradients.

    Uses that the pair list is full (Contract 1: every pair (i, j, S) has its reverse (j, i, -S)), so the
    gradient of atom i is gathered from its own row; every thread writes only its own atoms.
    """
    _check_reduce_args(fam, par, indptr, j_p, d_p, D_pc, spec_n, energy_n, grad_nc, False, n_threads)
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    if fam != RED_PAIR_HARMONIC and fam != RED_PAIR_LJ and fam != RED_PAIR_SW2:
        raise ValueError(f"unknown pair family code {fam}")
    if grad and (grad_nc.shape[0] != n or grad_nc.shape[1] != 3):
        raise ValueError("grad_nc must have shape (n_atoms, 3)")
    if virial_n9 is not None and (virial_n9.shape[0] != n or virial_n9.shape[1] != 9):
        raise ValueError("virial_n9 must have shape (n_atoms, 9)")
    if n == 0 or j_p.shape[0] == 0:
        return
    cdef double* pv = &virial_n9[0, 0] if virial_n9 is not None else NULL
    cdef const double* ppar = &par[0]
    cdef const int64_t* pind = &indptr[0]
    cdef const int32_t* pj = &j_p[0]
    cdef const double* pd = &d_p[0]
    cdef const double* pD = &D_pc[0, 0]
    cdef const int32_t* pspec = &spec_n[0]
    cdef double* pe = &energy_n[0]
    cdef double* pg = &grad_nc[0, 0] if grad else NULL
    for i in prange(n, nogil=True, num_threads=max(1, n_threads), schedule="guided"):
        _pair_atom_direct(i, n, fam, ppar, cutoff, pind, pj, pd, pD, pspec, sa, sb, pe, pg, grad, pv)


# ---------------------------------------------------------------------------------------------
# Batched pair descriptors sharing one cosine cutoff a: value = h(r) * f_c(r) (per atom: pairdesc.pxd)
# ---------------------------------------------------------------------------------------------

def batch_pair_reduce(int fam, const double[:, ::1] par, const int32_t[::1] cols, double a,
                      const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                      const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sa, int sb,
                      double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad, int n_threads,
                      bint zero_jac=False):
    """Accumulate F <= 64 cutoff-sharing pair descriptors into values [N, Ftot] and jac [P, 3 Ftot].

    ``zero_jac`` (with ``grad``): first set every row of ``jac`` to 0, all ``3 Ftot`` columns of the pairs of
    every atom (of any species), by the thread that then adds this call's terms to them: the zeroing and the
    first pass over a Jacobian buffer in one sweep (its rows are still in cache when the terms are added).
    """
    cdef Py_ssize_t i, n = indptr.shape[0] - 1
    if cols.shape[0] > RED_MAX_GROUP or par.shape[0] != cols.shape[0] or par.shape[1] < 2:
        raise ValueError(f"par [F, >= 2] and cols [F] with F <= {RED_MAX_GROUP} descriptors per call")
    if grad and zero_jac and jac_pf3.shape[0] != indptr[n]:
        raise ValueError("zero_jac: jac must have one row per pair of indptr")
    zero_jac = zero_jac and grad
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="dynamic", chunksize=32):
        if zero_jac:
            _zero_atom_rows(i, indptr, jac_pf3)
        if _match(spec_n[i], sa):
            _batch_pair_atom(i, fam, par, cols, a, indptr, j_p, d_p, D_pc, spec_n, sb, values_nf, jac_pf3, grad)


# ---------------------------------------------------------------------------------------------
# Per-pair gradients -> atoms, and virials
# ---------------------------------------------------------------------------------------------

cdef long _scatter_range(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n, const int64_t* indptr, const int32_t* j_p,
                         const double* grad_pc, double* out_nc, bint count_bad) noexcept nogil:
    """The updates of ``pair_gradient_to_atoms`` that touch atoms lo <= x < hi, in pair order.

    Neighbour indices outside [0, n) are never written; with ``count_bad`` they are counted.
    """
    cdef Py_ssize_t i, p, j, k
    cdef long bad = 0
    cdef bint own
    for i in range(n):
        own = lo <= i < hi
        for p in range(indptr[i], indptr[i + 1]):
            j = j_p[p]
            if lo <= j < hi:
                for k in range(3):
                    out_nc[3 * j + k] += grad_pc[3 * p + k]
            elif count_bad and (j < 0 or j >= n):
                bad = bad + 1
            if own:
                for k in range(3):
                    out_nc[3 * i + k] -= grad_pc[3 * p + k]
    return bad


def pair_gradient_to_atoms(const int64_t[::1] indptr, const int32_t[::1] j_p, const double[:, ::1] grad_pc,
                           double[:, ::1] out_nc, int n_threads=1):
    """out[j_p] += grad_pc[p], out[i_p] -= grad_pc[p]: per-pair gradients [P, 3] to atoms [N, 3] (eV/Å).

    Thread t owns the atoms of one contiguous range and applies, in pair order, every update touching
    them: each atom receives the same additions in the same order for any thread count (bitwise
    identical results). Raises ValueError on inconsistent shapes or neighbour indices outside [0, N).
    """
    cdef Py_ssize_t i, t, n = indptr.shape[0] - 1
    cdef Py_ssize_t n_pairs = j_p.shape[0]
    cdef int nt = max(1, n_threads)
    cdef long nbad = 0
    if n < 0 or out_nc.shape[0] != n or out_nc.shape[1] != 3:
        raise ValueError("out_nc must have shape (n_atoms, 3)")
    if indptr[0] != 0 or indptr[n] != n_pairs or grad_pc.shape[0] != n_pairs or grad_pc.shape[1] != 3:
        raise ValueError("indptr, j_p and grad_pc disagree on the number of pairs")
    if n == 0 or n_pairs == 0:
        return
    _check_indptr(indptr, n_pairs, nt)
    cdef const int64_t* pind = &indptr[0]
    cdef const int32_t* pj = &j_p[0]
    cdef const double* pg = &grad_pc[0, 0]
    cdef double* pout = &out_nc[0, 0]
    for t in prange(nt, nogil=True, num_threads=nt, schedule="static", chunksize=1):
        nbad += _scatter_range(t * n // nt, (t + 1) * n // nt, n, pind, pj, pg, pout, t == 0)
    if nbad:
        raise ValueError("neighbour indices j_p must lie in [0, n_atoms) (those pairs were not applied)")


def pair_virial(const int64_t[::1] indptr, const double[:, ::1] grad_pc, const double[:, ::1] D_pc,
                double[:, ::1] out_n9, int n_threads):
    """out[i, 3 a + b] += sum over pairs of i of grad_pc[p, a] * D_pc[p, b] (eV)."""
    cdef Py_ssize_t i, p, a, b, n = indptr.shape[0] - 1
    for i in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        for p in range(indptr[i], indptr[i + 1]):
            for a in range(3):
                for b in range(3):
                    out_n9[i, 3 * a + b] += grad_pc[p, a] * D_pc[p, b]


def zero_rows(double[:, ::1] out, int n_threads):
    """Set ``out`` to 0 with OpenMP threads (first touch of fresh pages happens in parallel)."""
    cdef Py_ssize_t p, k, n = out.shape[0], m = out.shape[1]
    for p in prange(n, nogil=True, num_threads=n_threads, schedule="static"):
        for k in range(m):
            out[p, k] = 0.0
