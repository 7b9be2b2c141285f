"""Unit tests of the checks framework: diagnoses, generic messages, shortcuts, check().

Every known variant is computed on the cases of its part and must be named by the judge on
each case that can tell it from the right answer; the right answer must pass every case; an
unrelated error must get the generic message with the largest difference and its index.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bncourse import cpu
from bncourse.checks import PARTS, Part, backprop, bn_transform, canonical_id, inference, parts_for
from bncourse.mistakes import (
    BACKWARD_VARIANTS,
    FOLD_VARIANTS,
    FORWARD_VARIANTS,
    INFERENCE_VARIANTS,
    POPULATION_VARIANTS,
    RUNNING_VARIANTS,
    Variant,
)
from bncourse.testing import Verdict, broadcast_hint, check, compare, find_shortcuts, run_case

# --------------------------------------------------------------------------- helpers


def _all_cases(module_parts: list[Part]) -> list[dict]:
    seen, cases = set(), []
    for part in module_parts:
        if id(part.cases) in seen:
            continue
        seen.add(id(part.cases))
        cases.extend(part.cases())
    return cases


def _cast(outputs: dict, case: dict, dtype_key: str | None) -> dict:
    if dtype_key is None:
        return dict(outputs)
    dtype = np.asarray(case[dtype_key]).dtype
    return {k: np.asarray(v).astype(dtype) for k, v in outputs.items()}


def _forward_expected(case: dict) -> dict:
    x, gamma, beta = (np.asarray(case[n], np.float64) for n in ("x", "gamma", "beta"))
    return {"out": cpu.batchnorm_forward(x, gamma, beta, eps=case["eps"])[0]}


def _backward_expected(case: dict) -> dict:
    return backprop._expected_grads(case)


def _running_expected(case: dict) -> dict:
    args = (np.asarray(case[n], np.float64) for n in ("running_mean", "running_var", "x"))
    new_mean, new_var = cpu.update_running_stats(*args, momentum=case["momentum"])
    return {"new_mean": new_mean, "new_var": new_var}


def _population_expected(case: dict) -> dict:
    mean, var = cpu.population_stats(list(np.asarray(case["batches"], np.float64)))
    return {"mean": mean, "var": var}


def _inference_expected(case: dict) -> dict:
    args = [np.asarray(case[n], np.float64) for n in inference._INFERENCE_INPUTS]
    return {"out": cpu.batchnorm_inference(*args, eps=case["eps"])}


def _fold_expected(case: dict) -> dict:
    args = {n: np.asarray(case[n], np.float64) for n in inference._FOLD_INPUTS}
    if case.get("no_bias"):
        args["bias"] = None
    weight, bias = cpu.fold_batchnorm(*args.values(), eps=case["eps"])
    return {"weight": weight, "bias": bias}


def _layer_expected(case: dict) -> dict:
    """torch.nn.BatchNorm1d run as the student's class would be (float32)."""
    return inference.run_layer(torch.nn.BatchNorm1d, case)


# family: (parts, variants, expected outputs, judge, dtype key of the outputs)
FAMILIES = {
    "forward": (bn_transform.PARTS, FORWARD_VARIANTS, _forward_expected, bn_transform.judge, "x"),
    "backward": (backprop.PARTS[:2], BACKWARD_VARIANTS, _backward_expected,
                 backprop._judge_backward("batchnorm_backward"), "x"),
    "running": (inference.PARTS[0:2], RUNNING_VARIANTS, _running_expected,
                inference.judge_running, "x"),
    "population": (inference.PARTS[2:4], POPULATION_VARIANTS, _population_expected,
                   inference.judge_population, "batches"),
    "inference": (inference.PARTS[4:6], INFERENCE_VARIANTS, _inference_expected,
                  inference.judge_inference, "x"),
    "fold": (inference.PARTS[6:8], FOLD_VARIANTS, _fold_expected, inference.judge_fold, "weight"),
    "layer": (inference.PARTS[8:10], inference.LAYER_VARIANTS, _layer_expected,
              inference.judge_layer, "weight"),
    "gradient": (backprop.PARTS[4:6], backprop.GRADIENT_VARIANTS,
                 lambda case: {"dx": backprop._analytic_gradient(case)},
                 backprop.judge_gradient, None),
}

VARIANT_PARAMS = [
    pytest.param(family, index, id=f"{family}-{index}-{variant.mistake}")
    for family, (_, variants, _, _, _) in FAMILIES.items()
    for index, variant in enumerate(variants)
    if variant.compute is not None
]


# --------------------------------------------------------------------------- diagnoses


@pytest.mark.parametrize("family", FAMILIES)
def test_right_answer_passes_every_case(family):
    parts, _, expected, judge, dtype_key = FAMILIES[family]
    for case in _all_cases(parts):
        verdict = judge(case, _cast(expected(case), case, dtype_key))
        assert verdict == Verdict(True), (case["label"], verdict)


@pytest.mark.parametrize(("family", "index"), VARIANT_PARAMS)
def test_each_known_variant_is_named(family, index):
    parts, variants, expected, judge, dtype_key = FAMILIES[family]
    variant: Variant = variants[index]
    diagnosed = 0
    for case in _all_cases(parts):
        if not variant.applies(case):
            continue
        with np.errstate(all="ignore"):
            outputs = {**expected(case), **variant.compute(case)}
        verdict = judge(case, _cast(outputs, case, dtype_key))
        # A case may miss the variant (passed) or see a difference too small to name safely
        # (the generic message, mistake None); it must never name another mistake.
        assert verdict.mistake in (variant.mistake, None), (case["label"], verdict)
        diagnosed += verdict.mistake == variant.mistake
    assert diagnosed > 0, f"no case of {family} exposes {variant.mistake}"


def test_variant_is_not_named_where_the_case_cannot_tell():
    """With eps far below the variance, 'no eps' is indistinguishable and must not be named."""
    case = bn_transform.random_case("wide", (64, 3), np.float64, seed=5, eps=1e-12)
    wrong = FORWARD_VARIANTS[2].compute(case)["out"] + 0.3
    verdict = bn_transform.judge(case, {"out": wrong})
    assert not verdict.passed and verdict.mistake is None


def test_naive_variance_is_named_only_on_large_offsets():
    offset = bn_transform.cases_2d_hidden()[-1]
    assert offset.get("large_offset")
    x = offset["x"]  # float32, computed the naive way in float32 as a student would
    mean = x.mean(axis=0)
    var = (x * x).mean(axis=0) - mean * mean
    with np.errstate(invalid="ignore"):
        out = offset["gamma"] * (x - mean) / np.sqrt(var + np.float32(offset["eps"])) + offset["beta"]
    assert bn_transform.judge(offset, {"out": out}).mistake == "naive_variance"
    ordinary = bn_transform.cases_2d()[1]  # float32, mean of order 1: naive is accurate here
    x = ordinary["x"]
    mean = x.mean(axis=0)
    var = (x * x).mean(axis=0) - mean * mean
    out = ordinary["gamma"] * (x - mean) / np.sqrt(var + np.float32(ordinary["eps"])) + ordinary["beta"]
    assert bn_transform.judge(ordinary, {"out": out}).passed


@pytest.mark.parametrize("family", FAMILIES)
def test_unrelated_error_gets_largest_difference_and_index(family):
    parts, _, expected, judge, dtype_key = FAMILIES[family]
    case = _all_cases(parts)[0]
    outputs = _cast(expected(case), case, dtype_key)
    name = sorted(outputs)[0]
    wrong = np.array(outputs[name], dtype=np.float64)
    index = tuple(s - 1 for s in wrong.shape)
    wrong[index] += 0.75
    outputs[name] = wrong.astype(outputs[name].dtype)
    verdict = judge(case, outputs)
    assert not verdict.passed and verdict.mistake is None, verdict
    assert "largest difference is 0.75" in verdict.message, verdict.message
    assert f"at index {index if len(index) > 1 else '(' + str(index[0]) + ',)'}" in verdict.message


def test_judges_fail_on_missing_or_garbage_outputs_instead_of_crashing():
    for part in PARTS.values():
        case = part.cases()[0]
        for outputs in ({}, {"out": np.array(["text"]), "dx": np.zeros(1)}):
            verdict = part.judge(case, outputs)
            assert isinstance(verdict, Verdict) and not verdict.passed, (part.id, verdict)


def test_mutated_input_and_dtype_are_reported():
    case = bn_transform.cases_2d()[1]  # float32
    outputs = _cast(_forward_expected(case), case, "x")
    assert bn_transform.judge(case, {**outputs, "after_x": case["x"] + 1}).mistake == "mutates_input"
    as_float64 = {"out": outputs["out"].astype(np.float64)}
    assert bn_transform.judge(case, as_float64).mistake == "dtype_changed"


# --------------------------------------------------------------------------- compare


def test_compare_messages():
    expected = np.zeros((2, 3))
    assert compare("out", np.zeros((2, 3)), expected, 1e-7, 1e-9) is None
    assert "shape (3, 2)" in compare("out", np.zeros((3, 2)), expected, 1e-7, 1e-9)
    assert "NumPy array" in compare("out", [[0.0] * 3] * 2, expected, 1e-7, 1e-9)
    bad = np.zeros((2, 3))
    bad[1, 2] = np.nan
    assert "nan at index (1, 2)" in compare("out", bad, expected, 1e-7, 1e-9)
    bad[1, 2] = 0.0
    bad[0, 1] = -2.0
    message = compare("out", bad, expected, 1e-7, 1e-9)
    assert "largest difference is 2 at index (0, 1)" in message


# --------------------------------------------------------------------------- shortcuts

SHORTCUTS = {
    "torch_functional": (
        "def f(x, g, b):\n    return torch.nn.functional.batch_norm(x, None, None, g, b, True)\n"
    ),
    "F_alias": "def f(x, g, b):\n    return F.layer_norm(x, x.shape[1:])\n",
    "torch_batch_norm": (
        "def f(x):\n    return torch.batch_norm(x, None, None, None, None, True, 0.1, 1e-5, False)\n"
    ),
    "module": "class L:\n    def __init__(self):\n        self.bn = nn.BatchNorm1d(3)\n",
    "bncourse_import": (
        "def f(x, g, b):\n    from bncourse.cpu import batchnorm_forward\n"
        "    return batchnorm_forward(x, g, b)\n"
    ),
    "bncourse_attr": "def f(x, g, b):\n    return bncourse.cpu.batchnorm_forward(x, g, b)\n",
    "sklearn": (
        "def f(x):\n    from sklearn.preprocessing import StandardScaler\n"
        "    return StandardScaler().fit_transform(x)\n"
    ),
    "sklearn_scale": "def f(x):\n    import sklearn.preprocessing as p\n    return p.scale(x)\n",
    "zscore": "def f(x):\n    from scipy.stats import zscore\n    return zscore(x)\n",
    "group_norm": "    def forward(self, x):\n        return torch.group_norm(x, 2)\n",
}
HONEST = {
    "numpy": (
        "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    mu = x.mean(axis=0)\n"
        "    return gamma * (x - mu) / np.sqrt(x.var(axis=0) + eps) + beta, None\n"
    ),
    "own_class": (
        "class BatchNorm1d(torch.nn.Module):\n    def __init__(self, n):\n"
        "        super(BatchNorm1d, self).__init__()\n"
        "        self.weight = torch.nn.Parameter(torch.ones(n))\n"
    ),
    "torch_ops": (
        "def f(x):\n    var, mean = torch.var_mean(x, dim=0, unbiased=False)\n"
        "    return (x - mean) * torch.rsqrt(var + 1e-5)\n"
    ),
    "syntax_error": "def f(x:\n",
}


@pytest.mark.parametrize("name", SHORTCUTS)
def test_find_shortcuts_flags_ready_made_normalisation(name):
    assert find_shortcuts(SHORTCUTS[name]) is not None


@pytest.mark.parametrize("name", HONEST)
def test_find_shortcuts_accepts_honest_code(name):
    assert find_shortcuts(HONEST[name]) is None


def test_tripwire_catches_a_shortcut_the_source_scan_cannot_see():
    normalise = torch.nn.functional.batch_norm  # bound outside the function: no trace in it

    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        out = normalise(torch.from_numpy(x), None, None, torch.from_numpy(gamma),
                        torch.from_numpy(beta), True, 0.1, eps)
        return out.numpy(), None

    part = PARTS["03_bn_transform-forward_2d"]
    assert find_shortcuts("def batchnorm_forward(x):\n    return normalise(x)\n") is None
    verdict = run_case(part, batchnorm_forward, part.cases()[0])
    assert verdict.mistake == "shortcut" and "torch.nn.functional.batch_norm" in verdict.message


def test_tripwire_catches_the_reference_called_through_an_alias():
    reference = cpu.batchnorm_forward

    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        return reference(x, gamma, beta, eps)

    part = PARTS["03_bn_transform-forward_2d"]
    verdict = run_case(part, batchnorm_forward, part.cases()[0])
    assert verdict.mistake == "shortcut" and "bncourse.cpu" in verdict.message


def test_tripwire_ignores_course_helpers_but_not_the_reference_itself():
    from bncourse import data

    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        data.minibatches(x, x[:, 0], 2, np.random.default_rng(0))  # an allowed helper
        return _correct_forward(x, gamma, beta, eps)

    part = PARTS["03_bn_transform-forward_2d"]
    assert run_case(part, batchnorm_forward, part.cases()[0]).passed
    # The reference handed over as the student's function: its call comes from the check
    # module, which is no helper.
    verdict = run_case(part, cpu.batchnorm_forward, part.cases()[0])
    assert verdict.mistake == "shortcut"
    with pytest.raises(AssertionError, match="not your own code"):
        check("03_bn_transform-forward_2d", cpu.batchnorm_forward)
    assert find_shortcuts("def f(x):\n    return bncourse.data.minibatches(x)\n") is None


# --------------------------------------------------------------------------- check and parts


def _correct_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    x_hat = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), None


def _unbiased_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    x_hat = (x - mu) / np.sqrt(x.var(axis=axes, keepdims=True, ddof=1) + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), None


def test_check_prints_on_success_and_raises_the_diagnosis(capsys):
    check("03_bn_transform-forward_4d_hidden", _correct_forward)
    assert capsys.readouterr().out.startswith("passed: ")
    with pytest.raises(AssertionError, match="divide by m - 1"):
        check("03_bn_transform.forward_2d", _unbiased_forward)  # the dotted form works too


def test_check_reports_the_students_exception():
    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="raised NotImplementedError"):
        check("03_bn_transform-forward_2d", batchnorm_forward)


def test_check_rejects_unknown_parts():
    with pytest.raises(KeyError, match="part_id"):
        check("03_bn_transform-nope", _correct_forward)


def test_part_ids_are_nbgrader_grade_ids():
    assert canonical_id("03_bn_transform.forward_2d") == "03_bn_transform-forward_2d"
    for part_id, part in PARTS.items():
        assert part_id == part.id and part.id.startswith(part.assignment + "-")
    with pytest.raises(ValueError, match="grade_id"):
        Part("03_bn_transform-bad id", "03_bn_transform", "f", 1.0, False, "", list,
             lambda obj, case: {}, lambda case, out: Verdict(True))
    with pytest.raises(ValueError, match="assignment"):
        parts_for("99_nothing")


def test_cases_are_deterministic_and_plain_data():
    for part in PARTS.values():
        first, second = part.cases(), part.cases()
        assert len(first) == len(second) > 0
        for a, b in zip(first, second, strict=True):
            assert a.keys() == b.keys()
            for key, value in a.items():
                assert isinstance(value, np.ndarray | int | float | str), (part.id, key)
                floating = np.asarray(value).dtype.kind == "f"
                same = np.array_equal(np.asarray(value), np.asarray(b[key]), equal_nan=floating)
                assert same, (part.id, key)


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


def test_return_values_of_the_wrong_kind_get_their_own_message():
    part = PARTS["03_bn_transform-forward_2d"]
    case = part.cases()[0]

    def as_tensor(x, gamma, beta, eps=1e-5):
        return torch.from_numpy(_correct_forward(x, gamma, beta, eps)[0]), None

    def as_list(x, gamma, beta, eps=1e-5):
        return _correct_forward(x, gamma, beta, eps)[0].tolist(), None

    def cache_first(x, gamma, beta, eps=1e-5):
        out, _ = _correct_forward(x, gamma, beta, eps)
        return (x, gamma), out

    def out_only(x, gamma, beta, eps=1e-5):
        return _correct_forward(x, gamma, beta, eps)[0]

    expected = {
        as_tensor: "`out` as a torch.Tensor",
        as_list: "`out` as a list of 8 items",  # not a misleading "is float64"
        cache_first: "return them in the order (out, cache)",
        out_only: "got a single array of shape (8, 5) (end with `return out, cache`",
    }
    for student, phrase in expected.items():
        verdict = run_case(part, student, case)
        assert verdict.mistake == "exception" and phrase in verdict.message, verdict
    inference_part = PARTS["05_inference-inference"]

    def inference_in_torch(x, gamma, beta, running_mean, running_var, eps=1e-5):
        return torch.from_numpy(cpu.batchnorm_inference(x, gamma, beta, running_mean,
                                                        running_var, eps))

    verdict = run_case(inference_part, inference_in_torch, inference_part.cases()[0])
    assert "torch.Tensor" in verdict.message


def test_broadcast_errors_get_a_hint_on_layouts_with_spatial_axes():
    def gamma_not_reshaped(x, gamma, beta, eps=1e-5):
        mu = x.mean(axis=(0, 2, 3), keepdims=True)
        var = x.var(axis=(0, 2, 3), keepdims=True)
        return gamma * (x - mu) / np.sqrt(var + eps) + beta, None

    part = PARTS["03_bn_transform-forward_4d"]
    verdict = run_case(part, gamma_not_reshaped, part.cases()[0])
    assert "raised ValueError: operands could not be broadcast" in verdict.message
    assert "Hint: a (C,) vector" in verdict.message and "(1, C, 1, 1)" in verdict.message

    def scale_not_reshaped(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
        scale = gamma / np.sqrt(running_var + eps)
        return weight * scale, scale * (bias - running_mean) + beta

    fold = PARTS["05_inference-fold"]
    verdict = run_case(fold, scale_not_reshaped, fold.cases()[0])  # weight (4, 3)
    assert "LAST axis of the weight" in verdict.message

    def bias_required(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
        scale = gamma / np.sqrt(running_var + eps)
        return weight * scale[:, None], scale * (bias - running_mean) + beta

    hidden = PARTS["05_inference-fold_hidden"]
    no_bias = next(case for case in hidden.cases() if case.get("no_bias"))
    verdict = run_case(hidden, bias_required, no_bias)
    assert "bias is None here" in verdict.message
    # Other errors pass through unchanged.
    with pytest.raises(ValueError, match="^other$"), broadcast_hint("nope"):
        raise ValueError("other")


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
    expected = {
        "None for eps": _function_class(grads_returned=3),
        "ctx.eps = eps": _function_class(save_eps=True),
        "the output tensor alone": _function_class(return_pair=True),
    }
    for phrase, function in expected.items():
        verdict = run_case(part, function, case)
        assert verdict.mistake == "exception" and phrase in verdict.message, verdict
