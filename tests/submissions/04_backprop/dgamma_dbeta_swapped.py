"""Staged backward with dgamma and dbeta returned in the wrong order."""

EXPECT_LOST = ["04_backprop-backward", "04_backprop-backward_hidden"]
EXPECT_FEEDBACK = "dgamma and dbeta seem to be swapped"


def batchnorm_backward(dout, cache):
    axes, x_hat = cache["axes"], cache["x_hat"]
    g = dout * cache["gamma"]
    dx = cache["inv_std"] * (g - g.mean(axis=axes, keepdims=True)
                             - x_hat * (g * x_hat).mean(axis=axes, keepdims=True))
    return dx, dout.sum(axis=axes), (dout * x_hat).sum(axis=axes)
