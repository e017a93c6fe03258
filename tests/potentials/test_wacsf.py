"""Element-weighted symmetry functions (wACSF, n2p2's types 12 and 13): values against a direct numpy double
sum over neighbours, Jacobian and stress against central differences, permutation invariance, the reduction to
Behler types 2 and 4, thread independence, batching, weight tables and bad input."""

import numpy as np
import pytest
import torch
from ase.data import atomic_masses, atomic_numbers
from support import dense_descriptor_jacobian, fc, make_nw, neighbours, separated_fractions

import miniff.potentials as P
from miniff.ml import NNPotential, load_potentials, save_potentials
from miniff.numerical import numerical_descriptor_gradient, numerical_forces, numerical_stress

CUT = 4.3
ELEMENTS = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
RADIAL = [dict(eta=0.0, r_sphere=0.0), dict(eta=0.7, r_sphere=0.0), dict(eta=2.5, r_sphere=2.6),
          dict(eta=1.1, r_sphere=3.3)]
ANGULAR = [dict(eta=0.0, r_sphere=0.0, l=1.0, zeta=1.0), dict(eta=0.05, r_sphere=0.0, l=-1.0, zeta=2.0),
           dict(eta=0.3, r_sphere=1.5, l=1.0, zeta=4.0), dict(eta=0.05, r_sphere=0.5, l=-0.6, zeta=2.7, epsilon=0.5)]


def _system(rng, n_elements, periodic, n_atoms=14):
    """A random periodic box or cluster of ``n_atoms`` with the first ``n_elements`` of ELEMENTS (each at
    least once), atoms at least 1.4 Å apart."""
    vectors = np.array([[6.2, 0.0, 0.0], [0.6, 5.9, 0.0], [-0.4, 0.7, 6.4]])
    if periodic:
        frac = separated_fractions(rng, vectors, n_atoms, 1.4)
    else:  # a cluster in the middle of a large box: no pair crosses the boundary
        frac = separated_fractions(rng, vectors, n_atoms, 1.4) * 0.5 + 0.25
    species = np.array([ELEMENTS[k % n_elements] for k in range(n_atoms)])
    rng.shuffle(species)
    return vectors, frac, species, (periodic,) * 3


def _reference(system, centre, weight, kind, eta, r_sphere, l=0.0, zeta=0.0, epsilon=1.0, a=CUT):
    """The formulas of docs/formulas.md summed directly: radial over neighbours j, angular over ordered
    neighbour pairs (j, k), j != k, of every species; ``weight`` maps species to weights."""
    species = system[2]
    out = np.zeros(len(species))

    def g(r):
        return np.exp(-eta * (r - r_sphere) ** 2) * fc(r, a)

    for i, neigh in enumerate(neighbours(system, a)):
        if species[i] != centre:
            continue
        if kind == "radial":
            out[i] = sum(weight[species[j]] * g(np.linalg.norm(v)) for j, v in neigh)
            continue
        for n1, (j, v1) in enumerate(neigh):
            for n2, (k, v2) in enumerate(neigh):
                if n1 == n2:
                    continue
                r1, r2, r3 = np.linalg.norm(v1), np.linalg.norm(v2), np.linalg.norm(v2 - v1)
                cos = np.clip(v1 @ v2 / (r1 * r2), -1.0, 1.0)
                out[i] += (2 ** (1 - zeta) * epsilon * weight[species[j]] * weight[species[k]]
                           * (1 + l * cos) ** zeta * g(r1) * g(r2) * g(r3))
    return out


def _descriptors(centre, weights="Z", a=CUT):
    rad = [P.weighted_radial_descriptor_family(a=a, tag=centre, weights=weights, **p) for p in RADIAL]
    ang = [P.weighted_angular_descriptor_family(a=a, tag=centre, weights=weights, **p) for p in ANGULAR]
    return rad + ang


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "cluster"])
@pytest.mark.parametrize("n_elements", [1, 2, 3, 5, 7])
def test_values_equal_the_direct_sum(rng, n_elements, periodic):
    system = _system(rng, n_elements, periodic)
    nw = make_nw(system, CUT)
    z = {s: float(atomic_numbers[s]) for s in ELEMENTS}
    for centre in ELEMENTS[:n_elements]:
        descriptors = _descriptors(centre)
        values, _ = P.eval_descriptors(nw, descriptors)
        for f, d in enumerate(descriptors):
            par = {k: v for k, v in d.parameters.items() if k not in ("a", "weights")}
            kind = "radial" if d.family is P.weighted_radial_descriptor_family else "angular"
            expected = _reference(system, centre, z, kind, **par)
            np.testing.assert_allclose(values[:, f], expected, rtol=1e-11, atol=1e-10)
            assert np.all(values[system[2] != centre, f] == 0)
        assert np.abs(values).max() > 1


def test_weight_tables_and_user_tables(rng):
    system = _system(rng, 3, True)
    nw = make_nw(system, CUT)
    table = {"Al": -0.5, "Ni": 2.0, "Cu": 0.0}  # any real weight; 0 removes a species
    mass = {s: float(atomic_masses[atomic_numbers[s]]) for s in ELEMENTS}
    for weights, lookup in ((table, table), ("mass", mass)):
        descriptors = _descriptors("Ni", weights)
        values, _ = P.eval_descriptors(nw, descriptors)
        for f, d in enumerate(descriptors):
            par = {k: v for k, v in d.parameters.items() if k not in ("a", "weights")}
            kind = "radial" if f < len(RADIAL) else "angular"
            np.testing.assert_allclose(values[:, f], _reference(system, "Ni", lookup, kind, **par), rtol=1e-11,
                                       atol=1e-10)
    np.testing.assert_allclose(P.species_weights("covalent_radius", ["H", "Au"]), [0.31, 1.36])
    np.testing.assert_array_equal(P.species_weights(None, ["Pt", "Al"]), [78.0, 13.0])


@pytest.mark.parametrize("n_elements", [1, 3])
def test_jacobian_and_stress_match_central_differences(rng, n_elements):
    system = _system(rng, n_elements, True, n_atoms=9)
    nw = make_nw(system, CUT)
    descriptors = _descriptors("Al") + _descriptors(ELEMENTS[n_elements - 1], weights={s: 0.3 + 0.1 * k for k, s
                                                                                        in enumerate(ELEMENTS)})
    values, jac = P.eval_descriptors(nw, descriptors, grad=True)
    dense = dense_descriptor_jacobian(nw, jac)
    numerical = numerical_descriptor_gradient(nw, descriptors, eps=1e-5)
    assert np.abs(dense).max() > 1e-2
    np.testing.assert_allclose(dense, numerical, rtol=0, atol=1e-7 * np.abs(dense).max())
    # forces and stress of a network on top of them (the per-pair Jacobian gives the virial)
    centre = "Al"
    ds = _descriptors(centre, weights="Z")
    torch.manual_seed(1)
    nn = torch.nn.Sequential(torch.nn.Linear(len(ds), 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    with torch.no_grad():
        nn[0].weight.mul_(1e-3)
    pot = NNPotential(nn, ds, tag=centre, simplify=False)
    np.testing.assert_allclose(-nw.grad(pot), numerical_forces(nw, pot), atol=1e-7)
    np.testing.assert_allclose(nw.evaluate(pot, stress=True).stress, numerical_stress(nw, pot), atol=1e-8)


def test_invariant_under_permutation_of_atoms_of_one_element(rng):
    vectors, frac, species, pbc = _system(rng, 4, True, n_atoms=16)
    nw = make_nw((vectors, frac, species, pbc), CUT)
    descriptors = [d for s in ELEMENTS[:4] for d in _descriptors(s)]
    values, _ = P.eval_descriptors(nw, descriptors)
    perm = np.arange(len(species))
    for s in ELEMENTS[:4]:  # shuffle the atoms of every element among themselves
        idx = np.nonzero(species == s)[0]
        perm[idx] = rng.permutation(idx)
    nw2 = make_nw((vectors, frac[perm], species[perm], pbc), CUT)
    values2, _ = P.eval_descriptors(nw2, descriptors)
    np.testing.assert_allclose(values2, values[perm], rtol=1e-12, atol=1e-10)


def test_one_element_with_unit_weights_is_behler_2_and_4(rng):
    vectors = np.eye(3) * 6.0
    system = vectors, separated_fractions(rng, vectors, 12, 1.5), np.array(["Xx"] * 12), (True, True, True)
    nw = make_nw(system, CUT)
    one = {"Xx": 1.0}
    weighted, plain = [], []
    for eta, r_s in ((0.3, 0.0), (1.2, 2.7)):
        weighted.append(P.weighted_radial_descriptor_family(a=CUT, eta=eta, r_sphere=r_s, weights=one, tag="Xx"))
        plain.append(P.behler2_descriptor_family(a=CUT, eta=eta, r_sphere=r_s, tag="Xx-Xx"))
    for eta, lam, zeta in ((0.0, 1.0, 1.0), (0.1, -1.0, 4.0), (0.05, 0.5, 2.5)):
        weighted.append(P.weighted_angular_descriptor_family(a=CUT, eta=eta, l=lam, zeta=zeta, weights=one, tag="Xx"))
        plain.append(P.behler4_descriptor_family(a=CUT, eta=eta, l=lam, zeta=zeta, tag="Xx-Xx-Xx"))
    vw, jw = P.eval_descriptors(nw, weighted, grad=True)
    vp, jp = P.eval_descriptors(nw, plain, grad=True)
    assert vp.min() > 0
    np.testing.assert_allclose(vw, vp, rtol=1e-12, atol=0)
    np.testing.assert_allclose(jw, jp, rtol=1e-10, atol=1e-13 * np.abs(jp).max())


def test_threads_batches_and_chunks_agree(rng):
    vectors = np.eye(3) * 9.0
    species = np.array([ELEMENTS[k % 5] for k in range(70)])
    system = vectors, separated_fractions(rng, vectors, 70, 1.3), species, (True, True, True)
    nw = make_nw(system, CUT)
    many = [P.weighted_angular_descriptor_family(a=CUT, eta=e, l=lam, zeta=z, tag="Cu")
            for e in np.linspace(0, 0.5, 9) for lam in (-1.0, 1.0) for z in (1.0, 2.0, 3.5, 8.0)]  # 72 > 64
    many += [P.weighted_radial_descriptor_family(a=CUT, eta=e, r_sphere=r, tag="Ni")
             for e in (0.5, 1.0, 2.0) for r in np.linspace(0, 4, 23)]  # 69 > 64
    many += _descriptors("Cu", weights={s: 1.0 for s in ELEMENTS})  # a second weight table in the same pass
    many += [P.weighted_radial_descriptor_family(a=CUT, eta=0.5, weights={s: 1.0 + k for s in ELEMENTS}, tag="Cu")
             for k in range(66)]  # 66 > 64 weight tables
    v1, j1 = P.eval_descriptors(nw, many, grad=True, n_threads=1)
    v2, j2 = P.eval_descriptors(nw, many, grad=True, n_threads=2)
    np.testing.assert_array_equal(v2, v1)
    np.testing.assert_array_equal(j2, j1)
    for f in (0, 17, 63, 64, 71, 72, 100, 136, 140, 148, 149, 213, 214, len(many) - 1):
        e_n, g_pc = many[f].compute(nw, grad=True, n_threads=1)
        np.testing.assert_allclose(e_n, v1[:, f], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(g_pc, j1[:, f, :], rtol=1e-13, atol=1e-13)


def test_state_dicts_and_files_round_trip(rng, tmp_path):
    system = _system(rng, 3, True)
    nw = make_nw(system, CUT)
    descriptors = _descriptors("Al", weights={"Al": 1.5, "Ni": -2, "Cu": 0.25}) + _descriptors("Cu")
    back = [P.potential_from_state_dict(d.state_dict()) for d in descriptors]
    np.testing.assert_array_equal(P.eval_descriptors(nw, back)[0], P.eval_descriptors(nw, descriptors)[0])
    torch.manual_seed(0)
    nn = torch.nn.Sequential(torch.nn.Linear(len(RADIAL) + len(ANGULAR), 3), torch.nn.Tanh(),
                             torch.nn.Linear(3, 1)).double()
    pot = NNPotential(nn, descriptors[:len(RADIAL) + len(ANGULAR)], tag="Al", simplify=False)
    for name in ("pot.json", "pot.pt"):
        save_potentials([pot], tmp_path / name)
        (loaded,) = load_potentials(tmp_path / name)
        assert loaded.descriptors[0].parameters["weights"] == {"Al": 1.5, "Ni": -2.0, "Cu": 0.25}
        np.testing.assert_array_equal(nw.eval(loaded, "kernel"), nw.eval(pot, "kernel"))


def test_bad_input_names_the_argument(rng):
    rad, ang = P.weighted_radial_descriptor_family, P.weighted_angular_descriptor_family
    for bad, error in ((float("nan"), ValueError), (float("inf"), ValueError), ("2", TypeError),
                       (True, TypeError)):
        with pytest.raises(error, match=r"weights\['Cu'\]"):
            rad(a=CUT, eta=1.0, weights={"Cu": bad}, tag="Cu")
    with pytest.raises(ValueError, match="weights must be one of"):
        ang(a=CUT, eta=0.1, l=1, zeta=1, weights="electronegativity", tag="Cu")
    with pytest.raises(TypeError, match="weights"):
        rad(a=CUT, eta=1.0, weights=[1.0, 2.0], tag="Cu")
    with pytest.raises(ValueError, match="weights: the table is empty"):
        rad(a=CUT, eta=1.0, weights={}, tag="Cu")
    with pytest.raises(ValueError, match="tag 'Cu-Cu' has 2 species"):
        rad(a=CUT, eta=1.0, tag="Cu-Cu")
    with pytest.raises(ValueError, match="Parameter 'zeta'"):
        ang(a=CUT, eta=0.1, l=1, zeta=-1.0, tag="Cu")
    # species that are not elements need a table; a table must name every species of the cell
    vectors = np.eye(3) * 6.0
    system = vectors, separated_fractions(rng, vectors, 6, 1.5), np.array(["A", "Cu"] * 3), (True, True, True)
    nw = make_nw(system, CUT)
    with pytest.raises(ValueError, match=r"weights='Z': species \['A'\] are not chemical elements"):
        P.eval_descriptors(nw, [rad(a=CUT, eta=1.0, tag="Cu")])
    with pytest.raises(ValueError, match=r"weights: the table \['Cu'\] has no weight for the species \['A'\]"):
        P.eval_descriptors(nw, [ang(a=CUT, eta=0.1, l=1, zeta=1, weights={"Cu": 29}, tag="Cu")],
                           ignore_missing_species=True)
    with pytest.raises(KeyError, match="'Ag'"):  # a centre species the cell does not have
        P.eval_descriptors(nw, [rad(a=CUT, eta=1.0, weights={"A": 1, "Cu": 2}, tag="Ag")])
    values, _ = P.eval_descriptors(nw, [rad(a=CUT, eta=1.0, weights={"A": 1, "Cu": 2}, tag="Ag")],
                                   ignore_missing_species=True)
    assert np.all(values == 0)


def test_compiled_entry_points_check_shapes():
    """The kernels refuse inconsistent arrays instead of reading out of bounds."""
    from miniff._ext import kernel_module as k

    indptr = np.array([0, 1, 2], dtype=np.int64)
    j_p = np.array([1, 0], dtype=np.int32)
    d_p = np.array([2.0, 2.0])
    D_pc = np.array([[2.0, 0, 0], [-2.0, 0, 0]])
    spec_n = np.zeros(2, dtype=np.int32)
    one = np.ones(1)
    cols = np.zeros(1, dtype=np.int32)
    c_f = np.zeros(1, dtype=np.int32)
    values, jac = np.zeros((2, 1)), np.zeros((2, 3))
    args = (3.0, one, np.zeros(1), cols, c_f, np.ones((1, 1)), indptr, j_p, d_p, D_pc, spec_n, 0)
    k.batch_weighted_radial_reduce(*args, values, jac, True, 1)
    np.testing.assert_allclose(values[:, 0], np.exp(-4.0) * fc(np.array([2.0, 2.0]), 3.0))
    with pytest.raises(ValueError, match="cols must index columns of values_nf"):
        k.batch_weighted_radial_reduce(*args[:3], np.array([1], dtype=np.int32), *args[4:], values, jac, True, 1)
    with pytest.raises(ValueError, match="c_f must index the rows of weight_cs"):
        k.batch_weighted_radial_reduce(*args[:4], np.array([1], dtype=np.int32), *args[5:], values, jac, True, 1)
    with pytest.raises(ValueError, match="jac_pf3 must have one row per pair"):
        k.batch_weighted_radial_reduce(*args, values, np.zeros((1, 3)), True, 1)
    with pytest.raises(ValueError, match="indptr"):
        k.batch_weighted_radial_reduce(*args[:6], np.array([0, 2, 1], dtype=np.int64), *args[7:], values, jac,
                                       True, 1)


def test_n2p2_type_13_is_epsilon_one_half(rng):
    """n2p2's type 13 sums each neighbour pair once (j < k) with the prefactor 2^(1 - zeta)."""
    system = _system(rng, 3, True, n_atoms=10)
    nw = make_nw(system, CUT)
    eta, r_s, lam, zeta = 0.2, 0.7, -1.0, 3.0
    d = P.weighted_angular_descriptor_family(a=CUT, eta=eta, r_sphere=r_s, l=lam, zeta=zeta, epsilon=0.5,
                                             tag="Ni")
    values, _ = P.eval_descriptors(nw, [d])
    species = system[2]
    expected = np.zeros(len(species))

    def g(r):
        return np.exp(-eta * (r - r_s) ** 2) * fc(r, CUT)

    for i, neigh in enumerate(neighbours(system, CUT)):
        if species[i] != "Ni":
            continue
        for n1 in range(len(neigh)):
            for n2 in range(n1 + 1, len(neigh)):
                (j, v1), (k, v2) = neigh[n1], neigh[n2]
                r1, r2 = np.linalg.norm(v1), np.linalg.norm(v2)
                cos = v1 @ v2 / (r1 * r2)
                expected[i] += (2 ** (1 - zeta) * atomic_numbers[species[j]] * atomic_numbers[species[k]]
                                * (1 + lam * cos) ** zeta * g(r1) * g(r2) * g(np.linalg.norm(v2 - v1)))
    assert expected.max() > 1e-2
    np.testing.assert_allclose(values[:, 0], expected, rtol=1e-11, atol=1e-10)
