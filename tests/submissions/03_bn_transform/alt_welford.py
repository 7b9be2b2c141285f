"""Correct, differently: Welford's running update over the rows of a (m, C) view."""

import numpy as np

EXPECT_LOST = []
EXPECT_FEEDBACK = ""


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    mean = np.zeros(x.shape[1], dtype=x.dtype)
    m2 = np.zeros(x.shape[1], dtype=x.dtype)
    for count, row in enumerate(rows, start=1):
        delta = row - mean
        mean = mean + delta / x.dtype.type(count)
        m2 = m2 + delta * (row - mean)
    var = m2 / x.dtype.type(len(rows))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x_hat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + x.dtype.type(eps))
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), (x_hat, gamma)
