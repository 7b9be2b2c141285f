"""The single writer: the resume journal, nbgrader's gradebook and grades.csv.

Workers only return results; this module, in the one grading process, records them:

1. ``Journal.save``: the result JSON of one student, written to a temporary file, fsynced
   and renamed into place, so a file in the journal is always a whole result;
2. ``record``: the scores written into nbgrader's gradebook (``gradebook.db``) in ONE
   transaction per student, setting values (never adding), so applying a result twice gives
   the same gradebook.

A run killed at any point therefore resumes cleanly: results in the journal are re-applied
(idempotent), students without one are graded again, and SQLite rolls back a transaction
cut short.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbgrader.api import (
    Comment,
    Grade,
    Gradebook,
    MissingEntry,
    Student,
    SubmittedAssignment,
    SubmittedNotebook,
)
from nbgrader.apps.api import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

STATE_DIR = ".bncourse-grade"


def atomic_write(path: Path, data: bytes) -> None:
    """Write-temp-then-rename: readers see the old file or the whole new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


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


class Journal:
    """One JSON result per student and notebook: .bncourse-grade/<assignment>/journal/
    <student>/<notebook>.json; keys are "<student>/<notebook>"."""

    def __init__(self, course: Course, assignment: str) -> None:
        self.folder = course.state / assignment / "journal"

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str) -> dict | None:
        try:
            return json.loads(self.path(key).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def save(self, result: dict) -> None:
        key = f"{result['student']}/{result['notebook']}"
        atomic_write(self.path(key), json.dumps(result, indent=1).encode())

    def all(self) -> list[dict]:
        results = []
        for path in sorted(self.folder.glob("*/*.json")):
            try:
                results.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return results

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _submission(gb: Gradebook, assignment: str, student_id: str, timestamp):
    """Find or build (without committing) the student's submission, as add_submission does."""
    db = gb.db
    with db.no_autoflush:
        return _build_submission(gb, assignment, student_id, timestamp)


def _build_submission(gb: Gradebook, assignment: str, student_id: str, timestamp):
    db = gb.db
    student = db.get(Student, student_id)
    if student is None:
        student = Student(id=student_id)
        db.add(student)
    try:
        submission = gb.find_submission(assignment, student_id)
    except MissingEntry:
        submission = SubmittedAssignment(assignment=gb.find_assignment(assignment),
                                         student=student)
        for notebook in submission.assignment.notebooks:
            submitted = SubmittedNotebook(notebook=notebook, assignment=submission)
            for cell in notebook.grade_cells:
                Grade(cell_id=cell.id, notebook=submitted)
            for cell in list(notebook.solution_cells) + list(notebook.task_cells):
                Comment(cell_id=cell.id, notebook=submitted)
            for cell in notebook.task_cells:
                Grade(cell_id=cell.id, notebook=submitted)
        db.add(submission)
    submission.timestamp = timestamp
    return submission


def record(gb: Gradebook, results: list[dict], timestamp: datetime.datetime | None) -> None:
    """Write one student's results (one per notebook of the assignment) in one transaction."""
    db = gb.db
    try:
        first = results[0]
        submission = _submission(gb, first["assignment"], first["student"], timestamp)
        db.flush()
        for result in results:
            scores = {p["id"]: p["score"] for p in result["parts"]}
            notebook = next(n for n in submission.notebooks if n.name == result["notebook"])
            for grade in notebook.grades:
                if grade.name in scores:
                    grade.auto_score = scores[grade.name]
                elif grade.cell.cell_type == "code" and not _is_manual(grade):
                    grade.auto_score = 0.0  # a test cell without a check: flagged by the worker
                # as nbgrader's SaveAutoGrades: written answers and overridden scores need a look
                grade.needs_manual_grade = (grade.auto_score is None
                                            or grade.manual_score is not None)
            notebook.flagged = bool(result["flags"])
        db.commit()
    except BaseException:
        db.rollback()
        raise


def _is_manual(grade) -> bool:
    """Cells nbgrader leaves to the instructor (written answers): solution + grade."""
    solution_names = {c.name for c in grade.notebook.notebook.solution_cells}
    return grade.name in solution_names


def export_csv(gb: Gradebook, assignment: str, destination: Path) -> None:
    """grades.csv with nbgrader's own CSV exporter (the columns formgrader users know)."""
    from nbgrader.plugins.export import CsvExportPlugin

    temp = destination.with_name(f".{destination.name}.tmp")
    plugin = CsvExportPlugin(to=str(temp), assignment=[assignment])
    plugin.export(gb)
    os.replace(temp, destination)
