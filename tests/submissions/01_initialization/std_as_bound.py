"""Takes the standard deviation sqrt(2/(fan_in + fan_out)) as the bound of the uniform law."""
import numpy as np

EXPECT_LOST = ["01_initialization-xavier_uniform", "01_initialization-xavier_uniform_hidden"]
EXPECT_FEEDBACK = "variance a^2/3"


def xavier_uniform(fan_in, fan_out, rng):
    bound = np.sqrt(2.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_out, fan_in))
