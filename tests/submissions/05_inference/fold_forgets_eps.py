"""Folds with gamma / sqrt(running_var), forgetting eps."""

import numpy as np

EXPECT_LOST = ["05_inference-fold", "05_inference-fold_hidden"]
EXPECT_FEEDBACK = "eps seems to be missing from the folded scale"


def fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
    if bias is None:
        bias = np.zeros(weight.shape[0], dtype=weight.dtype)
    scale = gamma / np.sqrt(running_var)
    folded_weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    return folded_weight, scale * (bias - running_mean) + beta
