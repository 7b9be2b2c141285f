"""Keeps np.linalg.eigh's increasing order of eigenvalues for the principal axes."""
import numpy as np

EXPECT_LOST = ["02_whitening-whiten_pca", "02_whitening-whiten_hidden"]
EXPECT_FEEDBACK = "increasing order"


def whiten(x, method="zca", eps=1e-5):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    centred = x64 - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(x))
    W = eigenvectors / np.sqrt(np.clip(eigenvalues, 0, None) + eps)
    if method == "zca":
        W = W @ eigenvectors.T
    return (centred @ W).astype(x.dtype), W.astype(x.dtype), mean.astype(x.dtype)
