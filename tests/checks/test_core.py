"""``bncourse.checks.core`` and the registry: comparing, judging malformed outputs, parts."""

from __future__ import annotations

import numpy as np
import pytest
from judging import NOTEBOOKS
from submission_builder import load_submissions

from bncourse.checks import PARTS, parts_for
from bncourse.checks.core import Part, Verdict, compare


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


def test_judges_fail_on_missing_or_garbage_outputs_instead_of_crashing():
    for part in PARTS.values():
        case = part.cases()[0]
        for outputs in ({}, {"out": np.array(["text"]), "dx": np.zeros(1)}):
            verdict = part.judge(case, outputs)
            assert isinstance(verdict, Verdict) and not verdict.passed, (part.id, verdict)


def test_part_ids_are_nbgrader_grade_ids():
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


def test_the_corpus_covers_every_diagnosis_of_the_assignments_judged_here():
    submissions = [s for assignment in sorted(NOTEBOOKS) for s in load_submissions(assignment)]
    named = {s.expect_feedback for s in submissions}
    assert len(submissions) >= 25 and "" in named  # wrong ones and correct alternatives
