"""Forgets eps: divides by the bare standard deviation (nan on a constant channel)."""


EXPECT_LOST = [
    "03_bn_transform-forward_2d",
    "03_bn_transform-forward_2d_hidden",
    "03_bn_transform-forward_4d",
    "03_bn_transform-forward_4d_hidden",
]
EXPECT_FEEDBACK = "eps seems to be missing"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    x_hat = (x - mu) / x.std(axis=axes, keepdims=True)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), None
