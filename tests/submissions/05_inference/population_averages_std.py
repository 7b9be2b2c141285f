"""Averages the batch standard deviations and squares the result."""

import numpy as np

EXPECT_LOST = ["05_inference-population_stats", "05_inference-population_stats_hidden"]
EXPECT_FEEDBACK = "standard deviations seem to be averaged"


def population_stats(batches):
    axes = (0,) + tuple(range(2, batches[0].ndim))
    m = batches[0].size // batches[0].shape[1]
    mean = np.mean([b.mean(axis=axes) for b in batches], axis=0)
    std = np.mean([b.std(axis=axes) for b in batches], axis=0)
    return mean, std**2 * (m / (m - 1))
