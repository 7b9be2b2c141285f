"""One test per mistake issue 8 names, and per rule it asks to enforce.

Each test writes the mistake the way a student would, runs it through ``run_case`` on the
VISIBLE part's cases (so the student sees the name before grading), and expects the
catalogue's id, a message that says what is wrong, and no internal key or "raised".
"""

from __future__ import annotations

import numpy as np
import torch

from bncourse.checks import PARTS
from bncourse.testing import run_case


def first_failure(part_id: str, obj) -> tuple[str | None, str]:
    """(mistake, message) of the first failing visible case, or (None, "") if all pass."""
    part = PARTS[part_id]
    assert not part.hidden, part_id
    for case in part.cases():
        verdict = run_case(part, obj, case)
        if not verdict.passed:
            return verdict.mistake, verdict.message
    return None, ""


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _shape(x):
    return (1, -1) + (1,) * (x.ndim - 2)


# --------------------------------------------------------------------------- 03: sqrt(std + eps)


def forward(x, gamma, beta, eps=1e-5, denominator=lambda var, eps: np.sqrt(var + eps)):
    mu = x.mean(axis=_axes(x), keepdims=True)
    var = ((x - mu) ** 2).mean(axis=_axes(x), keepdims=True)
    x_hat = (x - mu) / denominator(var, eps)
    out = gamma.reshape(_shape(x)) * x_hat + beta.reshape(_shape(x))
    return out, {"x_hat": x_hat, "gamma": gamma, "std": denominator(var, eps)}


def test_sqrt_of_std_is_named():
    assert first_failure("03_bn_transform-forward_2d", forward) == (None, "")

    def sqrt_of_std(x, gamma, beta, eps=1e-5):
        return forward(x, gamma, beta, eps, lambda var, eps: np.sqrt(np.sqrt(var) + eps))

    mistake, message = first_failure("03_bn_transform-forward_2d", sqrt_of_std)
    assert mistake == "sqrt_of_std" and "sqrt(var + eps)" in message, message


# --------------------------------------------------------------------------- 04: backward passes

batchnorm_forward = forward  # what the backward parts look up in the student's globals


def staged(dout, cache, overwrite=False):
    x_hat, std = cache["x_hat"], cache["std"]
    axes, m = _axes(dout), dout.size // dout.shape[1]
    centred = x_hat * std
    dx_hat = dout * cache["gamma"].reshape(_shape(dout))
    dcentred = dx_hat / std
    dstd = -(dx_hat * centred / std**2).sum(axis=axes, keepdims=True)
    dvar = dstd / (2.0 * std)
    if overwrite:
        dcentred = 2.0 * centred / m * dvar  # the slip: `=` where `+=` belongs
    else:
        dcentred += 2.0 * centred / m * dvar
    dx = dcentred - dcentred.sum(axis=axes, keepdims=True) / m
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)


def compact(dout, cache, m_is_n=False):
    x_hat, std, axes = cache["x_hat"], cache["std"], _axes(dout)
    m = dout.shape[0] if m_is_n else dout.size // dout.shape[1]  # m_is_n: the slip
    g = dout * cache["gamma"].reshape(_shape(dout))
    dx = (g - g.sum(axis=axes, keepdims=True) / m
          - x_hat * (g * x_hat).sum(axis=axes, keepdims=True) / m) / std
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)


def test_staged_backward_overwriting_a_gradient_is_named():
    assert first_failure("04_backprop-backward", staged) == (None, "")
    mistake, message = first_failure("04_backprop-backward",
                                     lambda dout, cache: staged(dout, cache, overwrite=True))
    assert mistake == "staged_overwrites" and "+=" in message, message


def test_compact_backward_with_m_equal_n_is_named():
    assert first_failure("04_backprop-backward_compact", compact) == (None, "")
    mistake, message = first_failure("04_backprop-backward_compact",
                                     lambda dout, cache: compact(dout, cache, m_is_n=True))
    assert mistake == "backward_m_is_n" and "N * H * W" in message, message


def test_dgamma_from_x_is_named():
    def from_x(dout, cache):
        dx, _, dbeta = compact(dout, cache)
        x = cache["x_hat"] * cache["std"] + cache["mean"]
        return dx, (dout * x).sum(axis=_axes(dout)), dbeta

    def forward_keeping_mean(x, gamma, beta, eps=1e-5):
        out, cache = forward(x, gamma, beta, eps)
        return out, {**cache, "mean": x.mean(axis=_axes(x), keepdims=True)}

    namespace = {**globals(), "batchnorm_forward": forward_keeping_mean}
    student = type(from_x)(from_x.__code__, namespace, "from_x", None, from_x.__closure__)
    mistake, message = first_failure("04_backprop-backward_compact", student)
    assert mistake == "dgamma_from_x" and "x_hat" in message, message


# --------------------------------------------------------------------------- 04: no NumPy inside


def _function(use_numpy: bool):
    class BatchNormFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, gamma, beta, eps=1e-5):
            dims, shape = [0, *range(2, x.dim())], (1, -1) + (1,) * (x.dim() - 2)
            if use_numpy:  # the slip: the statistics computed in NumPy, then back to torch
                values = x.detach().numpy()
                mu = torch.from_numpy(values.mean(axis=tuple(dims), keepdims=True))
            else:
                mu = x.mean(dim=dims, keepdim=True)
            inv_std = torch.rsqrt(((x - mu) ** 2).mean(dim=dims, keepdim=True) + eps)
            x_hat = (x - mu) * inv_std
            ctx.save_for_backward(x_hat, gamma, inv_std)
            ctx.dims, ctx.shape = dims, shape
            return gamma.reshape(shape) * x_hat + beta.reshape(shape)

        @staticmethod
        def backward(ctx, dout):
            x_hat, gamma, inv_std = ctx.saved_tensors
            g = dout * gamma.reshape(ctx.shape)
            dx = inv_std * (g - g.mean(dim=ctx.dims, keepdim=True)
                            - x_hat * (g * x_hat).mean(dim=ctx.dims, keepdim=True))
            return dx, (dout * x_hat).sum(dim=ctx.dims), dout.sum(dim=ctx.dims), None

    return BatchNormFunction


def test_numpy_inside_the_function_is_refused():
    assert first_failure("04_backprop-function", _function(use_numpy=False)) == (None, "")
    mistake, message = first_failure("04_backprop-function", _function(use_numpy=True))
    assert mistake == "numpy_inside_function" and "device" in message, message
    assert " raised " not in message


# --------------------------------------------------------------------------- 05


def population_stats(batches, m_is_batches=False):
    axes = _axes(batches[0])
    m = len(batches) if m_is_batches else batches[0].size // batches[0].shape[1]
    mean = np.mean([b.mean(axis=axes) for b in batches], axis=0)
    var = np.mean([b.var(axis=axes) for b in batches], axis=0) * m / (m - 1)
    return mean, var


def test_population_m_as_number_of_batches_is_named():
    assert first_failure("05_inference-population_stats", population_stats) == (None, "")
    mistake, message = first_failure("05_inference-population_stats",
                                     lambda b: population_stats(b, m_is_batches=True))
    assert mistake == "population_m_is_batches" and "number of batches" in message, message


def fold(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5, subtract_mean=True):
    bias = np.zeros(weight.shape[0], weight.dtype) if bias is None else bias
    scale = gamma / np.sqrt(running_var + eps)
    folded = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    if subtract_mean:
        return folded, scale * (bias - running_mean) + beta
    return folded, scale * bias + beta  # the slip: the scaled running mean left out


def test_fold_bias_without_the_scaled_mean_is_named():
    assert first_failure("05_inference-fold", fold) == (None, "")
    mistake, message = first_failure("05_inference-fold",
                                     lambda *a, **k: fold(*a, **k, subtract_mean=False))
    assert mistake == "fold_bias_without_mean" and "running_mean" in message, message


def _layer(unbiased: bool = False, buffers: bool = True, broadcast_slip: bool = False):
    class BatchNorm1d(torch.nn.Module):
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            super().__init__()
            self.eps, self.momentum = eps, momentum
            self.weight = torch.nn.Parameter(torch.ones(num_features))
            self.bias = torch.nn.Parameter(torch.zeros(num_features))
            if buffers:
                self.register_buffer("running_mean", torch.zeros(num_features))
                self.register_buffer("running_var", torch.ones(num_features))
            else:  # the slip: plain attributes (not moved by .to(), not in state_dict)
                self.running_mean = torch.zeros(num_features)
                self.running_var = torch.ones(num_features)

        def forward(self, x):
            dims = [0, *range(2, x.dim())]
            shape = (-1,) if broadcast_slip else (1, -1) + (1,) * (x.dim() - 2)
            if self.training:
                mean = x.mean(dim=dims)
                var = x.var(dim=dims, unbiased=unbiased)  # unbiased=True: torch.var's default
                with torch.no_grad():
                    a = self.momentum
                    unbiased_var = x.var(dim=dims, unbiased=True)
                    self.running_mean.mul_(1 - a).add_(a * mean)
                    self.running_var.mul_(1 - a).add_(a * unbiased_var)
            else:
                mean, var = self.running_mean, self.running_var
            x_hat = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
            return self.weight.reshape(shape) * x_hat + self.bias.reshape(shape)

    return BatchNorm1d


def test_unbiased_variance_in_the_layer_is_named_without_internal_keys():
    assert first_failure("05_inference-layer", _layer()) == (None, "")
    mistake, message = first_failure("05_inference-layer", _layer(unbiased=True))
    assert mistake == "unbiased_variance" and "unbiased=False" in message, message
    assert "train_out" not in message and "_0" not in message, message


def test_layer_buffers_must_be_registered():
    mistake, message = first_failure("05_inference-layer", _layer(buffers=False))
    assert mistake == "not_buffers" and "register_buffer" in message, message


def test_torch_broadcast_errors_get_the_numpy_hint():
    mistake, message = first_failure("05_inference-layer", _layer(broadcast_slip=True))
    assert mistake == "exception" and "must match the size of tensor" in message, message
    assert "Hint: a (C,) vector" in message, message


# --------------------------------------------------------------------------- visible twins

# Mistakes that only hidden cases used to catch; each is now caught by a visible case.


def test_naive_variance_is_caught_by_a_visible_case():
    def naive(x, gamma, beta, eps=1e-5):
        mu = x.mean(axis=_axes(x), keepdims=True)
        var = (x * x).mean(axis=_axes(x), keepdims=True) - mu**2  # E[x^2] - E[x]^2
        x_hat = (x - mu) / np.sqrt(var + eps)
        return gamma.reshape(_shape(x)) * x_hat + beta.reshape(_shape(x)), None

    for part_id in ("03_bn_transform-forward_2d", "03_bn_transform-forward_4d"):
        assert first_failure(part_id, naive)[0] == "naive_variance", part_id


def test_only_four_d_code_is_caught_by_a_visible_case():
    def four_d_only(x, gamma, beta, eps=1e-5):
        if x.ndim not in (2, 4):
            raise ValueError(f"x: expected 2 or 4 dimensions, got {x.ndim}")
        return forward(x, gamma, beta, eps)

    mistake, message = first_failure("03_bn_transform-forward_4d", four_d_only)
    assert mistake == "exception" and "one spatial axis" in message, message


def test_spatial_running_statistics_with_m_equal_n_are_caught_by_a_visible_case():
    def update(running_mean, running_var, x, momentum=0.1):
        axes, n = _axes(x), x.shape[0]
        var = x.var(axis=axes) * n / (n - 1)  # the slip: m = N whatever the spatial size
        return ((1 - momentum) * running_mean + momentum * x.mean(axis=axes),
                (1 - momentum) * running_var + momentum * var)

    assert first_failure("05_inference-running_stats", update)[0] == "bessel_with_n"


def test_fold_that_needs_a_bias_is_caught_by_a_visible_case():
    def needs_bias(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
        scale = gamma / np.sqrt(running_var + eps)
        return (weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1)),
                scale * (bias - running_mean) + beta)  # TypeError when bias is None

    mistake, message = first_failure("05_inference-fold", needs_bias)
    assert mistake == "exception" and "bias is None" in message, message


def test_the_pass_message_names_what_the_hidden_cases_add(capsys):
    from bncourse.testing import check

    check("03_bn_transform-forward_2d", forward)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("passed: ")
    assert lines[-1] == ("at grading, hidden cases add: "
                         + PARTS["03_bn_transform-forward_2d_hidden"].description)


# --------------------------------------------------------------------------- what a part depends on


def test_a_wrong_pasted_forward_is_named_before_any_backward_part():
    def eps_outside(x, gamma, beta, eps=1e-5):
        return forward(x, gamma, beta, eps, lambda var, eps: np.sqrt(var) + eps)

    namespace = {**globals(), "batchnorm_forward": eps_outside}
    for part_id, backward in (("04_backprop-backward", staged),
                              ("04_backprop-backward_compact", compact),
                              ("06_in_practice-batchnorm_backward", staged)):
        student = type(backward)(backward.__code__, namespace, backward.__name__,
                                 backward.__defaults__)
        mistake, message = first_failure(part_id, student)
        assert mistake == "wrong_forward", (part_id, message)
        assert "batchnorm_forward" in message and "outside the square root" in message, message
        assert "`dx`" not in message, message
