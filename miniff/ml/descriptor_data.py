"""Descriptor values and sparse Jacobians of one cell, and species bookkeeping across cells.

Uses ``miniff.potentials.eval_descriptors`` (DEVELOPING.md, Contract 3): values ``[N, F]`` and the per-pair
Jacobian ``jac_pfc[p] = d values[i_p] / d D_pc[p]`` with ``D_pc = r[j_p] + S @ cell - r[i_p]``, hence
``d values[i_p] / d r[j_p] = +jac_pfc[p]`` and ``d values[i_p] / d r[i_p] = -jac_pfc[p]`` (summed over pairs).

For stress training the same per-pair Jacobian gives the derivative of every atom's features by a homogeneous
strain ``eps`` of the cell (``D_pc -> (1 + eps) D_pc``): ``d values[i, f] / d eps_ab = sum_{p: i_p = i}
jac_pfc[p, f, a] D_pc[p, b]``, kept symmetrised in Voigt order ``xx yy zz yz xz xy`` (:func:`strain_derivatives`,
``[N, F, 6]``, unit-less for unit-less descriptors): per atom, never per pair of atoms.
"""

import sys

import numpy as np
import torch

from miniff.ml.jacobian import SparseJacobian
from miniff.potentials.descriptors import eval_descriptors
from miniff.potentials.wrapper import NeighborWrapper

__all__ = ["species_of", "collect_atoms", "encode_species", "check_descriptors", "descriptors_cutoff",
           "cell_descriptor_data", "prepare_descriptor_data", "strain_derivatives", "PROGRESS_MIN_CELLS",
           "progress_bar", "wrap_cells"]

#: Below this many cells no progress bar is shown by default.


def eval_descriptors_hook():
    """``miniff.potentials.eval_descriptors`` (looked up at call time; tests may substitute it)."""
    return eval_descriptors


def species_of(cell):
    """Species labels ``[N]`` (str) of a ``Cell`` or ``NeighborWrapper``."""
    values = getattr(cell, "values", None)
    if values is None and hasattr(cell, "cell"):
        values = cell.cell.values
    if values is None:
        raise TypeError(f"expected a Cell or NeighborWrapper, got {type(cell).__name__}")
    return np.asarray(values).astype(str).reshape(-1)


def collect_atoms(cells):
    """Species of all cells padded into a masked array ``[S, N]`` of str (padding masked)."""
    values = [species_of(c) for c in cells]
    a = max((len(v) for v in values), default=0)
    width = max((len(x) for v in values for x in v), default=1)
    data = np.full((len(values), a), "", dtype=f"<U{max(width, 1)}")
    mask = np.ones((len(values), a), dtype=bool)
    for s, v in enumerate(values):
        data[s, :len(v)] = v
        mask[s, :len(v)] = False
    return np.ma.masked_array(data, mask=mask)


def encode_species(cells):
    """Species codes of all cells.

    Returns
    -------
    values : Tensor of shape (S, N), int64
        Index into ``key`` of every atom, -1 for padding.
    key : ndarray of str
        Sorted unique species of all cells.
    """
    per_cell = [species_of(c) for c in cells]
    key = np.unique(np.concatenate(per_cell)) if per_cell else np.array([], dtype=str)
    a = max((len(v) for v in per_cell), default=0)
    out = torch.full((len(per_cell), a), -1, dtype=torch.int64)
    for s, v in enumerate(per_cell):
        out[s, :len(v)] = torch.from_numpy(np.searchsorted(key, v).astype(np.int64))
    return out, key


def check_descriptors(descriptors):
    """Validate ``{species: [tagged descriptor potentials]}``; return it as a dict with list values."""
    if not isinstance(descriptors, dict) or not descriptors:
        raise TypeError("descriptors must be a non-empty dict {species: [descriptor potentials]}")
    out = {}
    for species, items in descriptors.items():
        items = [items] if not isinstance(items, (list, tuple)) else list(items)
        if not items:
            raise ValueError(f"descriptors[{species!r}] is empty")
        for k, d in enumerate(items):
            tag = getattr(d, "tag", None)
            if not isinstance(tag, str):
                raise ValueError(f"descriptors[{species!r}][{k}] has no string tag (e.g. '{species}-{species}')")
            if tag.split("-")[0] != str(species):
                raise ValueError(f"descriptors[{species!r}][{k}] has tag {tag!r}: its centre species must be "
                                 f"{species!r}")
        out[str(species)] = items
    return out


def descriptors_cutoff(descriptors):
    """Largest cutoff (Å) of all descriptors of a ``{species: [...]}`` dict."""
    return max(float(d.cutoff) for items in descriptors.values() for d in items)


def strain_derivatives(point_p, jac_pfc, D_pc, n_points):
    """Derivatives of per-atom features by a homogeneous strain, from the per-pair Jacobian.

    Parameters
    ----------
    point_p : ndarray of shape (P,), int64
        The point (row of the result) of the centre atom of every pair.
    jac_pfc : ndarray of shape (P, F, 3), 1/Å
        ``d features[point_p[p]] / d D_pc[p]``.
    D_pc : ndarray of shape (P, 3), Å
        The pair vectors.
    n_points : int

    Returns
    -------
    Tensor of shape (n_points, F, 6), float64
        ``sum_p jac_pfc[p, f, a] D_pc[p, b]`` symmetrised in ``(a, b)``, Voigt order ``xx yy zz yz xz xy``.
    """
    jac = np.asarray(jac_pfc, dtype=np.float64)
    d = np.asarray(D_pc, dtype=np.float64)
    point_p = np.asarray(point_p, dtype=np.int64)
    a, b = [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]
    w_pfv = 0.5 * (jac[:, :, a] * d[:, None, b] + jac[:, :, b] * d[:, None, a])
    out = np.zeros((n_points, jac.shape[1], 6))
    if len(point_p) and bool(np.all(point_p[1:] >= point_p[:-1])):  # pairs grouped by centre: segment sums
        counts = np.bincount(point_p, minlength=n_points)
        rows = np.flatnonzero(counts)
        out[rows] = np.add.reduceat(w_pfv, (np.cumsum(counts) - counts)[rows], axis=0)
    elif len(point_p):
        np.add.at(out, point_p, w_pfv)
    return torch.from_numpy(out)


def cell_descriptor_data(nw, descriptors, species, grad=False, n_threads=None, strain=False):
    """Descriptors of the atoms of one species in one cell, with their sparse Jacobian.

    Parameters
    ----------
    nw : NeighborWrapper
        With distances computed up to the descriptors' cutoff.
    descriptors : list of LocalPotential
        Descriptors with tags centred on ``species``.
    species : str
    grad : bool
        Also return the Jacobian.
    n_threads : int or None
    strain : bool
        Also return the strain derivatives of the features (:func:`strain_derivatives`).

    Returns
    -------
    features_nf : ndarray of shape (n_k, F), float64
        Descriptors of the ``n_k`` atoms of ``species`` in order of appearance.
    jac : tuple or None
        ``(point_e [E] int64, atom_e [E] int64, values_edc [E, F, 3] float64)``: one entry per pair with a
        nonzero derivative (neighbour atom) and one self entry per atom (None unless ``grad``).
    atoms_n : ndarray of shape (n_k,), int64
        Indices of those atoms in the cell.
    strain_nfv : ndarray of shape (n_k, F, 6), float64
        Only with ``strain``: ``d features_nf / d eps`` (Voigt).
    """
    labels = species_of(nw)
    atoms_n = np.flatnonzero(labels == species).astype(np.int64)
    n_k, d = len(atoms_n), len(descriptors)
    if n_k == 0:
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, d, 3))) if grad else None
        return (np.zeros((0, d)), empty, atoms_n) + ((np.zeros((0, d, 6)),) if strain else ())
    values_nf, jac_pfc = eval_descriptors_hook()(nw, list(descriptors), grad=grad or strain, n_threads=n_threads,
                                                 ignore_missing_species=True)
    features_nf = np.ascontiguousarray(values_nf[atoms_n], dtype=np.float64)
    if not (grad or strain):
        return features_nf, None, atoms_n
    pairs = nw.pairs
    pos_n = np.full(len(labels), -1, dtype=np.int64)
    pos_n[atoms_n] = np.arange(n_k)
    i_p = pairs.i_p
    keep = pos_n[i_p] >= 0
    strain_nfv = ()
    if strain:
        strain_nfv = (strain_derivatives(pos_n[i_p[keep]], jac_pfc[keep], pairs.D_pc[keep], n_k).numpy(),)
    if not grad:
        return (features_nf, None, atoms_n) + strain_nfv
    if jac_pfc.size:
        keep &= np.any(jac_pfc.reshape(len(jac_pfc), -1) != 0, axis=1)
    point_pair = pos_n[i_p[keep]]
    jac = torch.from_numpy(np.ascontiguousarray(jac_pfc[keep], dtype=np.float64))
    self_values = torch.zeros(n_k, d, 3, dtype=torch.float64)
    self_values.index_add_(0, torch.from_numpy(point_pair), jac, alpha=-1)
    point_e = np.concatenate([point_pair, np.arange(n_k)])
    atom_e = np.concatenate([np.asarray(pairs.j_p, dtype=np.int64)[keep], atoms_n])
    values = torch.cat([jac, self_values]).numpy()
    return (features_nf, (point_e, atom_e, values), atoms_n) + strain_nfv


PROGRESS_MIN_CELLS = 20


def progress_bar(iterable, total, progress, desc):
    """``iterable`` wrapped in a tqdm bar of ``total`` steps labelled ``desc`` when ``progress`` is True, or when it
    is None and there are at least :data:`PROGRESS_MIN_CELLS` steps on a terminal; else ``iterable`` itself."""
    show = progress if progress is not None else (total >= PROGRESS_MIN_CELLS and sys.stderr.isatty())
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)



def wrap_cells(cells, cutoff):
    """NeighborWrappers with pairs up to ``cutoff`` (Å) for a list of Cells/NeighborWrappers."""
    out = []
    for s, c in enumerate(cells):
        if hasattr(c, "compute_distances"):  # a NeighborWrapper
            current = getattr(c, "cutoff", None)
            if current is None or current < cutoff:
                c.compute_distances(cutoff)
            out.append(c)
        elif hasattr(c, "vectors") and hasattr(c, "coordinates"):
            kw = {}
            pbc = getattr(c, "pbc", None)
            if pbc is None and isinstance(getattr(c, "meta", None), dict):
                pbc = c.meta.get("pbc")
            if pbc is not None:
                kw["pbc"] = pbc
            out.append(NeighborWrapper(c, cutoff=cutoff, **kw))
        else:
            raise TypeError(f"cells[{s}] must be a Cell or a NeighborWrapper, got {type(c).__name__}")
    return out


def prepare_descriptor_data(cells, descriptors, species, grad=False, dtype=torch.float64, n_threads=None,
                            progress=None, n_atoms=None, strain=False):
    """Per-point data of one species for a list of wrappers.

    Parameters
    ----------
    cells : list of NeighborWrapper
        With distances computed up to the descriptors' cutoff.
    descriptors : list of LocalPotential
        Descriptors centred on ``species``.
    species : str
    grad : bool
        Also compute the sparse Jacobian.
    dtype : torch.dtype
    n_threads : int or None
    progress : bool or None
    n_atoms : int or None
        ``N`` of the Jacobian (default: the largest cell).
    strain : bool
        Also return the strain derivatives of the features (for stress training).

    Returns
    -------
    features : Tensor of shape (S, M, F)
    mask : Tensor of shape (S, M)
    features_g : SparseJacobian or None
    atoms : list of ndarray
        Indices (in each cell) of the atoms of ``species``, in point order.
    features_strain : Tensor of shape (S, M, F, 6)
        Only with ``strain``: the strain derivatives of the features (0 on padding).
    """
    feats, jacs, atoms, strains = [], [], [], []
    for nw in progress_bar(cells, len(cells), progress, f"descriptors {species}"):
        f, j, a, *w = cell_descriptor_data(nw, descriptors, species, grad=grad, n_threads=n_threads, strain=strain)
        feats.append(f)
        jacs.append(j)
        atoms.append(a)
        strains.extend(w)
    s, d = len(cells), len(descriptors)
    p = max((len(a) for a in atoms), default=0)
    a_max = max((c.size for c in cells), default=0) if n_atoms is None else n_atoms
    features = torch.zeros(s, p, d, dtype=dtype)
    mask = torch.zeros(s, p, dtype=dtype)
    for k, f in enumerate(feats):
        features[k, :len(f)] = torch.from_numpy(f)
        mask[k, :len(f)] = 1
    jac = None
    if grad:
        sample = np.concatenate([np.full(len(j[0]), k, dtype=np.int64) for k, j in enumerate(jacs)])
        jac = SparseJacobian(torch.from_numpy(sample),
                             torch.from_numpy(np.concatenate([j[0] for j in jacs])),
                             torch.from_numpy(np.concatenate([j[1] for j in jacs])),
                             torch.from_numpy(np.concatenate([j[2] for j in jacs])).to(dtype),
                             s, p, a_max)
    if not strain:
        return features, mask, jac, atoms
    features_strain = torch.zeros(s, p, d, 6, dtype=dtype)
    for k, w in enumerate(strains):
        features_strain[k, :len(w)] = torch.from_numpy(w)
    return features, mask, jac, atoms, features_strain
