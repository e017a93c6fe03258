"""4G-HDNNPs read by ``read_n2p2``: hand-made potentials against a direct numpy implementation.

The reference below computes the symmetry functions (radial type 2, cosine cutoff) by brute force over
neighbours and images, the electronegativities and short-range energies by explicit networks, the charges by a
dense bordered linear solve, and the electrostatics of Gaussian charges directly: every pair of an open
structure; in a periodic cell an Ewald sum with its own splitting width and generous cutoffs (the result does
not depend on the splitting once converged), so it checks n2p2's Ewald parameters only through the converged
value.
"""

import itertools
import math

import numpy as np
import pytest
from scipy.special import erf, erfc

from miniff.io import N2p2Potential4G, read_n2p2
from miniff.numerical import numerical_forces, numerical_stress

ELEMENTS = ("H", "O")  # by atomic number: element indices 0, 1
SIGMA = {"H": 0.6, "O": 1.1}
HARDNESS = {"H": 0.9, "O": 0.4}
OFFSET = {"H": -0.4, "O": -3.0}
RC = 4.0
#: per element: (e1, eta) of its type-2 functions (rs = 0, cutoff type 1) in n2p2's order (by eta here);
#: input.nn lists them in reverse
FUNCTIONS = {"H": [("O", 0.05), ("H", 0.2), ("O", 0.3)], "O": [("H", 0.1), ("O", 0.2), ("H", 0.4)]}
NODES = 4
SCREEN = (1.0, 2.5)
FOUR_PI_EPS = 0.8


def _network(rng, n_in):
    return [(rng.normal(scale=0.7, size=(NODES, n_in)), rng.normal(scale=0.3, size=NODES)),
            (rng.normal(scale=0.7, size=(1, NODES)), rng.normal(scale=0.3, size=1))]


def _connections(net):
    """n2p2's order: per layer, weights from every input neuron to every output neuron, then the biases."""
    out = []
    for w, b in net:
        out.extend(w.T.reshape(-1))
        out.extend(b)
    return out


def _make(folder, periodic_settings="ewald_truncation_error_method 1\newald_prec 1e-11 0.5\n", seed=0,
          annotate=False, core="", normalisation=None):
    """A hand-made 4G potential; ``normalisation = (mean_energy, conv_energy, conv_length, conv_charge)`` writes
    the same model with n2p2's data-set normalisation: the short-range networks see the charge times
    ``conv_charge`` and output ``conv_energy (E_i - mean_energy)``; everything else stays in physical units
    (n2p2 converts the symmetry-function parameters, widths, hardness, electronegativities itself)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    lines = ["nnp_generation 4", "elements O H", "cutoff_type 1", "scale_symmetry_functions",
             "center_symmetry_functions", "scale_min_short -1.0", "scale_max_short 1.0",
             "global_hidden_layers_short 1", f"global_nodes_short {NODES}", "global_activation_short t l",
             "global_hidden_layers_electrostatic 1", f"global_nodes_electrostatic {NODES}",
             "global_activation_electrostatic t l", f"screen_electrostatics {SCREEN[0]} {SCREEN[1]} {core}",
             f"four_pi_epsilon {FOUR_PI_EPS}", "initial_hardness H 10.0   # a training setting", "kalman_q0 0.01"]
    lines += [f"fixed_gausswidth {e} {SIGMA[e]}" for e in ELEMENTS]
    lines += [f"atom_energy {e} {OFFSET[e]}" for e in ELEMENTS]
    lines += [f"symfunction {ec} 2 {e1} {eta} 0.0 {RC}" for ec in ELEMENTS for e1, eta in FUNCTIONS[ec][::-1]]
    if normalisation is not None:
        lines += [f"{key} {value!r}" for key, value in
                  zip(("mean_energy", "conv_energy", "conv_length", "conv_charge"), normalisation, strict=True)]
    (folder / "input.nn").write_text("\n".join(lines) + "\n" + periodic_settings)
    model = {}
    scaling = []
    for k, e in enumerate(ELEMENTS):
        n_f = len(FUNCTIONS[e])
        stats = [(0.0, 6.0 + f, 0.4 + 0.1 * f) for f in range(n_f)]
        scaling += [f"{k + 1} {f + 1} {lo} {hi} {mean}" for f, (lo, hi, mean) in enumerate(stats)]
        chi_net, short_net = _network(rng, n_f), _network(rng, n_f + 1)
        model[e] = {"stats": np.array(stats), "chi": chi_net, "short": short_net}
        z = {"H": 1, "O": 8}[e]
        if normalisation is not None:
            mean, conv_energy, _, conv_charge = normalisation
            (w1, b1), (w2, b2) = short_net
            w1 = w1.copy()
            w1[:, -1] /= conv_charge
            short_net = [(w1, b1), (w2 * conv_energy, (b2 - mean) * conv_energy)]
        for prefix, net in (("weightse", chi_net), ("weights", short_net)):
            values = _connections(net)
            if annotate:
                text = "".join(f"{float(v)!r} a {i + 1} 0 0 0 0\n" for i, v in enumerate(values))
            else:
                text = "# connections\n" + "".join(f"{float(v)!r}\n" for v in values)
            (folder / f"{prefix}.{z:03d}.data").write_text(text)
        (folder / f"hardness.{z:03d}.data").write_text(f"{HARDNESS[e]!r}\n")
    (folder / "scaling.data").write_text("\n".join(scaling) + "\n  -0.3 0.2\n")
    return model


# ---------------------------------------------------------------------------------------------- reference
def _images(vectors, reach):
    if vectors is None:
        return [np.zeros(3)]
    m = [int(math.ceil(reach / (abs(np.linalg.det(vectors)) / np.linalg.norm(np.cross(vectors[(a + 1) % 3],
                                                                                        vectors[(a + 2) % 3]))))) + 1
         for a in range(3)]
    return [np.array(s) @ vectors for s in itertools.product(*(range(-x, x + 1) for x in m))]


def _mlp(net, x):
    (w1, b1), (w2, b2) = net
    return (np.tanh(x @ w1.T + b1) @ w2.T + b2)[:, 0]


def _screen(r, core):
    x = np.clip((r - SCREEN[0]) / (SCREEN[1] - SCREEN[0]), 0.0, 1.0)
    if core == "p1":
        return 1.0 - ((2 * x - 3) * x * x + 1)
    return 1.0 - 0.5 * (np.cos(np.pi * x) + 1.0)


def _reference(model, pos, species, vectors=None, total_charge=0.0, core="c", self_factor=1.0):
    """``(energy, charges)`` of the hand-made model, by direct sums (files' units = eV, Å here)."""
    n = len(pos)
    k = 1.0 / FOUR_PI_EPS
    chi, x_all = np.zeros(n), []
    for i in range(n):
        e = species[i]
        g = np.zeros(len(FUNCTIONS[e]))
        for shift in _images(vectors, RC):
            for j in range(n):
                r = np.linalg.norm(pos[j] + shift - pos[i])
                if r < 1e-12 or r >= RC:
                    continue
                for f, (e1, eta) in enumerate(FUNCTIONS[e]):
                    if species[j] == e1:
                        g[f] += math.exp(-eta * r * r) * 0.5 * (math.cos(math.pi * r / RC) + 1.0)
        lo, hi, mean = model[e]["stats"].T
        x = -1.0 + 2.0 * (g - mean) / (hi - lo)
        x_all.append(x)
        chi[i] = _mlp(model[e]["chi"], x[None])[0]
    sig = np.array([SIGMA[s] for s in species])
    gam = np.sqrt(sig[:, None] ** 2 + sig[None, :] ** 2)
    coul = np.zeros((n, n))  # Q^T coul Q / 2: Coulomb energy of the Gaussian charges without their self energy
    screen = np.zeros((n, n))
    eta = 1.4
    for shift in _images(vectors, 14.0):
        for i in range(n):
            for j in range(n):
                r = np.linalg.norm(pos[j] + shift - pos[i])
                if r < 1e-12:
                    continue
                term = erf(r / (math.sqrt(2) * gam[i, j])) / r
                if vectors is not None:  # Ewald: the erf(r/(sqrt(2) eta))/r part goes to reciprocal space
                    term -= erf(r / (math.sqrt(2) * eta)) / r if r < 14.0 else term
                coul[i, j] += k * term
                if r < SCREEN[1]:
                    screen[i, j] += (k * erf(r / (math.sqrt(2) * gam[i, j])) / r * (_screen(r, core) - 1.0)
                                     * (self_factor if i == j else 1.0))
    if vectors is not None:
        recip = 2 * np.pi * np.linalg.inv(vectors).T
        volume = abs(np.linalg.det(vectors))
        for m in itertools.product(range(-9, 10), repeat=3):
            if m == (0, 0, 0):
                continue
            kv = np.array(m) @ recip
            k2 = kv @ kv
            ph = pos @ kv
            coul += k * 4 * np.pi / volume * math.exp(-eta * eta * k2 / 2) / k2 * np.cos(ph[:, None] - ph[None, :])
        coul -= np.eye(n) * k * 2 / (math.sqrt(2 * np.pi) * eta)
        assert erfc(14.0 / (math.sqrt(2) * eta)) < 1e-18
    a = coul + np.diag([HARDNESS[s] for s in species] + k / (sig * math.sqrt(np.pi)))
    bordered = np.ones((n + 1, n + 1))
    bordered[:n, :n] = a
    bordered[n, n] = 0
    q = np.linalg.solve(bordered, np.append(-chi, total_charge))[:n]
    energy = 0.5 * q @ (coul + screen) @ q
    for i in range(n):
        e = species[i]
        energy += _mlp(model[e]["short"], np.append(x_all[i], q[i])[None])[0] + OFFSET[e]
    return energy, q


def _molecule(rng):
    species = ["O", "H", "H", "O", "H", "H"]
    pos = np.array([[0, 0, 0], [0.96, 0, 0.1], [-0.3, 0.9, 0.1], [2.7, 0.3, 0.3], [3.3, 1.0, 0.0],
                    [2.9, -0.6, 0.7]]) + rng.normal(scale=0.05, size=(6, 3))
    return pos + 6.0, species


def _nw(pos, species, pots, vectors=None, pbc=False, total_charge=None):
    from miniff.kernel import Cell, NeighborWrapper

    vectors = np.eye(3) * 20.0 if vectors is None else vectors
    cell = Cell(vectors, pos @ np.linalg.inv(vectors), species)
    if total_charge is not None:
        cell.meta["total_charge"] = total_charge
    return NeighborWrapper(cell, pbc=pbc, cutoff=max(p.cutoff for p in pots), n_threads=1)


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("total_charge", [0.0, -1.0])
@pytest.mark.parametrize("annotate", [False, True])
def test_open_structure_energy_charges_forces(tmp_path, total_charge, annotate):
    model = _make(tmp_path / "pot", annotate=annotate)
    pots = read_n2p2(tmp_path / "pot")
    assert len(pots) == 1 and isinstance(pots[0], N2p2Potential4G)
    pos, species = _molecule(np.random.default_rng(1))
    nw = _nw(pos, species, pots, total_charge=total_charge)
    ev = nw.evaluate(pots, grad=True)
    energy, q = _reference(model, pos, species, total_charge=total_charge)
    np.testing.assert_allclose(pots[0].charges(nw), q, rtol=0, atol=1e-12)
    assert pots[0].charges(nw).sum() == pytest.approx(total_charge, abs=1e-12)
    assert ev.energy == pytest.approx(energy, rel=0, abs=1e-11)
    np.testing.assert_allclose(ev.energy_n.sum(), ev.energy, rtol=1e-14)
    np.testing.assert_allclose(-ev.grad_nc, numerical_forces(nw, pots, eps=1e-5), rtol=0, atol=2e-8)
    # the charges respond to the positions: forces at fixed charges would differ
    assert np.abs(pots[0].long_range_terms(nw)[0]).max() > 1e-3


def test_units_scale_energies_and_lengths(tmp_path):
    model = _make(tmp_path / "pot")
    length, energy_unit = 0.7, 3.0
    pots = read_n2p2(tmp_path / "pot", length_unit=length, energy_unit=energy_unit)
    pos, species = _molecule(np.random.default_rng(2))
    nw = _nw(pos * length, species, pots)
    energy, q = _reference(model, pos, species)
    assert nw.total(pots) == pytest.approx(energy * energy_unit, abs=1e-10)
    np.testing.assert_allclose(pots[0].charges(nw), q, atol=1e-12)


def _crystal(rng):
    vectors = np.array([[5.2, 0.0, 0.0], [0.6, 4.9, 0.0], [-0.3, 0.4, 5.5]])
    species = ["O", "H", "H", "O", "H", "H"]
    frac = np.array([[0.1, 0.1, 0.1], [0.28, 0.12, 0.1], [0.05, 0.3, 0.15], [0.6, 0.55, 0.5], [0.75, 0.6, 0.55],
                     [0.55, 0.72, 0.45]]) + rng.normal(scale=0.01, size=(6, 3))
    return frac @ vectors, species, vectors


def test_periodic_energy_charges_forces_stress(tmp_path):
    model = _make(tmp_path / "pot")
    pots = read_n2p2(tmp_path / "pot")
    pos, species, vectors = _crystal(np.random.default_rng(3))
    nw = _nw(pos, species, pots, vectors=vectors, pbc=True)
    ev = nw.evaluate(pots, grad=True, stress=True)
    energy, q = _reference(model, pos, species, vectors=vectors)
    np.testing.assert_allclose(pots[0].charges(nw), q, rtol=0, atol=1e-9)
    assert ev.energy == pytest.approx(energy, rel=0, abs=1e-9)
    np.testing.assert_allclose(-ev.grad_nc, numerical_forces(nw, pots, eps=1e-5), rtol=0, atol=1e-7)
    np.testing.assert_allclose(ev.stress, numerical_stress(nw, pots, eps=1e-6), rtol=0, atol=1e-7)


@pytest.mark.parametrize("periodic", [False, True])
def test_normalised_model_predicts_the_same(tmp_path, periodic):
    """n2p2's data-set normalisation (mean_energy, conv_energy, conv_length, conv_charge) changes the numbers in the
    files, not the predictions: energies, forces, stresses and charges of the normalised folder equal the plain
    one's and the direct reference."""
    model = _make(tmp_path / "plain", seed=4)
    _make(tmp_path / "normalised", seed=4, normalisation=(-0.7, 13.0, 1.9, 1.6))
    plain, normalised = read_n2p2(tmp_path / "plain"), read_n2p2(tmp_path / "normalised")
    if periodic:
        pos, species, vectors = _crystal(np.random.default_rng(5))
    else:
        (pos, species), vectors = _molecule(np.random.default_rng(5)), None
    a = _nw(pos, species, plain, vectors=vectors, pbc=periodic).evaluate(plain, grad=True, stress=periodic)
    nw = _nw(pos, species, normalised, vectors=vectors, pbc=periodic)
    b = nw.evaluate(normalised, grad=True, stress=periodic)
    energy, q = _reference(model, pos, species, vectors=vectors)
    assert b.energy == pytest.approx(a.energy, rel=1e-13)
    assert b.energy == pytest.approx(energy, rel=0, abs=1e-9)
    np.testing.assert_allclose(normalised[0].charges(nw), q, rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.grad_nc, a.grad_nc, rtol=1e-11, atol=1e-12)
    assert np.abs(b.grad_nc).max() > 1e-2
    if periodic:
        np.testing.assert_allclose(b.stress, a.stress, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(-b.grad_nc, numerical_forces(nw, normalised, eps=1e-5), rtol=0, atol=1e-7)


@pytest.mark.parametrize("settings", ["ewald_prec 1e-12\n", "ewald_truncation_error_method 1\n"
                                      "ewald_prec 1e-12 0.5 12.0\n"])
def test_other_ewald_truncation_methods_converge_to_the_same_energy(tmp_path, settings):
    model = _make(tmp_path / "pot", periodic_settings=settings)
    pots = read_n2p2(tmp_path / "pot")
    pos, species, vectors = _crystal(np.random.default_rng(4))
    nw = _nw(pos, species, pots, vectors=vectors, pbc=True)
    energy, q = _reference(model, pos, species, vectors=vectors)
    assert nw.total(pots) == pytest.approx(energy, abs=1e-8)
    np.testing.assert_allclose(pots[0].charges(nw), q, atol=1e-8)


def test_ewald_split_follows_n2p2_rules():
    from miniff.io.n2p2_4g_files import Generation4Settings, ewald_split

    s = Generation4Settings([], [], {}, None, 1.0, 1, (1e-5, 0.16))
    split = ewald_split(s, volume=27000.0, n_atoms=300, max_sigma=1.0)
    # the defining equations: exp(-s^2)/sqrt(s) = p/C sqrt(eta/2), eta = eta0 (1 + 1/(2 s^2))^(1/6)
    c = 2**0.75 * 0.16**2 * math.sqrt(300 / 27000.0)
    s_ = split.r_cut / (math.sqrt(2) * split.eta)
    assert math.exp(-s_ * s_) / math.sqrt(s_) == pytest.approx(1e-5 / c * math.sqrt(split.eta / 2), rel=1e-9)
    eta0 = (27000.0**2 / (3.676 * (2 * math.pi) ** 3)) ** (1 / 6)
    assert split.eta == pytest.approx(eta0 * (1 + 1 / (2 * s_ * s_)) ** (1 / 6), rel=1e-12)
    assert split.k_cut == pytest.approx(math.sqrt(2) * s_ / split.eta, rel=1e-14)
    jackson = ewald_split(Generation4Settings([], [], {}, None, 1.0, 0, (1e-6,)), 1000.0, 10, 1.0)
    assert jackson.eta == pytest.approx(10 / math.sqrt(2 * math.pi))
    assert jackson.r_cut == pytest.approx(math.sqrt(-2 * math.log(1e-6)) * jackson.eta)


def test_bad_input_names_the_problem(tmp_path):
    folder = tmp_path / "pot"
    _make(folder)
    (folder / "hardness.008.data").unlink()
    with pytest.raises(FileNotFoundError, match="hardness.008.data"):
        read_n2p2(folder)
    _make(folder)
    text = (folder / "input.nn").read_text()
    (folder / "input.nn").write_text(text.replace("fixed_gausswidth O 1.1\n", ""))
    with pytest.raises(ValueError, match=r"fixed_gausswidth is missing for \['O'\]"):
        read_n2p2(folder)
    (folder / "input.nn").write_text(text.replace("nnp_generation 4", "nnp_generation 2"))
    with pytest.raises(ValueError, match="input.nn: line .*'global_hidden_layers_electrostatic' belongs to 4G"):
        read_n2p2(folder)
    (folder / "input.nn").write_text(text.replace("nnp_generation 4", "nnp_generation 3"))
    with pytest.raises(ValueError, match="line 1: nnp_generation 3"):
        read_n2p2(folder)
    (folder / "input.nn").write_text(text + "ewald_prec 1e-5 0.1 3 4\n")
    with pytest.raises(ValueError, match="keyword 'ewald_prec' appears twice"):
        read_n2p2(folder)
    (folder / "input.nn").write_text(text)
    (folder / "weightse.001.data").write_text("0.5\n")
    with pytest.raises(ValueError, match=r"weightse.001.data: 1 connections, a network of widths \[3, 4, 1\]"):
        read_n2p2(folder)
    _make(folder, periodic_settings="")
    pots = read_n2p2(folder)
    pos, species, vectors = _crystal(np.random.default_rng(5))
    with pytest.raises(ValueError, match="'ewald_prec' is missing"):
        _nw(pos, species, pots, vectors=vectors, pbc=True).total(pots)
    with pytest.raises(ValueError, match=r"meta\['total_charge'\] must be a number"):
        _nw(pos, species, pots, total_charge="one").total(pots)
    with pytest.raises(ValueError, match=r"meta\['total_charge'\] must be finite"):
        _nw(pos, species, pots, total_charge=float("nan")).total(pots)
    with pytest.raises(ValueError, match="the structure also has"):
        _nw(pos, ["C"] + species[1:], pots).total(pots)
    with pytest.raises(ValueError, match="periodic along all three axes or along none"):
        _nw(pos, species, pots, vectors=vectors, pbc=(True, True, False)).total(pots)


def test_threads_calculator_and_extrapolation(tmp_path):
    from ase import Atoms

    from miniff.calculator import MiniffCalculator

    _make(tmp_path / "pot")
    pots = read_n2p2(tmp_path / "pot")
    pos, species, vectors = _crystal(np.random.default_rng(6))
    serial = _nw(pos, species, pots, vectors=vectors, pbc=True).evaluate(pots, grad=True, stress=True, n_threads=1)
    threaded = _nw(pos, species, pots, vectors=vectors, pbc=True).evaluate(pots, grad=True, stress=True, n_threads=2)
    np.testing.assert_allclose(threaded.grad_nc, serial.grad_nc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(threaded.stress, serial.stress, rtol=0, atol=1e-13)
    atoms = Atoms("".join(species), positions=pos, cell=vectors, pbc=True)
    atoms.set_initial_charges([0.5] + [0.0] * 5)
    atoms.calc = MiniffCalculator(pots)
    nw = _nw(pos, species, pots, vectors=vectors, pbc=True, total_charge=0.5)
    assert atoms.get_potential_energy() == pytest.approx(nw.total(pots), abs=1e-12)
    np.testing.assert_allclose(atoms.get_charges(), pots[0].charges(nw), atol=1e-13)
    assert atoms.get_charges().sum() == pytest.approx(0.5, abs=1e-12)
    assert atoms.calc.results["n_extrapolating_atoms"] == 0
    # a range of scaling.data shrunk below the structure's values: extrapolation
    text = (tmp_path / "pot" / "scaling.data").read_text().replace(" 6.0 ", " 0.01 ")
    (tmp_path / "pot" / "scaling.data").write_text(text)
    pots = read_n2p2(tmp_path / "pot", extrapolation="raise")
    from miniff.potentials.extrapolation import ExtrapolationError

    with pytest.raises(ExtrapolationError, match="outside the training range"):
        _nw(pos, species, pots, vectors=vectors, pbc=True).total(pots)


def test_parser_asked_for_the_wrong_generation(tmp_path):
    from miniff.io.n2p2_files import parse_n2p2_folder

    _make(tmp_path / "pot")
    with pytest.raises(ValueError, match=r"input.nn: line 1: this folder holds a 4G-HDNNP potential, not a 2G"):
        parse_n2p2_folder(tmp_path / "pot")
    nn = tmp_path / "pot" / "input.nn"
    from miniff.io.n2p2_files import GENERATION4_KEYWORDS

    lines = [line for line in nn.read_text().splitlines()
             if line.split()[0] not in GENERATION4_KEYWORDS | {"nnp_generation"}]
    nn.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"\(no nnp_generation: 2\): this folder holds a 2G-HDNNP"):
        parse_n2p2_folder(tmp_path / "pot", generation=4)


def test_screening_core_p1(tmp_path):
    model = _make(tmp_path / "pot", core="p1")
    pots = read_n2p2(tmp_path / "pot")
    pos, species = _molecule(np.random.default_rng(7))
    nw = _nw(pos, species, pots)
    energy, _ = _reference(model, pos, species, core="p1")
    assert nw.total(pots) == pytest.approx(energy, abs=1e-11)
    assert abs(energy - _reference(model, pos, species, core="c")[0]) > 1e-4  # the core matters here
    np.testing.assert_allclose(-nw.grad(pots), numerical_forces(nw, pots, eps=1e-5), rtol=0, atol=2e-8)


def test_small_cell_self_image_screening(tmp_path):
    # a cell vector (2.3 Å) shorter than the screening radius (2.5 Å): atoms screen their own images (a real-space
    # cutoff of 14 Å, where the Gaussian charges' interaction has decayed)
    model = _make(tmp_path / "pot", periodic_settings="ewald_truncation_error_method 1\newald_prec 1e-12 0.5 14.0\n")
    pots = read_n2p2(tmp_path / "pot")
    vectors = np.array([[2.3, 0.0, 0.0], [0.2, 3.1, 0.0], [0.1, -0.3, 3.4]])
    species = ["O", "H", "H"]
    pos = np.array([[0.1, 0.2, 0.3], [0.9, 0.3, 0.35], [0.2, 1.1, 0.5]])
    nw = _nw(pos, species, pots, vectors=vectors, pbc=True)
    assert pots[0].self_image_screening == "once"
    energy, _ = _reference(model, pos, species, vectors=vectors)
    assert nw.total(pots) == pytest.approx(energy, abs=1e-9)
    pots[0].self_image_screening = "n2p2"
    doubled, q = _reference(model, pos, species, vectors=vectors, self_factor=2.0)
    assert abs(doubled - energy) > 1e-4
    ev = nw.evaluate(pots, grad=True, stress=True)
    assert ev.energy == pytest.approx(doubled, abs=1e-9)
    np.testing.assert_allclose(pots[0].charges(nw), q, atol=1e-9)
    np.testing.assert_allclose(-ev.grad_nc, numerical_forces(nw, pots, eps=1e-5), rtol=0, atol=1e-7)
    np.testing.assert_allclose(ev.stress, numerical_stress(nw, pots, eps=1e-6), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="self_image_screening must be"):
        pots[0].self_image_screening = "twice"


def test_batches_of_centre_atoms_give_the_same_result(tmp_path, monkeypatch):
    from miniff.io import n2p2_compiled

    _make(tmp_path / "pot")
    pos, species, vectors = _crystal(np.random.default_rng(8))
    whole = read_n2p2(tmp_path / "pot")
    chunked = read_n2p2(tmp_path / "pot")
    a = _nw(pos, species, whole, vectors=vectors, pbc=True).evaluate(whole, grad=True, stress=True)
    monkeypatch.setattr(n2p2_compiled, "MAX_JACOBIAN_ENTRIES", 1)  # one centre atom per batch: Jacobians recomputed
    b = _nw(pos, species, chunked, vectors=vectors, pbc=True).evaluate(chunked, grad=True, stress=True)
    assert b.energy == pytest.approx(a.energy, abs=1e-12)
    np.testing.assert_allclose(b.grad_nc, a.grad_nc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.stress, a.stress, rtol=0, atol=1e-13)
