"""Correct, differently: float64 internally, statistics by einsum over a channels-first view."""

import numpy as np

EXPECT_LOST = []
EXPECT_FEEDBACK = ""


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    channels_first = np.moveaxis(x.astype(np.float64), 1, 0).reshape(x.shape[1], -1)
    m = channels_first.shape[1]
    mean = np.einsum("cm->c", channels_first) / m
    centred = channels_first - mean[:, None]
    var = np.einsum("cm,cm->c", centred, centred) / m
    y = gamma[:, None] * centred / np.sqrt(var[:, None] + eps) + beta[:, None]
    moved = y.reshape((x.shape[1], x.shape[0]) + x.shape[2:])
    return np.moveaxis(moved, 0, 1).astype(x.dtype), None
