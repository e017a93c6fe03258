"""RDF, ADF, pair reductions and energy profiles built on NeighborWrapper."""

import numpy as np
import pytest
from scipy.special import erf
from support import brute_force_pairs

from miniff import kernel
from miniff.kernel import Cell, NeighborWrapper


@pytest.fixture
def fcc(fcc_ar):
    vectors, frac, species, _ = fcc_ar
    return Cell(vectors, frac, species)


def test_rdf_integrates_to_coordination_numbers(fcc):
    a = fcc.vectors[0, 0]
    nw = NeighborWrapper(fcc, cutoff=a * 1.2)
    r = np.linspace(0.5, a * 1.05, 4000)
    g = nw.rdf(r, 0.05)["Ar-Ar"]
    integrand = 4 * np.pi * r**2 * g
    first = (r > 3.0) & (r < 4.4)
    second = (r > 4.4) & (r < a * 1.05)
    assert np.trapezoid(integrand[first], r[first]) == pytest.approx(12.0, rel=1e-6)
    assert np.trapezoid(integrand[second], r[second]) == pytest.approx(6.0, rel=1e-3)
    scalar = nw.rdf(a / np.sqrt(2), 0.05)
    assert isinstance(scalar["Ar-Ar"], float) and scalar["Ar-Ar"] > 0


def test_rdf_two_species_normalised_per_centre_atom(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    species = np.array(["a"] * 4 + ["b"] * 8)
    nw = NeighborWrapper(Cell(vectors, frac, species), cutoff=6.0)
    r = np.linspace(0.05, 4.0, 3000)
    g = nw.rdf(r, 0.02)
    assert set(g) == {"a-a", "a-b", "b-b"}
    i, j, _, d = brute_force_pairs(vectors, nw.cartesian_row, 6.0)
    is_a = species == "a"
    lo, hi = 0.2, 3.8
    # Gaussian mass of every pair inside the window [lo, hi]
    mass = 0.5 * (erf((hi - d) / (0.02 * np.sqrt(2))) - erf((lo - d) / (0.02 * np.sqrt(2))))
    expected_ab = np.sum(mass * (is_a[i] & ~is_a[j])) / 4
    expected_bb = np.sum(mass * (~is_a[i] & ~is_a[j])) / 8
    window = (r >= lo) & (r <= hi)
    got_ab = np.trapezoid((4 * np.pi * r**2 * g["a-b"])[window], r[window])
    got_bb = np.trapezoid((4 * np.pi * r**2 * g["b-b"])[window], r[window])
    assert got_ab == pytest.approx(expected_ab, rel=1e-3)
    assert got_bb == pytest.approx(expected_bb, rel=1e-3)


def test_rdf_bad_sigma(fcc):
    nw = NeighborWrapper(fcc, cutoff=4.0)
    with pytest.raises(ValueError, match="sigma"):
        nw.rdf([1.0], 0.0)


def test_adf_normalisation_and_fcc_angles(fcc):
    a = fcc.vectors[0, 0]
    nw = NeighborWrapper(fcc, cutoff=4.0)
    theta = np.linspace(-1.0, np.pi + 1.0, 6000)
    adf = nw.adf(theta, 0.02, 4.0)["Ar-[Ar,Ar]"]
    # 12 nearest neighbours -> 66 unordered pairs per atom: 24 at 60, 12 at 90, 24 at 120, 6 at 180 degrees
    assert np.trapezoid(adf, theta) == pytest.approx(66.0, rel=1e-6)
    for angle, count in [(60, 24), (90, 12), (120, 24), (180, 6)]:
        window = np.abs(theta - np.radians(angle)) < 0.2
        assert np.trapezoid(adf[window], theta[window]) == pytest.approx(count, rel=1e-4)
    assert a > 4.0 / 1.5  # second shell (a) excluded by the cutoff 4.0 < a


def test_adf_keys_and_cutoff(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    nw = NeighborWrapper(Cell(vectors, frac, species), cutoff=3.0)
    out = nw.adf(1.0, 0.1, 2.5)
    assert set(out) == {"a-[a,a]", "a-[a,b]", "a-[b,b]", "b-[a,a]", "b-[a,b]", "b-[b,b]"}
    assert all(isinstance(v, float) for v in out.values())
    with pytest.raises(ValueError, match="cutoff"):
        nw.adf(1.0, 0.1, 3.5)


def test_adf_against_brute_force_angles(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    nw = NeighborWrapper(Cell(vectors, frac, species), cutoff=3.2)
    sigma = 0.1
    theta = np.array([0.7, 1.5, 2.4])
    got = nw.adf(theta, sigma, 3.2)
    i, j, s, d = brute_force_pairs(vectors, nw.cartesian_row, 3.2)
    D = nw.cartesian_row[j] + s @ vectors - nw.cartesian_row[i]
    expected = {}
    for centre in range(12):
        rows = np.flatnonzero(i == centre)
        for x in range(len(rows)):
            for y in range(x + 1, len(rows)):
                p, q = rows[x], rows[y]
                cos = D[p] @ D[q] / (d[p] * d[q])
                ang = np.arccos(np.clip(cos, -1, 1))
                b, c = sorted([species[j[p]], species[j[q]]])
                key = f"{species[centre]}-[{b},{c}]"
                w = np.exp(-((ang - theta) ** 2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi)) / 6
                expected[key] = expected.get(key, 0) + w
    for key, value in got.items():
        np.testing.assert_allclose(value, expected.get(key, np.zeros(3)), rtol=1e-10, atol=1e-14)


def test_pair_reduction_function(triclinic_box):
    vectors, frac, species, _ = triclinic_box
    nw = NeighborWrapper(Cell(vectors, frac, species), cutoff=4.0)
    counts = nw.pair_reduction_function(lambda d, c1, c2: (len(d), c1, c2))
    i, j, _, _ = brute_force_pairs(vectors, nw.cartesian_row, 4.0)
    si, sj = species[i], species[j]
    assert counts["a-a"] == (np.sum((si == "a") & (sj == "a")), 0, 0)
    assert counts["a-b"] == (np.sum((si == "a") & (sj == "b")), 0, 1)
    assert counts["b-b"] == (np.sum((si == "b") & (sj == "b")), 1, 1)
    dropped = nw.pair_reduction_function(lambda d, c1, c2: None if c1 != c2 else 1, fmt="{}{}")
    assert dropped == {"aa": 1, "bb": 1}
    with pytest.raises(ValueError, match="compute_distances"):
        NeighborWrapper(Cell(vectors, frac, species)).pair_reduction_function(len)


def test_batch_rdf_is_the_mean(fcc, triclinic_box):
    big = fcc.repeated(2, 1, 1)
    r = np.linspace(2.0, 5.0, 7)
    one = NeighborWrapper(fcc, cutoff=6.0)
    two = NeighborWrapper(Cell(big.vectors, big.coordinates + 0.01, big.values), cutoff=6.0)
    out = kernel.batch_rdf([one, two], r, 0.1)
    np.testing.assert_allclose(out["Ar-Ar"], (one.rdf(r, 0.1)["Ar-Ar"] + two.rdf(r, 0.1)["Ar-Ar"]) / 2)
    from_cells = kernel.batch_rdf([fcc], r, 0.1)
    np.testing.assert_allclose(from_cells["Ar-Ar"], one.rdf(r, 0.1)["Ar-Ar"], rtol=1e-12)


def test_scalar_function_wrapper_with_scipy(fcc, rng):
    from scipy.optimize import check_grad

    from miniff.potentials import lj_potential_family

    lj = lj_potential_family(epsilon=0.01, sigma=3.4, a=2.5, tag="Ar-Ar")
    cell = fcc.repeated(2, 1, 1)
    cell.coordinates = cell.coordinates + rng.normal(scale=0.01, size=cell.coordinates.shape)
    nw = NeighborWrapper(cell, cutoff=lj.cutoff)
    logged = []
    sfw = kernel.ScalarFunctionWrapper(nw, [lj], normalize=False, cell_logger=logged.append)
    x0 = nw.cartesian_row.reshape(-1).copy()
    direct = NeighborWrapper(cell, cutoff=lj.cutoff, normalize=False)
    assert sfw.f(x0) == pytest.approx(direct.total([lj]))
    assert check_grad(sfw.f, sfw.g, x0, epsilon=1e-6) < 1e-5 * max(1.0, np.abs(sfw.g(x0)).max())
    current = sfw.get_current_cell()
    assert current.meta["forces"].shape == (8, 3) and "total-energy" in current.meta
    assert logged and logged[0].meta["total-energy"] == pytest.approx(direct.total([lj]))
    with pytest.raises(ValueError, match="values"):
        sfw.f(x0[:3])
    with pytest.raises(ValueError, match="compute_distances"):
        kernel.ScalarFunctionWrapper(NeighborWrapper(cell), [lj])


@pytest.mark.parametrize("r", [0.0, -1.0, [0.5, 0.0], np.nan, "x"])
def test_rdf_radii_must_be_positive(fcc, r):
    nw = NeighborWrapper(fcc, cutoff=4.0)
    with pytest.raises((ValueError, TypeError), match="r must be"):
        nw.rdf(r, 0.05)
