"""Shared fixtures: a seeded random generator and small reference systems.

Systems are returned as ``(vectors [3, 3] Å, fractional coordinates [N, 3], species [N], pbc)``
so that tests of any module can build what they need from plain arrays.
"""

import os

import matplotlib
import numpy as np
import pytest
from hypothesis import settings

matplotlib.use("Agg")

# Property-based tests draw the same examples on every run under CI (CI=true), so that a red build always
# reproduces; elsewhere they explore new examples each run (MINIFF_HYPOTHESIS=explore|ci chooses explicitly).
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("MINIFF_HYPOTHESIS", "ci" if os.environ.get("CI") == "true" else "explore"))

SEED = int(os.environ.get("MINIFF_TEST_SEED", "20261121"))


@pytest.fixture
def rng():
    """A numpy Generator seeded from MINIFF_TEST_SEED (default fixed), fresh per test."""
    return np.random.default_rng(SEED)


@pytest.fixture
def dimer():
    """Two argon atoms 3.8 Å apart in a 20 Å box, non-periodic."""
    vectors = np.eye(3) * 20.0
    cart = np.array([[10.0, 10.0, 10.0], [13.8, 10.0, 10.0]])
    return vectors, cart @ np.linalg.inv(vectors), np.array(["Ar", "Ar"]), (False, False, False)


@pytest.fixture
def fcc_ar():
    """Conventional fcc argon cell (a = 5.26 Å, 4 atoms), periodic."""
    a = 5.26
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], dtype=float)
    return np.eye(3) * a, frac, np.array(["Ar"] * 4), (True, True, True)


@pytest.fixture
def triclinic_box(rng):
    """A random triclinic cell with 12 atoms of two species, periodic."""
    vectors = np.array([[5.0, 0.0, 0.0], [1.3, 4.6, 0.0], [-0.9, 1.1, 5.3]])
    frac = rng.random((12, 3))
    species = np.array(["a", "b"] * 6)
    return vectors, frac, species, (True, True, True)


@pytest.fixture
def cluster(rng):
    """A non-periodic cluster of 9 atoms with coordinates partly outside [0, 1)."""
    vectors = np.eye(3) * 6.0
    cart = rng.normal(scale=1.6, size=(9, 3)) + 3.0
    return vectors, cart @ np.linalg.inv(vectors), np.array(["x"] * 9), (False, False, False)


@pytest.fixture
def pyplot():
    """matplotlib.pyplot on the Agg backend; all figures closed afterwards."""
    from matplotlib import pyplot as plt

    yield plt
    plt.close("all")


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server for the session (``tests/pg_server.py``), stopped at the end whatever happens.

    Skipped, with how to enable it, when the server binaries or the client packages are not installed.
    """
    from pg_server import missing_requirement
    from pg_server import postgres_server as start

    why = missing_requirement()
    if why is not None:
        pytest.skip(why)
    with start() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server):
    """The URL (``postgresql://miniff:...@127.0.0.1:PORT/NAME``) of a new, empty database on that server."""
    return postgres_server.create_database()
