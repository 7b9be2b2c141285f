"""Grades out of nbgrader's gradebook into a learning management system.

``bncourse-grade ASSIGNMENT --steps export --export canvas,moodle,gradescope,csv`` (or
``--export`` added to a grading run) writes, into ``exports/<assignment>/``:

- ``canvas.csv``: a Canvas gradebook import file. Canvas matches a row to a student by one of
  its identity columns (``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``) and reads one
  column per assignment; a ``Points Possible`` row under the header gives the maximum
  ("How do I import grades in the Gradebook?", Canvas Instructor Guide);
- ``moodle.csv``: a Moodle grade import file (Grades > Import > CSV file): one header row, one
  row per student, an identity column the teacher maps to a user field at import ("Map from
  ID number to useridnumber", or email address to useremail) and one column per grade item
  (MoodleDocs, "Grade import");
- ``gradescope/<student>/results.json``: Gradescope's autograder results format (Gradescope
  autograder documentation, "Autograder Specifications", Output format): the total ``score``,
  and per test ``name``, ``number``, ``score``, ``max_score``, ``status``, ``visibility`` and
  ``output``. Hidden tests are ``after_published``: students see them once grades are
  published, never while they can still resubmit;
- ``grades_by_test.csv``: one row per student, the total and one column per test.

Scores come from nbgrader's gradebook (what the formgrader shows, late penalty included);
only the diagnosis messages and which tests are hidden come from the grading journal. The
exact documentation each format follows is listed in the instructor guide.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

FORMATS = ("canvas", "moodle", "gradescope", "csv")


@dataclass
class TestGrade:
    """One graded cell of one student's submission."""

    name: str
    score: float
    max_score: float
    hidden: bool = False
    passed: bool | None = None  # None: not autograded (a written answer)
    message: str = ""


@dataclass
class StudentGrade:
    """One student's grade for the assignment, as nbgrader's gradebook holds it."""

    student: str
    first_name: str
    last_name: str
    email: str
    submitted: bool
    raw_score: float
    penalty: float
    max_score: float
    tests: list[TestGrade] = field(default_factory=list)
    problem: str = ""  # why (part of) the submission could not be graded

    @property
    def score(self) -> float:
        """The score after the late penalty, as nbgrader's own CSV export computes it."""
        return max(0.0, self.raw_score - self.penalty)


def parse_formats(text: str) -> list[str]:
    """'canvas,gradescope' -> ['canvas', 'gradescope'], naming any unknown format."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"--export: expected formats among {','.join(FORMATS)}, got {text!r}")
    return formats


def read_grades(gb: Gradebook, assignment: str, results: list[dict]) -> list[StudentGrade]:
    """Every student of the gradebook with their grade for ``assignment``; ``results`` (the
    journal) adds each test's diagnosis and whether it is hidden."""
    parts = {(r["student"], p["id"]): p for r in results for p in r["parts"]}
    # tests in the notebook's order (the journal lists parts as the notebook does)
    order = {p["id"]: i for r in results for i, p in enumerate(r["parts"])}
    problems = {r["student"]: r["error"] for r in results if r["status"] == "error"}
    maximum = gb.find_assignment(assignment).max_score
    grades = []
    for student in sorted(gb.students, key=lambda s: s.id):
        row = StudentGrade(student.id, student.first_name or "", student.last_name or "",
                           student.email or "", False, 0.0, 0.0, maximum,
                           problem=problems.get(student.id, ""))
        try:
            submission = gb.find_submission(assignment, student.id)
        except MissingEntry:
            grades.append(row)
            continue
        row.submitted = True
        row.raw_score = float(submission.score)
        row.penalty = float(submission.late_submission_penalty or 0.0)
        for notebook in sorted(submission.notebooks, key=lambda n: n.name):
            for grade in sorted(notebook.grades,
                                key=lambda g: (order.get(g.name, len(order)), g.name)):
                part = parts.get((student.id, grade.name))
                row.tests.append(TestGrade(
                    grade.name, float(grade.score or 0.0), float(grade.max_score),
                    hidden=bool(part and part["hidden"]),
                    passed=None if part is None else bool(part["passed"]),
                    message="" if part is None else part["message"]))
        grades.append(row)
    return grades


def _number(value: float) -> str:
    return f"{value:g}"


def write_canvas(grades: list[StudentGrade], path: Path, column: str) -> Path:
    """Canvas gradebook import CSV; the nbgrader student id goes in ``SIS Login ID``."""
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column]
    maximum = max((g.max_score for g in grades), default=0.0)
    rows = [header, ["Points Possible", "", "", "", "", _number(maximum)]]
    for g in grades:
        name = f"{g.last_name}, {g.first_name}" if g.last_name or g.first_name else g.student
        rows.append([name, "", "", g.student, "", _number(g.score) if g.submitted else ""])
    return _write_csv(path, rows)


def write_moodle(grades: list[StudentGrade], path: Path, column: str) -> Path:
    """Moodle grade import CSV: map 'ID number' to useridnumber (or 'Email address' to
    useremail) and the grade column to the grade item when importing."""
    rows = [["First name", "Last name", "ID number", "Email address", column]]
    for g in grades:
        rows.append([g.first_name, g.last_name, g.student, g.email,
                     _number(g.score) if g.submitted else ""])
    return _write_csv(path, rows)


def write_by_test(grades: list[StudentGrade], path: Path) -> Path:
    """One row per student: total, penalty and each test's score."""
    names = list(dict.fromkeys(t.name for g in grades for t in g.tests))
    rows = [["student_id", "raw_score", "late_submission_penalty", "score", "max_score",
             *names]]
    for g in grades:
        scores = {t.name: _number(t.score) for t in g.tests}
        rows.append([g.student, _number(g.raw_score), _number(g.penalty), _number(g.score),
                     _number(g.max_score), *(scores.get(n, "") for n in names)])
    return _write_csv(path, rows)


def gradescope_results(grade: StudentGrade) -> dict:
    """One student's results.json (Gradescope autograder specification)."""
    tests = []
    for number, test in enumerate(grade.tests, start=1):
        entry = {"name": test.name, "number": str(number), "score": test.score,
                 "max_score": test.max_score,
                 "visibility": "after_published" if test.hidden else "visible"}
        if test.passed is None:  # a written answer: no pass/fail, the instructor's score
            entry["output"] = "graded by the instructor (a written answer)"
        else:
            entry["status"] = "passed" if test.passed else "failed"
            entry["output"] = "passed" if test.passed else test.message
        tests.append(entry)
    lines = [f"Autograded score: {_number(grade.raw_score)} / {_number(grade.max_score)}"]
    if grade.penalty:
        lines.append(f"Late penalty: -{_number(grade.penalty)}")
    if grade.problem:
        lines.append(f"Could not be graded: {grade.problem}")
    return {"score": grade.score, "output": "\n".join(lines), "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests,
            "extra_data": {"late_submission_penalty": grade.penalty}}


def write_gradescope(grades: list[StudentGrade], folder: Path) -> Path:
    for grade in grades:
        if grade.submitted:
            target = folder / grade.student / "results.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(gradescope_results(grade), indent=1))
    return folder


def _write_csv(path: Path, rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows(rows)
    return path


def export(formats: list[str], gb: Gradebook, assignment: str, results: list[dict],
           out: Path, column: str | None = None) -> list[Path]:
    """Write each requested format into ``out``; returns what was written. ``column`` is the
    LMS's name for the assignment (default: the nbgrader assignment name)."""
    grades = read_grades(gb, assignment, results)
    column = column or assignment
    writers = {
        "canvas": lambda: write_canvas(grades, out / "canvas.csv", column),
        "moodle": lambda: write_moodle(grades, out / "moodle.csv", column),
        "gradescope": lambda: write_gradescope(grades, out / "gradescope"),
        "csv": lambda: write_by_test(grades, out / "grades_by_test.csv"),
    }
    return [writers[name]() for name in formats]
