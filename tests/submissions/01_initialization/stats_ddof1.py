"""Uses the sample standard deviation (ddof=1) instead of the population one."""
import numpy as np

EXPECT_LOST = ["01_initialization-activation_stats", "01_initialization-activation_stats_hidden"]
EXPECT_FEEDBACK = "ddof=1"


def activation_stats(u, weights, g):
    means, stds = [], []
    h = u
    for W in weights:
        h = g(h @ W.T)
        means.append(np.mean(h))
        stds.append(np.std(h, ddof=1))
    return np.array(means), np.array(stds)
