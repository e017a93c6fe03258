"""n2p2 potentials evaluated in miniff: cutoff functions, symmetry functions, scaling and networks (numpy).

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
- compact types (:func:`compact_function`): 20 ``G = sum_j C_r(r_ij)``; 21 ``G = sum_{j<k} C_r(r_ij) C_r(r_ik)
  C_r(r_jk) C_a(theta_ijk)``; 22 the same without ``C_r(r_jk)``; ``C_r`` on ``(r_l, r_c)``, ``C_a`` on the
  closed angle interval, collinear triplets excluded;
- scaling of the network inputs: none ``G``; scale ``S_min + (S_max - S_min)(G - G_min)/(G_max - G_min)``;
  center ``G - G_mean``; scale+center ``S_min + (S_max - S_min)(G - G_mean)/(G_max - G_min)``; sigma
  ``S_min + (S_max - S_min)(G - G_mean)/G_sigma``;
- atomic energy (files' energy unit) ``E_i = NN(G_i)/conv_energy + mean_energy + atom_energy``.
"""

import math

import numpy as np

from miniff.io.n2p2_compiled import compiled_descriptors, compiled_energy, compiled_supported
from miniff.io.n2p2_files import ANGULAR_TYPES, COMPACT_TYPES, WEIGHTED_TYPES, parse_n2p2_folder
from miniff.io.n2p2_functions import _compact_closed, compact_function, cutoff_function, network_outputs
from miniff.potentials.base import LocalPotential
from miniff.potentials.extrapolation import (
    ExtrapolationCounting,
    ExtrapolationWarning,
    extrapolation_counts,
    report_extrapolation,
)

__all__ = ["N2p2Potential", "N2p2ExtrapolationWarning", "cutoff_function", "compact_function", "read_n2p2",
           "network_outputs"]

#: n2p2's extrapolation warnings are miniff's (one implementation, ``miniff.potentials.extrapolation``).
N2p2ExtrapolationWarning = ExtrapolationWarning

#: Relative margin of the extrapolation check: values that equal a bound of ``scaling.data`` up to rounding
#: (the structures the ranges were taken from) do not count.
EXTRAPOLATION_TOLERANCE = 1e-10


class N2p2Potential(ExtrapolationCounting, LocalPotential):
    """The atomic network of one element of an n2p2 potential (made by :func:`miniff.io.read_n2p2`).

    Energies in eV and gradients in eV/Å like every miniff potential; the symmetry functions are evaluated
    with numpy over the pair list in the files' units.  Symmetry functions outside the range of
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
        #: Work per chunk of centre atoms (pairs + pairs of pairs), bounding the memory of an evaluation.
        self.max_triplets = 500_000
        #: True: the symmetry functions are evaluated by the compiled core (``miniff.io.n2p2_compiled``; types
        #: 2, 3, 9, 12, 13), False: by numpy (this module; always for the compact types 20-25).
        self.compiled = compiled_supported(table["type"])

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

    # -------------------------------------------------------------- geometry
    def _chunks(self, nw, code):
        """Ranges ``(n0, n1)`` of atom indices, each with at most ``max_triplets`` neighbour pairs of pairs."""
        indptr = np.asarray(nw.pairs.indptr)
        spec = np.asarray(nw.spec_encoded_row)
        m = np.diff(indptr) * (spec == code)
        work = np.cumsum(m * (m - 1) // 2 + m)
        n, n0 = len(spec), 0
        while n0 < n:
            base = work[n0 - 1] if n0 else 0
            n1 = max(int(np.searchsorted(work, base + self.max_triplets, side="right")), n0 + 1)
            yield n0, min(n1, n)
            n0 = n1

    def _geometry(self, nw, code, n0, n1):
        """Pairs of the centre atoms ``n0 <= i < n1`` of this element within the cutoff, in file units, and
        their triplets (``a < b``: pairs of one centre)."""
        length, _ = self._spec["units"]
        pairs = nw.pairs
        spec = np.asarray(nw.spec_encoded_row)
        p0, p1 = int(pairs.indptr[n0]), int(pairs.indptr[n1])
        i_all = np.asarray(pairs.i_p[p0:p1])
        d_all = np.asarray(pairs.d_p[p0:p1])
        keep = np.flatnonzero((spec[i_all] == code) & (d_all < self.cutoff))
        geo = {"p": keep + p0, "i": i_all[keep] - n0, "D": np.asarray(pairs.D_pc[p0:p1])[keep] / length,
               "d": d_all[keep] / length, "sj": spec[np.asarray(pairs.j_p[p0:p1])[keep]]}
        if self._weighted():
            geo["z"] = self._atomic_numbers(nw)
        if np.isin(self._spec["functions"]["type"], ANGULAR_TYPES).any():
            counts = np.bincount(geo["i"], minlength=n1 - n0)[geo["i"]]
            starts = np.flatnonzero(np.r_[True, geo["i"][1:] != geo["i"][:-1]]) if len(keep) else np.zeros(0, int)
            first = np.repeat(starts, np.diff(np.r_[starts, len(keep)]))
            local = np.arange(len(keep)) - first
            n_after = counts - local - 1
            a = np.repeat(np.arange(len(keep)), n_after)
            offsets = np.repeat(np.cumsum(n_after) - n_after, n_after)
            geo["a"], geo["b"] = a, a + 1 + np.arange(len(a)) - offsets
        return geo

    def _codes(self, nw, names):
        return np.array([-2 if s is None else nw.species_lookup.get(s, -3) for s in names])

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

    def _weighted(self):
        return bool(np.isin(self._spec["functions"]["type"], WEIGHTED_TYPES).any())

    # -------------------------------------------------------------- symmetry functions
    def _radial(self, f, geo, codes):
        """Pairs of radial function ``f`` (type 2 or 20): selection, values and d/dr."""
        t = self._spec["functions"]
        kind = t["type"][f]
        species = (geo["sj"] == codes[f]) if kind in (2, 20) else np.ones(len(geo["sj"]), dtype=bool)
        if kind in (20, 23):
            sel = np.flatnonzero(species & (geo["d"] < t["rc"][f]) & (geo["d"] > t["rl"][f]))
            value, dv = compact_function(geo["d"][sel], t["rl"][f], t["rc"][f], t["subtype"][f])
        else:
            sel = np.flatnonzero(species & (geo["d"] < t["rc"][f]))
            r = geo["d"][sel]
            fc, dfc = cutoff_function(r, t["rc"][f], self._spec["cutoff_type"], self._spec["cutoff_alpha"])
            e = np.exp(-t["eta"][f] * (r - t["rs"][f]) ** 2)
            value, dv = e * fc, e * (dfc - 2.0 * t["eta"][f] * (r - t["rs"][f]) * fc)
        if kind in WEIGHTED_TYPES:
            z = geo["z"][geo["sj"][sel]]
            value, dv = value * z, dv * z
        return sel, value, dv

    def _groups(self, nw):
        """Angular functions grouped by (type, neighbour codes, rc): ``{key: [function indices]}``."""
        t = self._spec["functions"]
        c1, c2 = self._codes(nw, t["e1"]), self._codes(nw, t["e2"])
        out = {}
        for f, kind in enumerate(t["type"]):
            if kind in ANGULAR_TYPES:
                key = (int(kind), int(c1[f]), int(c2[f]), float(t["rc"][f]), float(t["rl"][f]))
                out.setdefault(key, []).append(f)
        return out

    def _triplets(self, key, geo):
        """Geometry of the triplets of one group: selection, distances, cosine, cutoff values and slopes."""
        kind, c1, c2, rc, rl = key
        a, b = geo["a"], geo["b"]
        if "dmax" not in geo:  # per chunk: candidate triplets ordered by the species pair of their neighbours
            sa, sb = geo["sj"][a].astype(np.int32), geo["sj"][b].astype(np.int32)
            n_s = int(max(sa.max(initial=0), sb.max(initial=0))) + 1
            code = (np.minimum(sa, sb) * n_s + np.maximum(sa, sb)).astype(np.int16 if n_s < 180 else np.int32)
            geo["order"] = np.argsort(code, kind="stable")  # a radix sort; within a pair, in candidate order
            geo["bounds"] = np.searchsorted(code[geo["order"]], np.arange(n_s * n_s + 1))
            geo["n_s"] = n_s
            da, db = geo["d"][a], geo["d"][b]
            geo["dmax"], geo["dmin"] = np.maximum(da, db), np.minimum(da, db)
        if kind in WEIGHTED_TYPES:
            cand = np.arange(len(a))
        elif min(c1, c2) < 0 or max(c1, c2) >= geo["n_s"]:
            cand = np.zeros(0, dtype=np.int64)  # a neighbour element absent from the structure
        else:
            pair = min(c1, c2) * geo["n_s"] + max(c1, c2)
            cand = geo["order"][geo["bounds"][pair]:geo["bounds"][pair + 1]]
        ok = geo["dmax"][cand] < rc
        if kind in COMPACT_TYPES:
            ok &= geo["dmin"][cand] > rl
        sel = cand[ok]
        u, v = geo["D"][a[sel]], geo["D"][b[sel]]
        rij, rik = geo["d"][a[sel]], geo["d"][b[sel]]
        w = v - u
        rjk = np.sqrt(np.einsum("tc,tc->t", w, w))
        if kind in (3, 13, 21, 24):
            inside = (rjk < rc) & (rjk > rl) if kind in (21, 24) else rjk < rc
            sel, u, v, rij, rik, rjk = sel[inside], u[inside], v[inside], rij[inside], rik[inside], rjk[inside]
        ctype, alpha = self._spec["cutoff_type"], self._spec["cutoff_alpha"]
        tri = {"sel": sel, "u": u, "v": v, "rij": rij, "rik": rik, "rjk": rjk,
               "cos": np.einsum("tc,tc->t", u, v) / (rij * rik)}
        tri["w"] = (geo["z"][geo["sj"][a[sel]]] * geo["z"][geo["sj"][b[sel]]]) if kind in WEIGHTED_TYPES else 1.0
        if kind in COMPACT_TYPES:
            return tri
        tri["fij"], tri["dfij"] = cutoff_function(rij, rc, ctype, alpha)
        tri["fik"], tri["dfik"] = cutoff_function(rik, rc, ctype, alpha)
        if kind in (3, 13):
            tri["fjk"], tri["dfjk"] = cutoff_function(rjk, rc, ctype, alpha)
        else:
            tri["fjk"], tri["dfjk"] = np.ones_like(rjk), np.zeros_like(rjk)
        tri["fc"] = tri["fij"] * tri["fik"] * tri["fjk"]
        return tri

    def _angular(self, f, tri, grad):
        """Per triplet of type 3/9 function ``f``: value and, with ``grad``, d/d(r_ij, r_ik, r_jk, cos)."""
        t = self._spec["functions"]
        kind, eta, rs = t["type"][f], t["eta"][f], t["rs"][f]
        if kind in COMPACT_TYPES:
            return self._compact_angular(f, tri, grad)
        lam, zeta = t["lambda"][f], t["zeta"][f]
        rij, rik, rjk, fc = tri["rij"], tri["rik"], tri["rjk"], tri["fc"]
        expo = (rij - rs) ** 2 + (rik - rs) ** 2 + ((rjk - rs) ** 2 if kind in (3, 13) else 0.0)
        x = np.exp(-eta * expo)
        plam = 1.0 + lam * tri["cos"]
        pos = plam > 0
        pz1 = np.where(pos, np.abs(plam) ** (zeta - 1.0), 0.0)
        norm = 2.0 ** (1.0 - zeta)
        ax = norm * pz1 * np.where(pos, plam, 0.0) * x * tri["w"]  # [Z_j Z_k] 2^(1-zeta) plam^zeta exp(...)
        if not grad:
            return ax * fc, None
        d_rij = ax * (tri["fik"] * tri["fjk"] * tri["dfij"] - 2.0 * eta * (rij - rs) * fc)
        d_rik = ax * (tri["fij"] * tri["fjk"] * tri["dfik"] - 2.0 * eta * (rik - rs) * fc)
        d_rjk = ax * tri["fij"] * tri["fik"] * tri["dfjk"]
        if kind in (3, 13):
            d_rjk = d_rjk - ax * 2.0 * eta * (rjk - rs) * fc
        d_cos = norm * zeta * lam * pz1 * x * fc * tri["w"]
        return ax * fc, (d_rij, d_rik, d_rjk, d_cos)

    def _compact_angular(self, f, tri, grad):
        """Types 21 (22): ``C_r(r_ij) C_r(r_ik) [C_r(r_jk)] C_a(theta_ijk)`` per triplet, and d/d(r_ij, r_ik, r_jk,
        cos)."""
        t = self._spec["functions"]
        rl, rc, sub = t["rl"][f], t["rc"][f], t["subtype"][f]
        cos = tri["cos"]
        left, right = t["al"][f] * np.pi / 180.0, t["ar"][f] * np.pi / 180.0
        if "theta" not in tri:  # shared by the functions of the group (rl and rc are the group's)
            tri["open"] = (cos > -1.0) & (cos < 1.0)
            tri["theta"] = np.arccos(np.clip(cos, -1.0, 1.0))
        theta = tri["theta"]
        use = tri["open"] & (theta >= left) & (theta <= right)
        ang, dang = _compact_closed(theta, left, right, sub.rstrip("a") if sub != "e" else "e")
        ang, dang = np.where(use, ang, 0.0) * tri["w"], np.where(use, dang, 0.0) * tri["w"]
        radial = tri.setdefault("radial", {})
        if sub not in radial:
            cij, dij = compact_function(tri["rij"], rl, rc, sub)
            cik, dik = compact_function(tri["rik"], rl, rc, sub)
            if t["type"][f] in (21, 24):
                cjk, djk = compact_function(tri["rjk"], rl, rc, sub)
            else:
                cjk, djk = np.ones_like(cij), np.zeros_like(cij)
            radial[sub] = (cij, dij, cik, dik, cjk, djk, cij * cik * cjk)
        cij, dij, cik, dik, cjk, djk, rad = radial[sub]
        if not grad:
            return rad * ang, None
        dtheta = -1.0 / np.sqrt(np.where(use, 1.0 - cos * cos, 1.0))
        return rad * ang, (dij * cik * cjk * ang, cij * dik * cjk * ang, cij * cik * djk * ang, rad * dang * dtheta)

    def descriptors(self, nw, code=None):
        """Raw symmetry functions ``[N, F]`` of the atoms of this element (0 for others)."""
        code = self.species_codes(nw)[0] if code is None else code
        if self.compiled:
            return compiled_descriptors(self, nw, code)
        out = np.zeros((len(nw.spec_encoded_row), len(self._spec["functions"]["rc"])))
        for n0, n1 in self._chunks(nw, code):
            out[n0:n1] = self._descriptors(nw, self._geometry(nw, code, n0, n1), n1 - n0)
        return out

    def _descriptors(self, nw, geo, n, triplets=None):
        """Raw symmetry functions ``[n, F]`` of the centres of ``geo`` (rows = ``geo["i"]``); the triplet
        geometry of every group is kept in the dict ``triplets`` if given (for the gradient pass)."""
        t = self._spec["functions"]
        g_nf = np.zeros((n, len(t["rc"])))
        c1 = self._codes(nw, t["e1"])
        for f, kind in enumerate(t["type"]):
            if kind not in ANGULAR_TYPES:
                sel, value, _ = self._radial(f, geo, c1)
                g_nf[:, f] = np.bincount(geo["i"][sel], weights=value, minlength=n)
        for key, functions in self._groups(nw).items():
            tri = self._triplets(key, geo)
            if triplets is not None:
                triplets[key] = tri
            centre = geo["i"][geo["a"][tri["sel"]]]
            for f in functions:
                g_nf[:, f] = np.bincount(centre, weights=self._angular(f, tri, False)[0], minlength=n)
        return g_nf

    # -------------------------------------------------------------- Contract 3
    def compute(self, nw, grad=False, n_threads=None):
        """Per-atom energies ``[N]`` (eV) and per-pair gradients ``[P, 3]`` (eV/Å) (DEVELOPING.md, Contract 3)."""
        (code,) = self.species_codes(nw)
        spec = np.asarray(nw.spec_encoded_row)
        n = len(spec)
        energy_n = np.zeros(n)
        grad_pc = np.zeros((nw.pairs.n_pairs, 3)) if grad else None
        count_n = np.zeros(n, dtype=np.int64)
        if (spec == code).any() and self.compiled:
            compiled_energy(self, nw, code, energy_n, grad_pc, count_n, n_threads)
        elif (spec == code).any():
            for n0, n1 in self._chunks(nw, code):
                self._compute_chunk(nw, code, n0, n1, energy_n, grad_pc, count_n)
        report_extrapolation(self, nw, count_n, self.on_extrapolation)
        return energy_n, grad_pc

    #: Alias of ``on_extrapolation`` (the argument of :func:`read_n2p2`).
    extrapolation = ExtrapolationCounting.on_extrapolation

    @property
    def last_extrapolations(self):
        """The number of (atom, function) values outside ``scaling.data``'s range at the last evaluation."""
        last = self._last_extrapolation
        return 0 if last is None else int(last[1].sum())

    def _compute_chunk(self, nw, code, n0, n1, energy_n, grad_pc, count_n):
        """Energies of the atoms ``n0 <= i < n1`` into ``energy_n``, the gradients of their pairs into
        ``grad_pc`` (if given) and their numbers of extrapolating functions into ``count_n``."""
        p = self._spec
        length, energy = p["units"]
        conv_energy, shift = p["energy"]
        geo = self._geometry(nw, code, n0, n1)
        atoms = np.flatnonzero(np.asarray(nw.spec_encoded_row[n0:n1]) == code)
        if not len(atoms):
            return
        triplets = {} if grad_pc is not None else None
        g = self._descriptors(nw, geo, n1 - n0, triplets)[atoms]
        count_n[n0 + atoms] = extrapolation_counts(self.descriptor_range, g, np.ones(len(atoms), dtype=bool))
        ref, factor, offset = p["scaling"]
        out, d_out = self._network(offset + factor * (g - ref), grad_pc is not None)
        energy_n[n0 + atoms] = (out / conv_energy + shift) * energy
        if grad_pc is None:
            return
        dedg = np.zeros((n1 - n0, g.shape[1]))
        dedg[atoms] = d_out * factor / conv_energy
        grad_pc[geo["p"]] = self._pair_gradients(nw, geo, triplets, dedg) * (energy / length)

    def _pair_gradients(self, nw, geo, triplets, dedg):
        """``[P_kept, 3]`` d E / d D (files' units) of the pairs kept in ``geo`` (one chunk) for per-atom weights
        ``dedg [n, F]`` = d E / d G of the chunk's centre atoms; ``triplets`` from ``_descriptors`` (emptied)."""
        p = self._spec
        n_p = len(geo["p"])
        t = p["functions"]
        c1 = self._codes(nw, t["e1"])
        radial = np.zeros(n_p)  # d E_file / d r_ij per kept pair
        for f, kind in enumerate(t["type"]):
            if kind not in ANGULAR_TYPES:
                sel, _, dv = self._radial(f, geo, c1)
                radial[sel] += dedg[geo["i"][sel], f] * dv
        grad_file = radial[:, None] * geo["D"] / geo["d"][:, None]  # d E_file / d D (file units)
        for key, functions in self._groups(nw).items():
            tri = triplets.pop(key)
            a, b = geo["a"][tri["sel"]], geo["b"][tri["sel"]]
            centre = geo["i"][a]
            s_rij, s_rik, s_rjk, s_cos = (np.zeros(len(a)) for _ in range(4))
            for f in functions:
                w = dedg[centre, f]
                _, (d_rij, d_rik, d_rjk, d_cos) = self._angular(f, tri, True)
                s_rij += w * d_rij
                s_rik += w * d_rik
                s_rjk += w * d_rjk
                s_cos += w * d_cos
            u, v, rij, rik, rjk, cos = (tri[k] for k in ("u", "v", "rij", "rik", "rjk", "cos"))
            uh, vh = u / rij[:, None], v / rik[:, None]
            wjk = (v - u) / np.where(rjk > 0, rjk, 1.0)[:, None]
            gu = s_rij[:, None] * uh - s_rjk[:, None] * wjk + (s_cos / rij)[:, None] * (vh - cos[:, None] * uh)
            gv = s_rik[:, None] * vh + s_rjk[:, None] * wjk + (s_cos / rik)[:, None] * (uh - cos[:, None] * vh)
            for c in range(3):
                grad_file[:, c] += np.bincount(a, weights=gu[:, c], minlength=n_p)
                grad_file[:, c] += np.bincount(b, weights=gv[:, c], minlength=n_p)
        return grad_file

    def accumulate(self, nw, energy_n, grad_pc=None, n_threads=None):
        """Add this potential's energies to ``energy_n`` [N] and gradients to ``grad_pc`` [P, 3] (if given)."""
        e, g = self.compute(nw, grad=grad_pc is not None, n_threads=n_threads)
        energy_n += e
        if grad_pc is not None:
            grad_pc += g


def read_n2p2(folder, length_unit="angstrom", energy_unit="eV", extrapolation="warn"):
    """The potentials of an n2p2 potential folder, one per element, in eV and Å.

    Parameters
    ----------
    folder : str or PathLike
        Holds ``input.nn``, ``scaling.data`` and ``weights.<Z:03d>.data`` (one per element, ``Z`` its atomic
        number).
    length_unit : {"angstrom", "bohr"} or float
        The length unit of the files (a float: its size in Å).
    energy_unit : {"eV", "hartree"} or float
        The energy unit of the files (a float: its size in eV).
    extrapolation : {"warn", "ignore", "raise"}
        What to do when a symmetry function leaves the range of ``scaling.data`` (see :class:`N2p2Potential`).

    Returns
    -------
    list of N2p2Potential
        By atomic number; pass them all to ``NeighborWrapper.total/grad/...`` or the ASE calculator.

    Raises
    ------
    FileNotFoundError
        A missing folder or file (named).
    ValueError
        Unsupported or malformed content, naming the file and line.
    """
    from miniff import units

    length = _unit("length_unit", length_unit, {"angstrom": 1.0, "bohr": units.BOHR})
    energy = _unit("energy_unit", energy_unit, {"ev": 1.0, "hartree": units.HARTREE})
    model = parse_n2p2_folder(folder)
    return [N2p2Potential(model, e, length, energy, extrapolation=extrapolation) for e in model.elements]


def _unit(name, value, known):
    if isinstance(value, str):
        if value.lower() not in known:
            raise ValueError(f"{name} must be one of {sorted(known)} or a positive number, got {value!r}")
        return known[value.lower()]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be one of {sorted(known)} or a positive number, got {value!r}")
    return float(value)
