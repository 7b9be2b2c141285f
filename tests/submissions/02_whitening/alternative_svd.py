"""Correct, written differently: Welford's running variance in float64, whitening from the SVD of
the centred data, and flop counts that charge a sum of n numbers n - 1 flops."""
import numpy as np

EXPECT_LOST = []
EXPECT_FEEDBACK = ""


def standardize(x, eps=1e-5):
    mean = np.zeros(x.shape[1])
    m2 = np.zeros(x.shape[1])
    for count, row in enumerate(x.astype(np.float64), start=1):
        delta = row - mean
        mean = mean + delta / count
        m2 = m2 + delta * (row - mean)
    return ((x - mean) / np.sqrt(m2 / len(x) + eps)).astype(x.dtype)


def whiten(x, method="zca", eps=1e-5):
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=0)
    centred = x64 - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=True)
    variances = np.zeros(x.shape[1])
    variances[: len(singular)] = singular**2 / len(x)
    W = vt.T / np.sqrt(variances + eps)
    if method == "zca":
        W = W @ vt
    return (centred @ W).astype(x.dtype), W.astype(x.dtype), mean.astype(x.dtype)


def standardize_flops(N, d):
    return (N - 1) * d + d + N * d + N * d + (N - 1) * d + d + d + d + N * d


def whiten_flops(N, d, method="zca"):
    covariance = d * d * (2 * N - 1)
    product_w = 2 * d**3 if method == "zca" else 0
    return (N - 1) * d + d + N * d + covariance + d * d + 9 * d**3 + 3 * d + d * d + product_w + 2 * N * d * d
