"""Assignment 03 (``bncourse.checks.bn_transform``): the forward catalogue and what a student is told.

Every known forward mistake is named on each case that can tell it from the right answer,
the right answer passes every case, and an unrelated error gets the largest difference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from judging import cast, correct_forward, family_tests, notebook_tests

from bncourse import cpu
from bncourse.checks import PARTS, bn_transform
from bncourse.checks.outputs import broadcast_hint
from bncourse.checks.variants import FORWARD_VARIANTS
from bncourse.testing import run_case


def _forward_expected(case: dict) -> dict:
    x, gamma, beta = (np.asarray(case[n], np.float64) for n in ("x", "gamma", "beta"))
    return {"out": cpu.batchnorm_forward(x, gamma, beta, eps=case["eps"])[0]}


FAMILIES = {
    "forward": (bn_transform.PARTS, FORWARD_VARIANTS, _forward_expected, bn_transform.judge, "x"),
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
) = notebook_tests("03_bn_transform")


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


def test_mutated_input_and_dtype_are_reported():
    case = bn_transform.cases_2d()[1]  # float32
    outputs = cast(_forward_expected(case), case, "x")
    assert bn_transform.judge(case, {**outputs, "after_x": case["x"] + 1}).mistake == "mutates_input"
    as_float64 = {"out": outputs["out"].astype(np.float64)}
    assert bn_transform.judge(case, as_float64).mistake == "dtype_changed"


# --------------------------------------------------------------------------- what a student is told


def test_return_values_of_the_wrong_kind_get_their_own_message():
    part = PARTS["03_bn_transform-forward_2d"]
    case = part.cases()[0]

    def as_tensor(x, gamma, beta, eps=1e-5):
        return torch.from_numpy(correct_forward(x, gamma, beta, eps)[0]), None

    def as_list(x, gamma, beta, eps=1e-5):
        return correct_forward(x, gamma, beta, eps)[0].tolist(), None

    def cache_first(x, gamma, beta, eps=1e-5):
        out, _ = correct_forward(x, gamma, beta, eps)
        return (x, gamma), out

    def out_only(x, gamma, beta, eps=1e-5):
        return correct_forward(x, gamma, beta, eps)[0]

    expected = {
        as_tensor: "`out` as a torch.Tensor",
        as_list: "`out` as a list of 8 items",  # not a misleading "is float64"
        cache_first: "return them in the order (out, cache)",
        out_only: "got a single array of shape (8, 5) (end with `return out, cache`",
    }
    for student, phrase in expected.items():
        verdict = run_case(part, student, case)
        assert verdict.mistake == "unusable_result" and phrase in verdict.message, verdict
        assert " raised " not in verdict.message, verdict  # the student's code raised nothing



def test_broadcast_errors_get_a_hint_on_layouts_with_spatial_axes():
    def gamma_not_reshaped(x, gamma, beta, eps=1e-5):
        mu = x.mean(axis=(0, 2, 3), keepdims=True)
        var = x.var(axis=(0, 2, 3), keepdims=True)
        return gamma * (x - mu) / np.sqrt(var + eps) + beta, None

    part = PARTS["03_bn_transform-forward_4d"]
    verdict = run_case(part, gamma_not_reshaped, part.cases()[0])
    assert "raised ValueError: operands could not be broadcast" in verdict.message
    assert "Hint: a (C,) vector" in verdict.message and "(1, C, 1, 1)" in verdict.message

    # Other errors pass through unchanged.
    with pytest.raises(ValueError, match="^other$"), broadcast_hint("nope"):
        raise ValueError("other")
