"""Inference that normalises with the statistics of the batch it is given."""

import numpy as np

EXPECT_LOST = ["05_inference-inference", "05_inference-inference_hidden"]
EXPECT_FEEDBACK = "statistics of this batch"


def batchnorm_inference(x, gamma, beta, running_mean, running_var, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return gamma.reshape(shape) * (x - mu) / np.sqrt(var + eps) + beta.reshape(shape)
