"""Standardises each row (example) instead of each column (feature)."""
import numpy as np

EXPECT_LOST = ["02_whitening-standardize", "02_whitening-standardize_hidden"]
EXPECT_FEEDBACK = "axis=0"


def standardize(x, eps=1e-5):
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)
