"""An nbgrader course directory as ``bncourse-grade`` uses it: configuration, released notebooks.

``Course`` reads ``nbgrader_config.py`` (defaults: ``solutions/`` as the source directory,
``gradebook.db`` in the course), makes the released notebooks with nbgrader's own
``generate_assignment`` into ``.bncourse-grade/release/`` (so ``exercises/`` is never
touched), and opens the gradebook.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.apps.api import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

STATE_DIR = ".bncourse-grade"


def _alembic_on_path() -> None:
    """nbgrader creates a new gradebook by running the ``alembic`` command, which lives next
    to this interpreter; put it on PATH when the virtualenv is used without activation."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


class Course:
    """An nbgrader course directory as bncourse-grade uses it."""

    def __init__(self, root: Path, source_directory: str | None = None) -> None:
        _alembic_on_path()
        self.root = root.resolve()
        self.config = self._load_config(source_directory)
        self.course_id = self.config.CourseDirectory.course_id
        self.db_url = self.config.CourseDirectory.db_url
        self.state = self.root / STATE_DIR

    def _load_config(self, source_directory: str | None) -> Config:
        config = Config()
        config_file = self.root / "nbgrader_config.py"
        if config_file.exists():
            config.merge(PyFileConfigLoader(config_file.name, str(self.root)).load_config())
        course = config.CourseDirectory
        course.root = str(self.root)
        if source_directory:
            course.source_directory = source_directory
        if "source_directory" not in course:
            course.source_directory = "solutions"
        if "course_id" not in course:
            course.course_id = "default_course"
        if "db_url" not in course:
            course.db_url = "sqlite:///" + str(self.root / "gradebook.db")
        # our own release copy: the released notebooks (hidden tests removed, checksums)
        course.release_directory = str(self.root / STATE_DIR / "release")
        return config

    def source_notebooks(self, assignment: str) -> list[Path]:
        folder = self.root / self.config.CourseDirectory.source_directory / assignment
        return sorted(folder.glob("*.ipynb"))

    def prepare(self, assignment: str) -> dict[str, nbformat.NotebookNode]:
        """Register the assignment in the gradebook and make its released notebooks with
        nbgrader's own generate_assignment; returns {notebook name: released notebook}."""
        if not self.source_notebooks(assignment):
            folder = self.root / self.config.CourseDirectory.source_directory / assignment
            raise FileNotFoundError(f"assignment: no source notebooks in {folder}")
        coursedir = CourseDirectory(config=self.config)
        api = NbGraderAPI(coursedir=coursedir, config=self.config)
        outcome = api.generate_assignment(assignment, force=True, create=True)
        if not outcome["success"]:
            log = (outcome.get("log") or "").splitlines()
            detail = "\n".join(log[-30:] or [outcome.get("error") or ""])
            raise RuntimeError(f"nbgrader generate_assignment failed for {assignment}:\n{detail}")
        release_dir = Path(self.config.CourseDirectory.release_directory) / assignment
        return {p.stem: nbformat.read(p, as_version=4) for p in sorted(release_dir.glob("*.ipynb"))}

    def gradebook(self) -> Gradebook:
        return Gradebook(self.db_url, self.course_id)
