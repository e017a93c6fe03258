"""Sparse descriptor Jacobians for force training.

The derivative of the features of one species with respect to the atomic positions is stored in
coordinate (COO) form: entry ``e`` says that feature vector ``features[sample_e[e], point_e[e], :]``
depends on the position of atom ``atom_e[e]`` of the same sample with the derivative
``values_edc[e] = d features[s, p, :] / d r[s, a, :]`` (shape ``[F, 3]``, 1/Å for unit-less
descriptors).  Built from the per-pair Jacobian of ``eval_descriptors`` (Contract 3), there is one
entry per pair ``(i, j)`` (``+jac`` on the neighbour ``j``) and one self entry per atom ``i``
(``-sum of jac`` over its pairs), so memory grows like pairs x descriptors, never like atoms^2.

Entries are sorted by sample; ``ptr_s`` (``[S + 1]``) delimits the entries of each sample so that
selecting samples is a cheap gather.
"""

import numpy as np
import torch

from miniff._ext import kernel_module as _k
from miniff._ext.threads import auto_n_threads

__all__ = ["SparseJacobian"]

#: Entries per thread of the compiled contractions (fewer run serially).
_ENTRIES_PER_THREAD = 2000


def _as_index(name, x):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(x.shape)}")
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {x.dtype}")
    return x.to(torch.int64)


def _on_cpu(*tensors):
    return all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)


def _batched_vecmat(g_ed, v_edc):
    """``out[e, c] = sum_d g[e, d] v[e, d, c]``: on the CPU numpy's stacked matmul (about twice as fast as
    ``torch.bmm`` for these many tiny products), elsewhere ``torch.bmm``."""
    if _on_cpu(g_ed, v_edc):
        g = np.ascontiguousarray(g_ed.detach().numpy())
        return torch.from_numpy(np.matmul(g[:, None, :], v_edc.detach().numpy())[:, 0, :])
    return torch.bmm(g_ed.unsqueeze(1), v_edc).squeeze(1)


def _batched_matvec(v_edc, x_ec):
    """``out[e, d] = sum_c v[e, d, c] x[e, c]`` (numpy on the CPU, as :func:`_batched_vecmat`)."""
    if _on_cpu(v_edc, x_ec):
        x = np.ascontiguousarray(x_ec.detach().numpy())
        return torch.from_numpy(np.matmul(v_edc.detach().numpy(), x[:, :, None])[:, :, 0])
    return torch.bmm(v_edc, x_ec.unsqueeze(2)).squeeze(2)


class _EntryDot(torch.autograd.Function):
    """``out[e, c] = sum_d g[e, d] * v[e, d, c]`` with a transpose-free backward (``v`` is a constant)."""

    @staticmethod
    def forward(ctx, g_ed, v_edc):
        ctx.save_for_backward(g_ed if ctx.needs_input_grad[1] else None, v_edc)  # keep memory low
        return _batched_vecmat(g_ed, v_edc)

    @staticmethod
    def backward(ctx, grad_ec):
        g_ed, v_edc = ctx.saved_tensors
        grad_g = grad_v = None
        if ctx.needs_input_grad[0]:
            if torch.is_grad_enabled():   # create_graph: a differentiable backward (second derivatives)
                grad_g = torch.bmm(v_edc, grad_ec.unsqueeze(2)).squeeze(2)
            else:
                grad_g = _batched_matvec(v_edc, grad_ec)
        if ctx.needs_input_grad[1]:
            grad_v = g_ed.unsqueeze(2) * grad_ec.unsqueeze(1)
        return grad_g, grad_v


def _threads(n_entries):
    return auto_n_threads(None, n_entries, _ENTRIES_PER_THREAD)


class _CompiledContract(torch.autograd.Function):
    """``out [S * N, 3]`` = the contraction of ``g_rf [S * M, F]`` (dE/dF per point row) with the Jacobian ``jac``
    (CPU, the values' dtype, constant values): one compiled pass over the entries, no ``[E, F]`` intermediate.
    The backward is the compiled transpose, or differentiable torch operations under ``create_graph``."""

    @staticmethod
    def forward(ctx, g_rf, jac, n_points):
        ctx.jac, ctx.n_points = jac, n_points
        out = g_rf.new_zeros(jac.n_samples * jac.n_atoms, 3)
        _k.jacobian_contract(*jac._compiled_arrays(), g_rf.detach().contiguous().numpy(), out.numpy(), n_points,
                             jac.n_atoms, _threads(jac.n_entries))
        return out

    @staticmethod
    def backward(ctx, grad_ac):
        jac, p = ctx.jac, ctx.n_points
        if not ctx.needs_input_grad[0]:
            return None, None, None
        if torch.is_grad_enabled():   # create_graph: a differentiable backward (second derivatives)
            x_ec = grad_ac.index_select(0, jac.sample_e * jac.n_atoms + jac.atom_e)
            g_ed = torch.bmm(jac.values_edc, x_ec.unsqueeze(2)).squeeze(2)
            grad = grad_ac.new_zeros(jac.n_samples * p, jac.n_features)
            return grad.index_add(0, jac.sample_e * p + jac.point_e, g_ed), None, None
        grad = grad_ac.new_zeros(jac.n_samples * p, jac.n_features)
        _k.jacobian_contract_t(*jac._compiled_arrays(), grad_ac.detach().contiguous().numpy(), grad.numpy(), p,
                               jac.n_atoms, _threads(jac.n_entries))
        return grad, None, None


class SparseJacobian:
    """Feature derivatives with respect to atomic positions in COO form (see the module docstring).

    Parameters
    ----------
    sample_e, point_e, atom_e : Tensor of shape (n_entries,), int64
        Sample, point (atom of this species, padded index) and atom (index within the cell) of every
        entry.  ``sample_e`` must be sorted (non-decreasing).
    values_edc : Tensor of shape (n_entries, n_features, 3), floating point, 1/Å
        ``d features[s, p, :] / d r[s, a, :]`` for every entry.
    n_samples, n_points, n_atoms : int
        The dense shape ``[S, M, N]`` the indices refer to.
    """

    def __init__(self, sample_e, point_e, atom_e, values_edc, n_samples, n_points, n_atoms):
        sample_e = _as_index("sample_e", sample_e)
        point_e = _as_index("point_e", point_e)
        atom_e = _as_index("atom_e", atom_e)
        if not isinstance(values_edc, torch.Tensor):
            raise TypeError(f"values_edc must be a torch.Tensor, got {type(values_edc).__name__}")
        if values_edc.ndim != 3 or values_edc.shape[2] != 3:
            raise ValueError(f"values_edc must have shape (n_entries, n_features, 3), got {tuple(values_edc.shape)}")
        if not values_edc.dtype.is_floating_point:
            raise ValueError(f"values_edc must be floating point, got {values_edc.dtype}")
        n = len(values_edc)
        for name, x in (("sample_e", sample_e), ("point_e", point_e), ("atom_e", atom_e)):
            if len(x) != n:
                raise ValueError(f"{name} has {len(x)} entries but values_edc has {n}")
        for name, x, bound in (("sample_e", sample_e, n_samples), ("point_e", point_e, n_points),
                               ("atom_e", atom_e, n_atoms)):
            if n and (int(x.min()) < 0 or int(x.max()) >= bound):
                raise ValueError(f"{name} has indices outside [0, {bound})")
        if n > 1 and bool((sample_e[1:] < sample_e[:-1]).any()):
            raise ValueError("sample_e must be sorted (non-decreasing)")
        if not (n == 0 or bool(torch.isfinite(values_edc.sum())) or bool(torch.isfinite(values_edc).all())):
            raise ValueError("features_g (values_edc) contains NaN or inf")
        self.sample_e = sample_e
        self.point_e = point_e
        self.atom_e = atom_e
        self.values_edc = values_edc
        self.n_samples = int(n_samples)
        self.n_points = int(n_points)
        self.n_atoms = int(n_atoms)
        counts = torch.bincount(sample_e, minlength=self.n_samples)
        self.ptr_s = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])

    # ------------------------------------------------------------------ properties
    @property
    def dtype(self):
        """Floating-point dtype of the values."""
        return self.values_edc.dtype

    @property
    def n_features(self):
        """Number of features F."""
        return self.values_edc.shape[1]

    @property
    def n_entries(self):
        """Number of stored entries E."""
        return len(self.values_edc)

    def __repr__(self):
        return (f"SparseJacobian(n_samples={self.n_samples}, n_points={self.n_points}, n_atoms={self.n_atoms}, "
                f"n_features={self.n_features}, n_entries={self.n_entries}, dtype={self.dtype})")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_dense(cls, features_g):
        """Build from the dense 0.1.4 layout (legacy input).

        Parameters
        ----------
        features_g : Tensor of shape (S, M, F, N, 3)
            ``features_g[s, p, d, a, :] = d features[s, p, d] / d r[s, a, :]``.

        Returns
        -------
        SparseJacobian
            One entry per ``(s, p, a)`` with a nonzero derivative.
        """
        if not isinstance(features_g, torch.Tensor):
            raise TypeError(f"features_g must be a torch.Tensor, got {type(features_g).__name__}")
        if features_g.ndim != 5 or features_g.shape[4] != 3:
            raise ValueError(f"features_g must have shape (S, M, F, N, 3), got {tuple(features_g.shape)}")
        s, p, d, a, _ = features_g.shape
        v = features_g.permute(0, 1, 3, 2, 4)  # [S, M, N, F, 3]
        nz = (v != 0).flatten(3).any(-1)
        idx = nz.nonzero()
        values = v[idx[:, 0], idx[:, 1], idx[:, 2]]
        return cls(idx[:, 0], idx[:, 1], idx[:, 2], values, s, p, a)

    @property
    def shape(self):
        """The logical dense shape ``[S, M, F, N, 3]`` (``torch.Size``), as 0.1.4's dense ``features_g``; the data
        stay sparse (:meth:`to_dense` builds the tensor)."""
        return torch.Size((self.n_samples, self.n_points, self.n_features, self.n_atoms, 3))

    @property
    def ndim(self):
        """5, the number of dimensions of :attr:`shape`."""
        return 5

    def to_dense(self):
        """The dense ``[S, M, F, N, 3]`` tensor (for tests and small systems only)."""
        out = torch.zeros(self.n_samples, self.n_points, self.n_atoms, self.n_features, 3, dtype=self.dtype)
        out.index_put_((self.sample_e, self.point_e, self.atom_e), self.values_edc, accumulate=True)
        return out.permute(0, 1, 3, 2, 4).contiguous()

    # ------------------------------------------------------------------ transforms
    def with_values(self, values_edc):
        """A copy with the same indices and new values ``[E, D', 3]``."""
        out = object.__new__(SparseJacobian)
        out.__dict__.update(self.__dict__)
        out.__dict__.pop("_dense_cache", None)  # the copy may get other values or another dense shape
        if values_edc.shape[0] != self.n_entries or values_edc.ndim != 3:
            raise ValueError(f"values_edc must have shape ({self.n_entries}, F, 3), got {tuple(values_edc.shape)}")
        out.values_edc = values_edc
        return out

    def to(self, dtype):
        """A copy with values cast to ``dtype``."""
        return self.with_values(self.values_edc.to(dtype))

    def padded(self, n_points=None, n_atoms=None):
        """The same entries referring to a larger dense shape (padding is free in COO form)."""
        n_points = self.n_points if n_points is None else int(n_points)
        n_atoms = self.n_atoms if n_atoms is None else int(n_atoms)
        if n_points < self.n_points or n_atoms < self.n_atoms:
            raise ValueError("padding cannot shrink the Jacobian")
        out = self.with_values(self.values_edc)
        out.n_points, out.n_atoms = n_points, n_atoms
        return out

    def subset(self, indices):
        """Select samples (in the given order; repetitions allowed).

        Parameters
        ----------
        indices : Tensor of shape (K,), int64
            Sample indices.

        Returns
        -------
        SparseJacobian
            With ``n_samples = K``; sample ``k`` of the result is sample ``indices[k]`` of this one.
        """
        indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).to(self.ptr_s.device)
        start = self.ptr_s[indices]
        count = self.ptr_s[indices + 1] - start
        total = int(count.sum())
        new_sample = torch.repeat_interleave(torch.arange(len(indices), device=count.device), count)
        offsets = torch.cumsum(count, 0) - count
        entries = torch.arange(total, device=count.device) - torch.repeat_interleave(offsets - start, count)
        return SparseJacobian(new_sample, self.point_e[entries], self.atom_e[entries], self.values_edc[entries],
                              len(indices), self.n_points, self.n_atoms)

    @staticmethod
    def cat(items, n_points=None, n_atoms=None):
        """Concatenate Jacobians along samples (padding points and atoms to the largest)."""
        items = list(items)
        if not items:
            raise ValueError("items must not be empty")
        n_points = max(i.n_points for i in items) if n_points is None else n_points
        n_atoms = max(i.n_atoms for i in items) if n_atoms is None else n_atoms
        offsets = [0]
        for i in items:
            offsets.append(offsets[-1] + i.n_samples)
        return SparseJacobian(
            torch.cat([i.sample_e + o for i, o in zip(items, offsets, strict=False)]),
            torch.cat([i.point_e for i in items]),
            torch.cat([i.atom_e for i in items]),
            torch.cat([i.values_edc for i in items]),
            offsets[-1], n_points, n_atoms,
        )

    # ------------------------------------------------------------------ contraction
    #: The dense per-sample layout ``[S, M * F, N * 3]`` is used by :meth:`contract` when it holds at most this
    #: many times the stored entries' values (small cells, where most atom pairs are neighbours).
    DENSE_MAX_RATIO = 1.5

    def _dense(self, p):
        """The dense ``[S, m * F, N * 3]`` Jacobian (cached) or None when it would be too large."""
        size = self.n_samples * p * self.n_atoms
        if size == 0 or size > self.DENSE_MAX_RATIO * max(self.n_entries, 1) or self.values_edc.requires_grad:
            return None
        key = (p, self.n_samples, self.n_atoms, id(self.values_edc), self.values_edc._version)
        cached = self.__dict__.get("_dense_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        d = self.n_features
        dense = self.values_edc.new_zeros(self.n_samples * p * self.n_atoms, d, 3)
        dense.index_add_(0, (self.sample_e * p + self.point_e) * self.n_atoms + self.atom_e, self.values_edc)
        # [S, M, N, F, 3] -> [S, M, F, N, 3]
        dense = dense.view(self.n_samples, p, self.n_atoms, d, 3).permute(0, 1, 3, 2, 4).reshape(
            self.n_samples, p * d, self.n_atoms * 3).contiguous()
        self.__dict__["_dense_cache"] = (key, dense, self.values_edc)  # keeping the values keeps their id unique
        return dense

    def _compiled(self, dE_dF):
        """Whether :meth:`contract` can take the compiled path: CPU tensors of one float dtype, constant values, C
        order."""
        v = self.values_edc
        return (v.device.type == "cpu" and dE_dF.device.type == "cpu" and v.dtype in (torch.float32, torch.float64)
                and dE_dF.dtype == v.dtype and not v.requires_grad and v.is_contiguous()
                and self.point_e.is_contiguous() and self.atom_e.is_contiguous() and self.ptr_s.device.type == "cpu")

    def _compiled_arrays(self):
        """``(ptr_s, point_e, atom_e, values_edc)`` as numpy views for the compiled contractions."""
        return (self.ptr_s.numpy(), self.point_e.numpy(), self.atom_e.numpy(), self.values_edc.detach().numpy())

    def contract(self, dE_dF, resolve=False):
        """Chain rule: energy gradients with respect to positions.

        Parameters
        ----------
        dE_dF : Tensor of shape (S, M, F)
            Derivatives of the energy by the features (eV per feature unit).
        resolve : bool
            If True keep the point axis: ``[S, M, N, 3]`` (dense; small systems only).

        Returns
        -------
        Tensor of shape (S, N, 3), eV/Å
            ``sum_{p, d} dE_dF[s, p, d] * features_g[s, p, d, a, :]``.  Differentiable (gather + index_add).
        """
        if dE_dF.ndim != 3 or dE_dF.shape[2] != self.n_features:
            raise ValueError(f"dE_dF must have shape (S, M, {self.n_features}), got {tuple(dE_dF.shape)}")
        s, p = dE_dF.shape[:2]
        if s != self.n_samples or p < self.n_points:
            raise ValueError(f"dE_dF shape {tuple(dE_dF.shape)} does not match the Jacobian "
                             f"(S={self.n_samples}, M={self.n_points})")
        if not resolve:
            dense = self._dense(p)
            if dense is not None:  # small cells: one batched product with the dense per-sample Jacobian
                return torch.bmm(dE_dF.reshape(s, 1, -1), dense).reshape(s, self.n_atoms, 3)
        if not resolve and self._compiled(dE_dF):  # CPU: one compiled pass, no [E, F] intermediate
            return _CompiledContract.apply(dE_dF.reshape(s * p, self.n_features), self, p).reshape(s, self.n_atoms, 3)
        g_ed = dE_dF.reshape(s * p, self.n_features).index_select(0, self.sample_e * p + self.point_e)
        contrib_ec = _EntryDot.apply(g_ed, self.values_edc)
        if resolve:
            out = dE_dF.new_zeros(s * p * self.n_atoms, 3)
            flat = (self.sample_e * p + self.point_e) * self.n_atoms + self.atom_e
            return out.index_add(0, flat, contrib_ec).reshape(s, p, self.n_atoms, 3)
        out = dE_dF.new_zeros(s * self.n_atoms, 3)
        flat = self.sample_e * self.n_atoms + self.atom_e
        return out.index_add(0, flat, contrib_ec).reshape(s, self.n_atoms, 3)
