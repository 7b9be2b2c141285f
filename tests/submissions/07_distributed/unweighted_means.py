"""Averages the group means without weighting them by their counts (and measures the
between-group term around that mean)."""


EXPECT_LOST = ["07_distributed-merge", "07_distributed-merge_hidden", "07_distributed-forward",
               "07_distributed-forward_hidden", "07_distributed-backward",
               "07_distributed-backward_hidden"]
EXPECT_FEEDBACK = "without weighting them by their counts"


def merge_batch_stats(count, mean, m2):
    merged_mean = mean.mean(axis=0)
    between = (count[:, None] * (mean - merged_mean) ** 2).sum(axis=0)
    return count.sum(), merged_mean, (m2.sum(axis=0) + between).astype(mean.dtype)
