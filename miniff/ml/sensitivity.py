"""Sensitivity analysis of a fitted NN potential: how much each descriptor moves the predicted energies.

The measure (the idea of Amp's sensitivity analysis: rank descriptors by their influence on the network's
output over a data set, so that useless ones can be pruned): for species ``s`` and its descriptor ``f``,

    S_f = mean_i |dE_i / dG_if| * std_i(G_if)

over every atom ``i`` of species ``s`` in the data, where ``E_i`` is the atomic energy the network predicts
(eV) and ``G_if`` the raw descriptor value. ``S_f`` is in eV: the typical change of an atomic energy when the
descriptor varies by one standard deviation of its values in the data. A descriptor the network ignores (its
input weights are zero) or that does not vary over the data (std 0) gets ``S_f = 0``.

With ``forces=True`` also the force part that flows through each descriptor,

    S^F_f = sqrt(mean_{j, c} (sum_i dE_i/dG_if * dG_if/dr_jc)^2)

(eV/Å): the root-mean-square over every atom ``j`` of the data and Cartesian component ``c`` of the force
contribution of descriptor ``f`` (the predicted forces are minus the sum of these contributions over all
descriptors of all species).
"""

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DescriptorSensitivity", "descriptor_sensitivity", "descriptor_label"]

# Short names of common descriptor parameters in labels.
_PARAMETER_SYMBOLS = {"eta": "η", "r_sphere": "r_s", "zeta": "ζ", "l": "λ", "r0": "r0", "dr": "Δr", "epsilon": "ε"}


def descriptor_label(descriptor):
    """A short text naming a descriptor: its tag and parameters, e.g. ``"Cu-Pt η=4 r_s=2.2"``.

    The cutoff parameter ``a`` is left out (descriptors of one potential usually share it).

    Parameters
    ----------
    descriptor : LocalPotential

    Returns
    -------
    str
    """
    parts = [str(descriptor.tag)]
    parameters = getattr(descriptor, "parameters", None) or {}
    for name, value in parameters.items():
        if name == "a" or not np.isscalar(value):
            continue
        parts.append(f"{_PARAMETER_SYMBOLS.get(name, name)}={value:g}" if isinstance(value, (int, float))
                     else f"{_PARAMETER_SYMBOLS.get(name, name)}={value}")
    return " ".join(parts)


@dataclass
class DescriptorSensitivity:
    """Sensitivity of one species' atomic energies to each of its descriptors.

    Attributes
    ----------
    species : str
        The centre species of the potential.
    labels : list of str
        ``F`` descriptor names (:func:`descriptor_label`), in the potential's descriptor order.
    sensitivity : ndarray of shape (F,)
        ``mean |dE_i/dG_f| * std(G_f)``, eV.
    mean_abs_gradient : ndarray of shape (F,)
        ``mean_i |dE_i/dG_if|``, eV per descriptor unit.
    spread : ndarray of shape (F,)
        ``std_i(G_if)`` (population standard deviation), descriptor units.
    n_atoms : int
        Number of atoms of the species in the data.
    force_sensitivity : ndarray of shape (F,) or None
        ``S^F_f``, eV/Å (only with ``forces=True``).
    """

    species: str
    labels: list
    sensitivity: np.ndarray
    mean_abs_gradient: np.ndarray
    spread: np.ndarray
    n_atoms: int
    force_sensitivity: np.ndarray = None

    def ranking(self, forces=False):
        """Descriptor indices from the most to the least influential (ties keep the descriptor order).

        ``forces=True`` ranks by :attr:`force_sensitivity`.
        """
        values = self.sensitivity if not forces else self.force_sensitivity
        if values is None:
            raise ValueError("no force sensitivity: call descriptor_sensitivity(..., forces=True)")
        return np.argsort(-np.asarray(values), kind="stable")


def _as_cells(cells):
    from miniff.io import read_cells
    from miniff.neighbors.cell import Cell

    if isinstance(cells, (Cell,)) or hasattr(cells, "get_scaled_positions"):
        cells = [cells]
    if isinstance(cells, (str, bytes)) or hasattr(cells, "__fspath__"):
        return read_cells(cells, warn_missing_targets=False)
    cells = list(cells)
    if not cells:
        raise ValueError("cells must not be empty")
    out = []
    for k, c in enumerate(cells):
        if isinstance(c, Cell):
            out.append(c)
        elif hasattr(c, "get_scaled_positions"):
            out.append(Cell.from_ase(c))
        else:
            raise TypeError(f"cells[{k}] must be a miniff Cell or an ase.Atoms, got {type(c).__name__}")
    return out


def _network_gradients(nn, values_nf):
    """Atomic energies' gradients ``dE_i/dG_if`` ``[n, F]`` of a float64 network at ``values_nf`` ``[n, F]``."""
    x = torch.from_numpy(np.ascontiguousarray(values_nf, dtype=np.float64)).requires_grad_(True)
    with torch.enable_grad():
        e = nn(x)[:, 0]
        (g,) = torch.autograd.grad(e.sum(), x)
    return g.numpy()


def _force_contributions(nw, g_nf, jac_pfc, sel):
    """``[N, F, 3]`` dE/dr_j through each descriptor: ``sum_i dE_i/dG_if dG_if/dr_j`` (atoms ``i`` in ``sel``)."""
    n, n_f = len(sel), g_nf.shape[1]
    full = np.zeros((n, n_f))
    full[sel] = g_nf
    i_p = np.asarray(nw.pairs.i_p, dtype=np.int64)
    j_p = np.asarray(nw.pairs.j_p, dtype=np.int64)
    term_pfc = full[i_p][:, :, None] * jac_pfc  # d E_{i_p} / d D_p through each descriptor
    out = np.zeros((n, n_f, 3))
    np.add.at(out, j_p, term_pfc)
    np.subtract.at(out, i_p, term_pfc)
    return out


def descriptor_sensitivity(potentials, cells, forces=False, n_threads=None):
    """Sensitivity of the predicted atomic energies to every descriptor, per species (see the module text).

    Parameters
    ----------
    potentials : NNPotential or list of NNPotential
        Fitted potentials (e.g. from :func:`miniff.ml.load_potentials`), one per species.
    cells : list of Cell or ase.Atoms, or a path
        The data set the sensitivity is measured on (typically the training structures); a path is read with
        :func:`miniff.io.read_cells`.
    forces : bool
        Also compute the force sensitivity ``S^F_f`` (needs the descriptors' derivatives: slower).
    n_threads : int, optional
        OpenMP threads of the descriptor kernels.

    Returns
    -------
    dict
        ``{species: DescriptorSensitivity}`` for each potential whose species occurs in ``cells``.

    Raises
    ------
    TypeError
        If a potential is not an :class:`~miniff.ml.NNPotential` or a cell is not a structure.
    ValueError
        If no atom of any potential's species is in ``cells``.
    """
    from miniff.ml.descriptor_data import species_of
    from miniff.ml.potential import NNPotential
    from miniff.potentials.descriptors import eval_descriptors
    from miniff.potentials.wrapper import NeighborWrapper

    if isinstance(potentials, NNPotential):
        potentials = [potentials]
    potentials = list(potentials)
    for k, p in enumerate(potentials):
        if not isinstance(p, NNPotential):
            raise TypeError(f"potentials[{k}] must be an NNPotential, got {type(p).__name__}")
    cells = _as_cells(cells)
    cutoff = max(float(p.cutoff) for p in potentials)
    values = {p.tag: [] for p in potentials}
    force_sq = {p.tag: np.zeros(len(p.descriptors)) for p in potentials}
    n_components = 0
    for cell in cells:
        nw = NeighborWrapper(cell, cutoff=cutoff)
        species_n = np.asarray(species_of(cell))
        n_components += 3 * len(species_n)
        for p in potentials:
            sel = species_n == p.tag
            if not sel.any():
                continue
            values_nf, jac_pfc = eval_descriptors(nw, list(p.descriptors), grad=forces, n_threads=n_threads,
                                                  ignore_missing_species=True)
            values[p.tag].append(values_nf[sel])
            if forces:
                g_nf = _network_gradients(p.nn, values_nf[sel])
                force_sq[p.tag] += (_force_contributions(nw, g_nf, jac_pfc, sel) ** 2).sum(axis=(0, 2))
    result = {}
    for p in potentials:
        if not values[p.tag]:
            continue
        g_nf = np.concatenate(values[p.tag])
        grad_nf = _network_gradients(p.nn, g_nf)
        mean_abs = np.abs(grad_nf).mean(axis=0)
        spread = g_nf.std(axis=0)
        result[p.tag] = DescriptorSensitivity(
            species=p.tag, labels=[descriptor_label(d) for d in p.descriptors], sensitivity=mean_abs * spread,
            mean_abs_gradient=mean_abs, spread=spread, n_atoms=int(g_nf.shape[0]),
            force_sensitivity=np.sqrt(force_sq[p.tag] / n_components) if forces else None)
    if not result:
        raise ValueError(f"cells hold no atom of the species {[p.tag for p in potentials]}")
    return result
