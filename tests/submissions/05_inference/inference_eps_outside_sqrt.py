"""Inference with eps added to the standard deviation."""

import numpy as np

EXPECT_LOST = ["05_inference-inference", "05_inference-inference_hidden"]
EXPECT_FEEDBACK = "outside the square root"


def batchnorm_inference(x, gamma, beta, running_mean, running_var, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = gamma / (np.sqrt(running_var) + eps)
    return scale.reshape(shape) * (x - running_mean.reshape(shape)) + beta.reshape(shape)
