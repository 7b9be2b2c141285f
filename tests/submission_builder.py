"""Build student submissions for the nbgrader round trip, from a corpus kept as data.

The corpus
----------
One file per submission, ``tests/submissions/<assignment>/<name>.py``, holding:

- top-level ``def``/``class`` definitions that REPLACE the student's answer for the solution
  cell defining the same name (every other solution cell gets the instructor's solution);
- ``EXPECT_LOST = ["<part id>", ...]``: the parts (nbgrader grade_ids, e.g.
  ``"03_bn_transform-forward_2d"``) that must lose points (0, or partial credit when listed in
  EXPECT_PARTIAL); every other part must score full marks.
  Empty for a correct alternative (Welford, einsum, float64 internally, ...);
- ``EXPECT_FEEDBACK = "phrase"``: text that the failure message of every lost part must contain
  (case-insensitive), e.g. a few words of the diagnosis; "" when nothing is lost;
- optionally ``EXPECT_PARTIAL = ["<part id>", ...]``: the lost parts whose numbers are right
  and which keep 1 - ``core.SIDE_SHARE`` of their points instead of scoring 0;
- a docstring saying what the submission does wrong (or differently).

Only the definitions travel into the notebook; everything else in the file (imports, other
statements) is ignored. So imports at the top are for linting only: the notebook has its own
(``np``, ``torch``), and a definition that needs more imports them inside its body. A
definition that calls names defined by other cells of the notebook (``minibatches``, the
student's ``batchnorm_forward``) can import lint stand-ins for them at the top, e.g.
``from bncourse.data import minibatches``, since that import is never executed in the
notebook. A definition may be a multi-line class; decorators are kept.

Example, ``tests/submissions/03_bn_transform/unbiased_variance.py``::

    \"\"\"Divides the batch variance by m - 1.\"\"\"
    import numpy as np

    EXPECT_LOST = ["03_bn_transform-forward_2d", "03_bn_transform-forward_2d_hidden", ...]
    EXPECT_FEEDBACK = "m - 1"

    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        ...

Building a notebook
-------------------
``build_notebook(exercise, solution, overrides)`` starts from the released notebook
(``exercises/<a>/<nb>.ipynb``), as a student would, and fills each solution cell (nbgrader
``solution: true``) with the instructor's code from the matching cell of
``solutions/<a>/<nb>.ipynb``, unless an override defines a name that cell defines; then the
cell gets the override's definitions instead. ``demos=False`` drops the ungraded cells
without nbgrader metadata (the worked examples), which nbgrader does not need, to save time.

The grading engineer reuses ``load_submissions`` and ``build_notebook``.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT / "tests" / "submissions"


@dataclass(frozen=True)
class Submission:
    """One corpus file: what it overrides and what grading must find."""

    assignment: str
    name: str
    overrides: dict[str, str]
    expect_lost: list[str] = field(default_factory=list)
    expect_feedback: str = ""
    # The lost parts that keep 1 - core.SIDE_SHARE of their points (right numbers, a side
    # property slipped); the other lost parts score 0.
    expect_partial: list[str] = field(default_factory=list)
    description: str = ""


def _cell_source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def defined_names(source: str) -> list[str]:
    """Names of the top-level functions and classes defined by ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]


def load_submission(path: Path) -> Submission:
    """Parse one corpus file (without executing it)."""
    text = Path(path).read_text()
    tree = ast.parse(text)
    overrides: dict[str, str] = {}
    constants: dict[str, Any] = {}
    lines = text.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            overrides[node.name] = "".join(lines[start:node.end_lineno]).rstrip() + "\n"
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper():
                constants[target.id] = ast.literal_eval(node.value)
    path = Path(path)
    for key in ("EXPECT_LOST", "EXPECT_FEEDBACK"):
        if key not in constants:
            raise ValueError(f"{path}: expected a module-level {key} constant")
    if not overrides:
        raise ValueError(f"{path}: expected at least one top-level def or class")
    return Submission(
        assignment=path.parent.name,
        name=path.stem,
        overrides=overrides,
        expect_lost=[str(p).replace(".", "-") for p in constants["EXPECT_LOST"]],
        expect_feedback=str(constants["EXPECT_FEEDBACK"]),
        expect_partial=[str(p).replace(".", "-") for p in constants.get("EXPECT_PARTIAL", [])],
        description=ast.get_docstring(tree) or "",
    )


def load_submissions(assignment: str, corpus: Path = CORPUS) -> list[Submission]:
    """Every submission of one assignment, sorted by name (none when the folder is absent)."""
    folder = Path(corpus) / assignment
    if not folder.is_dir():
        return []
    return [load_submission(p) for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")]


def solution_cells(solution: Any) -> dict[str, str]:
    """grade_id -> source of every solution cell of the instructor's notebook."""
    cells = {}
    for cell in solution.cells:
        grading = cell.get("metadata", {}).get("nbgrader", {})
        if grading.get("solution"):
            cells[grading["grade_id"]] = _cell_source(cell)
    return cells


def build_notebook(exercise: Any, solution: Any, overrides: dict[str, str] | None = None,
                   demos: bool = True) -> Any:
    """A student's notebook: the released one with its solution cells filled in.

    Inputs:
    - exercise: the released notebook (nbformat node).
    - solution: the instructor's notebook (nbformat node).
    - overrides: name -> source of a definition replacing the instructor's.
    - demos: keep the ungraded cells without nbgrader metadata.

    Raises ValueError when an override names nothing that a solution cell defines.
    """
    overrides = dict(overrides or {})
    answers = solution_cells(solution)
    student = copy.deepcopy(exercise)
    used: set[str] = set()
    kept = []
    for cell in student.cells:
        grading = cell.get("metadata", {}).get("nbgrader")
        if grading is None and not demos:
            continue
        if grading and grading.get("solution"):
            answer = answers[grading["grade_id"]]
            names = [n for n in defined_names(answer) if n in overrides]
            if names:
                cell["source"] = "\n\n".join(overrides[n].rstrip() for n in names)
                used.update(names)
            else:
                cell["source"] = answer
        kept.append(cell)
    student.cells = kept
    unused = set(overrides) - used
    if unused:
        raise ValueError(f"overrides: no solution cell defines {sorted(unused)}")
    return student


def read(path: Path) -> Any:
    return nbformat.read(str(path), as_version=4)
