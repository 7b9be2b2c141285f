"""Handles (N, D) only: on images the (C,) gamma does not broadcast and NumPy raises."""

import numpy as np

EXPECT_LOST = ["03_bn_transform-forward_4d", "03_bn_transform-forward_4d_hidden"]
EXPECT_FEEDBACK = "lines up with the LAST axis of x"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    x_hat = (x - mu) / np.sqrt(var + eps)
    return gamma * x_hat + beta, (x_hat, gamma)
