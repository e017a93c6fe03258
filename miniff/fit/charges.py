"""Losses, closures and error metrics for fitting atomic charges (e) with one network per species.

The networks map the descriptors of an atom to its charge, as :func:`miniff.ml.fw_cauldron_charges` evaluates
them on a dataset built with ``extract_charges=True`` (reference charges ``[S, M, 1]`` per species, e.g.
Hirshfeld or Bader charges in ``meta["charges"]``).  The loss of :func:`simple_charges_closure` is, with the
default criterion,

``L_q = sum_k sum_{s, m real} (q_pred_ksm - q_ref_ksm)^2 / (number of real atoms)``

(the mean squared charge error over all real atoms of all species, padding masked out), in the units of the
dataset (normalised charges ``(q - offset_k) / scale_k`` when the dataset was normalised).  A ``criterion`` given
instead is applied per species to the masked arrays and summed (miniff 0.1.4's ``charges_loss``).
:func:`charge_metrics` reports errors in e.
"""

import math

import torch

from miniff.fit.closures import SimpleClosure, loss_result

__all__ = ["charges_loss", "charge_metrics", "ChargeClosure", "simple_charges_closure", "CHARGE_CONVERGENCE_KEYS"]

#: Names of the convergence criteria of a charge fit (e): RMSE and largest residual over the atoms.
CHARGE_CONVERGENCE_KEYS = ("charge_rmse", "charge_maxresid")


def _charge_parts(networks, data):
    """Predicted and reference charges and masks per species: lists of ``[S, M]`` tensors (dataset units)."""
    from miniff import ml

    pred = ml.fw_cauldron_charges(networks, data)
    out = []
    for k, (p, d) in enumerate(zip(pred, data.per_point_datasets, strict=True)):
        if d.charges is None:
            raise ValueError(f"data: per_point_datasets[{k}] (species {d.tag!r}) has no reference charges "
                             f"(build the dataset with extract_charges=True from cells with meta['charges'])")
        mask = (d.mask != 0).to(p.dtype)
        out.append((p[..., 0] * mask, d.charges[..., 0] * mask, mask))
    return out


def charges_loss(networks, data, criterion=None):
    """Loss of the charges predicted by ``networks`` on ``data`` (see the module docstring).

    Parameters
    ----------
    networks : list of torch.nn.Module
        One network per species (per-point dataset), in the dataset's order; outputs ``[..., 1]``.
    data : miniff.ml.Dataset
        Per-point datasets with ``charges [S, M, 1]`` (e, or normalised).
    criterion : callable or None
        ``criterion(prediction, reference) -> scalar`` applied per species to masked ``[S, M, 1]`` arrays and
        summed; None = the mean squared error over all real atoms.

    Returns
    -------
    loss_result
        ``loss_id="charges"``; ``reference`` and ``prediction`` are the per-species lists of ``[S, M]`` charges
        (0 on padding).
    """
    parts = _charge_parts(networks, data)
    preds, refs = [p for p, _, _ in parts], [r for _, r, _ in parts]
    if criterion is None:
        n_atoms = sum(m.sum() for _, _, m in parts)
        if float(n_atoms) == 0:
            raise ValueError("data: the dataset has no atoms")
        sq = sum(((p - r) ** 2).sum() for p, r, _ in parts)
        value = sq / n_atoms
    else:
        value = sum(criterion(p[..., None], r[..., None]) for p, r in zip(preds, refs, strict=True))
    return loss_result("charges", value, refs, preds, None)


def charge_metrics(networks, dataset, normalization=None):
    """Charge errors of ``networks`` on ``dataset``, in e.

    Parameters
    ----------
    networks : list of torch.nn.Module
        One network per species.
    dataset : miniff.ml.Dataset
        Reference charges (normalised or not).
    normalization : miniff.ml.Normalization or None
        The dataset's normalisation (its charge scales and offsets convert back to e); None: dataset units.

    Returns
    -------
    dict
        ``charge_rmse``, ``charge_max``, ``charge_mae`` over all real atoms, and ``charge_rmse_<species>`` per
        species with atoms (e).
    """
    with torch.no_grad():
        parts = _charge_parts(networks, dataset)
    result, sq, ab, mx, n = {}, 0.0, 0.0, 0.0, 0.0
    for k, ((p, r, m), d) in enumerate(zip(parts, dataset.per_point_datasets, strict=True)):
        diff = p - r
        if normalization is not None:
            diff = diff * normalization.charges_scale[k].to(diff.dtype)  # offsets cancel in the difference
        diff = diff * m
        n_k = float(m.sum())
        if n_k == 0:
            continue
        sq_k = float((diff**2).sum())
        result[f"charge_rmse_{d.tag}"] = math.sqrt(sq_k / n_k)
        sq, ab, n = sq + sq_k, ab + float(diff.abs().sum()), n + n_k
        mx = max(mx, float(diff.abs().max()))
    if n == 0:
        raise ValueError("dataset: the dataset has no atoms")
    return {"charge_rmse": math.sqrt(sq / n), "charge_max": mx, "charge_mae": ab / n, **result}


def _check_charge_convergence(convergence):
    if convergence is None:
        return {}
    if not isinstance(convergence, dict):
        raise TypeError(f"convergence must be a dict, got {type(convergence).__name__}")
    unknown = set(convergence) - set(CHARGE_CONVERGENCE_KEYS)
    if unknown:
        raise KeyError(f"convergence: unknown criteria {sorted(unknown)}; known for charges: "
                       f"{list(CHARGE_CONVERGENCE_KEYS)}")
    out = {}
    for k, v in convergence.items():
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
            raise ValueError(f"convergence[{k!r}] must be a positive number (e) or None, got {v!r}")
        out[{"charge_rmse": "charge_rmse", "charge_maxresid": "charge_max"}[k]] = v
    return out


class ChargeClosure(SimpleClosure):
    """A :class:`~miniff.fit.closures.SimpleClosure` whose metrics and convergence criteria are charge errors.

    ``convergence``: ``{"charge_rmse": e, "charge_maxresid": e}`` (any subset); the other parameters are those
    of :class:`~miniff.fit.closures.SimpleClosure`.
    """

    def __init__(self, networks, loss_function=charges_loss, dataset=None, criterion=None, optimizer=None,
                 optimizer_kwargs=None, loss_function_kwargs=None, convergence=None, normalization=None):
        checked = _check_charge_convergence(convergence)
        super().__init__(networks, loss_function, dataset=dataset, criterion=criterion, optimizer=optimizer,
                         optimizer_kwargs=optimizer_kwargs, loss_function_kwargs=loss_function_kwargs,
                         convergence=None, normalization=normalization)
        self.convergence = checked

    def metrics(self, dataset=None):
        """Charge errors (e) of the networks on ``dataset`` (see :func:`charge_metrics`)."""
        dataset = self.dataset if dataset is None else dataset
        return charge_metrics(self.networks, dataset, self.normalization)

    def last_rmse(self):
        """None: the normalised charge loss weighs species by their charge scales, so the training RMSE in e is
        not read off it (the criteria are checked after every epoch instead)."""
        return None


def simple_charges_closure(networks, dataset=None, criterion=None, optimizer=None, optimizer_kwargs=None,
                           convergence=None, normalization=None):
    """A :class:`ChargeClosure` fitting per-atom charges with :func:`charges_loss`.

    Parameters
    ----------
    networks : list of torch.nn.Module
        One network per species, in the dataset's species order.
    dataset : miniff.ml.Dataset or None
        The training data (``extract_charges=True``).
    criterion : callable or None
        ``criterion(prediction, reference)`` per species; None = mean squared error over the real atoms.
    optimizer : None, str or callable
        LBFGS with strong-Wolfe line search by default; any name of
        :func:`~miniff.fit.closures.resolve_optimizer`.
    optimizer_kwargs : dict or None
        Optimizer keyword arguments.
    convergence : dict or None
        ``{"charge_rmse": e, "charge_maxresid": e}``.
    normalization : miniff.ml.Normalization or None
        For metrics in e.

    Returns
    -------
    ChargeClosure
    """
    return ChargeClosure(networks, charges_loss, dataset=dataset, criterion=criterion, optimizer=optimizer,
                         optimizer_kwargs=optimizer_kwargs, convergence=convergence, normalization=normalization)
