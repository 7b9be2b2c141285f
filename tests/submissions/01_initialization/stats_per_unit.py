"""Averages the per-unit standard deviations instead of taking the std of the whole layer."""
import numpy as np

EXPECT_LOST = ["01_initialization-activation_stats", "01_initialization-activation_stats_hidden"]
EXPECT_FEEDBACK = "per unit"


def activation_stats(u, weights, g):
    means, stds = [], []
    h = u
    for W in weights:
        h = g(h @ W.T)
        means.append(h.mean())
        stds.append(h.std(axis=0).mean())
    return np.array(means), np.array(stds)
