"""Sums the groups' M2 and forgets the between-group term."""


EXPECT_LOST = ["07_distributed-merge", "07_distributed-merge_hidden", "07_distributed-forward",
               "07_distributed-forward_hidden", "07_distributed-backward",
               "07_distributed-backward_hidden"]
EXPECT_FEEDBACK = "between-group term"


def merge_batch_stats(count, mean, m2):
    weights = (count / count.sum()).astype(mean.dtype)[:, None]
    return count.sum(), (weights * mean).sum(axis=0), m2.sum(axis=0)
