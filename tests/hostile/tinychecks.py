"""Checks of the tiny assignment ``00_tiny`` the grading tests use (same interface as
``bncourse.checks``: PARTS indexed by grade_id, cases/run/judge split).

Parts: ``standardize`` (2 points, visible) and ``standardize_hidden`` (1 point, hidden) on
``standardize(x, eps)`` for (N, D) arrays; ``scale_shift`` (1 point) on
``scale_shift(x_hat, gamma, beta)``.
"""

from __future__ import annotations

import numpy as np

from bncourse.checks.core import Part, Verdict, case_rng

ASSIGNMENT = "00_tiny"
# float64 inputs: a correct implementation matches the float64 formula to ~1e-15; 1e-9 leaves
# room for any summation order while the eps and ddof variants differ by > 1e-3 on these data.
RTOL, ATOL = 1e-9, 1e-9


def _standardize_cases(seed: int, count: int) -> list[dict]:
    rng = case_rng(seed)  # the hidden part's values differ per student under bncourse-grade
    cases = []
    for index in range(count):
        x = rng.normal(rng.uniform(-3, 3), rng.uniform(0.5, 2), size=(6 + index, 3))
        x[:, 0] = x[:, 0] * 1e-3  # a column of variance ~1e-6 < 10 eps: eps matters
        cases.append({"x": x, "eps": 1e-5, "label": f"case {index}"})
    return cases


def _run_standardize(obj, case: dict) -> dict:
    return {"out": np.asarray(obj(case["x"].copy(), eps=case["eps"]), dtype=float)}


def _judge_standardize(case: dict, outputs: dict) -> Verdict:
    x, eps = case["x"], case["eps"]
    if "out" not in outputs:
        return Verdict(False, "standardize returned nothing to check", "missing_output")
    out = outputs["out"]
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + eps)
    if out.shape != expected.shape:
        return Verdict(False, f"standardize returned shape {out.shape}, expected "
                       f"{expected.shape}", "wrong_shape")
    if np.allclose(out, expected, rtol=RTOL, atol=ATOL):
        return Verdict(True)
    unbiased = (x - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + eps)
    if np.allclose(out, unbiased, rtol=1e-6, atol=1e-9):
        return Verdict(False, "standardize divides by m - 1: batch norm uses the biased "
                       "variance (divide by m)", "unbiased_variance")
    outside = (x - x.mean(0)) / (np.sqrt(x.var(0)) + eps)
    if np.allclose(out, outside, rtol=1e-6, atol=1e-9):
        return Verdict(False, "standardize adds eps outside the square root",
                       "eps_outside_sqrt")
    return Verdict(False, f"standardize's output is wrong ({case['label']})", None)


def _scale_cases() -> list[dict]:
    rng = np.random.default_rng(7)
    return [{"x_hat": rng.normal(size=(5, 4)), "gamma": rng.uniform(0.5, 2, 4),
             "beta": rng.normal(size=4)}]


def _run_scale(obj, case: dict) -> dict:
    return {"out": np.asarray(obj(case["x_hat"], case["gamma"], case["beta"]), dtype=float)}


def _judge_scale(case: dict, outputs: dict) -> Verdict:
    out = outputs.get("out")
    expected = case["gamma"] * case["x_hat"] + case["beta"]
    if out is not None and out.shape == expected.shape and np.allclose(out, expected):
        return Verdict(True)
    swapped = case["beta"] * case["x_hat"] + case["gamma"]
    if out is not None and out.shape == swapped.shape and np.allclose(out, swapped):
        return Verdict(False, "scale_shift swaps gamma and beta", "gamma_beta_swapped")
    return Verdict(False, "scale_shift's output is wrong", None)


PARTS = {
    part.id: part
    for part in [
        Part("00_tiny-standardize", ASSIGNMENT, "standardize", 2.0, False,
             "standardize on (N, D) float64 data", lambda: _standardize_cases(0, 2),
             _run_standardize, _judge_standardize),
        Part("00_tiny-standardize_hidden", ASSIGNMENT, "standardize", 1.0, True,
             "standardize on more shapes", lambda: _standardize_cases(1, 3),
             _run_standardize, _judge_standardize),
        Part("00_tiny-scale_shift", ASSIGNMENT, "scale_shift", 1.0, False,
             "scale_shift applies gamma and beta", _scale_cases, _run_scale, _judge_scale),
    ]
}


def parts_for(assignment: str) -> list[Part]:
    return [part for part in PARTS.values() if part.assignment == assignment]
