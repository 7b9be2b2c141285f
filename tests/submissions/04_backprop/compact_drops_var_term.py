"""Compact formula without the x_hat * mean(g * x_hat) term (the path through the variance)."""

EXPECT_LOST = ["04_backprop-backward_compact", "04_backprop-backward_compact_hidden"]
EXPECT_FEEDBACK = "drop the path through the batch variance"


def batchnorm_backward_compact(dout, cache):
    axes = cache["axes"]
    g = dout * cache["gamma"]
    dx = cache["inv_std"] * (g - g.mean(axis=axes, keepdims=True))
    return dx, (dout * cache["x_hat"]).sum(axis=axes), dout.sum(axis=axes)
