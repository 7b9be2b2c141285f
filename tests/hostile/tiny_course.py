"""Build the tiny course (one assignment, ``00_tiny/tiny.ipynb``) in a temporary folder, and
student notebooks for it: the released notebook with the solution cells filled in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ASSIGNMENT, NOTEBOOK = "00_tiny", "tiny"
CHECKS = str(Path(__file__).with_name("tinychecks.py"))
HIDDEN_SECRET = "SECRET_HIDDEN_MARKER_93731"

# Limits that stop loops and bombs, each with a wide margin over what legitimate work takes
# on a loaded 2-core machine:
# - a cell: the slowest legitimate cell of the corpus imports torch, which took 11-15 s on
#   this machine at load average 7 (1-2 s idle): 60 s is 4x the worst measured. (At 3 s, a
#   loaded machine stopped that cell before its definitions ran and flipped its score.)
#   The one looping cell (infinite_loop_cell) costs these 60 s.
# - a checked case: the tiny checks take milliseconds on arrays of a few rows: 3 s is over
#   1000x that, and an infinite loop in a checked function costs 3 s per case.
# - a notebook: room for the 60-s cell plus everything else, twice.
LOW_LIMITS = ["--sandbox", "bwrap", "--cell-timeout", "60", "--case-timeout", "3",
              "--timeout", "150", "--memory", "1G", "--max-output", "1M", "--max-procs", "32"]

STANDARDIZE = """def standardize(x, eps=1e-5):
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    return (x - mean) / np.sqrt(var + eps)
"""
SCALE_SHIFT = """def scale_shift(x_hat, gamma, beta):
    return gamma * x_hat + beta
"""


def _meta(grade_id: str, grade=False, solution=False, locked=False, points=0) -> dict:
    info = {"grade_id": grade_id, "grade": grade, "solution": solution, "locked": locked,
            "schema_version": 3}
    if grade:
        info["points"] = points
    return {"nbgrader": info}


def _solution(code: str) -> str:
    return "### BEGIN SOLUTION\n" + code + "### END SOLUTION\n"


def source_notebook() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("# A tiny assignment\nStandardize, then scale and shift."),
        new_code_cell("import numpy as np", metadata=_meta("setup", locked=True)),
        new_code_cell(_solution(STANDARDIZE), metadata=_meta("standardize_impl", solution=True)),
        new_code_cell(
            "x = np.random.default_rng(0).normal(2.0, 3.0, size=(8, 3))\n"
            "out = standardize(x)\n"
            "assert np.allclose(out.mean(axis=0), 0.0)\n"
            "assert np.allclose((out ** 2).mean(axis=0), 1.0, atol=1e-3)",
            metadata=_meta("00_tiny-standardize", grade=True, locked=True, points=2)),
        new_code_cell(
            "### BEGIN HIDDEN TESTS\n"
            f"# {HIDDEN_SECRET}\n"
            "x = np.random.default_rng(1).normal(size=(5, 2)) * 1e-3\n"
            "ref = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)\n"
            "assert np.allclose(standardize(x), ref)\n"
            "### END HIDDEN TESTS",
            metadata=_meta("00_tiny-standardize_hidden", grade=True, locked=True, points=1)),
        new_code_cell(_solution(SCALE_SHIFT), metadata=_meta("scale_shift_impl", solution=True)),
        new_code_cell(
            "g, b = np.array([2.0, 3.0]), np.array([1.0, -1.0])\n"
            "assert np.allclose(scale_shift(np.ones((2, 2)), g, b), [[3.0, 2.0], [3.0, 2.0]])",
            metadata=_meta("00_tiny-scale_shift", grade=True, locked=True, points=1)),
        new_markdown_cell("Why does eps matter? " + _solution("Because ...\n"),
                          metadata=_meta("explain_eps", grade=True, solution=True, points=1)),
    ]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


def make_course(root: Path) -> Path:
    """A course directory with the tiny assignment's source notebook; returns ``root``."""
    folder = root / "solutions" / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(source_notebook(), folder / f"{NOTEBOOK}.ipynb")
    return root


def released(course: Path) -> nbformat.NotebookNode:
    """The student version nbgrader made (bncourse-grade writes it under .bncourse-grade)."""
    path = course / ".bncourse-grade" / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    if not path.exists():
        from bncourse.grading.course import Course

        Course(course).prepare(ASSIGNMENT)
    return nbformat.read(path, as_version=4)


def student_notebook(course: Path, replace: dict[str, str] | None = None,
                     edit=None) -> nbformat.NotebookNode:
    """The released notebook with solutions filled in; ``replace`` maps a solution cell's
    grade_id to other code; ``edit(notebook)`` may change anything else."""
    notebook = released(course)
    answers = {"standardize_impl": STANDARDIZE, "scale_shift_impl": SCALE_SHIFT,
               "explain_eps": "Because a constant channel would divide by zero."}
    answers.update(replace or {})
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    if edit is not None:
        edit(notebook)
    return notebook


def write_student(folder: Path, student: str, notebook) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{student}.ipynb"
    if isinstance(notebook, bytes):
        path.write_bytes(notebook)
    elif isinstance(notebook, str):
        path.write_text(notebook)
    else:
        path.write_text(json.dumps(notebook, indent=1))
    return path


def require_bwrap() -> None:
    """The sandbox tests need bubblewrap; without it they fail (never skip)."""
    import pytest

    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap (bwrap) is not installed: `make test` installs it "
                    "(apt-get install bubblewrap); the grading sandbox tests need it")


def shared_once(tmp_path_factory, name: str, build) -> Path:
    """Run ``build(folder)`` once per test session, even under pytest-xdist: workers share
    the base temp folder's parent, and a lock lets the first build while the others wait
    (a module fixture alone would grade the class once per xdist worker)."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if base.name.startswith("popen-gw") else base
    folder, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            if folder.exists():
                shutil.rmtree(folder)  # a build that failed half way
            folder.mkdir()
            build(folder)
            done.write_text("ok")
    return folder
