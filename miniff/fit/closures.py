"""Loss functions, closures and error metrics for fitting NN potentials.

The loss of :func:`simple_energy_closure` is ``w_energy * L_E + w_gradients * L_G + w_stress * L_S`` with

- ``L_E = sum_s w_s (E_pred_s - E_ref_s)^2 / sum_s w_s`` (the mean squared energy error; with
  ``per_atom=True`` each residual is divided by the structure's atom count first);
- ``L_G = sum_s w_s sum_{a, c} (G_pred_sac - G_ref_sac)^2 / (3 sum_s w_s n_s)`` (the mean squared
  error of the energy gradients, i.e. of the forces, over the real atoms; padding is masked out);
- ``L_S = sum_s w_s h_s sum_v ((sigma_pred_sv - sigma_ref_sv) V_s / m_s)^2 / (6 sum_s w_s h_s)`` (the mean
  squared error of the 6 Voigt stress components, eV/Å³, each times the structure's volume ``V_s``: a virial,
  compared like the energies of ``L_E`` -- ``m_s`` = the atom count with ``per_atom=True``, else 1 -- and in
  the same energy units; ``h_s`` = 1 for the structures with a reference stress, 0 for the others),

in the units of the dataset (normalised units when the dataset was normalised), ``w_s`` being optional
per-structure weights.  Unlike miniff 0.1.4, ``w_energy`` multiplies the energy term also when forces are
not fitted.  Error metrics (:func:`error_metrics`) are reported in physical units (eV/atom, eV/Å) when the
:class:`~miniff.ml.Normalization` is given, and convergence criteria on them follow Amp's LossFunction:
the fit has converged when every criterion that is set is met.
"""

import math
from collections import namedtuple
from functools import partial

import torch

from miniff.fit.metrics import _atom_counts, _forward, error_metrics
from miniff.ml.single import unique_parameters

__all__ = [
    "loss_result",
    "LBFGS",
    "energy_loss",
    "share_loss",
    "SimpleClosure",
    "simple_energy_closure",
    "error_metrics",
    "resolve_optimizer",
    "CONVERGENCE_KEYS",
]

#: The result of a loss evaluation: ``loss_value`` is a torch scalar; ``components`` a dict of the parts.
loss_result = namedtuple("loss_result", ("loss_id", "loss_value", "reference", "prediction", "components"))

#: LBFGS with a strong-Wolfe line search (the default optimizer, as in miniff 0.1.4).
LBFGS = partial(torch.optim.LBFGS, line_search_fn="strong_wolfe")

#: Names of the convergence criteria (Amp's LossFunction): eV/atom for energies, eV/Å for forces.
CONVERGENCE_KEYS = ("energy_rmse", "energy_maxresid", "force_rmse", "force_maxresid")


def resolve_optimizer(optimizer):
    """Turn ``optimizer`` into a callable ``f(params, **kwargs) -> torch.optim.Optimizer``.

    Parameters
    ----------
    optimizer : None, str, or callable
        ``None`` or ``"lbfgs"`` = :data:`LBFGS` (strong Wolfe); ``"compact_lbfgs"`` (or ``"compact-lbfgs"``) =
        :class:`~miniff.ml_util.CompactLBFGS` (full batch, for small networks: much less work per iteration,
        history kept across epochs, stops at the first evaluation meeting the convergence criteria); ``"bfgs"``
        (or ``"dense_bfgs"``) = :class:`~miniff.ml_util.DenseBFGS` (the same with a dense inverse Hessian: fewer
        evaluations for networks of up to a few thousand parameters); any other
        string names a class of ``torch.optim`` case-insensitively (``"adam"``, ``"AdamW"``, ``"sgd"``...); a
        callable is used as is.
    """
    if optimizer is None:
        return LBFGS
    if isinstance(optimizer, str):
        if optimizer.lower() == "lbfgs":
            return LBFGS
        if optimizer.lower().replace("-", "_") == "compact_lbfgs":
            from miniff.fit.lbfgs import CompactLBFGS

            return CompactLBFGS
        if optimizer.lower().replace("-", "_") in ("dense_bfgs", "bfgs"):
            from miniff.fit.bfgs import DenseBFGS

            return DenseBFGS
        names = {n.lower(): n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type)}
        cls_name = names.get(optimizer.lower())
        if cls_name is None or not issubclass(getattr(torch.optim, cls_name), torch.optim.Optimizer):
            choices = sorted(n for n in names.values() if issubclass(getattr(torch.optim, n), torch.optim.Optimizer))
            raise ValueError(f"optimizer: unknown optimizer {optimizer!r}; choose from "
                             f"{['lbfgs', 'compact_lbfgs', 'bfgs'] + choices}")
        return getattr(torch.optim, cls_name)
    if not callable(optimizer):
        raise TypeError(f"optimizer must be None, a string or a callable, got {type(optimizer).__name__}")
    return optimizer


def _structure_weights(weights, n, like):
    """``[S]`` weights with the dtype and device of the tensor ``like`` (None stays None)."""
    if weights is None:
        return None
    w = torch.as_tensor(weights).to(like).reshape(-1)
    if w.shape[0] != n:
        raise ValueError(f"weights must have one entry per structure ({n}), got {w.shape[0]}")
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()) or float(w.sum()) <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w


def _weighted_mean(sq_s, w_s, denom_s=None):
    """``sum_s w_s sq_s / sum_s w_s denom_s`` with ``w = 1`` and ``denom = 1`` by default."""
    if w_s is None:
        num = sq_s.sum()
        den = sq_s.shape[0] if denom_s is None else denom_s.sum()
    else:
        num = (w_s * sq_s).sum()
        den = w_s.sum() if denom_s is None else (w_s * denom_s).sum()
    return num / den


def energy_loss(networks, data, criterion=None, w_energy=1, w_gradients=0, energies_p=False, weights=None,
                per_atom=False, w_l2=0, w_stress=0):
    """Loss of energies (and energy gradients) predicted by ``networks`` on ``data``.

    Parameters
    ----------
    networks : list of torch.nn.Module
        One network per species (per-point dataset), in the dataset's order.
    data : miniff.ml.Dataset
        Reference energies ``[S, 1]`` (and gradients ``[S, N, 3]`` when ``w_gradients != 0``).
    criterion : callable or None
        ``criterion(prediction, reference) -> scalar``; None = the (weighted) mean squared error above.
    w_energy, w_gradients : float
        Weights of the energy and gradient (force) terms.
    energies_p : bool
        Fit per-atom energies (``energies_p`` of the per-point datasets) instead of totals.
    weights : array-like of shape (S,) or None
        Per-structure weights (only with the default criterion).
    per_atom : bool
        Divide each energy residual by the structure's atom count (per-atom energies).
    w_l2 : float
        Weight of an L2 penalty ``w_l2 * sum(w ** 2)`` over the weight matrices (not the biases) of the networks.
    w_stress : float
        Weight of the stress term ``L_S`` (module docstring; needs a dataset built with ``stress=True``).

    Returns
    -------
    loss_result
        ``loss_id`` is ``"total"`` (components ``"energy"`` and, when used, ``"gradients"``, ``"stress"`` and
        ``"l2"``) when gradients or stresses are fitted or ``w_l2 != 0``, else ``"energy"``.
    """
    if w_l2 < 0:
        raise ValueError(f"w_l2 must be >= 0, got {w_l2}")
    if criterion is not None and weights is not None:
        raise ValueError("weights: per-structure weights need the default criterion (criterion=None)")
    grad, stress = w_gradients != 0, w_stress != 0
    pcd = data.per_cell_dataset
    if grad and (pcd.energy_g is None or not data.is_gradient_available()):
        raise ValueError("w_gradients: the dataset has no energy gradients and feature Jacobians "
                         "(build it with grad=True)")
    if stress and (pcd.stress is None or not all(d.features_strain is not None for d in data.per_point_datasets)):
        raise ValueError("w_stress: the dataset has no reference stresses and strain derivatives of the features "
                         "(build it with stress=True)")
    if stress and energies_p:
        raise ValueError("w_stress: stresses cannot be fitted with energies_p=True")
    out = _forward_any(networks, data, grad=grad, energies_p=energies_p, stress=stress)
    if energies_p:
        refs = [ppd.energies_p for ppd in data.per_point_datasets]
        de = sum(_mse(p, r, criterion) for p, r in zip(out, refs, strict=True))
        e_pred, e_ref = out, refs
    else:
        e_pred = out[0] if grad or stress else out
        e_ref = pcd.energy
        w_s = _structure_weights(weights, e_ref.shape[0], e_ref)
        if criterion is None:
            diff = (e_pred - e_ref).reshape(e_ref.shape[0])
            if per_atom:
                diff = diff / _atom_counts(data).to(diff.dtype).clamp(min=1)
            de = _weighted_mean(diff**2, w_s)
        else:
            if per_atom:
                n = _atom_counts(data).to(e_pred.dtype).clamp(min=1)[:, None]
                de = criterion(e_pred / n, e_ref / n)
            else:
                de = criterion(e_pred, e_ref)
    energy = loss_result("energy", w_energy * de, e_ref, e_pred, None)
    components = {"energy": energy}
    if grad:
        components["gradients"] = _gradient_loss(out[1], pcd, criterion, weights, w_gradients)
    if stress:
        components["stress"] = _stress_loss(out[-1], data, criterion, weights, w_stress, per_atom)
    if w_l2:
        components["l2"] = loss_result("l2", w_l2 * _weights_squared(networks), None, None, None)
    if len(components) == 1:
        return energy
    total = energy.loss_value
    for name in list(components)[1:]:  # not sum(): it would add a 0 tensor op
        total = total + components[name].loss_value
    return loss_result("total", total, None, None, components)


def share_loss(networks, data, weights, weight_total, force_total=0.0, w_energy=1, w_gradients=0, per_atom=False,
               l2=0.0):
    """The share of the full-batch :func:`energy_loss` that the structures of ``data`` carry (global denominators).

    With the structures' weights ``w_s`` and the totals over the whole training set ``W = sum_s w_s`` and
    ``G = sum_s 3 w_s n_s`` (atoms with reference forces), the share of a part ``b`` of the set is
    ``w_energy * sum_{s in b} w_s r_s^2 / W + w_gradients * sum_{s in b} w_s |G_s - G_ref_s|^2 / G + l2 * |weights|^2``:
    the shares of disjoint parts (mini-batches, the shards of several ranks) add up to the full-batch loss, and
    so do their gradients.

    Parameters
    ----------
    networks : list of torch.nn.Module
    data : miniff.ml.Dataset
        The structures of the part (with energy gradients and Jacobians when ``w_gradients != 0``).
    weights : torch.Tensor
        ``[S]`` per-structure weights of the part.
    weight_total, force_total : float
        ``W`` and ``G`` of the whole training set.
    w_energy, w_gradients, per_atom
        As in :func:`energy_loss` (default criterion).
    l2 : float
        Weight of ``sum(w ** 2)`` over the networks' weight matrices carried by this part (e.g. ``w_l2`` divided by
        the number of batches; 0 on all ranks but one).

    Returns
    -------
    torch.Tensor
        A 0-d tensor.
    """
    res = energy_loss(networks, data, None, weights=weights, w_energy=w_energy, w_gradients=w_gradients,
                      per_atom=per_atom)
    parts = res.components or {"energy": res}
    total = parts["energy"].loss_value * (weights.sum() / weight_total)
    if w_gradients:
        n_force = 3 * data.per_cell_dataset.force_mask().sum(dim=1)
        share = float((weights * n_force).sum())
        if share > 0:
            total = total + parts["gradients"].loss_value * (share / force_total)
    if l2:
        total = total + l2 * _weights_squared(networks)
    return total


def _weights_squared(networks):
    """``sum(w ** 2)`` over the weight matrices (parameters with 2+ dimensions) of the networks: one flat dot
    product (a few autograd nodes instead of two per matrix)."""
    flat = torch.cat([p.reshape(-1) for p in unique_parameters(networks) if p.ndim >= 2])
    return torch.dot(flat, flat)


def _gradient_loss(g_pred, pcd, criterion, weights, w_gradients):
    """The force term: ``g_pred`` and ``pcd.energy_g`` ``[S, N, 3]`` compared on the atoms of ``pcd.mask``."""
    from miniff.ml.cauldron import _cached

    g_ref = pcd.energy_g
    if criterion is None:
        def masks():  # the force mask [S, N] (None when all ones) and 3 * atoms [S], cached on the dataset
            m = pcd.force_mask().to(g_ref.dtype)
            return (None if bool((m == 1).all()) else m), 3 * m.sum(dim=1)

        key = (pcd.mask,) if pcd.has_forces is None else (pcd.mask, pcd.has_forces)
        mask, n_components = _cached(pcd, "_gradient_loss_cache", key, masks, extra=g_ref.dtype)
        sq_sa = ((g_pred - g_ref) ** 2).sum(dim=2)
        sq_s = (sq_sa if mask is None else sq_sa * mask).sum(dim=1)
        w_s = _structure_weights(weights, g_ref.shape[0], g_ref)
        dg = _weighted_mean(sq_s, w_s, n_components)
    else:
        dg = criterion(g_pred, g_ref)
    return loss_result("gradients", w_gradients * dg, g_ref, g_pred, None)


def _stress_loss(s_pred, data, criterion, weights, w_stress, per_atom):
    """The stress term ``L_S``: ``s_pred`` and the reference ``[S, 6]`` compared as virials (times ``V_s``; per
    atom with ``per_atom``) on the structures that have a reference stress."""
    from miniff.ml.cauldron import _cached

    pcd = data.per_cell_dataset

    def factors():  # [S] volume (per atom) of the structures with a reference stress, else 0; cached
        f = pcd.volume * pcd.stress_mask().to(pcd.dtype)
        return f / _atom_counts(data).to(pcd.dtype).clamp(min=1) if per_atom else f

    key = (pcd.volume, *(d.mask for d in data.per_point_datasets)) + (() if pcd.has_stress is None
                                                                        else (pcd.has_stress,))
    f_s = _cached(pcd, "_stress_loss_cache", key, factors, extra=(pcd.dtype, bool(per_atom)))
    diff = (s_pred - pcd.stress) * f_s[:, None]
    if criterion is None:
        w_s = _structure_weights(weights, pcd.n_samples, pcd.energy)
        h_s = (f_s != 0).to(pcd.dtype)
        wh_s = h_s if w_s is None else w_s * h_s
        if float(wh_s.sum()) == 0:   # no structure with a stress here (a validation set, a mini-batch): no term
            ds = (diff * 0).sum()
        else:
            ds = _weighted_mean((diff**2).sum(dim=1), wh_s, 6 * torch.ones_like(h_s))
    else:
        ds = criterion(diff, torch.zeros_like(diff))
    return loss_result("stress", w_stress * ds, pcd.stress, s_pred, None)


def _mse(pred, ref, criterion):
    return torch.mean((pred - ref) ** 2) if criterion is None else criterion(pred, ref)


def _forward_any(networks, data, grad, energies_p, stress=False):
    if energies_p:
        from miniff import ml

        return ml.forward_cauldron(networks, data, energies_p=True)
    return _forward(networks, data, grad, stress)


class SimpleClosure:
    """A loss, a dataset and an optimizer bundled for ``optimizer.step(closure)``.

    Parameters
    ----------
    networks : list of torch.nn.Module
        The networks whose parameters are optimised (one per species).
    loss_function : callable
        ``loss_function(networks, dataset, criterion, **loss_function_kwargs) -> loss_result``.
    dataset : miniff.ml.Dataset or None
        The default dataset of :meth:`loss`.
    criterion : callable or None
        Passed to ``loss_function``.
    optimizer : None, str or callable
        See :func:`resolve_optimizer`; LBFGS with a strong-Wolfe line search by default.
    optimizer_kwargs : dict or None
        Keyword arguments of the optimizer (``lr``, ``max_iter``, ``tolerance_grad``...).
    loss_function_kwargs : dict or None
        Extra keyword arguments of ``loss_function`` (weights...).
    convergence : dict or None
        Criteria ``{"energy_rmse": eV/atom, "energy_maxresid": eV/atom, "force_rmse": eV/Å,
        "force_maxresid": eV/Å}`` (any subset; None entries are ignored); see :meth:`converged`.
    normalization : miniff.ml.Normalization or None
        Used by :meth:`metrics` to report errors in physical units.
    """

    def __init__(self, networks, loss_function, dataset=None, criterion=None, optimizer=None,
                 optimizer_kwargs=None, loss_function_kwargs=None, convergence=None, normalization=None):
        if isinstance(networks, torch.nn.Module):
            networks = [networks]
        self.networks = list(networks)
        for i, n in enumerate(self.networks):
            if not isinstance(n, torch.nn.Module):
                raise TypeError(f"networks[{i}] must be a torch.nn.Module, got {type(n).__name__}")
        self.loss_function = loss_function
        self.dataset = dataset
        self.criterion = criterion
        self.optimizer_factory = resolve_optimizer(optimizer)
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.loss_function_kwargs = dict(loss_function_kwargs or {})
        self.convergence = _check_convergence(convergence)
        self.normalization = normalization
        self.last_loss = None
        self.optimizer = None
        self.optimizer_init()

    def learning_parameters(self):
        """All parameters of all networks (a list of tensors, each once: SingleNN views share theirs)."""
        return unique_parameters(self.networks)

    def optimizer_init(self, optimizer=None, **kwargs):
        """(Re)create the optimizer over :meth:`learning_parameters` (fresh state); return it.

        Parameters
        ----------
        optimizer : None, str or callable
            A new optimizer (see :func:`resolve_optimizer`); None keeps the current one.
        **kwargs
            Optimizer keyword arguments added to (and stored with) the current ones.
        """
        if optimizer is not None:
            self.optimizer_factory = resolve_optimizer(optimizer)
        self.optimizer_kwargs.update(kwargs)
        self.optimizer = self.optimizer_factory(self.learning_parameters(), **self.optimizer_kwargs)
        return self.optimizer

    def loss(self, dataset=None, save=True):
        """Evaluate the loss on ``dataset`` (default: the closure's dataset); store it as ``last_loss``."""
        dataset = self.dataset if dataset is None else dataset
        if dataset is None:
            raise ValueError("dataset: no dataset given and the closure has none")
        result = self.loss_function(self.networks, dataset, self.criterion, **self.loss_function_kwargs)
        if save:
            self.last_loss = result
        return result

    def propagate(self, dataset=None):
        """Zero the gradients, evaluate the loss and back-propagate; return the loss tensor."""
        self.optimizer.zero_grad()
        result = self.loss(dataset)
        value = result.loss_value
        if not math.isfinite(value.item()):
            raise RuntimeError(f"the loss is not finite ({value.item()}): lower the learning rate or check the data")
        value.backward()
        return value

    __call__ = propagate

    def optimizer_step(self):
        """One optimizer step (LBFGS: up to ``max_iter`` iterations with line search); return its loss."""
        return self.optimizer.step(self)

    @property
    def learning_rate(self):
        """Learning rate of the optimizer's first parameter group (float or None)."""
        if self.optimizer is None or not self.optimizer.param_groups:
            return None
        lr = self.optimizer.param_groups[0].get("lr")
        return float(lr) if lr is not None else None

    def metrics(self, dataset=None):
        """Error metrics of the networks on ``dataset`` (see :func:`error_metrics`)."""
        dataset = self.dataset if dataset is None else dataset
        grad = self.loss_function_kwargs.get("w_gradients", 0) != 0
        stress = self.loss_function_kwargs.get("w_stress", 0) != 0
        return error_metrics(self.networks, dataset, self.normalization, forces=grad, stress=stress)

    def converged(self, metrics=None):
        """True when every convergence criterion that is set is met (False if none is set).

        Parameters
        ----------
        metrics : dict or None
            Output of :meth:`metrics`; computed on the closure's dataset when None.
        """
        criteria = {k: v for k, v in self.convergence.items() if v is not None}
        if not criteria:
            return False
        metrics = self.metrics() if metrics is None else metrics
        return all(k in metrics and metrics[k] <= v for k, v in criteria.items())

    def converged_last(self):
        """Whether the last loss evaluation alone shows convergence (False when it cannot tell).

        Exact, and cheap, when the loss components are the per-atom energy and per-component force mean squares
        that the RMSE criteria measure: :func:`energy_loss` with the default criterion, ``per_atom=True``, no
        per-structure weights and only ``energy_rmse`` / ``force_rmse`` criteria.  Optimizers call it after every
        evaluation (:class:`~miniff.ml_util.CompactLBFGS`) to stop at the first point that meets the criteria.
        """
        rmse = self.last_rmse()
        criteria = {k: v for k, v in self.convergence.items() if v is not None}
        if rmse is None or not criteria or not set(criteria) <= set(rmse):
            return False
        return all(rmse[k] <= v for k, v in criteria.items())

    def last_rmse(self):
        """Training ``energy_rmse`` (eV/atom) and ``force_rmse`` (eV/Å) of the last evaluation, from its loss
        components; None when the loss does not measure them exactly (see :meth:`converged_last`)."""
        kw = self.loss_function_kwargs
        result = self.last_loss
        if (result is None or self.loss_function is not energy_loss or self.criterion is not None
                or not kw.get("per_atom") or kw.get("weights") is not None or kw.get("energies_p")):
            return None
        w_e = kw.get("w_energy", 1)
        if not w_e:
            return None
        cached = self.__dict__.get("_last_rmse_cache")  # optimizers and callbacks ask several times per evaluation
        if cached is not None and cached[0] is result and cached[1] is self.normalization:
            return dict(cached[2])
        e_scale, g_scale = 1.0, 1.0
        if self.normalization is not None:
            e_scale = float(self.normalization.energy_scale)
            ls = getattr(self.normalization, "length_scale", None)
            g_scale = e_scale / float(ls) if ls is not None else e_scale
        parts = result.components or {"energy": result}
        out = {"energy_rmse": math.sqrt(max(float(parts["energy"].loss_value.detach()) / w_e, 0.0)) * e_scale}
        if "gradients" in parts:
            sq = float(parts["gradients"].loss_value.detach()) / kw["w_gradients"]
            out["force_rmse"] = math.sqrt(max(sq, 0.0)) * g_scale
        self._last_rmse_cache = (result, self.normalization, out)
        return dict(out)


_METRIC_OF_CRITERION = {"energy_rmse": "energy_rmse", "energy_maxresid": "energy_max", "force_rmse": "force_rmse",
                        "force_maxresid": "force_max"}


def _check_convergence(convergence):
    if convergence is None:
        return {}
    if not isinstance(convergence, dict):
        raise TypeError(f"convergence must be a dict, got {type(convergence).__name__}")
    unknown = set(convergence) - set(CONVERGENCE_KEYS)
    if unknown:
        raise KeyError(f"convergence: unknown criteria {sorted(unknown)}; known: {list(CONVERGENCE_KEYS)}")
    out = {}
    for k, v in convergence.items():
        if v is not None and not (isinstance(v, (int, float)) and v > 0):
            raise ValueError(f"convergence[{k!r}] must be a positive number or None, got {v!r}")
        out[_METRIC_OF_CRITERION[k]] = v
    return out


def simple_energy_closure(networks, dataset=None, criterion=None, optimizer=None, optimizer_kwargs=None,
                          w_energy=1, w_gradients=0, energies_p=False, weights=None, per_atom=False,
                          convergence=None, normalization=None, w_l2=0, w_stress=0):
    """A :class:`SimpleClosure` fitting energies (and forces) with :func:`energy_loss`.

    Parameters
    ----------
    networks : list of torch.nn.Module
        One network per species, in the dataset's species order.
    dataset : miniff.ml.Dataset or None
        The training data.
    criterion : callable or None
        ``criterion(prediction, reference)``; None = (weighted) mean squared error.
    optimizer : None, str or callable
        LBFGS with strong-Wolfe line search by default; ``"adam"`` or any ``torch.optim`` name/class.
    optimizer_kwargs : dict or None
        Optimizer keyword arguments, e.g. ``{"tolerance_grad": 1e-14}`` or ``{"lr": 1e-3}``.
    w_energy, w_gradients : float
        Weights of the energy and force terms (``w_gradients != 0`` fits forces).
    energies_p : bool
        Fit per-atom energies instead of totals.
    weights : array-like of shape (S,) or None
        Per-structure weights.
    per_atom : bool
        Use per-atom energy residuals in the energy term.
    w_l2 : float
        L2 penalty on the networks' weight matrices (see :func:`energy_loss`; in normalised units).
    w_stress : float
        Weight of the stress term (``w_stress != 0`` fits stresses; see :func:`energy_loss`).
    convergence : dict or None
        Amp-like criteria ``{"energy_rmse", "energy_maxresid", "force_rmse", "force_maxresid"}``
        (eV/atom, eV/Å); see :meth:`SimpleClosure.converged`.
    normalization : miniff.ml.Normalization or None
        For metrics in physical units.

    Returns
    -------
    SimpleClosure
    """
    kwargs = dict(w_energy=w_energy, w_gradients=w_gradients, energies_p=energies_p, weights=weights,
                  per_atom=per_atom)
    if w_l2:
        kwargs["w_l2"] = w_l2
    if w_stress:
        kwargs["w_stress"] = w_stress
    return SimpleClosure(networks, energy_loss, dataset=dataset, criterion=criterion, optimizer=optimizer,
                         optimizer_kwargs=optimizer_kwargs, loss_function_kwargs=kwargs, convergence=convergence,
                         normalization=normalization)
