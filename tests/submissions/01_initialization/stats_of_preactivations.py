"""Records the statistics of the pre-activations x = u @ W.T instead of z = g(x)."""
import numpy as np

EXPECT_LOST = ["01_initialization-activation_stats", "01_initialization-activation_stats_hidden"]
EXPECT_FEEDBACK = "pre-activations"


def activation_stats(u, weights, g):
    means, stds = [], []
    h = u
    for W in weights:
        x = h @ W.T
        means.append(x.mean())
        stds.append(x.std())
        h = g(x)
    return np.array(means), np.array(stds)
