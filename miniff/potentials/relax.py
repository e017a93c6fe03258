"""Structural relaxation with scipy minimisers (``NeighborWrapper.relax``).

The optimiser works on scaled variables ``y``: positions ``x = STEP * y`` (Å) and, with
``relax_cell=True``, a deformation gradient ``F = I + STEP / L * y_cell`` (``L`` = cube root of the
volume) applied to both the cell vectors and the positions (``r = u @ F``, ``cell = cell0 @ F``). A unit
step in ``y`` therefore moves atoms by about ``STEP`` = 0.1 Å, so that the first line search of BFGS /
CG / L-BFGS-B (which starts with a step of about one unit) does not throw atoms far away; this is what
made 0.1.4's relaxation stop at step 0 with "precision loss".

The default optimiser (``method=None``) is :func:`miniff.potentials.minimize.minimize_max_step`: L-BFGS whose
steps move no atom farther than ``max_step`` (default ``MAX_STEP`` = 0.2 Å, the trust radius) and that only
accepts steps lowering the energy, so a strongly compressed start relaxes to the nearest minimum instead of
throwing atoms beyond the cutoff. It stops when the largest force on an atom is at most ``fmax`` (default
``FMAX`` = 1e-5 eV/Å). scipy methods (``method="BFGS"``, ``"CG"``, ``"L-BFGS-B"``, ...) and custom drivers
are used as given (no step limit).
"""

import warnings

import numpy as np

from miniff.potentials.evaluate import evaluate
from miniff.potentials.minimize import minimize_max_step
from miniff.util import positive_number

__all__ = ["relax", "STEP", "MAX_STEP", "FMAX", "OptimizationWarning"]

#: Length (Å) of a unit step of the optimisation variables.
STEP = 0.1
#: Default trust radius of the default optimiser: the largest displacement of an atom in one step, Å.
MAX_STEP = 0.2
#: Default convergence criterion: the largest force on an atom, eV/Å.
FMAX = 1e-5


class OptimizationWarning(UserWarning):
    """The optimiser of ``NeighborWrapper.relax`` reported no success."""


_GTOL_METHODS = {"BFGS", "CG", "L-BFGS-B", "NEWTON-CG", "TNC", "TRUST-CONSTR", "SLSQP"}


def _count(name, value, least):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be at least {least}, got {value}")
    return int(value)


class _Problem:
    """Energy and gradient of the scaled variables; keeps the last point and the history."""

    def __init__(self, nw, potentials, relax_cell, normalize, n_threads, ignore_missing_species, rtn_history):
        self.nw = nw
        self.potentials = potentials
        self.relax_cell = relax_cell
        self.normalize = normalize
        self.n_threads = n_threads
        self.ignore = ignore_missing_species
        self.cutoff = nw.pairs.cutoff
        self.cell0 = nw.cell.copy()
        self.vectors0 = np.array(nw.vectors, dtype=float)
        self.cart0 = np.array(nw.cartesian_row, dtype=float)
        self.n = len(self.cart0)
        self.length = abs(np.linalg.det(self.vectors0)) ** (1 / 3) if relax_cell else 1.0
        if relax_cell and not self.length > 0:
            raise ValueError("relax_cell=True needs a cell of positive volume")
        self.last_key = None
        self.last = None
        self.history = [] if rtn_history else None

    def y0(self):
        y = self.cart0.reshape(-1) / STEP
        if self.relax_cell:
            y = np.concatenate([y, np.zeros(9)])
        return y

    def unpack(self, y):
        u = np.asarray(y[: 3 * self.n], dtype=float).reshape(self.n, 3) * STEP
        if self.relax_cell:
            f = np.eye(3) + np.asarray(y[3 * self.n:], dtype=float).reshape(3, 3) * (STEP / self.length)
        else:
            f = np.eye(3)
        return u, f

    def apply(self, y):
        """Put the wrapper at point ``y`` (neighbour list rebuilt)."""
        u, f = self.unpack(y)
        cart = u @ f
        if self.relax_cell:
            vectors = self.vectors0 @ f
            cell = type(self.cell0)(vectors, cart @ np.linalg.inv(vectors), self.cell0.values, self.cell0.meta)
            self.nw.set_cell(cell, normalize=self.normalize)
        else:
            self.nw.set_cell_cartesian(cart, normalize=self.normalize)
        self.nw.compute_distances(self.cutoff)
        return u, f

    def evaluate(self, y):
        y = np.asarray(y, dtype=float)
        key = y.tobytes()
        if key == self.last_key:
            return self.last
        if not np.all(np.isfinite(y)):
            raise ValueError("the optimiser produced non-finite coordinates")
        u, f = self.apply(y)
        ev = evaluate(self.nw, self.potentials, grad=True, stress=self.relax_cell,
                              ignore_missing_species=self.ignore, n_threads=self.n_threads)
        g = (ev.grad_nc @ f.T).reshape(-1) * STEP
        if self.relax_cell:
            volume = abs(np.linalg.det(self.vectors0 @ f))
            s = ev.stress
            sigma = np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]], [s[4], s[3], s[2]]])
            d_f = np.linalg.inv(f).T @ (volume * sigma)
            g = np.concatenate([g, d_f.reshape(-1) * (STEP / self.length)])
        self.last_key, self.last = key, (ev.energy, g, ev)
        if self.history is not None:
            self.history.append(self.current_cell(ev))
        return self.last

    def fun(self, y):
        return self.evaluate(y)[0]

    def jac(self, y):
        return self.evaluate(y)[1]

    def current_cell(self, ev):
        cell = self.nw.cell.copy()
        cell.meta["total-energy"] = float(ev.energy)
        cell.meta["forces"] = -np.array(ev.grad_nc)
        if ev.stress is not None:
            cell.meta["stress"] = np.array(ev.stress)
        return cell

    def restore(self):
        self.nw.set_cell(self.cell0.copy(), normalize=False)
        self.nw.set_cell_cartesian(self.cart0, normalize=False)
        self.nw.compute_distances(self.cutoff)


def relax(nw, potentials, rtn_history=False, normalize=True, inplace=False, driver=None, relax_cell=False,
          n_threads=None, ignore_missing_species=False, fmax=FMAX, max_step=MAX_STEP, **kwargs):
    """Minimise the total energy of the potentials over the positions (and optionally the cell).

    Parameters
    ----------
    nw : NeighborWrapper
        With distances computed (the same cutoff is used at every step; lists are rebuilt).
    potentials : LocalPotential or list of LocalPotential
    rtn_history : bool
        Return the list of all distinct evaluated cells instead of the final one.
    normalize : bool
        Wrap coordinates into the cell at every step.
    inplace : bool
        Leave the wrapper at the relaxed structure (otherwise it is restored).
    driver : callable
        ``driver(fun, y0, jac=jac, **kwargs)`` returning an object with ``x`` (and ``success``,
        ``message``); default: with ``method=None`` miniff's L-BFGS with a trust radius
        (:func:`miniff.potentials.minimize.minimize_max_step`, ``options={"maxiter": 10000, "memory": 20}``),
        with a ``method`` name ``scipy.optimize.minimize`` (``"BFGS"``, ``"CG"``, ``"L-BFGS-B"``...).
    relax_cell : bool
        Also optimise the cell (a deformation applied to cell and atoms, driven by the stress).
    fmax : float
        Convergence: the largest force on an atom, eV/Å (default ``FMAX`` = 1e-5; cell variables count in eV
        per unit strain / L). For scipy methods it is the default ``gtol`` (used when neither ``tol`` nor
        ``options["gtol"]`` is given; ``options["gtol"]`` is also taken in eV/Å).
    max_step : float
        Trust radius of the default optimiser: no atom moves farther than this in one step, Å (default
        ``MAX_STEP`` = 0.2). Ignored by scipy methods and custom drivers.
    **kwargs
        Passed to the driver (``method``, ``options``, ``tol``, ...).

    Returns
    -------
    Cell or list of Cell
        With ``meta["total-energy"]`` (eV), ``meta["forces"]`` (``[N, 3]`` eV/Å) and, with
        ``relax_cell``, ``meta["stress"]`` (Voigt, eV/Å³).

    Raises
    ------
    ValueError
        Without a neighbour list, for a cell without atoms, or for a non-positive ``fmax`` / ``max_step``.

    Warns
    -----
    OptimizationWarning
        When the optimiser reports no success.
    """
    import scipy.optimize

    if kwargs.pop("prefer_parallel", None) is not None:
        warnings.warn("relax: prefer_parallel is ignored (it is accepted only for miniff 0.1.4 compatibility and "
                      "will be removed): the threads follow n_threads (None: the wrapper's n_threads or the OpenMP "
                      "default)", DeprecationWarning, stacklevel=3)
    own = driver is None and kwargs.get("method") is None
    if own:
        kwargs.pop("method", None)
        options = dict(kwargs.pop("options", None) or {})
        unknown = set(options) - {"maxiter", "memory"} | set(kwargs)
        if unknown:
            raise ValueError(f"relax: unknown option(s) {sorted(unknown)} for the default optimiser (method=None); "
                             f"it takes options={{'maxiter': ..., 'memory': ...}}, fmax and max_step")

        maxiter = _count("options['maxiter']", options.get("maxiter", 10000), 0)
        memory = _count("options['memory']", options.get("memory", 20), 1)

        def driver(fun, y0, jac):
            return minimize_max_step(lambda y: (fun(y), jac(y)), y0, max_step=max_step, fmax=fmax, row_scale=STEP,
                                     maxiter=maxiter, memory=memory)
    elif driver is None:
        driver = scipy.optimize.minimize
    if not callable(driver):
        raise TypeError(f"driver must be callable, got {type(driver).__name__}")
    if getattr(nw, "pairs", None) is None:
        raise ValueError("no neighbour list: call compute_distances(cutoff) before relax")
    if not len(nw.cartesian_row):
        raise ValueError("relax: the cell has no atoms (nothing to relax)")
    fmax = positive_number("fmax", fmax, "eV/Å")
    max_step = positive_number("max_step", max_step, "Å")
    problem = _Problem(nw, potentials, bool(relax_cell), normalize, n_threads, ignore_missing_species,
                       rtn_history)
    if driver is scipy.optimize.minimize:
        method = str(kwargs.get("method") or "BFGS").upper()
        options = dict(kwargs.get("options") or {})
        if method in _GTOL_METHODS:
            if "gtol" in options:
                options["gtol"] = float(options["gtol"]) * STEP
            elif "tol" not in kwargs:
                options["gtol"] = fmax * STEP
            if method == "L-BFGS-B":
                options.setdefault("ftol", 1e-14)
        kwargs["options"] = options
    try:
        result = driver(problem.fun, problem.y0(), jac=problem.jac, **kwargs)
        x = getattr(result, "x", result)
        _, _, ev = problem.evaluate(np.asarray(x, dtype=float))
        final = problem.current_cell(ev)
        if hasattr(result, "success") and not result.success:
            warnings.warn(f"relaxation did not converge: {getattr(result, 'message', '')}", OptimizationWarning,
                          stacklevel=3)
    finally:
        if not inplace:
            problem.restore()
    if rtn_history:
        return problem.history
    return final
