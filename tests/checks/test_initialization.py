"""Assignment 01 (``bncourse.checks.initialization``) and its reference, ``bncourse.initialization``.

- the reference against independent computations (PyTorch, moments of the laws);
- the solution passes every part, the untouched stub fails every part, and every corpus
  submission of ``tests/submissions/01_initialization`` loses exactly its EXPECT_LOST parts;
- judges given malformed outputs fail with a message instead of crashing;
- the known mistakes the corpus does not cover are named.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from judging import notebook_tests

from bncourse import initialization
from bncourse.checks import PARTS
from bncourse.testing import run_case

ASSIGNMENT = "01_initialization"

# --------------------------------------------------------------------------- reference code


def test_xavier_laws_have_the_glorot_variance_and_bound() -> None:
    rng = np.random.default_rng(0)
    fan_in, fan_out = 500, 300
    target = 2 / (fan_in + fan_out)
    uniform = initialization.xavier_uniform(fan_in, fan_out, rng)
    normal = initialization.xavier_normal(fan_in, fan_out, rng)
    assert uniform.shape == normal.shape == (fan_out, fan_in)
    assert np.abs(uniform).max() <= np.sqrt(6 / (fan_in + fan_out))
    # 150,000 draws: the sample variance's relative standard error is < 0.3 %; 2 % is > 6 of them.
    assert uniform.var() == pytest.approx(target, rel=0.02)
    assert normal.var() == pytest.approx(target, rel=0.02)
    # Kurtosis 1.8 (uniform) and 3 (normal), each estimated to within ~0.02.
    assert np.mean(uniform**4) / uniform.var() ** 2 == pytest.approx(1.8, abs=0.05)
    assert np.mean(normal**4) / normal.var() ** 2 == pytest.approx(3.0, abs=0.1)


def test_activation_stats_matches_a_torch_forward_pass() -> None:
    rng = np.random.default_rng(1)
    u = rng.standard_normal((40, 12))
    weights = [rng.standard_normal((20, 12)), rng.standard_normal((7, 20))]
    means, stds = initialization.activation_stats(u, weights, np.tanh)
    h = torch.tensor(u)
    for layer, w in enumerate(weights):
        h = torch.tanh(h @ torch.tensor(w).T)
        # Same float64 operations in another library: agreement to ~1e-15; 1e-12 is a margin.
        assert means[layer] == pytest.approx(h.mean().item(), abs=1e-12)
        assert stds[layer] == pytest.approx(h.std(correction=0).item(), rel=1e-12)


@pytest.mark.parametrize(
    ("stds", "label"),
    [
        ([1.0, 0.5, 0.099], "vanishing"),
        ([1.0, 0.5, 0.0], "vanishing"),
        ([1.0, 3.0, 10.1], "exploding"),
        ([1.0, np.inf, np.nan], "exploding"),
        ([1.0, 2.0, np.nan], "exploding"),
        ([1.0, 5.0, 9.9], "stable"),
        ([2.0, 0.21], "stable"),
    ],
)
def test_classify_signal_rule(stds: list[float], label: str) -> None:
    assert initialization.classify_signal(np.array(stds)) == label


def test_signal_profiles_of_real_passes_behave_as_the_chapter_says() -> None:
    # ReLU with Xavier loses a factor ~sqrt(2) per layer; He's gain keeps the scale; a linear
    # network with gain 3 overflows float32 within 100 layers.
    relu_xavier = initialization.signal_profile("relu", 1.0, 30, width=128, n=128)
    relu_he = initialization.signal_profile("relu", np.sqrt(2.0), 30, width=128, n=128)
    overflow = initialization.signal_profile("linear", 3.0, 100, width=128, n=128)
    assert relu_xavier[-1] / relu_xavier[0] < 1e-3
    assert 0.2 < relu_he[-1] / relu_he[0] < 5
    assert not np.all(np.isfinite(overflow))


# --------------------------------------------------------------------------- the solution and the corpus

(
    test_the_solution_passes_every_part,
    test_the_untouched_stub_fails_every_part,
    test_submission_loses_exactly_its_parts,
    test_judges_fail_cleanly_on_malformed_outputs,
) = notebook_tests(ASSIGNMENT)


# --------------------------------------------------------------------------- named mistakes

# Wrong versions that the corpus does not cover, each with the mistake id its judge must name.

def _uniform_with_variance(variance: Any) -> Any:
    def xavier_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
        bound = np.sqrt(3 * variance(fan_in, fan_out))
        return rng.uniform(-bound, bound, size=(fan_out, fan_in))
    return xavier_uniform


def _normal_with_std(std: Any) -> Any:
    def xavier_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0.0, std(fan_in, fan_out), size=(fan_out, fan_in))
    return xavier_normal


def _stats_with_input(u: np.ndarray, weights: list[np.ndarray], g: Any) -> tuple[np.ndarray, np.ndarray]:
    means, stds = initialization.activation_stats(u, weights, g)
    return np.concatenate([[u.mean()], means]), np.concatenate([[u.std()], stds])


def _stats_in_place(u: np.ndarray, weights: list[np.ndarray], g: Any) -> tuple[np.ndarray, np.ndarray]:
    u -= u.mean()  # "centre the input first", in place
    return initialization.activation_stats(u, weights, g)


NAMED = [
    ("01_initialization-xavier_uniform", _uniform_with_variance(lambda i, o: 1 / o), "fan_out_only"),
    ("01_initialization-xavier_uniform", _uniform_with_variance(lambda i, o: 1 / (i + o)), "missing_factor_2"),
    ("01_initialization-xavier_uniform", _uniform_with_variance(lambda i, o: (6 / (i + o)) ** 2 / 3),
     "bound_without_sqrt"),
    ("01_initialization-xavier_normal", _normal_with_std(lambda i, o: 2 / (i + o)), "variance_as_std"),
    ("01_initialization-xavier_uniform", _normal_with_std(lambda i, o: np.sqrt(2 / (i + o))),
     "normal_instead_of_uniform"),
    ("01_initialization-activation_stats", _stats_with_input, "includes_input"),
    ("01_initialization-activation_stats", _stats_in_place, "mutates_input"),
]


@pytest.mark.parametrize(("part_id", "wrong", "mistake"), NAMED, ids=[m for _, _, m in NAMED])
def test_judges_name_the_mistake(part_id: str, wrong: Any, mistake: str) -> None:
    part = PARTS[part_id]
    verdicts = [run_case(part, wrong, case) for case in part.cases()]
    failed = [v for v in verdicts if not v.passed]
    assert failed and failed[0].mistake == mistake, failed[:1]
