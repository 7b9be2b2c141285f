"""Every assignment's own solution gets full marks from bncourse-grade with its default options.

The test cells and the grader run the same checks in different places: a cell in the student's
kernel, the grader in a sandbox that only accepts numeric arrays from a part's ``run``. This
runs the real command on each assignment, with the solution handed in as a student's notebook
(worked examples included), so that a check which works in a cell but not in the sandbox is
found here and not by an instructor whose run stops at the canary.
"""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from hostile.tiny_course import require_bwrap
from submission_builder import REPO_ROOT, build_notebook, read

from bncourse.grading.cli import main

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow" for a quick loop

ASSIGNMENTS = sorted(path.name for path in (REPO_ROOT / "solutions").iterdir() if path.is_dir())


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_solution_gets_full_marks_with_the_default_options(assignment, tmp_path):
    require_bwrap()
    (notebook_path,) = (REPO_ROOT / "solutions" / assignment).glob("*.ipynb")
    course = tmp_path / "course"
    shutil.copytree(REPO_ROOT / "solutions" / assignment, course / "solutions" / assignment)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    exercise = read(REPO_ROOT / "exercises" / assignment / notebook_path.name)
    incoming = course / "incoming"
    incoming.mkdir()
    nbformat.write(build_notebook(exercise, read(notebook_path)), incoming / "solution_as_student.ipynb")

    # Exit status 0: the canary (the solution graded first, in the sandbox) got full marks too.
    assert main([assignment, str(incoming), "--course-dir", str(course), "--quiet"]) == 0
    journal = course / ".bncourse-grade" / assignment / "journal" / "solution_as_student"
    result = json.loads((journal / f"{notebook_path.stem}.json").read_text())
    assert result["score"] == result["max_score"] > 0, result["parts"]
