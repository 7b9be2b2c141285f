"""bncourse-grade on a real assignment of the course, with the shared submission corpus.

Every corpus submission of 03_bn_transform (tests/submissions/03_bn_transform/*.py) is built
into a student notebook (tests/submission_builder.py), the class is graded with the real
command and the real checks, and each submission must lose exactly the parts it declares,
with feedback naming its mistake.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from hostile.tiny_course import require_bwrap, shared_once
from submission_builder import REPO_ROOT, build_notebook, load_submissions, read

from bncourse.checks.core import SIDE_SHARE
from bncourse.grading.cli import main

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow" for a quick loop

ASSIGNMENT, NOTEBOOK = "03_bn_transform", "bn_transform"
SUBMISSIONS = load_submissions(ASSIGNMENT)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    require_bwrap()
    return shared_once(tmp_path_factory, "grading_real", grade_class)


def grade_class(course: Path) -> None:
    shutil.copytree(REPO_ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    exercise = read(REPO_ROOT / "exercises" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    solution = read(REPO_ROOT / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    incoming = course / "incoming"
    incoming.mkdir()
    nbformat.write(build_notebook(exercise, solution, demos=False), incoming / "reference_solution.ipynb")
    # with the worked examples too: they load the digits through scikit-learn (and joblib)
    nbformat.write(build_notebook(exercise, solution), incoming / "with_demos.ipynb")
    for submission in SUBMISSIONS:
        notebook = build_notebook(exercise, solution, submission.overrides, demos=False)
        nbformat.write(notebook, incoming / f"{submission.name}.ipynb")
    # a cell importing torch may take seconds on a loaded machine: 30 s per cell
    # A cell of the real notebook imports scikit-learn's digits, 1-2 s idle and ten times that
    # on a loaded 2-core machine: 120 s per cell and 600 s per notebook leave a wide margin.
    options = ["--sandbox", "bwrap", "--cell-timeout", "120", "--timeout", "600", "--memory", "2G"]
    assert main([ASSIGNMENT, str(incoming), "--course-dir", str(course), "--workers", "2",
                 "--quiet", *options]) == 0


def result_of(course: Path, student: str) -> dict:
    path = course / ".bncourse-grade" / ASSIGNMENT / "journal" / student / f"{NOTEBOOK}.json"
    return json.loads(path.read_text())


def test_reference_solution_gets_full_marks(graded):
    result = result_of(graded, "reference_solution")
    assert result["score"] == result["max_score"] > 0, result["parts"]
    assert result["flags"] == []


def test_worked_examples_run_cleanly_in_the_sandbox(graded):
    # The sandbox must look like an ordinary machine to ordinary code: no warnings from
    # libraries that find /dev/shm or their temp folder unusable, no grader paths leaking out.
    result = result_of(graded, "with_demos")
    assert result["score"] == result["max_score"] > 0, result["parts"]
    notebook = nbformat.read(graded / "autograded" / "with_demos" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", 4)
    printed = [o["text"] for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if o.get("output_type") == "stream"]
    assert any("per-channel" in text for text in printed), "the worked examples printed nothing"
    complaints = [text for text in printed if "Warning" in text or "Error" in text or ".venv" in text]
    assert not complaints, complaints


@pytest.mark.parametrize("submission", SUBMISSIONS, ids=[s.name for s in SUBMISSIONS])
def test_submission_loses_exactly_its_parts(graded, submission):
    result = result_of(graded, submission.name)
    lost = sorted(p["id"] for p in result["parts"] if not p["passed"])
    assert lost == sorted(submission.expect_lost), result["parts"]
    for part in result["parts"]:
        if not part["passed"]:
            assert submission.expect_feedback.lower() in part["message"].lower()
        # the score nbgrader records for the same notebook (tests/test_exercises.py)
        kept = (1 - SIDE_SHARE if part["id"] in submission.expect_partial
                else float(part["passed"]))
        assert part["score"] == part["points"] * kept, part
    page = graded / "feedback" / submission.name / ASSIGNMENT / f"{NOTEBOOK}.html"
    assert "BEGIN HIDDEN TESTS" not in page.read_text()
