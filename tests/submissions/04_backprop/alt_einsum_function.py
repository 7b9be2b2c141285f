"""Correct, differently: per-channel sums written with einsum over a channels-first view, in
both the NumPy compact backward and the autograd Function."""

import numpy as np
import torch

EXPECT_LOST = []
EXPECT_FEEDBACK = ""


def batchnorm_backward_compact(dout, cache):
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    axes = cache["axes"]
    m = dout.size // dout.shape[1]
    g = dout * gamma
    g_flat = np.moveaxis(g, 1, 0).reshape(g.shape[1], -1)
    xh_flat = np.moveaxis(x_hat, 1, 0).reshape(g.shape[1], -1)
    mean_g = np.einsum("cm->c", g_flat) / m
    mean_gx = np.einsum("cm,cm->c", g_flat, xh_flat) / m
    shape = (1, -1) + (1,) * (dout.ndim - 2)
    dx = inv_std * (g - mean_g.reshape(shape) - x_hat * mean_gx.reshape(shape))
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)


class BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean = flat.mean(dim=1)
        var = flat.var(dim=1, unbiased=False)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        inv_std = (var + eps).rsqrt().reshape(shape)
        x_hat = (x - mean.reshape(shape)) * inv_std
        ctx.save_for_backward(x_hat, gamma, inv_std)
        return gamma.reshape(shape) * x_hat + beta.reshape(shape)

    @staticmethod
    def backward(ctx, dout):
        x_hat, gamma, inv_std = ctx.saved_tensors
        shape = (1, -1) + (1,) * (dout.dim() - 2)
        dims = [0] + list(range(2, dout.dim()))
        g = dout * gamma.reshape(shape)
        dx = inv_std * (g - g.mean(dim=dims, keepdim=True)
                        - x_hat * (g * x_hat).mean(dim=dims, keepdim=True))
        return dx, (dout * x_hat).sum(dim=dims), dout.sum(dim=dims), None
