"""The staged backward sums dgamma and dbeta over axis 0 only, which is right for (N, D) but
leaves one value per (c, h, w) position on images."""

EXPECT_LOST = ["04_backprop-backward", "04_backprop-backward_hidden"]
EXPECT_FEEDBACK = "one number per channel"


def batchnorm_backward(dout, cache):
    axes = cache["axes"]
    centred, std, x_hat = cache["centred"], cache["std"], cache["x_hat"]
    m = dout.size // dout.shape[1]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * cache["gamma"]
    dcentred = dx_hat / std
    dstd = -(dx_hat * centred / std**2).sum(axis=axes, keepdims=True)
    dvar = dstd / (2.0 * std)
    dcentred = dcentred + 2.0 * centred / m * dvar
    dx = dcentred - dcentred.sum(axis=axes, keepdims=True) / m
    return dx, dgamma, dbeta
