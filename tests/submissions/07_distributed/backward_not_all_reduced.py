"""Each rank runs plain BN's backward on its own slice: the sums are never all-reduced."""

EXPECT_LOST = ["07_distributed-backward", "07_distributed-backward_hidden"]
EXPECT_FEEDBACK = "over the rank's own slice"


def sync_batchnorm_backward(dout_groups, caches):
    axes = (0,) + tuple(range(2, dout_groups[0].ndim))
    shape = (1, -1) + (1,) * (dout_groups[0].ndim - 2)
    dxs, dgamma, dbeta = [], 0, 0
    for dy, (x_hat, gamma, std, _) in zip(dout_groups, caches, strict=True):
        m_k = dy.size // dy.shape[1]
        sum_dy, sum_dy_xhat = dy.sum(axis=axes), (dy * x_hat).sum(axis=axes)
        dxs.append((gamma / std).reshape(shape)
                   * (dy - (sum_dy / m_k).reshape(shape) - x_hat * (sum_dy_xhat / m_k).reshape(shape)))
        dgamma, dbeta = dgamma + sum_dy_xhat, dbeta + sum_dy
    return dxs, dgamma, dbeta
