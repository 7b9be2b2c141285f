"""The compact backward with sums where the formula has means: dx is m times too large in its
mean and variance terms."""

EXPECT_LOST = ["04_backprop-backward_compact", "04_backprop-backward_compact_hidden"]
EXPECT_FEEDBACK = "a factor 1/m lost"


def batchnorm_backward_compact(dout, cache):
    axes, x_hat = cache["axes"], cache["x_hat"]
    g = dout * cache["gamma"]
    dx = cache["inv_std"] * (g - g.sum(axis=axes, keepdims=True)
                             - x_hat * (g * x_hat).sum(axis=axes, keepdims=True))
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)
