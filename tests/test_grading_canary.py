"""A grader that cannot silently zero a class, tested through the real command.

- The course folder holds its own copy of bncourse (a clone of the course) and is graded with
  this checkout's environment and the default worker pool: the main process, the workers
  and the sandbox all use this checkout's bncourse, and the class gets its real grades.
- The instructor's solution is graded first (the canary); when it is not full marks, the
  command stops before grading anyone: no grade written, exit status 3, the sandbox's own
  error shown.
- A failure that is not the student's (a judge that crashes) is an internal error: no score,
  no journal entry, no gradebook row, exit status 1.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hostile import tiny_course as tiny
from hostile.tiny_course import require_bwrap

import bncourse

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow" for a quick loop

GRADE = str(Path(sys.executable).with_name("bncourse-grade"))
PACKAGE = Path(bncourse.__file__).resolve().parent
WRONG = ("def standardize(x, eps=1e-5):\n"
         "    return (x - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + eps)\n")
# Limits with a wide margin: these tests are about who grades, not about speed (cell and case
# limits are 10x what the tiny notebook takes on a loaded 2-core machine).
LIMITS = ["--sandbox", "bwrap", "--cell-timeout", "30", "--case-timeout", "30", "--timeout", "120"]


def grade(course: Path, *extra: str) -> subprocess.CompletedProcess:
    """The real command, run from inside the course folder (as an instructor would)."""
    return subprocess.run([GRADE, tiny.ASSIGNMENT, "incoming", *LIMITS, *extra], cwd=course,
                          capture_output=True, text=True, timeout=600)


def make_class(course: Path, answers: dict[str, dict[str, str]]) -> None:
    for student, replace in answers.items():
        tiny.write_student(course / "incoming", student, tiny.student_notebook(course, replace))


def grades_csv(course: Path) -> dict[str, float]:
    with open(course / "grades.csv", newline="") as stream:
        return {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(stream)}


@pytest.fixture
def course(tmp_path: Path) -> Path:
    require_bwrap()
    course = tiny.make_course(tmp_path / "course")
    shutil.copy(tiny.CHECKS, course / "tinychecks.py")
    return course


@pytest.mark.parametrize("copy", ["clone", "broken_copy"])
def test_a_course_folder_with_its_own_bncourse_is_graded_by_the_graders_bncourse(course, copy):
    # A clone holds the package at the folder's top level, where a process started in the
    # folder finds it first; the broken copy fails any process that imports it.
    shutil.copytree(PACKAGE, course / "bncourse", ignore=shutil.ignore_patterns("__pycache__"))
    if copy == "broken_copy":
        (course / "bncourse" / "__init__.py").write_text(
            "raise ImportError('the course folder's own copy of bncourse was imported')\n")
    make_class(course, {"right": {}, "wrong": {"standardize_impl": WRONG}, "also_right": {}})
    done = grade(course, "--checks", "tinychecks.py")  # the default pool: one worker per core
    assert done.returncode == 0, done.stderr
    assert "the instructor's solution" in done.stderr and "gets 4/4" in done.stderr
    assert grades_csv(course) == {"right": 4.0, "wrong": 1.0, "also_right": 4.0}


def test_a_broken_sandbox_stops_the_run_before_any_grade_is_written(course):
    make_class(course, {"right": {}, "wrong": {"standardize_impl": WRONG}})
    # 64 MB of address space: the sandbox's interpreter cannot even load NumPy.
    done = grade(course, "--checks", "tinychecks.py", "--memory", "64M")
    assert done.returncode == 3, done.stderr
    assert "the instructor's solution solutions/00_tiny/tiny.ipynb gets 0/4" in done.stderr
    assert "failed before running any of the student's code" in done.stderr
    own_output = done.stderr.split("the sandbox's own output ends with:")[-1]
    assert "memory" in own_output.lower(), own_output  # e.g. "OpenBLAS error: Memory allocation ..."
    assert "no submission was graded and no grade was written" in done.stderr
    assert not (course / "grades.csv").exists()
    assert not list((course / ".bncourse-grade").glob("*/journal/*/*.json"))


def test_a_solution_that_fails_its_own_checks_stops_the_run(course):
    source = course / "solutions" / tiny.ASSIGNMENT / f"{tiny.NOTEBOOK}.ipynb"
    notebook = json.loads(source.read_text())
    for cell in notebook["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "standardize_impl":
            cell["source"] = WRONG
    source.write_text(json.dumps(notebook))
    make_class(course, {"right": {}})
    done = grade(course, "--checks", "tinychecks.py")
    assert done.returncode == 3, done.stderr
    assert "gets 1/4" in done.stderr and "00_tiny-standardize: standardize divides by m - 1" in done.stderr
    assert not (course / "grades.csv").exists()


CRASHING_JUDGE = '''
import dataclasses

_judge_scale_original = PARTS["00_tiny-scale_shift"].judge


def _judge_scale_or_crash(case, outputs):
    if np.all(outputs.get("out") == 0):  # an input the checks did not expect
        raise RuntimeError("the judge itself is broken")
    return _judge_scale_original(case, outputs)


PARTS["00_tiny-scale_shift"] = dataclasses.replace(PARTS["00_tiny-scale_shift"],
                                                    judge=_judge_scale_or_crash)
'''


def test_a_crashing_judge_is_an_internal_error_never_a_score(course):
    checks = course / "tinychecks.py"
    checks.write_text(checks.read_text() + CRASHING_JUDGE)
    zeros = "def scale_shift(x_hat, gamma, beta):\n    return 0 * x_hat\n"
    make_class(course, {"right": {}, "crashes_the_judge": {"scale_shift_impl": zeros}})
    done = grade(course, "--checks", "tinychecks.py")
    assert done.returncode == 1, done.stderr
    assert "internal error grading crashes_the_judge/tiny" in done.stderr
    assert grades_csv(course) == {"right": 4.0}  # no row, not a 0
    journal = course / ".bncourse-grade" / tiny.ASSIGNMENT / "journal"
    assert not (journal / "crashes_the_judge").exists()
    problems = (course / "reports" / tiny.ASSIGNMENT / "problems.csv").read_text()
    assert "crashes_the_judge/tiny" in problems and "internal error" in problems
