"""Late submissions, the nbgrader way.

- The due date is nbgrader's own: the assignment's ``duedate`` in the gradebook (set with
  ``nbgrader db assignment add ASSIGNMENT --duedate="2026-03-02 17:00 UTC"`` or the
  formgrader). Without one, nothing is late.
- The submission time is the one collect keeps in ``submitted/<student>/<assignment>/
  timestamp.txt`` (the file's modification time; for an LMS zip, the time stored in the zip),
  written into the gradebook as the submission's ``timestamp``. Canvas's ``_late`` token in a
  file name is kept beside it (``lms_late.txt``) and shown in the report, but the amount of
  lateness always comes from the timestamp.
- Extensions come from a CSV (``--extensions FILE``, columns ``student_id`` and any of
  ``weeks``, ``days``, ``hours``, ``minutes``) and are granted with nbgrader's
  ``Gradebook.grant_extension``, so nbgrader's ``total_seconds_late`` accounts for them.
- The penalty is computed by nbgrader's late-penalty plugin mechanism: the class configured as
  ``c.AssignLatePenalties.plugin_class`` (nbgrader's ``LateSubmissionPlugin`` by default, whose
  ``penalty_method`` is 'none' or 'zero'; or ``PenaltyPerDay`` below), called per notebook
  with the notebook's score and the seconds late, clamped to [0, score] as nbgrader's
  ``AssignLatePenalties`` does, and stored in ``SubmittedNotebook.late_submission_penalty``.
  nbgrader's CSV exporter (``grades.csv``) then reports ``score = raw_score - penalty``.
"""

from __future__ import annotations

import csv
import datetime
import math
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.preprocessors import AssignLatePenalties
from traitlets import Float
from traitlets.config import Config

EXTENSION_UNITS = ("weeks", "days", "hours", "minutes")
LMS_LATE_FILE = "lms_late.txt"


class PenaltyPerDay(LateSubmissionPlugin):
    """Lose ``fraction_per_day`` of the notebook's score for every started day late, at most
    ``max_fraction``. Use it in nbgrader_config.py::

        c.AssignLatePenalties.plugin_class = "bncourse.grading.late.PenaltyPerDay"
        c.PenaltyPerDay.fraction_per_day = 0.1
    """

    fraction_per_day = Float(0.1, help="fraction of the score lost per started day late"
                             ).tag(config=True)
    max_fraction = Float(1.0, help="largest fraction of the score lost").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float,
                                total_seconds_late: float) -> float | None:
        if total_seconds_late <= 0:
            return None
        days = math.ceil(total_seconds_late / 86400)
        return min(self.max_fraction, self.fraction_per_day * days) * score


def plugin(config: Config) -> LateSubmissionPlugin:
    """The late-penalty plugin nbgrader's autograde would use with this configuration."""
    assign = AssignLatePenalties(config=config)
    assign.init_plugin()
    return assign.plugin_inst


def read_extensions(path: Path) -> dict[str, dict[str, float]]:
    """{student: {unit: amount}} from the extensions CSV; errors name the file, row and column."""
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        if "student_id" not in columns or not set(columns) & set(EXTENSION_UNITS):
            raise ValueError(f"--extensions {path}: expected a header with student_id and any "
                             f"of {', '.join(EXTENSION_UNITS)}, got {', '.join(columns)}")
        extensions = {}
        for line, row in enumerate(reader, start=2):
            amounts = {}
            for unit in EXTENSION_UNITS:
                text = (row.get(unit) or "").strip()
                try:
                    amounts[unit] = float(text) if text else 0.0
                except ValueError:
                    raise ValueError(f"--extensions {path}, line {line}: {unit} should be a "
                                     f"number, got {text!r}") from None
                if amounts[unit] < 0:
                    raise ValueError(f"--extensions {path}, line {line}: {unit} should not be "
                                     f"negative, got {text!r}")
            extensions[row["student_id"].strip()] = amounts
    return extensions


def apply(gb: Gradebook, config: Config, assignment: str,
          extensions: Path | None = None) -> list[str]:
    """Grant the extensions, then set every notebook's late penalty; returns notes (students
    in the extensions file who have no submission)."""
    notes = []
    for student, amounts in (read_extensions(extensions) if extensions else {}).items():
        try:
            gb.grant_extension(assignment, student, **amounts)
        except MissingEntry:
            notes.append(f"extension for {student}: no submission of {assignment}")
    penalise = plugin(config)
    for submission in gb.assignment_submissions(assignment):
        seconds = submission.total_seconds_late
        for notebook in submission.notebooks:
            notebook.late_submission_penalty = None
            if seconds > 0:
                penalty = penalise.late_submission_penalty(submission.student.id,
                                                           notebook.score, seconds)
                if penalty is not None:  # clamped as nbgrader's AssignLatePenalties does
                    notebook.late_submission_penalty = min(max(penalty, 0.0), notebook.score)
    gb.db.commit()
    return notes


def lms_marked_late(course_root: Path, assignment: str, student: str) -> bool:
    return (course_root / "submitted" / student / assignment / LMS_LATE_FILE).exists()


def _duration(seconds: float) -> str:
    delta = datetime.timedelta(seconds=round(seconds))
    return f"{delta.days} d {delta.seconds // 3600} h {delta.seconds % 3600 // 60} min"


def late_table(gb: Gradebook, assignment: str, course_root: Path) -> list[list]:
    """Rows (first: header) of every submission that is late or that the LMS marked late."""
    rows = [["student", "submitted_utc", "due_utc", "late_by", "lms_marked_late",
             "late_submission_penalty"]]
    for submission in sorted(gb.assignment_submissions(assignment), key=lambda s: s.student.id):
        student = submission.student.id
        seconds = submission.total_seconds_late
        marked = lms_marked_late(course_root, assignment, student)
        if seconds <= 0 and not marked:
            continue
        due = submission.duedate
        rows.append([student, f"{submission.timestamp:%Y-%m-%d %H:%M}" if submission.timestamp
                     else "", f"{due:%Y-%m-%d %H:%M}" if due else "",
                     _duration(seconds) if seconds > 0 else "on time by the timestamp",
                     "yes" if marked else "", f"{submission.late_submission_penalty:g}"])
    return rows
