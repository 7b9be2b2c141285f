"""An autograd Function whose forward calls torch.nn.functional.batch_norm."""

import torch

EXPECT_LOST = ["04_backprop-function", "04_backprop-function_hidden"]
EXPECT_FEEDBACK = "ready-made normalisation"


class BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        dims = [0] + list(range(2, x.dim()))
        mu = x.mean(dim=dims, keepdim=True)
        inv_std = torch.rsqrt(((x - mu) ** 2).mean(dim=dims, keepdim=True) + eps)
        ctx.save_for_backward((x - mu) * inv_std, gamma, inv_std)
        ctx.dims = dims
        return torch.nn.functional.batch_norm(x, None, None, gamma, beta, True, 0.0, eps)

    @staticmethod
    def backward(ctx, dout):
        x_hat, gamma, inv_std = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x_hat.dim() - 2)
        g = dout * gamma.reshape(shape)
        dims = ctx.dims
        dx = inv_std * (g - g.mean(dim=dims, keepdim=True)
                        - x_hat * (g * x_hat).mean(dim=dims, keepdim=True))
        return dx, (dout * x_hat).sum(dim=dims), dout.sum(dim=dims), None
