"""Takes the mean per channel but the variance with np.var(x), over the whole array."""

import numpy as np

EXPECT_LOST = [
    "03_bn_transform-forward_2d",
    "03_bn_transform-forward_2d_hidden",
    "03_bn_transform-forward_4d",
    "03_bn_transform-forward_4d_hidden",
]
EXPECT_FEEDBACK = "the variance seems to be taken over the whole array"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    var = np.var(x)
    x_hat = (x - mu) / np.sqrt(var + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), (x_hat, gamma)
