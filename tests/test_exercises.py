"""The nbgrader round trip of every assignment in solutions/, with real nbgrader.

Per assignment, in a temporary course directory (a copy of nbgrader_config.py and the
assignment's solutions/ folder):

- ``python -m bncourse.release``'s generator rebuilds exercises/ and the result equals the
  committed files; no solution code and no hidden test leaks into them; every graded cell
  matches its ``Part`` (id, points, hidden);
- one ``nbgrader autograde`` grades, together: the instructor's solution (full marks), the
  untouched release (0, without crashing) and every corpus submission of
  ``tests/submissions/<assignment>/`` (exactly the parts in EXPECT_LOST lost, each with a
  message containing EXPECT_FEEDBACK);
- ``nbgrader generate_feedback`` shows a lost hidden part's message but not the hidden test.

Assignments are found from the folders, so new ones are covered as soon as they exist. Each
test builds its own course directory (xdist-safe); the generated course is cached per worker.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from submission_builder import build_notebook, load_submissions, read

from bncourse import release
from bncourse.checks import PARTS
from bncourse.checks.core import SIDE_SHARE

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow" for a quick loop

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = release.assignments(REPO_ROOT)
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


def _notebook_name(assignment: str) -> str:
    notebooks = sorted((REPO_ROOT / "solutions" / assignment).glob("*.ipynb"))
    assert len(notebooks) == 1, f"{assignment}: expected one notebook, found {notebooks}"
    return notebooks[0].name


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _grading(cell: Any) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {})


def _regions(source: str, markers: tuple[str, str]) -> list[str]:
    """Lines strictly inside the marked regions of one cell."""
    inside, lines = False, []
    for line in source.splitlines():
        if markers[0] in line:
            inside = True
        elif markers[1] in line:
            inside = False
        elif inside:
            lines.append(line.strip())
    return lines


def _outside_regions(source: str) -> list[str]:
    """Lines of one cell outside every solution and hidden-test region."""
    inside, lines = False, []
    for line in source.splitlines():
        if any(line.strip().startswith(m) for m in (SOLUTION_MARKERS[0], HIDDEN_MARKERS[0])):
            inside = True
        elif any(line.strip().startswith(m) for m in (SOLUTION_MARKERS[1], HIDDEN_MARKERS[1])):
            inside = False
        elif not inside:
            lines.append(line.strip())
    return lines


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args, f"--db={_db(course)}", "--log-level=WARN"],
        cwd=course, env=release.nbgrader_environment(), capture_output=True, text=True,
        check=False, timeout=900,
    )


def _db(course: Path) -> str:
    return f"sqlite:///{course / 'gradebook.db'}"


_COURSES: dict[str, Path] = {}


@pytest.fixture(scope="session")
def course_for(tmp_path_factory):
    """assignment -> a course directory where it has been generated (once per worker)."""

    def make(assignment: str) -> Path:
        if assignment not in _COURSES:
            course = tmp_path_factory.mktemp(f"course-{assignment}")
            shutil.copy(REPO_ROOT / "nbgrader_config.py", course)
            shutil.copytree(REPO_ROOT / "solutions" / assignment,
                            course / "solutions" / assignment)
            release.generate(course, [assignment], db_url=_db(course))
            _COURSES[assignment] = course
        return _COURSES[assignment]

    return make


# --------------------------------------------------------------------------- the release


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_matches_committed_exercises(assignment, course_for):
    name = _notebook_name(assignment)
    generated = json.loads((course_for(assignment) / "exercises" / assignment / name).read_text())
    committed_path = REPO_ROOT / "exercises" / assignment / name
    assert committed_path.exists(), f"{committed_path} is missing: run `make exercises`"
    committed = json.loads(committed_path.read_text())
    assert generated["metadata"] == committed["metadata"]
    assert len(generated["cells"]) == len(committed["cells"]), "run `make exercises`"
    for index, (new, old) in enumerate(zip(generated["cells"], committed["cells"], strict=True)):
        for key in ("cell_type", "metadata", "source"):
            assert new.get(key) == old.get(key), (
                f"{committed_path} cell {index}: {key} differs from a fresh release; "
                f"run `make exercises`"
            )
        if new["cell_type"] == "code":
            assert old["outputs"] == [] and old["execution_count"] is None


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_solution_or_hidden_test_in_exercises(assignment):
    name = _notebook_name(assignment)
    solution = read(REPO_ROOT / "solutions" / assignment / name)
    exercise_path = REPO_ROOT / "exercises" / assignment / name
    exercise_text = exercise_path.read_text()
    for marker in SOLUTION_MARKERS + HIDDEN_MARKERS:
        assert marker not in exercise_text, f"{exercise_path} contains {marker!r}"
    exercise_lines = {
        line.strip() for cell in read(exercise_path).cells for line in _source(cell).splitlines()
    }
    in_regions = [
        line
        for cell in solution.cells
        for line in _regions(_source(cell), SOLUTION_MARKERS) + _regions(_source(cell), HIDDEN_MARKERS)
    ]
    # Lines the instructor's notebook also shows outside the regions (a demo's
    # `with torch.no_grad():`) are public; short lines (`else:`) say nothing.
    public = {line for cell in solution.cells for line in _outside_regions(_source(cell))}
    secret_lines = [
        line for line in in_regions
        if len(line) >= 12 and not line.startswith("#") and line not in public
    ]
    assert secret_lines, f"{assignment}: no solution regions found"
    leaked = [line for line in secret_lines if line in exercise_lines]
    assert not leaked, f"{exercise_path} contains solution lines: {leaked[:3]}"


def test_every_exercise_folder_has_a_solution():
    released = sorted(p.name for p in (REPO_ROOT / "exercises").iterdir() if p.is_dir())
    assert released == ASSIGNMENTS, "exercises/ and solutions/ differ: run `make exercises`"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_graded_cells_match_parts(assignment):
    """Every graded cell is a Part with the same points and hidden flag, and vice versa."""
    notebook = read(REPO_ROOT / "solutions" / assignment / _notebook_name(assignment))
    seen = set()
    for cell in notebook.cells:
        grading = _grading(cell)
        if not grading.get("grade") or grading.get("solution"):
            continue
        grade_id = grading["grade_id"]
        assert grade_id in PARTS, f"{assignment}: graded cell {grade_id!r} has no Part"
        part = PARTS[grade_id]
        source = _source(cell)
        assert f'check("{grade_id}"' in source, f"{grade_id}: the cell does not call check on it"
        assert grading["points"] == part.points, f"{grade_id}: cell points != Part.points"
        assert (HIDDEN_MARKERS[0] in source) == part.hidden, f"{grade_id}: hidden flag differs"
        seen.add(grade_id)
    expected = {part.id for part in PARTS.values() if part.assignment == assignment}
    assert seen == expected, f"{assignment}: parts without a graded cell: {expected - seen}"


# --------------------------------------------------------------------------- autograding


def _grades(course: Path, assignment: str, student: str) -> dict[str, tuple[float, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(_db(course)) as gradebook:
        submission = gradebook.find_submission(assignment, student)
        return {
            grade.name: (grade.score, grade.max_score)
            for notebook in submission.notebooks
            for grade in notebook.grades
        }


def _messages(course: Path, assignment: str, student: str, name: str) -> dict[str, str]:
    """grade_id -> text of the errors its test cell raised in the autograded notebook, or of
    the "partly passed: ..." line it printed (a side-property slip, partial credit)."""
    notebook = read(course / "autograded" / student / assignment / name)
    messages = {}
    for cell in notebook.cells:
        grading = _grading(cell)
        if grading.get("grade") and not grading.get("solution"):
            outputs = cell.get("outputs", [])
            errors = [f"{o.get('ename', '')}: {o.get('evalue', '')}" for o in outputs
                      if o.get("output_type") == "error"]
            partly = [line for o in outputs if o.get("output_type") == "stream"
                      for line in o.get("text", "").splitlines()
                      if line.startswith("partly passed: ")]
            messages[grading["grade_id"]] = " ".join(errors + partly)
    return messages


def _submit(course: Path, assignment: str, name: str, student: str, notebook: Any) -> None:
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(folder / name))


# nbgrader grades one notebook at a time and each needs a fresh kernel; CI has 2 cores, so the
# students of an assignment are split between 2 copies of the course graded side by side.
SHARDS = 2


def _autograde(course: Path, assignment: str, name: str, notebooks: dict[str, Any]) -> dict[str, Path]:
    """Grade every student's notebook; returns student -> the course copy that graded it."""
    shards = [course]
    for index in range(1, SHARDS):
        shard = course.parent / f"{course.name}-shard{index}"
        shutil.rmtree(shard, ignore_errors=True)
        shutil.copytree(course, shard)
        shards.append(shard)
    where = {}
    for index, (student, notebook) in enumerate(notebooks.items()):
        where[student] = shards[index % SHARDS]
        _submit(where[student], assignment, name, student, notebook)
    running = [
        subprocess.Popen(
            # The course's config gives a cell 60 s; the slowest cells of the solutions take
            # a few seconds idle and ten times that on a loaded 2-core machine: 600 s here.
            # Kernels talk over Unix sockets: with TCP, jupyter_client picks free ports and
            # closes them before the kernel binds, so kernels started at the same moment by
            # these shards (or anything else on the machine) can take each other's ports
            # ("Address already in use", "Kernel died before replying to kernel_info").
            # The socket path is absolute: the kernel runs in the notebook's folder.
            [sys.executable, "-m", "nbgrader", "autograde", assignment, "--force",
             f"--db={_db(shard)}", "--log-level=WARN", "--Execute.timeout=600",
             "--KernelManager.transport=ipc", f"--KernelManager.ip={shard / 'kernel-ipc'}"],
            cwd=shard, env=release.nbgrader_environment(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        for shard in shards
    ]
    for process in running:
        output, _ = process.communicate(timeout=900)
        assert process.returncode == 0, output
    return where


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_autograde_solution_release_and_corpus(assignment, course_for):
    course = course_for(assignment)
    name = _notebook_name(assignment)
    exercise = read(course / "exercises" / assignment / name)
    solution = read(REPO_ROOT / "solutions" / assignment / name)
    students = {f"corpus-{s.name.replace('_', '-')}": s for s in load_submissions(assignment)}
    notebooks = {"solution": build_notebook(exercise, solution), "untouched": exercise}
    for student, submission in students.items():
        notebooks[student] = build_notebook(exercise, solution, submission.overrides, demos=False)
    where = _autograde(course, assignment, name, notebooks)

    full = _grades(where["solution"], assignment, "solution")
    assert full, f"{assignment}: no graded cells"
    lost = {part: score for part, (score, top) in full.items() if score != top}
    assert not lost, f"{assignment}: the solution loses points: {lost}\n" + str(
        _messages(where["solution"], assignment, "solution", name)
    )
    untouched = _grades(where["untouched"], assignment, "untouched")
    assert sum(score for score, _ in untouched.values()) == 0, untouched

    problems = []
    for student, submission in students.items():
        grades = _grades(where[student], assignment, student)
        messages = _messages(where[student], assignment, student, name)
        unknown = set(submission.expect_lost) - set(grades)
        if unknown:
            problems.append(f"{submission.name}: EXPECT_LOST names unknown parts {unknown}")
        for part, (score, top) in grades.items():
            if part in submission.expect_lost:
                # nbgrader's own score: 0, or the side-property share kept (partial credit
                # from the test cell's value), as bncourse-grade scores it.
                want = top * (1 - SIDE_SHARE) if part in submission.expect_partial else 0
                if abs(score - want) > 1e-9:
                    problems.append(f"{submission.name}: {part} scored {score}, expected {want:g}")
                elif submission.expect_feedback.lower() not in messages.get(part, "").lower():
                    problems.append(
                        f"{submission.name}: {part} message lacks {submission.expect_feedback!r}: "
                        f"{messages.get(part, '')!r}"
                    )
            elif score != top:
                problems.append(
                    f"{submission.name}: {part} scored {score}/{top}, expected full marks: "
                    f"{messages.get(part, '')!r}"
                )
    assert not problems, "\n".join(problems)

    _check_feedback(where, assignment, name, students, solution)


def _check_feedback(where: dict[str, Path], assignment: str, name: str,
                    students: dict[str, Any], solution: Any) -> None:
    """Feedback of a student who lost a hidden part: its message shown, its test not."""
    hidden_ids = {p.id for p in PARTS.values() if p.assignment == assignment and p.hidden}
    chosen = next(
        (s for s, sub in students.items() if hidden_ids & set(sub.expect_lost)), None
    )
    if chosen is None:
        return  # nothing to look at yet: the assignment's corpus loses no hidden part
    course = where[chosen]
    result = _nbgrader(course, "generate_feedback", assignment, "--student", chosen, "--force")
    assert result.returncode == 0, result.stdout + result.stderr
    page = (course / "feedback" / chosen / assignment / name.replace(".ipynb", ".html")).read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    hidden_lines = [
        line for cell in solution.cells for line in _regions(_source(cell), HIDDEN_MARKERS)
        if line
    ]
    for line in hidden_lines:
        assert line not in text, f"feedback shows the hidden test line {line!r}"
    assert "BEGIN HIDDEN TESTS" not in text
    lost_hidden = sorted(hidden_ids & set(students[chosen].expect_lost))
    message = _messages(course, assignment, chosen, name)[lost_hidden[0]]
    evalue = message.split(": ", 1)[-1]
    assert evalue and evalue in text, f"feedback lacks the message {evalue!r}"


def test_feedback_preprocessor_keeps_only_the_message():
    """A traceback would quote the hidden line that raised; feedback keeps the last line."""
    error = {"output_type": "error", "ename": "AssertionError", "evalue": "eps is missing",
             "traceback": ["----> 4 check('secret', f)", "AssertionError: eps is missing"]}
    grading = {"grade": True, "solution": False, "grade_id": "a-b", "points": 1}
    test_cell = nbformat.from_dict({"cell_type": "code", "id": "t", "source": "", "execution_count": 1,
                                    "metadata": {"nbgrader": grading}, "outputs": [error]})
    other = nbformat.from_dict({"cell_type": "code", "id": "o", "source": "", "execution_count": 2,
                                "metadata": {}, "outputs": [dict(error)]})
    notebook = nbformat.v4.new_notebook(cells=[test_cell, other])
    notebook, _ = release.HideTestTracebacks().preprocess(notebook, {})
    assert notebook.cells[0].outputs[0]["traceback"] == ["AssertionError: eps is missing"]
    assert len(notebook.cells[1].outputs[0]["traceback"]) == 2  # student's own cells untouched
