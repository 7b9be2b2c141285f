"""Collect submissions (a folder or a .zip) into nbgrader's ``submitted/`` layout.

Accepted names (one notebook per student and notebook of the assignment):

- ``<student>.ipynb`` (the assignment has one notebook);
- ``<student>/<notebook>.ipynb`` and ``<student>/<assignment>/<notebook>.ipynb`` (nbgrader);
- LMS downloads, the cases ``nbgrader zip_collect`` is usually configured for:
  Canvas ``<login>[_late]_<user id>_<submission id>_<notebook>[-N].ipynb`` and Moodle
  ``<Full Name>_<id>_assignsubmission_file_<notebook>.ipynb``;
- anything else through ``--student-regex`` with a named group ``student``
  (and optionally ``notebook``).

Files that match none of these, names that are not safe student ids, files over the size
limit and duplicates are reported, never guessed. A submission already collected with other
content is moved to ``submitted_archive/`` first: nothing a student handed in is ever lost.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
CANVAS = re.compile(
    r"^(?P<student>[A-Za-z0-9]+)(?P<late>_late)?_\d+_\d+_(?P<notebook>.+?)(?:-\d+)?\.ipynb$"
)
MOODLE = re.compile(
    r"^(?P<name>[^_]+)_(?P<student>\d+)_assignsubmission_file_(?P<notebook>.+?)\.ipynb$"
)
IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints"}
MAX_ZIP_TOTAL = 4 * 2**30


@dataclass
class Collected:
    """Outcome of collecting: submissions found and files that could not be used."""

    submissions: dict[str, dict[str, Path]] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    archived: list[str] = field(default_factory=list)


def match(relative: PurePosixPath, assignment: str, notebooks: list[str],
          student_regex: re.Pattern | None) -> tuple[str, str] | str:
    """(student, notebook) for one file, or the reason it does not match."""
    parts = [p for p in relative.parts if p not in (assignment,)]
    name = relative.name
    found: tuple[str, str | None] | None = None
    if student_regex is not None:
        hit = student_regex.search(str(relative))
        if hit:
            groups = hit.groupdict()
            found = (groups.get("student"), groups.get("notebook"))
    if found is None and len(parts) >= 2:
        found = (parts[-2], relative.stem)
    if found is None:
        for pattern in (MOODLE, CANVAS):
            hit = pattern.match(name)
            if hit:
                found = (hit["student"], hit["notebook"])
                break
    if found is None:
        found = (relative.stem, None)
    student, notebook = found
    if notebook is None or notebook not in notebooks:
        if len(notebooks) == 1 and (notebook is None or len(parts) < 2):
            notebook = notebooks[0]
        else:
            return f"no notebook of {assignment} is called {notebook!r} ({', '.join(notebooks)})"
    if not student or not SAFE_ID.match(student):
        return f"{student!r} is not a usable student id (letters, digits, _ . @ - only)"
    return student, notebook


def _candidates(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(p in IGNORED_PARTS or p.startswith(".") for p in relative.parts):
            continue
        if path.is_file() and not path.is_symlink():
            files.append(path)
    return files


def _entries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name not in IGNORED_PARTS and p.name[0] != "."]


def _unwrap(folder: Path, assignment: str, notebooks: list[str]) -> Path:
    """A zip often wraps the whole class in one directory: step into it (only when it holds
    several entries, so that a single student's folder is never mistaken for a wrapper)."""
    entries = _entries(folder)
    while (len(entries) == 1 and entries[0].is_dir() and entries[0].name != assignment
           and len(_entries(entries[0])) > 1
           and not any((entries[0] / f"{name}.ipynb").exists() for name in notebooks)):
        folder = entries[0]
        entries = _entries(folder)
    return folder


def _extract(archive: Path, into: Path) -> list[tuple[str, str]]:
    """Unpack a .zip safely (no paths outside ``into``, no links, a total size cap)."""
    problems, total = [], 0
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = (into / info.filename).resolve()
            if info.is_dir():
                continue
            if not str(target).startswith(str(into.resolve()) + "/"):
                problems.append((info.filename, "path leaves the archive; skipped"))
                continue
            total += info.file_size
            if total > MAX_ZIP_TOTAL:
                problems.append((info.filename, "archive too large when unpacked; stopped"))
                break
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
            mtime = datetime.datetime(*info.date_time).timestamp()
            os.utime(target, (mtime, mtime))
    return problems


def collect(source: Path, course_root: Path, assignment: str, notebooks: list[str],
            max_bytes: int, student_regex: str | None = None) -> Collected:
    """Copy every usable submission into ``submitted/<student>/<assignment>/``."""
    result = Collected()
    regex = re.compile(student_regex) if student_regex else None
    with tempfile.TemporaryDirectory(prefix="bncourse-collect-") as temp:
        if source.is_file() and zipfile.is_zipfile(source):
            folder = Path(temp)
            result.problems += _extract(source, folder)
        elif source.is_dir():
            folder = source
        else:
            raise FileNotFoundError(f"submissions: expected a folder or a .zip, got {source}")
        folder = _unwrap(folder, assignment, notebooks)
        chosen: dict[tuple[str, str], Path] = {}
        for path in _candidates(folder):
            relative = PurePosixPath(path.relative_to(folder).as_posix())
            if path.suffix != ".ipynb":
                result.problems.append((str(relative), "not a notebook (.ipynb); ignored"))
                continue
            matched = match(relative, assignment, notebooks, regex)
            if isinstance(matched, str):
                result.problems.append((str(relative), matched))
                continue
            if path.stat().st_size > max_bytes:
                result.problems.append((str(relative), f"over the {max_bytes // 2**20} MB limit"))
                continue
            if matched in chosen:
                kept = max(chosen[matched], path, key=lambda p: (p.stat().st_mtime, str(p)))
                result.problems.append((str(relative), f"second submission for {matched[0]}/"
                                        f"{matched[1]}; kept the newer {kept.name}"))
                chosen[matched] = kept
            else:
                chosen[matched] = path
        for (student, notebook), path in sorted(chosen.items()):
            destination = _store(path, course_root, assignment, student, notebook, result)
            result.submissions.setdefault(student, {})[notebook] = destination
    return result


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _store(path: Path, root: Path, assignment: str, student: str, notebook: str,
           result: Collected) -> Path:
    folder = root / "submitted" / student / assignment
    destination = folder / f"{notebook}.ipynb"
    if destination.exists():
        if _digest(destination) == _digest(path):
            return destination
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S%f")
        archive = root / "submitted_archive" / student / assignment / f"{stamp}_{notebook}.ipynb"
        archive.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(destination, archive)
        result.archived.append(str(archive.relative_to(root)))
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, destination)
    stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)
    (folder / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    canvas = CANVAS.match(path.name)
    if canvas and canvas["late"]:  # Canvas marked it late: shown in the report (late.py)
        (folder / "lms_late.txt").write_text("canvas\n")
    else:
        (folder / "lms_late.txt").unlink(missing_ok=True)
    return destination


def collected(course_root: Path, assignment: str, notebooks: list[str]) -> dict[str, dict]:
    """What ``submitted/`` already holds for ``assignment``: {student: {notebook: path}}."""
    found: dict[str, dict[str, Path]] = {}
    for folder in sorted((course_root / "submitted").glob(f"*/{assignment}")):
        for notebook in notebooks:
            path = folder / f"{notebook}.ipynb"
            if path.is_file():
                found.setdefault(folder.parent.name, {})[notebook] = path
    return found


def read_timestamp(course_root: Path, assignment: str, student: str) -> datetime.datetime | None:
    path = course_root / "submitted" / student / assignment / "timestamp.txt"
    try:
        text = path.read_text().strip().removesuffix(" UTC")
        return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
    except (OSError, ValueError):
        return None
