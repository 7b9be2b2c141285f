"""Centres and scales x in place, so the caller's array changes."""

import numpy as np

EXPECT_LOST = [
    "03_bn_transform-forward_2d",
    "03_bn_transform-forward_2d_hidden",
    "03_bn_transform-forward_4d",
    "03_bn_transform-forward_4d_hidden",
]
# The numbers are right: a side-property slip, so these parts keep part of their points.
EXPECT_PARTIAL = [
    "03_bn_transform-forward_2d",
    "03_bn_transform-forward_2d_hidden",
    "03_bn_transform-forward_4d",
    "03_bn_transform-forward_4d_hidden",
]
EXPECT_FEEDBACK = "in place"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x -= x.mean(axis=axes, keepdims=True)
    x /= np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    return gamma.reshape(shape) * x + beta.reshape(shape), None
