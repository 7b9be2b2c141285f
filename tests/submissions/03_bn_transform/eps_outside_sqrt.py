"""Adds eps to the standard deviation instead of the variance."""

import numpy as np

EXPECT_LOST = [
    "03_bn_transform-forward_2d",
    "03_bn_transform-forward_2d_hidden",
    "03_bn_transform-forward_4d",
    "03_bn_transform-forward_4d_hidden",
]
EXPECT_FEEDBACK = "outside the square root"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    std = np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True))
    x_hat = (x - mu) / (std + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), None
