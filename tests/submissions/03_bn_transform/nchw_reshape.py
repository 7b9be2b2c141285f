"""Right on (N, D); on images, reshapes (N, C, H, W) to (-1, C) without moving C last."""

import numpy as np

EXPECT_LOST = ["03_bn_transform-forward_4d", "03_bn_transform-forward_4d_hidden"]
EXPECT_FEEDBACK = "without first moving the channel axis"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    rows = x.reshape(-1, x.shape[1])
    mu = rows.mean(axis=0)
    var = rows.var(axis=0)
    out = gamma * (rows - mu) / np.sqrt(var + eps) + beta
    return out.reshape(x.shape), None
