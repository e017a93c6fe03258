"""Helpers shared by the tests (no tests here); fixtures live in ``conftest.py``.

- paths and subprocesses: ``REPO_ROOT``, ``run_python`` (always with ``cwd`` outside the source tree);
- brute-force references in plain numpy (O(N^2 * images)): ``brute_force_pairs``, ``brute_force_pairs_anywhere``,
  ``reference_pair`` / ``reference_triple`` (per-atom energies of pair and triplet terms), the case tables
  ``PAIR_CASES`` / ``TRIPLE_CASES`` (every built-in family with a numpy formula), ``dense_descriptor_jacobian``;
- finite differences: ``central_difference``;
- systems: ``separated_fractions`` (random well-separated positions), ``diamond`` (diamond silicon),
  ``lj_cells`` / ``radial_basis`` (Lennard-Jones training cells and a radial descriptor basis), ``seed_toy`` /
  ``seed_dataset`` (the seed tutorial's toy problem), ``random_quadratic`` / ``minimise_quadratic``
  (optimizer problems);
- wrappers: ``make_nw`` returns a ``miniff.kernel.NeighborWrapper`` when it is available and otherwise a small
  stand-in built on ``brute_force_pairs`` (the attributes of Contract 2 of DEVELOPING.md, with the evaluation
  methods of ``EvaluationMixin``);
- ``spy``: record the calls and results of a function (evidence that a cached value is reused, without reading
  private attributes).

The per-atom formulas of the references are those of 0.1.4: energies are per atom and summed with no 1/2 (a
pair term ``"x-x"`` counts from both atoms), a triplet term ``"a-b-c"`` sums over ordered neighbour pairs
(j, k), j != k, and the cosine cutoff is ``f_c(r; a) = (1 + cos(pi r / a)) / 2`` for ``r < a``, else 0.
Units: eV, Å.
"""

import itertools
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np

import miniff.potentials as P
from miniff.neighbors.pairlist import PairList
from miniff.potentials.wrapper import EvaluationMixin

#: The repository (the parent of ``tests/``).
REPO_ROOT = Path(__file__).resolve().parent.parent


def run_python(args, cwd, **kwargs):
    """``python *args`` in a subprocess (text output captured) with ``cwd`` outside the source tree (e.g.
    ``tmp_path``), so that ``-m`` / ``-c`` import the installed miniff, never an unbuilt source tree."""
    cwd = Path(cwd).resolve()
    assert cwd != REPO_ROOT and REPO_ROOT not in cwd.parents, f"{cwd} is inside the source tree"
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, **kwargs)


# --------------------------------------------------------------------------------- brute-force pairs


def image_range(vectors, cutoff, pbc):
    """Per-axis image range n_a so that shifts -n_a..n_a cover a sphere of radius cutoff
    around any point of the cell (plane spacing h_a = V / |b x c|)."""
    vectors = np.asarray(vectors, dtype=float)
    volume = abs(np.linalg.det(vectors))
    out = []
    for a in range(3):
        if not pbc[a]:
            out.append(0)
            continue
        b, c = vectors[(a + 1) % 3], vectors[(a + 2) % 3]
        h = volume / np.linalg.norm(np.cross(b, c))
        out.append(int(np.ceil(cutoff / h)) + 1)
    return out


def brute_force_pairs(vectors, positions, cutoff, pbc=(True, True, True)):
    """All ordered pairs (i, j, S) with |r_j + S @ vectors - r_i| < cutoff, self pair excluded.

    ``positions`` are Cartesian (Å). Returns (i, j, S [P, 3], d [P]) sorted by (i, j, S).
    """
    positions = np.asarray(positions, dtype=float)
    vectors = np.asarray(vectors, dtype=float)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    ranges = image_range(vectors, cutoff, pbc)
    ii, jj, ss, dd = [], [], [], []
    n = len(positions)
    for shift in itertools.product(*(range(-r, r + 1) for r in ranges)):
        shift = np.array(shift)
        delta = positions[None, :, :] + shift @ vectors - positions[:, None, :]
        d = np.linalg.norm(delta, axis=-1)
        mask = d < cutoff
        if not shift.any():
            mask[np.arange(n), np.arange(n)] = False
        i, j = np.nonzero(mask)
        ii.append(i)
        jj.append(j)
        ss.append(np.repeat(shift[None], len(i), axis=0))
        dd.append(d[i, j])
    i = np.concatenate(ii)
    j = np.concatenate(jj)
    s = np.concatenate(ss).reshape(-1, 3)
    d = np.concatenate(dd)
    order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
    return i[order], j[order], s[order], d[order]


def brute_force_pairs_anywhere(vectors, positions, cutoff, pbc):
    """Brute-force pairs for positions anywhere (wrapped first, shifts translated back)."""
    vectors = np.asarray(vectors, dtype=float)
    positions = np.asarray(positions, dtype=float)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    frac = positions @ np.linalg.inv(vectors)
    offset = np.where(pbc, np.floor(frac), 0.0)
    wrapped = (frac - offset) @ vectors
    i, j, s, d = brute_force_pairs(vectors, wrapped, cutoff, pbc)
    s = (s - offset[j] + offset[i]).astype(int)
    order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
    return i[order], j[order], s[order], d[order]


# --------------------------------------------------------------------------------- finite differences


def central_difference(f, x, eps=1e-5):
    """Central finite-difference gradient of scalar f at array x (any shape)."""
    x = np.array(x, dtype=float)
    g = np.zeros_like(x)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        fp = f(x)
        flat[k] = old - eps
        fm = f(x)
        flat[k] = old
        gflat[k] = (fp - fm) / (2 * eps)
    return g


# --------------------------------------------------------------------------------- systems


def separated_fractions(rng, vectors, n, d_min):
    """``n`` random fractional positions ``[n, 3]`` in the periodic cell ``vectors`` with no pair (minimum image)
    closer than ``d_min`` (Å), drawn by rejection from ``rng``."""
    frac = []
    while len(frac) < n:
        x = rng.random(3)
        trial = np.array(frac + [x])
        d = trial[:, None, :] - trial[None, :, :]
        d -= np.round(d)
        dist = np.linalg.norm(d @ vectors, axis=-1) + np.eye(len(trial)) * 10
        if dist.min() > d_min:
            frac.append(x)
    return np.array(frac)


def diamond(a=5.431, reps=(1, 1, 1), noise=0.0, rng=None, species=None):
    """Diamond silicon ``(vectors, frac, species, pbc)``, periodic: the 8-atom cubic cell of side ``a`` (Å) repeated
    ``reps`` times (``8 * prod(reps)`` atoms). With ``noise``, Gaussian noise of that standard deviation (Å) on the
    Cartesian positions, drawn from ``rng`` (a Generator, or a seed of ``np.random.default_rng``); ``species``
    replaces the "Si" labels."""
    base = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    base = np.concatenate([base, base + 0.25])
    reps = np.broadcast_to(np.asarray(reps), (3,))
    frac = np.concatenate([(base + s) / reps for s in np.ndindex(*reps)])
    vectors = np.diag(a * reps.astype(float))
    if noise:
        cart = frac @ vectors + np.random.default_rng(rng).normal(0, noise, frac.shape)
        frac = cart @ np.linalg.inv(vectors)
    species = np.array(["Si"] * len(frac)) if species is None else np.asarray(species)
    return vectors, frac, species, (True, True, True)


# --------------------------------------------------------------------------------- wrappers


class _Cell:
    def __init__(self, vectors, coordinates, values, meta=None):
        self.vectors = np.array(vectors, dtype=float)
        self.coordinates = np.array(coordinates, dtype=float)
        self.values = np.asarray(values)
        self.meta = dict(meta or {})

    @property
    def size(self):
        return len(self.coordinates)

    @property
    def volume(self):
        return abs(np.linalg.det(self.vectors))

    def copy(self):
        return _Cell(self.vectors.copy(), self.coordinates.copy(), self.values.copy(), self.meta)

    def cartesian(self):
        return self.coordinates @ self.vectors


class StandInWrapper(EvaluationMixin):
    """Brute-force stand-in for NeighborWrapper (no wrapping of coordinates)."""

    def __init__(self, cell, pbc=True, cutoff=None, n_threads=None):
        self.pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        self.n_threads = n_threads
        self.pairs = None
        self.cutoff = None
        self.set_cell(cell)
        if cutoff is not None:
            self.compute_distances(cutoff)

    def set_cell(self, cell, normalize=True):
        self.cell = cell.copy()
        self.pairs = None

    def set_cell_cartesian(self, cartesian, normalize=True):
        self.cell.coordinates = np.asarray(cartesian, dtype=float) @ np.linalg.inv(self.cell.vectors)
        self.pairs = None

    @property
    def cartesian_row(self):
        return self.cell.cartesian()

    @property
    def vectors(self):
        return self.cell.vectors

    @property
    def volume(self):
        return self.cell.volume

    @property
    def size(self):
        return self.cell.size

    def compute_distances(self, cutoff=None):
        cutoff = self.cutoff if cutoff is None else cutoff
        self.cutoff = cutoff
        cart = self.cartesian_row
        i, j, s, d = brute_force_pairs(self.cell.vectors, cart, cutoff, self.pbc)
        D = cart[j] + s @ self.cell.vectors - cart[i]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=len(cart)))]).astype(np.int64)
        self.pairs = PairList(indptr, j.astype(np.int32), s.astype(np.int32), D, d, float(cutoff))
        self.species, inverse = np.unique(self.cell.values, return_inverse=True)
        self.spec_encoded_row = inverse.reshape(-1).astype(np.int32)
        self.species_lookup = {k: n for n, k in enumerate(self.species)}


def real_wrapper_available():
    try:
        from miniff.kernel import Cell, NeighborWrapper  # noqa: F401
    except ImportError:
        return False
    return True


def make_nw(system, cutoff, n_threads=1, standin=False):
    """A wrapper with distances up to ``cutoff`` for a conftest system ``(vectors, frac, species, pbc)``.

    One thread by default: tests of many tiny evaluations (finite differences) are dominated by thread
    start-up on a loaded machine; thread independence is tested explicitly with ``n_threads=``.
    """
    vectors, frac, species, pbc = system
    if not standin and real_wrapper_available():
        from miniff.kernel import Cell, NeighborWrapper

        return NeighborWrapper(Cell(vectors, frac, species), pbc=pbc, cutoff=cutoff, n_threads=n_threads)
    return StandInWrapper(_Cell(vectors, frac, species), pbc=pbc, cutoff=cutoff, n_threads=n_threads)


# --------------------------------------------------------------------------------- numpy references


def neighbours(system, cutoff):
    """Per atom: list of (j, D vector) within cutoff from the brute-force list; also cartesian positions."""
    vectors, frac, species, pbc = system
    vectors = np.asarray(vectors, dtype=float)
    cart = np.asarray(frac) @ vectors
    i, j, s, d = brute_force_pairs(vectors, cart, cutoff, pbc)
    D = cart[j] + s @ vectors - cart[i]
    out = [[] for _ in range(len(cart))]
    for a, b, vec in zip(i, j, D, strict=True):
        out[a].append((b, vec))
    return out


def fc(r, a):
    """The cosine cutoff ``f_c(r; a)``."""
    return np.where(r < a, 0.5 * (1 + np.cos(np.pi * r / a)), 0.0)


def reference_pair(system, cutoff, tag, f):
    """E_i = sum over neighbours j (species per tag) within cutoff of f(r_ij)."""
    species = np.asarray(system[2])
    sa, sb = tag.split("-")
    out = np.zeros(len(species))
    for i, neigh in enumerate(neighbours(system, cutoff)):
        if species[i] != sa:
            continue
        for j, vec in neigh:
            if species[j] == sb:
                out[i] += f(np.linalg.norm(vec))
    return out


def reference_triple(system, cutoff, tag, f):
    """E_i = sum over ordered neighbour pairs (j, k), j != k, of f(r_ij, r_ik, cos, D_ij, D_ik)."""
    species = np.asarray(system[2])
    sa, sb, sc = tag.split("-")
    out = np.zeros(len(species))
    for i, neigh in enumerate(neighbours(system, cutoff)):
        if species[i] != sa:
            continue
        for (n1, (j, v1)), (n2, (k, v2)) in itertools.product(enumerate(neigh), repeat=2):
            if n1 == n2 or species[j] != sb or species[k] != sc:
                continue
            r1, r2 = np.linalg.norm(v1), np.linalg.norm(v2)
            out[i] += f(r1, r2, v1 @ v2 / (r1 * r2), v1, v2)
    return out


def dense_descriptor_jacobian(nw, jac_pfc):
    """``[N, F, N, 3]`` d values[i, f] / d r[a] from the per-pair Jacobian of ``eval_descriptors``
    (``+jac`` on the neighbour, ``-jac`` on the centre atom of every pair)."""
    n = len(nw.pairs.indptr) - 1
    dense = np.zeros((n, jac_pfc.shape[1], n, 3))
    i_p, j_p = nw.pairs.i_p, nw.pairs.j_p
    for p in range(nw.pairs.n_pairs):
        dense[i_p[p], :, j_p[p]] += jac_pfc[p]
        dense[i_p[p], :, i_p[p]] -= jac_pfc[p]
    return dense


# --------------------------------------------------------------------------------- family case tables

# Every built-in family with a direct numpy formula of its per-atom terms:
# name -> (family, parameters, cutoff (Å), f(r) for pairs or f(r1, r2, cos, D1, D2) for triplets).

A = 3.6  # descriptor cutoff used below, Å

PAIR_CASES = {
    "harmonic": (P.harmonic_repulsion_potential_family, dict(a=2.5, epsilon=0.7), 2.5,
                 lambda r: 0.7 * (r - 2.5) ** 2 / (2 * 2.5**2)),
    "lj": (P.lj_potential_family, dict(epsilon=0.02, sigma=1.1, a=3.0), 3.3,
           lambda r: 4 * 0.02 * ((1.1 / r) ** 12 - (1.1 / r) ** 6)),
    "sw2": (P.sw2_potential_family, dict(epsilon=1.3, sigma=1.4, a=1.8, p=4, q=0, gauge_a=7.0, gauge_b=0.6), 1.4 * 1.8,
            lambda r: 1.3 * 7.0 * (0.6 * (r / 1.4) ** -4 - 1) * np.exp(1 / (r / 1.4 - 1.8))),
    "sw2_q": (P.sw2_potential_family, dict(epsilon=1.0, sigma=1.2, a=2.0, p=6, q=2.5, gauge_a=3.0, gauge_b=1.5),
              2.4, lambda r: 3.0 * (1.5 * (r / 1.2) ** -6 - (r / 1.2) ** -2.5) * np.exp(1 / (r / 1.2 - 2.0))),
    "behler2": (P.behler2_descriptor_family, dict(a=A, eta=1.3, r_sphere=2.1), A,
                lambda r: np.exp(-1.3 * (r - 2.1) ** 2) * fc(r, A)),
    "sigmoid": (P.sigmoid_descriptor_family, dict(a=A, dr=0.4, r0=2.2), A,
                lambda r: fc(r, A) / (1 + np.exp((r - 2.2) / 0.4))),
    "general_pair": (P.general_pair_potential_family,
                     dict(f=lambda r, row, col: np.sin(r) * fc(r, A),
                          df_dr=lambda r, row, col: np.cos(r) * fc(r, A) + np.sin(r) * P.sine_cutoff_fp(r, A), a=A), A,
                     lambda r: np.sin(r) * fc(r, A)),
}


def _b45(r1, r2, c, v1, v2, eta, l, zeta, eps, b4):
    c = np.clip(c, -1.0, 1.0)  # collinear images: rounding may give |cos| slightly above 1
    val = 2 ** (1 - zeta) * eps * (1 + l * c) ** zeta * np.exp(-eta * (r1**2 + r2**2)) * fc(r1, A) * fc(r2, A)
    if b4:
        r3 = np.linalg.norm(v2 - v1)
        val = val * np.exp(-eta * r3**2) * fc(r3, A) if r3 < A else 0.0
    return val


def _b5x(r1, r2, c, eta1, eta2, c0, eps):
    def g(r, eta):
        return np.exp(-eta * r * r) * fc(r, A)

    return eps / 4 * (c - c0) ** 2 * (g(r1, eta1) * g(r2, eta2) + g(r1, eta2) * g(r2, eta1))


TRIPLE_CASES = {
    "sw3": (P.sw3_potential_family, dict(epsilon=1.1, sigma=1.3, l=2.5, gamma=1.2, cos_theta0=-1 / 3, a=2.2),
            1.3 * 2.2,
            lambda r1, r2, c, v1, v2: 1.1 * 2.5 * (c + 1 / 3) ** 2
            * np.exp(1.2 / (r1 / 1.3 - 2.2) + 1.2 / (r2 / 1.3 - 2.2))),
    "behler4": (P.behler4_descriptor_family, dict(a=A, eta=0.05, l=1, zeta=3), A,
                lambda r1, r2, c, v1, v2: _b45(r1, r2, c, v1, v2, 0.05, 1, 3, 1.0, True)),
    "behler5": (P.behler5_descriptor_family, dict(a=A, eta=0.08, l=1, zeta=2, epsilon=0.7), A,
                lambda r1, r2, c, v1, v2: _b45(r1, r2, c, v1, v2, 0.08, 1, 2, 0.7, False)),
    "behler5_frac_zeta": (P.behler5_descriptor_family, dict(a=A, eta=0.01, l=1, zeta=1.7), A,
                          lambda r1, r2, c, v1, v2: _b45(r1, r2, c, v1, v2, 0.01, 1, 1.7, 1.0, False)),
    "behler5x": (P.behler5x_descriptor_family, dict(a=A, eta1=0.02, eta2=0.3, cos_theta0=0.25), A,
                 lambda r1, r2, c, v1, v2: _b5x(r1, r2, c, 0.02, 0.3, 0.25, 1.0)),
    "general_triple": (P.general_triple_potential_family,
                       dict(f=lambda r1, r2, c, *_: r1 * c * fc(r1, A) * fc(r2, A),
                            df_dr1=lambda r1, r2, c, *_: c * (fc(r1, A) + r1 * P.sine_cutoff_fp(r1, A)) * fc(r2, A),
                            df_dr2=lambda r1, r2, c, *_: r1 * c * fc(r1, A) * P.sine_cutoff_fp(r2, A),
                            df_dt=lambda r1, r2, c, *_: r1 * fc(r1, A) * fc(r2, A), a=A),
                       A, lambda r1, r2, c, v1, v2: r1 * c * fc(r1, A) * fc(r2, A)),
}


# --------------------------------------------------------------------------------- fitting problems


def seed_toy():
    """The seed tutorial's toy problem: ``r [100]``, the descriptors ``g_i(r) = r^i exp(-r)`` as ``g_r [3, 100]`` and
    the target ``f(r) = (r^2 - r + 1) exp(-r) = g_2 - g_1 + g_0`` as ``f_r [100]``."""
    r = np.linspace(0.1, 10, 100)
    g_r = np.array([r**i * np.exp(-r) for i in range(3)])
    f_r = (r**2 - r + 1) * np.exp(-r)
    return r, g_r, f_r


def seed_dataset(dtype=None):
    """``(dataset, g_r, f_r)``: the toy problem of ``seed_toy`` as a ``miniff.ml.Dataset`` of one-atom structures,
    in ``dtype`` (default torch.float32)."""
    import torch

    from miniff import ml

    dtype = torch.float32 if dtype is None else dtype
    _, g_r, f_r = seed_toy()
    rhs = ml.PerCellDataset(energy=torch.tensor(f_r, dtype=dtype)[:, None])
    lhs = ml.PerPointDataset(features=torch.tensor(g_r.T, dtype=dtype)[:, None, :],
                             mask=torch.ones(len(f_r), 1, dtype=dtype))
    return ml.Dataset(rhs, lhs), g_r, f_r


LJ_SIGMA, LJ_EPSILON, LJ_RC = 1.0, 1.0, 2.5  # the Lennard-Jones parameters of ``lj_cells`` (Å, eV, Å)


def lj_cells(n, seed, rattle=0.02):
    """Strained, rattled 8-atom fcc cells with ASE's smooth Lennard-Jones energies and forces."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    from miniff.io import read_cells

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = bulk("Ar", "fcc", a=2 ** (1 / 6) * np.sqrt(2) * LJ_SIGMA, cubic=True).repeat((2, 1, 1))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
        atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
        atoms.calc = LennardJones(sigma=LJ_SIGMA, epsilon=LJ_EPSILON, rc=LJ_RC, smooth=True)
        atoms.get_forces()
        atoms.info["group"] = "a" if k % 2 else "b"
        frames.append(atoms)
    return read_cells(frames)


def radial_basis(n=16):
    """Shifted Gaussians (Behler type 2) spanning 0.8 sigma .. cutoff of ``lj_cells``."""
    rs = np.linspace(0.8, 2.4, n)
    eta = 1 / (2 * (rs[1] - rs[0]) ** 2)
    return {"Ar": [P.behler2_descriptor_family(a=LJ_RC, eta=eta, r_sphere=float(r), tag="Ar-Ar") for r in rs]}


def random_quadratic(n, seed):
    """``(A [n, n], b [n])``: a random well-conditioned positive definite quadratic ``x A x / 2 - b x``."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, n))
    a = q @ q.T / n + np.diag(np.linspace(0.5, 20, n))
    b = rng.normal(size=n)
    return a, b


def minimise_quadratic(make_optimizer, a, b):
    """Minimise ``x A x / 2 - b x`` from 0 with ``make_optimizer([x])``; returns ``(x, optimizer)``."""
    import torch

    at, bt = torch.tensor(a), torch.tensor(b)
    x = torch.zeros(len(b), dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([x])

    def closure():
        opt.zero_grad()
        f = 0.5 * x @ at @ x - bt @ x
        f.backward()
        return f

    opt.step(closure)
    return x, opt


# --------------------------------------------------------------------------------- spies

Call = namedtuple("Call", "args kwargs result")


def spy(monkeypatch, owner, name):
    """Replace ``owner.name`` (a module's function, or a method of a class) by a wrapper that calls it and records
    every call as ``Call(args, kwargs, result)``; returns the live list of calls (``monkeypatch`` restores the
    original). Callers look the name up at call time, so the recorded results are the values they used."""
    original = getattr(owner, name)
    calls = []

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(Call(args, kwargs, result))
        return result

    monkeypatch.setattr(owner, name, wrapper)
    return calls
