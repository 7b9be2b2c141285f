"""Draws from np.random's global state instead of the rng it is given."""
import numpy as np

EXPECT_LOST = ["01_initialization-xavier_uniform", "01_initialization-xavier_uniform_hidden"]
EXPECT_FEEDBACK = "global state"


def xavier_uniform(fan_in, fan_out, rng):
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return np.random.uniform(-bound, bound, size=(fan_out, fan_in))
