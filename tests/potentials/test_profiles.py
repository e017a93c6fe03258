"""Energy profiles (``miniff.kernel.profile``, ``profile_strain``, ``profile_directed_strain``) on a grid of cells."""

import numpy as np
import pytest
from support import brute_force_pairs

from miniff import kernel
from miniff.kernel import Cell
from miniff.potentials import profiles


@pytest.fixture
def fcc(fcc_ar):
    vectors, frac, species, _ = fcc_ar
    return Cell(vectors, frac, species)


class _PairSum:
    """A stand-in potential: 1/d summed over pairs (the profiles' evaluation is patched in below)."""

    cutoff = 4.5
    tag = "Ar-Ar"


def _fake_total(nw, potentials, ignore_missing_species=False, **kwargs):
    assert ignore_missing_species
    pairs = nw.pairs
    return float(np.sum(1.0 / pairs.d_p[pairs.d_p < potentials[0].cutoff]))


def _reference_energy(cell, cutoff):
    _, _, _, d = brute_force_pairs(cell.vectors, cell.cartesian(), cutoff)
    return np.sum(1.0 / d)


def test_profiles(monkeypatch, fcc):
    monkeypatch.setattr(profiles, "total", _fake_total)
    pot = _PairSum()

    def build(s1, s2):
        return Cell(fcc.vectors * np.array([s1, s2, 1.0])[:, None], fcc.coordinates, fcc.values)

    grid = kernel.profile(pot, build, [0.9, 1.0], [0.95, 1.05, 1.1])
    assert grid.shape == (2, 3)
    assert grid[1, 2] == pytest.approx(_reference_energy(build(1.0, 1.1), 4.5))
    strain = kernel.profile_strain([pot], fcc, [0.9, 1.1], [1.0])
    assert strain.shape == (2, 1)
    assert strain[0, 0] == pytest.approx(_reference_energy(build(0.9, 1.0), 4.5))
    directed = kernel.profile_directed_strain([pot], fcc, [0.9, 1.0, 1.1], (1, 1, 0))
    assert directed.shape == (3,)
    assert directed[2] == pytest.approx(_reference_energy(build(1.1, 1.1), 4.5))
    with pytest.raises(TypeError, match="cutoff"):
        kernel.profile_strain([pot], fcc, [1.0], cutoff=3.0)
    with pytest.raises(ValueError, match="direction"):
        kernel.profile_directed_strain([pot], fcc, [1.0], (1, 1))
