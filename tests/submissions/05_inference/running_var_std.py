"""Feeds the running variance the (unbiased) batch standard deviation."""

EXPECT_LOST = ["05_inference-running_stats", "05_inference-running_stats_hidden"]
EXPECT_FEEDBACK = "fed the batch standard deviation"


def update_running_stats(running_mean, running_var, x, momentum=0.1):
    axes = (0,) + tuple(range(2, x.ndim))
    new_mean = (1 - momentum) * running_mean + momentum * x.mean(axis=axes)
    new_var = (1 - momentum) * running_var + momentum * x.std(axis=axes, ddof=1)
    return new_mean, new_var
