"""Updates running_mean and running_var in place and returns them."""

EXPECT_LOST = ["05_inference-running_stats", "05_inference-running_stats_hidden"]
# The numbers are right: a side-property slip, so these parts keep part of their points.
EXPECT_PARTIAL = [
    "05_inference-running_stats",
    "05_inference-running_stats_hidden",
]
EXPECT_FEEDBACK = "in place"


def update_running_stats(running_mean, running_var, x, momentum=0.1):
    axes = (0,) + tuple(range(2, x.ndim))
    m = x.size // x.shape[1]
    running_mean *= 1 - momentum
    running_mean += momentum * x.mean(axis=axes)
    running_var *= 1 - momentum
    running_var += momentum * x.var(axis=axes) * m / (m - 1)
    return running_mean, running_var
