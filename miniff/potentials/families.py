"""The built-in families of potentials and descriptors (``docs/formulas.md`` writes them all out).

Formulas are per atom ``i``. Energies are per atom and the total is their plain sum, with no 1/2:

- a pair tag ``"a-b"`` gives every ``a`` atom one term per ``b`` neighbour, so an ``"a-a"`` pair counts from
  both atoms (a model written as a sum over unordered pairs needs half its pair energy);
- a triplet tag ``"a-b-c"`` gives the centre ``a`` atom one term per *ordered* pair of neighbours (j, k),
  j != k, j of species ``b`` and k of species ``c``, so for ``"a-b-b"`` every angle counts twice (a model
  counting each angle once per centre needs half its prefactor); ``cos_t`` is the cosine of the angle j-i-k,
  ``r1 = r_ij``, ``r2 = r_ik``, ``r3 = r_jk``. (The local structural parameters of ``lsp.py`` also include
  j = k.)

Only neighbours with ``r < cutoff`` enter (for triplets both ``r1`` and ``r2``). Cosine cutoff
``f_c(r; a) = (1 + cos(pi r / a)) / 2`` for ``r < a``, else 0. The scaled families (Lennard-Jones, SW2, SW3) add
``epsilon`` (eV) and ``sigma`` (Å); their ``a`` is a reduced cutoff, the cutoff is ``a * sigma`` and
``x = r / sigma``. Units: eV, Å, radians (angles enter only through their cosines); descriptors are
dimensionless.
"""

import math

import numpy as np

from miniff.potentials import backends as B
from miniff.potentials.base import LocalPotentialFamily, ScaledLocalPotentialFamily

__all__ = [
    "general_pair_potential_family",
    "general_triple_potential_family",
    "on_site_potential_family",
    "harmonic_repulsion_potential_family",
    "lj_potential_family",
    "sw2_potential_family",
    "sw3_potential_family",
    "behler2_descriptor_family",
    "behler4_descriptor_family",
    "behler5_descriptor_family",
    "behler5x_descriptor_family",
    "sigmoid_descriptor_family",
    "SW2PotentialFamily",
    "stillinger_weber_si",
    "SW_SILICON",
]

_POSITIVE = (0, None, True, False)  # > 0
_NON_NEGATIVE = (0, None)  # >= 0
_ANY = (None, None)  # any finite number
_UNIT = (-1, 1)  # [-1, 1]
#: Largest exponent ``zeta`` of the angular term ``(1 + l cos_t)^zeta`` (2^zeta overflows float64 above 1023).
MAX_ZETA = 1000.0
#: Largest exponents ``p``, ``q`` of Stillinger-Weber type 2 (``x^-p`` stays finite in float64 for x >= 1e-3).
MAX_SW_EXPONENT = 100.0

#: General pair (tag ``"a-b"``): ``phi(r) = f(r, row, col)`` from a Python callable for ``r < a``, gradient from
#: ``df_dr(r, row, col)``; ``r`` the pair distances (Å), ``row``/``col`` the species codes of the centre and the
#: neighbour (one per pair); a callable taking fewer positional arguments is called with the first ones. ``f`` in
#: eV, ``df_dr`` in eV/Å, cutoff ``a`` (Å), no cutoff function. One term per ``b`` neighbour of every ``a`` atom.
#: Evaluated with numpy, serially.
general_pair_potential_family = LocalPotentialFamily(
    parameters={"f": None, "df_dr": None, "a": _POSITIVE},
    cutoff="a",
    kernels=B.GeneralPairBackend(),
    tag="general pair",
    coordination=2,
    doc="f(r, row, col) from a Python callable; gradient from df_dr(r, row, col)",
)

#: General triple (tag ``"a-b-c"``): ``psi = f(r1, r2, cos_t, row, col1, col2)`` from Python callables, gradient
#: from ``df_dr1``, ``df_dr2`` (eV/Å) and ``df_dt`` (by ``cos_t``, eV), called with the same arguments (or their
#: first ones); ``row``, ``col1``, ``col2`` the species codes of i, j, k. Summed over ordered neighbour pairs
#: (j, k), j != k, both ``r1 = r_ij`` and ``r2 = r_ik`` < ``a`` (Å); no cutoff function. Evaluated with numpy.
general_triple_potential_family = LocalPotentialFamily(
    parameters={"f": None, "df_dr1": None, "df_dr2": None, "df_dt": None, "a": _POSITIVE},
    cutoff="a",
    kernels=B.GeneralTripleBackend(),
    tag="general triple",
    coordination=3,
    doc="f(r1, r2, cos_t, row, col1, col2) from Python callables (derivatives df_dr1, df_dr2, df_dt)",
)

#: On-site (tag ``"a"``): ``E_i = v0`` (eV) for every atom ``i`` of species ``a``; cutoff 0, no force.
on_site_potential_family = LocalPotentialFamily(
    parameters={"v0": _ANY},
    cutoff=0,
    kernels=B.OnSiteBackend(),
    tag="on-site",
    coordination=1,
    doc="v0 for every atom of the tagged species",
)

#: Harmonic repulsion (tag ``"a-b"``): ``phi(r) = epsilon (r - a)^2 / (2 a^2)`` for ``r < a``, ``a`` (Å, > 0) also
#: the cutoff, ``epsilon`` (eV). ``phi`` and its slope vanish at ``a``. One term per ``b`` neighbour of every
#: ``a`` atom (an ``"a-a"`` pair counts from both atoms).
harmonic_repulsion_potential_family = LocalPotentialFamily(
    parameters={"a": _POSITIVE, "epsilon": _ANY},
    cutoff="a",
    kernels=B.PairBackend(B.PAIR_HARMONIC, ("a", "epsilon")),
    tag="harmonic repulsion",
    coordination=2,
    doc="epsilon (r - a)^2 / (2 a^2)",
)

#: Lennard-Jones (scaled, tag ``"a-b"``): ``phi(r) = 4 epsilon ((sigma/r)^12 - (sigma/r)^6)`` for
#: ``r < a sigma``, not shifted at the cutoff. ``epsilon`` eV, ``sigma`` Å, ``a`` reduced cutoff (>= 2^(1/6)).
#: One term per ``b`` neighbour of every ``a`` atom: with ``"a-a"`` the total is ``sum_{i<j} 2 phi(r_ij)``.
lj_potential_family = ScaledLocalPotentialFamily(
    parameters={"a": (2 ** (1 / 6), None)},
    cutoff="a",
    kernels=B.PairBackend(B.PAIR_LJ, ("epsilon", "sigma")),
    tag="Lennard-Jones",
    coordination=2,
    doc="4 epsilon ((sigma/r)^12 - (sigma/r)^6), cutoff a * sigma, no shift",
)


def _sw2_gauge(x0, v0, a, p, q):
    """Gauges (A, B) of A (B x^-p - x^-q) exp(1/(x - a)) with its minimum v0 at x0."""
    if not 0 < x0 < a:
        raise ValueError(f"min_at[0] = {x0} must lie in (0, a) = (0, {a})")
    s = 1.0 / (x0 - a) ** 2
    gauge_b = (q * x0 ** (-q - 1) + x0 ** (-q) * s) / (p * x0 ** (-p - 1) + x0 ** (-p) * s)
    shape = (gauge_b * x0 ** (-p) - x0 ** (-q)) * math.exp(1.0 / (x0 - a))
    if shape == 0:
        raise ValueError("cannot solve the SW2 gauge: the reduced potential vanishes at min_at")
    return v0 / shape, gauge_b


class SW2PotentialFamily(ScaledLocalPotentialFamily):
    """Stillinger-Weber two-body family with the gauge rule.

    ``phi(r) = epsilon A (B x^-p - x^-q) exp(1/(x - a))`` for ``x = r / sigma < a`` (0.1.4's parameterisation),
    ``A = gauge_a``, ``B = gauge_b`` (dimensionless), exponents ``p``, ``q`` >= 0, ``epsilon`` eV, ``sigma`` Å,
    cutoff ``a sigma``; ``exp(1/(x - a))`` takes ``phi`` smoothly to 0 at the cutoff (no other cutoff function).
    Tag ``"a-b"``: one term per ``b`` neighbour of every ``a`` atom (an ``"a-a"`` pair counts from both atoms).

    Unless ``gauge_a`` and ``gauge_b`` are both given, they are solved so that the reduced potential
    ``gauge_a (gauge_b x^-p - x^-q) exp(1/(x - a))`` has its extremum ``min_at[1]`` at ``x = min_at[0]``
    (default: depth -1 at ``2^(1/6)``, i.e. ``-epsilon`` at ``r = 2^(1/6) sigma``). The solved gauges are
    stored in ``parameters``.
    """

    def instantiate(self, min_at=(2 ** (1 / 6), -1), tag=None, **kwargs):
        """Make an SW2 potential (see the class docstring for ``min_at``)."""
        if "gauge_a" not in kwargs or "gauge_b" not in kwargs:
            probe = dict(kwargs)
            probe.setdefault("gauge_a", 1.0)
            probe.setdefault("gauge_b", 1.0)
            checked = self.screen_parameters(**probe)
            try:
                x0, v0 = (float(v) for v in min_at)
            except (TypeError, ValueError):
                raise ValueError(f"min_at must be a pair (x, value), got {min_at!r}") from None
            if not (math.isfinite(x0) and math.isfinite(v0)):
                raise ValueError(f"min_at must be finite, got {min_at!r}")
            ga, gb = _sw2_gauge(x0, v0, checked["a"], checked["p"], checked["q"])
            kwargs.setdefault("gauge_a", ga)
            kwargs.setdefault("gauge_b", gb)
        return super().instantiate(tag=tag, **kwargs)

    __call__ = instantiate


#: Stillinger-Weber type 2 (scaled, tag ``"a-b"``): ``phi(r) = epsilon A (B x^-p - x^-q) exp(1/(x - a))``,
#: ``x = r / sigma < a``, ``p``, ``q`` in [0, 100], ``A = gauge_a``, ``B = gauge_b`` (solved by the gauge rule
#: unless both are given, see ``SW2PotentialFamily``). ``epsilon`` eV, ``sigma`` Å, ``a``, ``p``, ``q``
#: dimensionless; cutoff ``a sigma``.
#: One term per ``b`` neighbour of every ``a`` atom (an ``"a-a"`` pair counts from both atoms).
sw2_potential_family = SW2PotentialFamily(
    parameters={"a": _POSITIVE, "p": (0, MAX_SW_EXPONENT), "q": (0, MAX_SW_EXPONENT), "gauge_a": _ANY,
                "gauge_b": _ANY},
    cutoff="a",
    kernels=B.PairBackend(B.PAIR_SW2, ("epsilon", "sigma", "a", "p", "q", "gauge_a", "gauge_b")),
    tag="Stillinger-Weber type 2",
    coordination=2,
    doc="epsilon A (B x^-p - x^-q) exp(1/(x - a)), x = r/sigma, A = gauge_a, B = gauge_b",
)

#: Stillinger-Weber type 3 (scaled, tag ``"a-b-c"``):
#: ``psi = epsilon l (cos_t - cos_theta0)^2 exp(gamma/(x1 - a) + gamma/(x2 - a))``, ``x_n = r_n / sigma < a``,
#: summed over ordered neighbour pairs (j, k), j != k: with ``"a-b-b"`` every angle counts twice. ``epsilon``
#: eV, ``sigma`` Å, ``l`` (lambda) and ``gamma`` (>= 0) dimensionless, ``cos_theta0`` in [-1, 1], ``a`` reduced
#: cutoff (cutoff ``a sigma``); ``r_jk`` does not enter.
sw3_potential_family = ScaledLocalPotentialFamily(
    parameters={"l": _ANY, "gamma": _NON_NEGATIVE, "cos_theta0": _UNIT, "a": _POSITIVE},
    cutoff="a",
    kernels=B.TripleBackend(B.TRIPLE_SW3, ("epsilon", "sigma", "l", "gamma", "cos_theta0", "a")),
    tag="Stillinger-Weber type 3",
    coordination=3,
    doc="epsilon l (cos_t - cos_theta0)^2 exp(gamma/(x1 - a) + gamma/(x2 - a)), x = r/sigma",
)

#: Behler type 2 (tag ``"a-b"``): ``G_i = sum_j exp(-eta (r - r_sphere)^2) f_c(r; a)`` over the ``b`` neighbours.
#: ``a`` (Å, cutoff), ``eta`` (1/Å², >= 0), ``r_sphere`` (Å).
behler2_descriptor_family = LocalPotentialFamily(
    parameters={"a": _POSITIVE, "eta": _NON_NEGATIVE, "r_sphere": _ANY},
    cutoff="a",
    kernels=B.CutoffPairBackend(B.FC_BEHLER2, ("eta", "r_sphere")),
    tag="Behler type 2",
    coordination=2,
    doc="exp(-eta (r - r_sphere)^2) f_c(r)",
)

#: Sigmoid (tag ``"a-b"``): ``G_i = sum_j f_c(r; a) / (1 + exp((r - r0) / dr))`` over the ``b`` neighbours.
#: ``a`` (Å, cutoff), ``dr`` (Å, > 0), ``r0`` (Å).
sigmoid_descriptor_family = LocalPotentialFamily(
    parameters={"a": _POSITIVE, "dr": _POSITIVE, "r0": _ANY},
    cutoff="a",
    kernels=B.CutoffPairBackend(B.FC_SIGMOID, ("r0", "dr")),
    tag="Sigmoid",
    coordination=2,
    doc="f_c(r) / (1 + exp((r - r0) / dr))",
)

_ANGULAR_PARAMETERS = {"a": _POSITIVE, "eta": _NON_NEGATIVE, "l": _UNIT, "zeta": (0, MAX_ZETA), "epsilon": _ANY}

#: Behler type 4 (tag ``"a-b-c"``): ``G_i = 2^(1-zeta) epsilon sum_{j != k} (1 + l cos_t)^zeta
#: exp(-eta (r1^2 + r2^2 + r3^2)) f_c(r1) f_c(r2) f_c(r3)``, ``r3 = |r_k - r_j|`` (pairs with ``r3 >= a`` skipped),
#: over ordered neighbour pairs (j, k): with ``"a-b-b"`` every angle counts twice. ``a`` (Å, cutoff), ``eta``
#: (1/Å², >= 0), ``l`` in [-1, 1], ``zeta`` in [0, 1000] (any real), ``epsilon`` (default 1).
behler4_descriptor_family = LocalPotentialFamily(
    parameters=dict(_ANGULAR_PARAMETERS),
    cutoff="a",
    kernels=B.AngularBackend(B.BATCH_BEHLER4),
    parameter_defaults={"epsilon": 1.0},
    tag="Behler type 4",
    coordination=3,
    doc="2^(1-zeta) eps (1 + l cos_t)^zeta exp(-eta (r1^2 + r2^2 + r3^2)) f_c(r1) f_c(r2) f_c(r3), "
        "r3 = |r_j - r_k| (term skipped if r3 >= a)",
)

#: Behler type 5 (tag ``"a-b-c"``): ``G_i = 2^(1-zeta) epsilon sum_{j != k} (1 + l cos_t)^zeta
#: exp(-eta (r1^2 + r2^2)) f_c(r1) f_c(r2)`` over ordered neighbour pairs (j, k): with ``"a-b-b"`` every angle
#: counts twice. Parameters as for type 4.
behler5_descriptor_family = LocalPotentialFamily(
    parameters=dict(_ANGULAR_PARAMETERS),
    cutoff="a",
    kernels=B.AngularBackend(B.BATCH_BEHLER5),
    parameter_defaults={"epsilon": 1.0},
    tag="Behler type 5",
    coordination=3,
    doc="2^(1-zeta) eps (1 + l cos_t)^zeta exp(-eta (r1^2 + r2^2)) f_c(r1) f_c(r2)",
)

#: Behler type 5x (tag ``"a-b-c"``): ``G_i = epsilon / 4 sum_{j != k} (cos_t - cos_theta0)^2
#: (g1(r1) g2(r2) + g2(r1) g1(r2))``, ``g_n(r) = exp(-eta_n r^2) f_c(r; a)``, over ordered neighbour pairs (j, k):
#: with ``"a-b-b"`` every angle counts twice. ``a`` (Å, cutoff), ``eta1``, ``eta2`` (1/Å², >= 0), ``cos_theta0``
#: in [-1, 1], ``epsilon`` (default 1).
behler5x_descriptor_family = LocalPotentialFamily(
    parameters={"a": _POSITIVE, "eta1": _NON_NEGATIVE, "eta2": _NON_NEGATIVE, "cos_theta0": _UNIT,
                "epsilon": _ANY},
    cutoff="a",
    kernels=B.TripleBackend(B.TRIPLE_BEHLER5X, ("a", "eta1", "eta2", "cos_theta0", "epsilon")),
    parameter_defaults={"epsilon": 1.0},
    tag="Behler type 5x",
    coordination=3,
    doc="eps/4 (cos_t - cos_theta0)^2 (g1(r1) g2(r2) + g2(r1) g1(r2)), g_n(r) = exp(-eta_n r^2) f_c(r)",
)

#: Published Stillinger-Weber silicon parameters (Phys. Rev. B 31, 5262 (1985)): eV, Å.
SW_SILICON = {
    "epsilon": 2.1683,
    "sigma": 2.0951,
    "a": 1.8,
    "lambda": 21.0,
    "gamma": 1.2,
    "A": 7.049556277,
    "B": 0.6022245584,
    "p": 4.0,
    "q": 0.0,
}


def stillinger_weber_si(species="Si", solve_gauge=False):
    """Stillinger-Weber silicon as a list of two potentials ``[pair, triplet]``.

    The parameters are ``SW_SILICON`` (Stillinger & Weber 1985): epsilon = 2.1683 eV, sigma = 2.0951 Å,
    a = 1.8, lambda = 21.0, gamma = 1.2, A = 7.049556277, B = 0.6022245584, p = 4, q = 0, cos_theta0 = -1/3.
    The published model counts each pair once and each angle once per centre atom; miniff counts per atom
    (a pair from both atoms, an angle (j, k) in both orders), so the pair ``epsilon`` and the three-body
    ``lambda`` are halved here: SW2 ``"Si-Si"`` with ``epsilon = 1.08415`` and SW3 ``"Si-Si-Si"`` with
    ``epsilon = 2.1683``, ``l = 10.5``. Diamond silicon at a = 5.431 Å gives -4.3366 eV/atom.

    Parameters
    ----------
    species : str
        Species label of silicon in the cells (default ``"Si"``).
    solve_gauge : bool
        Solve ``A``, ``B`` from the gauge rule (minimum -1 at 2^(1/6)) instead of using the published values.

    Returns
    -------
    list of LocalPotential
        Cutoff ``a sigma = 3.77118`` Å.
    """
    p = SW_SILICON
    gauges = {} if solve_gauge else {"gauge_a": p["A"], "gauge_b": p["B"]}
    pair = sw2_potential_family(epsilon=p["epsilon"] / 2, sigma=p["sigma"], a=p["a"], p=p["p"], q=p["q"],
                                tag=f"{species}-{species}", **gauges)
    triple = sw3_potential_family(epsilon=p["epsilon"], sigma=p["sigma"], l=p["lambda"] / 2, gamma=p["gamma"],
                                  cos_theta0=-1.0 / 3.0, a=p["a"], tag=f"{species}-{species}-{species}")
    return [pair, triple]


# --------------------------------------------------------------------------------------------------
# helpers that miniff 0.1.4 exported from miniff.potentials
# --------------------------------------------------------------------------------------------------


def sine_cutoff_fn(r, a):
    """Cosine cutoff ``(1 + cos(pi r / a)) / 2`` for ``r < a``, else 0 (array in, array out)."""
    r = np.asarray(r, dtype=float)
    return np.where(r < a, 0.5 * (1 + np.cos(np.pi * r / a)), 0.0)


def sine_cutoff_fp(r, a):
    """Derivative of ``sine_cutoff_fn`` by ``r`` (1/Å)."""
    r = np.asarray(r, dtype=float)
    return np.where(r < a, -0.5 * np.pi / a * np.sin(np.pi * r / a), 0.0)


def exp_fn(r, eta):
    """``exp(-eta r^2)``."""
    r = np.asarray(r, dtype=float)
    return np.exp(-eta * r * r)


def _behler2_derivatives(r, a, eta, r_sphere):
    r = np.asarray(r, dtype=float)
    t = r - r_sphere
    g = np.exp(-eta * t * t)
    g1 = -2 * eta * t * g
    g2 = (4 * eta * eta * t * t - 2 * eta) * g
    x = np.pi / a
    inside = r < a
    fc = np.where(inside, 0.5 * (1 + np.cos(x * r)), 0.0)
    fc1 = np.where(inside, -0.5 * x * np.sin(x * r), 0.0)
    fc2 = np.where(inside, -0.5 * x * x * np.cos(x * r), 0.0)
    return g * fc, g1 * fc + g * fc1, g2 * fc + 2 * g1 * fc1 + g * fc2


def behler2_p2(r, a, eta, r_sphere):
    """Second derivative of the type-2 descriptor ``exp(-eta (r - r_sphere)^2) f_c(r; a)`` by ``r`` (1/Å²)."""
    return _behler2_derivatives(r, a, eta, r_sphere)[2]


def behler_turning_point(a, eta, r_sphere, tol=1e-12):
    """First inflection point of the type-2 descriptor in ``(0, a/2]`` (Å); ``a/2`` when ``eta == 0`` or when
    the second derivative does not change sign there.

    The interval is scanned on a grid for the first sign change of ``behler2_p2``, then bisected.
    """
    if eta == 0:
        return a / 2
    grid = np.linspace(a / 2, 0, 1001)[::-1][1:]
    values = behler2_p2(grid, a, eta, r_sphere)
    change = np.nonzero(np.sign(values[1:]) != np.sign(values[:-1]))[0]
    if len(change) == 0:
        return a / 2
    lo, hi = grid[change[0]], grid[change[0] + 1]
    flo = behler2_p2(lo, a, eta, r_sphere)
    while hi - lo > tol * a:
        mid = 0.5 * (lo + hi)
        fm = behler2_p2(mid, a, eta, r_sphere)
        if fm * flo > 0:
            lo, flo = mid, fm
        else:
            hi = mid
    return 0.5 * (lo + hi)
