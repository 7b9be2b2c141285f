"""Normalises with the unbiased variance M2 / (m - 1)."""

import numpy as np

EXPECT_LOST = ["07_distributed-forward", "07_distributed-forward_hidden", "07_distributed-backward",
               "07_distributed-backward_hidden"]
EXPECT_FEEDBACK = "m - 1"


def sync_batchnorm_forward(x_groups, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x_groups[0].ndim))
    shape = (1, -1) + (1,) * (x_groups[0].ndim - 2)
    count = np.array([x.size // x.shape[1] for x in x_groups])
    means = np.stack([x.mean(axis=axes) for x in x_groups])
    m2s = np.stack([((x - mu.reshape(shape)) ** 2).sum(axis=axes) for x, mu in zip(x_groups, means, strict=True)])
    m, mean, m2 = merge_batch_stats(count, means, m2s)  # noqa: F821 (the notebook's)
    m = int(m)
    std = np.sqrt(m2 / (m - 1) + eps)
    outs, caches = [], []
    for x in x_groups:
        x_hat = (x - mean.reshape(shape)) / std.reshape(shape)
        outs.append(gamma.reshape(shape) * x_hat + beta.reshape(shape))
        caches.append((x_hat, gamma, std, m))
    return outs, caches
