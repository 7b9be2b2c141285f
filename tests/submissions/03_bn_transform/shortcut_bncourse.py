"""Calls the course's own reference implementation."""

EXPECT_LOST = [
    "03_bn_transform-forward_2d",
    "03_bn_transform-forward_2d_hidden",
    "03_bn_transform-forward_4d",
    "03_bn_transform-forward_4d_hidden",
]
EXPECT_FEEDBACK = "gets 0 points"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    from bncourse import cpu

    return cpu.batchnorm_forward(x, gamma, beta, eps)
