"""Pastes a batchnorm_backward that treats the batch mean and variance as constants; train is right.

The BN training parts check the layers train uses before training, so their message names the
backward, not the accuracy.
"""

EXPECT_LOST = ["06_in_practice-batchnorm_backward", "06_in_practice-train_bn",
               "06_in_practice-train_bn_hidden"]
EXPECT_FEEDBACK = "treat the batch mean and variance as constants"


def batchnorm_backward(dout, cache):
    x_hat, gamma, inv_std = cache
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    return gamma * inv_std * dout, dgamma, dbeta
