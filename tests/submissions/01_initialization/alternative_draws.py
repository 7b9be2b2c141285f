"""Correct, written differently: uniform from rng.random, normal from rng.normal, stats in float64
with a list comprehension, the profile judged on a log scale."""
import numpy as np

EXPECT_LOST = []
EXPECT_FEEDBACK = ""


def xavier_uniform(fan_in, fan_out, rng):
    a = (6 / (fan_in + fan_out)) ** 0.5
    return a * (2.0 * rng.random((fan_out, fan_in)) - 1.0)


def xavier_normal(fan_in, fan_out, rng):
    return rng.normal(loc=0.0, scale=(2 / (fan_in + fan_out)) ** 0.5, size=(fan_out, fan_in))


def activation_stats(u, weights, g):
    outputs = []
    h = np.asarray(u, dtype=np.float64)
    for W in weights:
        h = g(np.einsum("nk,jk->nj", h, W))
        outputs.append(h)
    return np.array([z.mean() for z in outputs]), np.array([z.std() for z in outputs])


def classify_signal(stds):
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.log10(stds[-1]) - np.log10(stds[0])
    if np.isnan(change) or not np.all(np.isfinite(stds)):
        return "exploding"
    if change < -1:
        return "vanishing"
    return "exploding" if change > 1 else "stable"
