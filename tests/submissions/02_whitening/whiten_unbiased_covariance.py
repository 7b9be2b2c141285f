"""Uses np.cov's default covariance, which divides by N - 1."""
import numpy as np

EXPECT_LOST = ["02_whitening-whiten_zca", "02_whitening-whiten_pca", "02_whitening-whiten_hidden"]
EXPECT_FEEDBACK = "N - 1"


def whiten(x, method="zca", eps=1e-5):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    cov = np.atleast_2d(np.cov(x64, rowvar=False))
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    eigenvalues, eigenvectors = np.clip(eigenvalues[::-1], 0, None), eigenvectors[:, ::-1]
    W = eigenvectors / np.sqrt(eigenvalues + eps)
    if method == "zca":
        W = W @ eigenvectors.T
    return ((x64 - mean) @ W).astype(x.dtype), W.astype(x.dtype), mean.astype(x.dtype)
