"""Uses He's variance 2/fan_in (meant for ReLU) in the normal initialiser."""
import numpy as np

EXPECT_LOST = ["01_initialization-xavier_normal"]
EXPECT_FEEDBACK = "He's variance"


def xavier_normal(fan_in, fan_out, rng):
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_out, fan_in))
