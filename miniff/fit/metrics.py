"""Error metrics of fitted networks on a dataset, in physical units (eV/atom, eV/Å, eV/Å³).

:func:`error_metrics` is what the fit log, the convergence criteria and :meth:`FitWorkflow.metrics
<miniff.fit.workflow.FitWorkflow.metrics>` report; the loss functions are in :mod:`miniff.fit.closures`.
"""

import math

import numpy as np
import torch

__all__ = ["error_metrics", "error_sums", "metrics_from_sums", "network_predictions"]


def _forward(networks, dataset, grad, stress=False):
    """``forward_cauldron``: energies, or a tuple with the gradients (``grad``) and stresses (``stress``)."""
    from miniff import ml

    return ml.forward_cauldron(networks, dataset, grad=grad, stress=stress)


def _atom_counts(dataset):
    """Number of real atoms per structure, ``[S]`` (sums of the per-point masks; cached on the dataset until a
    mask changes: do not modify the result in place)."""
    from miniff.ml.cauldron import _cached

    masks = [ppd.mask for ppd in dataset.per_point_datasets]

    def compute():
        counts = None
        for m in masks:
            c = m.flatten(1).sum(dim=1)
            counts = c if counts is None else counts + c
        return counts

    return _cached(dataset, "_atom_counts_cache", masks, compute)


def _scales(normalization):
    """Factors from dataset units to eV (energies and stresses: eV/Å³) and eV/Å (gradients)."""
    if normalization is None:
        return 1.0, 1.0
    e_scale = float(normalization.energy_scale)
    ls = getattr(normalization, "length_scale", None)
    return e_scale, (e_scale / float(ls) if ls is not None else e_scale)


def error_metrics(networks, dataset, normalization=None, forces=None, groups=None, stress=None):
    """Energy, force and stress errors of ``networks`` on ``dataset``.

    Parameters
    ----------
    networks : list of torch.nn.Module
        One network per species.
    dataset : miniff.ml.Dataset
        Reference data (normalised or not).
    normalization : miniff.ml.Normalization or None
        The dataset's normalisation; residuals are converted back to eV, eV/Å and eV/Å³ with its
        ``energy_scale`` and ``length_scale``.  None: residuals in dataset units.
    forces : bool or None
        Compute force errors; None = when the dataset carries gradients.
    groups : sequence of str or None
        A group label per structure; adds ``group_<label>_energy_rmse`` (and ``_force_rmse``, ``_stress_rmse``)
        entries.
    stress : bool or None
        Compute stress errors (over the structures with a reference stress); None = when the dataset carries
        stresses and the strain derivatives of the features.

    Returns
    -------
    dict
        ``energy_rmse``, ``energy_max`` (eV/atom), ``energy_mae`` (eV/atom); with forces ``force_rmse``,
        ``force_max``, ``force_mae`` (eV/Å, over force components of real atoms); with stresses
        ``stress_rmse``, ``stress_max``, ``stress_mae`` (eV/Å³, over the 6 Voigt components).
    """
    return metrics_from_sums(error_sums(networks, dataset, normalization, forces, groups, stress))


def error_sums(networks, dataset, normalization=None, forces=None, groups=None, stress=None, group_names=None):
    """The sums behind :func:`error_metrics` (arguments as there): ``{key: float}`` with, per quantity
    ``q`` in ``energy`` (per-atom energies, eV/atom), ``force`` (components, eV/Å) and ``stress`` (Voigt
    components, eV/Å³), ``q_sq`` (sum of squared errors), ``q_abs`` (sum of absolute errors), ``q_n`` (count)
    and ``q_max`` (largest absolute error, 0 without values), and per group label ``g`` ``group_g_q_sq`` and
    ``group_g_q_n``.  Sums of disjoint parts of a data set add up (``_max`` keys: their maximum) to the sums of
    the whole, which :func:`metrics_from_sums` turns into the metrics: how ranks holding shards reduce them.

    ``group_names``: the labels to report (default: those of ``groups``); a label absent from ``groups`` gets
    zero sums, so every shard has the same keys.
    """
    pcd = dataset.per_cell_dataset
    if forces is None:
        forces = pcd.energy_g is not None
    if stress is None:
        stress = pcd.stress is not None and all(d.features_strain is not None for d in dataset.per_point_datasets)
    e_scale, g_scale = _scales(normalization)
    with torch.no_grad():  # forward_cauldron still differentiates for the forces, without a graph to keep
        out = _forward(networks, dataset, grad=forces, stress=stress)
    e_pred = (out[0] if forces or stress else out).detach()
    n_s = _atom_counts(dataset).to(e_pred.dtype).clamp(min=1)
    de_s = (e_pred - pcd.energy).reshape(-1) / n_s * e_scale
    per_structure = [("energy", de_s**2, torch.ones_like(de_s))]
    sums = _sums("energy", de_s, len(de_s))
    if forces:
        mask = pcd.force_mask().to(e_pred.dtype)
        dg = (out[1].detach() - pcd.energy_g) * mask[..., None] * g_scale
        sums.update(_sums("force", dg, 3 * float(mask.sum())))
        per_structure.append(("force", (dg**2).sum(dim=(1, 2)), 3 * mask.sum(dim=1)))
    if stress:
        if pcd.stress is None:
            raise ValueError("stress: the dataset has no reference stresses (build it with stress=True)")
        has = pcd.stress_mask().to(e_pred.dtype)
        ds_sv = (out[-1].detach() - pcd.stress) * has[:, None] * e_scale
        sums.update(_sums("stress", ds_sv, 6 * float(has.sum())))
        per_structure.append(("stress", (ds_sv**2).sum(dim=1), 6 * has))
    if groups is not None:
        groups = list(groups)
        if len(groups) != len(de_s):
            raise ValueError(f"groups must have one label per structure ({len(de_s)}), got {len(groups)}")
        for g in sorted(set(groups) if group_names is None else group_names):
            idx = torch.tensor([i for i, x in enumerate(groups) if x == g], dtype=torch.int64, device=de_s.device)
            for name, sq_s, cnt_s in per_structure:
                sums[f"group_{g}_{name}_sq"] = float(sq_s[idx].sum())
                sums[f"group_{g}_{name}_n"] = float(cnt_s[idx].sum())
    return sums


def _sums(name, residual, count):
    """``name_sq``, ``name_abs``, ``name_max`` and ``name_n`` (= ``count``) of a residual tensor."""
    return {f"{name}_sq": float((residual**2).sum()), f"{name}_abs": float(residual.abs().sum()),
            f"{name}_max": float(residual.abs().max()) if residual.numel() else 0.0, f"{name}_n": float(count)}


def metrics_from_sums(sums):
    """The metrics of :func:`error_metrics` from the sums of :func:`error_sums` (of a whole data set, or added up
    over its parts); a quantity or group without values is left out."""
    result = {}
    for name in ("energy", "force", "stress"):
        n = sums.get(f"{name}_n", 0.0)
        if n > 0 or (name == "energy" and f"{name}_n" in sums):
            result[f"{name}_rmse"] = math.sqrt(sums[f"{name}_sq"] / n) if n else math.nan
            result[f"{name}_max"] = sums[f"{name}_max"]
            result[f"{name}_mae"] = sums[f"{name}_abs"] / n if n else math.nan
    for name in ("energy", "force", "stress"):
        for key in sums:
            if key.startswith("group_") and key.endswith(f"_{name}_sq") and sums[key[:-3] + "_n"] > 0:
                result[key[:-3] + "_rmse"] = math.sqrt(sums[key] / sums[key[:-3] + "_n"])
    return result


def network_predictions(networks, ds, normalization, forces, stress, per_structure=False):
    """Reference and predicted energies (eV/atom), forces (eV/Å) and stresses (eV/Å³) of ``networks`` on the
    normalised dataset ``ds`` (:meth:`FitWorkflow.predict <miniff.fit.workflow.FitWorkflow.predict>`).

    Parameters
    ----------
    networks : list of torch.nn.Module
        One network per species.
    ds : Dataset
        A normalised dataset (``normalization.fw``).
    normalization : Normalization
        Maps the outputs back to eV and Å.
    forces, stress : bool
        Also return forces / stresses (structures without a reference contribute none).
    per_structure : bool
        Forces and stresses as one array per structure instead of one flat array.

    Returns
    -------
    dict
        ``energy_ref``, ``energy_pred``: ndarray (S,), eV/atom; with ``forces`` ``forces_ref``, ``forces_pred``:
        ndarray (n_atoms_with_forces * 3,), eV/Å (lists of S arrays [n_s, 3] with ``per_structure``); with
        ``stress`` ``stress_ref``, ``stress_pred``: ndarray (n_structures_with_stress * 6,), eV/Å³ (lists of S
        arrays [6], empty without a reference stress, with ``per_structure``).
    """
    from miniff import ml

    with torch.no_grad():
        out = ml.forward_cauldron(networks, ds, grad=forces, normalization=normalization, stress=stress)
        ref_e = normalization.bw_energy(ds.per_cell_dataset.energy, ds.atom_counts())
    e_pred = out[0] if forces or stress else out
    n_s = ds.atoms_per_sample().to(ref_e.dtype)
    result = {"energy_ref": (ref_e[:, 0] / n_s).cpu().numpy(),
              "energy_pred": (e_pred.detach()[:, 0] / n_s).cpu().numpy()}
    if forces:
        pcd = ds.per_cell_dataset
        mask = pcd.force_mask() != 0
        g_ref = normalization.bw_energy_g(pcd.energy_g)
        f_ref = [(-g_ref[s][mask[s]]).cpu().numpy() for s in range(len(n_s))]
        f_pred = [(-out[1].detach()[s][mask[s]]).cpu().numpy() for s in range(len(n_s))]
        if not per_structure:
            f_ref = np.concatenate([f.reshape(-1) for f in f_ref])
            f_pred = np.concatenate([f.reshape(-1) for f in f_pred])
        result["forces_ref"], result["forces_pred"] = f_ref, f_pred
    if stress:
        pcd = ds.per_cell_dataset
        has = pcd.stress_mask()
        s_ref = normalization.bw_stress(pcd.stress)
        pairs = [(s_ref[s].cpu().numpy() if has[s] else np.zeros(0),
                  out[-1][s].cpu().numpy() if has[s] else np.zeros(0))
                 for s in range(len(n_s))]
        s_ref, s_pred = [p[0] for p in pairs], [p[1] for p in pairs]
        if not per_structure:
            s_ref, s_pred = np.concatenate(s_ref), np.concatenate(s_pred)
        result["stress_ref"], result["stress_pred"] = s_ref, s_pred
    return result
