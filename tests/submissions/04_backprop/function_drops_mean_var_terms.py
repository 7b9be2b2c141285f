"""An autograd Function whose backward ignores the paths through the batch statistics."""

import torch

EXPECT_LOST = ["04_backprop-function", "04_backprop-function_hidden"]
EXPECT_FEEDBACK = "treat the batch mean and variance as constants"


class BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        dims = [0] + list(range(2, x.dim()))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mu = x.mean(dim=dims, keepdim=True)
        inv_std = torch.rsqrt(((x - mu) ** 2).mean(dim=dims, keepdim=True) + eps)
        x_hat = (x - mu) * inv_std
        ctx.save_for_backward(x_hat, gamma, inv_std)
        ctx.dims, ctx.shape = dims, shape
        return gamma.reshape(shape) * x_hat + beta.reshape(shape)

    @staticmethod
    def backward(ctx, dout):
        x_hat, gamma, inv_std = ctx.saved_tensors
        dx = dout * gamma.reshape(ctx.shape) * inv_std
        return dx, (dout * x_hat).sum(dim=ctx.dims), dout.sum(dim=ctx.dims), None
