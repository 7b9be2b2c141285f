"""Pastes a batchnorm_forward that divides the batch variance by m - 1; train itself is right.

The BN training parts check the layers train uses before training, so their message names the
forward, not the accuracy.
"""
import numpy as np

EXPECT_LOST = ["06_in_practice-batchnorm_forward", "06_in_practice-batchnorm_backward",
               "06_in_practice-train_bn", "06_in_practice-train_bn_hidden"]
EXPECT_FEEDBACK = "divide by m - 1"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)
    centred = x - mu
    var = (centred * centred).sum(axis=0) / (x.shape[0] - 1)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = centred * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std)
