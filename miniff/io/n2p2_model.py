"""2G n2p2 potentials evaluated in miniff: ``N2p2Potential`` (symmetry functions by the compiled core through
:mod:`miniff.io.n2p2_compiled`, scaling and networks in numpy).

Formulas (n2p2's conventions; ``r`` in the files' length unit, sums over the neighbours of atom ``i``):

- cutoff ``f_c(r)``: 1 below the inner cutoff ``r_ci = alpha r_c``, ``f(x)`` with ``x = (r - r_ci)/(r_c - r_ci)``
  up to ``r_c``, 0 beyond.  Types: 0 ``f = 1``; 1 ``(cos(pi x) + 1)/2``; 2 ``tanh^3(1 - r/r_c)``; 3 the same
  divided by ``tanh^3(1)``; 4 ``exp(1 - 1/(1 - x^2))``; 5 ``(2x - 3)x^2 + 1``; 6 ``((15 - 6x)x - 10)x^3 + 1``;
  7 ``(x(x(20x - 70) + 84) - 35)x^4 + 1``; 8 ``(x(x((315 - 70x)x - 540) + 420) - 126)x^5 + 1`` (types 2 and 3
  ignore ``alpha``);
- type 2: ``G = sum_j exp(-eta (r_ij - r_s)^2) f_c(r_ij)`` over neighbours of element ``e1``;
- type 3: ``G = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta exp(-eta sum_{ij,ik,jk} (r - r_s)^2)
  f_c(r_ij) f_c(r_ik) f_c(r_jk)`` over unordered pairs of neighbours of elements {e1, e2}, ``r_jk < r_c``;
- type 9: type 3 without ``r_jk`` in the exponential and without ``f_c(r_jk)``;
  in both, a non-positive ``1 + lambda cos`` contributes 0;
- types 12, 13: types 2, 3 over neighbours of every element, each weighted by its atomic number (pairs by
  ``Z_j Z_k``);
- compact types: 20 ``G = sum_j C_r(r_ij)``; 21 ``G = sum_{j<k} C_r(r_ij) C_r(r_ik)
  C_r(r_jk) C_a(theta_ijk)``; 22 the same without ``C_r(r_jk)``; ``C_r`` on ``(r_l, r_c)``, ``C_a`` on the
  closed angle interval, collinear triplets excluded; 23-25: 20-22 weighted as 12, 13.  A compact function on
  ``(left, right)`` is ``C(a) = f(|x|)``, ``x = (a - centre)/half-width``, with ``f`` the core of its subtype
  (``p1``-``p4``: the polynomials of cutoff types 5-8, ``e``: that of type 4); the asymmetric subtypes (``p1a``...)
  use ``f((2 - |x|)|x|)`` in ``C_r``; ``C_a`` always uses the symmetric core;
- scaling of the network inputs: none ``G``; scale ``S_min + (S_max - S_min)(G - G_min)/(G_max - G_min)``;
  center ``G - G_mean``; scale+center ``S_min + (S_max - S_min)(G - G_mean)/(G_max - G_min)``; sigma
  ``S_min + (S_max - S_min)(G - G_mean)/G_sigma``;
- atomic energy (files' energy unit) ``E_i = NN(G_i)/conv_energy + mean_energy + atom_energy``.
"""

import numpy as np

from miniff.io.n2p2_compiled import compiled_descriptors, compiled_energy
from miniff.io.n2p2_files import parse_n2p2_folder
from miniff.io.n2p2_functions import network_outputs
from miniff.potentials.base import LocalPotential
from miniff.potentials.extrapolation import (
    ExtrapolationCounting,
    ExtrapolationWarning,
    report_extrapolation,
)

__all__ = ["N2p2Potential", "N2p2ExtrapolationWarning", "read_n2p2_2g"]

#: n2p2's extrapolation warnings are miniff's (one implementation, ``miniff.potentials.extrapolation``).
N2p2ExtrapolationWarning = ExtrapolationWarning

#: Relative margin of the extrapolation check: values that equal a bound of ``scaling.data`` up to rounding
#: (the structures the ranges were taken from) do not count.
EXTRAPOLATION_TOLERANCE = 1e-10


class N2p2Potential(ExtrapolationCounting, LocalPotential):
    """The atomic network of one element of an n2p2 potential (made by :func:`miniff.io.read_n2p2`).

    Energies in eV and gradients in eV/Å like every miniff potential; the symmetry functions are evaluated
    by the compiled core (``miniff._ext.n2p2sf``, OpenMP over the centre atoms) over the pair list in the files'
    units.  Symmetry functions outside the range of
    ``scaling.data`` are counted in every evaluation as for miniff's NN potentials
    (``miniff.potentials.extrapolation``): ``last_extrapolation(nw)`` gives the count per atom (the ASE
    calculator reports it), ``last_extrapolations`` their total; ``on_extrapolation`` (alias
    ``extrapolation``) is ``"warn"`` (an ``ExtrapolationWarning``), ``"ignore"`` or ``"raise"``
    (``ExtrapolationError``, a ``ValueError``).
    """

    def __init__(self, model, element, length_unit, energy_unit, extrapolation="warn"):
        symbols = [e.symbol for e in model.elements]
        fs = element.functions
        table = {k: np.array([f[k] for f in fs], dtype=float)
                 for k in ("eta", "rs", "zeta", "lambda", "rc", "rl", "al", "ar")}
        table["subtype"] = [f["subtype"] for f in fs]
        table["type"] = np.array([f["type"] for f in fs])
        table["e1"] = [symbols[f["e1"]] for f in fs]
        table["e2"] = [symbols[f["e2"]] if f["e2"] >= 0 else None for f in fs]
        gmin, gmax, gmean, gsigma = (np.array([s[k] if s[k] is not None else np.nan for s in element.scaling])
                                     for k in range(4))
        smin, smax = model.scale_min, model.scale_max
        ref, factor, offset = np.zeros_like(gmin), np.ones_like(gmin), 0.0
        if model.scaling == "center":
            ref = gmean
        elif model.scaling == "scale":
            ref, factor, offset = gmin, (smax - smin) / (gmax - gmin), smin
        elif model.scaling == "scalecenter":
            ref, factor, offset = gmean, (smax - smin) / (gmax - gmin), smin
        elif model.scaling == "scalesigma":
            ref, factor, offset = gmean, (smax - smin) / gsigma, smin
        parameters = {
            "functions": table, "cutoff_type": model.cutoff_type, "cutoff_alpha": model.cutoff_alpha,
            "scaling": (ref, factor, offset), "range": (gmin, gmax),
            "weights": [np.array(w, dtype=float) for w in element.weights],
            "biases": [np.array(b, dtype=float) for b in element.biases],
            "activations": list(model.activations),
            "energy": (model.conv_energy, model.mean_energy + element.atom_energy),
            "units": (float(length_unit), float(energy_unit)),
        }
        super().__init__({"model": parameters}, float(table["rc"].max()) * float(length_unit), tag=element.symbol)
        self.on_extrapolation = extrapolation
        tol = EXTRAPOLATION_TOLERANCE * (np.abs(gmax - gmin) + np.abs(gmax) + np.abs(gmin))
        #: ``[F, 2]`` the range of ``scaling.data`` widened by the rounding tolerance (files' units).
        self.descriptor_range = np.stack([gmin - tol, gmax + tol], axis=1)

    @property
    def _spec(self):
        """The model data: functions, scaling, network, units (see ``__init__``)."""
        return self.parameters["model"]

    @property
    def coordination(self):
        """1: the tag is the centre element."""
        return 1

    def __repr__(self):
        n_f = len(self._spec["weights"][0][0])
        return f"<N2p2Potential tag={self.tag!r} cutoff={self.cutoff:g} n_functions={n_f}>"

    # -------------------------------------------------------------- network
    def _network(self, x, grad):
        """Atomic outputs ``[M]`` of inputs ``x [M, F]`` and, with ``grad``, ``d out / d x [M, F]``."""
        p = self._spec
        return network_outputs(p["weights"], p["biases"], p["activations"], x, grad)

    @staticmethod
    def _atomic_numbers(nw):
        """``[n_species]`` float: the atomic number of every species code of ``nw`` (the weights of types 12,
        13, 23-25); ValueError naming a species label that is not a chemical symbol."""
        from ase.data import atomic_numbers

        bad = [str(s) for s in nw.species if str(s) not in atomic_numbers]
        if bad:
            raise ValueError(f"n2p2 weighted symmetry functions (types 12, 13, 23-25) weight neighbours by their "
                             f"atomic number, but the species {bad} are not chemical symbols")
        return np.array([atomic_numbers[str(s)] for s in nw.species], dtype=float)

    def descriptors(self, nw, code=None):
        """Raw symmetry functions ``[N, F]`` of the atoms of this element (0 for others)."""
        code = self.species_codes(nw)[0] if code is None else code
        return compiled_descriptors(self, nw, code)

    # -------------------------------------------------------------- Contract 3
    def compute(self, nw, grad=False, n_threads=None):
        """Per-atom energies ``[N]`` (eV) and per-pair gradients ``[P, 3]`` (eV/Å) (DEVELOPING.md, Contract 3)."""
        (code,) = self.species_codes(nw)
        spec = np.asarray(nw.spec_encoded_row)
        n = len(spec)
        energy_n = np.zeros(n)
        grad_pc = np.zeros((nw.pairs.n_pairs, 3)) if grad else None
        count_n = np.zeros(n, dtype=np.int64)
        if (spec == code).any():
            compiled_energy(self, nw, code, energy_n, grad_pc, count_n, n_threads)
        report_extrapolation(self, nw, count_n, self.on_extrapolation)
        return energy_n, grad_pc

    #: Alias of ``on_extrapolation`` (the argument of :func:`read_n2p2`).
    extrapolation = ExtrapolationCounting.on_extrapolation

    @property
    def last_extrapolations(self):
        """The number of (atom, function) values outside ``scaling.data``'s range at the last evaluation."""
        last = self._last_extrapolation
        return 0 if last is None else int(last[1].sum())

    def accumulate(self, nw, energy_n, grad_pc=None, n_threads=None):
        """Add this potential's energies to ``energy_n`` [N] and gradients to ``grad_pc`` [P, 3] (if given)."""
        e, g = self.compute(nw, grad=grad_pc is not None, n_threads=n_threads)
        energy_n += e
        if grad_pc is not None:
            grad_pc += g


def read_n2p2_2g(folder, length_unit=1.0, energy_unit=1.0, extrapolation="warn"):
    """The 2G potential of an n2p2 folder as one :class:`N2p2Potential` per element (by atomic number); the units
    are the sizes of the files' length and energy units in Å and eV.  :func:`miniff.io.read_n2p2` calls it (and
    parses the unit names) for folders without ``nnp_generation 4``."""
    model = parse_n2p2_folder(folder)
    return [N2p2Potential(model, e, length_unit, energy_unit, extrapolation=extrapolation) for e in model.elements]
