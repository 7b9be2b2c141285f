"""Scales the uniform bound by fan_in alone (LeCun's variance 1/fan_in), not by fan_in + fan_out."""
import numpy as np

EXPECT_LOST = ["01_initialization-xavier_uniform", "01_initialization-xavier_uniform_hidden"]
EXPECT_FEEDBACK = "LeCun"


def xavier_uniform(fan_in, fan_out, rng):
    bound = np.sqrt(3.0 / fan_in)
    return rng.uniform(-bound, bound, size=(fan_out, fan_in))
