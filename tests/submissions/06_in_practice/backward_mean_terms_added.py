"""Pastes a batchnorm_backward that adds the mean and variance terms of dx instead of subtracting
them; train itself is right.

The BN network then misses the target (12-39 % test accuracy), and the training parts name the
backward as the thing to fix, not only the accuracy.
"""

EXPECT_LOST = ["06_in_practice-batchnorm_backward", "06_in_practice-train_bn",
               "06_in_practice-train_bn_hidden"]
EXPECT_FEEDBACK = "`dx` is wrong"


def batchnorm_backward(dout, cache):
    x_hat, gamma, inv_std = cache
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx = gamma * inv_std / m * (m * dout + dbeta + x_hat * dgamma)
    return dx, dgamma, dbeta
