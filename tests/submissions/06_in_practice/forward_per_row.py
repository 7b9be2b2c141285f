"""Pastes a batchnorm_forward that normalises each row (over the features) instead of each feature
over the batch; train itself is right.

The BN network then misses the target (9-15 % test accuracy, since inference normalises per
feature), and the training parts name the forward as the thing to fix, not only the accuracy.
"""
import numpy as np

EXPECT_LOST = ["06_in_practice-batchnorm_forward", "06_in_practice-batchnorm_backward",
               "06_in_practice-train_bn", "06_in_practice-train_bn_hidden"]
EXPECT_FEEDBACK = "taken per example"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=1, keepdims=True)
    centred = x - mu
    var = (centred * centred).mean(axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = centred * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std)
