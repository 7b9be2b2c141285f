"""bncourse.cpu against PyTorch, autograd, finite differences and float64 ground truth."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import shapes

from bncourse import cpu, cpu_fast

# Tolerances are relative to the size of the quantities compared (see `close`).
# float64: the reference and torch differ only by summation order over m <= 280
# values, so errors are ~1e-14; 1e-9 leaves room and still catches any wrong term.
# float32 (against float64 ground truth on the same inputs): eps is 1.2e-7, and BN's
# sums over m <= 280 values plus the cancellation in dx (m*dout - sum - x_hat*sum)
# cost up to a few hundred ulps: 2e-5 is ~170 ulps of the largest entry.
TOL = {np.float32: 2e-5, np.float64: 1e-9}

dtypes = st.sampled_from([np.float32, np.float64])


def close(actual, expected, dtype, scale=None):
    """assert_allclose with atol = TOL * (the typical size of the terms that were summed)."""
    expected = np.asarray(expected, dtype=np.float64)
    if scale is None:
        scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype] * scale)


def random_case(shape, dtype, seed):
    """x with per-channel means and spreads that differ, gamma (some negative), beta, dout."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    per_channel = (1, channels) + (1,) * (len(shape) - 2)
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, per_channel) + rng.uniform(-5, 5, per_channel)
    gamma = rng.uniform(0.5, 2, channels) * rng.choice([-1, 1], channels)
    beta = rng.standard_normal(channels)
    dout = rng.standard_normal(shape)
    return [a.astype(dtype) for a in (x, gamma, beta, dout)]


def grad_scale(x, gamma, dout, eps=1e-5):
    """Size of the terms dx is built from: |gamma| * |dout| / sigma_B (dx itself may be ~0)."""
    axes = (0, *range(2, x.ndim))
    inv_std = 1 / np.sqrt(x.astype(np.float64).var(axis=axes) + eps)
    return max(1.0, float(np.abs(gamma).max() * np.abs(dout).max() * inv_std.max()))


def torch_train(x, gamma, beta, dout):
    """Output and gradients of torch's own training-mode BN (autograd), in float64.

    float64 on the exact values of the (possibly float32) inputs is the ground truth. torch's
    float32 kernel is not: it does not repair the rounding of mu_B, which a near-constant
    channel (sigma_B << ulp(mu_B) / sqrt(eps)) amplifies by up to 1/sqrt(eps) = 316 (e.g.
    x = (4.7, 4.7 + 5e-5): torch float32 is 2e-4 from the truth, bncourse.cpu 1e-11).
    """
    xt, gt, bt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, gamma, beta))
    out = F.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-5)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return out.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


@settings(max_examples=30, deadline=None)
@given(shape=shapes, dtype=dtypes, seed=st.integers(0, 2**32 - 1))
@pytest.mark.parametrize("module", [cpu, cpu_fast], ids=["cpu", "cpu_fast"])
def test_forward_and_backward_match_torch(module, shape, dtype, seed):
    x, gamma, beta, dout = random_case(shape, dtype, seed)
    out, cache = module.batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = module.batchnorm_backward(dout, cache)
    t_out, t_dx, t_dgamma, t_dbeta = torch_train(x, gamma, beta, dout)

    assert out.dtype == dx.dtype == dgamma.dtype == dbeta.dtype == dtype
    assert out.shape == dx.shape == x.shape and dgamma.shape == dbeta.shape == (shape[1],)
    close(out, t_out, dtype)
    close(dx, t_dx, dtype, scale=grad_scale(x, gamma, dout))
    # dgamma and dbeta are sums of m terms; a sum's rounding error is bounded relative to
    # the sum of the terms' magnitudes, which is therefore the scale here.
    axes = (0, *range(2, x.ndim))
    x64 = x.astype(np.float64)
    x_hat = (x64 - x64.mean(axis=axes, keepdims=True)) / np.sqrt(x64.var(axis=axes, keepdims=True) + 1e-5)
    close(dgamma, t_dgamma, dtype, scale=np.abs(dout * x_hat).sum(axis=axes).max())
    close(dbeta, t_dbeta, dtype, scale=np.abs(dout).sum(axis=axes).max())


@settings(max_examples=20, deadline=None)
@given(shape=shapes, dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_inference_matches_torch_eval(shape, dtype, seed):
    x, gamma, beta, _ = random_case(shape, dtype, seed)
    rng = np.random.default_rng(seed + 1)
    running_mean = rng.standard_normal(shape[1]).astype(dtype)
    running_var = rng.uniform(0.1, 4, shape[1]).astype(dtype)
    out = cpu.batchnorm_inference(x, gamma, beta, running_mean, running_var)
    expected = F.batch_norm(*(torch.tensor(a) for a in (x, running_mean, running_var, gamma, beta)), training=False)
    assert out.dtype == dtype and out.shape == x.shape
    close(out, expected.numpy(), dtype)


@settings(max_examples=20, deadline=None)
@given(shape=shapes, dtype=dtypes, momentum=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_update_running_stats_matches_torch(shape, dtype, momentum, seed):
    x, _, _, _ = random_case(shape, dtype, seed)
    rng = np.random.default_rng(seed + 2)
    running_mean = rng.standard_normal(shape[1]).astype(dtype)
    running_var = rng.uniform(0.1, 4, shape[1]).astype(dtype)
    before = running_mean.copy(), running_var.copy()
    new_mean, new_var = cpu.update_running_stats(running_mean, running_var, x, momentum)

    t_mean, t_var = torch.tensor(running_mean), torch.tensor(running_var)
    F.batch_norm(torch.tensor(x), t_mean, t_var, training=True, momentum=momentum)
    close(new_mean, t_mean.numpy(), dtype)
    close(new_var, t_var.numpy(), dtype)
    assert new_mean.dtype == new_var.dtype == dtype
    np.testing.assert_array_equal(running_mean, before[0])  # inputs are not mutated
    np.testing.assert_array_equal(running_var, before[1])


def test_population_stats_equal_torch_cumulative_average():
    """With momentum=None torch averages batch means and unbiased batch variances, as Algorithm 2."""
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((6, 3, 2, 2)) * [[[[1]], [[2]], [[3]]]] + 4 for _ in range(5)]
    mean, var = cpu.population_stats(iter(batches))  # any iterable, read once

    layer = torch.nn.BatchNorm2d(3, momentum=None, dtype=torch.float64)
    for batch in batches:
        layer(torch.tensor(batch))
    close(mean, layer.running_mean.numpy(), np.float64)
    close(var, layer.running_var.numpy(), np.float64)
    # Equal batch sizes, so E[x] is also the mean of all values together.
    close(mean, np.concatenate(batches).mean(axis=(0, 2, 3)), np.float64)


def central_differences(f, x, dout, step=1e-6):
    """d(sum(f(x) * dout))/dx by central differences, one entry at a time (test-only loop)."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        shifted = x.copy()
        shifted[index] += step
        plus = np.sum(f(shifted) * dout)
        shifted[index] -= 2 * step
        minus = np.sum(f(shifted) * dout)
        grad[index] = (plus - minus) / (2 * step)
    return grad


@pytest.mark.parametrize("shape", [(2, 1), (5, 3), (4, 2, 3), (3, 2, 2, 3)])
@pytest.mark.parametrize("module", [cpu, cpu_fast], ids=["cpu", "cpu_fast"])
def test_backward_matches_finite_differences(module, shape):
    x, gamma, beta, dout = random_case(shape, np.float64, seed=sum(shape))
    _, cache = module.batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = module.batchnorm_backward(dout, cache)

    def out_of(x_=x, gamma_=gamma, beta_=beta):
        return cpu.batchnorm_forward(x_, gamma_, beta_)[0]

    # Central differences with step 1e-6 have truncation error ~step^2 * f''' ~ 1e-12 and
    # rounding error ~1e-16 / 1e-6 = 1e-10 per entry: 1e-6 relative is ample yet catches a
    # missing term (which is O(1)).
    tol = {"rtol": 1e-6, "atol": 1e-6 * grad_scale(x, gamma, dout)}
    np.testing.assert_allclose(dx, central_differences(out_of, x, dout), **tol)
    np.testing.assert_allclose(dgamma, central_differences(lambda g: out_of(gamma_=g), gamma, dout), **tol)
    np.testing.assert_allclose(dbeta, central_differences(lambda b: out_of(beta_=b), beta, dout), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fold_batchnorm_matches_linear_and_conv_then_bn(dtype):
    torch_dtype = torch.float32 if dtype == np.float32 else torch.float64
    torch.manual_seed(0)
    for layer, x in [
        (torch.nn.Linear(5, 4, dtype=torch_dtype), torch.randn(7, 5, dtype=torch_dtype)),
        (
            torch.nn.Conv2d(3, 4, 3, bias=False, dtype=torch_dtype),
            torch.randn(2, 3, 6, 6, dtype=torch_dtype),
        ),
    ]:
        # A non-default eps, so that folding with the default one would show.
        bn_cls = torch.nn.BatchNorm1d if x.ndim == 2 else torch.nn.BatchNorm2d
        bn = bn_cls(4, eps=0.1, dtype=torch_dtype)
        with torch.no_grad():
            bn.weight.uniform_(-2, 2)
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.2, 3)
        pair = torch.nn.Sequential(layer, bn).eval()
        bias = None if layer.bias is None else layer.bias.detach().numpy()
        weight, folded_bias = cpu.fold_batchnorm(
            layer.weight.detach().numpy(),
            bias,
            *(t.detach().numpy() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)),
            eps=bn.eps,
        )
        assert weight.dtype == folded_bias.dtype == dtype
        folded = (
            F.linear(x, torch.tensor(weight), torch.tensor(folded_bias))
            if x.ndim == 2
            else F.conv2d(x, torch.tensor(weight), torch.tensor(folded_bias))
        )
        expected = pair(x).detach().numpy()
        # The folded layer sums 5 or 27 products in another order than the pair: the
        # float32 tolerance (~170 ulps of the largest output) covers it.
        close(folded.detach().numpy(), expected, dtype)


@pytest.mark.parametrize("eps", [1e-5, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardize_matches_float64_formula(dtype, eps):
    x = np.random.default_rng(1).standard_normal((50, 4)) * [1, 10, 0.1, 3] + [0, 5, -2, 100]
    x = x.astype(dtype)
    out = cpu.standardize(x, eps=eps)
    # Ground truth in float64 on the values the function received (not on the unrounded x,
    # whose float32 rounding alone moves the result by ~1e-6).
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(axis=0)) / np.sqrt(x64.var(axis=0) + eps)
    assert out.dtype == dtype
    close(out, expected, dtype)


@pytest.mark.parametrize("method", ["zca", "pca"])
def test_whiten_gives_identity_covariance(method):
    rng = np.random.default_rng(2)
    mixing = rng.standard_normal((4, 4))
    x = rng.standard_normal((300, 4)) @ mixing + [1, 2, 3, 4]
    x_white, W, mean = cpu.whiten(x, method=method)
    cov = x_white.T @ x_white / len(x)
    sigma = np.cov(x.T, bias=True)
    eigenvalues = np.linalg.eigvalsh(sigma)
    # cov(x_white) = diag(lambda / (lambda + eps)): off by eps / lambda_min from I; twice
    # that bound, plus float64 rounding (1e-12), still fails if eps were ignored or doubled.
    np.testing.assert_allclose(cov, np.eye(4), atol=2e-5 / eigenvalues.min() + 1e-12)
    # float64 on values of size <= ~20 (mean, x_white): 1e-12 is ~1e3 ulps.
    np.testing.assert_allclose(mean, x.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(x_white, (x - mean) @ W, atol=1e-12)
    # eigh's vectors are accurate to ~eps * ||Sigma|| / (eigenvalue gap) ~ 1e-15 * cond(Sigma);
    # Sigma here has cond ~ 1e2, so 1e-10 (1e-8 for the triple product) is ample margin.
    if method == "zca":
        # ZCA's W is (Sigma + eps I)^(-1/2): symmetric, and squares to the inverse.
        np.testing.assert_allclose(W, W.T, atol=1e-10)
        np.testing.assert_allclose(W @ W @ (sigma + 1e-5 * np.eye(4)), np.eye(4), atol=1e-8)
    else:
        # PCA's columns are eigenvectors of Sigma with decreasing eigenvalues, sign fixed.
        column_eigenvalues = 1 / (W**2).sum(axis=0) - 1e-5
        assert np.all(np.diff(column_eigenvalues) < 0)
        np.testing.assert_allclose(sigma @ W, W * column_eigenvalues, atol=1e-8)
        largest = np.abs(W).argmax(axis=0)
        assert np.all(W[largest, np.arange(4)] > 0)


def test_whiten_returns_input_dtype():
    x = np.random.default_rng(3).standard_normal((40, 3)).astype(np.float32)
    assert all(a.dtype == np.float32 for a in cpu.whiten(x, method="pca"))
