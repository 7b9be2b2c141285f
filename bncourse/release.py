"""Make the student versions of the assignments, and keep hidden tests out of feedback.

``python -m bncourse.release`` (``make exercises``) runs ``nbgrader generate_assignment
--force`` for every folder of ``solutions/``, writing ``exercises/<assignment>/`` with the
solutions and hidden tests removed and the outputs cleared. nbgrader insists on a gradebook;
it gets a temporary one, deleted afterwards, so the course root stays clean.

``HideTestTracebacks`` is the nbconvert preprocessor that ``nbgrader_config.py`` adds to
``nbgrader generate_feedback`` (after nbgrader's ``ClearHiddenTests``): in graded test cells it
replaces each traceback by its last line, the check's message, because a traceback quotes
the source lines of the hidden tests that raised it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

REPO_ROOT = Path(__file__).resolve().parent.parent


class HideTestTracebacks(Preprocessor):
    """In autograded test cells, keep only ``<ErrorName>: <message>`` of every error output."""

    # nbgrader registers feedback preprocessors without enabling them; nbconvert skips a
    # disabled one silently.
    enabled = Bool(True).tag(config=True)

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> tuple[Any, Any]:
        grading = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and grading.get("grade") and not grading.get("solution"):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


def nbgrader_environment() -> dict[str, str]:
    """The environment for nbgrader subprocesses: this interpreter's bin/ first on PATH,
    because nbgrader runs the ``alembic`` and ``jupyter`` executables installed beside it."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def assignments(root: Path = REPO_ROOT) -> list[str]:
    """Names of the assignments: the folders of ``<root>/solutions`` holding a notebook."""
    source = root / "solutions"
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def generate(root: Path = REPO_ROOT, names: list[str] | None = None,
             db_url: str | None = None) -> list[Path]:
    """Run ``nbgrader generate_assignment --force`` for each assignment of ``root``.

    Inputs:
    - root: a course directory with ``nbgrader_config.py`` and ``solutions/`` (the repository,
      or a copy of it in a temporary directory).
    - names: assignments to generate; all of them when None.
    - db_url: gradebook to record the assignments in (a test that autogrades afterwards needs
      it); None uses a temporary one, deleted afterwards.

    Returns the notebooks written under ``<root>/exercises``. Raises RuntimeError with
    nbgrader's output when nbgrader fails.
    """
    root = Path(root).resolve()
    names = assignments(root) if names is None else names
    with tempfile.TemporaryDirectory(prefix="bncourse-release-") as scratch:
        database = db_url or f"sqlite:///{Path(scratch) / 'gradebook.db'}"
        for name in names:
            result = subprocess.run(
                [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force",
                 f"--db={database}", "--log-level=WARN"],
                cwd=root, env=nbgrader_environment(), capture_output=True, text=True,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"nbgrader generate_assignment {name} failed:\n{result.stdout}{result.stderr}"
                )
    written = sorted(p for name in names for p in (root / "exercises" / name).glob("*.ipynb"))
    for notebook in written:
        _normalise(notebook)
    return written


def _normalise(path: Path) -> None:
    """Drop outputs and execution counts (nbgrader clears them; this makes sure) and write
    the file the way nbformat does, so regenerating gives byte-identical files."""
    notebook = nbformat.read(str(path), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.write(notebook, str(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", help="assignments to generate (default: all)")
    args = parser.parse_args(argv)
    for notebook in generate(REPO_ROOT, args.assignments or None):
        print(notebook.relative_to(REPO_ROOT))


if __name__ == "__main__":
    main()
