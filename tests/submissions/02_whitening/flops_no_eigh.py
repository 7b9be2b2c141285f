"""Forgets the eigendecomposition when counting the flops of whitening."""

EXPECT_LOST = ["02_whitening-whiten_flops"]
EXPECT_FEEDBACK = "eigendecomposition"


def whiten_flops(N, d, method="zca"):
    total = 2 * N * d + d + 2 * N * d * d + d * d + 3 * d + d * d + 2 * N * d * d
    return total + (2 * d**3 if method == "zca" else 0)
