"""Feeds the biased batch variance (divide by m) into the running variance."""

EXPECT_LOST = ["05_inference-running_stats", "05_inference-running_stats_hidden"]
EXPECT_FEEDBACK = "fed the biased batch variance"


def update_running_stats(running_mean, running_var, x, momentum=0.1):
    axes = (0,) + tuple(range(2, x.ndim))
    new_mean = (1 - momentum) * running_mean + momentum * x.mean(axis=axes)
    new_var = (1 - momentum) * running_var + momentum * x.var(axis=axes)
    return new_mean, new_var
