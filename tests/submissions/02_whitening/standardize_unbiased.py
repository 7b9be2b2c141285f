"""Standardises with the unbiased variance (divides by N - 1)."""
import numpy as np

EXPECT_LOST = ["02_whitening-standardize", "02_whitening-standardize_hidden"]
EXPECT_FEEDBACK = "N - 1"


def standardize(x, eps=1e-5):
    return (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0, ddof=1) + eps)
