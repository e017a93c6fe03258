"""miniff.io.write_n2p2: miniff NN potentials written as n2p2 folders read back by read_n2p2 (same energies,
forces and stresses), run by n2p2's nnp-predict when it is built, refused clearly where n2p2 has no equivalent,
written atomically."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from miniff import potentials as P
from miniff.io import read_n2p2, write_n2p2
from miniff.kernel import Cell, NeighborWrapper
from miniff.ml import NNPotential, Normalization

NNP_PREDICT = Path(os.environ.get("MINIFF_N2P2", "/work/n2p2")) / "bin" / "nnp-predict"
SKIP_N2P2 = pytest.mark.skipif(not NNP_PREDICT.is_file(), reason=f"n2p2's nnp-predict not found at {NNP_PREDICT}: "
                               f"build it with benchmarks/setup_n2p2.sh and set MINIFF_N2P2 to the checkout")


def _descriptors(c, o):
    """Every family write_n2p2 expresses, with both neighbour orders, unit/Z/table weights."""
    out = [P.behler2_descriptor_family(a=4.5, eta=e, r_sphere=rs, tag=f"{c}-{n}")
           for e, rs in [(0.1, 0.0), (0.5, 1.0)] for n in (c, o)]
    out += [P.behler4_descriptor_family(a=4.0, eta=0.02, l=lam, zeta=z, epsilon=0.7, tag=f"{c}-{b}-{d}")
            for lam in (1, -1) for z in (1, 2.5) for b, d in [(c, c), (c, o), (o, o)]]
    out += [P.behler5_descriptor_family(a=4.2, eta=0.01, l=1, zeta=4, tag=f"{c}-{o}-{c}"),
            P.behler5_descriptor_family(a=4.2, eta=0.03, l=-1, zeta=1, epsilon=-0.4, tag=f"{c}-{c}-{c}"),
            P.weighted_radial_descriptor_family(a=4.0, eta=0.2, r_sphere=0.5, weights="Z", tag=c),
            P.weighted_angular_descriptor_family(a=4.0, eta=0.05, r_sphere=0.3, l=-1, zeta=2, epsilon=1.3,
                                                 weights="Z", tag=c),
            P.weighted_radial_descriptor_family(a=4.0, eta=0.2, weights={"Si": 1.5, "O": -0.5}, tag=c),
            P.weighted_angular_descriptor_family(a=3.5, eta=0.05, l=1, zeta=1, weights="unit", tag=c)]
    return out


def _potentials(activation=torch.nn.Tanh, normalized=True, seed=0):
    torch.manual_seed(seed)
    pots = []
    for c, o, width in [("O", "Si", 6), ("Si", "O", 4)]:
        d = _descriptors(c, o)
        nn = torch.nn.Sequential(torch.nn.Linear(len(d), width), activation(), torch.nn.Linear(width, 3),
                                 activation(), torch.nn.Linear(3, 1)).double()
        pots.append((nn, d, c))
    if not normalized:
        return [NNPotential(nn, d, tag=c) for nn, d, c in pots]
    gen = torch.Generator().manual_seed(seed)
    scales = [torch.eye(len(d), dtype=torch.float64) * 3 + 0.2 * torch.rand(len(d), len(d), generator=gen,
                                                                               dtype=torch.float64)
              for _, d, _ in pots]
    norm = Normalization(torch.tensor(0.7, dtype=torch.float64), scales, torch.tensor([[-4.0], [-7.5]]),
                         [torch.rand(len(d), generator=gen, dtype=torch.float64) for _, d, _ in pots])
    return [NNPotential(nn, d, tag=c, normalization=norm, specimen=k) for k, (nn, d, c) in enumerate(pots)]


def _structure(seed=1):
    rng = np.random.default_rng(seed)
    vectors = np.array([[6.0, 0.3, 0.0], [0.0, 6.3, 0.2], [0.1, 0.0, 5.8]])
    species = ["Si"] * 4 + ["O"] * 8
    frac = rng.uniform(size=(12, 3))
    return vectors, frac, species


def _evaluate(pots, structure):
    vectors, frac, species = structure
    nw = NeighborWrapper(Cell(vectors, frac, species), pbc=True, cutoff=max(p.cutoff for p in pots))
    return nw.evaluate(pots, grad=True, stress=True)


@pytest.mark.parametrize("activation", [torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.Softplus])
def test_write_read_round_trip(tmp_path, activation):
    pots = _potentials(activation)
    folder = write_n2p2(pots, tmp_path / "nnp")
    assert sorted(os.listdir(folder)) == ["input.nn", "scaling.data", "weights.008.data", "weights.014.data"]
    back = read_n2p2(folder, extrapolation="ignore")
    assert [p.tag for p in back] == ["O", "Si"]
    for structure in (_structure(1), _structure(2)):
        ref, got = _evaluate(pots, structure), _evaluate(back, structure)
        assert got.energy == pytest.approx(ref.energy, abs=1e-10)
        np.testing.assert_allclose(got.grad_nc, ref.grad_nc, atol=1e-10)
        np.testing.assert_allclose(got.stress, ref.stress, atol=1e-10)
        assert np.abs(ref.grad_nc).max() > 5e-3  # forces are not trivially zero
    text = (tmp_path / "nnp" / "input.nn").read_text()
    assert "cutoff_type 1 0.0" in text and "global_nodes_short 6 3" in text  # Si's 4 neurons padded to 6
    assert "scale_symmetry_functions" not in text


def _run_nnp_predict(folder, structure, work):
    vectors, frac, species = structure
    shutil.copytree(folder, work)
    lines = ["begin"] + ["lattice " + " ".join(repr(float(x)) for x in v) for v in vectors]
    lines += [f"atom {x!r} {y!r} {z!r} {s} 0.0 0.0 0.0 0.0 0.0" for (x, y, z), s in zip((frac @ vectors).tolist(),
                                                                                        species, strict=True)]
    (work / "input.data").write_text("\n".join(lines + ["energy 0.0", "charge 0.0", "end"]) + "\n")
    proc = subprocess.run([str(NNP_PREDICT), "0"], cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [w.split() for w in (work / "energy.out").read_text().splitlines() if w.strip() and w[0] != "#"]
    forces = [[float(x) for x in w.split()[5:8]] for w in (work / "nnforces.out").read_text().splitlines()
              if w.strip() and w[0] != "#"]
    return float(rows[0][3]), np.array(forces), proc.stdout + proc.stderr


def _linear_potentials():
    """Networks without hidden layer (n2p2 needs one: written as a hidden layer of width 1, identity)."""
    torch.manual_seed(5)
    return [NNPotential(torch.nn.Linear(10, 1).double(), _descriptors(c, o)[:10], tag=c)
            for c, o in [("O", "Si"), ("Si", "O")]]


def test_linear_network_round_trip(tmp_path):
    pots = _linear_potentials()
    write_n2p2(pots, tmp_path / "nnp")
    assert "global_hidden_layers_short 1\nglobal_nodes_short 1\nglobal_activation_short l l" in (
        tmp_path / "nnp" / "input.nn").read_text()
    ref, got = _evaluate(pots, _structure(2)), _evaluate(read_n2p2(tmp_path / "nnp"), _structure(2))
    assert got.energy == pytest.approx(ref.energy, abs=1e-10)
    np.testing.assert_allclose(got.grad_nc, ref.grad_nc, atol=1e-10)


@SKIP_N2P2
@pytest.mark.parametrize("activation", [torch.nn.Tanh, torch.nn.Softplus, None])
def test_nnp_predict_agrees(tmp_path, activation):
    pots = _potentials(activation) if activation is not None else _linear_potentials()
    write_n2p2(pots, tmp_path / "nnp")
    structure = _structure(3)
    ref = _evaluate(pots, structure)
    energy, forces, _ = _run_nnp_predict(tmp_path / "nnp", structure, tmp_path / "run")
    assert energy == pytest.approx(ref.energy, abs=1e-9 * 12)
    np.testing.assert_allclose(forces, -ref.grad_nc, atol=1e-8)


def _ranged_potentials(structure):
    """Potentials of Behler families only (one n2p2 function per descriptor) whose descriptor ranges are those
    of ``structure`` narrowed a little: some values of that structure extrapolate."""
    torch.manual_seed(4)
    pots = []
    for c, o in [("O", "Si"), ("Si", "O")]:
        d = _descriptors(c, o)[:14]
        nn = torch.nn.Sequential(torch.nn.Linear(len(d), 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
        pots.append(NNPotential(nn, d, tag=c))
    vectors, frac, species = structure
    nw = NeighborWrapper(Cell(vectors, frac, species), pbc=True, cutoff=4.5)
    for p in pots:
        g = P.eval_descriptors(nw, list(p.descriptors))[0][np.asarray(species) == p.tag]
        lo, hi = g.min(0), g.max(0)
        p.descriptor_range = np.stack([lo + 0.02 * (hi - lo), hi], axis=1)
    return pots


def test_descriptor_range_becomes_scaling_data(tmp_path):
    structure = _structure(5)
    pots = _ranged_potentials(structure)
    write_n2p2(pots, tmp_path / "nnp")
    back = read_n2p2(tmp_path / "nnp", extrapolation="ignore")
    vectors, frac, species = structure
    nw = NeighborWrapper(Cell(vectors, frac, species), pbc=True, cutoff=4.5)
    nw.total(pots)
    ours = sum(int(p.last_extrapolation(nw).sum()) for p in pots)
    nw.total(back)
    assert sum(p.last_extrapolations for p in back) == ours > 0
    rows = (tmp_path / "nnp" / "scaling.data").read_text().split("\n")[0].split()
    assert float(rows[2]) < float(rows[3]) < 1e300


@SKIP_N2P2
def test_nnp_predict_counts_the_same_extrapolations(tmp_path):
    structure = _structure(5)
    pots = _ranged_potentials(structure)
    write_n2p2(pots, tmp_path / "nnp")
    vectors, frac, species = structure
    nw = NeighborWrapper(Cell(vectors, frac, species), pbc=True, cutoff=4.5)
    nw.total(pots)
    ours = sum(int(p.last_extrapolation(nw).sum()) for p in pots)
    _, _, log = _run_nnp_predict(tmp_path / "nnp", structure, tmp_path / "run")
    assert log.count("### NNP EXTRAPOLATION WARNING") == ours > 0


def test_refuses_what_n2p2_cannot_express(tmp_path):
    pots = _potentials(normalized=False)
    folder = tmp_path / "nnp"
    bad = list(pots[0].descriptors) + [P.sigmoid_descriptor_family(a=4.0, dr=0.2, r0=2.0, tag="O-Si")]
    nn = torch.nn.Sequential(torch.nn.Linear(len(bad), 2), torch.nn.Tanh(), torch.nn.Linear(2, 1)).double()
    with pytest.raises(ValueError, match=r"potentials\[0\] \(O\): descriptors\[22\] \('Sigmoid', tag 'O-Si'\) "
                                         r"has no n2p2 symmetry function"):
        write_n2p2([NNPotential(nn, bad, tag="O"), pots[1]], folder)
    x5 = [P.behler5x_descriptor_family(a=4.0, eta1=0.1, eta2=0.2, cos_theta0=0.0, tag="O-O-O")]
    with pytest.raises(ValueError, match=r"descriptors\[0\] \('Behler type 5x'"):
        write_n2p2([NNPotential(torch.nn.Linear(1, 1), x5, tag="O"), pots[1]], folder)
    silu = torch.nn.Sequential(torch.nn.Linear(len(pots[0].descriptors), 2), torch.nn.SiLU(), torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match=r"potentials\[0\] \(O\): layer 1 \(SiLU\) has no n2p2 equivalent"):
        write_n2p2([NNPotential(silu, pots[0].descriptors, tag="O"), pots[1]], folder)
    soft = torch.nn.Sequential(torch.nn.Linear(len(pots[0].descriptors), 2), torch.nn.Softplus(beta=2.0),
                               torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match=r"Softplus\(beta=2.0\); n2p2's softplus has beta 1"):
        write_n2p2([NNPotential(soft, pots[0].descriptors, tag="O"), pots[1]], folder)
    relu = torch.nn.Sequential(torch.nn.Linear(len(pots[0].descriptors), 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match=r"one network layout for all elements.*'O': 'rl', 'Si': 'ttl'"):
        write_n2p2([NNPotential(relu, pots[0].descriptors, tag="O"), pots[1]], folder)
    with pytest.raises(ValueError, match=r"names species 'Si', which has no potential among those written"):
        write_n2p2([pots[0]], folder)
    with pytest.raises(TypeError, match=r"potentials\[1\] .* is not an NN potential"):
        write_n2p2([pots[0], P.behler2_descriptor_family(a=4.0, eta=0.1, r_sphere=0.0, tag="Si-O")], folder)
    with pytest.raises(ValueError, match="one potential per element"):
        write_n2p2([pots[0], pots[0]], folder)
    with pytest.raises(TypeError, match="folder must be a path"):
        write_n2p2(pots, 3)
    assert not folder.exists() and os.listdir(tmp_path) == []


def test_writing_never_destroys_a_good_folder(tmp_path, monkeypatch):
    import miniff.io.n2p2_write as writer

    pots = _potentials(normalized=False)
    folder = tmp_path / "nnp"
    write_n2p2(pots, folder)
    before = {name: (folder / name).read_text() for name in os.listdir(folder)}
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        write_n2p2(pots, folder)

    def broken(layers):
        raise OSError("disk full")

    monkeypatch.setattr(writer, "_weights_text", broken)
    with pytest.raises(OSError, match="disk full"):
        write_n2p2(_potentials(normalized=False, seed=7), folder, overwrite=True)
    monkeypatch.undo()
    assert {name: (folder / name).read_text() for name in os.listdir(folder)} == before
    assert sorted(os.listdir(tmp_path)) == ["nnp"]  # no temporary folder left behind
    (folder / "input.data").write_text("begin\nend\n")
    with pytest.raises(FileExistsError, match=r"holds files that would be lost \(\['input.data'\]\)"):
        write_n2p2(pots, folder, overwrite=True)
    (folder / "input.data").unlink()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file; write_n2p2 writes a folder"):
        write_n2p2(pots, tmp_path / "file", overwrite=True)
    (tmp_path / "file").unlink()
    write_n2p2(_potentials(normalized=False, seed=7), folder, overwrite=True)
    assert (folder / "weights.008.data").read_text() != before["weights.008.data"]
