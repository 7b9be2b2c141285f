"""Correct, differently: a vectorised merge (count-weighted mean, then the between-group term
around it), the forward with keepdims statistics and a cache of the whole-batch pieces, and the
backward through dgamma and dbeta."""

import numpy as np

EXPECT_LOST = []
EXPECT_FEEDBACK = ""


def merge_batch_stats(count, mean, m2):
    weights = (count / count.sum()).astype(mean.dtype)[:, None]
    merged_mean = (weights * mean).sum(axis=0)
    between = (count.astype(mean.dtype)[:, None] * (mean - merged_mean) ** 2).sum(axis=0)
    return count.sum(), merged_mean, m2.sum(axis=0) + between


def sync_batchnorm_forward(x_groups, gamma, beta, eps=1e-5):
    axes = tuple(i for i in range(x_groups[0].ndim) if i != 1)
    count = np.array([x.size // x.shape[1] for x in x_groups])
    means = [x.mean(axis=axes, keepdims=True) for x in x_groups]
    m2s = [((x - mu) ** 2).sum(axis=axes) for x, mu in zip(x_groups, means, strict=True)]
    flat_means = np.stack([mu.reshape(-1) for mu in means])
    m, mean, m2 = merge_batch_stats(count, flat_means, np.stack(m2s))
    shape = means[0].shape
    inv_std = 1 / np.sqrt(m2.reshape(shape) / x_groups[0].dtype.type(m) + eps)
    outs, caches = [], []
    for x in x_groups:
        x_hat = (x - mean.reshape(shape)) * inv_std
        outs.append(gamma.reshape(shape) * x_hat + beta.reshape(shape))
        caches.append({"x_hat": x_hat, "scale": gamma.reshape(shape) * inv_std, "m": m})
    return outs, caches


def sync_batchnorm_backward(dout_groups, caches):
    axes = tuple(i for i in range(dout_groups[0].ndim) if i != 1)
    dbeta = np.sum([dy.sum(axis=axes) for dy in dout_groups], axis=0)
    dgamma = np.sum([(dy * c["x_hat"]).sum(axis=axes) for dy, c in zip(dout_groups, caches, strict=True)], axis=0)
    dxs = []
    for dy, c in zip(dout_groups, caches, strict=True):
        shape = c["scale"].shape
        m = c["x_hat"].dtype.type(c["m"])
        dxs.append(c["scale"] * (dy - dbeta.reshape(shape) / m - c["x_hat"] * dgamma.reshape(shape) / m))
    return dxs, dgamma, dbeta
