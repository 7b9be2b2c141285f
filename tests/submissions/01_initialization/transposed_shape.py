"""Returns the weights as (fan_in, fan_out) instead of PyTorch's (fan_out, fan_in)."""
import numpy as np

EXPECT_LOST = ["01_initialization-xavier_uniform", "01_initialization-xavier_uniform_hidden"]
EXPECT_FEEDBACK = "transposed"


def xavier_uniform(fan_in, fan_out, rng):
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_in, fan_out))
