"""SyncBatchNorm across processes (gloo on loopback) and the statistics merge behind it."""

import inspect

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812 (the usual name)

from bncourse import cpu, gpu
from bncourse.sync_batchnorm import SyncBatchNorm, spawn_gloo_processes

TORCH_HAS_BIAS_OPTION = "bias" in inspect.signature(torch.nn.SyncBatchNorm.__init__).parameters

# float64 throughout the process tests: the only differences from single-process BN are the
# order of sums and Chan's merge (~1e-15 relative); 1e-10 is ample, and normalising a slice
# with its own statistics instead of the whole batch's is off by O(1).
TIGHT = {"rtol": 1e-10, "atol": 1e-10}


# ----------------------------------------------------------------------------- merge_batch_stats


def split_stats(parts):
    """(count, mean, m2) of each part, in float64 (0 for empty parts)."""
    count = np.array([len(part) for part in parts])
    mean = np.array([part.mean(axis=0) if len(part) else np.zeros(part.shape[1]) for part in parts])
    m2 = np.array(
        [((part - part.mean(axis=0)) ** 2).sum(axis=0) if len(part) else np.zeros(part.shape[1]) for part in parts]
    )
    return count, mean, m2


@pytest.mark.parametrize("sizes", [(5, 7), (1, 9, 0, 2), (3,), (0, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_merge_batch_stats_equals_the_statistics_of_the_union(library_and_device, sizes, dtype):
    library, device = library_and_device
    rng = np.random.default_rng(len(sizes))
    # Means far above the spread (1e3 in float32, 1e6 in float64): sum(x^2) - n mu^2 would be
    # off by eps * n * mu^2, about 1 in float32 and 1e-3 in float64, far above the tolerance.
    location = 1e3 if dtype == np.float32 else 1e6
    parts = [location + rng.standard_normal((size, 3)) for size in sizes]
    count, mean, m2 = split_stats(parts)
    mean, m2 = mean.astype(dtype), m2.astype(dtype)
    union_count, union_mean, union_m2 = exact_merge(count, mean, m2)  # of these very inputs
    if library.startswith("numpy"):
        total, merged_mean, merged_m2 = cpu.merge_batch_stats(count, mean, m2)
    else:
        as_tensor = [torch.from_numpy(a).to(device) for a in (count, mean, m2)]
        total, merged_mean, merged_m2 = (t.cpu().numpy() for t in gpu.merge_batch_stats(*as_tensor))
    assert int(total) == union_count and merged_mean.dtype == merged_m2.dtype == dtype
    eps = np.finfo(dtype).eps
    # Each merge step rounds the running mean (eps * |mu| absolute): a few eps of |mu|.
    np.testing.assert_allclose(merged_mean, union_mean, rtol=8 * eps, atol=0)
    # That rounding enters the next delta, and delta^2 n_A n_B / n with it: the error is at
    # most ~2 |delta| eps |mu| n per step; plus a few eps of M2 itself. A wrongly weighted
    # slice is off by ~delta^2 n_A n_B / n ~ 1e-1 of M2, above this bound in both dtypes.
    spread = np.abs(mean - union_mean).max() if len(sizes) > 1 else 0.0
    atol = 2 * spread * eps * location * union_count * len(sizes)
    np.testing.assert_allclose(merged_m2, union_m2, rtol=8 * eps * len(sizes), atol=atol)


def exact_merge(count, mean, m2):
    """The statistics of the union from (count, mean, m2) in exact rational arithmetic."""
    from fractions import Fraction

    n = int(count.sum())
    means = [[Fraction(float(v)) for v in row] for row in mean]
    mu = [sum(int(c) * row[j] for c, row in zip(count, means, strict=True)) / n for j in range(mean.shape[1])]
    total_m2 = [
        sum(Fraction(float(m2[g, j])) + int(count[g]) * (means[g][j] - mu[j]) ** 2 for g in range(len(count)))
        for j in range(mean.shape[1])
    ]
    return n, np.array([float(v) for v in mu]), np.array([float(v) for v in total_m2])


@pytest.mark.parametrize(
    "count, mean, m2, message",
    [
        (np.array([[2, 3]]), np.zeros((1, 3)), np.zeros((1, 3)), "count: expected shape (K,)"),
        (np.array([2, 3]), np.zeros((3, 3)), np.zeros((3, 3)), "mean: expected shape (2, C)"),
        (np.array([2, 3]), np.zeros((2, 3)), np.zeros((2, 4)), "m2: expected shape (2, 3)"),
        (np.array([2, -1]), np.zeros((2, 3)), np.zeros((2, 3)), "count: expected counts >= 0"),
        (np.array([0, 0]), np.zeros((2, 3)), np.zeros((2, 3)), "with a positive total, got [0, 0]"),
    ],
)
def test_merge_batch_stats_refuses_bad_input(count, mean, m2, message):
    for merge, convert in ((cpu.merge_batch_stats, np.asarray), (gpu.merge_batch_stats, torch.from_numpy)):
        with pytest.raises(ValueError) as raised:
            merge(convert(count), convert(mean), convert(m2))
        assert message in str(raised.value)


# ----------------------------------------------------------------------------- the layer, one process


def test_state_dict_loads_both_ways_with_torch_sync_batchnorm():
    assert gpu.SyncBatchNorm is SyncBatchNorm  # re-exported next to BatchNorm1d and BatchNorm2d
    ours, theirs = SyncBatchNorm(4, momentum=0.2), torch.nn.SyncBatchNorm(4, momentum=0.2)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 2), theirs.running_mean.uniform_(-1, 1)
    ours.load_state_dict(theirs.state_dict())  # strict: the same names and shapes
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=0, atol=0, msg=name)
    ours(torch.randn(6, 4, 3))  # training updates the buffers
    theirs.load_state_dict(ours.state_dict())
    assert theirs.num_batches_tracked.item() == 1
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


@pytest.mark.skipif(
    not TORCH_HAS_BIAS_OPTION, reason=f"torch {torch.__version__}: nn.SyncBatchNorm has no bias= option"
)
def test_state_dict_without_bias_loads_both_ways_with_torch_sync_batchnorm():
    ours, theirs = SyncBatchNorm(4, bias=False), torch.nn.SyncBatchNorm(4, bias=False)
    assert ours.bias is None and "bias" not in ours.state_dict()
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 2)
    ours.load_state_dict(theirs.state_dict())  # strict: the same names and shapes
    theirs.load_state_dict(ours.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()] == ["weight"]


def test_without_a_process_group_it_is_plain_batchnorm():
    assert not dist.is_initialized()
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    ours = SyncBatchNorm(3, dtype=torch.float64)
    torch.testing.assert_close(ours(x), F.batch_norm(x, None, None, training=True), **TIGHT)


# ----------------------------------------------------------------------------- the layer, several processes


def check_against_one_process(rank, world_size, sizes, spatial, seed, has_bias=True):
    """Run in each process: SyncBatchNorm on this rank's slice of a batch vs torch's BN on all of it."""
    generator = torch.Generator().manual_seed(seed)
    channels = 3
    shape = (sum(sizes), channels, *spatial)
    start, stop = sum(sizes[:rank]), sum(sizes[: rank + 1])
    weight = torch.rand(channels, generator=generator, dtype=torch.float64) + 0.5
    bias = torch.randn(channels, generator=generator, dtype=torch.float64)
    if not has_bias:  # the layer has no beta: the whole batch's BN shifts by zero
        bias = torch.zeros(channels, dtype=torch.float64)

    layer = SyncBatchNorm(channels, momentum=0.3, dtype=torch.float64, bias=has_bias)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if has_bias:
            layer.bias.copy_(bias)
    running = [torch.zeros(channels, dtype=torch.float64), torch.ones(channels, dtype=torch.float64)]
    for _ in range(2):  # two steps: running statistics blended twice
        x = torch.randn(shape, generator=generator, dtype=torch.float64) * 3 + 100
        dout = torch.randn(shape, generator=generator, dtype=torch.float64)
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        truth = F.batch_norm(leaves[0], *running, leaves[1], leaves[2], training=True, momentum=0.3)
        truth.backward(dout)

        x_local = x[start:stop].clone().requires_grad_()
        layer.zero_grad()
        out = layer(x_local)
        out.backward(dout[start:stop])
        torch.testing.assert_close(out, truth[start:stop].detach(), **TIGHT)
        torch.testing.assert_close(x_local.grad, leaves[0].grad[start:stop], **TIGHT)
        # Parameter gradients are each rank's share; their sum is the whole batch's.
        params = [layer.weight, layer.bias] if has_bias else [layer.weight]
        summed = torch.cat([param.grad for param in params])
        dist.all_reduce(summed)
        torch.testing.assert_close(summed, torch.cat([leaf.grad for leaf in leaves[1:1 + len(params)]]), **TIGHT)
        torch.testing.assert_close(layer.running_mean, running[0], **TIGHT)
        torch.testing.assert_close(layer.running_var, running[1], **TIGHT)
    assert layer.num_batches_tracked.item() == 2

    layer.eval()  # evaluation uses the running statistics, no communication
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    expected = F.batch_norm(x, *running, weight, bias, training=False)
    torch.testing.assert_close(layer(x[start:stop]), expected[start:stop], **TIGHT)
    return stop - start


@pytest.mark.parametrize(
    "sizes, spatial, has_bias",
    [
        ((3, 5), (2, 2), True),  # unequal slices of images
        ((1, 4, 0, 2), (), True),  # (N, C) data: a rank with one sample, a rank with none
        ((2, 4), (3,), False),  # (N, C, L) data, a layer without beta
    ],
    ids=["2 processes", "4 processes", "2 processes, bias=False"],
)
def test_sync_batchnorm_equals_batchnorm_over_the_whole_batch(sizes, spatial, has_bias):
    # Starting the processes takes seconds (each imports torch); 120 s leaves a wide margin.
    counts = spawn_gloo_processes(check_against_one_process, len(sizes), sizes, spatial, 0, has_bias,
                                  timeout=120)
    assert counts == list(sizes)


def fail_on_rank_one(rank, world_size):
    if rank == 1:
        raise ValueError("rank one fails")
    return rank


def test_a_failing_process_is_reported_with_its_traceback():
    with pytest.raises(RuntimeError, match="(?s)rank 1 failed:.*ValueError: rank one fails"):
        spawn_gloo_processes(fail_on_rank_one, 2, timeout=120)
