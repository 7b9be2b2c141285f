"""Hands the merge to the course's reference."""

EXPECT_LOST = ["07_distributed-merge", "07_distributed-merge_hidden", "07_distributed-forward",
               "07_distributed-forward_hidden", "07_distributed-backward",
               "07_distributed-backward_hidden"]
EXPECT_FEEDBACK = "merge_batch_stats"


def merge_batch_stats(count, mean, m2):
    from bncourse.cpu import merge_batch_stats as reference_merge

    return reference_merge(count, mean, m2)
