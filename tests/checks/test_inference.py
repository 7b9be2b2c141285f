"""Assignment 05 (``bncourse.checks.inference``): the catalogues of running and population
statistics, inference BN, folding and the layer, and what a student is told.

Every known mistake is named on each case that can tell it from the right answer, the right
answer passes every case, and an unrelated error gets the largest difference.
"""

from __future__ import annotations

import numpy as np
import torch
from judging import family_tests, notebook_tests

from bncourse import cpu
from bncourse.checks import PARTS, inference
from bncourse.checks.variants import (
    FOLD_VARIANTS,
    INFERENCE_VARIANTS,
    POPULATION_VARIANTS,
    RUNNING_VARIANTS,
)
from bncourse.testing import run_case


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
    """torch.nn.BatchNorm1d run as the student's class would be (float32); its values only
    (the buffer-registration flag is no output to perturb)."""
    outputs = inference.run_layer(torch.nn.BatchNorm1d, case)
    assert outputs.pop("buffers")
    return outputs


FAMILIES = {
    "running": (inference.PARTS[0:2], RUNNING_VARIANTS, _running_expected,
                inference.judge_running, "x"),
    "population": (inference.PARTS[2:4], POPULATION_VARIANTS, _population_expected,
                   inference.judge_population, "batches"),
    "inference": (inference.PARTS[4:6], INFERENCE_VARIANTS, _inference_expected,
                  inference.judge_inference, "x"),
    "fold": (inference.PARTS[6:8], FOLD_VARIANTS, _fold_expected, inference.judge_fold, "weight"),
    "layer": (inference.PARTS[8:10], inference.LAYER_VARIANTS, _layer_expected,
              inference.judge_layer, "weight"),
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
) = notebook_tests("05_inference")


# --------------------------------------------------------------------------- what a student is told


def test_return_values_of_the_wrong_kind_get_their_own_message():
    inference_part = PARTS["05_inference-inference"]

    def inference_in_torch(x, gamma, beta, running_mean, running_var, eps=1e-5):
        return torch.from_numpy(cpu.batchnorm_inference(x, gamma, beta, running_mean,
                                                        running_var, eps))

    verdict = run_case(inference_part, inference_in_torch, inference_part.cases()[0])
    assert "torch.Tensor" in verdict.message


def test_broadcast_errors_get_a_hint_on_layouts_with_spatial_axes():
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
