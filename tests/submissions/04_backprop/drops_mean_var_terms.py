"""Staged backward that treats the batch mean and variance as constants: dx = gamma * dout / std."""

EXPECT_LOST = ["04_backprop-backward", "04_backprop-backward_hidden"]
EXPECT_FEEDBACK = "treat the batch mean and variance as constants"


def batchnorm_backward(dout, cache):
    axes = cache["axes"]
    dx = dout * cache["gamma"] * cache["inv_std"]
    return dx, (dout * cache["x_hat"]).sum(axis=axes), dout.sum(axis=axes)
