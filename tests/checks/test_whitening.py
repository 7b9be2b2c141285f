"""Assignment 02 (``bncourse.checks.whitening``) and its reference flop counts, ``bncourse.flops``.

- the counting rules applied step by step against ``bncourse.flops``;
- the solution passes every part, the untouched stub fails every part, and every corpus
  submission of ``tests/submissions/02_whitening`` loses exactly its EXPECT_LOST parts;
- judges given malformed outputs fail with a message instead of crashing;
- the known mistakes the corpus does not cover are named.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from judging import notebook_tests

from bncourse import flops
from bncourse.checks import PARTS
from bncourse.testing import run_case

ASSIGNMENT = "02_whitening"

# --------------------------------------------------------------------------- reference code


def _count_standardize(N: int, d: int) -> int:
    """The counting rules applied step by step, as a student would (independent of flops.py)."""
    steps = {"sum for the mean": N * d, "divide by N": d, "centre": N * d, "square": N * d,
             "sum of squares": N * d, "divide by N again": d, "add eps": d, "sqrt": d, "divide": N * d}
    return sum(steps.values())


def _count_whiten(N: int, d: int, method: str) -> int:
    def matmul(a: int, b: int, c: int) -> int:
        return 2 * a * b * c

    steps = [N * d, d, N * d, matmul(d, N, d), d * d, 9 * d**3, d, d, d, d * d, matmul(N, d, d)]
    if method == "zca":
        steps.append(matmul(d, d, d))
    return sum(steps)


@pytest.mark.parametrize(("N", "d"), [(1, 1), (7, 3), (1000, 64), (200, 4000)])
def test_flop_counts_follow_the_rules(N: int, d: int) -> None:
    assert flops.standardize_flops(N, d) == _count_standardize(N, d)
    for method in ("zca", "pca"):
        assert flops.whiten_flops(N, d, method) == _count_whiten(N, d, method)


def test_flop_count_ratio_grows_with_d() -> None:
    ratios = [flops.whiten_flops(1024, d) / flops.standardize_flops(1024, d) for d in (8, 32, 128, 512)]
    assert all(b > 2 * a for a, b in zip(ratios, ratios[1:], strict=False))


# --------------------------------------------------------------------------- the solution and the corpus

(
    test_the_solution_passes_every_part,
    test_the_untouched_stub_fails_every_part,
    test_submission_loses_exactly_its_parts,
    test_judges_fail_cleanly_on_malformed_outputs,
) = notebook_tests(ASSIGNMENT)


# --------------------------------------------------------------------------- named mistakes

# Wrong versions that the corpus does not cover, each with the mistake id its judge must name.

def _standardize_eps_outside(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return (x - x.mean(axis=0)) / (x.std(axis=0) + eps)


def _whiten_with(method_used: str | None = None, scale: Any = None) -> Any:
    def whiten(x: np.ndarray, method: str = "zca", eps: float = 1e-5) -> tuple[np.ndarray, ...]:
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=0)
        centred = x64 - mean
        lam, U = np.linalg.eigh(centred.T @ centred / len(x))
        lam, U = np.clip(lam[::-1], 0, None), U[:, ::-1]
        W = U * (scale or (lambda lam, eps: 1 / np.sqrt(lam + eps)))(lam, eps)
        if (method_used or method) == "zca":
            W = W @ U.T
        return (centred @ W).astype(x.dtype), W.astype(x.dtype), mean.astype(x.dtype)
    return whiten


NAMED = [
    ("02_whitening-standardize", _standardize_eps_outside, "eps_outside_sqrt"),
    ("02_whitening-whiten_pca", _whiten_with(method_used="zca"), "zca_instead_of_pca"),
    ("02_whitening-whiten_zca", _whiten_with(scale=lambda lam, eps: 1 / (np.sqrt(lam) + eps)), "eps_outside_sqrt"),
    ("02_whitening-whiten_flops", lambda N, d, method="zca": flops.whiten_flops(N, d, "zca"), "flops_wrong_method"),
]


@pytest.mark.parametrize(("part_id", "wrong", "mistake"), NAMED, ids=[m for _, _, m in NAMED])
def test_judges_name_the_mistake(part_id: str, wrong: Any, mistake: str) -> None:
    part = PARTS[part_id]
    verdicts = [run_case(part, wrong, case) for case in part.cases()]
    failed = [v for v in verdicts if not v.passed]
    assert failed and failed[0].mistake == mistake, failed[:1]
