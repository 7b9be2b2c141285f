"""Assignment 04 (``bncourse.checks.backprop``): the backward and gradient catalogues, and hints.

Every known mistake is named on each case that can tell it from the right answer, the right
answer passes every case, and an unrelated error gets the largest difference.
"""

from __future__ import annotations

import numpy as np
import torch
from judging import family_tests, notebook_tests

from bncourse.checks import PARTS, backprop
from bncourse.checks.variants import BACKWARD_VARIANTS
from bncourse.testing import run_case

FAMILIES = {
    "backward": (backprop.PARTS[:2], BACKWARD_VARIANTS, backprop.expected_grads,
                 backprop.judge_backward("batchnorm_backward"), "x"),
    "gradient": (backprop.PARTS[4:6], backprop.GRADIENT_VARIANTS,
                 lambda case: {"dx": backprop._analytic_gradient(case)},
                 backprop.judge_gradient, None),
}


(
    test_right_answer_passes_every_case,
    test_each_known_variant_is_named,
    test_unrelated_error_gets_largest_difference_and_index,
) = family_tests(FAMILIES)

# The solution, in this process as its test cells run it. The stub and the corpus of this
# assignment are graded through nbgrader in tests/test_exercises.py, whose cell messages their
# expectations are written for.
(
    test_the_solution_passes_every_part,
    _stub_test,
    _corpus_test,
    test_judges_fail_cleanly_on_malformed_outputs,
) = notebook_tests("04_backprop")


# --------------------------------------------------------------------------- what a student is told


def _compact_backward(dout, cache):
    x_hat, gamma, std, axes = cache
    shape = (1, -1) + (1,) * (dout.ndim - 2)
    g = dout * gamma.reshape(shape)
    dx = (g - g.mean(axis=axes, keepdims=True)
          - x_hat * (g * x_hat).mean(axis=axes, keepdims=True)) / std
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)


def _forward_with_cache(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    std = np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    x_hat = (x - mu) / std
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), (x_hat, gamma, std, axes)


def _backward_verdict(backward, case):
    """run_case on the backward part, with _forward_with_cache as the student's forward."""
    namespace = {**globals(), "batchnorm_forward": _forward_with_cache}
    student = type(backward)(backward.__code__, namespace, backward.__name__)
    return run_case(PARTS["04_backprop-backward"], student, case)


def test_backward_shape_mistakes_are_named():
    image = backprop.backward_cases()[1]  # (2, 3, 4, 4)
    assert _backward_verdict(_compact_backward, image).passed

    def out_of_order(dout, cache):
        dx, dgamma, dbeta = _compact_backward(dout, cache)
        return dgamma, dbeta, dx

    def over_batch_axis(dout, cache):
        dx, _, _ = _compact_backward(dout, cache)
        return dx, (dout * cache[0]).sum(axis=0), dout.sum(axis=0)

    assert _backward_verdict(out_of_order, image).mistake == "backward_out_of_order"
    verdict = _backward_verdict(over_batch_axis, image)
    assert verdict.mistake == "backward_param_grad_axes" and "(C,)" in verdict.message
    # On (N, D) summing over axis 0 is right: nothing to name.
    assert _backward_verdict(over_batch_axis, backprop.backward_cases()[0]).passed


def _dgamma_from_input(dout, cache):
    """A backward whose dgamma sums dout * x (its forward keeps x as the cache's last entry)."""
    dx, _, dbeta = _compact_backward(dout, cache[:4])
    return dx, (dout * cache[4]).sum(axis=cache[3]), dbeta


def test_dgamma_from_x_instead_of_x_hat_is_named():
    """The catalogue entry ``dgamma_from_x``, seen through a student's backward."""

    def forward_keeping_x(x, gamma, beta, eps=1e-5):
        out, cache = _forward_with_cache(x, gamma, beta, eps)
        return out, (*cache, x)

    namespace = {**globals(), "batchnorm_forward": forward_keeping_x}
    student = type(_dgamma_from_input)(_dgamma_from_input.__code__, namespace, "batchnorm_backward")
    verdict = run_case(PARTS["04_backprop-backward"], student, backprop.backward_cases()[0])
    assert verdict.mistake == "dgamma_from_x" and "x_hat" in verdict.message, verdict


def _function_class(grads_returned: int = 4, save_eps: bool = False, return_pair: bool = False):
    """A BatchNormFunction with one of the usual slips of a first custom Function."""

    class BatchNormFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, gamma, beta, eps=1e-5):
            dims, shape = [0, *range(2, x.dim())], (1, -1) + (1,) * (x.dim() - 2)
            mu = x.mean(dim=dims, keepdim=True)
            inv_std = torch.rsqrt(((x - mu) ** 2).mean(dim=dims, keepdim=True) + eps)
            x_hat = (x - mu) * inv_std
            saved = (x_hat, gamma, inv_std, eps) if save_eps else (x_hat, gamma, inv_std)
            ctx.save_for_backward(*saved)
            ctx.dims, ctx.shape = dims, shape
            out = gamma.reshape(shape) * x_hat + beta.reshape(shape)
            return (out, x_hat) if return_pair else out

        @staticmethod
        def backward(ctx, dout):
            x_hat, gamma, inv_std = ctx.saved_tensors[:3]
            g = dout * gamma.reshape(ctx.shape)
            dx = inv_std * (g - g.mean(dim=ctx.dims, keepdim=True)
                            - x_hat * (g * x_hat).mean(dim=ctx.dims, keepdim=True))
            grads = (dx, (dout * x_hat).sum(dim=ctx.dims), dout.sum(dim=ctx.dims), None)
            return grads[:grads_returned]

    return BatchNormFunction


def test_slips_in_a_custom_function_get_a_hint():
    part = PARTS["04_backprop-function"]
    case = part.cases()[0]
    assert run_case(part, _function_class(), case).passed
    expected = {  # torch's errors (raised in the student's code), then a check's own finding
        "None for eps": ("exception", _function_class(grads_returned=3)),
        "ctx.eps = eps": ("exception", _function_class(save_eps=True)),
        "the output tensor alone": ("unusable_result", _function_class(return_pair=True)),
    }
    for phrase, (mistake, function) in expected.items():
        verdict = run_case(part, function, case)
        assert verdict.mistake == mistake and phrase in verdict.message, verdict
        assert (" raised " in verdict.message) == (mistake == "exception"), verdict
