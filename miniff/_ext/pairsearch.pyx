# cython: language_level=3
"""Fused neighbour search and pair-potential pass of miniff's compiled core (private): ``pair_search_reduce``.

For sets of plain pair potentials (harmonic, Lennard-Jones, SW2) the energies, the per-atom gradient and the
per-atom virials are summed while the cell list is walked, without storing a pair list: memory O(N) instead
of O(pairs), and no pass writing and re-reading the pairs. The grid, the candidates of a bin and the
distance test are those of the neighbour search (``neighbors.pxd``); the pair terms are ``_pair_term`` of
``common.pxd``, as in ``pair.pyx``'s per-atom gather.
"""

# Work split (Newton's third law, as LAMMPS' half lists): the caller passes the *half* stencil, the bin
# offsets k >= (0, 0, 0) in lexicographic order; within the own bin (k = 0) atom i takes the atoms after it
# (the own bin comes first among a bin's candidates, so its distance tests start after atom i). Every pair
# (i, j, image) is then met once, from one of its two atoms, and its terms are added to both: half the
# distance tests and half the pair terms of a full walk. A call is ONE parallel region (``miniff_two_phases``
# of ``_openmp.pxd``): every thread zeroes its buffer and walks a contiguous block of bins (fixed for a given
# thread count), adding into its own buffer (per atom in bin order: energy, dE/dr and, with virials, the
# virial); after a barrier every thread sums all buffers, in thread order, for a block of atoms. Results are
# therefore reproducible for a given thread count and differ between thread counts only by the order of
# floating-point sums. The buffers are kept between calls (no page faults in steady state).
#
# One species and one Lennard-Jones term (the common case): every pair evaluated as it is met, two at a time
# (``_pairsearch_c.pxd``). Otherwise the hits of an atom (candidate order: the bin offsets in lexicographic
# order, atoms of a bin by index) are copied into a per-thread scratch (vector, distance, species, bin-order
# position), then every term runs over that scratch.

from libc.math cimport sqrt
from libc.stdint cimport int64_t, int32_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset

import numpy as np

from miniff._ext.common cimport (
    RED_PAIR_HARMONIC, RED_PAIR_LJ, RED_PAIR_SW2, PairConst, PairSums, _match, _pair_const, _pair_term, _sums_add,
    _sums_store,
)
from miniff._ext.neighbors cimport (
    _NLGrid, _NLThr, _check_half_stencil, _nl_free, _nl_gather, _nl_pieces, _nl_reserve, _nl_setup,
)
from miniff._ext._openmp cimport MINIFF_OPENMP_ENABLED, miniff_two_phases
from miniff._ext._pairsearch_c cimport miniff_ps_lj_atom, miniff_ps_select

__all__ = ["pair_search_reduce", "half_stencil", "MAX_PAIR_TERMS"]

_OPENMP_ENABLED = bool(MINIFF_OPENMP_ENABLED)  # checked against the other modules by miniff._ext

cdef enum:
    _MAX_TERMS = 64

#: Largest number of pair terms of one call.
MAX_PAIR_TERMS = _MAX_TERMS


cdef struct _Terms:
    int n
    PairConst k[_MAX_TERMS]
    double cut[_MAX_TERMS]
    int sa[_MAX_TERMS]
    int sb[_MAX_TERMS]


cdef struct _Scratch:
    # hits of the current atom: pair vector, squared distance, neighbour species (capacity cap)
    double* dx
    double* dy
    double* dz
    double* r2
    int32_t* sj
    int64_t* tj      # neighbour's position in bin order
    double* f        # Lennard-Jones energy and g = f'(r) / r of every hit (one term at a time)
    double* g
    int32_t* ct      # bin-order position of every candidate of the current bin
    int64_t cap
    # first coincident pair met by the thread: original indices (-1: none)
    int64_t coincident_i
    int64_t coincident_j


cdef struct _Walk:
    # everything a thread needs for its share of the walk and of the reduction
    _NLGrid* g
    _Scratch* scratch
    const _Terms* terms
    const int32_t* spec_n
    bint one_species
    double r2_coincident
    int64_t n
    int64_t nb_total
    int stride          # doubles per atom in a thread buffer: e, dE/dr (3) and, with virials, 6 more
    bint virial
    double* buf         # [n_threads, n, stride] per-thread sums in bin order
    bint buf_zeroed     # buf is fresh zeroed memory (not zeroed again: untouched pages stay unallocated)
    int lj_wt           # Lennard-Jones path: weight bits of its only term (0: general path)
    double lj_c0
    double lj_c1
    double lj_cut2
    double* energy_n    # outputs (original order, +=); grad and virial may be NULL
    double* grad_nc
    double* vir_n9


cdef int _scratch_reserve(_Scratch* sc, int64_t need) noexcept nogil:
    if need <= sc.cap:
        return 0
    free(sc.dx)
    free(sc.dy)
    free(sc.dz)
    free(sc.r2)
    free(sc.sj)
    free(sc.tj)
    free(sc.f)
    free(sc.g)
    free(sc.ct)
    sc.cap = need if need > 2 * sc.cap else 2 * sc.cap
    sc.dx = <double*> malloc(sc.cap * sizeof(double))
    sc.dy = <double*> malloc(sc.cap * sizeof(double))
    sc.dz = <double*> malloc(sc.cap * sizeof(double))
    sc.r2 = <double*> malloc(sc.cap * sizeof(double))
    sc.sj = <int32_t*> malloc(sc.cap * sizeof(int32_t))
    sc.tj = <int64_t*> malloc(sc.cap * sizeof(int64_t))
    sc.f = <double*> malloc(sc.cap * sizeof(double))
    sc.g = <double*> malloc(sc.cap * sizeof(double))
    sc.ct = <int32_t*> malloc(sc.cap * sizeof(int32_t))
    if (sc.dx == NULL or sc.dy == NULL or sc.dz == NULL or sc.r2 == NULL or sc.sj == NULL or sc.tj == NULL
            or sc.f == NULL or sc.g == NULL or sc.ct == NULL):
        sc.cap = 0
        return 1
    return 0


cdef inline void _lj_hits(double c0, double c1, const double* r2_h, double* f_h, double* g_h,
                          int64_t nh) noexcept nogil:
    """Lennard-Jones f = c0 (s^12 - s^6) and g = f'(r) / r = c0 (6 s^6 - 12 s^12) / r^2 (s^2 = c1 / r^2) of
    ``nh`` squared distances (a loop the compiler vectorises; same operations as ``_pair_term``)."""
    cdef int64_t h
    cdef double ir2, s6
    for h in range(nh):
        ir2 = 1.0 / r2_h[h]
        s6 = c1 * ir2
        s6 = s6 * s6 * s6
        g_h[h] = c0 * (6.0 * s6 - 12.0 * s6 * s6) * ir2
        f_h[h] = c0 * (s6 * s6 - s6)


cdef void _atom_terms(const _Terms* terms, int64_t s, int32_t si, const _Scratch* sc, int64_t nh, double* b,
                      int stride, bint virial) noexcept nogil:
    """Every term of the pairs of the atom at bin-order position ``s`` (species ``si``) with its ``nh`` hits in
    ``sc`` (each pair met once), added to both atoms in this thread's buffer ``b`` [N, stride] (bin order; per
    atom the energy, dE/dr (3) and, when ``virial``, the virial xx, yy, zz, xy, xz, yz).

    From atom i's side, bit 1 of ``wt`` marks the pair as i's own term (i matches the first species of the
    tag, j the second) and bit 2 as j's own term; the energy and virial of a pair go to the atoms owning it,
    the gradient to both atoms once per owner."""
    cdef int kt, wt, sa, sb
    cdef int64_t h
    cdef int32_t sj
    cdef bint ia, ib
    cdef double f, g, gj, r, r2, c0, c1, cut2, dx, dy, dz
    cdef double* bt
    cdef double* bs = b + stride * s
    cdef bint lj
    cdef PairSums a
    for kt in range(terms.n):
        sa = terms.sa[kt]
        sb = terms.sb[kt]
        ia = _match(si, sa)
        ib = _match(si, sb)
        if not (ia or ib):
            continue
        cut2 = terms.cut[kt] * terms.cut[kt]
        lj = terms.k[kt].fam == RED_PAIR_LJ
        c0 = terms.k[kt].c0
        c1 = terms.k[kt].c1
        memset(&a, 0, sizeof(PairSums))
        if lj:  # _pair_term's Lennard-Jones from r^2 (no square root), every hit at once: a loop without branches
            _lj_hits(c0, c1, sc.r2, sc.f, sc.g, nh)
        for h in range(nh):
            r2 = sc.r2[h]
            if r2 >= cut2:
                continue
            sj = sc.sj[h]
            wt = 0
            if ia and (sb < 0 or sj == sb):
                wt = 1
            if ib and (sa < 0 or sj == sa):
                wt = wt + 2
            if wt == 0:
                continue
            if lj:
                f = sc.f[h]
                g = sc.g[h]
            else:
                r = sqrt(r2)
                f = _pair_term(&terms.k[kt], r, 1.0 / r, &g)
            dx = sc.dx[h]
            dy = sc.dy[h]
            dz = sc.dz[h]
            _sums_add(&a, wt, f, g, dx, dy, dz, virial)
            bt = b + stride * sc.tj[h]
            gj = g + g if wt == 3 else g
            bt[1] += gj * dx
            bt[2] += gj * dy
            bt[3] += gj * dz
            if wt & 2:
                bt[0] += f
                if virial:
                    bt[4] += g * dx * dx
                    bt[5] += g * dy * dy
                    bt[6] += g * dz * dz
                    bt[7] += g * dx * dy
                    bt[8] += g * dx * dz
                    bt[9] += g * dy * dz
        bs[0] += a.e
        bs[1] -= a.gx
        bs[2] -= a.gy
        bs[3] -= a.gz
        if virial:
            bs[4] += a.vxx
            bs[5] += a.vyy
            bs[6] += a.vzz
            bs[7] += a.vxy
            bs[8] += a.vxz
            bs[9] += a.vyz


cdef inline void _atom_lj(const _Walk* w, _NLThr* th, _Scratch* sc, int64_t s, int64_t self_lo, double* b,
                          const bint virial) noexcept nogil:
    """The Lennard-Jones path of ``_bin``: the pairs of the atom at bin-order position ``s`` (its own bin's
    atoms from candidate ``self_lo`` up to it excluded), its only term evaluated as each pair is met and added to
    both atoms in ``b`` as ``_atom_terms`` does, with the weight bits ``w.lj_wt`` (the same for every pair)."""
    cdef _NLGrid* g = w.g
    cdef int32_t* hits = th.hits
    cdef int64_t a, k, nh, self_c = s + th.self_off, coincident = -1
    cdef double acc[10]
    cdef double* bs = b + w.stride * s
    memset(acc, 0, sizeof(acc))
    # own bin first among the candidates (always so for the half stencil): test only the atoms after this one
    nh = miniff_ps_select(th.cx, th.cy, th.cz, self_c + 1 if self_lo == 0 else 0, th.n_c, g.px[s], g.py[s],
                          g.pz[s], g.rc2, hits)
    if self_lo != 0:  # drop the own bin's atoms up to this one
        k = 0
        for a in range(nh):
            if not (self_lo <= hits[a] <= self_c):
                hits[k] = hits[a]
                k = k + 1
        nh = k
    miniff_ps_lj_atom(th.cx, th.cy, th.cz, hits, nh, sc.ct, g.px[s], g.py[s], g.pz[s], w.lj_c0, w.lj_c1,
                      w.lj_cut2, w.r2_coincident, 2.0 if w.lj_wt == 3 else 1.0, (w.lj_wt & 1) != 0,
                      (w.lj_wt & 2) != 0, virial, b, w.stride, acc, &coincident)
    if coincident >= 0 and sc.coincident_i < 0:
        sc.coincident_i = g.sorted_index[s]
        sc.coincident_j = g.sorted_index[sc.ct[coincident]]
    bs[0] += acc[0]
    bs[1] -= acc[1]
    bs[2] -= acc[2]
    bs[3] -= acc[3]
    if virial:
        for k in range(4, 10):
            bs[k] += acc[k]


cdef void _bin(const _Walk* w, int64_t flat, int tid, double* b) noexcept nogil:
    """The pairs of every atom of bin ``flat`` over the half stencil (thread ``tid``, its buffer ``b``); pairs
    with ``r^2 <= w.r2_coincident`` are not evaluated and the first is recorded (``r2_coincident`` < 0: none)."""
    cdef _NLGrid* g = w.g
    cdef _NLThr* th = &g.thr[tid]
    cdef _Scratch* sc = &w.scratch[tid]
    cdef int64_t s, a, c, t, k, nh, n_cand = 0, self_c, self_lo
    cdef int n_pieces, p
    cdef double xi, yi, zi, dx, dy, dz, r2
    cdef int32_t* hits
    cdef int32_t* ct
    cdef int64_t s_begin = g.bin_start[flat], s_end = g.bin_start[flat + 1]
    if s_begin == s_end or th.failed:
        return
    n_pieces = _nl_pieces(g, th, flat, &n_cand)
    if n_cand >= 2147483647 or _nl_reserve(th, n_cand + 1) or _scratch_reserve(sc, n_cand + 1):
        th.failed = 1
        return
    _nl_gather(th, g, n_pieces, s_begin, s_end)
    if not th.has_self:  # the stencil lacks offset (0, 0, 0): cannot happen with prepared offsets
        th.failed = 2
        return
    ct = sc.ct
    for p in range(n_pieces):  # bin-order position of every candidate
        c = th.pc_c0[p]
        for t in range(th.pc_t0[p], th.pc_t1[p]):
            ct[c] = <int32_t> t
            c = c + 1
    self_lo = s_begin + th.self_off
    if w.lj_wt:
        for s in range(s_begin, s_end):
            if w.virial:
                _atom_lj(w, th, sc, s, self_lo, b, 1)
            else:
                _atom_lj(w, th, sc, s, self_lo, b, 0)
        return
    hits = th.hits
    for s in range(s_begin, s_end):
        xi = g.px[s]
        yi = g.py[s]
        zi = g.pz[s]
        self_c = s + th.self_off
        nh = miniff_ps_select(th.cx, th.cy, th.cz, self_c + 1 if self_lo == 0 else 0, th.n_c, xi, yi, zi, g.rc2, hits)
        k = 0
        for a in range(nh):
            c = hits[a]
            if self_lo <= c <= self_c:  # own bin, same image: only the atoms after this one
                continue
            t = ct[c]
            dx = th.cx[c] - xi
            dy = th.cy[c] - yi
            dz = th.cz[c] - zi
            r2 = dx * dx + dy * dy + dz * dz
            if r2 <= w.r2_coincident:
                if sc.coincident_i < 0:
                    sc.coincident_i = g.sorted_index[s]
                    sc.coincident_j = g.sorted_index[t]
                continue
            sc.dx[k] = dx
            sc.dy[k] = dy
            sc.dz[k] = dz
            sc.r2[k] = r2
            sc.sj[k] = w.spec_n[0] if w.one_species else w.spec_n[g.sorted_index[t]]
            sc.tj[k] = t
            k = k + 1
        _atom_terms(w.terms, s, w.spec_n[g.sorted_index[s]], sc, k, b, w.stride, w.virial)


cdef void _walk_phase(void* ctx, int tid, int n_threads) noexcept nogil:
    """Phase 1 of a call: thread ``tid`` zeroes its buffer and walks its contiguous block of bins."""
    cdef _Walk* w = <_Walk*> ctx
    cdef int64_t fb, stride = w.stride
    cdef double* b = w.buf + tid * w.n * stride
    if not w.buf_zeroed:
        memset(b, 0, w.n * stride * sizeof(double))
    for fb in range(w.nb_total * tid // n_threads, w.nb_total * (tid + 1) // n_threads):
        _bin(w, fb, tid, b)


cdef void _reduce_phase(void* ctx, int tid, int n_threads) noexcept nogil:
    """Phase 2: thread ``tid`` sums the buffers of all threads (in thread order) for its block of atoms (bin
    order) into the outputs (original order, ``+=``)."""
    cdef _Walk* w = <_Walk*> ctx
    cdef int64_t s, i, n = w.n, stride = w.stride
    cdef int k, q
    cdef double acc[10]
    cdef const double* bk
    cdef double* v9
    for s in range(n * tid // n_threads, n * (tid + 1) // n_threads):
        for q in range(stride):
            acc[q] = 0.0
        for k in range(n_threads):
            bk = w.buf + (k * n + s) * stride
            for q in range(stride):
                acc[q] = acc[q] + bk[q]
        i = w.g.sorted_index[s]
        w.energy_n[i] += acc[0]
        if w.grad_nc != NULL:
            w.grad_nc[3 * i] += acc[1]
            w.grad_nc[3 * i + 1] += acc[2]
            w.grad_nc[3 * i + 2] += acc[3]
        if w.vir_n9 != NULL:
            v9 = w.vir_n9 + 9 * i
            v9[0] += acc[4]
            v9[1] += acc[7]
            v9[2] += acc[8]
            v9[3] += acc[7]
            v9[4] += acc[5]
            v9[5] += acc[9]
            v9[6] += acc[8]
            v9[7] += acc[9]
            v9[8] += acc[6]


#: Per-thread buffers of the last call, reused by the next (fresh memory costs a page fault per 4 kB); a list
#: used as a stack: pop and append are atomic, so concurrent calls never share a buffer.
_KEPT = []
#: Buffers larger than this (bytes) are not kept between calls (a fresh one is zeroed by the system; a thread
#: touches little more than the atoms of its bins and their neighbours, so about 1 / n_threads of it is resident).
_KEEP_BYTES = 64 * 2**20


def half_stencil(offsets):
    """The stencil of ``pair_search_reduce``, which meets every pair once: the offsets ``k >= (0, 0, 0)``
    (lexicographic order) of the stencil ``offsets`` [K, 3] made symmetric (``k`` kept when ``k`` or ``-k``
    is in it), and ``(0, 0, 0)``; a new contiguous [K', 3] int32 array in lexicographic order."""
    k = np.asarray(offsets, dtype=np.intc).reshape(-1, 3)
    k = np.concatenate([k, -k, np.zeros((1, 3), dtype=np.intc)])
    keep = (k[:, 0] > 0) | ((k[:, 0] == 0) & ((k[:, 1] > 0) | ((k[:, 1] == 0) & (k[:, 2] >= 0))))
    return np.ascontiguousarray(np.unique(k[keep], axis=0), dtype=np.intc)


def pair_search_reduce(const double[:, ::1] frac, const double[:, ::1] xyz, const int32_t[:, ::1] shift,
                       const double[:, ::1] vectors, const int[::1] n_bins, const int[::1] periodic,
                       const double[::1] frac_min, const double[::1] bin_width, const int[:, ::1] offsets,
                       double cutoff, int n_threads, unsigned char[::1] work, const int32_t[::1] spec_n,
                       const int32_t[::1] fam_k, const double[:, ::1] par_k, const double[::1] cutoff_k,
                       const int32_t[::1] sa_k, const int32_t[::1] sb_k, double[::1] energy_n,
                       double[:, ::1] grad_nc=None, double[:, ::1] virial_n9=None, double coincident=0.0):
    """Pair terms summed during the cell-list walk, without a pair list (private; the search arguments are
    those of ``neighbors.neighbor_search`` with no image limit, prepared by ``miniff.neighbors.search``,
    except ``offsets``: the half stencil, the offsets ``k >= (0, 0, 0)`` in lexicographic order, see
    ``half_stencil``).

    Term ``k`` is family ``fam_k[k]`` (a plain pair family code) with parameters ``par_k[k, :]`` (as
    ``pair_reduce_atoms``), cutoff ``cutoff_k[k] <= cutoff`` (Å) and species tag ``sa_k[k]-sb_k[k]`` (codes of
    ``spec_n`` [N] int32 >= 0, or -1 for any). Accumulates (``+=``) per-atom energies ``energy_n`` [N] (eV),
    dE/dr ``grad_nc`` [N, 3] (eV/Å) and per-atom virials ``virial_n9`` [N, 9] (eV), each when given.

    Pairs closer than ``coincident`` (Å; negative: no check, zero: exactly coincident atoms) are not evaluated.

    Returns
    -------
    None, or ``(i, j)``: the original indices of two atoms closer than ``coincident`` (nothing was accumulated
    for that pair; the caller raises).
    """
    cdef int64_t n = frac.shape[0]
    cdef int64_t fb, nbytes
    cdef int tid, kt, wt, n_terms = fam_k.shape[0]
    cdef _NLGrid g
    cdef _Terms terms
    cdef _Walk w
    cdef _Scratch* scratch = NULL
    cdef double[::1] buf_view
    image_limit = np.full(3, -1, dtype=np.intc)
    if n_terms > _MAX_TERMS:
        raise ValueError(f"at most {_MAX_TERMS} pair terms per call, got {n_terms}")
    if (par_k.shape[0] != n_terms or cutoff_k.shape[0] != n_terms or sa_k.shape[0] != n_terms
            or sb_k.shape[0] != n_terms or spec_n.shape[0] != n or energy_n.shape[0] != n
            or (n_terms and par_k.shape[1] < 9)):
        raise ValueError("pair_search_reduce: inconsistent term or atom arrays")
    if grad_nc is not None and (grad_nc.shape[0] != n or grad_nc.shape[1] != 3):
        raise ValueError("grad_nc must have shape (n_atoms, 3)")
    if virial_n9 is not None and (virial_n9.shape[0] != n or virial_n9.shape[1] != 9):
        raise ValueError("virial_n9 must have shape (n_atoms, 9)")
    terms.n = n_terms
    for kt in range(n_terms):
        if fam_k[kt] != RED_PAIR_HARMONIC and fam_k[kt] != RED_PAIR_LJ and fam_k[kt] != RED_PAIR_SW2:
            raise ValueError(f"unknown pair family code {fam_k[kt]}")
        if not (0.0 < cutoff_k[kt] <= cutoff):
            raise ValueError(f"term {kt}: cutoff {cutoff_k[kt]} outside (0, {cutoff}]")
        if sa_k[kt] < -1 or sb_k[kt] < -1:
            raise ValueError(f"term {kt}: species codes must be >= -1")
        terms.k[kt] = _pair_const(fam_k[kt], &par_k[kt, 0])
        terms.cut[kt] = cutoff_k[kt]
        terms.sa[kt] = sa_k[kt]
        terms.sb[kt] = sb_k[kt]
    if n == 0 or offsets.shape[0] == 0 or n_terms == 0:
        return None
    _check_half_stencil(offsets, "pair_search_reduce")
    if n_threads < 1:
        n_threads = 1
    cdef int[::1] no_limit = image_limit
    memset(&w, 0, sizeof(_Walk))
    w.terms = &terms
    w.spec_n = &spec_n[0]
    w.n = n
    w.nb_total = <int64_t> n_bins[0] * n_bins[1] * n_bins[2]
    w.r2_coincident = coincident * coincident if coincident >= 0.0 else -1.0
    w.virial = virial_n9 is not None
    w.stride = 10 if w.virial else 4
    w.energy_n = &energy_n[0]
    w.grad_nc = &grad_nc[0, 0] if grad_nc is not None else NULL
    w.vir_n9 = &virial_n9[0, 0] if virial_n9 is not None else NULL
    w.one_species = True
    for fb in range(1, n):
        if spec_n[fb] != spec_n[0]:
            w.one_species = False
            break
    if w.one_species and n_terms == 1 and terms.k[0].fam == RED_PAIR_LJ:
        # one species, one Lennard-Jones term: the same weight bits for every pair, terms evaluated as met
        wt = 0
        if _match(spec_n[0], terms.sa[0]) and _match(spec_n[0], terms.sb[0]):
            wt = 3
        w.lj_wt = wt
        w.lj_c0 = terms.k[0].c0
        w.lj_c1 = terms.k[0].c1
        w.lj_cut2 = terms.cut[0] * terms.cut[0]
        if wt == 0:  # the term applies to no pair
            return None
    nbytes = n_threads * n * w.stride * sizeof(double)
    try:
        buf = _KEPT.pop()
    except IndexError:
        buf = None
    if buf is None or buf.shape[0] * sizeof(double) < nbytes:
        buf = np.zeros(n_threads * n * w.stride)  # calloc: pages appear as a thread first writes them
        w.buf_zeroed = True
    buf_view = buf
    w.buf = &buf_view[0]
    g.thr = NULL
    try:
        keep = _nl_setup(&g, frac, xyz, shift, vectors, n_bins, periodic, frac_min, bin_width, offsets, no_limit,
                         cutoff, n_threads, work)
        w.g = &g
        scratch = <_Scratch*> calloc(n_threads, sizeof(_Scratch))
        if scratch == NULL:
            raise MemoryError("pair search: cannot allocate thread buffers")
        for tid in range(n_threads):
            scratch[tid].coincident_i = -1
            scratch[tid].coincident_j = -1
        w.scratch = scratch
        with nogil:  # one parallel region: walk, barrier, reduction
            miniff_two_phases(_walk_phase, _reduce_phase, &w, n_threads)
        for tid in range(n_threads):
            if g.thr[tid].failed == 2:
                raise RuntimeError("pair search: the bin offsets lack (0, 0, 0) (internal error)")
            if g.thr[tid].failed:
                raise MemoryError("pair search: out of memory")
        for tid in range(n_threads):
            if scratch[tid].coincident_i >= 0:
                return int(scratch[tid].coincident_i), int(scratch[tid].coincident_j)
        return None
    finally:
        if buf.shape[0] * sizeof(double) <= _KEEP_BYTES and not _KEPT:
            _KEPT.append(buf)
        if scratch != NULL:
            for tid in range(n_threads):
                free(scratch[tid].dx)
                free(scratch[tid].dy)
                free(scratch[tid].dz)
                free(scratch[tid].r2)
                free(scratch[tid].sj)
                free(scratch[tid].tj)
                free(scratch[tid].f)
                free(scratch[tid].g)
                free(scratch[tid].ct)
            free(scratch)
        _nl_free(&g, n_threads)
