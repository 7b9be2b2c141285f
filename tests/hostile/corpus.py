"""The hostile and broken submissions, each with the outcome bncourse-grade must give.

Every entry builds one student's file for the tiny assignment (4 autograded points:
standardize 2 + standardize_hidden 1 + scale_shift 1) and states what must come out:
the score, a phrase that must appear among the reasons (problems, error, part messages),
and a phrase that must appear among the review flags (None: no flag at all).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import tiny_course as tiny

WRONG_STANDARDIZE = ("def standardize(x, eps=1e-5):\n"
                     "    return (x - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + eps)\n")
WITH_STANDARDIZE = tiny.STANDARDIZE  # the correct definition, to append code after it


@dataclass(frozen=True)
class Hostile:
    name: str
    build: Callable[[Path], object]  # course dir -> notebook, bytes or str
    score: float | None  # None: not collected at all
    reason: str | None = None
    flag: str | tuple[str, ...] | None = None  # every one must appear in the flags
    mistake: str | None = None


def solution(code: str, course_cell: str = "standardize_impl"):
    return lambda course: tiny.student_notebook(course, {course_cell: code})


def extra_cell(code: str, after: str = "scale_shift_impl", grade_id: str | None = None):
    """The correct notebook plus a student cell with ``code`` after cell ``after``."""
    def edit(notebook):
        index = next(i for i, c in enumerate(notebook.cells)
                     if c.metadata.get("nbgrader", {}).get("grade_id") == after)
        cell = nbformat.v4.new_code_cell(code)
        notebook.cells.insert(index + 1, cell)
    return lambda course: tiny.student_notebook(course, edit=edit)


def edit_cell(grade_id: str, change: Callable):
    def edit(notebook):
        for cell in notebook.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
                change(cell)
    return lambda course: tiny.student_notebook(course, edit=edit)


def to_markdown(cell) -> None:
    """Turn a code cell into a markdown cell, as a student editing the cell type would."""
    cell.cell_type = "markdown"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)


def delete_cell(grade_id: str):
    def edit(notebook):
        notebook.cells = [c for c in notebook.cells
                          if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id]
    return lambda course: tiny.student_notebook(course, edit=edit)


def duplicate_solution(course):
    def edit(notebook):
        index = next(i for i, c in enumerate(notebook.cells)
                     if c.metadata.get("nbgrader", {}).get("grade_id") == "standardize_impl")
        twin = copy.deepcopy(notebook.cells[index])
        twin.source = WRONG_STANDARDIZE
        twin["id"] = "twin0001"
        notebook.cells.insert(index + 1, twin)
    return tiny.student_notebook(course, edit=edit)


def move_cells(course):
    def edit(notebook):
        ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in notebook.cells]
        moved = notebook.cells.pop(ids.index("scale_shift_impl"))
        notebook.cells.insert(ids.index("standardize_impl"), moved)
    return tiny.student_notebook(course, edit=edit)


def duplicate_ids(course):
    def edit(notebook):
        for cell in notebook.cells:
            cell["id"] = "same"
    notebook = tiny.student_notebook(course, edit=edit)
    return json.dumps(notebook)  # nbformat would refuse to write it


def nbformat3(course):
    return nbformat.writes(nbformat.convert(tiny.student_notebook(course), 3))


def future_nbformat(course):
    data = json.loads(json.dumps(tiny.student_notebook(course)))
    data["nbformat"] = 99
    return json.dumps(data)


def wrong_assignment(course):
    def edit(notebook):
        for cell in notebook.cells:
            info = cell.metadata.get("nbgrader")
            if info:
                info["grade_id"] = "03_bn_transform-" + info["grade_id"].split("-")[-1]
    return json.dumps(tiny.student_notebook(course, edit=edit))


def snoop(course: Path) -> str:
    """Try to read the source notebook and the gradebook, write into the course, open a
    socket; then define the correct functions."""
    return (
        "import os, socket\n"
        f"for path in [{str(course / 'solutions' / '00_tiny' / 'tiny.ipynb')!r}, "
        f"{str(course / 'gradebook.db')!r}]:\n"
        "    try:\n        open(path).read(); print('READ', path)\n"
        "    except OSError as e: print('blocked', type(e).__name__)\n"
        f"try:\n    open({str(course / 'pwned.txt')!r}, 'w').write('x')\n"
        "except OSError as e: print('blocked', type(e).__name__)\n"
        "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
        "except OSError as e: print('blocked', type(e).__name__)\n"
    )


CORPUS = [
    Hostile("correct", lambda c: tiny.student_notebook(c), 4),
    Hostile("unbiased_variance", solution(WRONG_STANDARDIZE), 1, mistake="unbiased_variance"),
    Hostile("infinite_loop_cell", extra_cell("while True:\n    pass"), 4,
            reason="ran past its time limit"),
    Hostile("infinite_loop_in_function", solution(
        "def standardize(x, eps=1e-5):\n    while True:\n        pass\n"), 1,
        reason="ran past the time limit"),
    Hostile("memory_bomb", extra_cell("hog = bytearray(8 * 2**30)"), 4,
            reason="ran out of memory"),
    Hostile("fork_storm", extra_cell("import os\nwhile True:\n    os.fork()"), 4,
            reason="BlockingIOError"),
    Hostile("sys_exit", extra_cell("import sys\nsys.exit(3)"), 4),
    Hostile("os_exit_before_definitions", extra_cell("import os\nos._exit(0)", after="setup"),
            0, reason="ended abruptly", flag="os._exit"),
    Hostile("segfault_ctypes", extra_cell("import ctypes\nctypes.string_at(0)",
                                          after="setup"), 0, reason="killed by SIGSEGV",
            flag="ctypes"),
    Hostile("print_100mb", extra_cell("print('x' * 100_000_000)"), 4,
            reason="printed too much output"),
    Hostile("write_100mb_to_fd", extra_cell("import os\nos.write(1, b'x' * 100_000_000)",
                                            after="setup"), 0, reason="printed more than"),
    Hostile("lying_eq_array", solution(
        "class Liar:\n    def __eq__(self, other):\n        return True\n"
        "    def __array__(self, dtype=None, copy=None):\n        return np.zeros((1,))\n"
        "def standardize(x, eps=1e-5):\n    return Liar()\n"), 1, flag="__eq__"),
    Hostile("object_array_output", solution(
        "def standardize(x, eps=1e-5):\n    return np.array([object()] * len(x))\n"), 1),
    Hostile("patched_numpy_testing", extra_cell(
        "np.testing.assert_allclose = lambda *a, **k: None\n"
        "np.allclose = lambda *a, **k: True\n"
        "def standardize(x, eps=1e-5):\n    return x\n"), 1, flag="replaces np"),
    Hostile("patched_math_builtins_torch_testing", extra_cell(
        "import builtins, math\nimport torch.testing\n"
        "math.isclose = lambda *a, **k: True\n"
        "builtins.abs = lambda value: 0\n"
        "torch.testing.assert_close = lambda *a, **k: None\n"
        "def standardize(x, eps=1e-5):\n    return x\n"), 1,
        flag=("replaces math.isclose", "replaces builtins.abs", "replaces torch.testing.assert_close")),
    Hostile("input_transformer", extra_cell(
        "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])\n"
        "def standardize(x, eps=1e-5):\n    return x\n"), 1, flag="input transformer"),
    Hostile("settrace", extra_cell(
        "import sys\nsys.settrace(lambda *a: None)\n"
        "def standardize(x, eps=1e-5):\n    return x\n"), 1, flag="sys.settrace"),
    Hostile("prints_fake_pass", extra_cell(
        "print('passed: 00_tiny-standardize\\nAll tests passed! 4/4')\n"
        "def standardize(x, eps=1e-5):\n    return x\n"), 1),
    Hostile("edited_test_cell", edit_cell("00_tiny-standardize",
                                          lambda cell: setattr(cell, "source", "pass")),
            4, flag="was edited"),
    Hostile("deleted_test_cell", delete_cell("00_tiny-scale_shift"), 4, flag="was deleted"),
    Hostile("changed_metadata", edit_cell(
        "00_tiny-standardize",
        lambda cell: cell.metadata["nbgrader"].update(points=100)), 4,
        flag="metadata was changed"),
    Hostile("calls_reference", solution(
        "from bncourse.cpu import standardize as reference\n"
        "def standardize(x, eps=1e-5):\n    return reference(x, eps)\n"), 0,
        flag="reference code", mistake="shortcut"),
    Hostile("sklearn_shortcut", solution(
        "def standardize(x, eps=1e-5):\n"
        "    from sklearn.preprocessing import StandardScaler\n"
        "    return StandardScaler().fit_transform(x)\n"), 1, mistake="shortcut",
        flag="sklearn"),
    Hostile("dynamic_exec", extra_cell("exec('y' + ' = 1')"), 4, flag="exec"),
    Hostile("invalid_json", lambda c: '{"cells": [', 0, reason="not valid JSON"),
    Hostile("empty_file", lambda c: b"", 0, reason="the file is empty"),
    Hostile("nbformat_v3", nbformat3, 4),
    Hostile("nbformat_v99", future_nbformat, 0, reason="nbformat version 99"),
    Hostile("duplicate_cell_ids", duplicate_ids, 4),
    Hostile("duplicated_solution_cell", duplicate_solution, 1, flag="appears 2 times"),
    Hostile("cells_moved", move_cells, 4),
    Hostile("wrong_assignment", wrong_assignment, 0, reason="belongs to assignment 03_bn"),
    Hostile("changed_cell_type", edit_cell("00_tiny-standardize", to_markdown), 4,
            flag="type or nbgrader metadata was changed"),
    Hostile("malformed_points_metadata", edit_cell(
        "00_tiny-standardize", lambda cell: cell.metadata["nbgrader"].update(points="lots")),
        4, flag="metadata was changed"),
    Hostile("nbgrader_metadata_not_a_dict", edit_cell(
        "scale_shift_impl", lambda cell: cell.metadata.update(nbgrader="x")), 4,
        reason="not a dictionary"),
    Hostile("garbage_on_results_pipe", extra_cell(
        "import os, sys\nos.write(int(sys.argv[-1]), b'not a frame\\n')", after="setup"), 0,
        reason="unreadable results stream"),
    Hostile("snoops_course_and_network", lambda c: tiny.student_notebook(
        c, edit=lambda nb: nb.cells.insert(2, nbformat.v4.new_code_cell(snoop(c)))), 4),
]
