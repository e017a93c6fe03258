"""Local structural parameters: PyFit-FF's descriptors (Purja Pun & Mishin, Nat. Commun. 10, 2339 (2019)).

For a centre atom i of species ``a``, neighbours j of species ``b`` and k of species ``c`` (tag ``"a-b-c"``)::

    gt_i = sum_j sum_k P_m(cos theta_jik) f(r_ij) f(r_ik)          (ordered pairs, j = k included)
    f(r) = exp(-(r - r0)^2 / sigma^2) / r0 * fc(r)
    fc(r) = (r - a)^4 / (h^4 + (r - a)^4)  for r < a, else 0
    G_i = asinh(gt_i)                                                (or gt_i itself with asinh=0)

``P_m`` is the Legendre polynomial of order ``m``. Counting: every other triplet family sums over ordered pairs
(j, k) with j != k; this one also includes j = k (possible when ``b == c``; that term is ``f(r_ij)^2`` since
``P_m(1) = 1``), so for ``"a-b-b"`` every angle counts twice plus the diagonal, and the double sum is a power
spectrum, ``(4 pi / (2m + 1)) sum_q |sum_j f(r_ij) Y_mq(u_ij)|^2 >= 0``. Atoms of other species than ``a``
get 0.

Parameters and units: ``a`` cutoff (Å), ``h`` width of the cutoff function (Å, default 1), ``r0`` centre and
``sigma`` width of the Gaussian (Å, default ``sigma`` = 1), ``order`` = m (integer, 0 to 8), ``asinh`` 1
(default) or 0. Because of the ``1/r0`` factors ``f`` is in 1/Å and ``gt_i`` in 1/Å² (PyFit-FF's convention);
the asinh is taken of that number. ``fc`` goes to 0 with its first three derivatives at ``r = a``.

The compiled kernel (in ``miniff/_ext/``) evaluates every descriptor of a batch that shares cutoff, range and
tag from angular moments of the neighbours, in time linear in the number of pairs.
"""

import functools

import numpy as np
from numpy.polynomial import legendre

from miniff._ext import kernel_module as _k
from miniff.potentials.backends import _BatchedBackend, monomial_tables
from miniff.potentials.base import LocalPotentialFamily, pair_arrays

__all__ = ["lsp_descriptor_family", "LSP_MAX_ORDER", "LSP_MAX_RADIAL", "legendre_coefficients"]

#: Limits of the compiled LSP kernel (read from the compiled core): Legendre order, distinct radial shells,
#: descriptors per kernel call.
LSP_MAX_ORDER = _k.LIMITS["LSP_MAX_ORDER"]
LSP_MAX_RADIAL = _k.LIMITS["LSP_MAX_RADIAL"]
_MAX_GROUP = _k.LIMITS["MAX_GROUP"]


def legendre_coefficients(order):
    """Coefficients of ``x^n``, n = 0..order, of the Legendre polynomial ``P_order`` (``[order + 1]``)."""
    return _legendre(int(order)).copy()


@functools.lru_cache(maxsize=None)
def _legendre(order):
    return legendre.leg2poly([0] * order + [1])


@functools.lru_cache(maxsize=256)
def _plan(key):
    """Kernel arrays of one chunk, ``key`` = ((r0, sigma, order, asinh, column), ...) (cached: fits call the
    kernel once per structure with the same descriptors)."""
    radial, e_f = {}, []
    for r0, sigma, _, _, _ in key:
        e_f.append(radial.setdefault((r0, sigma), len(radial)))
    lmax = max(k[2] for k in key)
    coef_fn = np.zeros((len(key), lmax + 1))
    for f, k in enumerate(key):
        coef_fn[f, : k[2] + 1] = _legendre(k[2])
    arrays = (np.array([k[0] for k in radial], dtype=np.float64), np.array([k[1] for k in radial], dtype=np.float64),
              coef_fn, np.array(e_f, dtype=np.int32), np.array([k[3] for k in key], dtype=np.int32),
              np.array([k[4] for k in key], dtype=np.int32))
    for a in arrays:  # shared between calls: nobody may change them
        a.flags.writeable = False
    return (*arrays, monomial_tables(lmax))


class LSPBackend(_BatchedBackend):
    """Batches local structural parameters by cutoff, range and tag (chunks of <= 64 descriptors, <= 16
    distinct ``(r0, sigma)``)."""

    def batch_key(self, potential, codes):
        par = potential.parameters
        return ("lsp", float(par["a"]), float(par["h"]), codes)

    def batch(self, items, codes, nw, values_nf, jac_pf3, grad, n_threads):
        """Evaluate ``items`` = [(column, potential)] sharing cutoff, range and tag into the output columns."""
        chunk, radial = [], set()
        for col, p in items:
            key = (float(p.parameters["r0"]), float(p.parameters["sigma"]))
            if len(chunk) == _MAX_GROUP or (key not in radial and len(radial) == LSP_MAX_RADIAL):
                self._run(chunk, codes, nw, values_nf, jac_pf3, grad, n_threads)
                chunk, radial = [], set()
            radial.add(key)
            chunk.append((col, p))
        if chunk:
            self._run(chunk, codes, nw, values_nf, jac_pf3, grad, n_threads)

    def _run(self, chunk, codes, nw, values_nf, jac_pf3, grad, n_threads):
        first = chunk[0][1].parameters
        cutoff, h = float(first["a"]), float(first["h"])
        indptr, j_p, d_p, D_pc, spec_n = pair_arrays(nw, cutoff)
        key = tuple((float(p.parameters["r0"]), float(p.parameters["sigma"]), int(p.parameters["order"]),
                     int(p.parameters["asinh"]), int(col)) for col, p in chunk)
        r0_e, sigma_e, coef_fn, e_f, asinh_f, cols, tables = _plan(key)
        deg, weight, parent, axis, plus, gw = tables
        n_pairs = len(j_p)
        g_pe = np.empty((n_pairs, len(r0_e)))
        dg_pe = np.empty((n_pairs, len(r0_e)))
        u_pc = np.empty((n_pairs, 3))
        _k.batch_lsp_reduce(cutoff, h, r0_e, sigma_e, coef_fn, e_f, asinh_f, cols, deg, weight, parent, axis, plus,
                            gw, indptr, j_p, d_p, D_pc, spec_n, codes[0], codes[1], codes[2], g_pe, dg_pe, u_pc,
                            values_nf, jac_pf3, grad, n_threads)


class LSPFamily(LocalPotentialFamily):
    """The local-structural-parameter family: ``order`` and ``asinh`` must be integers.

    ``G_i = asinh(sum_j sum_k P_order(cos_t) f(r_ij) f(r_ik))`` (or the plain sum with ``asinh=0``),
    ``f(r) = exp(-(r - r0)^2 / sigma^2) / r0 * (r - a)^4 / (h^4 + (r - a)^4)`` for ``r < a``; ordered pairs with
    j = k included (see the module docstring). Lengths in Å; the sum is in 1/Å².
    """

    def screen_parameters(self, **kwargs):
        """Check the parameters as every family does, then that ``order`` and ``asinh`` are integers."""
        if isinstance(kwargs.get("asinh"), (bool, np.bool_)):
            kwargs["asinh"] = int(kwargs["asinh"])
        result = super().screen_parameters(**kwargs)
        for name in ("order", "asinh"):
            if not float(result[name]).is_integer():
                raise ValueError(f"parameter {name!r} of a local structural parameter must be an integer, "
                                 f"got {result[name]!r}")
            result[name] = int(result[name])
        return result


#: Local structural parameters (tag ``"a-b-c"``): ``G_i = asinh(gt_i)`` (or ``gt_i`` with ``asinh=0``),
#: ``gt_i = sum_j sum_k P_order(cos_t) f(r_ij) f(r_ik)`` over ordered neighbour pairs *including j = k*,
#: ``f(r) = exp(-(r - r0)^2 / sigma^2) / r0 * (r - a)^4 / (h^4 + (r - a)^4)`` for ``r < a``. ``a``, ``h``,
#: ``r0``, ``sigma`` in Å, ``order`` 0..8; ``gt_i`` in 1/Å².
lsp_descriptor_family = LSPFamily(
    parameters={
        "a": (0, None, True, False),        # cutoff, Å
        "h": (0, None, True, False),        # cutoff range, Å
        "r0": (0, None, True, False),       # Gaussian centre, Å
        "sigma": (0, None, True, False),    # Gaussian width, Å
        "order": (0, LSP_MAX_ORDER),        # Legendre order (integer)
        "asinh": (0, 1),                    # 1: output asinh(gt); 0: gt
    },
    cutoff="a",
    kernels=LSPBackend(),
    parameter_defaults={"h": 1.0, "sigma": 1.0, "asinh": 1},
    tag="local structural parameter",
    coordination=3,
    doc="asinh(sum_jk P_order(cos_t) f(r1) f(r2)), f(r) = exp(-(r - r0)^2 / sigma^2) / r0 "
        "(r - a)^4 / (h^4 + (r - a)^4), j = k included",
)
