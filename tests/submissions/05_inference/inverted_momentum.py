"""Keras's momentum convention: new = momentum * old + (1 - momentum) * batch."""

EXPECT_LOST = ["05_inference-running_stats", "05_inference-running_stats_hidden"]
EXPECT_FEEDBACK = "momentum seems inverted"


def update_running_stats(running_mean, running_var, x, momentum=0.1):
    axes = (0,) + tuple(range(2, x.ndim))
    m = x.size // x.shape[1]
    new_mean = momentum * running_mean + (1 - momentum) * x.mean(axis=axes)
    new_var = momentum * running_var + (1 - momentum) * x.var(axis=axes) * m / (m - 1)
    return new_mean, new_var
