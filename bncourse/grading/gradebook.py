"""The single writer's gradebook side: nbgrader's gradebook and grades.csv.

Workers only return results; this module, in the one grading process, records them:

1. ``bncourse.grading.journal.Journal.save``: the result JSON of one student, written to a
   temporary file, fsynced and renamed into place, so a file in the journal is always a
   whole result;
2. ``record``: the scores written into nbgrader's gradebook (``gradebook.db``) in ONE
   transaction per student, setting values (never adding), so applying a result twice gives
   the same gradebook.

A run killed at any point therefore resumes cleanly: results in the journal are re-applied
(idempotent), students without one are graded again, and SQLite rolls back a transaction
cut short.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from nbgrader.api import (
    Comment,
    Grade,
    Gradebook,
    MissingEntry,
    Student,
    SubmittedAssignment,
    SubmittedNotebook,
)


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
