"""Ewald families: the Coulomb energy of periodic point charges (real, reciprocal and self parts, and their sum).

With charges ``q`` (e) from ``cell.meta["charges"]`` and ``scale`` = e²/(4 pi eps0) (eV·Å; default
``miniff.units.COULOMB`` = 14.399645), the Ewald energy of a periodic cell is the sum of

- real space (``ewald_real_potential_family``, cutoff ``a``): ``E_i = scale/2 sum_j q_i q_j erfc(eta r_ij) / r_ij``
  over all neighbours (periodic images included) with ``r_ij < a``;
- reciprocal space (``ewald_k_potential_family``): ``E_i = (2 pi scale / V) sum_{k != 0} exp(-k^2/(4 eta^2)) / k^2
  Re(q_i exp(i k.r_i) S(k)*)``, ``S(k) = sum_j q_j exp(i k.r_j)``;
- self and neutralising background (``ewald_self_potential_family``):
  ``E_i = -scale eta / sqrt(pi) q_i^2 - scale pi q_i Q / (2 eta^2 V)``, ``Q = sum_j q_j``;

``ewald_total_potential_family`` is all three in one potential. ``eta`` (1/Å) is the splitting parameter of
``erfc(eta r)``; the total does not depend on it once both sums are converged. ``method="pme"`` computes the
reciprocal sum by smooth particle-mesh Ewald (``ewald_mesh.py``) instead of directly, on the given ``mesh`` or
on the mesh whose estimated error is ``accuracy``; ``method="auto"`` (the default) takes the mesh for large
cells when it is estimated to be cheaper (``miniff.ewald.ewald_method``). The k-vectors are those shorter
than ``k_cut`` (1/Å) when given, else the wrapper's ``reciprocal_grid`` (``NeighborWrapper(...,
reciprocal_cutoff=...)``), else chosen so that the estimated error of the reciprocal sum is ``accuracy`` (eV;
``miniff.ewald``). A charged cell (``Q != 0``) is computed in a uniform neutralising background.

These potentials act on every atom: their tag must be None. They give energies, per-atom energies, forces and
stresses through the usual evaluation path (``nw.total``, ``nw.grad``, ``nw.stress``, ``nw.relax``, the ASE
calculator), and the gradient with respect to the charges (:func:`charge_gradient`).
"""


import numpy as np

import miniff.ewald as E
from miniff._ext.threads import effective_n_threads
from miniff.ewald import ewald_k_cutoff_error, ewald_method, pme_error, pme_mesh
from miniff.potentials import ewald_mesh as M
from miniff.potentials import ewald_terms as T
from miniff.potentials.base import LocalPotential, LocalPotentialFamily, pair_arrays, resolve_n_threads
from miniff.potentials.evaluate import active_potentials
from miniff.units import COULOMB
from miniff.util import positive_number

__all__ = [
    "EwaldPotential",
    "ewald_real_potential_family",
    "ewald_k_potential_family",
    "ewald_self_potential_family",
    "ewald_total_potential_family",
    "charge_gradient",
    "DEFAULT_ACCURACY",
]

#: Default estimated error (eV) of an automatically chosen reciprocal sum.
DEFAULT_ACCURACY = 1e-7

_POSITIVE = (0, None, True, False)
_ANY = (None, None)


#: Methods of the reciprocal sum: chosen by size (:func:`miniff.ewald.ewald_method`), the direct sum over
#: k-vectors, or smooth particle-mesh Ewald.
METHODS = ("auto", "ewald", "pme")


def _check_mesh_parameters(parameters):
    """Validate ``method``, ``mesh`` and ``order`` in place (those present)."""
    if "method" in parameters and parameters["method"] not in METHODS:
        raise ValueError(f"Parameter 'method' must be one of {METHODS}, got {parameters['method']!r}")
    if "order" in parameters:
        order = parameters["order"]
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or int(order) not in M.ORDERS:
            raise ValueError(f"Parameter 'order' (B-spline order of the mesh) must be one of {M.ORDERS}, got {order!r}")
        parameters["order"] = int(order)
    if parameters.get("mesh") is not None:
        mesh = np.asarray(parameters["mesh"])
        if mesh.ndim == 0:
            mesh = np.repeat(mesh, 3)
        order = parameters.get("order", 6)
        if mesh.shape != (3,) or mesh.dtype.kind not in "iu" or np.any(mesh < order):
            raise ValueError(f"Parameter 'mesh' must be None, an int or three ints, each >= the spline order {order}; "
                             f"got {parameters['mesh']!r}")
        parameters["mesh"] = [int(v) for v in mesh]


class EwaldPotential(LocalPotential):
    """A part (or all) of the Ewald sum; which parts is set by the family (``family.parts``).

    Besides Contract 3 (``accumulate`` adds per-atom energies of every part and the per-pair gradients of the
    real-space part), it has :meth:`long_range_terms` (atom gradients and virials of the parts that are not
    pair sums, used by ``miniff.potentials.evaluate``) and :meth:`charge_gradient`.
    """

    needs_charges = True
    #: whether charges depend on positions (then ``accumulate`` also wants dE/dq from the reciprocal pass)
    chain_rule = False

    def __init__(self, parameters, cutoff, kernels=None, family=None, tag=None, additional_inputs=None):
        if tag is not None:
            raise ValueError(f"Ewald terms act on every atom: tag must be None, got {tag!r}")
        parameters = dict(parameters)
        for name in ("k_cut", "accuracy"):
            if name in parameters:
                parameters[name] = positive_number(name, parameters[name], allow_none=True)
        _check_mesh_parameters(parameters)
        super().__init__(parameters, cutoff, kernels=kernels, family=family, tag=None,
                         additional_inputs=additional_inputs)

    def copy(self, tag=None):
        """A copy (the tag stays None)."""
        if tag is not None:
            raise ValueError(f"Ewald terms act on every atom: tag must be None, got {tag!r}")
        return super().copy()

    @property
    def parts(self):
        """The parts of the Ewald sum this potential computes (a subset of ``("real", "k", "self")``)."""
        return self.family.parts

    def _scale(self):
        return float(self.parameters.get("scale", COULOMB))

    def charges(self, nw, n_threads=None):
        """The charges ``[N]`` (e) this potential uses: ``nw.meta["charges"]`` (checked)."""
        return T.charges_of(nw)

    def _check(self, nw, n_threads=None):
        q = self.charges(nw, n_threads=n_threads)
        if "k" in self.parts or "self" in self.parts:
            T.check_periodic(nw, f"the Ewald term {self.family.tag!r}")
        if "real" in self.parts:
            T.check_images(nw, float(self.parameters["a"]))
        return q

    def _grid(self, nw, q):
        p = self.parameters
        accuracy = p.get("accuracy") or DEFAULT_ACCURACY
        return T.k_vectors(nw, float(p["eta"]), q, self._scale(), k_cut=p.get("k_cut"), accuracy=accuracy)[0]

    def method(self, nw):
        """The reciprocal-space method used for wrapper ``nw``: ``"ewald"`` or ``"pme"`` (``method="auto"``
        decides by :func:`miniff.ewald.ewald_method`: a ``k_cut`` or a wrapper's reciprocal grid mean the direct
        sum, a ``mesh`` the particle mesh, otherwise the size of the cell and the estimated costs of both at the
        potential's ``accuracy``)."""
        p = self.parameters
        method = p.get("method", "ewald")
        if method != "auto":
            return method
        k_cut = p.get("k_cut")
        if k_cut is None and getattr(nw, "reciprocal_grid", None) is not None:
            k_cut = nw.reciprocal_cutoff
        n = int(nw.size)
        if k_cut is not None or p.get("mesh") is not None or n < E.PME_MIN_ATOMS:
            return ewald_method(n, k_cut=k_cut, mesh=p.get("mesh"))
        q = self.charges(nw)
        direct_cut = T.reciprocal_cutoff(nw, float(p["eta"]), q, self._scale(), None,
                                         p.get("accuracy") or DEFAULT_ACCURACY)[0]
        try:
            points = int(np.prod(self.mesh(nw, q)))
        except ValueError:   # the mesh cannot reach the accuracy: the direct sum
            return "ewald"
        volume = abs(float(np.linalg.det(np.asarray(nw.vectors, dtype=float))))
        return ewald_method(n, n_k=E.k_vector_count(direct_cut, volume), mesh_points=points)

    def mesh(self, nw=None, q=None):
        """Mesh points per axis ``[3]`` of the particle-mesh method: the ``mesh`` parameter, or else the smallest
        mesh whose estimated error (:func:`miniff.ewald.pme_error`) is the potential's ``accuracy`` (eV, default
        :data:`DEFAULT_ACCURACY`) for wrapper ``nw`` and charges ``q`` (e; default the wrapper's)."""
        mesh = self.parameters.get("mesh")
        if mesh is not None:
            return np.asarray(mesh, dtype=np.int64)
        if nw is None:
            raise ValueError("nw: the mesh follows from the accuracy, the cell and the charges: pass the wrapper")
        q = self.charges(nw) if q is None else q
        p = self.parameters
        vectors = np.asarray(nw.vectors, dtype=float)
        key = (vectors.tobytes(), float(q @ q), float(p["eta"]), p.get("accuracy"), p["order"], self._scale())
        cached = getattr(nw, "_ewald_mesh", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        mesh = pme_mesh(float(p["eta"]), vectors, float(q @ q), abs(self._scale()),
                        eps=p.get("accuracy") or DEFAULT_ACCURACY, order=p["order"], max_points=M.MAX_MESH_POINTS)
        try:
            nw._ewald_mesh = (key, mesh)
        except AttributeError:
            pass
        return mesh

    def reciprocal_plan(self, nw):
        """How the reciprocal sum is computed for wrapper ``nw``, and its estimated error.

        Returns
        -------
        dict
            ``method`` (``"ewald"`` or ``"pme"``); for ``"ewald"``: ``k_cut`` (1/Å) and ``n_k`` (k-vectors,
            half grid); for ``"pme"``: ``mesh`` (points per axis) and ``order``; ``estimated_error`` (eV, the
            estimate of :mod:`miniff.ewald` for the reciprocal part).
        """
        if "k" not in self.parts:
            raise ValueError(f"the Ewald term {self.family.tag!r} has no reciprocal-space part")
        q = self._check(nw)
        p = self.parameters
        eta, scale = float(p["eta"]), abs(self._scale())
        vectors = np.asarray(nw.vectors, dtype=float)
        volume = abs(float(np.linalg.det(vectors)))
        method = self.method(nw)
        if method == "pme":
            mesh = self.mesh(nw, q)
            return {"method": "pme", "mesh": mesh.tolist(), "order": p["order"],
                    "estimated_error": pme_error(mesh, p["order"], eta, vectors, float(q @ q), scale)}
        grid, k_cut = T.k_vectors(nw, eta, q, self._scale(), k_cut=p.get("k_cut"),
                                  accuracy=p.get("accuracy") or DEFAULT_ACCURACY)
        error = ewald_k_cutoff_error(k_cut, eta, volume, float(q @ q), scale) if k_cut > 0 else 0.0
        return {"method": "ewald", "k_cut": float(k_cut), "n_k": int(len(grid.k_kc)), "estimated_error": error}

    def _long_range(self, nw, q, grad, cgrad, virial, n_threads):
        """The k-space and self parts (``LongRange``), cached on the wrapper (per potential) for one set of
        positions, charges, cell and parameters."""
        key = (id(self), np.asarray(nw.cartesian_row, dtype=float).tobytes(), q.tobytes(),
               np.asarray(nw.vectors, dtype=float).tobytes(),
               tuple(sorted((k, repr(v)) for k, v in self.parameters.items())))
        caches = getattr(nw, "_ewald_long_range", None)
        cache = caches.get(id(self)) if isinstance(caches, dict) else None
        have = None
        if cache is not None and cache[0] == key:
            have = cache[1]
            missing = {"grad": grad and have.grad_nc is None, "cgrad": cgrad and have.cgrad_n is None,
                       "virial": virial and have.virial_n is None}
            if not any(missing.values()):
                return have
            grad, cgrad, virial = missing["grad"], missing["cgrad"], missing["virial"]
        eta, scale = float(self.parameters["eta"]), self._scale()
        volume = abs(float(np.linalg.det(np.asarray(nw.vectors, dtype=float))))
        n = len(q)
        energy_n = np.zeros(n)
        grad_nc = np.zeros((n, 3)) if grad else None
        cgrad_n = np.zeros(n) if cgrad else None
        virial_n = np.zeros((n, 3, 3)) if virial else None
        terms = []
        s_k = None
        if "k" in self.parts and self.method(nw) == "pme":
            terms.append(M.reciprocal_mesh(q, np.asarray(nw.cartesian_row, dtype=float), nw.vectors, eta, scale,
                                           self.mesh(nw, q), self.parameters["order"], grad, cgrad, virial,
                                           n_threads))
        elif "k" in self.parts:
            k_part = T.reciprocal_space(q, np.asarray(nw.cartesian_row, dtype=float), volume, self._grid(nw, q),
                                        eta, scale, grad, cgrad, virial, n_threads,
                                        s_k=None if have is None else have.s_k)
            s_k = k_part.s_k
            terms.append(k_part)
        if "self" in self.parts:
            terms.append(T.self_terms(q, eta, volume, scale, cgrad, virial))
        for t in terms:
            energy_n += t.energy_n
            for total, part in ((grad_nc, t.grad_nc), (cgrad_n, t.cgrad_n), (virial_n, t.virial_n)):
                if total is not None and part is not None:
                    total += part
        if have is not None:  # keep what was there, add what was missing
            grad_nc = have.grad_nc if grad_nc is None else grad_nc
            cgrad_n = have.cgrad_n if cgrad_n is None else cgrad_n
            virial_n = have.virial_n if virial_n is None else virial_n
            energy_n = have.energy_n
        result = T.LongRange(energy_n, grad_nc, cgrad_n, virial_n, s_k)
        if not isinstance(caches, dict) or len(caches) > 8:
            caches = {}
        caches[id(self)] = (key, result)
        try:
            nw._ewald_long_range = caches
        except AttributeError:
            pass
        return result

    def accumulate(self, nw, energy_n, grad_pc=None, n_threads=None):
        """Add per-atom energies (eV) of every part and per-pair gradients (eV/Å) of the real-space part.

        The reciprocal-space results are kept on the wrapper, so :meth:`long_range_terms` called before or after
        reuses the same pass (asking it first for everything needed avoids a second pass over the atoms).
        """
        n_threads = resolve_n_threads(nw, n_threads)
        q = self._check(nw, n_threads)
        if "real" in self.parts:
            arrays = pair_arrays(nw, self.cutoff)
            T.real_space(q, float(self.parameters["eta"]), float(self.parameters["a"]), self._scale(), arrays,
                         grad_pc, False, n_threads, energy_n=energy_n)
        if "k" in self.parts or "self" in self.parts:
            # energies only (the evaluation asks long_range_terms for gradients and virials, best before this)
            lr = self._long_range(nw, q, False, grad_pc is not None and self.chain_rule, False, n_threads)
            energy_n += lr.energy_n

    def long_range_terms(self, nw, grad=True, virial=False, n_threads=None):
        """Atom gradients and virials of the parts that are not sums over pairs (reciprocal, background).

        Returns
        -------
        (grad_nc [N, 3] eV/Å or None, virial_n [N, 3, 3] eV or None)
            None for what was not asked for or when this potential has no such parts.
        """
        if "k" not in self.parts and "self" not in self.parts:
            return None, None
        n_threads = resolve_n_threads(nw, n_threads)
        q = self._check(nw, n_threads)
        lr = self._long_range(nw, q, grad, False, virial, n_threads)
        return (lr.grad_nc if grad else None), (lr.virial_n if virial else None)

    def list_free_terms(self, nw, grad=True, virial=False, n_threads=None):
        """Energies, gradient and virials of every part without a pair list (the real-space part summed during
        the cell-list walk over the half stencil, ``ewald_terms.real_space_search``), for an evaluation of a
        wrapper that holds no list for its positions (``miniff.potentials.evaluate``).

        Returns
        -------
        (energy_n [N] eV, grad_nc [N, 3] eV/Å or None, virial_n [N, 3, 3] eV or None)
        """
        if n_threads is None:
            n_threads = getattr(nw, "n_threads", None)
        q = self._check(nw, n_threads)
        n = len(q)
        energy_n = np.zeros(n)
        grad_nc = np.zeros((n, 3)) if grad else None
        virial_n = np.zeros((n, 3, 3)) if virial else None
        parts = []
        if "real" in self.parts:
            p = self.parameters
            parts.append(T.real_space_search(nw, q, float(p["eta"]), float(p["a"]), self._scale(), grad, virial,
                                             False, n_threads))
        if "k" in self.parts or "self" in self.parts:
            parts.append(self._long_range(nw, q, grad, False, virial, effective_n_threads(n_threads)))
        for part in parts:
            energy_n += part.energy_n
            if grad:
                grad_nc += part.grad_nc if part.grad_nc is not None else 0.0
            if virial:
                virial_n += part.virial_n if part.virial_n is not None else 0.0
        return energy_n, grad_nc, virial_n

    def charge_gradient(self, nw, n_threads=None):
        """dE_total/dq_i of this potential, ``[N]`` eV/e."""
        n_threads = resolve_n_threads(nw, n_threads)
        q = self._check(nw, n_threads)
        out = np.zeros(len(q))
        if "real" in self.parts:
            _, cg = T.real_space(q, float(self.parameters["eta"]), float(self.parameters["a"]), self._scale(),
                                 pair_arrays(nw, self.cutoff), None, True, n_threads)
            out += cg
        if "k" in self.parts or "self" in self.parts:
            out += self._long_range(nw, q, False, True, False, n_threads).cgrad_n
        return out


class EwaldFamily(LocalPotentialFamily):
    """A family of :class:`EwaldPotential` computing ``parts`` of the Ewald sum."""

    def __init__(self, parts, **kwargs):
        self.parts = tuple(parts)
        kwargs.setdefault("proto", EwaldPotential)
        kwargs.setdefault("coordination", 1)
        kwargs.setdefault("additional_inputs", ("charges",))
        super().__init__(**kwargs)


_SCALE_DOC = "scale = e^2/(4 pi eps0) in eV Å (default 14.399645)"

#: Real-space part (tag None): ``E_i = scale/2 sum_j q_i q_j erfc(eta r_ij) / r_ij`` over neighbours with
#: ``r_ij < a`` (Å, also the cutoff); ``eta`` 1/Å; ``scale`` eV·Å. Charges from ``meta["charges"]`` (e).
ewald_real_potential_family = EwaldFamily(
    ("real",),
    parameters={"a": _POSITIVE, "eta": _POSITIVE, "scale": _ANY},
    parameter_defaults={"scale": COULOMB},
    cutoff="a",
    tag="Ewald-real",
    doc="scale q_i q_j erfc(eta r) / (2 r); " + _SCALE_DOC,
)

#: Reciprocal-space part (tag None): ``E_i = (2 pi scale / V) sum_{k != 0} exp(-k^2/(4 eta^2)) / k^2
#: Re(q_i exp(i k.r_i) S(k)*)``; k-vectors shorter than ``k_cut`` (1/Å), or the wrapper's ``reciprocal_grid``,
#: or automatic for an estimated error ``accuracy`` (eV, default 1e-7). Needs a 3-D periodic cell.
#: ``method="pme"``: smooth particle-mesh Ewald on a ``mesh`` (points per axis; default: the mesh whose
#: estimated error is ``accuracy``, ``miniff.ewald.pme_mesh``) with B-splines of ``order`` (even, default 6).
#: ``method="auto"`` (default): the direct sum, or the mesh for large cells where it is cheaper
#: (``miniff.ewald.ewald_method``).
ewald_k_potential_family = EwaldFamily(
    ("k",),
    parameters={"eta": _POSITIVE, "scale": _ANY, "k_cut": None, "accuracy": None, "method": None, "mesh": None,
                "order": None},
    parameter_defaults={"scale": COULOMB, "k_cut": None, "accuracy": None, "method": "auto", "mesh": None,
                        "order": 6},
    cutoff=0,
    tag="Ewald-k",
    doc="(2 pi scale / V) sum_k exp(-k^2 / (4 eta^2)) / k^2 Re(q_i e^{ik.r_i} S(k)*); " + _SCALE_DOC,
)

#: Self and background part (tag None): ``E_i = -scale eta / sqrt(pi) q_i^2 - scale pi q_i Q / (2 eta^2 V)``,
#: ``Q = sum q`` (the second term is the uniform neutralising background of a charged cell).
ewald_self_potential_family = EwaldFamily(
    ("self",),
    parameters={"eta": _POSITIVE, "scale": _ANY},
    parameter_defaults={"scale": COULOMB},
    cutoff=0,
    tag="Ewald-self",
    doc="-scale (eta / sqrt(pi) q_i + pi / (2 eta^2 V) sum_j q_j) q_i; " + _SCALE_DOC,
)

#: The whole Ewald energy (tag None): real (cutoff ``a``) + reciprocal + self + background.
ewald_total_potential_family = EwaldFamily(
    ("real", "k", "self"),
    parameters={"a": _POSITIVE, "eta": _POSITIVE, "scale": _ANY, "k_cut": None, "accuracy": None, "method": None,
                "mesh": None, "order": None},
    parameter_defaults={"scale": COULOMB, "k_cut": None, "accuracy": None, "method": "auto", "mesh": None,
                        "order": 6},
    cutoff="a",
    tag="Ewald-total",
    doc="real + k + self (+ background) Ewald sums; " + _SCALE_DOC,
)


def charge_gradient(nw, potentials, ignore_missing_species=False, n_threads=None):
    """Gradient of the total energy with respect to the atomic charges, ``[N]`` eV/e.

    Parameters
    ----------
    nw : NeighborWrapper
        With distances computed and ``meta["charges"]``.
    potentials : LocalPotential or list of LocalPotential
        Potentials without a ``charge_gradient`` method (charge-independent ones) contribute zero.

    Returns
    -------
    ndarray of shape (n_atoms,), eV/e
    """
    potentials, _, active = active_potentials(nw, potentials, ignore_missing_species)
    out = np.zeros(int(nw.size))
    for k in active:
        method = getattr(potentials[k], "charge_gradient", None)
        if callable(method):
            out += method(nw, n_threads=n_threads)
    return out
