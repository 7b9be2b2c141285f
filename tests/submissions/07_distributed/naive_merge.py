"""Merges through the sums of squares, M2 = sum(x^2) - m mu^2: right in exact arithmetic, but
in float32 far from zero the subtraction cancels nearly every digit."""


EXPECT_LOST = ["07_distributed-merge", "07_distributed-merge_hidden"]
EXPECT_FEEDBACK = "`m2` is wrong"


def merge_batch_stats(count, mean, m2):
    weights = count.astype(mean.dtype)[:, None]
    m = mean.dtype.type(count.sum())
    merged_mean = (weights * mean).sum(axis=0) / m
    squares = (m2 + weights * mean * mean).sum(axis=0)
    return count.sum(), merged_mean, squares - m * merged_mean * merged_mean
