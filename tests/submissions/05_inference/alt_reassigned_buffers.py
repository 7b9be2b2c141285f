"""Correct, differently: ddof=1 for the running variance, einsum to fold, torch.var_mean and
buffers replaced by new tensors instead of updated in place."""

import numpy as np
import torch

EXPECT_LOST = []
EXPECT_FEEDBACK = ""


def update_running_stats(running_mean, running_var, x, momentum=0.1):
    rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    new_mean = running_mean + momentum * (rows.mean(axis=0) - running_mean)
    new_var = running_var + momentum * (rows.var(axis=0, ddof=1) - running_var)
    return new_mean.astype(x.dtype), new_var.astype(x.dtype)


def fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
    scale = gamma / np.sqrt(running_var + eps)
    folded_weight = np.einsum("o...,o->o...", weight, scale)
    folded_bias = beta - scale * running_mean
    if bias is not None:
        folded_bias = folded_bias + scale * bias
    return folded_weight, folded_bias


class BatchNorm1d(torch.nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = torch.nn.Parameter(torch.ones(num_features))
        self.bias = torch.nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        rows = x.transpose(1, -1).reshape(-1, x.shape[1])
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.training:
            var, mean = torch.var_mean(rows, dim=0, unbiased=False)
            m = rows.shape[0]
            a = self.momentum
            self.running_mean = (1 - a) * self.running_mean + a * mean.detach()
            self.running_var = (1 - a) * self.running_var + a * var.detach() * m / (m - 1)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        return self.weight.reshape(shape) * x_hat + self.bias.reshape(shape)
