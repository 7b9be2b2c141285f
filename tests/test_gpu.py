"""bncourse.gpu on every device: against bncourse.cpu, torch.nn.functional and autograd."""

import functools
import warnings

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from conftest import ALL_DEVICES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from implementations import FUSED
from strategies import shapes

from bncourse import cpu, fused, gpu

# Tolerances relative to the size of the compared quantities (see `close`).
# float64: only summation order differs (m <= 280 values): ~1e-14, so 1e-9 is ample.
# float32: eps 1.2e-7; sums over m <= 280 values and the cancellation in dx cost up
# to a few hundred ulps: 2e-5 is ~170 ulps of the largest entry.
TOL = {torch.float32: 2e-5, torch.float64: 1e-9}

# The `device` fixture never changes between examples, so sharing it is safe.
device_settings = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# The training forward and backward under test: the reference, and the fused kernels run eagerly
# (compiled ones are tested on a few shapes at the end of this file).
FORWARD_BACKWARD = [pytest.param(gpu, id="reference"), pytest.param(FUSED, id="fused-eager")]
IMPLS = ["reference", "fused-eager"]


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
@pytest.mark.parametrize("module", FORWARD_BACKWARD)
def test_forward_and_backward_match_cpu_and_torch(device, module, shape, dtype, seed):
    x, gamma, beta, dout = random_case(shape, dtype, device, seed)
    out, cache = module.batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = module.batchnorm_backward(dout, cache)
    assert out.device == dx.device == x.device and out.dtype == dx.dtype == dgamma.dtype == dtype

    # Against torch's own BN and autograd on the same device, in float64 on the exact values
    # of the inputs: the ground truth. (torch's float32 kernels do not repair the rounding of
    # mu_B, which a near-constant channel amplifies by up to 1/sqrt(eps): they can be 2e-4 from
    # the truth where bncourse is 1e-11; see tests/test_cpu.py::torch_train.) Rounding the
    # truth to `dtype` for the comparison adds half an ulp.
    leaves = [t.detach().double().clone().requires_grad_() for t in (x, gamma, beta)]
    expected = F.batch_norm(leaves[0], None, None, leaves[1], leaves[2], training=True)
    expected.backward(dout.double())
    expected, *grads = (t.detach().to(dtype) for t in (expected, *(leaf.grad for leaf in leaves)))
    close(out, expected)
    close(dx, grads[0], scale=grad_scale(x, gamma, dout))
    dims = (0, *range(2, x.ndim))
    # A sum's rounding error is bounded relative to the sum of its terms' magnitudes.
    x64 = x.double()
    x_hat = (x64 - x64.mean(dim=dims, keepdim=True)) * torch.rsqrt(
        x64.var(dim=dims, unbiased=False, keepdim=True) + 1e-5
    )
    close(dgamma, grads[1], scale=(dout.double() * x_hat).abs().sum(dim=dims).max().item())
    close(dbeta, grads[2], scale=dout.abs().sum(dim=dims).max().item())

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


# The two autograd Functions, as functions of (x, gamma, beta) returning the output only.
FUNCTIONS = [
    pytest.param(lambda *args: gpu.BatchNormFunction.apply(*args, 1e-5), id="reference"),
    pytest.param(lambda *args: fused.FusedBatchNormFunction.apply(*args, 1e-5, False)[0], id="fused-eager"),
]


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 4), (2, 3, 2, 2)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("function", FUNCTIONS)
def test_batchnorm_function_passes_gradcheck(device, function, shape, affine):
    x, gamma, beta, _ = random_case(shape, torch.float64, device, seed=len(shape))
    inputs = [x.requires_grad_()]
    inputs += [gamma.requires_grad_(), beta.requires_grad_()] if affine else [None, None]
    assert torch.autograd.gradcheck(function, inputs)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_batchnorm_function_refuses_double_backward(device, function):
    x, gamma, beta, _ = random_case((4, 3), torch.float64, device, seed=0)
    x.requires_grad_()
    out = function(x, gamma, beta)
    (dx,) = torch.autograd.grad((out**3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|double backward|twice"):
        dx.sum().backward()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", ["both", "weight only", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("impl", IMPLS)
def test_batch_norm_matches_functional(device, impl, training, affine, dtype):
    x, gamma, beta, dout = random_case((6, 4, 3, 2), dtype, device, seed=7)
    running = (torch.randn(4, dtype=dtype, device=device), torch.rand(4, dtype=dtype, device=device))
    results = []
    for function in (functools.partial(gpu.batch_norm, impl=impl), F.batch_norm):
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
@pytest.mark.parametrize("impl", IMPLS)
def test_half_precision_computes_in_float32(device, impl, half):
    """Stats in float32, output in the input dtype, float32 running stats stay float32 (as torch)."""
    x32, gamma, beta, dout = random_case((64, 3, 4, 4), torch.float32, device, seed=3)
    # Mean 1000, std ~2: a float16 sum of the 1024 values (~1e6) would overflow (max 65504),
    # and a mean rounded to float16 (ulp 0.5 at 1000) would shift x_hat by ~0.1.
    x = (x32 * 2 / x32.std() + 1000).to(half)
    running = [torch.zeros(3, device=device), torch.ones(3, device=device)]
    t_running = [t.clone() for t in running]
    out = gpu.batch_norm(x, *running, gamma, beta, training=True, impl=impl)
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
    gpu.batch_norm(leaf, None, None, gamma, beta, training=True, impl=impl).backward(dout.to(half))
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
    # eigh may use another routine on the GPU (cuSOLVER); the sign rule makes results agree.
    # Both are backward stable: eigenvectors agree to ~eps64 * ||Sigma|| / (smallest eigenvalue
    # gap) = 1e-16 * 8 / 2, W to that times 1/sqrt(lambda_min) = 3.5, i.e. ~1e-14 (measured
    # 3e-15 on the CPU); 1e-10 leaves a 1e4 margin and still catches a flipped sign or a wrong eps.
    for ours, reference in zip(gpu.whiten(x, method), cpu.whiten(x.cpu().numpy(), method), strict=True):
        torch.testing.assert_close(ours, torch.from_numpy(reference).to(device), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("with_bias", [True, False])
def test_fold_batchnorm_matches_module_pair(device, with_bias):
    # On Ampere and later GPUs cuDNN runs float32 convolutions in TF32 by default (10-bit
    # mantissa, ~5e-4 relative), which would swamp the float32 tolerance: switch it off as
    # torch's own tests do (cuBLAS matmuls, used by F.linear, are float32 by default).
    with torch.backends.cudnn.flags(enabled=None, benchmark=None, deterministic=None, allow_tf32=False):
        check_folding(device, with_bias)


def check_folding(device, with_bias):
    torch.manual_seed(0)
    for layer, bn, x in [  # eps=0.1: folding with the default eps instead would show
        (torch.nn.Linear(6, 4, bias=with_bias), torch.nn.BatchNorm1d(4, eps=0.1), torch.randn(9, 6)),
        (torch.nn.Conv2d(3, 4, 3, bias=with_bias), torch.nn.BatchNorm2d(4, eps=0.1), torch.randn(2, 3, 5, 5)),
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
        assert weight.device == bias.device == x.device and weight.shape == layer.weight.shape
        assert weight.dtype == bias.dtype == torch.float32 and bias.shape == (4,)
        folded = F.linear(x, weight, bias) if x.ndim == 2 else F.conv2d(x, weight, bias)
        # float32, sums of 6 or 27 products in another order: within TOL of the largest output.
        close(folded, pair(x))


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("module", FORWARD_BACKWARD)
def test_half_precision_functions_return_the_data_dtype(device, module, half):
    """Half data with float32 parameters: outputs in the data's dtype, parameter gradients
    and running statistics in float32 (the dtype of the parameters, as torch)."""
    x32, gamma, beta, dout = random_case((16, 3, 2), torch.float32, device, seed=8)
    x, dout = x32.to(half), dout.to(half)
    out, cache = module.batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = module.batchnorm_backward(dout, cache)
    assert out.dtype == dx.dtype == half and dgamma.dtype == dbeta.dtype == torch.float32
    assert out.device == dx.device == dgamma.device == x.device
    # Computed in float32 from the half values: each output is the float32 result rounded once
    # to `half` (half an ulp, eps/2 relative); rtol eps also covers float32 noise at a boundary.
    eps = torch.finfo(half).eps
    leaves = [t.clone().requires_grad_() for t in (x.float(), gamma, beta)]
    truth = F.batch_norm(leaves[0], None, None, leaves[1], leaves[2], training=True)
    truth.backward(dout.float())
    torch.testing.assert_close(out.float(), truth.detach(), rtol=eps, atol=1e-5)
    torch.testing.assert_close(dx.float(), leaves[0].grad, rtol=eps, atol=eps * grad_scale(x32, gamma, dout.float()))
    # dgamma, dbeta are float32 sums of 32 terms: TOL[float32] of the summed magnitudes.
    x_hat = F.batch_norm(x.float(), None, None, training=True)
    close(dgamma, leaves[1].grad, scale=(dout.float() * x_hat).abs().sum(dim=(0, 2)).max().item())
    close(dbeta, leaves[2].grad, scale=dout.float().abs().sum(dim=(0, 2)).max().item())

    # Half data goes through the float32 code path: exactly the float32 results, rounded once.
    out32, cache32 = module.batchnorm_forward(x.float(), gamma, beta)
    assert torch.equal(out, out32.to(half))
    assert torch.equal(dx, module.batchnorm_backward(dout.float(), cache32)[0].to(half))

    running_mean, running_var = torch.randn(3, device=device), torch.rand(3, device=device) + 0.5
    inference = gpu.batchnorm_inference(x, gamma, beta, running_mean, running_var)
    assert torch.equal(inference, gpu.batchnorm_inference(x.float(), gamma, beta, running_mean, running_var).to(half))
    new_mean, new_var = gpu.update_running_stats(running_mean, running_var, x)
    assert new_mean.dtype == new_var.dtype == torch.float32
    # Half running statistics (a layer built with dtype=half) are blended in float32 and
    # rounded once, like torch's kernels, instead of accumulating a rounding per operation.
    half_stats = gpu.update_running_stats(running_mean.to(half), running_var.to(half), x, 0.3)
    float32_stats = gpu.update_running_stats(running_mean.to(half).float(), running_var.to(half).float(), x, 0.3)
    for ours, float32_stat in zip(half_stats, float32_stats, strict=True):
        assert torch.equal(ours, float32_stat.to(half))
    population = gpu.population_stats([x, x])
    assert population[0].dtype == population[1].dtype == half

    # Folding half-precision weights is computed in float32 too.
    weight = torch.randn(3, 2, 3, 3, device=device).to(half)
    folded = gpu.fold_batchnorm(weight, None, gamma, beta, running_mean, running_var)
    reference = gpu.fold_batchnorm(weight.float(), None, gamma, beta, running_mean, running_var)
    for ours, float32_fold in zip(folded, reference, strict=True):
        assert torch.equal(ours, float32_fold.to(half))


# ----------------------------------------------------------------------------- compiled fused kernels

# torch.compile takes seconds per input shape and dtype on a loaded 2-core machine, so the
# compiled kernels are tested on these cases only, compiled once per session.
COMPILED_CASES = [((8, 4, 5, 5), torch.float32), ((16, 5), torch.float64), ((8, 4, 5, 5), torch.float16)]


@pytest.fixture(scope="module", params=ALL_DEVICES)
def compiled_results(request):
    """device -> for each case, (inputs, compiled (out, dx, dgamma, dbeta), eager ones)."""
    device = torch.device(request.param)
    results = []
    for shape, dtype in COMPILED_CASES:
        x, gamma, beta, dout = random_case(shape, torch.float32, device, seed=11)
        x, dout = x.to(dtype), dout.to(dtype)
        if dtype == torch.float64:
            gamma, beta = gamma.double(), beta.double()
        per_mode = []
        for compiled in (True, False):
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would fail here
                out, cache = fused.batchnorm_forward(x, gamma, beta, compiled=compiled)
                per_mode.append((out, *fused.batchnorm_backward(dout, cache)))
        results.append(((x, gamma, beta, dout), *per_mode))
    return results


@pytest.mark.slow
def test_compiled_kernels_match_the_eager_ones_and_torch(compiled_results):
    for (x, gamma, beta, dout), compiled, eager in compiled_results:
        # The compiled loops sum in another order (and may contract a*b+c into one rounding):
        # the same rounding-level tolerances as against the float64 truth, on the same scales.
        scales = [None, grad_scale(x.float(), gamma.float(), dout.float()), x.numel(), x.numel()]
        if x.dtype == torch.float16:
            # float32 results rounded once to float16: the two may round to neighbouring halves.
            torch.testing.assert_close(compiled[0].float(), eager[0].float(), rtol=1e-3, atol=1e-3)
            torch.testing.assert_close(compiled[1].float(), eager[1].float(), rtol=1e-3, atol=1e-3 * scales[1])
            continue
        for ours, theirs, scale in zip(compiled, eager, scales, strict=True):
            close(ours, theirs, scale=scale)
        leaves = [t.detach().double().clone().requires_grad_() for t in (x, gamma, beta)]
        truth = F.batch_norm(leaves[0], None, None, leaves[1], leaves[2], training=True)
        truth.backward(dout.double())
        close(compiled[0], truth.detach().to(x.dtype))
        close(compiled[1], leaves[0].grad.to(x.dtype), scale=scales[1])


def test_compilation_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore details")

    monkeypatch.setattr(torch, "compile", no_compiler)
    monkeypatch.setattr(fused, "_compiled_kernels", {})
    monkeypatch.setattr(fused, "_compile_error", [])
    x, gamma, beta, dout = random_case((6, 3), torch.float64, torch.device("cpu"), seed=2)
    with pytest.warns(RuntimeWarning, match=r"impl='fused': torch.compile is unavailable here \(RuntimeError: no C"):
        out = gpu.batch_norm(x, None, None, gamma, beta, training=True, impl="fused")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not at every call
        again = gpu.batch_norm(x, None, None, gamma, beta, training=True, impl="fused")
    close(out, F.batch_norm(x, None, None, gamma, beta, training=True))
    assert torch.equal(out, again)


def test_impl_is_checked():
    x = torch.ones(4, 3)
    with pytest.raises(ValueError, match="^impl: expected one of 'reference', 'fused', 'fused-eager', got 'fast'"):
        gpu.batch_norm(x, None, None, training=True, impl="fast")
    with pytest.raises(ValueError, match="^impl: expected one of"):
        gpu.BatchNorm1d(3, impl=None)
