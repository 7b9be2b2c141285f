"""Compact backward that scales dout in place, changing the caller's upstream gradient."""

EXPECT_LOST = ["04_backprop-backward_compact", "04_backprop-backward_compact_hidden"]
# The numbers are right: a side-property slip, so these parts keep part of their points.
EXPECT_PARTIAL = [
    "04_backprop-backward_compact",
    "04_backprop-backward_compact_hidden",
]
EXPECT_FEEDBACK = "modified its input `dout` in place"


def batchnorm_backward_compact(dout, cache):
    axes, x_hat = cache["axes"], cache["x_hat"]
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    dout *= cache["gamma"]
    dx = cache["inv_std"] * (dout - dout.mean(axis=axes, keepdims=True)
                             - x_hat * (dout * x_hat).mean(axis=axes, keepdims=True))
    return dx, dgamma, dbeta
