"""RuNNer and LAMMPS ``pair_style nn`` parsers on realistic files: comments, values by direct numpy formulas,
forces by central differences, errors naming the line."""

import io

import numpy as np
import pytest
from support import central_difference

from miniff import ml_util

A0 = 0.529177210903  # Bohr radius in Å (CODATA 2018)


def test_runner_comment_after_bang_or_hash():
    text = """symfunction_short Ge 2 Ge 0.3 0.0 12.0 ! central_atom type neighbor_atom eta rshift funccutoff
symfunction_short Ge 3 Ge Ge 0.01 1.0 2.0 12.0 ! central_atom type neighbor_atom1 neighbor_atom2 eta lambda zeta
symfunction_short Ge 2 Ge 0.5 1.0 11.0 # hash comment
! a whole-line comment
"""
    ds = ml_util.parse_runner_input(io.StringIO(text))
    assert [d.tag for d in ds] == ["Ge-Ge", "Ge-Ge-Ge", "Ge-Ge"]
    assert ds[0].parameters["eta"] == pytest.approx(0.3 / A0**2, rel=1e-12)
    assert ds[0].cutoff == pytest.approx(12 * A0, rel=1e-12)
    assert ds[1].parameters["zeta"] == 2 and ds[1].parameters["l"] == 1
    assert ds[2].parameters["r_sphere"] == pytest.approx(A0, rel=1e-12)


def test_runner_bad_numbers_name_line():
    with pytest.raises(ValueError, match="line 2: malformed"):
        ml_util.parse_runner_input(io.StringIO("symfunction_short Ge 2 Ge 0.3 0.0 12.0\n"
                                               "symfunction_short Ge 2 Ge x 0.0 12.0 ! eta\n"))


# ------------------------------------------------------------------------------------ pair_style nn files

SYMS = {  # element -> lines: type cutoff eta p3 p4 elements
    "Si": ["2 4.5 0.1 0.0 0.0 Si", "2 4.5 0.3 1.0 0.0 O", "4 4.5 0.05 1.0 -1.0 Si O", "4 4.2 0.02 2.0 1.0 Si Si"],
    "O": ["2 4.0 0.2 0.5 0.0 Si", "4 4.0 0.03 1.0 1.0 Si Si", "4 4.0 0.01 4.0 -1.0 O O"],
}


def _network(rng, n_in, widths):
    layers = []
    for k, n_out in enumerate(widths):
        layers.append((rng.normal(size=(n_out, n_in)) * 0.5, rng.normal(size=n_out) * 0.3,
                       "linear" if k == len(widths) - 1 else ("sigmoid" if k == 0 else "tanh")))
        n_in = n_out
    return layers


def _model(seed=0):
    rng = np.random.default_rng(seed)
    model = {}
    for el, lines in SYMS.items():
        n = len(lines)
        model[el] = {"sym": lines, "scale1": rng.normal(size=n) * 0.1, "scale2": rng.uniform(0.5, 2.0, size=n),
                     "layers": _network(rng, n, [5, 3, 1])}
    return model


def _write(model):
    out = ["ELEM_LIST O Si", ""]
    for el, m in model.items():
        cut = max(float(s.split()[1]) for s in m["sym"])
        out += [f"POT {el} {cut}", f"SYM {len(m['sym'])}"] + m["sym"]
        out.append("scale1 " + " ".join(repr(float(x)) for x in m["scale1"]))
        out.append("scale2 " + " ".join(repr(float(x)) for x in m["scale2"]))
        out.append(f"NET {len(m['layers']) - 1} " + " ".join(str(len(b)) for _, b, _ in m["layers"]))
        for k, (w, b, act) in enumerate(m["layers"]):
            out.append(f"LAYER {k} {act}")
            for node in range(len(b)):
                out.append(f"w{node} " + " ".join(repr(float(x)) for x in w[node]))
                out.append(f"b{node} {float(b[node])!r}")
        out.append("")
    return "\n".join(out) + "\n"


def _symmetry_functions(lines, i, pos, species):
    """The file's formulas, directly: G2 = sum_j exp(-eta (r - rs)^2) fc(r); G4 = 2^(1-zeta) sum over
    unordered pairs {j, k} of (1 + lambda cos)^zeta exp(-eta (rij^2 + rik^2 + rjk^2)) fc(rij) fc(rik) fc(rjk)."""
    def fc(r, rc):
        return 0.5 * (1 + np.cos(np.pi * r / rc)) if r < rc else 0.0

    out = []
    n = len(pos)
    for line in lines:
        w = line.split()
        kind, rc, eta, p3, p4 = int(w[0]), *map(float, w[1:5])
        g = 0.0
        if kind == 2:
            for j in range(n):
                r = np.linalg.norm(pos[j] - pos[i])
                if j != i and species[j] == w[5]:
                    g += np.exp(-eta * (r - p3) ** 2) * fc(r, rc)
        else:
            for j in range(n):
                for k in range(j + 1, n):
                    if i in (j, k) or sorted((species[j], species[k])) != sorted(w[5:7]):
                        continue
                    dij, dik = pos[j] - pos[i], pos[k] - pos[i]
                    rij, rik, rjk = np.linalg.norm(dij), np.linalg.norm(dik), np.linalg.norm(pos[k] - pos[j])
                    cos = dij @ dik / rij / rik
                    g += (2 ** (1 - p3) * (1 + p4 * cos) ** p3 * np.exp(-eta * (rij**2 + rik**2 + rjk**2))
                          * fc(rij, rc) * fc(rik, rc) * fc(rjk, rc))
        out.append(g)
    return np.array(out)


def _reference_energy(model, pos, species):
    acts = {"sigmoid": lambda x: 1 / (1 + np.exp(-x)), "tanh": np.tanh, "linear": lambda x: x}
    total = 0.0
    for i, el in enumerate(species):
        m = model[el]
        x = (_symmetry_functions(m["sym"], i, pos, species) - m["scale1"]) / m["scale2"]
        for w, b, act in m["layers"]:
            x = acts[act](w @ x + b)
        total += x[0]
    return total


def _cluster(seed=3):
    rng = np.random.default_rng(seed)
    species = ["Si", "O", "Si", "O", "O", "Si", "O"]
    pos = np.array([[0, 0, 0], [1.6, 0, 0], [0, 2.4, 0.3], [1.0, 1.2, 1.1], [-1.2, 0.9, -0.8], [2.5, 2.0, -0.6],
                    [0.5, -1.5, 1.4]], dtype=float) + rng.normal(scale=0.05, size=(7, 3))
    return pos + 10.0, species


def _wrapper(pos, species, cutoff=4.5):
    from miniff.kernel import Cell, NeighborWrapper

    vectors = np.eye(3) * 20.0
    return NeighborWrapper(Cell(vectors, pos / 20.0, species), pbc=False, cutoff=cutoff, n_threads=1)


def test_lammps_input_energy_and_forces():
    model = _model()
    pots = ml_util.parse_lammps_input(io.StringIO(_write(model)))
    assert [p.tag for p in pots] == ["O", "Si"]
    assert [len(p.descriptors) for p in pots] == [3, 4]
    si_si_o, si_si_si = pots[1].descriptors[2:]
    assert si_si_o.tag == "Si-Si-O" and si_si_o.parameters["epsilon"] == 1.0
    assert si_si_si.parameters["epsilon"] == 0.5 and si_si_si.parameters["zeta"] == 2.0
    pos, species = _cluster()
    nw = _wrapper(pos, species)
    assert nw.total(pots) == pytest.approx(_reference_energy(model, pos, species), rel=1e-12, abs=1e-12)
    grad = nw.grad(pots)
    fd = central_difference(lambda p: _wrapper(p, species).total(pots), pos, eps=1e-5)
    np.testing.assert_allclose(grad, fd, atol=1e-8)
    assert np.abs(grad).max() > 1e-3  # the test is not vacuous


def test_lammps_input_from_path_and_not_simplified(tmp_path):
    model = _model(1)
    (tmp_path / "potential_saved").write_text(_write(model))
    pos, species = _cluster(4)
    nw = _wrapper(pos, species)
    a = nw.total(ml_util.parse_lammps_input(tmp_path / "potential_saved"))
    b = nw.total(ml_util.parse_lammps_input(str(tmp_path / "potential_saved"), simplify=False))
    assert a == pytest.approx(b, rel=1e-13)
    assert a == pytest.approx(_reference_energy(model, pos, species), rel=1e-12)


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace("SYM 3", "SYM x"), r"line \d+: expected 'SYM"),
    (lambda t: t.replace("2 4.0 0.2 0.5 0.0 Si", "3 4.0 0.2 0.5 0.0 Si"), r"line \d+: symmetry function type '3'"),
    (lambda t: t.replace("2 4.0 0.2 0.5 0.0 Si", "2 4.0 0.2 0.5 0.0"), r"line \d+: a type 2 symmetry function"),
    (lambda t: t.replace("LAYER 1 tanh", "LAYER 1 swish3", 1), "unknown activation 'swish3'"),
    (lambda t: t.replace("NET 2 5 3 1", "NET 2 5 3 2", 1), "positive widths ending in 1"),
    (lambda t: t.replace("w1 ", "w7 ", 1), "expected 'w1'"),
    (lambda t: t.rsplit("b0", 1)[0], "ends inside the block of 'O'"),
    (lambda t: t.replace("2 4.0 0.2 0.5", "2 4.0 nan 0.5"), r"line \d+: .nan. is not a finite number"),
    (lambda t: "", "no 'POT' block"),
])
def test_lammps_input_errors(edit, match):
    text = edit(_write(_model()))
    with pytest.raises(ValueError, match=match):
        ml_util.parse_lammps_input(io.StringIO(text))


def test_lammps_input_zero_scale_and_type():
    text = _write(_model())
    lines = text.splitlines()
    k = next(n for n, line in enumerate(lines) if line.startswith("scale2"))
    lines[k] = "scale2 1.0 0 1.0 1.0"  # the Si block: 4 functions
    with pytest.raises(ValueError, match=f"line {k + 1}: scale2 has a zero entry"):
        ml_util.parse_lammps_input(io.StringIO("\n".join(lines)))
    with pytest.raises(TypeError, match="path or a text file"):
        ml_util.parse_lammps_input(42)
