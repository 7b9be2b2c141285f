"""Batch Normalization in NumPy: the course's reference implementation.

Everything follows Ioffe & Szegedy (2015). A mini-batch holds m values of
each channel: for ``x`` of shape ``(N, C)`` the statistics of channel c are
taken over the N rows, for ``(N, C, H, W)`` over the N*H*W positions (every
axis except axis 1, as PyTorch does).

Conventions shared by every function:

- float32 in gives float32 out, float64 in gives float64 out. Parameters
  (gamma, beta, running statistics, dout) are cast to the dtype of the data.
- Inputs are never modified; new arrays are returned.
- NaN in the data propagates to the outputs of the affected channel; it is
  never silently replaced.
- Bad input raises an error that names the argument (see ``_validate``).

Numerics. The batch variance is never computed as E[x^2] - E[x]^2, which
cancels catastrophically when the mean is large compared with the spread.
We use the *corrected two-pass* algorithm (Chan, Golub & LeVeque, 1983;
Higham, 2002, sec. 1.9): take the mean, subtract it, subtract the (tiny) mean
of what is left to repair the rounding of the first mean, and only then
average the squared deviations. On float32 channels whose mean is 10^4 times
their standard deviation this normalises to within 1e-5 of the float64 result
for m up to 10^4 (the plain two-pass version is off by 1e-2 at m = 100 and
by more than 1 at m = 10^4, because NumPy sums along axis 0 row by row).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from bncourse import _validate

__all__ = [
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_inference",
    "update_running_stats",
    "population_stats",
    "merge_batch_stats",
    "fold_batchnorm",
    "standardize",
    "whiten",
]


# ----------------------------------------------------------------------------- helpers


def _reduce_axes(ndim: int) -> tuple[int, ...]:
    """Axes a channel's statistics run over: all except axis 1 (the channels)."""
    return (0, *range(2, ndim))


def _per_channel(vector: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a ``(C,)`` vector to ``(1, C, 1, ...)`` so it broadcasts against x."""
    return vector.reshape((1, -1) + (1,) * (ndim - 2))


def _centre(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x - mu_B, mu_B)`` per channel, by the corrected two-pass algorithm.

    The first mean is rounded (and NumPy sums along axis 0 one row at a time),
    so ``x - mean`` is not exactly centred; its own small mean is that rounding
    error, and subtracting it recovers nearly all the digits. Shapes keep the
    reduced axes (``keepdims``).
    """
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    correction = centred.mean(axis=axes, keepdims=True)
    return centred - correction, mean + correction


def _batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel ``(x - mu_B, mu_B, sigma^2_B)``; the variance is biased (divides by m)."""
    axes = _reduce_axes(x.ndim)
    centred, mean = _centre(x, axes)
    var = (centred * centred).mean(axis=axes, keepdims=True)
    return centred, mean, var


def _floating_array(name: str, value: object) -> np.ndarray:
    array = np.asarray(value)
    _validate.check_floating(name, array)
    return array


def _channel_vector(name: str, value: object, num_channels: int, dtype: np.dtype, of: str = "x") -> np.ndarray:
    vector = _floating_array(name, value)
    _validate.check_per_channel(name, vector, num_channels, of)
    return vector.astype(dtype, copy=False)


class _BatchNormCache(NamedTuple):
    """What the backward pass needs from the forward pass (opaque to callers)."""

    x_hat: np.ndarray  # normalised input, shape of x
    gamma: np.ndarray  # (1, C, 1, ...)
    inv_std: np.ndarray  # 1 / sqrt(sigma^2_B + eps), (1, C, 1, ...)


def _backward_inputs(dout: object, cache: object) -> tuple[np.ndarray, _BatchNormCache]:
    """Check a backward pass's inputs: ``cache`` from ``batchnorm_forward`` and
    ``dout`` of x's shape; return dout in the cache's dtype, and the cache."""
    if not isinstance(cache, _BatchNormCache):
        raise TypeError(f"cache: expected the cache returned by batchnorm_forward, got {type(cache).__name__}")
    dout = _floating_array("dout", dout)
    _validate.check_same_shape("dout", dout, cache.x_hat.shape, "the shape of x in the forward pass")
    return dout.astype(cache.x_hat.dtype, copy=False), cache


# ----------------------------------------------------------------------------- training


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, object]:
    """Training-mode forward pass of BN: Algorithm 1 of Ioffe & Szegedy (2015).

    For each channel, over its m values x_1..x_m in the mini-batch B:

        mu_B      = (1/m) sum_i x_i
        sigma^2_B = (1/m) sum_i (x_i - mu_B)^2          (biased variance)
        x_hat_i   = (x_i - mu_B) / sqrt(sigma^2_B + eps)
        y_i       = gamma * x_hat_i + beta

    Inputs:
    - x: data of shape (N, C) or (N, C, *spatial), floating point. Each channel
      needs m > 1 values (m = N, or N*H*W for images).
    - gamma: scale, shape (C,).
    - beta: shift, shape (C,).
    - eps: small constant > 0 added to the variance.

    Returns a tuple of:
    - out: y, same shape and dtype as x. A constant channel gives beta.
      NaN in a channel of x makes that whole channel of out NaN.
    - cache: opaque; pass it to ``batchnorm_backward``.
    """
    x = _floating_array("x", x)
    num_channels = _validate.check_batch("x", x, training=True)
    gamma = _channel_vector("gamma", gamma, num_channels, x.dtype)
    beta = _channel_vector("beta", beta, num_channels, x.dtype)
    _validate.check_eps(eps)

    centred, _, var = _batch_stats(x)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = centred * inv_std
    gamma_b = _per_channel(gamma, x.ndim)
    out = gamma_b * x_hat + _per_channel(beta, x.ndim)
    return out, _BatchNormCache(x_hat, gamma_b, inv_std)


def batchnorm_backward(dout: np.ndarray, cache: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of training-mode BN (the chain rule of sec. 3 of the paper).

    With sums over the m values of a channel, the three gradients are

        dbeta  = sum_i dout_i
        dgamma = sum_i dout_i * x_hat_i
        dx_i   = gamma / (m * sqrt(sigma^2_B + eps)) * (m * dout_i - dbeta - x_hat_i * dgamma)

    The last line is the paper's six chain-rule terms collected into one: the
    gradient through mu_B removes the mean of dout, the gradient through
    sigma^2_B removes its component along x_hat. Hence each channel of dx
    sums to zero.

    Inputs:
    - dout: upstream gradient dl/dy, same shape as x in the forward pass.
    - cache: the cache returned by ``batchnorm_forward``.

    Returns a tuple of:
    - dx: gradient with respect to x, shape of x.
    - dgamma: gradient with respect to gamma, shape (C,).
    - dbeta: gradient with respect to beta, shape (C,).
    """
    dout, (x_hat, gamma_b, inv_std) = _backward_inputs(dout, cache)

    axes = _reduce_axes(x_hat.ndim)
    m = _validate.values_per_channel(x_hat)
    dbeta = dout.sum(axis=axes, keepdims=True)
    dgamma = (dout * x_hat).sum(axis=axes, keepdims=True)
    dx = (gamma_b * inv_std / m) * (m * dout - dbeta - x_hat * dgamma)
    return dx, dgamma.reshape(-1), dbeta.reshape(-1)


# ----------------------------------------------------------------------------- inference


def batchnorm_inference(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float = 1e-5,
) -> np.ndarray:
    """Inference-mode BN: step 11 of Algorithm 2, a fixed affine map per channel.

        y = gamma / sqrt(Var[x] + eps) * (x - E[x]) + beta

    with the population statistics E[x], Var[x] estimated during training
    (``running_mean``, ``running_var``). Nothing depends on the rest of the
    batch, so any N (even 1) works. We subtract E[x] before scaling rather
    than folding it into the shift: the same map, but without cancellation
    when E[x] is large.

    Inputs:
    - x: data of shape (N, C) or (N, C, *spatial).
    - gamma, beta: scale and shift, shape (C,).
    - running_mean, running_var: population estimates, shape (C,).
    - eps: small constant > 0 added to the variance.

    Returns:
    - out: same shape and dtype as x (NaN in x stays NaN).
    """
    x = _floating_array("x", x)
    num_channels = _validate.check_batch("x", x, training=False)
    gamma = _channel_vector("gamma", gamma, num_channels, x.dtype)
    beta = _channel_vector("beta", beta, num_channels, x.dtype)
    running_mean = _channel_vector("running_mean", running_mean, num_channels, x.dtype)
    running_var = _channel_vector("running_var", running_var, num_channels, x.dtype)
    _validate.check_eps(eps)

    scale = gamma / np.sqrt(running_var + eps)
    return (x - _per_channel(running_mean, x.ndim)) * _per_channel(scale, x.ndim) + _per_channel(beta, x.ndim)


def update_running_stats(
    running_mean: np.ndarray, running_var: np.ndarray, x: np.ndarray, momentum: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """One step of the exponential moving averages PyTorch keeps during training.

        new_mean = (1 - momentum) * running_mean + momentum * mu_B
        new_var  = (1 - momentum) * running_var  + momentum * m/(m-1) * sigma^2_B

    The variance fed in is the unbiased one (as torch.nn.BatchNorm*), the
    estimate Algorithm 2 uses for Var[x]. Note PyTorch's convention: momentum
    is the weight of the *new* batch (Keras uses the opposite).

    Inputs:
    - running_mean, running_var: current estimates, shape (C,).
    - x: the training batch, shaped as for ``batchnorm_forward`` (m > 1).
    - momentum: number in [0, 1].

    Returns a tuple of new arrays (dtype of running_mean / running_var):
    - new_mean: shape (C,).
    - new_var: shape (C,).
    """
    x = _floating_array("x", x)
    num_channels = _validate.check_batch("x", x, training=True)
    running_mean = _floating_array("running_mean", running_mean)
    running_var = _floating_array("running_var", running_var)
    _validate.check_per_channel("running_mean", running_mean, num_channels)
    _validate.check_per_channel("running_var", running_var, num_channels)
    _validate.check_momentum(momentum)

    _, mean, var = _batch_stats(x)
    m = _validate.values_per_channel(x)
    unbiased_var = var.reshape(-1) * (m / (m - 1))
    new_mean = (1 - momentum) * running_mean + momentum * mean.reshape(-1).astype(running_mean.dtype)
    new_var = (1 - momentum) * running_var + momentum * unbiased_var.astype(running_var.dtype)
    return new_mean, new_var


def population_stats(batches: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Population statistics from training batches: steps 8-10 of Algorithm 2.

        E[x]   = mean over batches of mu_B
        Var[x] = m/(m-1) * (mean over batches of sigma^2_B)

    Inputs:
    - batches: iterable of at least one batch, each shaped as for
      ``batchnorm_forward`` with the same C and the same m > 1 values per channel.

    Returns a tuple (dtype of the first batch):
    - mean: E[x], shape (C,).
    - var: Var[x], unbiased, shape (C,).
    """
    batch_means, batch_vars = [], []
    for index, batch in enumerate(batches):
        name = f"batches[{index}]"
        batch = _floating_array(name, batch)
        num_channels = _validate.check_batch(name, batch, training=True)
        m = _validate.values_per_channel(batch)
        if index == 0:
            first = (num_channels, m, batch.dtype)
        elif (num_channels, m) != first[:2]:
            raise ValueError(
                f"{name}: expected C={first[0]} channels with m={first[1]} values each, like "
                f"batches[0] (all batches must have the same size), got shape {batch.shape}"
            )
        _, mean, var = _batch_stats(batch)
        batch_means.append(mean.reshape(-1))
        batch_vars.append(var.reshape(-1))
    if not batch_means:
        raise ValueError("batches: expected at least one batch, got an empty iterable")
    _, m, dtype = first
    mean = np.mean(batch_means, axis=0)
    var = np.mean(batch_vars, axis=0) * (m / (m - 1))
    return mean.astype(dtype, copy=False), var.astype(dtype, copy=False)


def merge_batch_stats(count: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-group statistics into those of their union (Chan, Golub & LeVeque, 1983).

    Each of K groups (e.g. the mini-batch slices of the K processes of
    SyncBatchNorm) holds m_k values of each channel, with mean mu_k and sum of
    squared deviations M2_k = m_k * sigma^2_k (sigma^2_k biased). Two groups
    A and B merge as

        m     = m_A + m_B
        delta = mu_B - mu_A
        mu    = mu_A + delta * m_B / m
        M2    = M2_A + M2_B + delta^2 * m_A * m_B / m

    and K groups by merging them one after another into a running total. Only
    differences of group means enter, never sum(x^2) - m mu^2, so nothing
    cancels when the mean is large compared with the spread.

    Inputs:
    - count: shape (K,), the number of values m_k of each group (>= 0, total > 0).
      Groups with m_k = 0 are ignored (their mean and m2 must be finite, e.g. 0).
    - mean: shape (K, C), the mean of each channel in each group.
    - m2: shape (K, C), the sum of squared deviations from the group's mean.

    Returns a tuple:
    - count: the total number of values m (0-d, dtype of count).
    - mean: mu_B of the union, shape (C,), dtype of mean.
    - m2: M2 of the union, shape (C,); M2 / m is the biased variance sigma^2_B.
    """
    count, mean, m2 = np.asarray(count), _floating_array("mean", mean), _floating_array("m2", m2)
    _validate.check_group_stats(count, mean, m2)
    total, merged_mean, merged_m2 = count[0], mean[0], m2[0]
    for n_b, mean_b, m2_b in zip(count[1:], mean[1:], m2[1:], strict=True):
        n = total + n_b
        weight_b = n_b / max(n, 1)  # n_B / n; 0 when both groups are empty
        delta = (mean_b - merged_mean).astype(mean.dtype, copy=False)
        merged_mean = merged_mean + delta * weight_b
        merged_m2 = merged_m2 + m2_b + delta * delta * (total * weight_b)
        total = n
    return total, merged_mean.astype(mean.dtype, copy=False), merged_m2.astype(mean.dtype, copy=False)


def fold_batchnorm(
    weight: np.ndarray,
    bias: np.ndarray | None,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference-mode BN into the Linear or Conv layer before it.

    With s = gamma / sqrt(Var[x] + eps) per output channel, BN(W u + b) equals
    W' u + b' where

        W' = s * W          (row / output-channel c scaled by s_c)
        b' = s * (b - E[x]) + beta

    Inputs:
    - weight: Linear weight (out, in) or Conv weight (out, in, *kernel).
    - bias: shape (out,), or None for a layer without bias (then b = 0).
    - gamma, beta, running_mean, running_var: BN parameters, shape (out,).
    - eps: the BN layer's eps.

    Returns a tuple (dtype of weight):
    - weight: folded weight, shape of weight.
    - bias: folded bias, shape (out,).
    """
    weight = _floating_array("weight", weight)
    out_channels = _validate.check_weight("weight", weight)
    dtype = weight.dtype
    if bias is None:
        bias = np.zeros(out_channels, dtype=dtype)
    layer = "the layer (weight.shape[0])"
    bias = _channel_vector("bias", bias, out_channels, dtype, of=layer)
    gamma = _channel_vector("gamma", gamma, out_channels, dtype, of=layer)
    beta = _channel_vector("beta", beta, out_channels, dtype, of=layer)
    running_mean = _channel_vector("running_mean", running_mean, out_channels, dtype, of=layer)
    running_var = _channel_vector("running_var", running_var, out_channels, dtype, of=layer)
    _validate.check_eps(eps)

    scale = gamma / np.sqrt(running_var + eps)
    folded_weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    folded_bias = (bias - running_mean) * scale + beta
    return folded_weight, folded_bias


# ----------------------------------------------------------------------------- preprocessing


def standardize(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Give every feature zero mean and unit variance (LeCun et al., 1998).

        x_hat[:, j] = (x[:, j] - mean_j) / sqrt(var_j + eps)

    with the mean and biased variance of feature j over the N rows. This is
    BN's normalisation step without gamma and beta, applied to a whole data set.

    Inputs:
    - x: data of shape (N, D), N >= 2.
    - eps: small constant > 0 added to the variance.

    Returns:
    - x_hat: shape (N, D), dtype of x.
    """
    x = _floating_array("x", x)
    _validate.check_data_matrix("x", x)
    _validate.check_eps(eps)
    centred, _, var = _batch_stats(x)
    return centred / np.sqrt(var + eps)


def whiten(x: np.ndarray, method: str = "zca", eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decorrelate the features of x and give each unit variance.

    With the covariance Sigma = (1/N) (x - mean)^T (x - mean) = U diag(lambda) U^T
    (eigenvalues in decreasing order), the whitening matrix W_white is

        PCA: W = U diag(1 / sqrt(lambda + eps))
        ZCA: W = U diag(1 / sqrt(lambda + eps)) U^T    (symmetric: Sigma^{-1/2})

    and x_white = (x - mean) @ W has covariance I (up to eps). PCA rotates the
    data onto its principal axes; ZCA rotates back, so each output feature
    stays as close as possible to the input feature of the same index
    (Bell & Sejnowski, 1997; Kessy et al., 2018). The sign of each eigenvector
    is fixed (its largest-magnitude entry is positive) so PCA is deterministic.
    Computed in float64, returned in the dtype of x.

    Inputs:
    - x: data of shape (N, D), N >= 2.
    - method: "zca" or "pca".
    - eps: small constant > 0 added to every eigenvalue.

    Returns a tuple of:
    - x_white: shape (N, D).
    - W: whitening matrix, shape (D, D).
    - mean: feature means, shape (D,).
    """
    x = _floating_array("x", x)
    _validate.check_data_matrix("x", x)
    _validate.check_method(method)
    _validate.check_eps(eps)

    x64 = x.astype(np.float64)
    centred, mean, _ = _batch_stats(x64)
    cov = centred.T @ centred / x.shape[0]
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]  # decreasing variance
    # A covariance has no negative eigenvalues; tiny negative ones are rounding.
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    largest = np.argmax(np.abs(eigenvectors), axis=0)
    signs = np.sign(eigenvectors[largest, np.arange(eigenvectors.shape[1])])
    eigenvectors = eigenvectors * signs
    W = eigenvectors / np.sqrt(eigenvalues + eps)
    if method == "zca":
        W = W @ eigenvectors.T
    x_white = centred @ W
    return x_white.astype(x.dtype), W.astype(x.dtype), mean.reshape(-1).astype(x.dtype)
