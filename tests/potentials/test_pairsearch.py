"""Plain pair potentials summed during the neighbour search (no pair list): ``potentials/pairsearch.py``.

References: brute-force numpy sums over periodic images, central finite differences of the energy for the
gradient and the stress, the pair-list path for everything at once, and 1 thread vs 2 threads.
"""

import numpy as np
import pytest
from support import brute_force_pairs, central_difference

from miniff import potentials as P
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import evaluate as ev
from miniff.potentials.guards import CoincidentAtomsError
from miniff.potentials.pairsearch import can_fuse


def _cell(n, length, species, tilt=0.0, seed=0, d_min=0.9):
    rng = np.random.default_rng(seed)
    vectors = np.eye(3) * length + tilt * rng.normal(size=(3, 3))
    frac = []
    while len(frac) < n:  # well-separated atoms (periodic distance >= d_min)
        f = rng.uniform(size=3)
        if all(np.linalg.norm((((f - g) + 0.5) % 1.0 - 0.5) @ vectors) >= d_min for g in frac):
            frac.append(f)
    return Cell(vectors, np.array(frac), species)


def _lj(epsilon, sigma, r):
    return 4 * epsilon * ((sigma / r) ** 12 - (sigma / r) ** 6)


LJ = P.lj_potential_family(epsilon=0.0104, sigma=2.0, a=2.25, tag="A-A")
SYSTEMS = {
    "cubic": (_cell(40, 8.0, ["A"] * 40, seed=1), True),
    "small triclinic, many images": (_cell(3, 3.2, ["A"] * 3, tilt=0.4, seed=2), True),
    "slab": (_cell(30, 8.0, ["A"] * 30, tilt=0.2, seed=3), (True, False, True)),
    "cluster": (_cell(12, 7.0, ["A"] * 12, seed=4), False),
}


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_energies_equal_a_brute_force_image_sum(name):
    cell, pbc = SYSTEMS[name]
    nw = NeighborWrapper(cell, pbc=pbc)
    assert can_fuse(nw, [LJ])
    got = ev.evaluate(nw, [LJ], grad=False)
    assert not nw.has_pairs  # the walk built no list
    pbc3 = np.broadcast_to(pbc, (3,))
    i, j, s, d = brute_force_pairs(cell.vectors, cell.cartesian(), 4.5, pbc3)
    ref = np.zeros(cell.size)
    np.add.at(ref, i, _lj(0.0104, 2.0, d))
    np.testing.assert_allclose(got.energy_n, ref, rtol=1e-12, atol=1e-15)
    assert ev.total(NeighborWrapper(cell, pbc=pbc), [LJ]) == pytest.approx(ref.sum(), rel=1e-12)


@pytest.mark.parametrize("name", ["cubic", "small triclinic, many images", "slab"])
def test_gradient_and_stress_against_central_differences(name):
    cell, pbc = SYSTEMS[name]
    pots = [P.lj_potential_family(epsilon=0.0104, sigma=2.0, a=2.25, tag="A-A")]

    def energy(positions=None, strain=None):
        vectors = cell.vectors if strain is None else cell.vectors @ (np.eye(3) + strain)
        cart = cell.cartesian() if positions is None else positions
        if strain is not None:
            cart = cart @ (np.eye(3) + strain)
        c = Cell(vectors, cart @ np.linalg.inv(vectors), cell.values)
        return ev.total(NeighborWrapper(c, pbc=pbc, normalize=False), pots)

    got = ev.evaluate(NeighborWrapper(cell, pbc=pbc), pots, grad=True, stress=True)
    fd_grad = central_difference(lambda x: energy(positions=x), cell.cartesian(), eps=1e-5)
    np.testing.assert_allclose(got.grad_nc, fd_grad, atol=1e-6 * max(1.0, np.abs(fd_grad).max()))
    if np.all(pbc):
        fd = central_difference(lambda e: energy(strain=0.5 * (e + e.T)), np.zeros((3, 3)), eps=1e-6)
        volume = abs(np.linalg.det(cell.vectors))
        voigt = np.array([fd[0, 0], fd[1, 1], fd[2, 2], fd[1, 2], fd[0, 2], fd[0, 1]]) / volume
        np.testing.assert_allclose(got.stress, voigt, atol=1e-7 * max(1.0, np.abs(voigt).max()))


def _pair_sets():
    species = ["Cu" if k % 3 else "Pt" for k in range(48)]
    binary = _cell(48, 9.0, species, tilt=0.3, seed=5)
    sw2 = [p for p in P.stillinger_weber_si() if type(p.family.backend).__name__ == "PairBackend"]
    si = _cell(32, 8.2, ["Si"] * 32, tilt=0.2, seed=6, d_min=2.0)
    return {
        "LJ + harmonic, two species": (binary, [
            P.lj_potential_family(epsilon=0.01, sigma=2.2, a=2.5, tag="Cu-Pt"),
            P.lj_potential_family(epsilon=0.02, sigma=2.1, a=2.4, tag="Cu-Cu"),
            P.harmonic_repulsion_potential_family(a=2.0, epsilon=1.0, tag="Pt-Pt"),
        ]),
        "SW2 silicon": (si, sw2),
        # one species and one Lennard-Jones term: the kernel's path evaluating pairs as met, two at a time
        "LJ, one species": (_cell(60, 9.0, ["Ar"] * 60, tilt=0.3, seed=7, d_min=1.5),
                            [P.lj_potential_family(epsilon=0.0104, sigma=2.0, a=2.2, tag="Ar-Ar")]),
    }


@pytest.mark.parametrize("name", list(_pair_sets()))
@pytest.mark.parametrize("pbc", [True, (True, False, True)])
def test_equals_the_pair_list_path_for_any_thread_count(name, pbc):
    cell, pots = _pair_sets()[name]
    cutoff = max(p.cutoff for p in pots)
    ref = ev.evaluate(NeighborWrapper(cell, pbc=pbc, cutoff=cutoff), pots, grad=True, stress=True,
                      per_atom_stress=True)
    runs = []
    for n_threads in (1, 2, 3, 2):
        nw = NeighborWrapper(cell, pbc=pbc, n_threads=n_threads)
        assert can_fuse(nw, pots)
        runs.append(ev.evaluate(nw, pots, grad=True, stress=True, per_atom_stress=True))
        assert not nw.has_pairs
    for got in runs:
        for a, b in ((got.energy_n, ref.energy_n), (got.grad_nc, ref.grad_nc), (got.stress, ref.stress),
                     (got.stress_n, ref.stress_n)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    for a, b in zip(runs[1][1:], runs[3][1:], strict=True):
        np.testing.assert_array_equal(a, b)  # static split of the bins: reproducible for a thread count
    assert runs[1].energy == runs[3].energy


def test_the_half_stencil_meets_every_pair_once():
    from miniff._ext import kernel_module as k

    full = np.indices((5, 3, 3)).reshape(3, -1).T - np.array([2, 1, 1])
    half = k.half_stencil(full.astype(np.intc))
    assert half.dtype == np.intc and half.flags.c_contiguous
    assert len(half) == (len(full) + 1) // 2  # k and -k paired, (0, 0, 0) once
    as_set = {tuple(x) for x in half.tolist()}
    assert (0, 0, 0) in as_set
    assert all((tuple(x) in as_set) != (tuple(-x) in as_set) for x in full if np.any(x))
    assert half.tolist() == sorted(half.tolist())  # lexicographic
    one_sided = k.half_stencil(full[full[:, 0] < 0].astype(np.intc))  # made symmetric first
    assert {tuple(x) for x in one_sided.tolist()} == {tuple(x) for x in half.tolist() if x[0] > 0} | {(0, 0, 0)}


@pytest.mark.parametrize("walk", ["pair_search_reduce", "ewald_real_search"])
def test_both_list_free_walks_refuse_a_stencil_that_is_not_half(monkeypatch, walk):
    """The compiled walks check their stencil (one check, shared): a full stencil would count every pair twice."""
    import miniff.potentials.ewald_terms as ewald_terms
    import miniff.potentials.pairsearch as pairsearch

    full = lambda offsets: np.ascontiguousarray(offsets, dtype=np.intc)  # noqa: E731
    cell, pbc = SYSTEMS["cubic"]
    if walk == "pair_search_reduce":
        monkeypatch.setattr(pairsearch, "_half_stencil", full)
        run = lambda: ev.total(NeighborWrapper(cell, pbc=pbc), [LJ])  # noqa: E731
    else:
        monkeypatch.setattr(ewald_terms._k, "half_stencil", full)
        ionic = Cell(cell.vectors, cell.coordinates, cell.values, meta={"charges": [1.0, -1.0] * 20})
        run = lambda: NeighborWrapper(ionic).evaluate(P.ewald_total_potential_family(a=3.0, eta=0.8))  # noqa: E731
    with pytest.raises(ValueError, match=f"{walk}: offsets must be the half stencil"):
        run()


def test_not_used_where_it_does_not_apply():
    cell, pbc = SYSTEMS["cubic"]
    b2 = P.behler2_descriptor_family(eta=1.0, r_sphere=2.0, a=4.0, tag="A-A")
    assert not can_fuse(NeighborWrapper(cell, pbc=pbc), [LJ, b2])  # not a plain pair family
    assert not can_fuse(NeighborWrapper(cell, pbc=pbc, cutoff=4.5), [LJ])  # a list exists: use it
    assert not can_fuse(NeighborWrapper(cell, (3, 3, 3)), [LJ])  # replica counts (image limit)
    assert not can_fuse(NeighborWrapper(cell, pbc=pbc), [])


def test_a_cutoff_beyond_the_wrappers_is_refused_as_on_the_list_path():
    cell, pbc = SYSTEMS["cubic"]
    nw = NeighborWrapper(cell, pbc=pbc, cutoff=3.0)
    nw._invalidate()  # positions changed: no list, cutoff kept
    with pytest.raises(ValueError, match="cutoff"):
        ev.evaluate(nw, [LJ])


def test_coincident_atoms_are_named():
    frac = np.array([[0.1, 0.1, 0.1], [0.5, 0.5, 0.5], [0.1, 0.1, 0.1]])
    nw = NeighborWrapper(Cell(np.eye(3) * 6.0, frac, ["A"] * 3))
    with pytest.raises(CoincidentAtomsError, match=r"atom [02] at \[0\.6, 0\.6, 0\.6\] Å and atom [02]"):
        ev.evaluate(nw, [LJ])
    assert not nw.has_pairs  # found by the walk itself, before anything was summed
    opted_out = P.lj_potential_family(epsilon=0.0104, sigma=2.0, a=2.25, tag="A-A")
    opted_out.allow_coincident = True
    assert not np.isfinite(ev.evaluate(nw, [opted_out]).energy)  # evaluated: LJ is infinite at r = 0


def test_missing_species_and_empty_cell():
    cell, pbc = SYSTEMS["cubic"]
    other = P.lj_potential_family(epsilon=0.01, sigma=2.0, a=4.0, tag="B-B")
    with pytest.raises(KeyError, match="B"):
        ev.evaluate(NeighborWrapper(cell, pbc=pbc), [LJ, other])
    alone = ev.evaluate(NeighborWrapper(cell, pbc=pbc), [LJ], grad=True)
    skipped = ev.evaluate(NeighborWrapper(cell, pbc=pbc), [LJ, other], grad=True, ignore_missing_species=True)
    np.testing.assert_array_equal(alone.grad_nc, skipped.grad_nc)
    empty = Cell(np.eye(3) * 5.0, np.zeros((0, 3)), np.array([], dtype=str))
    out = ev.evaluate(NeighborWrapper(empty), [LJ], grad=True, ignore_missing_species=True)
    assert out.energy == 0.0 and out.grad_nc.shape == (0, 3)
