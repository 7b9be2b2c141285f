"""Each rank normalises its slice with its own statistics: nothing is exchanged."""

import numpy as np

EXPECT_LOST = ["07_distributed-forward", "07_distributed-forward_hidden", "07_distributed-backward",
               "07_distributed-backward_hidden"]
EXPECT_FEEDBACK = "statistics of its own slice"


def sync_batchnorm_forward(x_groups, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x_groups[0].ndim))
    shape = (1, -1) + (1,) * (x_groups[0].ndim - 2)
    outs, caches = [], []
    for x in x_groups:
        mean = x.mean(axis=axes, keepdims=True)
        std = np.sqrt(x.var(axis=axes, keepdims=True) + eps)
        x_hat = (x - mean) / std
        outs.append(gamma.reshape(shape) * x_hat + beta.reshape(shape))
        caches.append((x_hat, gamma, std.reshape(-1), x.size // x.shape[1]))
    return outs, caches
