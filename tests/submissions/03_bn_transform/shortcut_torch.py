"""Hands the work to torch.nn.functional.batch_norm."""

EXPECT_LOST = [
    "03_bn_transform-forward_2d",
    "03_bn_transform-forward_2d_hidden",
    "03_bn_transform-forward_4d",
    "03_bn_transform-forward_4d_hidden",
]
EXPECT_FEEDBACK = "ready-made normalisation"


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    import torch

    out = torch.nn.functional.batch_norm(
        torch.from_numpy(x), None, None, torch.from_numpy(gamma), torch.from_numpy(beta),
        training=True, eps=eps,
    )
    return out.numpy(), None
