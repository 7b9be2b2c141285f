"""Batch Normalization with fewer passes over memory: the fused training path.

BN does about one arithmetic operation per byte it touches, so its speed is
set by how many times the data crosses memory, not by the arithmetic. The
reference (``bncourse.gpu``) writes one formula per line, and in eager
PyTorch every line is a separate pass that reads its inputs and writes a
temporary. This module computes the same results in four passes:

    forward   pass 1: read x                 -> mu_B, sigma^2_B (one-pass Welford)
              pass 2: read x, write y        -> y = gamma * x_hat + beta
    backward  pass 3: read dy, x             -> dbeta = sum dy, dgamma = sum dy * x_hat
              pass 4: read dy, x, write dx   -> dx

x_hat is never stored: the backward recomputes it from x (which the layer
before BN keeps alive anyway) and the per-channel statistics. A pass is one
loop only once compiled: ``torch.compile`` fuses each kernel below into one
loop (C++ with OpenMP on CPU, Triton on CUDA). Run eagerly, the same lines
are correct but materialise their temporaries, and are no faster than the
reference.

Numerics, the reference's rules kept with one pass for the statistics:

- float32 far from zero: the data is shifted by the first value x_1 of each
  channel (any sample works) before Welford's update computes the mean and
  the squared deviations of x - x_1. x - x_1 is exact when x is close to x_1
  (Sterbenz's lemma), and the mean of x - x_1 is small, so its rounding
  error is small compared with sigma_B: at most about sqrt(m) ulps of
  sigma_B, as (x_1 - mu_B)^2 <= m sigma^2_B for any sample. The output uses
  (x - x_1) - mean(x - x_1): mu_B itself is never rounded to one number.
- A constant channel gives x - x_1 = 0 exactly, hence y = beta and dx = 0.
- Half precision (float16, bfloat16) is read, computed in float32 and the
  result rounded once to the data's dtype.

Three implementations are offered by ``bncourse.gpu.batch_norm`` and the
``BatchNorm*d`` layers through ``impl=``:

- ``"reference"``: ``bncourse.gpu``, the code the book explains;
- ``"fused"``: the kernels of this module compiled by ``torch.compile`` on
  first use for each input shape (seconds to a minute, once per process).
  When compilation is unavailable (no C++ compiler, no Triton, a Python that
  torch.compile does not support), the first call warns with a
  ``RuntimeWarning`` naming the error and every call runs the same kernels
  eagerly, as ``"fused-eager"`` does;
- ``"fused-eager"``: the kernels of this module without compilation (for
  machines without a compiler, and for tests that cover many shapes).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch.autograd.function import once_differentiable

from bncourse import _validate
from bncourse._tensors import (
    autograd_grads,
    autograd_inputs,
    channel_vector,
    check_tensor,
    compute_dtype,
    per_channel,
    reduce_dims,
)

__all__ = ["IMPLEMENTATIONS", "batchnorm_forward", "batchnorm_backward", "FusedBatchNormFunction"]

IMPLEMENTATIONS = ("reference", "fused", "fused-eager")


# ----------------------------------------------------------------------------- kernels


def _forward_kernel(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Passes 1 and 2. Returns (y, x_1, mean of x - x_1, sigma^2_B, 1/sqrt(sigma^2_B + eps)), the last
    four per channel, shaped (1, C, 1, ...), in the compute dtype."""
    dims = reduce_dims(x.ndim)
    values = x.to(compute_dtype(x))
    shift = per_channel(values[0].reshape(values.shape[1], -1)[:, 0], x.ndim)  # x_1: first value per channel
    var, shifted_mean = torch.var_mean(values - shift, dim=dims, correction=0, keepdim=True)
    inv_std = torch.rsqrt(var + eps)
    scale = per_channel(gamma.to(values.dtype), x.ndim) * inv_std
    out = (values - shift - shifted_mean) * scale + per_channel(beta.to(values.dtype), x.ndim)
    return out.to(x.dtype), shift, shifted_mean, var, inv_std


def _backward_kernel(
    dout: torch.Tensor,
    x: torch.Tensor,
    shift: torch.Tensor,
    shifted_mean: torch.Tensor,
    inv_std: torch.Tensor,
    gamma: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Passes 3 and 4: the reference's backward formula with x_hat recomputed from x."""
    dims = reduce_dims(x.ndim)
    m = _validate.values_per_channel(x)
    dy = dout.to(inv_std.dtype)
    x_hat = (x.to(inv_std.dtype) - shift - shifted_mean) * inv_std
    dbeta = dy.sum(dim=dims, keepdim=True)
    dgamma = (dy * x_hat).sum(dim=dims, keepdim=True)
    dx = (gamma * inv_std / m) * (m * dy - dbeta - x_hat * dgamma)
    return dx.to(x.dtype), dgamma, dbeta


_compiled_kernels: dict[Callable[..., Any], Callable[..., Any]] = {}
_compile_error: list[str] = []  # the first compilation error, once compilation has failed

# One specialised kernel per input shape, dtype and device (dynamic=False: the fastest loops).
# torch.compile's default limit of 8 kernels per function would be reached by a network with
# a few BN layers of different sizes; this one applies to the calls below only.
_SHAPES_PER_KERNEL = 64
_LIMIT_OPTION = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"


def _run(kernel: Callable[..., Any], compiled: bool, *args: Any) -> Any:
    """Run ``kernel`` compiled (falling back to eager, with one warning, if compiling fails) or eagerly.

    The kernels compute no gradients (the autograd Function below applies the backward
    formula), so they run on detached tensors without autograd: one compiled variant per shape.
    """
    args = tuple(arg.detach() if isinstance(arg, torch.Tensor) else arg for arg in args)
    if compiled and not _compile_error:
        try:
            if kernel not in _compiled_kernels:
                _compiled_kernels[kernel] = torch.compile(kernel, dynamic=False, fullgraph=True)
            with torch.no_grad(), torch._dynamo.config.patch({_LIMIT_OPTION: _SHAPES_PER_KERNEL}):
                return _compiled_kernels[kernel](*args)
        except Exception as error:  # no C++ compiler, no Triton, unsupported Python, ...
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            _compile_error.append(f"{type(error).__name__}: {' '.join(lines[:2])[:300]}")
            warnings.warn(
                f"impl='fused': torch.compile is unavailable here ({_compile_error[0]}); running the "
                "same kernels eagerly (impl='fused-eager'), which is correct but not faster",
                RuntimeWarning,
                stacklevel=3,
            )
    with torch.no_grad():
        return kernel(*args)


# ----------------------------------------------------------------------------- CS231n-style API


class _FusedCache(NamedTuple):
    """What the fused backward needs (opaque to callers): x itself, not x_hat."""

    x: torch.Tensor
    shift: torch.Tensor  # x_1, (1, C, 1, ...), compute dtype
    shifted_mean: torch.Tensor  # mean of x - x_1, (1, C, 1, ...)
    inv_std: torch.Tensor  # 1 / sqrt(sigma^2_B + eps), (1, C, 1, ...)
    gamma: torch.Tensor  # (1, C, 1, ...), compute dtype
    gamma_dtype: torch.dtype
    compiled: bool


def _forward(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float, compiled: bool
) -> tuple[torch.Tensor, _FusedCache, torch.Tensor, torch.Tensor]:
    """Checked forward: (out, cache, mu_B, sigma^2_B), the statistics of shape (C,)."""
    x = check_tensor("x", x)
    num_channels = _validate.check_batch("x", x, training=True)
    gamma = channel_vector("gamma", gamma, num_channels, x)
    beta = channel_vector("beta", beta, num_channels, x)
    _validate.check_eps(eps)
    out, shift, shifted_mean, var, inv_std = _run(_forward_kernel, compiled, x, gamma, beta, float(eps))
    gamma_b = per_channel(gamma.to(inv_std.dtype), x.ndim)
    cache = _FusedCache(x, shift, shifted_mean, inv_std, gamma_b, gamma.dtype, compiled)
    return out, cache, (shift + shifted_mean).reshape(-1), var.reshape(-1)


def batchnorm_forward(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5, *, compiled: bool = False
) -> tuple[torch.Tensor, object]:
    """Training-mode forward pass of BN (Algorithm 1 of Ioffe & Szegedy, 2015) in two passes.

        mu_B, sigma^2_B = mean and biased variance per channel (one Welford pass over x - x_1)
        y_i             = gamma * ((x_i - x_1) - (mu_B - x_1)) / sqrt(sigma^2_B + eps) + beta

    Inputs:
    - x: tensor of shape (N, C) or (N, C, *spatial) with m > 1 values per channel.
    - gamma: scale, shape (C,).
    - beta: shift, shape (C,).
    - eps: small constant > 0 added to the variance.
    - compiled: run the kernels through torch.compile (see the module docstring).

    Returns a tuple of:
    - out: y, same shape, dtype and device as x.
    - cache: opaque; pass it to ``batchnorm_backward``. It holds x, not a copy.
    """
    out, cache, _, _ = _forward(x, gamma, beta, eps, compiled)
    return out, cache


def batchnorm_backward(dout: torch.Tensor, cache: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward pass of training-mode BN in two passes (sec. 3 of the paper).

        x_hat_i = ((x_i - x_1) - (mu_B - x_1)) / sqrt(sigma^2_B + eps)      (recomputed)
        dbeta   = sum_i dout_i,   dgamma = sum_i dout_i * x_hat_i       (pass 3)
        dx_i    = gamma / (m * sqrt(sigma^2_B + eps)) * (m * dout_i - dbeta - x_hat_i * dgamma)   (pass 4)

    Inputs:
    - dout: upstream gradient dl/dy, same shape as x in the forward pass.
    - cache: the cache returned by ``batchnorm_forward`` of this module.

    Returns a tuple of:
    - dx: shape and dtype of x.
    - dgamma, dbeta: shape (C,), dtype of gamma.
    """
    if not isinstance(cache, _FusedCache):
        raise TypeError(
            f"cache: expected the cache returned by batchnorm_forward (of bncourse.fused), got {type(cache).__name__}"
        )
    dout = check_tensor("dout", dout)
    _validate.check_same_shape("dout", dout, tuple(cache.x.shape), "the shape of x in the forward pass")
    if dout.device != cache.x.device:
        raise ValueError(f"dout: expected a tensor on {cache.x.device} (the device of x), got one on {dout.device}")
    kernel_args = (dout, cache.x, cache.shift, cache.shifted_mean, cache.inv_std, cache.gamma)
    dx, dgamma, dbeta = _run(_backward_kernel, cache.compiled, *kernel_args)
    return dx, dgamma.reshape(-1).to(cache.gamma_dtype), dbeta.reshape(-1).to(cache.gamma_dtype)


# ----------------------------------------------------------------------------- autograd


class FusedBatchNormFunction(torch.autograd.Function):
    """Training-mode BN with the fused kernels: ``apply(x, gamma, beta, eps, compiled)``.

    Returns ``(out, mean, var)``: the output and the batch's per-channel mu_B
    and biased sigma^2_B (float32 for half-precision data; no gradient flows
    through them), so that running statistics are updated without another
    pass over x. gamma and beta may be None (gamma = 1, beta = 0).
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None,  # as gpu.BatchNormFunction
        eps: float = 1e-5, compiled: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, gamma, beta = autograd_inputs(ctx, x, gamma, beta)
        out, cache, mean, var = _forward(x, gamma, beta, eps, compiled)
        ctx.save_for_backward(cache.x, cache.shift, cache.shifted_mean, cache.inv_std, cache.gamma)
        ctx.settings = (cache.gamma_dtype, compiled)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor, _dmean: Any, _dvar: Any) -> tuple[torch.Tensor | None, ...]:
        grads = batchnorm_backward(dout, _FusedCache(*ctx.saved_tensors, *ctx.settings))
        return autograd_grads(ctx, *grads, num_settings=2)  # eps, compiled
