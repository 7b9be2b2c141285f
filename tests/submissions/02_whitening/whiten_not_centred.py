"""Never subtracts the mean: whitens with the second-moment matrix x^T x / N."""
import numpy as np

EXPECT_LOST = ["02_whitening-whiten_zca", "02_whitening-whiten_pca", "02_whitening-whiten_hidden"]
EXPECT_FEEDBACK = "centred"


def whiten(x, method="zca", eps=1e-5):
    x64 = x.astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(x64.T @ x64 / len(x))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    W = eigenvectors / np.sqrt(eigenvalues + eps)
    if method == "zca":
        W = W @ eigenvectors.T
    return (x64 @ W).astype(x.dtype), W.astype(x.dtype), np.zeros(x.shape[1], x.dtype)
