"""bncourse.gpu on every device: against bncourse.cpu, torch.nn.functional and autograd."""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bncourse import cpu, gpu

# Tolerances relative to the size of the compared quantities (see `close`).
# float64: only summation order differs (m <= 280 values): ~1e-14, so 1e-9 is ample.
# float32: eps 1.2e-7; sums over m <= 280 values and the cancellation in dx cost up
# to a few hundred ulps: 2e-5 is ~170 ulps of the largest entry.
TOL = {torch.float32: 2e-5, torch.float64: 1e-9}

shapes = st.tuples(st.integers(2, 8), st.integers(1, 16)).flatmap(
    lambda nc: st.one_of(
        st.just(nc),
        st.tuples(st.just(nc[0]), st.just(nc[1]), st.integers(1, 7)),
        st.tuples(st.just(nc[0]), st.just(nc[1]), st.integers(1, 7), st.integers(1, 5)),
    )
)
# The `device` fixture never changes between examples, so sharing it is safe.
device_settings = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def close(actual, expected, scale=None):
    """Compare tensors with atol = TOL * (the typical size of the terms that were summed)."""
    expected = expected.detach().to(actual.device)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    if scale is None:
        scale = max(1.0, expected.abs().max().item())
    tol = TOL[actual.dtype]
    torch.testing.assert_close(actual.detach(), expected, rtol=tol, atol=tol * scale)


def random_case(shape, dtype, device, seed):
    generator = torch.Generator().manual_seed(seed)
    channels = shape[1]
    per_channel = (1, channels) + (1,) * (len(shape) - 2)

    def uniform(low, high, size):
        return torch.rand(size, generator=generator, dtype=torch.float64) * (high - low) + low

    x = torch.randn(shape, generator=generator, dtype=torch.float64) * uniform(0.5, 3, per_channel)
    x = x + uniform(-5, 5, per_channel)
    gamma = uniform(0.5, 2, channels) * torch.where(uniform(0, 1, channels) < 0.5, -1.0, 1.0)
    beta = torch.randn(channels, generator=generator, dtype=torch.float64)
    dout = torch.randn(shape, generator=generator, dtype=torch.float64)
    return [t.to(device=device, dtype=dtype) for t in (x, gamma, beta, dout)]


def grad_scale(x, gamma, dout, eps=1e-5):
    """Size of the terms dx is built from: |gamma| * |dout| / sigma_B (dx itself may be ~0)."""
    dims = (0, *range(2, x.ndim))
    inv_std = torch.rsqrt(x.double().var(dim=dims, unbiased=False) + eps)
    return max(1.0, (gamma.abs().max() * dout.abs().max() * inv_std.max()).item())


@device_settings
@given(
    shape=shapes,
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_forward_and_backward_match_cpu_and_torch(device, shape, dtype, seed):
    x, gamma, beta, dout = random_case(shape, dtype, device, seed)
    out, cache = gpu.batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = gpu.batchnorm_backward(dout, cache)
    assert out.device == dx.device == x.device and out.dtype == dx.dtype == dgamma.dtype == dtype

    # Against torch's own BN and autograd on the same device.
    leaves = [t.clone().requires_grad_() for t in (x, gamma, beta)]
    expected = F.batch_norm(leaves[0], None, None, leaves[1], leaves[2], training=True)
    expected.backward(dout)
    close(out, expected)
    close(dx, leaves[0].grad, scale=grad_scale(x, gamma, dout))
    dims = (0, *range(2, x.ndim))
    # A sum's rounding error is bounded relative to the sum of its terms' magnitudes.
    x64 = x.double()
    x_hat = (x64 - x64.mean(dim=dims, keepdim=True)) * torch.rsqrt(
        x64.var(dim=dims, unbiased=False, keepdim=True) + 1e-5
    )
    close(dgamma, leaves[1].grad, scale=(dout.double() * x_hat).abs().sum(dim=dims).max().item())
    close(dbeta, leaves[2].grad, scale=dout.abs().sum(dim=dims).max().item())

    # Against the NumPy reference.
    cpu_out, cpu_cache = cpu.batchnorm_forward(*(t.cpu().numpy() for t in (x, gamma, beta)))
    cpu_dx, _, _ = cpu.batchnorm_backward(dout.cpu().numpy(), cpu_cache)
    close(out, torch.from_numpy(cpu_out))
    close(dx, torch.from_numpy(cpu_dx), scale=grad_scale(x, gamma, dout))


@device_settings
@given(
    shape=shapes,
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_inference_matches_cpu_and_torch_eval(device, shape, dtype, seed):
    x, gamma, beta, _ = random_case(shape, dtype, device, seed)
    mean, var = 3 * beta.flip(0), gamma.abs() + 0.1  # population statistics unlike the batch's
    out = gpu.batchnorm_inference(x, gamma, beta, mean, var)
    assert out.dtype == dtype and out.device == x.device
    close(out, F.batch_norm(x, mean, var, gamma, beta, training=False))
    as_numpy = (t.cpu().numpy() for t in (x, gamma, beta, mean, var))
    close(out, torch.from_numpy(cpu.batchnorm_inference(*as_numpy)))


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 4), (2, 3, 2, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_function_passes_gradcheck(device, shape, affine):
    x, gamma, beta, _ = random_case(shape, torch.float64, device, seed=len(shape))
    inputs = [x.requires_grad_()]
    inputs += [gamma.requires_grad_(), beta.requires_grad_()] if affine else [None, None]
    assert torch.autograd.gradcheck(lambda *args: gpu.BatchNormFunction.apply(*args, 1e-5), inputs)


def test_batchnorm_function_refuses_double_backward(device):
    x, gamma, beta, _ = random_case((4, 3), torch.float64, device, seed=0)
    x.requires_grad_()
    out = gpu.BatchNormFunction.apply(x, gamma, beta, 1e-5)
    (dx,) = torch.autograd.grad((out**3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|double backward|twice"):
        dx.sum().backward()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", ["both", "weight only", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_norm_matches_functional(device, training, affine, dtype):
    x, gamma, beta, dout = random_case((6, 4, 3, 2), dtype, device, seed=7)
    running = (torch.randn(4, dtype=dtype, device=device), torch.rand(4, dtype=dtype, device=device))
    results = []
    for function in (gpu.batch_norm, F.batch_norm):
        leaves = [t.clone().requires_grad_() for t in (x, gamma, beta)]
        weight = leaves[1] if affine != "none" else None
        bias = leaves[2] if affine == "both" else None
        stats = [t.clone() for t in running]
        out = function(leaves[0], *stats, weight, bias, training=training, momentum=0.3, eps=1e-3)
        out.backward(dout)
        grads = [leaf.grad for leaf in leaves]
        results.append((out, stats, grads))
    (out, stats, grads), (t_out, t_stats, t_grads) = results
    close(out, t_out)
    close(stats[0], t_stats[0])  # running statistics updated in place the same way
    close(stats[1], t_stats[1])
    for grad, t_grad in zip(grads, t_grads, strict=True):
        assert (grad is None) == (t_grad is None)
        if grad is not None:
            close(grad, t_grad, scale=grad_scale(x, gamma, dout) * x.numel())


def test_batch_norm_training_without_running_stats(device):
    x, gamma, beta, _ = random_case((5, 3), torch.float32, device, seed=1)
    out = gpu.batch_norm(x, None, None, gamma, beta, training=True)
    close(out, F.batch_norm(x, None, None, gamma, beta, training=True))


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_computes_in_float32(device, half):
    """Stats in float32, output in the input dtype, float32 running stats stay float32 (as torch)."""
    x32, gamma, beta, dout = random_case((64, 3, 4, 4), torch.float32, device, seed=3)
    # Mean 1000, std ~2: a float16 sum of the 1024 values (~1e6) would overflow (max 65504),
    # and a mean rounded to float16 (ulp 0.5 at 1000) would shift x_hat by ~0.1.
    x = (x32 * 2 / x32.std() + 1000).to(half)
    running = [torch.zeros(3, device=device), torch.ones(3, device=device)]
    t_running = [t.clone() for t in running]
    out = gpu.batch_norm(x, *running, gamma, beta, training=True)
    expected = F.batch_norm(x, *t_running, gamma, beta, training=True)
    truth = F.batch_norm(x.float(), None, None, gamma, beta, training=True)
    assert out.dtype == half and running[0].dtype == torch.float32 and torch.isfinite(out).all()
    # Computed in float32, each output differs from the float32 truth only by its final
    # rounding to `half`: half an ulp, i.e. eps/2 relative; rtol = eps also allows a value
    # within float32 noise (atol 1e-5) of a rounding boundary to go the other way.
    eps = torch.finfo(half).eps
    torch.testing.assert_close(out.float(), truth, rtol=eps, atol=1e-5)
    # torch's result has been rounded the same way: at most an ulp from ours.
    torch.testing.assert_close(out.float(), expected.float(), rtol=eps, atol=1e-5)
    # Running statistics: float32 sums over 1024 values of a float32 copy: 1e-5 relative.
    torch.testing.assert_close(running[0], t_running[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(running[1], t_running[1], rtol=1e-5, atol=1e-5)

    leaf = x.clone().requires_grad_()
    gpu.BatchNormFunction.apply(leaf, gamma, beta, 1e-5).backward(dout.to(half))
    assert leaf.grad.dtype == half and torch.isfinite(leaf.grad).all()


def test_inference_update_and_population_match_cpu(device):
    x, gamma, beta, _ = random_case((8, 3, 5), torch.float64, device, seed=4)
    mean = torch.randn(3, dtype=torch.float64, device=device)
    var = torch.rand(3, dtype=torch.float64, device=device) + 0.5
    as_numpy = [t.cpu().numpy() for t in (x, gamma, beta, mean, var)]
    close(gpu.batchnorm_inference(x, gamma, beta, mean, var), torch.from_numpy(cpu.batchnorm_inference(*as_numpy)))
    for ours, reference in zip(
        gpu.update_running_stats(mean, var, x, 0.25),
        cpu.update_running_stats(as_numpy[3], as_numpy[4], as_numpy[0], 0.25),
        strict=True,
    ):
        close(ours, torch.from_numpy(reference))
    batches = [x * k + k for k in range(1, 4)]
    for ours, reference in zip(
        gpu.population_stats(batches),
        cpu.population_stats([b.cpu().numpy() for b in batches]),
        strict=True,
    ):
        close(ours, torch.from_numpy(reference))


@pytest.mark.parametrize("method", ["zca", "pca"])
def test_standardize_and_whiten_match_cpu(device, method):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(200, 3, generator=generator, dtype=torch.float64) @ torch.randn(
        3, 3, generator=generator, dtype=torch.float64
    )
    x = x.to(device)
    close(gpu.standardize(x), torch.from_numpy(cpu.standardize(x.cpu().numpy())))
    # eigh may use another LAPACK routine on the GPU; the sign rule makes results agree.
    for ours, reference in zip(gpu.whiten(x, method), cpu.whiten(x.cpu().numpy(), method), strict=True):
        torch.testing.assert_close(ours, torch.from_numpy(reference).to(device), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("with_bias", [True, False])
def test_fold_batchnorm_matches_module_pair(device, with_bias):
    torch.manual_seed(0)
    for layer, bn, x in [
        (torch.nn.Linear(6, 4, bias=with_bias), torch.nn.BatchNorm1d(4), torch.randn(9, 6)),
        (torch.nn.Conv2d(3, 4, 3, bias=with_bias), torch.nn.BatchNorm2d(4), torch.randn(2, 3, 5, 5)),
    ]:
        with torch.no_grad():
            bn.weight.uniform_(-2, 2)
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.2, 3)
        pair = torch.nn.Sequential(layer, bn).to(device).eval()
        x = x.to(device)
        weight, bias = gpu.fold_batchnorm(
            layer.weight, layer.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps
        )
        assert weight.device == x.device and weight.shape == layer.weight.shape
        folded = F.linear(x, weight, bias) if x.ndim == 2 else F.conv2d(x, weight, bias)
        # float32, sums of 6 or 27 products in another order: within TOL of the largest output.
        close(folded, pair(x))
