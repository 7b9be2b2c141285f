"""Folds as if the layer had no bias: b' = beta - scale * running_mean."""

import numpy as np

EXPECT_LOST = ["05_inference-fold", "05_inference-fold_hidden"]
EXPECT_FEEDBACK = "own bias seems to be dropped"


def fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
    scale = gamma / np.sqrt(running_var + eps)
    folded_weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    return folded_weight, beta - scale * running_mean
