"""Batch Normalization in NumPy with fewer passes and temporaries (same results as ``bncourse.cpu``).

``bncourse.cpu`` writes one formula per line, as the book explains them;
every line allocates a new array and makes a pass over memory, which is what
BN's time is made of. These two functions compute the same formulas (the
corrected two-pass variance included) with three habits:

- one new array per function: x - mu_B is computed once and turned into
  x_hat in place (``-=``, ``*=``), and dx is built in place;
- per-channel sums of products (sigma^2_B, dgamma) by ``np.einsum``, which
  multiplies and adds in one loop instead of writing the products first;
- one reduction per parameter gradient: dbeta = sum dout and
  dgamma = sum dout * x_hat each read dout once.

The caches are those of ``bncourse.cpu``, so either backward accepts either
forward's cache. Measured by ``benchmarks/bench_reference_batchnorm.py``.
"""

from __future__ import annotations

import numpy as np

from bncourse import _validate
from bncourse.cpu import _backward_inputs, _BatchNormCache, _channel_vector, _floating_array, _per_channel, _reduce_axes

__all__ = ["batchnorm_forward", "batchnorm_backward"]


def _channel_sum(*factors: np.ndarray) -> np.ndarray:
    """sum over every axis but 1 of the product of ``factors`` (same shape), as (1, C, 1, ...).

    einsum multiplies and accumulates in one loop; its float32 sums are as
    accurate as ``np.sum``'s pairwise ones here (about 1e-7 of the summed
    magnitudes on 2 million values, measured against float64).
    """
    ndim = factors[0].ndim
    letters = "nc" + "defghijklm"[: ndim - 2]
    total = np.einsum(",".join([letters] * len(factors)) + "->c", *factors)
    return _per_channel(total, ndim)


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, object]:
    """Training-mode forward pass of BN (Algorithm 1 of Ioffe & Szegedy, 2015).

    The formulas of ``bncourse.cpu.batchnorm_forward``:

        mu_B      = (1/m) sum_i x_i                  (then corrected by the mean of x - mu_B)
        sigma^2_B = (1/m) sum_i (x_i - mu_B)^2
        x_hat_i   = (x_i - mu_B) / sqrt(sigma^2_B + eps)
        y_i       = gamma * x_hat_i + beta

    Inputs:
    - x: data of shape (N, C) or (N, C, *spatial), floating point, m > 1 values per channel.
    - gamma, beta: scale and shift, shape (C,).
    - eps: small constant > 0 added to the variance.

    Returns a tuple of:
    - out: y, same shape and dtype as x.
    - cache: for ``batchnorm_backward`` (of this module or of ``bncourse.cpu``).
    """
    x = _floating_array("x", x)
    num_channels = _validate.check_batch("x", x, training=True)
    gamma = _channel_vector("gamma", gamma, num_channels, x.dtype)
    beta = _channel_vector("beta", beta, num_channels, x.dtype)
    _validate.check_eps(eps)

    axes = _reduce_axes(x.ndim)
    m = _validate.values_per_channel(x)
    x_hat = x - x.mean(axis=axes, keepdims=True)  # the forward's only array of x's size besides out
    x_hat -= x_hat.mean(axis=axes, keepdims=True)  # repair the rounding of mu_B
    inv_std = 1.0 / np.sqrt(_channel_sum(x_hat, x_hat) / m + eps)
    x_hat *= inv_std
    gamma_b = _per_channel(gamma, x.ndim)
    out = x_hat * gamma_b
    out += _per_channel(beta, x.ndim)
    return out, _BatchNormCache(x_hat, gamma_b, inv_std.astype(x.dtype, copy=False))


def batchnorm_backward(dout: np.ndarray, cache: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of training-mode BN (sec. 3 of the paper), the formulas of ``bncourse.cpu``:

        dbeta  = sum_i dout_i
        dgamma = sum_i dout_i * x_hat_i
        dx_i   = gamma / sqrt(sigma^2_B + eps) * (dout_i - dbeta / m - x_hat_i * dgamma / m)

    Inputs:
    - dout: upstream gradient, same shape as x in the forward pass.
    - cache: from ``batchnorm_forward`` (of this module or of ``bncourse.cpu``).

    Returns a tuple of:
    - dx: shape of x; dgamma, dbeta: shape (C,).
    """
    dout, (x_hat, gamma_b, inv_std) = _backward_inputs(dout, cache)

    m = _validate.values_per_channel(x_hat)
    dbeta = _channel_sum(dout)
    dgamma = _channel_sum(dout, x_hat)
    dx = x_hat * (-dgamma / m)  # the backward's only new array of x's size
    dx += dout
    dx -= dbeta / m
    dx *= gamma_b * inv_std
    return dx, dgamma.reshape(-1), dbeta.reshape(-1)
