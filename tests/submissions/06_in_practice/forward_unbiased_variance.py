"""Pastes a batchnorm_forward that divides the batch variance by m - 1; train itself is right.

The network still reaches the target accuracy with it (97 %, 97 %, 94 %), so the training parts
keep their points: the mistake is charged once, by the layer parts.
"""
import numpy as np

EXPECT_LOST = ["06_in_practice-batchnorm_forward", "06_in_practice-batchnorm_backward"]
EXPECT_FEEDBACK = "divide by m - 1"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)
    centred = x - mu
    var = (centred * centred).sum(axis=0) / (x.shape[0] - 1)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = centred * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std)
