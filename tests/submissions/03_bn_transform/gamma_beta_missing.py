"""Returns x_hat: normalises but never applies gamma and beta."""

import numpy as np

EXPECT_LOST = [
    "03_bn_transform-forward_2d",
    "03_bn_transform-forward_2d_hidden",
    "03_bn_transform-forward_4d",
    "03_bn_transform-forward_4d_hidden",
]
EXPECT_FEEDBACK = "ignored"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    x_hat = (x - mu) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return x_hat, None
