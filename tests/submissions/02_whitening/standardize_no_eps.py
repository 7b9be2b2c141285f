"""Forgets eps: divides by the plain standard deviation."""

EXPECT_LOST = ["02_whitening-standardize", "02_whitening-standardize_hidden"]
EXPECT_FEEDBACK = "eps seems to be missing"


def standardize(x, eps=1e-5):
    return (x - x.mean(axis=0)) / x.std(axis=0)
