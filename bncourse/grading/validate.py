"""Check one submitted notebook against the assignment and decide what the sandbox runs.

``check_notebook`` never raises for a bad file: it returns a ``Checked`` whose ``error`` says,
in one sentence, why the notebook cannot be graded (empty, not JSON, unknown nbformat, wrong
assignment, too large), or the cells to run plus what to flag for review:

- test cells (nbgrader grade cells that are not solutions) are never run: the verdicts come
  from ``part.judge`` in the grader's process;
- other locked cells run as the assignment has them (nbgrader's OverwriteCells does the same);
- everything else runs as the student wrote it, in the student's order;
- a locked cell whose checksum (nbgrader's ``compute_checksum``) differs from the release's,
  a deleted or duplicated graded cell, changed nbgrader metadata or an unknown grade_id is
  flagged; moved cells and repaired cell ids are noted.
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
from dataclasses import dataclass, field

import nbformat
from nbformat import NotebookNode
from nbgrader import utils as nbutils


@dataclass
class Checked:
    """Outcome of checking one notebook."""

    error: str | None = None
    notebook: NotebookNode | None = None
    run_cells: list[tuple[int, str]] = field(default_factory=list)
    student_cells: list[tuple[int, str]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def grade_id(cell) -> str | None:
    info = cell.get("metadata", {}).get("nbgrader")
    if isinstance(info, dict) and isinstance(info.get("grade_id"), str):
        return info["grade_id"]
    return None


def is_test_cell(cell) -> bool:
    return nbutils.is_grade(cell) and not nbutils.is_solution(cell) and cell.cell_type == "code"


def _flags_of(cell) -> tuple:
    info = cell.metadata.get("nbgrader", {})
    return (bool(info.get("grade")), bool(info.get("solution")), bool(info.get("locked")),
            float(info.get("points", 0) or 0), cell.cell_type)


def read_notebook(data: bytes, max_bytes: int) -> tuple[NotebookNode | None, str | None, list]:
    """Parse bytes into an nbformat-4 notebook: (notebook, error, notes)."""
    notes: list[str] = []
    if len(data) > max_bytes:
        return None, (f"the notebook is {len(data) / 2**20:.0f} MB, over the "
                      f"{max_bytes / 2**20:.0f} MB limit"), notes
    if not data.strip():
        return None, "the file is empty", notes
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "the file is not UTF-8 text (is it really a notebook?)", notes
    except json.JSONDecodeError as error:
        return None, f"the file is not valid JSON ({error.msg}, line {error.lineno})", notes
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        return None, "the file is JSON but not a Jupyter notebook (no cells)", notes
    version = raw.get("nbformat")
    cell_ids = [c.get("id") for c in raw.get("cells", []) if isinstance(c, dict)]
    if len(set(cell_ids)) < len(cell_ids):
        notes.append("duplicate cell ids were repaired")
    try:
        with warnings.catch_warnings():  # nbformat repairs duplicate ids, warning each time
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(json.dumps(raw), as_version=4)
    except Exception as error:  # nbformat raises many types for unknown versions
        if version in (3, 4):
            return None, (f"the notebook's structure is invalid ({type(error).__name__}: "
                          f"{str(error)[:200]})"), notes
        return None, f"nbformat version {version!r} cannot be read ({type(error).__name__})", notes
    if version != 4:
        notes.append(f"converted from nbformat {version} to 4")
    _repair_cell_ids(notebook, notes)
    for index, cell in enumerate(notebook.cells):
        if cell.get("cell_type") not in ("code", "markdown", "raw") or not isinstance(
            cell.get("source"), str
        ):
            return None, f"cell {index} is not a valid notebook cell", notes
        cell.setdefault("metadata", NotebookNode())
        if "nbgrader" in cell.metadata and not isinstance(cell.metadata.nbgrader, dict):
            del cell.metadata["nbgrader"]
            notes.append(f"cell {index}: nbgrader metadata that was not a dictionary was ignored")
    try:
        nbformat.validate(notebook)
    except nbformat.ValidationError as error:
        notes.append(f"nbformat validation: {str(error).splitlines()[0][:200]}")
    return notebook, None, notes


def _repair_cell_ids(notebook: NotebookNode, notes: list[str]) -> None:
    """Give duplicated or missing cell ids fresh values (nbformat refuses duplicates)."""
    if notebook.nbformat_minor < 5:
        return
    seen: set[str] = set()
    repaired = 0
    for cell in notebook.cells:
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not cell_id or cell_id in seen:
            cell["id"] = uuid.uuid4().hex[:8]
            repaired += 1
        seen.add(cell["id"])
    if repaired:
        notes.append(f"{repaired} duplicate or missing cell id(s) repaired")


ASSIGNMENT_PREFIX = re.compile(r"^(\d+_[A-Za-z0-9_]+?)[-.]")


def _wrong_assignment(student_ids: set[str], assignment: str) -> str:
    others = sorted({m[1] for gid in student_ids if (m := ASSIGNMENT_PREFIX.match(gid))}
                    - {assignment})
    if others:
        return (f"this notebook belongs to assignment {', '.join(others)}, not {assignment} "
                "(none of its graded cells match)")
    return f"none of the graded cells of {assignment} are in this notebook (wrong file?)"


def check_notebook(
    data: bytes, release: NotebookNode, assignment: str, max_bytes: int
) -> Checked:
    """Validate one submission against the released notebook of ``assignment``."""
    notebook, error, notes = read_notebook(data, max_bytes)
    if error:
        return Checked(error=error, notes=notes)
    result = Checked(notebook=notebook, notes=notes)
    released = {grade_id(c): c for c in release.cells if grade_id(c)}
    by_id: dict[str, list[int]] = {}
    for index, cell in enumerate(notebook.cells):
        if grade_id(cell):
            by_id.setdefault(grade_id(cell), []).append(index)
    if released and not set(by_id) & set(released):
        result.error = _wrong_assignment(set(by_id), assignment)
        return result
    _compare_cells(notebook, release, released, by_id, result)
    result.run_cells, result.student_cells = _cells_to_run(notebook, release, released)
    return result


def _compare_cells(notebook, release, released, by_id, result: Checked) -> None:
    for gid, cell in released.items():
        indices = by_id.get(gid, [])
        kind = "test" if is_test_cell(cell) else "locked" if nbutils.is_locked(cell) else "graded"
        if not indices:
            if kind != "graded":
                result.flags.append(f"{kind} cell {gid} was deleted")
            else:
                result.notes.append(f"cell {gid} was deleted")
            continue
        if len(indices) > 1:
            result.flags.append(f"cell {gid} appears {len(indices)} times")
        student = notebook.cells[indices[0]]
        try:
            changed = _flags_of(student) != _flags_of(cell)
            edited = nbutils.is_locked(cell) and (
                nbutils.compute_checksum(student) != nbutils.compute_checksum(cell))
        except (TypeError, ValueError, KeyError, AttributeError):
            changed, edited = True, False  # e.g. points that are not a number
        if changed:
            result.flags.append(f"cell {gid}: its type or nbgrader metadata was changed")
        elif edited:
            result.flags.append(f"{kind} cell {gid} was edited")
    for gid in by_id:
        if gid not in released:
            result.flags.append(f"cell {gid} is not part of the assignment")
    order = [grade_id(c) for c in notebook.cells if grade_id(c) in released]
    expected = [gid for gid in released if gid in set(order)]
    if list(dict.fromkeys(order)) != expected:
        result.notes.append("graded cells were moved")


def _cells_to_run(notebook, release, released) -> tuple[list, list]:
    """(cells to run, student-written cells) as (index in the student's notebook, source)."""
    run, student = [], []
    present = {grade_id(c) for c in notebook.cells}
    for index, cell in enumerate(notebook.cells):
        gid = grade_id(cell)
        original = released.get(gid)
        if original is not None and (is_test_cell(original) or is_test_cell(cell)):
            continue
        if original is not None and nbutils.is_locked(original) and not nbutils.is_solution(original):
            if original.cell_type == "code":
                run.append((index, original.source))
            continue
        if cell.cell_type == "code":
            run.append((index, cell.source))
            student.append((index, cell.source))
    # locked code cells the student deleted (typically imports) still run, first
    missing = [c.source for c in release.cells if grade_id(c) not in present
               and c.cell_type == "code" and nbutils.is_locked(c) and not nbutils.is_grade(c)
               and not nbutils.is_solution(c)]
    run = [(-1, source) for source in missing] + run
    return run, student

