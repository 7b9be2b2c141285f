"""Variance as E[x^2] - E[x]^2: right on ordinary data, garbage in float32 far from zero (a
visible case of each part now shows it, so grading holds no surprise)."""

import numpy as np

EXPECT_LOST = ["03_bn_transform-forward_2d", "03_bn_transform-forward_2d_hidden",
               "03_bn_transform-forward_4d", "03_bn_transform-forward_4d_hidden"]
EXPECT_FEEDBACK = "E[x^2] - E[x]^2"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    var = (x * x).mean(axis=axes, keepdims=True) - mu * mu
    x_hat = (x - mu) / np.sqrt(var + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), None
