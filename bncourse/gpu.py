"""Batch Normalization in PyTorch: the same reference functions, on any device.

The functions of ``bncourse.cpu`` (same names, arguments and formulas)
written with torch operations, so the same code runs wherever the tensors
live (CPU or CUDA), plus three pieces that plug into PyTorch:

- ``BatchNormFunction``: a ``torch.autograd.Function`` whose backward is the
  hand-derived formula of ``batchnorm_backward`` instead of autograd's.
- ``batch_norm``: same signature and results as
  ``torch.nn.functional.batch_norm``, built on ``BatchNormFunction``.
- ``BatchNorm1d`` and ``BatchNorm2d``: drop-in replacements of torch.nn's
  (``SyncBatchNorm``, from ``bncourse.sync_batchnorm``, is available here too).

Conventions, as in ``bncourse.cpu``: outputs have the dtype of the data;
inputs are never modified (except the running statistics that ``batch_norm``
updates in place, exactly like PyTorch); NaN propagates; bad input raises an
error naming the argument. All tensors of a call must be on the device of
the data and share its dtype, with one exception PyTorch also makes: float16
and bfloat16 data may come with float32 parameters and running statistics.
Half-precision data is always normalised in float32 (its 11 or 8 bits of
mantissa cannot hold a sum of many values) and the result cast back.

Numerics: the corrected two-pass variance, explained in ``bncourse.cpu``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from bncourse import _validate, fused
from bncourse._tensors import (
    autograd_grads,
    autograd_inputs,
    channel_vector,
    check_companion,
    check_tensor,
    compute_dtype,
    per_channel,
    reduce_dims,
)

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
    "BatchNormFunction",
    "batch_norm",
    "BatchNorm1d",
    "BatchNorm2d",
]

# ----------------------------------------------------------------------------- helpers


def _batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel ``(x - mu_B, mu_B, sigma^2_B)`` (biased), by the corrected two-pass algorithm.

    ``x - mean`` is not exactly centred because the first mean is rounded; its
    own small mean is that rounding error, and subtracting it recovers the
    lost digits. Shapes keep the reduced dimensions. The returned ``x - mu_B``
    is a new tensor that the caller may overwrite.
    """
    dims = reduce_dims(x.ndim)
    m = _validate.values_per_channel(x)
    # sum / m rather than mean(): the same rounding, and on a CPU a cheaper reduction.
    mean = x.sum(dim=dims, keepdim=True) / m
    centred = x - mean
    correction = centred.sum(dim=dims, keepdim=True) / m
    centred -= correction  # in place: a new tensor would cost a pass and fresh memory (chapter 9)
    var = (centred * centred).sum(dim=dims, keepdim=True) / m
    return centred, mean + correction, var


class _BatchNormCache(NamedTuple):
    """What the backward pass needs from the forward pass (opaque to callers)."""

    x_hat: torch.Tensor  # normalised input in the compute dtype, shape of x
    gamma: torch.Tensor  # (1, C, 1, ...), compute dtype
    inv_std: torch.Tensor  # 1 / sqrt(sigma^2_B + eps), (1, C, 1, ...)
    x_dtype: torch.dtype
    gamma_dtype: torch.dtype


# ----------------------------------------------------------------------------- training


def batchnorm_forward(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5
) -> tuple[torch.Tensor, object]:
    """Training-mode forward pass of BN: Algorithm 1 of Ioffe & Szegedy (2015).

    For each channel, over its m values x_1..x_m in the mini-batch B:

        mu_B      = (1/m) sum_i x_i
        sigma^2_B = (1/m) sum_i (x_i - mu_B)^2          (biased variance)
        x_hat_i   = (x_i - mu_B) / sqrt(sigma^2_B + eps)
        y_i       = gamma * x_hat_i + beta

    Inputs:
    - x: tensor of shape (N, C) or (N, C, *spatial) with m > 1 values per channel.
    - gamma: scale, shape (C,).
    - beta: shift, shape (C,).
    - eps: small constant > 0 added to the variance.

    Returns a tuple of:
    - out: y, same shape, dtype and device as x. A constant channel gives
      beta; NaN in a channel of x makes that whole channel of out NaN.
    - cache: opaque; pass it to ``batchnorm_backward``.

    x_hat is built in place, so autograd cannot differentiate this function
    itself: ``BatchNormFunction`` and ``batch_norm`` give it this backward.
    """
    x = check_tensor("x", x)
    num_channels = _validate.check_batch("x", x, training=True)
    gamma = channel_vector("gamma", gamma, num_channels, x)
    beta = channel_vector("beta", beta, num_channels, x)
    _validate.check_eps(eps)

    compute = compute_dtype(x)
    # Two tensors of x's size that outlive this call, x_hat and out (plus the squares, freed inside
    # _batch_stats), each updated in place after its first line: every further new tensor would
    # cost a pass over memory and, with malloc as it is, page faults (chapter 9).
    x_hat, _, var = _batch_stats(x.to(compute))  # x - mu_B for now
    inv_std = torch.rsqrt(var + eps)
    x_hat *= inv_std
    gamma_b = per_channel(gamma.to(compute), x.ndim)
    out = x_hat * gamma_b
    out += per_channel(beta.to(compute), x.ndim)
    return out.to(x.dtype), _BatchNormCache(x_hat, gamma_b, inv_std, x.dtype, gamma.dtype)


def batchnorm_backward(dout: torch.Tensor, cache: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward pass of training-mode BN (the chain rule of sec. 3 of the paper).

    With sums over the m values of a channel:

        dbeta  = sum_i dout_i
        dgamma = sum_i dout_i * x_hat_i
        dx_i   = gamma / (m * sqrt(sigma^2_B + eps)) * (m * dout_i - dbeta - x_hat_i * dgamma)

    Inputs:
    - dout: upstream gradient dl/dy, same shape as x in the forward pass.
    - cache: the cache returned by ``batchnorm_forward``.

    Returns a tuple of:
    - dx: shape and dtype of x.
    - dgamma, dbeta: shape (C,), dtype of gamma.

    dx is built in place, so autograd cannot differentiate this function
    itself (``BatchNormFunction`` provides first derivatives only).
    """
    if not isinstance(cache, _BatchNormCache):
        raise TypeError(f"cache: expected the cache returned by batchnorm_forward, got {type(cache).__name__}")
    x_hat, gamma_b, inv_std, x_dtype, gamma_dtype = cache
    dout = check_tensor("dout", dout)
    _validate.check_same_shape("dout", dout, tuple(x_hat.shape), "the shape of x in the forward pass")
    if dout.device != x_hat.device:
        raise ValueError(f"dout: expected a tensor on {x_hat.device} (the device of x), got one on {dout.device}")
    dout = dout.to(x_hat.dtype)

    dims = reduce_dims(x_hat.ndim)
    m = _validate.values_per_channel(x_hat)
    # One new tensor of x's size, dx, which first holds dout * x_hat: every extra temporary
    # would cost a pass over memory and, with malloc as it is, page faults (chapter 9).
    dbeta = dout.sum(dim=dims, keepdim=True)
    dx = dout * x_hat
    dgamma = dx.sum(dim=dims, keepdim=True)
    torch.sub(dout, dbeta / m, out=dx)  # the formula above, divided by m
    dx.addcmul_(x_hat, dgamma, value=-1.0 / m)  # dx -= x_hat * dgamma / m
    dx *= gamma_b * inv_std
    return dx.to(x_dtype), dgamma.reshape(-1).to(gamma_dtype), dbeta.reshape(-1).to(gamma_dtype)


# ----------------------------------------------------------------------------- inference


def batchnorm_inference(
    x: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Inference-mode BN: step 11 of Algorithm 2, a fixed affine map per channel.

        y = gamma / sqrt(Var[x] + eps) * (x - E[x]) + beta

    Inputs:
    - x: tensor of shape (N, C) or (N, C, *spatial); any N.
    - gamma, beta: scale and shift, shape (C,).
    - running_mean, running_var: population estimates E[x], Var[x], shape (C,).
    - eps: small constant > 0 added to the variance.

    Returns:
    - out: same shape, dtype and device as x (NaN in x stays NaN).
    """
    x = check_tensor("x", x)
    num_channels = _validate.check_batch("x", x, training=False)
    gamma = channel_vector("gamma", gamma, num_channels, x)
    beta = channel_vector("beta", beta, num_channels, x)
    running_mean = channel_vector("running_mean", running_mean, num_channels, x)
    running_var = channel_vector("running_var", running_var, num_channels, x)
    _validate.check_eps(eps)

    compute = compute_dtype(x)
    scale = gamma.to(compute) * torch.rsqrt(running_var.to(compute) + eps)
    centred = x.to(compute) - per_channel(running_mean.to(compute), x.ndim)
    out = centred * per_channel(scale, x.ndim) + per_channel(beta.to(compute), x.ndim)
    return out.to(x.dtype)


def update_running_stats(
    running_mean: torch.Tensor, running_var: torch.Tensor, x: torch.Tensor, momentum: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of PyTorch's exponential moving averages (no gradient flows).

        new_mean = (1 - momentum) * running_mean + momentum * mu_B
        new_var  = (1 - momentum) * running_var  + momentum * m/(m-1) * sigma^2_B

    Inputs:
    - running_mean, running_var: current estimates, shape (C,).
    - x: the training batch, shaped as for ``batchnorm_forward`` (m > 1).
    - momentum: number in [0, 1], the weight of the new batch.

    Returns new tensors (dtype of the running statistics; half-precision ones
    are updated in float32 and rounded once):
    - new_mean, new_var: shape (C,).
    """
    x = check_tensor("x", x)
    num_channels = _validate.check_batch("x", x, training=True)
    running_mean = channel_vector("running_mean", running_mean, num_channels, x)
    running_var = channel_vector("running_var", running_var, num_channels, x)
    _validate.check_momentum(momentum)

    _, mean, var = _batch_stats(x.detach().to(compute_dtype(x)))
    m = _validate.values_per_channel(x)
    return _blend_running_stats(running_mean, running_var, mean.reshape(-1), var.reshape(-1), m, momentum)


def _blend_running_stats(
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    m: int,
    momentum: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The moving averages of ``update_running_stats`` from a batch's mu_B and biased sigma^2_B, (C,)."""

    def blend(old: torch.Tensor, batch_stat: torch.Tensor) -> torch.Tensor:
        # Half-precision statistics are blended in float32 and rounded once, as torch's kernels do.
        compute = compute_dtype(old)
        new = (1 - momentum) * old.detach().to(compute) + momentum * batch_stat.to(compute)
        return new.to(old.dtype)

    return blend(running_mean, mean), blend(running_var, var * (m / (m - 1)))


def population_stats(batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Population statistics from training batches: steps 8-10 of Algorithm 2.

        E[x]   = mean over batches of mu_B
        Var[x] = m/(m-1) * (mean over batches of sigma^2_B)

    Inputs:
    - batches: iterable of at least one tensor, each shaped as for
      ``batchnorm_forward`` with the same C, the same m > 1, the same device.

    Returns a tuple (dtype and device of the first batch):
    - mean: E[x], shape (C,).
    - var: Var[x], unbiased, shape (C,).
    """
    batch_means, batch_vars = [], []
    for index, batch in enumerate(batches):
        name = f"batches[{index}]"
        batch = check_tensor(name, batch)
        num_channels = _validate.check_batch(name, batch, training=True)
        m = _validate.values_per_channel(batch)
        if index == 0:
            first = batch
        else:
            check_companion(name, batch, first, "batches[0]")
            if (num_channels, m) != (first.shape[1], _validate.values_per_channel(first)):
                raise ValueError(
                    f"{name}: expected C={first.shape[1]} channels with "
                    f"m={_validate.values_per_channel(first)} values each, like batches[0] "
                    f"(all batches must have the same size), got shape {tuple(batch.shape)}"
                )
        _, mean, var = _batch_stats(batch.detach().to(compute_dtype(batch)))
        batch_means.append(mean.reshape(-1))
        batch_vars.append(var.reshape(-1))
    if not batch_means:
        raise ValueError("batches: expected at least one batch, got an empty iterable")
    m = _validate.values_per_channel(first)
    mean = torch.stack(batch_means).mean(dim=0)
    var = torch.stack(batch_vars).mean(dim=0) * (m / (m - 1))
    return mean.to(first.dtype), var.to(first.dtype)


def merge_batch_stats(
    count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    if not isinstance(count, torch.Tensor):
        raise TypeError(f"count: expected a torch.Tensor, got {type(count).__name__}")
    mean = check_tensor("mean", mean)
    m2 = check_companion("m2", m2, mean, "mean")
    if count.device != mean.device:
        raise ValueError(f"count: expected a tensor on {mean.device} (the device of mean), got one on {count.device}")
    _validate.check_group_stats(count, mean, m2)
    total, merged_mean, merged_m2 = count[0], mean[0], m2[0]
    for n_b, mean_b, m2_b in zip(count[1:], mean[1:], m2[1:], strict=True):
        n = total + n_b
        weight_b = n_b.to(mean.dtype) / n.clamp(min=1).to(mean.dtype)  # n_B / n; 0 when both are empty
        delta = mean_b - merged_mean
        merged_mean = merged_mean + delta * weight_b
        merged_m2 = merged_m2 + m2_b + delta * delta * (total.to(mean.dtype) * weight_b)
        total = n
    return total, merged_mean, merged_m2


def fold_batchnorm(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an inference-mode BN into the Linear or Conv layer before it.

    With s = gamma / sqrt(Var[x] + eps) per output channel:

        W' = s * W          (output channel c scaled by s_c)
        b' = s * (b - E[x]) + beta

    Inputs:
    - weight: Linear weight (out, in) or Conv weight (out, in, *kernel).
    - bias: shape (out,), or None (then b = 0).
    - gamma, beta, running_mean, running_var: BN parameters, shape (out,).
    - eps: the BN layer's eps.

    Returns a tuple of new tensors (dtype and device of weight, computed in
    float32 for half-precision weights; folding is for inference, so no
    gradient is tracked):
    - weight: shape of weight.
    - bias: shape (out,).
    """
    weight = check_tensor("weight", weight)
    out_channels = _validate.check_weight("weight", weight)
    if bias is None:
        bias = torch.zeros(out_channels, dtype=weight.dtype, device=weight.device)
    vectors = {"bias": bias, "gamma": gamma, "beta": beta}
    vectors |= {"running_mean": running_mean, "running_var": running_var}
    for name, vector in vectors.items():
        check_companion(name, vector, weight, "weight")
        _validate.check_per_channel(name, vector, out_channels, of="the layer (weight.shape[0])")
    _validate.check_eps(eps)

    compute = compute_dtype(weight)  # half-precision weights are folded in float32
    with torch.no_grad():
        scale = gamma.to(compute) * torch.rsqrt(running_var.to(compute) + eps)
        folded_weight = weight.to(compute) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        folded_bias = (bias.to(compute) - running_mean.to(compute)) * scale + beta.to(compute)
    return folded_weight.to(weight.dtype), folded_bias.to(weight.dtype)


# ----------------------------------------------------------------------------- preprocessing


def standardize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-feature zero mean and unit variance of an ``(N, D)`` tensor, N >= 2.

        x_hat[:, j] = (x[:, j] - mean_j) / sqrt(var_j + eps)     (biased variance)

    Returns x_hat, shape (N, D), dtype of x.
    """
    x = check_tensor("x", x)
    _validate.check_data_matrix("x", x)
    _validate.check_eps(eps)
    centred, _, var = _batch_stats(x.to(compute_dtype(x)))
    return (centred * torch.rsqrt(var + eps)).to(x.dtype)


def whiten(x: torch.Tensor, method: str = "zca", eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decorrelate the features of x and give each unit variance (see ``bncourse.cpu.whiten``).

    With Sigma = (1/N) (x - mean)^T (x - mean) = U diag(lambda) U^T, eigenvalues
    in decreasing order and each eigenvector's largest-magnitude entry positive:

        PCA: W = U diag(1 / sqrt(lambda + eps))
        ZCA: W = U diag(1 / sqrt(lambda + eps)) U^T

    Inputs:
    - x: tensor of shape (N, D), N >= 2.
    - method: "zca" or "pca".
    - eps: small constant > 0 added to every eigenvalue.

    Returns a tuple (computed in float64 without gradient; dtype and device of x):
    - x_white: (x - mean) @ W, shape (N, D), covariance I up to eps.
    - W: whitening matrix, shape (D, D).
    - mean: feature means, shape (D,).
    """
    x = check_tensor("x", x)
    _validate.check_data_matrix("x", x)
    _validate.check_method(method)
    _validate.check_eps(eps)

    centred, mean, _ = _batch_stats(x.detach().to(torch.float64))
    cov = centred.T @ centred / x.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)  # decreasing variance
    # A covariance has no negative eigenvalues; tiny negative ones are rounding.
    eigenvalues = eigenvalues.clamp(min=0.0)
    largest = eigenvectors.abs().argmax(dim=0, keepdim=True)
    eigenvectors = eigenvectors * torch.sign(eigenvectors.gather(0, largest))
    W = eigenvectors * torch.rsqrt(eigenvalues + eps)
    if method == "zca":
        W = W @ eigenvectors.T
    x_white = centred @ W
    return x_white.to(x.dtype), W.to(x.dtype), mean.reshape(-1).to(x.dtype)


# ----------------------------------------------------------------------------- autograd and layers


class BatchNormFunction(torch.autograd.Function):
    """Training-mode BN as an autograd Function with the hand-derived backward.

    ``BatchNormFunction.apply(x, gamma, beta, eps)`` returns the ``out`` of
    ``batchnorm_forward``; gradients come from ``batchnorm_backward``. gamma and
    beta may be None (no scale: gamma = 1; no shift: beta = 0). Only first
    derivatives are provided.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        gamma: torch.Tensor | None,
        beta: torch.Tensor | None,
        eps: float = 1e-5,
    ) -> torch.Tensor:
        x, gamma, beta = autograd_inputs(ctx, x, gamma, beta)
        out, cache = batchnorm_forward(x, gamma, beta, eps)
        ctx.save_for_backward(cache.x_hat, cache.gamma, cache.inv_std)
        ctx.dtypes = (cache.x_dtype, cache.gamma_dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        cache = _BatchNormCache(*ctx.saved_tensors, *ctx.dtypes)
        return autograd_grads(ctx, *batchnorm_backward(dout, cache), num_settings=1)  # eps


def batch_norm(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    impl: str = "reference",
) -> torch.Tensor:
    """Same signature and results as ``torch.nn.functional.batch_norm``, plus ``impl``.

    Training (``training=True``): normalise with the batch statistics through
    ``BatchNormFunction``; if running statistics are given (both or neither),
    update them in place with ``update_running_stats``. Evaluation: apply
    ``batchnorm_inference`` with the running statistics, which are required.

    ``impl`` chooses the training path: ``"reference"`` (the code above),
    ``"fused"`` (``bncourse.fused``: four passes over memory, compiled with
    torch.compile on first use per input shape; where compilation is
    unavailable it warns once and runs the same kernels eagerly) or
    ``"fused-eager"`` (the fused kernels, never compiled). Evaluation is one
    affine map per channel, the same for every ``impl``.

    Inputs:
    - input: (N, C) or (N, C, *spatial).
    - running_mean, running_var: shape (C,) or None.
    - weight (gamma), bias (beta): shape (C,) or None (gamma = 1, beta = 0).
    - training: use batch statistics (True) or running statistics (False).
    - momentum: number in [0, 1], the weight of the new batch.
    - eps: small constant > 0 added to the variance.
    - impl: "reference", "fused" or "fused-eager" (keyword only).

    Returns:
    - out: shape, dtype and device of input.
    """
    _validate.check_choice("impl", impl, fused.IMPLEMENTATIONS)
    input = check_tensor("input", input)
    num_channels = _validate.check_batch("input", input, training)
    given = {"running_mean": running_mean, "running_var": running_var}
    given |= {"weight": weight, "bias": bias}
    for name, tensor in given.items():
        if tensor is not None:
            check_companion(name, tensor, input, "input")
            _validate.check_per_channel(name, tensor, num_channels, of="input")
    _validate.check_eps(eps)
    _validate.check_momentum(momentum)
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "running_mean, running_var: expected both tensors or both None, got "
            f"running_mean={type(running_mean).__name__}, running_var={type(running_var).__name__}"
        )

    if training and impl != "reference":
        out, mean, var = fused.FusedBatchNormFunction.apply(input, weight, bias, eps, impl == "fused")
        if running_mean is not None:  # from the forward's statistics: no further pass over input
            m = _validate.values_per_channel(input)
            new_mean, new_var = _blend_running_stats(running_mean, running_var, mean, var, m, momentum)
            with torch.no_grad():
                running_mean.copy_(new_mean)
                running_var.copy_(new_var)
        return out
    if training:
        out = BatchNormFunction.apply(input, weight, bias, eps)
        if running_mean is not None:
            new_mean, new_var = update_running_stats(running_mean, running_var, input, momentum)
            with torch.no_grad():
                running_mean.copy_(new_mean)
                running_var.copy_(new_var)
        return out

    if running_mean is None:
        raise ValueError("running_mean, running_var: expected tensors in evaluation mode (training=False), got None")
    if weight is None:
        weight = input.new_ones(num_channels)
    if bias is None:
        bias = input.new_zeros(num_channels)
    return batchnorm_inference(input, weight, bias, running_mean, running_var, eps)


class _BatchNorm(nn.Module):
    """What BatchNorm1d and BatchNorm2d share; they differ only in the input shapes they accept.

    Parameters ``weight`` (gamma) and ``bias`` (beta) exist when ``affine``;
    buffers ``running_mean``, ``running_var`` and ``num_batches_tracked`` when
    ``track_running_stats``. ``momentum=None`` makes the running statistics a
    cumulative average: the k-th training batch gets weight 1/k. ``impl``
    (keyword only) chooses the training path of ``batch_norm``: "reference",
    "fused" or "fused-eager"; it is not part of the state_dict.
    """

    _input_dims: tuple[int, ...] = ()  # the input.dim() values accepted

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        bias: bool = True,
        impl: str = "reference",
    ) -> None:
        super().__init__()
        _validate.check_choice("impl", impl, fused.IMPLEMENTATIONS)
        self.impl = impl
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features: expected a positive int, got {num_features!r}")
        _validate.check_eps(eps)
        if momentum is not None:
            _validate.check_momentum(momentum)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        factory = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
            self.bias = nn.Parameter(torch.zeros(num_features, **factory)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
            + (f", impl={self.impl!r}" if self.impl != "reference" else "")
        )

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in self._input_dims:
            expected = " or ".join(f"{dims}D" for dims in self._input_dims)
            raise ValueError(f"input: expected {expected} input (got {input.dim()}D input)")

    def _count_batch(self) -> float:
        """Count a training batch in ``num_batches_tracked``; return the momentum it gets.

        With ``momentum=None`` the k-th training batch gets 1/k (a cumulative
        average of all batches so far).
        """
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        return momentum

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        momentum = self._count_batch()
        # Without running statistics there is nothing but the batch to normalise with,
        # even in eval mode.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        # Buffers are read in eval mode, and written in training only when tracking.
        pass_buffers = not self.training or self.track_running_stats
        return batch_norm(
            input,
            self.running_mean if pass_buffers else None,
            self.running_var if pass_buffers else None,
            self.weight,
            self.bias,
            use_batch_stats,
            momentum,
            self.eps,
            impl=self.impl,
        )


class BatchNorm1d(_BatchNorm):
    """Drop-in replacement of ``torch.nn.BatchNorm1d``: input (N, C) or (N, C, L)."""

    _input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Drop-in replacement of ``torch.nn.BatchNorm2d``: input (N, C, H, W)."""

    _input_dims = (4,)


def __getattr__(name: str) -> Any:
    """``gpu.SyncBatchNorm``: it lives in ``bncourse.sync_batchnorm`` (it needs torch.distributed
    and builds on this module), imported on first use."""
    if name == "SyncBatchNorm":
        from bncourse.sync_batchnorm import SyncBatchNorm

        return SyncBatchNorm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
