"""Computes the variance as E[x^2] - E[x]^2, which cancels in float32 when the mean is large."""
import numpy as np

EXPECT_LOST = ["02_whitening-standardize", "02_whitening-standardize_hidden"]
EXPECT_FEEDBACK = "E[x^2] - E[x]^2"


def standardize(x, eps=1e-5):
    mean = x.mean(axis=0)
    var = (x * x).mean(axis=0) - mean * mean
    return (x - mean) / np.sqrt(var + eps)
