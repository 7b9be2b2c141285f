"""Compares the first and last std only, so an overflowed (NaN) profile comes out "stable"."""

EXPECT_LOST = ["01_initialization-classify_signal", "01_initialization-classify_signal_hidden"]
EXPECT_FEEDBACK = "overflowed"


def classify_signal(stds):
    ratio = stds[-1] / stds[0]
    if ratio < 0.1:
        return "vanishing"
    if ratio > 10:
        return "exploding"
    return "stable"
