"""The resume journal: one result per student and notebook, each written whole or not at all.

``Journal.save`` writes the result JSON of one notebook to a temporary file, fsyncs it and
renames it into place (``atomic_write``), before the gradebook is touched, so a run killed at
any point resumes from what the journal holds.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from bncourse.grading.course import Course


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
