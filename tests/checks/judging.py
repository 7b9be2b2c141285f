"""Helpers shared by the tests of ``bncourse.checks`` (one test file per module there).

- the variant-catalogue tests: every known variant, computed on the cases of its part, must
  be named by the judge on each case that can tell it from the right answer; the right
  answer must pass every case; an unrelated error must get the generic message with the
  largest difference and its index;
- the solution-notebook tests: the instructor's solution run in this process, with a
  corpus submission's definitions on top, and the parts it loses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from submission_builder import load_submissions, read, solution_cells

from bncourse.checks import parts_for
from bncourse.checks.core import Part, Variant, Verdict
from bncourse.checks.shortcuts import find_shortcuts
from bncourse.testing import run_case

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = {
    "01_initialization": "initialization.ipynb",
    "02_whitening": "whitening.ipynb",
    "03_bn_transform": "bn_transform.ipynb",
    "04_backprop": "backprop.ipynb",
    "05_inference": "inference.ipynb",
    "06_in_practice": "in_practice.ipynb",
    "07_distributed": "distributed.ipynb",
}

# --------------------------------------------------------------------------- variant catalogues

# A family: (parts, variants, expected outputs of a case, judge, dtype key of the outputs).
Family = tuple[list[Part], tuple[Variant, ...], Any, Any, str | None]


def all_cases(module_parts: list[Part]) -> list[dict]:
    seen, cases = set(), []
    for part in module_parts:
        if id(part.cases) in seen:
            continue
        seen.add(id(part.cases))
        cases.extend(part.cases())
    return cases


def cast(outputs: dict, case: dict, dtype_key: str | None) -> dict:
    if dtype_key is None:
        return dict(outputs)
    dtype = np.asarray(case[dtype_key]).dtype
    return {k: np.asarray(v).astype(dtype) for k, v in outputs.items()}


def variant_params(families: dict[str, Family]) -> list[tuple[str, int, str]]:
    """(family, index, mistake id) of every computable variant, for parametrize."""
    return [(family, index, variant.mistake)
            for family, (_, variants, _, _, _) in families.items()
            for index, variant in enumerate(variants) if variant.compute is not None]


def assert_right_answer_passes(family: Family) -> None:
    parts, _, expected, judge, dtype_key = family
    for case in all_cases(parts):
        verdict = judge(case, cast(expected(case), case, dtype_key))
        assert verdict == Verdict(True), (case["label"], verdict)


def assert_variant_is_named(family: Family, index: int) -> None:
    parts, variants, expected, judge, dtype_key = family
    variant = variants[index]
    diagnosed = 0
    for case in all_cases(parts):
        if not variant.applies(case):
            continue
        with np.errstate(all="ignore"):
            outputs = {**expected(case), **variant.compute(case)}
        verdict = judge(case, cast(outputs, case, dtype_key))
        # A case may miss the variant (passed) or see a difference too small to name safely
        # (the generic message, mistake None); it must never name another mistake.
        assert verdict.mistake in (variant.mistake, None), (case["label"], verdict)
        diagnosed += verdict.mistake == variant.mistake
    assert diagnosed > 0, f"no case exposes {variant.mistake}"


def assert_unrelated_error_gets_largest_difference(family: Family) -> None:
    parts, _, expected, judge, dtype_key = family
    case = all_cases(parts)[0]
    outputs = cast(expected(case), case, dtype_key)
    name = sorted(outputs)[0]
    wrong = np.array(outputs[name], dtype=np.float64)
    index = tuple(s - 1 for s in wrong.shape)
    wrong[index] += 0.75
    outputs[name] = wrong.astype(outputs[name].dtype)
    verdict = judge(case, outputs)
    assert not verdict.passed and verdict.mistake is None, verdict
    assert "largest difference is 0.75" in verdict.message, verdict.message
    assert f"at index {index if len(index) > 1 else '(' + str(index[0]) + ',)'}" in verdict.message


# --------------------------------------------------------------------------- solution notebooks


def solution_namespace(assignment: str, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """The solution notebook's setup and solution cells executed, then the overrides on top."""
    notebook = read(REPO_ROOT / "solutions" / assignment / NOTEBOOKS[assignment])
    namespace: dict[str, Any] = {"__name__": "__student__"}
    for cell in notebook.cells:
        grading = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and grading.get("grade_id") == "setup":
            exec(cell.source, namespace)
    for source in solution_cells(notebook).values():
        exec(source, namespace)
    for source in (overrides or {}).values():
        exec(source, namespace)
    return namespace


def solution_sources(assignment: str) -> dict[str, str]:
    return solution_cells(read(REPO_ROOT / "solutions" / assignment / NOTEBOOKS[assignment]))


def lost_parts(assignment: str, namespace: dict[str, Any], sources: dict[str, str]) -> dict[str, str]:
    """part id -> failure message, for every part of the assignment that fails."""
    lost = {}
    for part in parts_for(assignment):
        reason = find_shortcuts(sources.get(part.target, ""))
        if reason:
            lost[part.id] = reason
            continue
        for case in part.cases():
            verdict = run_case(part, namespace[part.target], case)
            if not verdict.passed:
                lost[part.id] = verdict.message
                break
    return lost


def assert_stub_fails_every_part(assignment: str) -> None:
    def stub(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError()

    namespace = solution_namespace(assignment)
    namespace.update({part.target: stub for part in parts_for(assignment)})
    lost = lost_parts(assignment, namespace, {})
    assert set(lost) == {part.id for part in parts_for(assignment)}
    # The stub's NotImplementedError is named as raised; a backward part whose forward is
    # missing says so, as the checks' own finding (nothing "raised").
    assert all(" raised NotImplementedError" in message or "define it in the notebook" in message
               for message in lost.values()), lost


def assert_submission_loses_exactly_its_parts(submission: Any) -> None:
    namespace = solution_namespace(submission.assignment, submission.overrides)
    with np.errstate(all="ignore"):
        lost = lost_parts(submission.assignment, namespace, submission.overrides)
    assert sorted(lost) == sorted(submission.expect_lost), lost
    for part_id, message in lost.items():
        assert submission.expect_feedback.lower() in message.lower(), (part_id, message)


def assert_judges_fail_cleanly(part: Part, outputs: Any, output_keys: Any) -> None:
    """``part.judge`` on malformed outputs: a failing verdict with a message, no crash."""
    case = part.cases()[0]
    if outputs == "strings":
        # Every key a correct run would return, each holding a string array.
        outputs = {key: np.asarray("oops") for key in output_keys(part, case)}
    verdict = part.judge(case, outputs)
    assert not verdict.passed and verdict.message


def run_output_keys(part: Part, case: dict[str, Any]) -> list[str]:
    """The keys the solution's ``run`` returns on ``case``."""
    namespace = solution_namespace(part.assignment)
    return list(part.run(namespace[part.target], case))


MALFORMED = [{}, {"junk": np.zeros(3)}, "strings"]
MALFORMED_IDS = ["nothing", "unknown key", "strings everywhere"]


def correct_forward(x, gamma, beta, eps=1e-5):
    """A right batchnorm_forward (two-pass variance) with no cache."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    x_hat = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), None


# --------------------------------------------------------------------------- the tests each file gets


def family_tests(families: dict[str, Family]) -> tuple[Any, ...]:
    """The catalogue tests of ``families``, for a test module to bind at top level."""

    @pytest.mark.parametrize("family", list(families))
    def test_right_answer_passes_every_case(family: str) -> None:
        assert_right_answer_passes(families[family])

    @pytest.mark.parametrize(("family", "index", "mistake"), variant_params(families))
    def test_each_known_variant_is_named(family: str, index: int, mistake: str) -> None:
        assert_variant_is_named(families[family], index)

    @pytest.mark.parametrize("family", list(families))
    def test_unrelated_error_gets_largest_difference_and_index(family: str) -> None:
        assert_unrelated_error_gets_largest_difference(families[family])

    return (test_right_answer_passes_every_case, test_each_known_variant_is_named,
            test_unrelated_error_gets_largest_difference_and_index)


def notebook_tests(assignment: str, output_keys: Any = run_output_keys) -> tuple[Any, ...]:
    """The solution, stub, corpus and malformed-output tests of ``assignment``."""
    submissions = load_submissions(assignment)

    def test_the_solution_passes_every_part() -> None:
        namespace = solution_namespace(assignment)
        assert lost_parts(assignment, namespace, solution_sources(assignment)) == {}

    def test_the_untouched_stub_fails_every_part() -> None:
        assert_stub_fails_every_part(assignment)

    @pytest.mark.parametrize("submission", submissions, ids=[s.name for s in submissions])
    def test_submission_loses_exactly_its_parts(submission: Any) -> None:
        assert_submission_loses_exactly_its_parts(submission)

    @pytest.mark.parametrize("part", parts_for(assignment), ids=lambda p: p.id)
    @pytest.mark.parametrize("outputs", MALFORMED, ids=MALFORMED_IDS)
    def test_judges_fail_cleanly_on_malformed_outputs(part: Any, outputs: Any) -> None:
        assert_judges_fail_cleanly(part, outputs, output_keys)

    return (test_the_solution_passes_every_part, test_the_untouched_stub_fails_every_part,
            test_submission_loses_exactly_its_parts, test_judges_fail_cleanly_on_malformed_outputs)
