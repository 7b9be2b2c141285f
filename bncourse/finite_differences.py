"""Numerical gradients by central finite differences, and the error measure to compare them.

The book uses these to check hand-derived backward passes. A central difference
``(f(x + h) - f(x - h)) / 2h`` has a truncation error of order ``h**2`` and a
rounding error of order ``eps_machine / h``; both are small only in float64,
which is why every check here is meant to run on float64 inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_gradient(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    dout: np.ndarray,
    h: float = 1e-5,
) -> np.ndarray:
    """Gradient of ``sum(f(x) * dout)`` with respect to ``x``, by central differences.

    Inputs:
    - f: function of one array returning an array of ``dout``'s shape.
    - x: the point, any shape; it is copied, never modified.
    - dout: upstream gradient ``dl/df(x)``, same shape as ``f(x)``.
    - h: step, positive.

    Returns ``dx`` of the shape and dtype of ``x``. Costs ``2 * x.size`` calls of ``f``.
    """
    if not h > 0:
        raise ValueError(f"h: expected a positive step, got {h!r}")
    x = np.array(x, copy=True)
    dout = np.asarray(dout)
    reference = np.asarray(f(x.copy()))
    if reference.shape != dout.shape:
        raise ValueError(
            f"dout: expected the shape of f(x), {reference.shape}, got {dout.shape}"
        )
    grad = np.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    for index in range(flat_x.size):
        original = flat_x[index]
        flat_x[index] = original + h
        loss_plus = np.sum(np.asarray(f(x.copy())) * dout)
        flat_x[index] = original - h
        loss_minus = np.sum(np.asarray(f(x.copy())) * dout)
        flat_x[index] = original
        flat_grad[index] = (loss_plus - loss_minus) / (2 * h)
    return grad


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Norm-wise relative error ``||actual - expected|| / max(||actual||, ||expected||)``.

    Norm-wise rather than element-wise, because an element-wise ratio blows up
    on entries that are zero up to rounding (a BN gradient has many such sums).
    Returns 0.0 when both are exactly zero.
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise ValueError(
            f"actual: expected the shape of expected, {expected.shape}, got {actual.shape}"
        )
    scale = max(np.linalg.norm(actual), np.linalg.norm(expected))
    return 0.0 if scale == 0 else float(np.linalg.norm(actual - expected) / scale)
