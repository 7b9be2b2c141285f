"""The hostile/broken corpus graded in one run of the real command, one assertion set each.

The whole class is graded once (module fixture, two workers, low limits so that the
infinite loops and bombs cost seconds), then every test reads its student's result from the
journal, the gradebook, grades.csv, the feedback and the report.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hostile import tiny_course as tiny
from hostile.corpus import CORPUS
from hostile.tiny_course import LOW_LIMITS, require_bwrap
from nbgrader.api import Gradebook

from bncourse.grading.cli import main

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow" for a quick loop

HUGE_BYTES = 200 * 2**20


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    require_bwrap()
    return tiny.shared_once(tmp_path_factory, "grading_hostile", grade_corpus)


def grade_corpus(folder: Path) -> None:
    course = tiny.make_course(folder)
    submissions = course / "incoming"
    for case in CORPUS:
        tiny.write_student(submissions, case.name, case.build(course))
    huge = submissions / "huge_notebook.ipynb"
    with open(huge, "wb") as stream:  # sparse: 200 MB on paper, nothing on disk
        stream.write(b'{"cells": []')
        stream.truncate(HUGE_BYTES)
    (submissions / "notes.txt").write_text("not a notebook")
    code = main([tiny.ASSIGNMENT, str(submissions), "--course-dir", str(course),
                 "--checks", tiny.CHECKS, "--workers", "2", "--quiet", *LOW_LIMITS])
    assert code == 0


def result_of(course: Path, student: str) -> dict:
    path = course / ".bncourse-grade" / tiny.ASSIGNMENT / "journal" / student / "tiny.json"
    return json.loads(path.read_text())


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def reasons(result: dict) -> str:
    texts = [result.get("error") or ""] + result["problems"] + result["notes"]
    texts += [p["message"] for p in result["parts"]]
    texts += [c.get("error") or "" for c in result["cells"]]
    return "\n".join(texts)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_hostile_submission_outcome(graded, case):
    result = result_of(graded, case.name)
    assert result["score"] == case.score, (result["parts"], result["problems"])
    if case.reason:
        assert case.reason in reasons(result)
    if case.flag:
        for expected in (case.flag,) if isinstance(case.flag, str) else case.flag:
            assert any(expected in flag for flag in result["flags"]), result["flags"]
    elif case.name in ("correct", "unbiased_variance", "prints_fake_pass"):
        assert result["flags"] == []
    if case.mistake:
        assert case.mistake in [p["mistake"] for p in result["parts"]]


def test_gradebook_and_grades_csv_agree_with_results(graded):
    rows = {r["student_id"]: r for r in read_csv(graded / "grades.csv")}
    with Gradebook("sqlite:///" + str(graded / "gradebook.db")) as gb:
        for case in CORPUS:
            submission = gb.find_submission(tiny.ASSIGNMENT, case.name)
            # max 5: the 4 autograded points plus the manually graded written answer
            assert submission.max_score == 5
            assert submission.score == case.score
            assert float(rows[case.name]["raw_score"]) == case.score
            # only the written answer is left to the instructor, as nbgrader autograde leaves it
            assert [g.name for g in submission.notebooks[0].grades
                    if g.needs_manual_grade] == ["explain_eps"]
        flagged = {s.student.id for s in gb.assignment_submissions(tiny.ASSIGNMENT)
                   if any(n.flagged for n in s.notebooks)}
    expected = {c.name for c in CORPUS if c.flag}
    assert expected <= flagged


def test_snooping_found_nothing_and_wrote_nothing(graded):
    result = result_of(graded, "snoops_course_and_network")
    output = "".join(c["output"] for c in result["cells"])
    assert "READ" not in output
    assert output.count("blocked") == 4
    assert not (graded / "pwned.txt").exists()


def test_unusable_files_are_reported_not_guessed(graded):
    report = (graded / "reports" / tiny.ASSIGNMENT / "problems.csv").read_text()
    assert "huge_notebook.ipynb" in report and "limit" in report
    assert "notes.txt" in report
    assert not (graded / "submitted" / "huge_notebook").exists()


def test_feedback_never_shows_hidden_tests(graded):
    pages = list((graded / "feedback").rglob("*.html"))
    assert len(pages) == len(CORPUS)
    for page in pages:
        assert tiny.HIDDEN_SECRET not in page.read_text()
    autograded = graded / "autograded" / "correct" / tiny.ASSIGNMENT / "tiny.ipynb"
    assert tiny.HIDDEN_SECRET in autograded.read_text()  # the instructor's copy keeps them
    feedback = (graded / "feedback" / "unbiased_variance" / tiny.ASSIGNMENT / "tiny.html")
    assert "biased variance" in feedback.read_text()


def test_report_tables_and_figures(graded):
    out = graded / "reports" / tiny.ASSIGNMENT
    page = (out / "report.html").read_text()
    for figure in ("scores.png", "tests.png", "mistakes.png"):
        assert (out / figure).stat().st_size > 1000
        assert figure in page
    mistakes = read_csv(out / "mistakes.csv")
    counted = {r["mistake"]: (int(r["students"]), r["tests"]) for r in mistakes}
    # unbiased_variance and duplicated_solution_cell (its wrong twin runs last) made it
    assert counted["unbiased_variance"] == (2, "00_tiny-standardize 00_tiny-standardize_hidden")
    assert counted["shortcut"][0] == 2  # calls_reference, sklearn_shortcut
    flagged = read_csv(out / "flagged.csv")
    assert {r["student"] for r in flagged} >= {c.name for c in CORPUS if c.flag}
    tests = {r["test"]: r for r in read_csv(out / "tests.csv")}
    assert set(tests) == {"00_tiny-standardize", "00_tiny-standardize_hidden",
                          "00_tiny-scale_shift"}
