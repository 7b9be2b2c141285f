"""Correct, differently: a tuple cache of (x, gamma, eps) that recomputes what it needs, and the
staged backward reused as the "compact" one."""

import numpy as np

EXPECT_LOST = []
EXPECT_FEEDBACK = ""


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    x_hat = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), (x, gamma, eps)


def batchnorm_backward(dout, cache):
    x, gamma, eps = cache
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = x.size // x.shape[1]
    mu = x.mean(axis=axes, keepdims=True)
    c = x - mu
    var = (c * c).mean(axis=axes, keepdims=True)
    s = np.sqrt(var + eps)
    x_hat = c / s
    dx_hat = dout * gamma.reshape(shape)
    ds = -(dx_hat * c).sum(axis=axes, keepdims=True) / s**2
    dvar = ds / (2 * s)
    dc = dx_hat / s + 2 * c * dvar / m
    dx = dc - dc.sum(axis=axes, keepdims=True) / m
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)


def batchnorm_backward_compact(dout, cache):
    return batchnorm_backward(dout, cache)
