"""All-reduces the two sums but divides them by the rank's own m_k."""

EXPECT_LOST = ["07_distributed-backward", "07_distributed-backward_hidden"]
EXPECT_FEEDBACK = "rank's own m_k"


def sync_batchnorm_backward(dout_groups, caches):
    axes = (0,) + tuple(range(2, dout_groups[0].ndim))
    shape = (1, -1) + (1,) * (dout_groups[0].ndim - 2)
    sum_dy = sum(dy.sum(axis=axes) for dy in dout_groups)
    sum_dy_xhat = sum((dy * cache[0]).sum(axis=axes) for dy, cache in zip(dout_groups, caches, strict=True))
    dxs = []
    for dy, (x_hat, gamma, std, _) in zip(dout_groups, caches, strict=True):
        m_k = dy.size // dy.shape[1]
        dxs.append((gamma / std).reshape(shape)
                   * (dy - (sum_dy / m_k).reshape(shape) - x_hat * (sum_dy_xhat / m_k).reshape(shape)))
    return dxs, sum_dy_xhat, sum_dy
