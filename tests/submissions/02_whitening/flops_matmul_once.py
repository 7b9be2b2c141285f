"""Counts a matrix product (a, b) @ (b, c) as abc flops instead of 2abc."""

EXPECT_LOST = ["02_whitening-whiten_flops"]
EXPECT_FEEDBACK = "2abc"


def whiten_flops(N, d, method="zca"):
    total = 2 * N * d + d + N * d * d + d * d + 9 * d**3 + 3 * d + d * d + N * d * d
    return total + (d**3 if method == "zca" else 0)
