"""Chebyshev descriptors (aenet's radial and angular expansions with per-species weights): values against a
direct numpy sum with numpy's own Chebyshev polynomials, Jacobian and stress against central differences,
serial vs OpenMP, permutation invariance, type spins, the recipe's count, files and bad input."""

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev as npcheb
from support import dense_descriptor_jacobian, fc, make_nw, neighbours, separated_fractions

import miniff.potentials as P
from miniff import ml_util
from miniff.ml import NNPotential, load_potentials, save_potentials
from miniff.numerical import numerical_descriptor_gradient, numerical_forces, numerical_stress

CUT = 4.3
ELEMENTS = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
ORDERS = (0, 1, 2, 5, 9)


def _system(rng, n_elements, periodic, n_atoms=14):
    vectors = np.array([[6.2, 0.0, 0.0], [0.6, 5.9, 0.0], [-0.4, 0.7, 6.4]])
    frac = separated_fractions(rng, vectors, n_atoms, 1.4)
    if not periodic:  # a cluster in the middle of a large box: no pair crosses the boundary
        frac = frac * 0.5 + 0.25
    species = np.array([ELEMENTS[k % n_elements] for k in range(n_atoms)])
    rng.shuffle(species)
    return vectors, frac, species, (periodic,) * 3


def _t(n, x):
    """T_n(x) by numpy's Chebyshev series (independent of the kernel's recurrence)."""
    return npcheb.chebval(x, np.eye(n + 1)[n])


def _reference(system, centre, weight, kind, order, a=CUT):
    """docs/formulas.md summed directly: radial over neighbours j, angular over unordered pairs j < k."""
    species = system[2]
    out = np.zeros(len(species))
    for i, neigh in enumerate(neighbours(system, a)):
        if species[i] != centre:
            continue
        if kind == "radial":
            out[i] = sum(weight[species[j]] * _t(order, 2 * np.linalg.norm(v) / a - 1) * fc(np.linalg.norm(v), a)
                         for j, v in neigh)
            continue
        for n1, (j, v1) in enumerate(neigh):
            for j2, v2 in neigh[n1 + 1:]:
                r1, r2 = np.linalg.norm(v1), np.linalg.norm(v2)
                cos = v1 @ v2 / (r1 * r2)
                out[i] += weight[species[j]] * weight[species[j2]] * _t(order, cos) * fc(r1, a) * fc(r2, a)
    return out


def _descriptors(centre, weights="unit", a=CUT):
    rad = [P.chebyshev_radial_descriptor_family(a=a, tag=centre, order=k, weights=weights) for k in ORDERS]
    ang = [P.chebyshev_angular_descriptor_family(a=a, tag=centre, order=k, weights=weights) for k in ORDERS]
    return rad + ang


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "cluster"])
@pytest.mark.parametrize("n_elements", [1, 2, 3, 5, 7])
def test_values_equal_the_direct_sum(rng, n_elements, periodic):
    system = _system(rng, n_elements, periodic)
    nw = make_nw(system, CUT)
    spins = P.type_spins(ELEMENTS[:n_elements])
    unit = dict.fromkeys(ELEMENTS, 1.0)
    largest = 0.0
    for centre in ELEMENTS[:n_elements]:
        for weights, lookup in (("unit", unit), (spins, spins)):
            descriptors = _descriptors(centre, weights)
            values, _ = P.eval_descriptors(nw, descriptors)
            for f, d in enumerate(descriptors):
                kind = "radial" if d.family is P.chebyshev_radial_descriptor_family else "angular"
                expected = _reference(system, centre, lookup, kind, d.parameters["order"])
                np.testing.assert_allclose(values[:, f], expected, rtol=1e-10, atol=1e-10)
                assert np.all(values[system[2] != centre, f] == 0)
            largest = max(largest, np.abs(values).max())
    assert largest > 0.5


def test_type_spins_are_centred_integers():
    assert P.type_spins(["Cu"]) == {"Cu": 0.0}
    assert P.type_spins(["Cu", "Pt"]) == {"Cu": -1.0, "Pt": 1.0}
    assert list(P.type_spins("ABC")) == ["A", "B", "C"]
    assert list(P.type_spins(list("ABCD")).values()) == [-2.0, -1.0, 1.0, 2.0]
    assert list(P.type_spins(list("ABCDE")).values()) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="species must not repeat"):
        P.type_spins(["Cu", "Cu"])


@pytest.mark.parametrize("n_elements", [1, 3])
def test_jacobian_and_stress_match_central_differences(rng, n_elements):
    system = _system(rng, n_elements, True, n_atoms=9)
    nw = make_nw(system, CUT)
    spins = P.type_spins(ELEMENTS[:n_elements])
    descriptors = _descriptors("Al") + _descriptors(ELEMENTS[n_elements - 1], weights=spins if n_elements > 1
                                                    else "Z")
    values, jac = P.eval_descriptors(nw, descriptors, grad=True)
    dense = dense_descriptor_jacobian(nw, jac)
    numerical = numerical_descriptor_gradient(nw, descriptors, eps=1e-5)
    assert np.abs(dense).max() > 1e-2
    np.testing.assert_allclose(dense, numerical, rtol=0, atol=1e-7 * np.abs(dense).max())
    ds = _descriptors("Al")
    torch.manual_seed(1)
    nn = torch.nn.Sequential(torch.nn.Linear(len(ds), 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    pot = NNPotential(nn, ds, tag="Al", simplify=False)
    np.testing.assert_allclose(-nw.grad(pot), numerical_forces(nw, pot), atol=1e-7)
    np.testing.assert_allclose(nw.evaluate(pot, stress=True).stress, numerical_stress(nw, pot), atol=1e-8)


def test_serial_and_openmp_agree_bit_for_bit(rng):
    system = _system(rng, 4, True, n_atoms=24)
    nw = make_nw(system, CUT)
    spins = P.type_spins(ELEMENTS[:4])
    many = [d for s in ELEMENTS[:4] for w in ("unit", spins) for d in _descriptors(s, w)]
    v1, j1 = P.eval_descriptors(nw, many, grad=True, n_threads=1)
    v2, j2 = P.eval_descriptors(nw, many, grad=True, n_threads=2)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(j1, j2)
    for f in (0, len(ORDERS) + 3):  # a single potential (batch of one) equals its column of the batch
        e_n, g_pc = many[f].compute(nw, grad=True, n_threads=2)
        np.testing.assert_allclose(e_n, v1[:, f], rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(g_pc, j1[:, f], rtol=1e-14, atol=1e-14)


def test_invariant_under_permutation_of_atoms_of_one_element(rng):
    vectors, frac, species, pbc = _system(rng, 3, True, n_atoms=16)
    nw = make_nw((vectors, frac, species, pbc), CUT)
    spins = P.type_spins(ELEMENTS[:3])
    descriptors = [d for s in ELEMENTS[:3] for d in _descriptors(s, spins)]
    values, _ = P.eval_descriptors(nw, descriptors)
    perm = np.arange(len(species))
    for s in ELEMENTS[:3]:
        idx = np.nonzero(species == s)[0]
        perm[idx] = rng.permutation(idx)
    values2, _ = P.eval_descriptors(make_nw((vectors, frac[perm], species[perm], pbc), CUT), descriptors)
    np.testing.assert_allclose(values2, values[perm], rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("n_elements", [2, 5, 7])
def test_the_recipe_count_does_not_depend_on_the_elements(n_elements):
    out = ml_util.default_chebyshev_descriptors(ELEMENTS[:n_elements], a=6.0)
    assert sorted(out) == sorted(ELEMENTS[:n_elements])
    for centre, items in out.items():
        assert len(items) == 2 * ((10 + 1) + (4 + 1))
        assert {d.tag for d in items} == {centre}
        assert [d.parameters["order"] for d in items] == (list(range(11)) + list(range(5))) * 2
        assert items[-1].parameters["weights"] == P.type_spins(sorted(ELEMENTS[:n_elements]))
    one = ml_util.default_chebyshev_descriptors(["Cu"], a=6.0, radial_order=3, angular_order=2,
                                                angular_cutoff=4.0)
    assert [d.cutoff for d in one["Cu"]] == [6.0] * 4 + [4.0] * 3
    with pytest.raises(ValueError, match="radial_order must be an integer in"):
        ml_util.default_chebyshev_descriptors(["Cu"], a=6.0, radial_order=64)
    with pytest.raises(ValueError, match="angular_cutoff must be a positive cutoff"):
        ml_util.default_chebyshev_descriptors(["Cu"], a=6.0, angular_cutoff=-1.0)


def test_state_dicts_and_files_round_trip(rng, tmp_path):
    nw = make_nw(_system(rng, 3, True), CUT)
    descriptors = _descriptors("Al", weights=P.type_spins(ELEMENTS[:3]))
    back = [P.potential_from_state_dict(d.state_dict()) for d in descriptors]
    np.testing.assert_array_equal(P.eval_descriptors(nw, back)[0], P.eval_descriptors(nw, descriptors)[0])
    torch.manual_seed(0)
    nn = torch.nn.Sequential(torch.nn.Linear(len(descriptors), 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)).double()
    pot = NNPotential(nn, descriptors, tag="Al", simplify=False)
    for name in ("pot.json", "pot.pt"):
        save_potentials([pot], tmp_path / name)
        (loaded,) = load_potentials(tmp_path / name)
        assert loaded.descriptors[3].parameters["order"] == 5
        np.testing.assert_array_equal(nw.eval(loaded, "kernel"), nw.eval(pot, "kernel"))


def test_bad_input_names_the_argument(rng):
    rad = P.chebyshev_radial_descriptor_family
    with pytest.raises(TypeError, match="order must be an integer"):
        rad(a=CUT, order=2.5, tag="Cu")
    with pytest.raises(TypeError, match="order must be an integer"):
        rad(a=CUT, order=True, tag="Cu")
    with pytest.raises(ValueError, match="Parameter 'order'"):
        rad(a=CUT, order=64, tag="Cu")
    with pytest.raises(ValueError, match="Parameter 'order'"):
        rad(a=CUT, order=-1, tag="Cu")
    with pytest.raises(ValueError, match="weights must be one of"):
        P.chebyshev_angular_descriptor_family(a=CUT, order=1, weights="spin", tag="Cu")
    nw = make_nw(_system(rng, 3, True), CUT)
    with pytest.raises(ValueError, match=r"weights: the table \['Al', 'Ni'\] has no weight for the species \['Cu'\]"):
        P.eval_descriptors(nw, [rad(a=CUT, order=1, tag="Al", weights={"Al": 1.0, "Ni": -1.0})])


def test_compiled_entry_points_check_shapes():
    from miniff._ext import kernel_module as k

    i32, f64 = np.int32, np.float64
    indptr = np.array([0, 1, 2], dtype=np.int64)
    j_p = np.array([1, 0], dtype=i32)
    d_p = np.ones(2)
    D_pc = np.zeros((2, 3))
    spec_n = np.zeros(2, dtype=i32)
    values = np.zeros((2, 1))
    jac = np.zeros((2, 3))
    w = np.ones((1, 1))
    ok = dict(cols=np.zeros(1, i32), c_f=np.zeros(1, i32))
    with pytest.raises(ValueError, match="order_f must lie in"):
        k.batch_chebyshev_radial_reduce(2.0, np.array([3], i32), 2, ok["cols"], ok["c_f"], w, indptr, j_p, d_p,
                                        D_pc, spec_n, 0, values, jac, True, 1)
    with pytest.raises(ValueError, match="n_max must be in"):
        k.batch_chebyshev_radial_reduce(2.0, np.array([3], i32), 64, ok["cols"], ok["c_f"], w, indptr, j_p, d_p,
                                        D_pc, spec_n, 0, values, jac, True, 1)
    with pytest.raises(ValueError, match="scratch buffers"):
        k.batch_chebyshev_angular_reduce(2.0, np.array([1], i32), 1, ok["cols"], ok["c_f"], w, indptr, j_p, d_p,
                                         D_pc, spec_n, 0, np.zeros((1, 2), f64), np.zeros((2, 3)), np.zeros((2, 1)),
                                         np.zeros(2, np.int64), values, jac, True, 1)
    with pytest.raises(ValueError, match="cols must index columns of values_nf"):
        k.batch_chebyshev_radial_reduce(2.0, np.array([1], i32), 1, np.array([1], i32), ok["c_f"], w, indptr,
                                        j_p, d_p, D_pc, spec_n, 0, values, jac, True, 1)
