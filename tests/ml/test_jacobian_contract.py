"""The compiled contractions of the sparse Jacobian (``miniff._ext.jacobian``) behind ``SparseJacobian.contract``.

References are dense einsums of ``to_dense()`` (independent of the entry loops); the compiled path is compared with
the torch path of the same class, and its serial and OpenMP runs with each other (bit for bit: every sample is one
thread's, in entry order).
"""

import numpy as np
import pytest
import torch

from miniff import ml
from miniff._ext import kernel_module as _k


def _sparse_jacobian(rng, s=5, p=4, d=7, a=9, density=0.5, dtype=torch.float64):
    """A random ``SparseJacobian`` too sparse for the dense per-sample layout (so ``contract`` uses the entries);
    sample 1 has no entries."""
    dense = rng.normal(size=(s, p, d, a, 3))
    keep = rng.random((s, p, 1, a, 1)) < density
    keep[1] = False
    dense = dense * keep
    jac = ml.SparseJacobian.from_dense(torch.from_numpy(dense).to(dtype))
    assert jac.n_samples * p * a > jac.DENSE_MAX_RATIO * jac.n_entries
    return jac


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
@pytest.mark.parametrize("pad", [0, 2])
def test_compiled_contraction_equals_dense_einsum(rng, dtype, tol, pad):
    jac = _sparse_jacobian(rng, dtype=dtype)
    dense = jac.to_dense().double()
    dE_dF = torch.from_numpy(rng.normal(size=(jac.n_samples, jac.n_points + pad, jac.n_features))).to(dtype)
    assert jac._compiled(dE_dF)
    out = jac.contract(dE_dF.requires_grad_(True))
    ref = torch.einsum("spd,spdac->sac", dE_dF.detach().double()[:, :jac.n_points], dense)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    # the transpose (backward): d/d dE_dF of sum(w * out) = sum_ac w[s, a, c] J[s, p, d, a, c]
    w = torch.from_numpy(rng.normal(size=tuple(out.shape))).to(dtype)
    (grad,) = torch.autograd.grad((out * w).sum(), dE_dF)
    ref_grad = torch.zeros(jac.n_samples, jac.n_points + pad, jac.n_features, dtype=torch.float64)
    ref_grad[:, :jac.n_points] = torch.einsum("sac,spdac->spd", w.double(), dense)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol)


def test_compiled_and_torch_paths_agree(rng, monkeypatch):
    jac = _sparse_jacobian(rng)
    dE_dF = torch.from_numpy(rng.normal(size=(jac.n_samples, jac.n_points, jac.n_features))).requires_grad_(True)
    w = torch.from_numpy(rng.normal(size=(jac.n_samples, jac.n_atoms, 3)))
    fast = jac.contract(dE_dF)
    (fast_grad,) = torch.autograd.grad((fast * w).sum(), dE_dF)
    monkeypatch.setattr(ml.SparseJacobian, "_compiled", lambda self, x: False)
    slow = jac.contract(dE_dF)
    (slow_grad,) = torch.autograd.grad((slow * w).sum(), dE_dF)
    torch.testing.assert_close(fast, slow, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-13, atol=1e-13)


def test_compiled_contraction_second_derivatives(rng):
    """Under ``create_graph`` the backward is differentiable (torch operations)."""
    jac = _sparse_jacobian(rng, s=3, p=2, d=3, a=5)
    dE_dF = torch.from_numpy(rng.normal(size=(3, 2, 3))).requires_grad_(True)
    assert jac._compiled(dE_dF)
    assert torch.autograd.gradcheck(jac.contract, (dE_dF,))
    assert torch.autograd.gradgradcheck(lambda x: jac.contract(x) ** 2, (dE_dF,))


def test_values_with_gradients_take_the_torch_path(rng):
    jac = _sparse_jacobian(rng, s=3, p=2, d=3, a=5)
    values = jac.values_edc.clone().requires_grad_(True)
    dE_dF = torch.from_numpy(rng.normal(size=(3, 2, 3)))
    moving = jac.with_values(values)
    assert not moving._compiled(dE_dF)
    assert torch.autograd.gradcheck(lambda v: jac.with_values(v).contract(dE_dF), (values,))


@pytest.mark.parametrize("n_threads", [2, 3])
def test_serial_and_openmp_kernels_agree_bit_for_bit(rng, n_threads):
    jac = _sparse_jacobian(rng, s=7, p=5, d=13, a=11)
    s, p, a, f = jac.n_samples, jac.n_points, jac.n_atoms, jac.n_features
    arrays = jac._compiled_arrays()
    g = rng.normal(size=(s * p, f))
    x = rng.normal(size=(s * a, 3))
    outs = []
    for nt in (1, n_threads):
        out_ac, out_rf = np.zeros((s * a, 3)), np.zeros((s * p, f))
        _k.jacobian_contract(*arrays, g, out_ac, p, a, nt)
        _k.jacobian_contract_t(*arrays, x, out_rf, p, a, nt)
        outs.append((out_ac, out_rf))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_kernel_rejects_mismatched_shapes(rng):
    jac = _sparse_jacobian(rng, s=3, p=2, d=3, a=5)
    arrays = jac._compiled_arrays()
    with pytest.raises(ValueError, match="shapes disagree"):
        _k.jacobian_contract(*arrays, np.zeros((3 * 2, 4)), np.zeros((3 * 5, 3)), 2, 5, 1)
    with pytest.raises(ValueError, match="shapes disagree"):
        _k.jacobian_contract_t(*arrays, np.zeros((3 * 4, 3)), np.zeros((3 * 2, 3)), 2, 5, 1)


class _Pairs:
    def __init__(self, i_p):
        self.i_p = i_p
        self.n_pairs = len(i_p)


class _Wrapper:
    """The two things ``contract_pairs`` reads of a ``NeighborWrapper``: the pair count and centres."""

    def __init__(self, i_p):
        self.pairs = _Pairs(i_p)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("all_selected", [True, False])
def test_contract_pairs_equals_einsum(rng, k, all_selected):
    """Per-pair gradients of K networks: ``grad[k, p] = g_k[row(i_p)] . jac[p]`` for selected centres, 0 else
    (reference: a dense einsum over the pairs' centre rows)."""
    from miniff.ml.potential import contract_pairs

    n, f, n_pairs = 9, 7, 40
    i_p = np.sort(rng.integers(0, n, n_pairs))
    sel = np.ones(n, bool) if all_selected else rng.random(n) < 0.6
    sel[i_p[0]] = True
    jac = rng.normal(size=(n_pairs, f, 3))
    g_ksf = [torch.from_numpy(rng.normal(size=(int(sel.sum()), f))) for _ in range(k)]
    out = contract_pairs(_Wrapper(i_p), sel, g_ksf, jac)
    full = np.zeros((k, n, f))
    full[:, sel] = np.stack([g.numpy() for g in g_ksf])
    ref = np.einsum("kpf,pfc->kpc", full[:, i_p], jac)
    assert out.shape == (k, n_pairs, 3) and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-13)
    assert np.all(out[:, ~sel[i_p]] == 0.0)
    # none selected, or a member without gradients: zeros
    assert not contract_pairs(_Wrapper(i_p), np.zeros(n, bool), [None] * k, None).any()
    with pytest.raises(ValueError, match="g_ksf must be"):
        contract_pairs(_Wrapper(i_p), sel, [torch.zeros(int(sel.sum()) + 1, f)] * k, jac)
    with pytest.raises(ValueError, match="jac_pfc"):
        contract_pairs(_Wrapper(i_p), sel, g_ksf, jac[:-1])


@pytest.mark.parametrize("n_threads", [2, 3])
def test_pair_contract_serial_and_openmp_agree_bit_for_bit(rng, n_threads):
    n_pairs, rows, k, f = 3001, 50, 5, 11
    rows_p = rng.integers(-1, rows, n_pairs)
    values = rng.normal(size=(n_pairs, f, 3))
    g = rng.normal(size=(rows, k, f))
    outs = []
    for nt in (1, n_threads):
        out = np.full((k, n_pairs, 3), 7.0)   # skipped pairs keep what is there
        _k.pair_contract(rows_p, values, g, out, nt)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.all(outs[0][:, rows_p < 0] == 7.0)
    keep = rows_p >= 0
    np.testing.assert_allclose(outs[0][:, keep], np.einsum("pkf,pfc->kpc", g[rows_p[keep]], values[keep]),
                               rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="shapes disagree"):
        _k.pair_contract(rows_p, values, g, np.zeros((k, n_pairs - 1, 3)), 1)
