"""4G-HDNNPs of n2p2 evaluated in miniff: electronegativity networks, charge equilibration, short-range networks.

For a structure (files' units; Ko, Finkler, Goedecker and Behler, Nat. Commun. 12, 398 (2021)):

1. the symmetry functions ``G_i`` of every atom (as for 2G potentials, :mod:`miniff.io.n2p2_model`), scaled by
   ``scaling.data``, give electronegativities ``chi_i = NN_e(G_i)`` (``weightse.NNN.data``);
2. the charges ``Q`` minimise the charge-equilibration energy of Gaussian charges of widths ``sigma_e``
   (``fixed_gausswidth``) with hardnesses ``J_e`` (``hardness.NNN.data``) at the structure's total charge
   (:class:`miniff.potentials.gaussian_qeq.GaussianQeq`: all pairs of an open structure, an Ewald sum in a
   periodic one with n2p2's parameters, :func:`miniff.io.n2p2_4g_files.ewald_split`);
3. the short-range energy ``E_i = NN_s(G_i, Q_i)`` (``weights.NNN.data``, the charge the unscaled last input)
   plus ``atom_energy``;
4. the total energy ``E = sum_i E_i + E_elec(Q)``, the electrostatic energy of the Gaussian charges screened by
   ``screen_electrostatics``; forces are ``-dE/dr`` including the charges' response (one adjoint solve).

Energies are reported per atom with ``E_elec`` split as ``Q_i (B Q)_i / 2``.  The stress is the derivative at
fixed Ewald parameters (n2p2 chooses them from the volume).
"""

import dataclasses
import os
import weakref

import numpy as np

from miniff.io.n2p2_4g_files import SCREENING_CORES, ewald_split, generation4_settings, read_connections, read_hardness
from miniff.io.n2p2_compiled import atom_batches, contract_batch, evaluate_batch
from miniff.io.n2p2_files import parse_n2p2_folder
from miniff.io.n2p2_functions import cutoff_function, network_outputs
from miniff.io.n2p2_model import N2p2Potential
from miniff.potentials.base import LocalPotential, resolve_n_threads
from miniff.potentials.extrapolation import (
    ExtrapolationCounting,
    extrapolation_counts,
    report_extrapolation,
)
from miniff.potentials.gaussian_qeq import GaussianQeq

__all__ = ["N2p2Potential4G", "read_n2p2_4g"]


class N2p2Potential4G(ExtrapolationCounting, LocalPotential):
    """A whole 4G-HDNNP of n2p2 (every element; tag None), made by :func:`miniff.io.read_n2p2`.

    Energies in eV, gradients in eV/Å, stresses through the usual evaluation path; the charges of the last
    evaluation of a wrapper by :meth:`charges`.  The total charge of a structure is ``nw.meta["total_charge"]``
    (e, default 0).  Extrapolation (a symmetry function outside ``scaling.data``) is counted and reported as for
    2G potentials (``on_extrapolation``).
    """

    needs_charges = False
    #: the charges are computed (``charges(nw)``; the ASE calculator reports them as ``results["charges"]`` and
    #: takes the total charge from ``atoms.get_initial_charges()``)
    equilibrates_charges = True

    def __init__(self, model, settings, networks, length_unit, energy_unit, extrapolation="warn"):
        self.model, self.settings = model, settings
        self.units = (float(length_unit), float(energy_unit))
        #: per element (by atomic number): descriptors + electronegativity network (an N2p2Potential in files'
        #: units whose network is NN_e), the short-range network, hardness, Gaussian width, energy offset
        self.elements = []
        elec_model = dataclasses.replace(model, activations=list(settings.activations))
        for element, (chi_net, short_net, hardness) in zip(model.elements, networks, strict=True):
            chi_element = dataclasses.replace(element, weights=chi_net[0], biases=chi_net[1], atom_energy=0.0)
            self.elements.append({
                "symbol": element.symbol,
                "descriptors": N2p2Potential(elec_model, chi_element, length_unit, 1.0, extrapolation="ignore"),
                "short": ([np.array(w, dtype=float) for w in short_net[0]],
                          [np.array(b, dtype=float) for b in short_net[1]]),
                "hardness": float(hardness), "sigma": float(settings.sigma[element.symbol]),
                "offset": float(element.atom_energy),
            })
        cutoff = max(e["descriptors"].cutoff for e in self.elements)
        if settings.screening is not None:
            cutoff = max(cutoff, settings.screening[1] * self.units[0])
        super().__init__({"model": {"elements": [e.symbol for e in model.elements]}}, cutoff, tag=None)
        self.on_extrapolation = extrapolation
        self.self_image_screening = "once"
        self._cache = None

    def __repr__(self):
        return f"<N2p2Potential4G elements={[e['symbol'] for e in self.elements]} cutoff={self.cutoff:g}>"

    @property
    def coordination(self):
        return 1

    def species_codes(self, nw):
        """No species codes: this potential acts on every atom (every species must be an element of the model)."""
        return ()

    extrapolation = ExtrapolationCounting.on_extrapolation

    @property
    def self_image_screening(self):
        """How the screening terms of an atom with its own periodic images (cells with a lattice vector shorter
        than the screening radius) count: ``"once"`` (default: every image pair once, as in the unscreened sum)
        or ``"n2p2"`` (twice, as n2p2 does; to reproduce its numbers)."""
        return self._self_image_screening

    @self_image_screening.setter
    def self_image_screening(self, value):
        if value not in ("once", "n2p2"):
            raise ValueError(f"self_image_screening must be 'once' or 'n2p2', got {value!r}")
        self._self_image_screening = value
        self._cache = None

    # ------------------------------------------------------------------ one evaluation
    def _element_of_atoms(self, nw):
        """``[N]`` element index (in ``self.elements``) of every atom; ValueError naming a foreign species."""
        index = {e["symbol"]: k for k, e in enumerate(self.elements)}
        bad = [str(s) for s in nw.species if str(s) not in index]
        if bad:
            raise ValueError(f"the 4G-HDNNP has the elements {list(index)}; the structure also has {bad}")
        lookup = np.array([index[str(s)] for s in nw.species], dtype=np.int64)
        return lookup[np.asarray(nw.spec_encoded_row)]

    def _qeq(self, nw, element_n):
        """The :class:`GaussianQeq` of the structure (files' units)."""
        length, _ = self.units
        s = self.settings
        positions = np.asarray(nw.cartesian_row, dtype=float) / length
        vectors = np.asarray(nw.vectors, dtype=float) / length
        pbc = np.asarray(getattr(nw, "pbc", (True, True, True)), dtype=bool)
        if pbc.any() and not pbc.all():
            raise ValueError(f"4G-HDNNPs need a structure periodic along all three axes or along none, got pbc="
                             f"{pbc.tolist()}")
        sigma = np.array([e["sigma"] for e in self.elements])
        hardness = np.array([e["hardness"] for e in self.elements])
        ewald = None
        if pbc.all():
            volume = abs(float(np.linalg.det(vectors)))
            ewald = ewald_split(s, volume, len(positions), float(sigma.max()))
        screening, radius = None, 0.0
        if s.screening is not None:
            inner, radius, core = s.screening
            kind = SCREENING_CORES[core]

            def screening(r):
                f, df = cutoff_function(r, radius, kind, inner / radius)
                return 1.0 - f, -df

        return GaussianQeq(positions, vectors, sigma[element_n], hardness[element_n], 1.0 / s.four_pi_epsilon,
                           ewald=ewald, screening=screening, screen_radius=radius,
                           self_image_screening=2.0 if self.self_image_screening == "n2p2" else 1.0)

    def _state(self, nw, grad, virial, n_threads=None):
        """Everything of one evaluation, cached for the wrapper's positions, cell and total charge."""
        total_charge = (getattr(nw, "meta", None) or {}).get("total_charge", 0.0)
        try:
            total_charge = float(0.0 if total_charge is None else total_charge)
        except (TypeError, ValueError):
            raise ValueError(f"meta['total_charge'] must be a number (e), got {total_charge!r}") from None
        if not np.isfinite(total_charge):
            raise ValueError(f"meta['total_charge'] must be finite, got {total_charge}")
        # the pair list by weak reference: a cached result does not keep a dead list's memory block alive
        key = (id(nw), weakref.ref(nw.pairs), np.asarray(nw.cartesian_row, dtype=float).tobytes(),
               np.asarray(nw.vectors, dtype=float).tobytes(), total_charge)
        if self._cache is not None and self._cache[0][0] == key[0] and self._cache[0][1]() is nw.pairs \
                and self._cache[0][2:] == key[2:]:
            state = self._cache[1]
            if (not grad or state["grad_pc"] is not None) and (not virial or state["virial_n"] is not None):
                return state
        state = self._evaluate(nw, total_charge, grad, virial, resolve_n_threads(nw, n_threads))
        self._cache = (key, state)
        return state

    def _evaluate(self, nw, total_charge, grad, virial, n_threads):
        length, energy = self.units
        element_n = self._element_of_atoms(nw)
        n = len(element_n)
        count_n = np.zeros(n, dtype=np.int64)
        chi_n = np.zeros(n)
        per_element = []
        kept = {}
        for k, e in enumerate(self.elements):
            atoms = np.flatnonzero(element_n == k)
            if not len(atoms):
                per_element.append(None)
                continue
            pot = e["descriptors"]
            batches = atom_batches(pot, nw, nw.species_lookup[e["symbol"]])
            keep = grad and len(batches) == 1  # one batch: keep its Jacobian for the gradient pass
            g = np.zeros((n, len(pot._spec["functions"]["rc"])))
            for batch in batches:
                g[batch], jac, cptr = evaluate_batch(pot, nw, batch, keep, n_threads)
                if keep:
                    kept[k] = (jac, cptr)
            g = g[atoms]
            count_n[atoms] = extrapolation_counts(pot.descriptor_range, g, np.ones(len(atoms), dtype=bool))
            ref, factor, offset = pot._spec["scaling"]
            x = offset + factor * (g - ref)
            chi, dchi = network_outputs(pot._spec["weights"], pot._spec["biases"], pot._spec["activations"], x, grad)
            chi_n[atoms] = chi
            per_element.append((atoms, x, dchi, factor, batches))
        report_extrapolation(self, nw, count_n, self.on_extrapolation)
        qeq = self._qeq(nw, element_n)
        q_n = qeq.solve(chi_n, total_charge)
        if not np.all(np.isfinite(q_n)):
            raise ValueError("the charge equilibration of the 4G-HDNNP gave NaN or inf charges")
        conv_energy, conv_charge, mean_energy = self.model.conv_energy, self.model.conv_charge, self.model.mean_energy
        short_n = np.zeros(n)
        de_dq = np.zeros(n)
        de_dx = {}
        for k, item in enumerate(per_element):
            if item is None:
                continue
            atoms, x = item[:2]
            weights, biases = self.elements[k]["short"]
            inputs = np.concatenate([x, q_n[atoms, None] * conv_charge], axis=1)
            out, d_in = network_outputs(weights, biases, self.model.activations, inputs, grad)
            short_n[atoms] = out / conv_energy + mean_energy + self.elements[k]["offset"]
            if grad:
                de_dq[atoms] = d_in[:, -1] * (conv_charge / conv_energy)
                de_dx[k] = d_in[:, :-1] / conv_energy
        elec_n, de_elec_dq = qeq.electrostatic_energy(q_n)
        state = {"energy_n": (short_n + elec_n) * energy, "charges": q_n, "electrostatic": float(elec_n.sum()) * energy,
                 "grad_pc": None, "grad_nc": None, "virial_n": None}
        if not grad and not virial:
            return state
        lam_n = qeq.adjoint(de_dq + de_elec_dq)
        grad_pc = np.zeros((nw.pairs.n_pairs, 3))
        for k, item in enumerate(per_element):
            if item is None:
                continue
            atoms, _, dchi, factor, batches = item
            pot = self.elements[k]["descriptors"]
            dedg = np.zeros((n, len(factor)))
            dedg[atoms] = (de_dx[k] + lam_n[atoms, None] * dchi) * factor
            for batch in batches:
                jac, cptr = kept.pop(k) if k in kept else evaluate_batch(pot, nw, batch, True, n_threads)[1:]
                contract_batch(pot, nw, batch, cptr, dedg[batch], jac, energy / length, grad_pc, n_threads)
        grad_nc, virial_n = qeq.pair_gradient(q_n, lam_n, virial=True, n_threads=n_threads)
        state.update(grad_pc=grad_pc, grad_nc=grad_nc * (energy / length), virial_n=virial_n * energy)
        return state

    # ------------------------------------------------------------------ Contract 3
    def compute(self, nw, grad=False, n_threads=None):
        """Per-atom energies ``[N]`` (eV) and the per-pair gradients ``[P, 3]`` (eV/Å) of the symmetry functions;
        the electrostatic pair and reciprocal terms come from :meth:`long_range_terms`."""
        state = self._state(nw, grad, False, n_threads)
        return state["energy_n"].copy(), (state["grad_pc"].copy() if grad else None)

    def accumulate(self, nw, energy_n, grad_pc=None, n_threads=None):
        """Add this potential's energies to ``energy_n`` [N] and per-pair gradients to ``grad_pc`` [P, 3]."""
        e, g = self.compute(nw, grad=grad_pc is not None, n_threads=n_threads)
        energy_n += e
        if grad_pc is not None:
            grad_pc += g

    def long_range_terms(self, nw, grad=True, virial=False, n_threads=None):
        """Atom gradients ``[N, 3]`` (eV/Å) and per-atom virials ``[N, 3, 3]`` (eV) of the electrostatic terms
        (pairs of Gaussian charges, reciprocal sum), including the response of the charges."""
        if not grad and not virial:
            return None, None
        state = self._state(nw, True, True, n_threads)
        return (state["grad_nc"].copy() if grad else None), (state["virial_n"].copy() if virial else None)

    def charges(self, nw, n_threads=None):
        """The equilibrated charges ``[N]`` (e) of the structure of ``nw``."""
        return self._state(nw, False, False, n_threads)["charges"].copy()

    def electrostatic_energy(self, nw):
        """The electrostatic part of the total energy (eV)."""
        return self._state(nw, False, False)["electrostatic"]


def read_n2p2_4g(folder, length_unit=1.0, energy_unit=1.0, extrapolation="warn"):
    """The 4G-HDNNP of an n2p2 folder as a list of one :class:`N2p2Potential4G` (units as sizes in Å and eV);
    :func:`miniff.io.read_n2p2` calls it for folders with ``nnp_generation 4``."""
    model = parse_n2p2_folder(folder, generation=4)
    folder = os.fspath(folder)
    settings = generation4_settings(os.path.join(folder, "input.nn"), model)
    networks = []
    for element in model.elements:
        n_f = len(element.functions)
        chi = read_connections(os.path.join(folder, f"weightse.{element.number:03d}.data"),
                               [n_f] + settings.nodes + [1])
        short = read_connections(os.path.join(folder, f"weights.{element.number:03d}.data"),
                                 [n_f + 1] + model.nodes + [1])
        hardness = read_hardness(os.path.join(folder, f"hardness.{element.number:03d}.data"))
        networks.append((chi, short, hardness))
    return [N2p2Potential4G(model, settings, networks, length_unit, energy_unit, extrapolation=extrapolation)]

