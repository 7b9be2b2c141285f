"""The checks and shapes that every PyTorch implementation of BN shares.

``bncourse.gpu`` (the reference), ``bncourse.fused`` (the fused path) and
``bncourse.sync_batchnorm`` take their arguments through these functions, so
that the same bad input gets the same error from each of them, and fill in the
gradients of ``torch.autograd.Function.backward`` the same way.
"""

from __future__ import annotations

from typing import Any

import torch

from bncourse import _validate

HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_tensor(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    _validate.check_floating(name, value)
    return value


def check_companion(name: str, tensor: Any, data: torch.Tensor, data_name: str) -> torch.Tensor:
    """Check that ``tensor`` lives on the device of ``data`` and has a dtype that goes with it."""
    tensor = check_tensor(name, tensor)
    if tensor.device != data.device:
        raise ValueError(
            f"{name}: expected a tensor on {data.device} (the device of {data_name}), got one on {tensor.device}"
        )
    allowed = (data.dtype, torch.float32) if data.dtype in HALF_DTYPES else (data.dtype,)
    if tensor.dtype not in allowed:
        expected = " or ".join(str(dtype) for dtype in allowed)
        raise TypeError(
            f"{name}: expected dtype {expected} (to match {data_name}, which is {data.dtype}), got {tensor.dtype}"
        )
    return tensor


def channel_vector(name: str, value: Any, num_channels: int, data: torch.Tensor) -> torch.Tensor:
    vector = check_companion(name, value, data, "x")
    _validate.check_per_channel(name, vector, num_channels)
    return vector


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half-precision data, the data's own dtype otherwise."""
    return torch.float32 if x.dtype in HALF_DTYPES else x.dtype


def reduce_dims(ndim: int) -> tuple[int, ...]:
    """Dimensions a channel's statistics run over: all except dim 1 (the channels)."""
    return (0, *range(2, ndim))


def per_channel(vector: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a ``(C,)`` vector to ``(1, C, 1, ...)`` so it broadcasts against x."""
    return vector.reshape((1, -1) + (1,) * (ndim - 2))


def autograd_inputs(
    ctx: Any, x: Any, gamma: torch.Tensor | None, beta: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check a training batch and fill in a missing gamma (ones) or beta (zeros).

    Records on ``ctx`` which of gamma and beta were given, so that
    ``autograd_grads`` returns no gradient for one that was not.
    """
    x = check_tensor("x", x)
    num_channels = _validate.check_batch("x", x, training=True)
    ctx.has_gamma, ctx.has_beta = gamma is not None, beta is not None
    if gamma is None:
        gamma = x.new_ones(num_channels, dtype=compute_dtype(x))
    if beta is None:
        beta = x.new_zeros(num_channels, dtype=gamma.dtype)
    return x, gamma, beta


def autograd_grads(
    ctx: Any, dx: torch.Tensor, dgamma: torch.Tensor, dbeta: torch.Tensor, num_settings: int
) -> tuple[torch.Tensor | None, ...]:
    """What ``backward`` returns for inputs (x, gamma, beta, *settings): a gradient
    only where one was asked for and the tensor was given; None for each of the
    ``num_settings`` non-tensor arguments after beta."""
    return (
        dx if ctx.needs_input_grad[0] else None,
        dgamma if ctx.has_gamma and ctx.needs_input_grad[1] else None,
        dbeta if ctx.has_beta and ctx.needs_input_grad[2] else None,
    ) + (None,) * num_settings
