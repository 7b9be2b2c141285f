"""Averages the biased batch variances without the m / (m - 1) correction."""

import numpy as np

EXPECT_LOST = ["05_inference-population_stats", "05_inference-population_stats_hidden"]
EXPECT_FEEDBACK = "lack the m / (m - 1) correction"


def population_stats(batches):
    axes = (0,) + tuple(range(2, batches[0].ndim))
    mean = np.mean([b.mean(axis=axes) for b in batches], axis=0)
    var = np.mean([b.var(axis=axes) for b in batches], axis=0)
    return mean, var
