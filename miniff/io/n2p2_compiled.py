"""n2p2 potentials evaluated by miniff's compiled core (``miniff._ext.n2p2sf``): the tables of the symmetry
functions of one element, and energies with per-pair gradients of its atoms.

Used by :class:`miniff.io.n2p2_model.N2p2Potential` and the 4G-HDNNPs of :mod:`miniff.io.n2p2_4g`: every
symmetry-function type miniff reads (radial 2 and 12, angular 3, 9 and 13 with every cutoff type, the compact
types 20-25); the test suite checks them against direct numpy formulas (``tests/support_n2p2.py``).
"""

import math

import numpy as np

from miniff._ext import kernel_module as _k
from miniff.io.n2p2_files import WEIGHTED_TYPES
from miniff.potentials.base import pair_arrays, resolve_n_threads
from miniff.potentials.extrapolation import extrapolation_counts

__all__ = ["symmetry_tables", "compiled_descriptors", "compiled_energy",
           "atom_batches", "evaluate_batch", "contract_batch"]

#: Jacobian entries (pairs x functions) per call: bounds the memory of one evaluation (about 100 MB).
MAX_JACOBIAN_ENTRIES = 1 << 22


def symmetry_tables(functions, species_lookup):
    """The kernel's tables of the functions of one element (``functions``: the table of ``N2p2Potential``,
    files' units) for a structure whose species codes are ``species_lookup`` (``{symbol: code}``).

    Functions whose neighbour element is absent from the structure are left out (their values are 0).
    Returns a dict of contiguous arrays named as the arguments of ``n2p2_symmetry_functions``.
    """
    kinds = functions["type"]
    n_f = len(kinds)
    code = [species_lookup.get(s, -3) for s in functions["e1"]]
    code2 = [-1 if s is None else species_lookup.get(s, -3) for s in functions["e2"]]
    radial = [f for f in range(n_f) if kinds[f] in (2, 12) and (kinds[f] == 12 or code[f] >= 0)]
    cuts = sorted({float(functions["rc"][f]) for f in radial})
    tables = {
        "rad_col": np.array(radial, dtype=np.int32),
        "rad_spec": np.array([-1 if kinds[f] == 12 else code[f] for f in radial], dtype=np.int32),
        "rad_c": np.array([cuts.index(float(functions["rc"][f])) for f in radial], dtype=np.int32),
        "rad_eta": np.array([functions["eta"][f] for f in radial], dtype=float),
        "rad_rs": np.array([functions["rs"][f] for f in radial], dtype=float),
        "rad_cut": np.array(cuts, dtype=float),
    }
    groups = {}
    for f in range(n_f):
        if kinds[f] not in (3, 9, 13):
            continue
        weighted = kinds[f] == 13
        if not weighted and (code[f] < 0 or code2[f] < 0):
            continue
        s1, s2 = (-1, -1) if weighted else (code[f], code2[f])
        key = (int(kinds[f] in (3, 13)), int(weighted), s1, s2, float(functions["rc"][f]))
        groups.setdefault(key, []).append(f)
    info, count, rcs, ex, lz, ang = [], [], [], [], [], []
    for key, members in groups.items():
        exps = sorted({(float(functions["eta"][f]), float(functions["rs"][f])) for f in members})
        angs = sorted({(float(functions["lambda"][f]), float(functions["zeta"][f])) for f in members})
        info.append([key[0], key[1], key[2], key[3], len(ang), len(ang) + len(members), len(ex), len(lz)])
        count.append([len(exps), len(angs)])
        rcs.append(key[4])
        for f in members:
            ang.append((f, len(ex) + exps.index((float(functions["eta"][f]), float(functions["rs"][f]))),
                        len(lz) + angs.index((float(functions["lambda"][f]), float(functions["zeta"][f])))))
        ex.extend(exps)
        lz.extend(angs)
    zeta = np.array([z for _, z in lz], dtype=float)
    izeta = np.where((zeta == np.round(zeta)) & (zeta >= 1) & (zeta <= 64), np.round(zeta), 0).astype(np.int32)
    tables.update({
        "grp_info": np.array(info, dtype=np.int32).reshape(-1, 8),
        "grp_count": np.array(count, dtype=np.int32).reshape(-1, 2),
        "grp_rc": np.array(rcs, dtype=float),
        "ex_eta": np.array([e for e, _ in ex], dtype=float), "ex_rs": np.array([r for _, r in ex], dtype=float),
        "lz_lambda": np.array([lam for lam, _ in lz], dtype=float), "lz_zeta": zeta, "lz_izeta": izeta,
        "lz_norm": np.array([math.pow(2.0, 1.0 - z) for z in zeta], dtype=float),
        "ang_col": np.array([a[0] for a in ang], dtype=np.int32),
        "ang_e": np.array([a[1] for a in ang], dtype=np.int32),
        "ang_k": np.array([a[2] for a in ang], dtype=np.int32),
    })
    tables.update(_compact_tables(functions, code, code2))
    return tables


#: The core of each compact subtype as the cutoff type with that core (4 the exponential, 5-8 the polynomials).
COMPACT_CORES = {"p1": 5, "p2": 6, "p3": 7, "p4": 8, "e": 4}


def _compact_tables(functions, code, code2):
    """The kernel's tables of the compact functions (types 20-25) of one element: radial ``cr_*``, angular groups
    ``cg_*`` (same r_jk term, weighting, neighbour elements, radial interval and subtype) and their functions
    ``ca_*``; functions with a neighbour element absent from the structure are left out."""
    kinds = functions["type"]

    def core(f):
        sub = functions["subtype"][f]
        return COMPACT_CORES[sub.rstrip("a") if sub != "e" else "e"], int(sub.endswith("a"))

    radial = [f for f in range(len(kinds)) if kinds[f] == 23 or (kinds[f] == 20 and code[f] >= 0)]
    groups = {}
    for f in range(len(kinds)):
        if kinds[f] not in (21, 22, 24, 25):
            continue
        weighted = kinds[f] in (24, 25)
        if not weighted and (code[f] < 0 or code2[f] < 0):
            continue
        s1, s2 = (-1, -1) if weighted else (code[f], code2[f])
        key = (int(kinds[f] in (21, 24)), int(weighted), s1, s2, *core(f), float(functions["rl"][f]),
               float(functions["rc"][f]))
        groups.setdefault(key, []).append(f)
    members = [f for fs in groups.values() for f in fs]
    ends = np.cumsum([len(fs) for fs in groups.values()], dtype=np.int64)
    return {
        "cr_col": np.array(radial, dtype=np.int32),
        "cr_spec": np.array([-1 if kinds[f] == 23 else code[f] for f in radial], dtype=np.int32),
        "cr_core": np.array([core(f) for f in radial], dtype=np.int32).reshape(-1, 2),
        "cr_lr": np.array([(functions["rl"][f], functions["rc"][f]) for f in radial], dtype=float).reshape(-1, 2),
        "cg_info": np.array([[*key[:6], end] for key, end in zip(groups, ends, strict=True)],
                            dtype=np.int32).reshape(-1, 7),
        "cg_lr": np.array([key[6:] for key in groups], dtype=float).reshape(-1, 2),
        "ca_col": np.array(members, dtype=np.int32),
        "ca_lr": np.array([(functions["al"][f] * np.pi / 180.0, functions["ar"][f] * np.pi / 180.0) for f in members],
                          dtype=float).reshape(-1, 2),
    }


def _tables(pot, nw):
    """``symmetry_tables`` of ``pot`` for the species of ``nw`` (kept on the potential per species list), and
    the per-species weights (atomic numbers when the element has weighted functions)."""
    key = tuple(str(s) for s in nw.species)
    cached = getattr(pot, "_compiled_tables", None)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    functions = pot._spec["functions"]
    weighted = bool(np.isin(functions["type"], WEIGHTED_TYPES).any())
    weights = pot._atomic_numbers(nw) if weighted else np.zeros(len(key))
    tables = symmetry_tables(functions, dict(nw.species_lookup))
    pot._compiled_tables = (key, tables, np.ascontiguousarray(weights, dtype=float))
    return tables, pot._compiled_tables[2]


def _batches(indptr, atoms, n_f):
    """Consecutive slices of ``atoms`` whose pairs times ``n_f`` stay under ``MAX_JACOBIAN_ENTRIES``."""
    counts = (indptr[atoms + 1] - indptr[atoms]) * max(n_f, 1)
    ends = np.cumsum(counts)
    start = 0
    while start < len(atoms):
        base = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, base + MAX_JACOBIAN_ENTRIES, side="right")), start + 1)
        yield atoms[start:stop]
        start = stop


def atom_batches(pot, nw, code):
    """The atoms of species code ``code`` in consecutive batches whose Jacobians stay under
    ``MAX_JACOBIAN_ENTRIES`` (a list of int64 arrays)."""
    atoms = np.flatnonzero(np.asarray(nw.spec_encoded_row) == code).astype(np.int64)
    return list(_batches(pair_arrays(nw, pot.cutoff).indptr, atoms, len(pot._spec["functions"]["type"])))


def contract_batch(pot, nw, atoms, cptr, dedg, jac, scale, grad_pc, n_threads):
    """``grad_pc [P, 3] += scale * sum_f dedg [M, f] jac [E, f]``: the gradient by the pair vectors of the
    centre atoms ``atoms`` (a batch of :func:`evaluate_batch`, ``jac`` and ``cptr`` from it)."""
    arrays = pair_arrays(nw, pot.cutoff)
    _k.n2p2_contract(arrays.indptr, atoms, cptr, np.ascontiguousarray(dedg, dtype=float), jac, float(scale), grad_pc,
                     n_threads)


def evaluate_batch(pot, nw, atoms, grad, n_threads):
    """``(values [M, F], jac [E, F, 3] or None, cptr [M + 1])`` of the centre atoms ``atoms``."""
    arrays = pair_arrays(nw, pot.cutoff)
    tables, weights = _tables(pot, nw)
    n_f = len(pot._spec["functions"]["type"])
    counts = arrays.indptr[atoms + 1] - arrays.indptr[atoms]
    cptr = np.zeros(len(atoms) + 1, dtype=np.int64)
    np.cumsum(counts, out=cptr[1:])
    values = np.empty((len(atoms), n_f))
    jac = np.empty((int(cptr[-1]) if grad else 0, n_f, 3))
    length = pot._spec["units"][0]
    _k.n2p2_symmetry_functions(arrays.indptr, arrays.j_p, arrays.D_pc, arrays.d_p, arrays.spec_n, weights,
                               atoms, cptr, 1.0 / length, int(pot._spec["cutoff_type"]),
                               float(pot._spec["cutoff_alpha"]), values_mf=values, jac_ef3=jac, grad=grad,
                               n_threads=n_threads, **tables)
    return values, (jac if grad else None), cptr


def compiled_descriptors(pot, nw, code, n_threads=None):
    """Raw symmetry functions ``[N, F]`` (files' units) of the atoms of species code ``code`` (0 elsewhere)."""
    spec = np.asarray(nw.spec_encoded_row)
    out = np.zeros((len(spec), len(pot._spec["functions"]["type"])))
    atoms = np.flatnonzero(spec == code).astype(np.int64)
    threads = resolve_n_threads(nw, n_threads)
    indptr = pair_arrays(nw, pot.cutoff).indptr
    for batch in _batches(indptr, atoms, out.shape[1]):
        out[batch] = evaluate_batch(pot, nw, batch, False, threads)[0]
    return out


def compiled_energy(pot, nw, code, energy_n, grad_pc, count_n, n_threads=None):
    """Energies (eV) of the atoms of species code ``code`` into ``energy_n [N]``, the gradients (eV/Å) of their
    pairs into ``grad_pc [P, 3]`` (if given) and their numbers of extrapolating functions into ``count_n``."""
    p = pot._spec
    length, energy = p["units"]
    conv_energy, shift = p["energy"]
    ref, factor, offset = p["scaling"]
    spec = np.asarray(nw.spec_encoded_row)
    atoms = np.flatnonzero(spec == code).astype(np.int64)
    threads = resolve_n_threads(nw, n_threads)
    arrays = pair_arrays(nw, pot.cutoff)
    grad = grad_pc is not None
    for batch in _batches(arrays.indptr, atoms, len(p["functions"]["type"])):
        g, jac, cptr = evaluate_batch(pot, nw, batch, grad, threads)
        count_n[batch] = extrapolation_counts(pot.descriptor_range, g, np.ones(len(batch), dtype=bool))
        out, d_out = pot._network(offset + factor * (g - ref), grad)
        energy_n[batch] = (out / conv_energy + shift) * energy
        if grad:
            dedg = np.ascontiguousarray(d_out * (factor / conv_energy))
            _k.n2p2_contract(arrays.indptr, batch, cptr, dedg, jac, energy / length, grad_pc, threads)
