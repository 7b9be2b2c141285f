"""Numerical gradient by the forward difference (f(x + h) - f(x)) / h."""

import numpy as np

EXPECT_LOST = ["04_backprop-numerical_gradient", "04_backprop-numerical_gradient_hidden"]
EXPECT_FEEDBACK = "one-sided difference"


def numerical_gradient(f, x, dout, h=1e-5):
    x = np.array(x, dtype=np.float64)
    base = np.sum(f(x) * dout)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + h
        grad[index] = (np.sum(f(x) * dout) - base) / h
        x[index] = original
    return grad
