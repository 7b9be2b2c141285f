"""Correct BN implementations in other common styles, behind this course's function names.

Each style is a (batchnorm_forward, batchnorm_backward) pair with the course's signatures,
built by a thin wrapper around code written the way it is usually written elsewhere:

- ``cs231n``: CS231n-style ``layers.py``: a 2-D forward with a tuple cache, a staged 2-D
  backward, and separate ``spatial_batchnorm_*`` helpers that move the channel axis last and
  reuse the 2-D code; the wrapper views (N, C, *spatial) as 4-D (N, C, prod(spatial), 1);
- ``loops``: one channel at a time, in a Python loop;
- ``float64_inside``: every computation in float64, the results cast back to x's dtype;
- ``welford``: Welford's one-pass running mean and variance over the values of a channel.

``slip(style)`` is the same pair with a single slip in a side property: results returned in
float64 for float32 input (the numbers all right).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# --------------------------------------------------------------------------- CS231n style


def _cs231n_forward_2d(x, gamma, beta, eps):
    sample_mean = np.mean(x, axis=0)
    sample_var = np.var(x, axis=0)
    x_norm = (x - sample_mean) / np.sqrt(sample_var + eps)
    out = gamma * x_norm + beta
    return out, (x, x_norm, sample_mean, sample_var, gamma, eps)


def _cs231n_backward_2d(dout, cache):
    x, x_norm, mu, var, gamma, eps = cache
    n = x.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_norm, axis=0)
    dx_norm = dout * gamma
    dvar = np.sum(dx_norm * (x - mu) * -0.5 * (var + eps) ** -1.5, axis=0)
    dmu = np.sum(-dx_norm / np.sqrt(var + eps), axis=0) + dvar * np.mean(-2.0 * (x - mu), axis=0)
    dx = dx_norm / np.sqrt(var + eps) + dvar * 2.0 * (x - mu) / n + dmu / n
    return dx, dgamma, dbeta


def _spatial_batchnorm_forward(x, gamma, beta, eps):
    n, c, h, w = x.shape
    rows = x.transpose(0, 2, 3, 1).reshape(-1, c)
    out, cache = _cs231n_forward_2d(rows, gamma, beta, eps)
    return out.reshape(n, h, w, c).transpose(0, 3, 1, 2), cache


def _spatial_batchnorm_backward(dout, cache):
    n, c, h, w = dout.shape
    rows = dout.transpose(0, 2, 3, 1).reshape(-1, c)
    dx, dgamma, dbeta = _cs231n_backward_2d(rows, cache)
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2), dgamma, dbeta


def cs231n_forward(x, gamma, beta, eps=1e-5):
    if x.ndim == 2:
        out, cache = _cs231n_forward_2d(x, gamma, beta, eps)
        return out, ("2d", x.shape, cache)
    as_4d = x.reshape(x.shape[0], x.shape[1], -1, 1)  # (N, C, *spatial) -> (N, C, S, 1)
    out, cache = _spatial_batchnorm_forward(as_4d, gamma, beta, eps)
    return out.reshape(x.shape), ("4d", x.shape, cache)


def cs231n_backward(dout, cache):
    kind, shape, inner = cache
    if kind == "2d":
        return _cs231n_backward_2d(dout, inner)
    dx, dgamma, dbeta = _spatial_batchnorm_backward(dout.reshape(shape[0], shape[1], -1, 1),
                                                    inner)
    return dx.reshape(shape), dgamma, dbeta


# --------------------------------------------------------------------------- one channel at a time


def loops_forward(x, gamma, beta, eps=1e-5):
    out, x_hats, stds = np.empty_like(x), np.empty_like(x), []
    for c in range(x.shape[1]):
        values = x[:, c]
        mean = values.mean()
        std = np.sqrt(((values - mean) ** 2).mean() + eps)
        x_hats[:, c] = (values - mean) / std
        out[:, c] = gamma[c] * x_hats[:, c] + beta[c]
        stds.append(std)
    return out, {"x_hat": x_hats, "std": stds, "gamma": gamma}


def loops_backward(dout, cache):
    dx = np.empty_like(dout)
    dgamma = np.empty(dout.shape[1], dtype=dout.dtype)
    dbeta = np.empty(dout.shape[1], dtype=dout.dtype)
    for c in range(dout.shape[1]):
        x_hat, d = cache["x_hat"][:, c], dout[:, c]
        g = cache["gamma"][c] * d
        dx[:, c] = (g - g.mean() - x_hat * (g * x_hat).mean()) / cache["std"][c]
        dgamma[c], dbeta[c] = (d * x_hat).sum(), d.sum()
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- float64 inside


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _shape(x):
    return (1, -1) + (1,) * (x.ndim - 2)


def float64_forward(x, gamma, beta, eps=1e-5, cast_back=True):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=_axes(x), keepdims=True)
    std = np.sqrt(x64.var(axis=_axes(x), keepdims=True) + eps)
    x_hat = (x64 - mean) / std
    out = gamma.astype(np.float64).reshape(_shape(x)) * x_hat + beta.reshape(_shape(x))
    return (out.astype(x.dtype) if cast_back else out), (x_hat, std, gamma, x.dtype)


def float64_backward(dout, cache, cast_back=True):
    x_hat, std, gamma, dtype = cache
    axes = _axes(dout)
    g = dout.astype(np.float64) * gamma.astype(np.float64).reshape(_shape(dout))
    dx = (g - g.mean(axis=axes, keepdims=True)
          - x_hat * (g * x_hat).mean(axis=axes, keepdims=True)) / std
    grads = (dx, (dout * x_hat).sum(axis=axes), dout.astype(np.float64).sum(axis=axes))
    return tuple(v.astype(dtype) for v in grads) if cast_back else grads


# --------------------------------------------------------------------------- Welford


def welford_forward(x, gamma, beta, eps=1e-5):
    rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    mean = np.zeros(x.shape[1], dtype=x.dtype)
    m2 = np.zeros(x.shape[1], dtype=x.dtype)
    for count, row in enumerate(rows, start=1):
        delta = row - mean
        mean = mean + delta / x.dtype.type(count)
        m2 = m2 + delta * (row - mean)
    std = np.sqrt(m2 / x.dtype.type(len(rows)) + x.dtype.type(eps)).reshape(_shape(x))
    x_hat = (x - mean.reshape(_shape(x))) / std
    return gamma.reshape(_shape(x)) * x_hat + beta.reshape(_shape(x)), (x_hat, std, gamma)


def welford_backward(dout, cache):
    x_hat, std, gamma = cache
    axes = _axes(dout)
    g = dout * gamma.reshape(_shape(dout))
    dx = (g - g.mean(axis=axes, keepdims=True)
          - x_hat * (g * x_hat).mean(axis=axes, keepdims=True)) / std
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)


def _loops_any_layout(forward, backward):
    """The per-channel loops written for (N, C): (N, C, *spatial) viewed as (N * S, C)."""
    def forward_any(x, gamma, beta, eps=1e-5):
        rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
        out, cache = forward(rows, gamma, beta, eps)
        moved = np.moveaxis(x, 1, -1).shape
        return np.moveaxis(out.reshape(moved), -1, 1), (cache, moved)

    def backward_any(dout, cache):
        inner, moved = cache
        rows = np.moveaxis(dout, 1, -1).reshape(-1, dout.shape[1])
        dx, dgamma, dbeta = backward(rows, inner)
        return np.moveaxis(dx.reshape(moved), -1, 1), dgamma, dbeta

    return forward_any, backward_any


STYLES: dict[str, tuple[Callable, Callable]] = {
    "cs231n": (cs231n_forward, cs231n_backward),
    "loops": _loops_any_layout(loops_forward, loops_backward),
    "float64_inside": (float64_forward, float64_backward),
    "welford": (welford_forward, welford_backward),
}


def slip(style: str) -> tuple[Callable, Callable]:
    """The style with float64 results for float32 input (every number right)."""
    forward, backward = STYLES[style]

    def forward64(x, gamma, beta, eps=1e-5):
        out, cache = forward(x, gamma, beta, eps)
        return np.asarray(out, dtype=np.float64), cache

    def backward64(dout, cache):
        return tuple(np.asarray(g, dtype=np.float64) for g in backward(dout, cache))

    return forward64, backward64
