"""NeighborWrapper.eval / total / grad / stress (Contract 4): gradients and stress against central finite
differences, 0.1.4 output shapes, thread independence, invariances, and the ASE / published references."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import PAIR_CASES, TRIPLE_CASES, diamond, make_nw, separated_fractions

import miniff.potentials as P
from miniff.neighbors.pairlist import PairList
from miniff.numerical import numerical_energy_gradient, numerical_stress

ALL_CASES = {**PAIR_CASES, **TRIPLE_CASES}
ON_SITE = P.on_site_potential_family(v0=0.3, tag="a")


def _potential(name, tag=None):
    family, params, _, _ = ALL_CASES[name]
    tag = tag or ("a-b" if name in PAIR_CASES else "a-b-a")
    return family(tag=tag, **params)


def _check_close(analytic, numerical, rel=1e-6):
    """|analytic - numerical| <= rel * max|analytic| (central differences, h = 1e-5 Å: error ~ h^2 f''')."""
    scale = max(np.abs(analytic).max(), 1e-3)
    np.testing.assert_allclose(analytic, numerical, rtol=0, atol=rel * scale)


@pytest.fixture
def smooth_box(rng):
    """12 atoms of two species in a triclinic box, no pair closer than 1.6 Å (moderate LJ forces)."""
    vectors = np.array([[6.0, 0.0, 0.0], [1.0, 5.6, 0.0], [-0.8, 0.9, 6.1]])
    return vectors, separated_fractions(rng, vectors, 12, 1.6), np.array(["a", "b"] * 6), (True, True, True)


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_gradient_matches_central_differences(smooth_box, name):
    pot = _potential(name)
    nw = make_nw(smooth_box, 4.0)
    _check_close(nw.grad(pot), numerical_energy_gradient(nw, pot, eps=1e-5))


@pytest.mark.parametrize("name", ["lj", "behler5", "sw3", "general_triple"])
def test_gradient_in_cluster(cluster, name):
    system = cluster[0], cluster[1], np.array(["a", "b", "a"] * 3), cluster[3]
    pot = _potential(name)
    nw = make_nw(system, 4.0)
    _check_close(nw.grad(pot), numerical_energy_gradient(nw, pot, eps=1e-5))


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_stress_matches_central_differences(smooth_box, name):
    pot = _potential(name)
    nw = make_nw(smooth_box, 4.0)
    stress = nw.stress(pot)
    assert stress.shape == (6,)
    _check_close(stress, numerical_stress(nw, pot, eps=1e-6))
    per_atom = nw.stress(pot, per_atom=True)
    assert per_atom.shape == (12, 6)
    np.testing.assert_allclose(per_atom.sum(axis=0), stress, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["lj", "behler4", "sw3"])
def test_dense_gradient_layout(smooth_box, name):
    pot = _potential(name)
    nw = make_nw(smooth_box, 4.0)
    dense = nw.eval(pot, "kernel_gradient")
    assert dense.shape == (12, 12, 3)
    _check_close(dense, numerical_energy_gradient(nw, pot, eps=1e-5, resolving=True))
    np.testing.assert_allclose(dense.sum(axis=0), nw.grad(pot), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(nw.eval(pot, "kernel_gradient", resolving=False), nw.grad(pot), rtol=1e-12)


def test_numgrad_kernel_name(smooth_box):
    pot = _potential("behler2")
    nw = make_nw(smooth_box, 4.0)
    _check_close(nw.eval(pot, "kernel_numgrad", resolving=False), nw.grad(pot))


@pytest.mark.parametrize("name", ["behler5", "sw3", "lj", "general_triple"])
def test_compute_contract_per_pair_gradient(smooth_box, name):
    """grad_pc[p] = d energy_n[i_p] / d D_pc[p], checked by moving one pair vector at a time."""
    pot = _potential(name)
    nw = make_nw(smooth_box, 4.0)
    energy_n, grad_pc = pot.compute(nw, grad=True)
    pairs = nw.pairs
    assert energy_n.shape == (12,) and grad_pc.shape == (pairs.n_pairs, 3)
    assert pot.compute(nw)[1] is None
    assert np.all(energy_n[nw.spec_encoded_row == nw.species_lookup["b"]] == 0)
    i_p = pairs.i_p
    h = 1e-6
    for p in np.nonzero(np.abs(grad_pc).sum(axis=1) > 0)[0][::7]:
        for c in range(3):
            values = []
            for sign in (1, -1):
                D = pairs.D_pc.copy()
                D[p, c] += sign * h
                fake = SimpleNamespace(
                    pairs=PairList(pairs.indptr, pairs.j_p, pairs.S_pc, D, np.linalg.norm(D, axis=1), pairs.cutoff),
                    spec_encoded_row=nw.spec_encoded_row, species_lookup=nw.species_lookup, n_threads=1)
                values.append(pot.compute(fake)[0][i_p[p]])
            assert grad_pc[p, c] == pytest.approx((values[0] - values[1]) / (2 * h), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_threads_give_identical_results(rng, name):
    vectors = np.array([[9.0, 0.0, 0.0], [1.0, 8.6, 0.0], [-0.5, 0.7, 9.2]])
    system = vectors, rng.random((70, 3)), np.array(["a", "b"] * 35), (True, True, True)
    pot = _potential(name)
    nw = make_nw(system, 4.0)
    e1, g1 = pot.compute(nw, grad=True, n_threads=1)
    e2, g2 = pot.compute(nw, grad=True, n_threads=2)
    np.testing.assert_allclose(e2, e1, rtol=1e-12, atol=0)
    np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=0)
    np.testing.assert_allclose(nw.stress(pot, n_threads=2), nw.stress(pot, n_threads=1), rtol=1e-12, atol=0)


def test_invariances_and_zero_net_force(cluster, rng):
    vectors, frac, _, pbc = cluster
    species = np.array(["a", "b", "a"] * 3)
    pots = [_potential("sw2"), _potential("lj"), _potential("sw3"), _potential("behler4", "a-a-b"), ON_SITE]
    nw = make_nw((vectors, frac, species, pbc), 4.0)
    e0, g0 = nw.total(pots), nw.grad(pots)
    np.testing.assert_allclose(g0.sum(axis=0), 0, atol=1e-10 * np.abs(g0).max())
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    cart = frac @ vectors
    moved = (cart - cart.mean(axis=0)) @ q.T + cart.mean(axis=0) + np.array([0.3, -0.2, 0.1])
    nw2 = make_nw((vectors, moved @ np.linalg.inv(vectors), species, pbc), 4.0)
    assert nw2.total(pots) == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(nw2.grad(pots), g0 @ q.T, atol=1e-10 * np.abs(g0).max())


def test_periodic_net_force_is_zero(smooth_box):
    pots = [_potential(n) for n in ("lj", "sw3", "behler5x", "behler2")]
    g = make_nw(smooth_box, 4.0).grad(pots)
    np.testing.assert_allclose(g.sum(axis=0), 0, atol=1e-12 * np.abs(g).max())


# ------------------------------------------------------------------------------------------ shapes, out=


def test_eval_shapes_and_totals(smooth_box):
    pots = [_potential("lj"), _potential("behler5")]
    nw = make_nw(smooth_box, 4.0)
    n = 12
    assert nw.eval(pots, "kernel").shape == (2, n)
    assert nw.eval(pots, "kernel", resolving=False).shape == (2,)
    assert nw.eval(pots, "kernel_gradient").shape == (2, n, n, 3)
    assert nw.eval(pots, "kernel_gradient", resolving=False).shape == (2, n, 3)
    assert nw.eval(pots[0], "kernel").shape == (n,)
    assert nw.eval(pots[0], "kernel", squeeze=False).shape == (1, n)
    assert nw.eval(pots[0], "kernel", resolving=False).shape == ()
    values = nw.eval(pots, "kernel")
    assert nw.total(pots) == pytest.approx(values.sum(), rel=1e-13)
    assert isinstance(nw.total(pots[0]), float)
    np.testing.assert_allclose(nw.grad(pots), nw.eval(pots, "kernel_gradient", resolving=False).sum(axis=0),
                               rtol=1e-12)


def test_out_accumulates_and_checks_shape(smooth_box):
    pot = _potential("behler2")
    nw = make_nw(smooth_box, 4.0)
    out = np.ones(12)
    result = nw.eval(pot, "kernel", out=out)
    assert result is out
    np.testing.assert_allclose(out, 1 + nw.eval(pot, "kernel"), rtol=1e-14)
    with pytest.raises(ValueError, match=r"out has shape \(3,\), expected \(12,\)"):
        nw.eval(pot, "kernel", out=np.zeros(3))
    with pytest.raises(ValueError, match="out has shape"):
        nw.eval([pot], "kernel_gradient", out=np.zeros((1, 12, 3)))


def test_bad_arguments(smooth_box):
    nw = make_nw(smooth_box, 4.0)
    with pytest.raises(ValueError, match="kname must be one of"):
        nw.eval(_potential("lj"), "kernel_bogus")
    with pytest.raises(ValueError, match="cutoff 5.0 Å, larger than the neighbour list cutoff"):
        nw.eval(P.behler2_descriptor_family(a=5.0, eta=1.0, r_sphere=0.0, tag="a-a"))
    with pytest.raises(TypeError, match="potentials must be a LocalPotential"):
        nw.total("lj")
    with pytest.raises(TypeError, match=r"potentials\[1\] must be a LocalPotential"):
        nw.total([_potential("lj"), 3])


def test_missing_species(smooth_box):
    nw = make_nw(smooth_box, 4.0)
    missing = P.behler2_descriptor_family(a=3.0, eta=1.0, r_sphere=0.0, tag="a-Zr")
    with pytest.raises(KeyError, match="'Zr'"):
        nw.eval(missing, "kernel")
    with pytest.raises(KeyError, match="'Zr'"):
        nw.total([_potential("lj"), missing])
    np.testing.assert_array_equal(nw.eval(missing, "kernel", ignore_missing_species=True), 0.0)
    both = [_potential("lj"), missing]
    assert nw.total(both, ignore_missing_species=True) == pytest.approx(nw.total(both[0]), rel=1e-14)
    np.testing.assert_array_equal(nw.eval(both, "kernel", ignore_missing_species=True)[1], 0.0)


# ------------------------------------------------------------------------------------------ references


def test_lennard_jones_equals_ase(fcc_ar, rng):
    from ase import Atoms
    from ase.calculators.lj import LennardJones

    vectors, frac, species, pbc = fcc_ar
    vectors = vectors * 2
    frac = np.concatenate([(frac + s) / 2 for s in np.ndindex(2, 2, 2)])
    cart = frac @ vectors + rng.normal(scale=0.1, size=(32, 3))
    eps, sigma, rc = 0.0104, 3.4, 8.5
    atoms = Atoms("Ar32", positions=cart, cell=vectors, pbc=True)
    atoms.calc = LennardJones(epsilon=eps, sigma=sigma, rc=rc, smooth=False)
    # our pair energy counts from both atoms: epsilon/2 gives the physical energy; ASE (smooth=False)
    # shifts every pair by e0 = V(rc) which we undo with the number of pairs inside rc
    lj = P.lj_potential_family(epsilon=eps / 2, sigma=sigma, a=rc / sigma, tag="Ar-Ar")
    nw = make_nw((vectors, cart @ np.linalg.inv(vectors), np.array(["Ar"] * 32), pbc), rc)
    e0 = 4 * eps * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    n_pairs = int(np.sum(nw.pairs.d_p < rc))
    assert nw.total(lj) - 0.5 * e0 * n_pairs == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(-nw.grad(lj), atoms.get_forces(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(nw.stress(lj), atoms.get_stress(), rtol=0, atol=1e-13)


def test_stillinger_weber_silicon_cohesive_energy():
    sw = P.stillinger_weber_si()
    nw = make_nw(diamond(5.431), 3.8)
    assert nw.total(sw) / 8 == pytest.approx(-4.3366, abs=5e-5)
    np.testing.assert_allclose(nw.grad(sw), 0, atol=1e-12)
    # 5.431 Å is the published (rounded) equilibrium: the pressure is tiny
    np.testing.assert_allclose(nw.stress(sw)[:3], 0, atol=1e-4)
    assert nw.total(sw[1]) == pytest.approx(0, abs=1e-12)  # ideal tetrahedra: no three-body energy


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 9))
def test_property_permutation_and_supercell(seed, n):
    """Energies do not depend on the atom order, the total is extensive, and forces sum to zero."""
    rng = np.random.default_rng(seed)
    vectors = np.diag(rng.uniform(4.5, 6.0, 3)) + rng.uniform(-0.6, 0.6, (3, 3))
    frac = rng.random((n, 3))
    species = rng.choice(["a", "b"], n)
    pots = [_potential("sw2"), _potential("behler5"), _potential("sw3", "a-a-b"), _potential("behler2", "b-a")]
    nw = make_nw((vectors, frac, species, (True,) * 3), 4.0)
    e, g = nw.total(pots, ignore_missing_species=True), nw.grad(pots, ignore_missing_species=True)
    scale = 1 + np.abs(g).max()
    np.testing.assert_allclose(g.sum(axis=0), 0, atol=1e-11 * scale)
    perm = rng.permutation(n)
    nw_p = make_nw((vectors, frac[perm], species[perm], (True,) * 3), 4.0)
    assert nw_p.total(pots, ignore_missing_species=True) == pytest.approx(e, rel=1e-11, abs=1e-11)
    np.testing.assert_allclose(nw_p.grad(pots, ignore_missing_species=True), g[perm], atol=1e-10 * scale)
    big = np.concatenate([frac / [2, 1, 1], (frac + [1, 0, 0]) / [2, 1, 1]])
    nw_2 = make_nw((vectors * [[2], [1], [1]], big, np.concatenate([species, species]), (True,) * 3), 4.0)
    assert nw_2.total(pots, ignore_missing_species=True) == pytest.approx(2 * e, rel=1e-11, abs=1e-11)


def test_evaluate_returns_everything_in_one_pass(smooth_box):
    pots = [_potential("lj"), _potential("sw3"), ON_SITE]
    nw = make_nw(smooth_box, 4.0)
    ev = nw.evaluate(pots, grad=True, stress=True, per_atom_stress=True)
    assert ev.energy == pytest.approx(nw.total(pots), rel=1e-14)
    np.testing.assert_allclose(ev.energy_n, nw.eval(pots, "kernel").sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(ev.grad_nc, nw.grad(pots), rtol=1e-14)
    np.testing.assert_allclose(ev.stress, nw.stress(pots), rtol=1e-13)
    np.testing.assert_allclose(ev.stress_n, nw.stress(pots, per_atom=True), rtol=1e-14)
    energy_only = nw.evaluate(pots, grad=False)
    assert energy_only.grad_nc is None and energy_only.stress is None


@pytest.mark.parametrize("periodic", [True, False])
def test_results_do_not_depend_on_the_pair_list_builder(smooth_box, periodic):
    """The compiled cell-list NeighborWrapper and a brute-force pair list give the same energies and forces
    (pair order differs, so sums agree to rounding)."""
    system = smooth_box[:3] + ((periodic,) * 3,)
    pots = [_potential(n) for n in ("lj", "sw3", "behler4", "general_triple")]
    real, brute = make_nw(system, 4.0), make_nw(system, 4.0, standin=True)
    assert real.pairs.n_pairs == brute.pairs.n_pairs
    assert real.total(pots) == pytest.approx(brute.total(pots), rel=1e-12)
    for method in ("grad", "stress"):
        expected = getattr(brute, method)(pots)
        np.testing.assert_allclose(getattr(real, method)(pots), expected, rtol=0, atol=1e-10 * np.abs(expected).max())
