"""``NeighborWrapper`` with the evaluation methods of miniff 0.1.4 (the class ``miniff.kernel`` exports).

The neighbour-list layer (``miniff.neighbors.wrapper.NeighborWrapper``) knows nothing of potentials; this
subclass adds ``eval``, ``total``, ``grad``, ``stress``, ``evaluate`` and ``relax``, each a one-line call
into :mod:`miniff.potentials.evaluate` or :mod:`miniff.potentials.relax`.
"""

from miniff.neighbors import wrapper as _neighbors
from miniff.potentials import evaluate as _evaluate
from miniff.potentials.relax import relax as _relax

__all__ = ["EvaluationMixin", "NeighborWrapper"]


class EvaluationMixin:
    """The evaluation methods of ``NeighborWrapper``; any object with Contract 2's attributes can use them."""

    def eval(self, potentials, kname="kernel", squeeze=True, ignore_missing_species=False, out=None,
             resolving=True, n_threads=None, prefer_parallel=None):
        """Evaluate potentials with 0.1.4's output layouts: see :func:`miniff.potentials.evaluate.eval_potentials`.

        ``"kernel"``: ``[n_pot, N]`` eV per atom (``[n_pot]`` if not ``resolving``); ``"kernel_gradient"`` /
        ``"kernel_numgrad"``: ``[n_pot, N, N, 3]`` eV/Å (``[n_pot, N, 3]`` if not ``resolving``).
        """
        return _evaluate.eval_potentials(self, potentials, kname=kname, squeeze=squeeze,
                                         ignore_missing_species=ignore_missing_species, out=out,
                                         resolving=resolving, n_threads=n_threads, prefer_parallel=prefer_parallel)

    def total(self, potentials, kname="kernel", squeeze=False, resolving=False, ignore_missing_species=False,
              n_threads=None, **kwargs):
        """Total energy (eV, a float); with a gradient ``kname`` the total dE/dr [N, 3] eV/Å."""
        return _evaluate.total(self, potentials, kname=kname, squeeze=squeeze, resolving=resolving,
                               ignore_missing_species=ignore_missing_species, n_threads=n_threads, **kwargs)

    def grad(self, potentials, kname="kernel_gradient", **kwargs):
        """Gradient of the total energy by the atomic positions, ``[N, 3]`` eV/Å (forces are ``-grad``)."""
        return _evaluate.gradient(self, potentials, kname=kname, **kwargs)

    def stress(self, potentials, per_atom=False, ignore_missing_species=False, n_threads=None):
        """Virial stress, Voigt ``[6]`` (or per atom ``[N, 6]``) eV/Å³, ASE sign: see ``evaluate.stress``."""
        return _evaluate.stress(self, potentials, per_atom=per_atom, ignore_missing_species=ignore_missing_species,
                                n_threads=n_threads)

    def evaluate(self, potentials, grad=True, stress=False, per_atom_stress=False, ignore_missing_species=False,
                 n_threads=None):
        """Energy, per-atom energies, gradient and stress in one pass (an ``Evaluation``)."""
        return _evaluate.evaluate(self, potentials, grad=grad, stress=stress, per_atom_stress=per_atom_stress,
                                  ignore_missing_species=ignore_missing_species, n_threads=n_threads)

    def relax(self, potentials, rtn_history=False, normalize=True, inplace=False, driver=None, relax_cell=False,
              n_threads=None, ignore_missing_species=False, **kwargs):
        """Minimise the total energy over positions (and the cell): see :func:`miniff.potentials.relax.relax`.

        By default an L-BFGS with a trust radius (``max_step=0.2`` Å per atom and step) converged at
        ``fmax=1e-5`` eV/Å; ``method="BFGS"``, ``"L-BFGS-B"``... use scipy. Returns a ``Cell`` (or the list of
        evaluated cells with ``rtn_history``) with ``meta["total-energy"]`` (eV) and ``meta["forces"]`` ([N, 3]
        eV/Å); warns ``OptimizationWarning`` when the optimiser fails.
        """
        return _relax(self, potentials, rtn_history=rtn_history, normalize=normalize, inplace=inplace,
                      driver=driver, relax_cell=relax_cell, n_threads=n_threads,
                      ignore_missing_species=ignore_missing_species, **kwargs)


class NeighborWrapper(_neighbors.NeighborWrapper, EvaluationMixin):
    __doc__ = _neighbors.NeighborWrapper.__doc__
