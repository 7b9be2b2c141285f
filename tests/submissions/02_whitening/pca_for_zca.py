"""Returns PCA's whitening matrix whatever the method (forgets to rotate back for ZCA)."""
import numpy as np

EXPECT_LOST = ["02_whitening-whiten_zca", "02_whitening-whiten_hidden"]
EXPECT_FEEDBACK = "ZCA was asked"


def whiten(x, method="zca", eps=1e-5):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    centred = x64 - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(x))
    eigenvalues, eigenvectors = np.clip(eigenvalues[::-1], 0, None), eigenvectors[:, ::-1]
    W = eigenvectors / np.sqrt(eigenvalues + eps)
    return (centred @ W).astype(x.dtype), W.astype(x.dtype), mean.astype(x.dtype)
