"""Right on (N, D); on images normalises each example's channel over its own H x W positions
(instance normalisation) instead of over the batch."""

import numpy as np

EXPECT_LOST = ["03_bn_transform-forward_4d", "03_bn_transform-forward_4d_hidden"]
EXPECT_FEEDBACK = "instance normalisation"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    axes = tuple(range(2, x.ndim)) if x.ndim > 2 else (0,)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    x_hat = (x - mu) / np.sqrt(var + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), (x_hat, gamma)
