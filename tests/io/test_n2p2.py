"""miniff.io.read_n2p2 on hand-made n2p2 folders: symmetry functions by direct numpy formulas, the sorted input
order, every cutoff type and scaling mode, units, forces and stress by central differences, errors naming the
file and line."""

import math

import numpy as np
import pytest
from support import central_difference
from support_n2p2 import cutoff as _fc
from support_n2p2 import symmetry_function

from miniff import units
from miniff.io import read_n2p2
from miniff.io.n2p2_model import N2p2ExtrapolationWarning
from miniff.potentials.extrapolation import ExtrapolationError

# Written in this (unsorted) order; elements "O H" in input.nn, H first by atomic number.
LINES = [
    ("O", 3, "H", "H", 0.05, 1.0, 2.0, 4.2, None),
    ("H", 2, "O", None, 0.4, 0.8, None, 4.2, None),
    ("O", 2, "H", None, 0.1, 0.0, None, 4.2, None),
    ("H", 9, "O", "H", 0.02, -1.0, 1.0, 4.2, None),
    ("H", 2, "H", None, 0.1, 0.0, None, 4.2, None),
    ("O", 9, "H", "O", 0.01, 1.0, 4.0, 4.2, 0.3),
    ("H", 3, "H", "O", 0.03, 1.0, 1.0, 3.9, None),
    ("O", 2, "O", None, 0.1, 0.0, None, 4.2, None),
    ("O", 2, "H", None, 0.1, 0.5, None, 4.2, None),
    ("H", 2, "O", None, 0.4, 0.8, None, 3.9, None),
]
# n2p2's order per element: type, (cutoff type, alpha), rc, eta, rs, zeta, lambda, e1, e2 (H < O), by hand:
ORDER = {"H": [9, 4, 1, 6, 3], "O": [2, 7, 8, 0, 5]}  # indices into LINES


def _line(t):
    ec, kind, e1, e2, eta, p1, p2, rc, rs = t
    if kind == 2:
        return f"symfunction_short {ec} 2 {e1} {eta} {p1} {rc}"
    return f"symfunction_short {ec} {kind} {e1} {e2} {eta} {p1} {p2} {rc}" + ("" if rs is None else f" {rs}")


SCALING_KEYS = {"none": [], "scale": ["scale_symmetry_functions"], "center": ["center_symmetry_functions"],
                "scalecenter": ["scale_symmetry_functions", "center_symmetry_functions"],
                "scalesigma": ["scale_symmetry_functions_sigma"]}
ACT = ["t", "p", "l"]


def _make(folder, cutoff=(6, 0.1), scaling="scalecenter", seed=0, extra="", mean=-0.3, conv=(2.5, 1.3), sym_lines=None):
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    text = [f"number_of_elements 2\nelements O H   # unsorted on purpose\ncutoff_type {cutoff[0]} {cutoff[1]}",
            "scale_min_short -1.0\nscale_max_short 1.0", *SCALING_KEYS[scaling],
            "global_hidden_layers_short 2\nglobal_nodes_short 4 3\nglobal_activation_short " + " ".join(ACT),
            f"mean_energy {mean}\nconv_energy {conv[0]}\nconv_length {conv[1]}",
            "atom_energy H -0.5\natom_energy O -2.0", "epochs 10   # a training keyword, ignored", extra]
    text += [_line(t) for t in LINES] if sym_lines is None else sym_lines
    (folder / "input.nn").write_text("\n".join(text) + "\n")
    model = {"scaling": {}, "nets": {}}
    rows = []
    for e_index, el in enumerate(["H", "O"], 1):
        stats = []
        n_f = 5 if sym_lines is None else sum(line.split()[1] == el for line in sym_lines)
        for f in range(n_f):
            gmin = rng.uniform(0.0, 0.2)
            gmax = gmin + rng.uniform(0.5, 2.0)
            stats.append((gmin, gmax, rng.uniform(gmin, gmax), rng.uniform(0.1, 0.5)))
            rows.append(f"{e_index} {f + 1} " + " ".join(repr(float(x)) for x in stats[-1]))
        model["scaling"][el] = np.array(stats)
        widths = [n_f, 4, 3, 1]
        ws = [rng.normal(size=(widths[k + 1], widths[k])) * 0.7 for k in range(3)]
        bs = [rng.normal(size=widths[k + 1]) * 0.2 for k in range(3)]
        model["nets"][el] = (ws, bs)
        lines, index = [], 0
        for k in range(3):
            for ns in range(widths[k]):
                for ne in range(widths[k + 1]):
                    index += 1
                    lines.append(f"{float(ws[k][ne, ns])!r} a {index} {k} {ns + 1} {k + 1} {ne + 1}")
            for ne in range(widths[k + 1]):
                index += 1
                lines.append(f"{float(bs[k][ne])!r} b {index} {k + 1} {ne + 1}")
        z = {"H": 1, "O": 8}[el]
        (folder / f"weights.{z:03d}.data").write_text("# comment\n" + "\n".join(lines) + "\n")
    (folder / "scaling.data").write_text("\n".join(rows) + "\n")
    return model


def _g(t, i, pos, species, cutoff):
    ec, kind, e1, e2, eta, p1, p2, rc, rs = t
    n, out = len(pos), 0.0
    for j in range(n):
        rij = np.linalg.norm(pos[j] - pos[i])
        if j == i:
            continue
        if kind == 2:
            if species[j] == e1:
                out += math.exp(-eta * (rij - p1) ** 2) * _fc(rij, rc, *cutoff)
            continue
        for k in range(j + 1, n):
            if k == i or sorted((species[j], species[k])) != sorted((e1, e2)):
                continue
            rik, rjk = np.linalg.norm(pos[k] - pos[i]), np.linalg.norm(pos[k] - pos[j])
            s = rs or 0.0
            cos = (pos[j] - pos[i]) @ (pos[k] - pos[i]) / rij / rik
            lam, zeta = p1, p2
            base = max(1 + lam * cos, 0.0) ** zeta * 2 ** (1 - zeta)
            if kind == 3:
                out += (base * math.exp(-eta * ((rij - s) ** 2 + (rik - s) ** 2 + (rjk - s) ** 2))
                        * _fc(rij, rc, *cutoff) * _fc(rik, rc, *cutoff) * _fc(rjk, rc, *cutoff))
            else:
                out += (base * math.exp(-eta * ((rij - s) ** 2 + (rik - s) ** 2))
                        * _fc(rij, rc, *cutoff) * _fc(rik, rc, *cutoff))
    return out


def _reference(model, pos, species, cutoff, scaling, mean=-0.3, conv_energy=2.5):
    """Energy (file units) of a cluster, by the formulas of n2p2's documentation."""
    acts = {"t": np.tanh, "p": lambda x: np.log1p(np.exp(x)), "l": lambda x: x}
    total = 0.0
    for i, el in enumerate(species):
        g = np.array([_g(LINES[k], i, pos, species, cutoff) for k in ORDER[el]])
        gmin, gmax, gmean, gsigma = model["scaling"][el].T
        x = {"none": g, "center": g - gmean, "scale": -1 + 2 * (g - gmin) / (gmax - gmin),
             "scalecenter": -1 + 2 * (g - gmean) / (gmax - gmin), "scalesigma": -1 + 2 * (g - gmean) / gsigma}[scaling]
        ws, bs = model["nets"][el]
        for w, b, a in zip(ws, bs, ACT, strict=True):
            x = acts[a](w @ x + b)
        total += x[0] / conv_energy + mean + {"H": -0.5, "O": -2.0}[el]
    return total


def _cluster(seed=1):
    rng = np.random.default_rng(seed)
    species = ["O", "H", "H", "O", "H", "H", "H"]
    pos = np.array([[0, 0, 0], [0.96, 0, 0], [-0.3, 0.9, 0.1], [2.6, 0.4, 0.3], [3.2, 1.1, 0.0], [2.9, -0.5, 0.6],
                    [1.2, 1.9, -0.9]]) + rng.normal(scale=0.05, size=(7, 3))
    return pos + 5.0, species


def _nw(pos, species, pots, vectors=None, pbc=False):
    from miniff.kernel import Cell, NeighborWrapper

    vectors = np.eye(3) * 30.0 if vectors is None else vectors
    return NeighborWrapper(Cell(vectors, pos @ np.linalg.inv(vectors), species), pbc=pbc,
                           cutoff=max(p.cutoff for p in pots), n_threads=1)


@pytest.mark.parametrize("cutoff", [(0, 0.0), (1, 0.0), (1, 0.3), (2, 0.0), (3, 0.0), (4, 0.2), (5, 0.0),
                                    (6, 0.0), (7, 0.1), (8, 0.0)])
def test_cutoff_types_and_order(tmp_path, cutoff):
    model = _make(tmp_path / "pot", cutoff=cutoff)
    pots = read_n2p2(tmp_path / "pot", extrapolation="ignore")
    assert [p.tag for p in pots] == ["H", "O"]
    assert repr(pots[0]) == "<N2p2Potential tag='H' cutoff=4.2 n_functions=5>"
    pos, species = _cluster()
    nw = _nw(pos, species, pots)
    for p in pots:  # the sorted input order: each raw descriptor equals the hand-ordered reference
        code = nw.species_lookup[p.tag]
        g = p.descriptors(nw, code)
        for i, el in enumerate(species):
            if el == p.tag:
                ref = [_g(LINES[k], i, pos, species, cutoff) for k in ORDER[el]]
                np.testing.assert_allclose(g[i], ref, rtol=1e-12, atol=1e-14)
    assert nw.total(pots) == pytest.approx(_reference(model, pos, species, cutoff, "scalecenter"), rel=1e-12)


@pytest.mark.parametrize("scaling", sorted(SCALING_KEYS))
def test_scaling_modes_forces(tmp_path, scaling):
    model = _make(tmp_path / "pot", scaling=scaling, cutoff=(6, 0.0))
    pots = read_n2p2(tmp_path / "pot", extrapolation="ignore")
    pos, species = _cluster(2)
    assert _nw(pos, species, pots).total(pots) == pytest.approx(
        _reference(model, pos, species, (6, 0.0), scaling), rel=1e-12)
    grad = _nw(pos, species, pots).grad(pots)
    fd = central_difference(lambda p: _nw(p, species, pots).total(pots), pos, eps=1e-5)
    np.testing.assert_allclose(grad, fd, atol=1e-8)
    assert np.abs(grad).max() > 1e-2
    np.testing.assert_allclose(grad.sum(0), 0, atol=1e-12)


def test_units_bohr_hartree(tmp_path):
    model = _make(tmp_path / "pot", cutoff=(1, 0.0), scaling="scale")
    pots = read_n2p2(tmp_path / "pot", length_unit="bohr", energy_unit="hartree", extrapolation="ignore")
    pos, species = _cluster(3)  # positions in Bohr for the reference, Å for miniff
    e = _nw(pos * units.BOHR, species, pots).total(pots)
    assert e == pytest.approx(units.HARTREE * _reference(model, pos, species, (1, 0.0), "scale"), rel=1e-12)
    assert pots[0].cutoff == pytest.approx(4.2 * units.BOHR)


@pytest.mark.parametrize("functions", ["behler", "weighted", "compact"])
def test_periodic_stress_and_forces(tmp_path, functions):
    lines = {"behler": None, "weighted": WEIGHTED, "compact": COMPACT}[functions]
    _make(tmp_path / "pot", cutoff=(2, 0.0), sym_lines=lines)
    pots = read_n2p2(tmp_path / "pot", extrapolation="ignore")
    rng = np.random.default_rng(5)
    vectors = np.array([[5.0, 0.2, 0.0], [0.0, 5.3, 0.3], [0.1, 0.0, 4.9]])
    species = ["O", "H", "H", "O", "H", "H"]
    frac = rng.uniform(size=(6, 3))
    pos = frac @ vectors
    nw = _nw(pos, species, pots, vectors, pbc=True)
    stress = nw.stress(pots)
    volume = abs(np.linalg.det(vectors))
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    h = 1e-6
    for k, (a, b) in enumerate(voigt):
        e = []
        for s in (1, -1):
            eps = np.eye(3)
            eps[a, b] += s * h / (1 if a == b else 2)
            eps[b, a] += 0 if a == b else s * h / 2
            e.append(_nw(pos @ eps.T, species, pots, vectors @ eps.T, pbc=True).total(pots))
        assert stress[k] == pytest.approx((e[0] - e[1]) / (2 * h) / volume, abs=1e-8)
    grad = nw.grad(pots)
    a, c = 2, 1
    e = []
    h = 3e-6  # the weighted functions (Z up to 8, Z_j Z_k up to 64) curve strongly: the O(h^2) error needs a small h
    for s in (1, -1):
        p = pos.copy()
        p[a, c] += s * h
        e.append(_nw(p, species, pots, vectors, pbc=True).total(pots))
    assert grad[a, c] == pytest.approx((e[0] - e[1]) / (2 * h), rel=1e-7, abs=1e-8)


def test_extrapolation_warn_raise_count(tmp_path):
    _make(tmp_path / "pot")
    pos, species = _cluster()
    with pytest.warns(N2p2ExtrapolationWarning, match="have descriptors outside the training range"):
        pots = read_n2p2(tmp_path / "pot")
        nw = _nw(pos, species, pots)
        nw.total(pots)
    assert sum(p.last_extrapolations for p in pots) > 0
    for p in pots:  # per atom: the (atom, function) values outside [Gmin, Gmax], counted by numpy here
        gmin, gmax = np.array(p._spec["range"])
        g = p.descriptors(nw)
        ref = np.where(np.asarray(species) == p.tag, ((g < gmin - 1e-9) | (g > gmax + 1e-9)).sum(1), 0)
        np.testing.assert_array_equal(p.last_extrapolation(nw), ref)
        assert p.last_extrapolations == ref.sum()
    pots = read_n2p2(tmp_path / "pot", extrapolation="raise")
    with pytest.raises(ExtrapolationError, match="N2p2Potential tag='[HO]'.* outside the training range"):
        _nw(pos, species, pots).total(pots)
    with pytest.raises(ValueError, match="on_extrapolation must be one of"):
        read_n2p2(tmp_path / "pot", extrapolation="maybe")
    with pytest.raises(ValueError, match="on_extrapolation must be one of"):
        pots[0].on_extrapolation = "sometimes"
    pots[0].extrapolation = "ignore"
    assert pots[0].on_extrapolation == "ignore"
    # the ranges of the structure itself, up to rounding: no extrapolation
    pots = read_n2p2(tmp_path / "pot", extrapolation="ignore")
    nw = _nw(pos, species, pots)
    rows = []
    for e_index, p in enumerate(pots, 1):
        g = p.descriptors(nw)[np.asarray(species) == p.tag]
        for f in range(g.shape[1]):
            lo, hi = float(g[:, f].min()), float(g[:, f].max())
            hi = hi if hi - lo > 1e-6 else lo + 1.0
            lo, hi = lo + 1e-13 * abs(lo), hi - 1e-13 * abs(hi)  # the extremes exceed by rounding only
            rows.append(f"{e_index} {f + 1} {lo!r} {hi!r} {(lo + hi) / 2!r} 1.0")
    (tmp_path / "pot" / "scaling.data").write_text("\n".join(rows) + "\n")
    pots = read_n2p2(tmp_path / "pot", extrapolation="raise")
    _nw(pos, species, pots).total(pots)
    assert [p.last_extrapolations for p in pots] == [0, 0]


def _replace(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_bad_input_names_file_and_line(tmp_path):
    folder = tmp_path / "pot"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_n2p2(folder)
    with pytest.raises(TypeError, match="folder must be a path"):
        read_n2p2(3)
    _make(folder)
    nn = folder / "input.nn"
    good = nn.read_text()
    nn.write_text(good + "short_force_cutoff 3.0\n")
    n_lines = len(good.splitlines()) + 1
    with pytest.raises(ValueError, match=rf"input.nn: line {n_lines}: keyword 'short_force_cutoff' is not supported"):
        read_n2p2(folder)
    nn.write_text(good + "symfunction_short H 7 H 0.1 0.0 4.0\n")
    with pytest.raises(ValueError, match=rf"input.nn: line {n_lines}: symmetry function type 7 is not supported"):
        read_n2p2(folder)
    nn.write_text(good + "symfunction_short H 12 H 0.1 0.0 4.0\n")
    with pytest.raises(ValueError, match=rf"input.nn: line {n_lines}: a type 12 symmetry function has 6 fields"):
        read_n2p2(folder)
    nn.write_text(good + "symfunction_short H 2 C 0.1 0.0 4.0\n")
    with pytest.raises(ValueError, match=rf"line {n_lines}: element 'C' is not in 'elements'"):
        read_n2p2(folder)
    nn.write_text(good.replace("global_activation_short t p l", "global_activation_short t q l"))
    with pytest.raises(ValueError, match=r"input.nn: line \d+: global_activation_short needs 3 activations"):
        read_n2p2(folder)
    nn.write_text(good)
    weights = folder / "weights.008.data"
    text = weights.read_text()
    weights.write_text(text.rsplit("\n", 2)[0] + "\n")  # one connection short
    with pytest.raises(ValueError, match=r"weights.008.data: 42 connections, .* widths \[5, 4, 3, 1\] has 43"):
        read_n2p2(folder)
    weights.write_text(text + "0.5 a 46 0 9 1 1\n")
    with pytest.raises(ValueError, match="weights.008.data: line 45: weight from layer 0 neuron 9"):
        read_n2p2(folder)
    weights.write_text(text.replace(" a 1 ", " x 1 "))
    with pytest.raises(ValueError, match="weights.008.data: line 2: expected"):
        read_n2p2(folder)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="weights.008.data: no weights for element O"):
        read_n2p2(folder)
    _make(folder)
    _replace(folder / "scaling.data", "1 3 ", "1 9 ")
    with pytest.raises(ValueError, match=r"scaling.data: line 3: element 1 / function 9 does not exist"):
        read_n2p2(folder)
    _make(folder)
    (folder / "scaling.data").unlink()
    with pytest.raises(FileNotFoundError, match="scaling.data does not exist"):
        read_n2p2(folder)
    _make(folder)
    with pytest.raises(ValueError, match="length_unit must be one of"):
        read_n2p2(folder, length_unit="nm")
    nn.write_text(good + "nnp_generation 4\n")
    with pytest.raises(ValueError, match="4G-HDNNP"):
        read_n2p2(folder)  # read as a 4G-HDNNP (tests/io/test_n2p2_4g.py), which needs its keywords
    nn.write_text(good + "nnp_generation 3\n")
    with pytest.raises(ValueError, match=rf"line {n_lines}: nnp_generation 3: only 2G-HDNNP"):
        read_n2p2(folder)


def test_batches_of_centre_atoms_give_the_same_result(tmp_path, monkeypatch):
    from miniff.io import n2p2_compiled

    _make(tmp_path / "pot", cutoff=(6, 0.0))
    pots = read_n2p2(tmp_path / "pot", extrapolation="ignore")
    pos, species = _cluster(6)
    nw = _nw(pos, species, pots)
    whole = nw.evaluate(pots, grad=True)
    count = sum(p.last_extrapolations for p in pots)
    monkeypatch.setattr(n2p2_compiled, "MAX_JACOBIAN_ENTRIES", 1)  # one centre atom per batch
    nw = _nw(pos, species, pots)
    batched = nw.evaluate(pots, grad=True)
    assert batched.energy == pytest.approx(whole.energy, rel=1e-14)
    np.testing.assert_allclose(batched.grad_nc, whole.grad_nc, rtol=1e-13, atol=1e-14)
    assert sum(p.last_extrapolations for p in pots) == count > 0
    assert len(n2p2_compiled.atom_batches(pots[0], nw, nw.species_lookup["H"])) == species.count("H")


# ------------------------------------------------------------------ compact functions (types 20, 21, 22)
COMPACT = [
    "symfunction_short H 22 O H -4.0 4.0 90.0 270.0 p2",
    "symfunction_short H 20 O -4.0 4.0 p2",
    "symfunction_short H 21 H H 0.5 4.2 0.0 180.0 p3a",
    "symfunction_short H 20 H 1.0 3.5 e",
    "symfunction_short H 20 H -4.0 4.0 p2",
    "symfunction_short H 22 H O -4.0 4.0 -90.0 90.0 p2",
    "symfunction_short H 20 O 0.5 4.2 p1a",
    "symfunction_short O 20 H -4.2 4.2 p2",
    "symfunction_short O 22 H H -4.2 4.2 0.0 180.0 p4a",
    "symfunction_short O 21 H O -4.2 4.2 0.0 120.0 p2",
]
# by type, then subtype ("e" < "p1a" < "p2"), neighbour elements (H < O), rc, rl, angles:
COMPACT_ORDER = {"H": [3, 6, 4, 1, 2, 5, 0], "O": [7, 9, 8]}


def test_compact_functions_values_order_forces(tmp_path):
    _make(tmp_path / "pot", sym_lines=COMPACT)
    pots = read_n2p2(tmp_path / "pot", extrapolation="ignore")
    pos, species = _cluster(7)
    nw = _nw(pos, species, pots)
    for p in pots:
        g = p.descriptors(nw)
        refs = []
        for i, el in enumerate(species):
            if el == p.tag:
                refs.append([symmetry_function(COMPACT[k], i, pos, species, (1, 0.0)) for k in COMPACT_ORDER[el]])
                np.testing.assert_allclose(g[i], refs[-1], rtol=1e-12, atol=1e-14)
        assert (np.array(refs) > 0).any(axis=0).all()  # every function sees neighbours somewhere
    grad = nw.grad(pots)
    fd = central_difference(lambda q: _nw(q, species, pots).total(pots), pos, eps=1e-5)
    np.testing.assert_allclose(grad, fd, atol=1e-8)
    assert np.abs(grad).max() > 1e-2


def test_compact_bad_lines(tmp_path):
    folder = tmp_path / "pot"
    _make(folder, sym_lines=COMPACT)
    nn = folder / "input.nn"
    good = nn.read_text()
    n_lines = len(good.splitlines()) + 1
    for line, match in [("symfunction_short H 20 H -4.0 4.0 p5", "compact function subtype 'p5' is not one of"),
                        ("symfunction_short H 20 H 4.0 1.0 p2", r"rl \(4.0\) must be below rc"),
                        ("symfunction_short H 22 H H -4.0 4.0 -10.0 90.0 p2", r"angles \[-10.0, 90.0\]"),
                        ("symfunction_short H 21 H H -4.0 4.0 0.0 p2", "a type 21 symmetry function has 10 fields")]:
        nn.write_text(good + line + "\n")
        with pytest.raises(ValueError, match=rf"input.nn: line {n_lines}: {match}"):
            read_n2p2(folder)


# ------------------------------------------------------------------ weighted functions (types 12, 13, 23, 24, 25)
WEIGHTED = [
    "symfunction_short H 13 0.02 0.3 -1.0 2.0 4.0",
    "symfunction_short H 12 0.1 0.5 4.2",
    "symfunction_short H 23 -4.0 4.0 p2",
    "symfunction_short H 25 0.5 4.2 0.0 180.0 p3a",
    "symfunction_short H 12 0.1 0.0 4.2",
    "symfunction_short H 24 -4.0 4.0 30.0 150.0 p1",
    "symfunction_short H 2 O 0.1 0.0 4.2",
    "symfunction_short O 13 0.01 0.0 1.0 1.5 4.2",
    "symfunction_short O 23 1.0 3.5 e",
    "symfunction_short O 12 0.4 0.8 3.9",
]
# by type; 12, 13 by rc, eta, rs (zeta, lambda); 23-25 by subtype, rc, rl, angles:
WEIGHTED_ORDER = {"H": [6, 4, 1, 0, 2, 5, 3], "O": [9, 7, 8]}


@pytest.mark.parametrize("cutoff", [(1, 0.0), (6, 0.2)])
def test_weighted_functions_values_order_forces(tmp_path, cutoff):
    _make(tmp_path / "pot", sym_lines=WEIGHTED, cutoff=cutoff)
    pots = read_n2p2(tmp_path / "pot", extrapolation="ignore")
    pos, species = _cluster(8)
    nw = _nw(pos, species, pots)
    for p in pots:
        g = p.descriptors(nw)
        refs = []
        for i, el in enumerate(species):
            if el == p.tag:
                refs.append([symmetry_function(WEIGHTED[k], i, pos, species, cutoff) for k in WEIGHTED_ORDER[el]])
                np.testing.assert_allclose(g[i], refs[-1], rtol=1e-12, atol=1e-14)
        assert (np.array(refs) > 0).any(axis=0).all()
    grad = nw.grad(pots)
    fd = central_difference(lambda q: _nw(q, species, pots).total(pots), pos, eps=1e-5)
    np.testing.assert_allclose(grad, fd, atol=1e-8)
    assert np.abs(grad).max() > 1e-2


def test_weighted_functions_need_chemical_symbols(tmp_path):
    from miniff.kernel import Cell, NeighborWrapper

    _make(tmp_path / "pot", sym_lines=WEIGHTED)
    pots = read_n2p2(tmp_path / "pot", extrapolation="ignore")
    pos, species = _cluster(8)
    species = ["O", "H", "H", "O", "H", "H", "X1"]
    nw = NeighborWrapper(Cell(np.eye(3) * 30, pos / 30, species), pbc=False, cutoff=4.5)
    with pytest.raises(ValueError, match=r"atomic number, but the species \['X1'\] are not chemical symbols"):
        nw.total(pots)


def test_calculator_reports_extrapolation(tmp_path):
    from ase import Atoms

    from miniff.calculator import MiniffCalculator

    _make(tmp_path / "pot")
    pots = read_n2p2(tmp_path / "pot", extrapolation="ignore")
    pos, species = _cluster()
    atoms = Atoms(species, positions=pos, cell=np.eye(3) * 30.0, pbc=False)
    atoms.calc = MiniffCalculator(pots)
    energy = atoms.get_potential_energy()
    nw = _nw(pos, species, pots)
    assert energy == pytest.approx(nw.total(pots), rel=1e-12)
    counts = sum(p.last_extrapolation(nw) for p in pots)
    assert counts.sum() > 0
    np.testing.assert_array_equal(atoms.calc.results["extrapolating_descriptors"], counts)
    assert atoms.calc.results["n_extrapolating_atoms"] == int((counts > 0).sum())


def test_normalisation_keywords_all_or_none(tmp_path):
    """n2p2 takes mean_energy, conv_energy and conv_length together (conv_charge only with them)."""
    folder = tmp_path / "pot"
    _make(folder)
    nn = folder / "input.nn"
    text = nn.read_text()
    lines = text.splitlines()
    number = next(k for k, line in enumerate(lines, 1) if line.startswith("conv_energy"))
    nn.write_text("\n".join(line for line in lines if not line.startswith("mean_energy")) + "\n")
    with pytest.raises(ValueError, match=rf"input.nn: line {number - 1}: data-set normalisation needs all of"):
        read_n2p2(folder)
    nn.write_text("\n".join(line for line in lines if not line.startswith(("mean_energy", "conv_"))) +
                  "\nconv_charge 2.0\n")
    with pytest.raises(ValueError, match=r"needs all of mean_energy, conv_energy and conv_length .*'conv_charge'"):
        read_n2p2(folder)
    nn.write_text(text + "conv_charge 2.0\n")  # no effect on a 2G potential
    assert len(read_n2p2(folder)) == 2
