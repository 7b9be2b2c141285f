"""Applies U diag(s) but returns its transpose diag(s) U^T as W (invisible for ZCA, whose W is symmetric)."""
import numpy as np

EXPECT_LOST = ["02_whitening-whiten_pca", "02_whitening-whiten_hidden"]
EXPECT_FEEDBACK = "transpose"


def whiten(x, method="zca", eps=1e-5):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    centred = x64 - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(x))
    eigenvalues, eigenvectors = np.clip(eigenvalues[::-1], 0, None), eigenvectors[:, ::-1]
    W = eigenvectors / np.sqrt(eigenvalues + eps)
    if method == "zca":
        W = W @ eigenvectors.T
    return (centred @ W).astype(x.dtype), W.T.astype(x.dtype), mean.astype(x.dtype)
