"""The compiled n2p2 symmetry functions (miniff._ext.n2p2sf through miniff.io.n2p2_compiled) against direct
numpy formulas (tests/support_n2p2.py) on a periodic structure: every cutoff type, types 2, 3, 9, 12 and 13 with
shifted radii and non-integer zeta, the compact types 20-25 with every core; central differences of energies and
of the Jacobian; serial vs OpenMP; bad kernel input."""

import numpy as np
import pytest
from support import central_difference
from support_n2p2 import periodic_neighbourhood, symmetry_function

from miniff._ext import kernel_module as _k
from miniff.io import read_n2p2
from miniff.io.n2p2_compiled import symmetry_tables
from miniff.io.n2p2_files import function_line, parse_n2p2_folder
from miniff.kernel import Cell, NeighborWrapper

LINES = [
    "symfunction_short H 2 H 0.3 0.0 4.0",
    "symfunction_short H 2 O 0.2 1.1 4.0",
    "symfunction_short H 2 O 0.5 0.4 3.2",
    "symfunction_short H 3 O H 0.05 1.0 2.0 4.0",
    "symfunction_short H 3 O H 0.05 -1.0 2.0 4.0",
    "symfunction_short H 3 H H 0.1 1.0 1.5 4.0 0.5",
    "symfunction_short H 9 O O 0.02 -1.0 1.0 3.6",
    "symfunction_short H 9 O H 0.02 1.0 4.0 4.0",
    "symfunction_short H 12 0.2 0.3 4.0",
    "symfunction_short H 13 0.03 0.2 1.0 3.0 4.0",
    "symfunction_short O 2 H 0.1 0.0 4.0",
    "symfunction_short O 2 O 0.3 0.8 4.0",
    "symfunction_short O 3 H H 0.04 1.0 1.0 4.0",
    "symfunction_short O 3 H O 0.04 -1.0 2.5 4.0",
    "symfunction_short O 9 H H 0.01 1.0 16.0 4.0 0.3",
    "symfunction_short O 13 0.02 0.0 -1.0 2.0 3.5",
    "symfunction_short H 20 O -4.0 4.0 p2",
    "symfunction_short H 20 H 0.5 3.8 p1a",
    "symfunction_short H 21 H O 0.3 4.0 30.0 160.0 p3",
    "symfunction_short H 22 O O -4.0 3.9 0.0 180.0 e",
    "symfunction_short H 23 1.0 3.5 p4a",
    "symfunction_short H 24 -4.0 4.0 0.0 180.0 p2a",
    "symfunction_short H 25 0.2 3.7 45.0 135.0 p4",
    "symfunction_short O 20 H 0.8 4.0 e",
    "symfunction_short O 21 H H -4.0 4.0 0.0 180.0 p1",
    "symfunction_short O 22 H O 0.1 3.6 60.0 180.0 p2a",
]


def _folder(path, cutoff, seed=0):
    rng = np.random.default_rng(seed)
    path.mkdir()
    n_f = {"H": sum(" H " in line[:20] for line in LINES), "O": sum(" O " in line[:20] for line in LINES)}
    text = ["number_of_elements 2", "elements H O", f"cutoff_type {cutoff[0]} {cutoff[1]}", "scale_min_short -1.0",
            "scale_max_short 1.0", "scale_symmetry_functions", "center_symmetry_functions",
            "global_hidden_layers_short 1", "global_nodes_short 5", "global_activation_short t l", *LINES]
    (path / "input.nn").write_text("\n".join(text) + "\n")
    rows = []
    for e_index, el in enumerate(["H", "O"], 1):
        lines, index = [], 0
        for k, (n_in, n_out) in enumerate([(n_f[el], 5), (5, 1)]):
            for ns in range(n_in):
                for ne in range(n_out):
                    index += 1
                    lines.append(f"{rng.normal() * 0.5!r} a {index} {k} {ns + 1} {k + 1} {ne + 1}")
            for ne in range(n_out):
                index += 1
                lines.append(f"{rng.normal() * 0.2!r} b {index} {k + 1} {ne + 1}")
        (path / f"weights.{ {'H': 1, 'O': 8}[el]:03d}.data").write_text("\n".join(lines) + "\n")
        for f in range(n_f[el]):
            rows.append(f"{e_index} {f + 1} 0.0 3.0 1.0 0.5")
    (path / "scaling.data").write_text("\n".join(rows) + "\n")
    return read_n2p2(path, extrapolation="ignore")


def _structure(seed=1, n=14):
    rng = np.random.default_rng(seed)
    vectors = np.array([[5.6, 0.0, 0.0], [0.5, 5.9, 0.0], [-0.4, 0.3, 6.1]])
    return vectors, rng.uniform(size=(n, 3)), ["H", "O"] * (n // 2)


def _nw(pots, vectors, frac, species, n_threads=1):
    return NeighborWrapper(Cell(vectors, frac, species), pbc=True, cutoff=max(p.cutoff for p in pots),
                           n_threads=n_threads)


def _references(path, nw, vectors, frac, species, cutoff):
    """``{element: [N, F]}`` the symmetry functions of every atom by the direct formulas, in n2p2's order."""
    model = parse_n2p2_folder(path)
    symbols = [e.symbol for e in model.elements]
    cart = frac @ vectors
    out = {}
    for element in model.elements:
        lines = [function_line(f, symbols) for f in element.functions]
        rows = np.zeros((len(species), len(lines)))
        for i, s in enumerate(species):
            if s == element.symbol:
                pos, sp = periodic_neighbourhood(vectors, cart, species, i, 4.0)
                rows[i] = [symmetry_function(line, 0, pos, sp, cutoff) for line in lines]
        out[element.symbol] = rows
    return out


@pytest.mark.parametrize("cutoff", [(0, 0.0), (1, 0.2), (2, 0.0), (3, 0.0), (4, 0.1), (5, 0.0), (6, 0.3), (7, 0.0),
                                    (8, 0.1)])
def test_compiled_matches_direct_formulas(tmp_path, cutoff):
    pots = _folder(tmp_path / "pot", cutoff)
    vectors, frac, species = _structure()
    nw = _nw(pots, vectors, frac, species)
    refs = _references(tmp_path / "pot", nw, vectors, frac, species, cutoff)
    for p in pots:
        ref = refs[p.tag]
        # 1e-11: a -march=native build contracts products into fused multiply-adds, and the steep cutoff types
        # (e.g. 8, exp(1 - 1/(1 - x^2))) amplify that rounding near the cutoff
        np.testing.assert_allclose(p.descriptors(nw), ref, rtol=1e-11, atol=1e-14)
        assert (np.abs(ref[np.asarray(species) == p.tag]) > 1e-8).any(axis=0).all()  # every function is tested


def test_compiled_forces_by_central_differences(tmp_path):
    pots = _folder(tmp_path / "pot", (6, 0.1), seed=3)
    vectors, frac, species = _structure(seed=4)
    cart = frac @ vectors

    def total(x):
        return _nw(pots, vectors, x @ np.linalg.inv(vectors), species).total(pots)

    grad = _nw(pots, vectors, frac, species).grad(pots)
    np.testing.assert_allclose(grad, central_difference(total, cart, eps=1e-5), atol=1e-8)
    assert np.abs(grad).max() > 1e-2


def test_compiled_serial_equals_openmp(tmp_path):
    pots = _folder(tmp_path / "pot", (2, 0.0), seed=5)
    vectors, frac, species = _structure(seed=6, n=40)
    vectors = vectors * 1.5
    one = _nw(pots, vectors, frac, species, n_threads=1).evaluate(pots, grad=True)
    two = _nw(pots, vectors, frac, species, n_threads=2).evaluate(pots, grad=True)
    assert one.energy == two.energy
    np.testing.assert_array_equal(one.grad_nc, two.grad_nc)


def test_absent_neighbour_element_gives_zero(tmp_path):
    pots = _folder(tmp_path / "pot", (1, 0.0))
    vectors, frac, _ = _structure()
    species = ["H"] * len(frac)
    nw = _nw(pots[:1], vectors, frac, species)
    ref = _references(tmp_path / "pot", nw, vectors, frac, species, (1, 0.0))["H"]
    np.testing.assert_allclose(pots[0].descriptors(nw), ref, rtol=1e-11, atol=1e-14)
    assert (ref == 0).any(axis=0).any() and (ref != 0).any(axis=0).any()


def test_kernel_refuses_inconsistent_tables(tmp_path):
    pots = _folder(tmp_path / "pot", (1, 0.0))
    vectors, frac, species = _structure()
    nw = _nw(pots, vectors, frac, species)
    tables = symmetry_tables(pots[0]._spec["functions"], dict(nw.species_lookup))
    pairs = nw.pairs
    args = (np.asarray(pairs.indptr, dtype=np.int64), np.asarray(pairs.j_p, dtype=np.int32),
            np.ascontiguousarray(pairs.D_pc), np.ascontiguousarray(pairs.d_p),
            np.asarray(nw.spec_encoded_row, dtype=np.int32), np.array([1.0, 8.0]))
    atoms = np.array([0], dtype=np.int64)
    cptr = np.array([0, pairs.indptr[1] - pairs.indptr[0]], dtype=np.int64)
    n_f = len(pots[0]._spec["functions"]["type"])
    good = dict(values_mf=np.empty((1, n_f)), jac_ef3=np.empty((int(cptr[-1]), n_f, 3)), grad=True, n_threads=1)
    _k.n2p2_symmetry_functions(*args, atoms, cptr, 1.0, 1, 0.0, **tables, **good)
    with pytest.raises(ValueError, match="atoms_m"):
        _k.n2p2_symmetry_functions(*args, np.array([len(species)], dtype=np.int64), cptr, 1.0, 1, 0.0, **tables,
                                   **good)
    with pytest.raises(ValueError, match="cutoff_type"):
        _k.n2p2_symmetry_functions(*args, atoms, cptr, 1.0, 9, 0.0, **tables, **good)
    bad = dict(tables, ang_col=tables["ang_col"] + 100)
    with pytest.raises(ValueError, match="angular function"):
        _k.n2p2_symmetry_functions(*args, atoms, cptr, 1.0, 1, 0.0, **bad, **good)
    bad = dict(tables, cr_col=tables["cr_col"] + 100)
    with pytest.raises(ValueError, match="compact radial function"):
        _k.n2p2_symmetry_functions(*args, atoms, cptr, 1.0, 1, 0.0, **bad, **good)
    bad = dict(tables, cg_info=tables["cg_info"].copy())
    bad["cg_info"][-1, 6] += 1
    with pytest.raises(ValueError, match="compact angular"):
        _k.n2p2_symmetry_functions(*args, atoms, cptr, 1.0, 1, 0.0, **bad, **good)
    with pytest.raises(ValueError, match="jac_ef3"):
        _k.n2p2_symmetry_functions(*args, atoms, cptr, 1.0, 1, 0.0, **tables,
                                   **dict(good, jac_ef3=np.empty((1, n_f, 3))))


def test_jacobian_contraction_and_central_differences(tmp_path):
    """``n2p2_contract`` of the per-pair Jacobian with dE/dG equals the contraction in numpy, and the Jacobian
    rows match central differences of the symmetry functions by the pair vectors."""
    from miniff.io.n2p2_compiled import evaluate_batch

    pots = _folder(tmp_path / "pot", (7, 0.2), seed=7)
    vectors, frac, species = _structure(seed=8)
    nw = _nw(pots, vectors, frac, species)
    pot = pots[1]
    atoms = np.flatnonzero(np.asarray(nw.spec_encoded_row) == nw.species_lookup[pot.tag]).astype(np.int64)
    g, jac, cptr = evaluate_batch(pot, nw, atoms, True, 1)
    dedg = np.random.default_rng(0).normal(size=g.shape)
    direct = np.zeros((nw.pairs.n_pairs, 3))
    indptr = np.asarray(nw.pairs.indptr)
    _k.n2p2_contract(indptr.astype(np.int64), atoms, cptr, dedg, jac, 1.0, direct, 2)
    rows = np.concatenate([np.arange(indptr[i], indptr[i + 1]) for i in atoms])
    expected = np.zeros_like(direct)
    expected[rows] = np.einsum("ef,efc->ec", np.repeat(dedg, np.diff(cptr), axis=0), jac)
    np.testing.assert_allclose(direct, expected, rtol=1e-12, atol=1e-13)
    # the Jacobian rows of the first centre by central differences of its pair vectors
    tables = symmetry_tables(pot._spec["functions"], dict(nw.species_lookup))
    length = pot._spec["units"][0]
    i0 = atoms[:1]
    c0 = np.array([0, indptr[i0[0] + 1] - indptr[i0[0]]], dtype=np.int64)
    base = dict(indptr=np.asarray(indptr, dtype=np.int64), j_p=np.asarray(nw.pairs.j_p, dtype=np.int32),
                spec_n=np.asarray(nw.spec_encoded_row, dtype=np.int32), weight_s=np.array([1.0, 8.0]))

    def values(D):
        out = np.empty((1, g.shape[1]))
        _k.n2p2_symmetry_functions(D_pc=D, d_p=np.linalg.norm(D, axis=1), atoms_m=i0, cptr_m=c0,
                                   inv_length=1.0 / length, cutoff_type=7, alpha=0.2, values_mf=out,
                                   jac_ef3=np.empty((0, g.shape[1], 3)), grad=False, n_threads=1, **base, **tables)
        return out[0]

    D = np.array(nw.pairs.D_pc)
    h = 1e-6
    for q in range(0, int(c0[1]), 3):
        for c in range(3):
            plus, minus = D.copy(), D.copy()
            plus[indptr[i0[0]] + q, c] += h
            minus[indptr[i0[0]] + q, c] -= h
            fd = (values(plus) - values(minus)) / (2 * h)
            np.testing.assert_allclose(jac[q, :, c], fd, rtol=1e-6, atol=1e-8)
