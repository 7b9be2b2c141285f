"""Adds the between-group term once per group, without the counts m_k."""


EXPECT_LOST = ["07_distributed-merge", "07_distributed-merge_hidden", "07_distributed-forward",
               "07_distributed-forward_hidden", "07_distributed-backward",
               "07_distributed-backward_hidden"]
EXPECT_FEEDBACK = "once per group"


def merge_batch_stats(count, mean, m2):
    weights = (count / count.sum()).astype(mean.dtype)[:, None]
    merged_mean = (weights * mean).sum(axis=0)
    return count.sum(), merged_mean, m2.sum(axis=0) + ((mean - merged_mean) ** 2).sum(axis=0)
