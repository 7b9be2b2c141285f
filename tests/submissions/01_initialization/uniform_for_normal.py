"""Draws xavier_normal's weights from the uniform law (right variance, wrong distribution)."""
import numpy as np

EXPECT_LOST = ["01_initialization-xavier_normal"]
EXPECT_FEEDBACK = "uniform law where the normal one was asked"


def xavier_normal(fan_in, fan_out, rng):
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_out, fan_in))
