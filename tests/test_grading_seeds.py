"""Per-student hidden cases through the real command, on a class of three graded twice:
the same student regraded gets the same case set, two students get different ones, visible
cases are the same for everyone, the instructor's solution keeps full marks, a named mistake
stays named, ``--replay`` rebuilds a student's cases, and the course secret appears in no
file the grader writes."""

from __future__ import annotations

import csv
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hostile import tiny_course as tiny
from hostile.tiny_course import require_bwrap, shared_once

from bncourse.grading import seeds
from bncourse.grading.cli import build_parser, fingerprint
from bncourse.grading.harness import load_case
from bncourse.grading.sandbox import Limits
from bncourse.grading.worker import cases_digest

slow = pytest.mark.slow  # end to end: deselect with -m "not slow" for a quick loop

GRADE = str(Path(sys.executable).with_name("bncourse-grade"))
# Wide limits: these tests are about which cases are drawn, not about speed (10x what the
# tiny notebook takes on a loaded 2-core machine).
LIMITS = ["--sandbox", "bwrap", "--cell-timeout", "30", "--case-timeout", "30", "--timeout", "120"]
UNBIASED = ("def standardize(x, eps=1e-5):\n"
            "    return (x - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + eps)\n")
HIDDEN, VISIBLE = "00_tiny-standardize_hidden", "00_tiny-standardize"


def grade(course: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([GRADE, tiny.ASSIGNMENT, "incoming", "--checks", tiny.CHECKS, *LIMITS,
                           "--workers", "2", *extra], cwd=course, capture_output=True, text=True,
                          timeout=600)


def journal(course: Path) -> dict[str, dict]:
    folder = course / ".bncourse-grade" / tiny.ASSIGNMENT / "journal"
    return {path.parent.name: json.loads(path.read_text()) for path in folder.glob("*/*.json")}


def build(folder: Path) -> None:
    course = tiny.make_course(folder / "course")
    for student, replace in {"ana": {}, "ben": {}, "cat": {"standardize_impl": UNBIASED}}.items():
        tiny.write_student(course / "incoming", student, tiny.student_notebook(course, replace))
    runs = {"first": grade(course), "regraded": grade(course, "--regrade", "--steps", "autograde")}
    for name, done in runs.items():
        (folder / f"{name}.txt").write_text(done.stderr)
        assert done.returncode == 0, done.stderr[-3000:]
        (folder / f"{name}.json").write_text(json.dumps(journal(course)))


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    require_bwrap()
    return shared_once(tmp_path_factory, "seeded_class", build)


def runs(graded: Path) -> tuple[dict, dict]:
    return (json.loads((graded / "first.json").read_text()),
            json.loads((graded / "regraded.json").read_text()))


@slow
def test_the_secret_is_created_once_readable_by_its_owner_only(graded):
    path = graded / "course" / seeds.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(seeds.read_secret(path)) == seeds.SECRET_BYTES
    assert "created the course secret" in (graded / "first.txt").read_text()
    assert "created the course secret" not in (graded / "regraded.txt").read_text()


@slow
def test_a_regraded_student_gets_the_same_cases_and_two_students_different_ones(graded):
    first, again = runs(graded)
    assert set(first) == {"ana", "ben", "cat"}
    for student in first:
        assert first[student]["case_set"] == again[student]["case_set"] != "fixed"
        assert first[student]["case_digests"] == again[student]["case_digests"]
    assert len({r["case_set"] for r in first.values()}) == 3
    assert len({r["case_digests"][HIDDEN] for r in first.values()}) == 3
    # visible cases: the same for everyone (what the student's own checks ran on)
    assert len({r["case_digests"][VISIBLE] for r in first.values()}) == 1


@slow
def test_correct_work_keeps_full_marks_and_a_mistake_stays_named(graded):
    first, again = runs(graded)
    assert "the instructor's solution" in (graded / "first.txt").read_text()
    for results in (first, again):
        assert results["ana"]["score"] == results["ben"]["score"] == 4.0
        parts = {p["id"]: p for p in results["cat"]["parts"]}
        assert parts[HIDDEN]["mistake"] == parts[VISIBLE]["mistake"] == "unbiased_variance"


@slow
def test_the_feedback_page_and_the_report_name_the_case_set(graded):
    first, _ = runs(graded)
    page = graded / "course" / "feedback" / "ana" / tiny.ASSIGNMENT / f"{tiny.NOTEBOOK}.html"
    assert f"case set <code>{first['ana']['case_set']}</code>" in page.read_text()
    with open(graded / "course" / "reports" / tiny.ASSIGNMENT / "scores.csv", newline="") as stream:
        rows = {row["student"]: row["case_set"] for row in csv.DictReader(stream)}
    assert rows == {student: result["case_set"] for student, result in first.items()}


@slow
def test_replay_rebuilds_the_cases_a_student_was_graded_on(graded, tmp_path):
    course = graded / "course"
    done = subprocess.run([GRADE, tiny.ASSIGNMENT, "--checks", tiny.CHECKS, "--replay", "ben"],
                          cwd=course, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    first, _ = runs(graded)
    assert first["ben"]["case_set"] in done.stderr
    out = course / ".bncourse-grade" / tiny.ASSIGNMENT / "replay" / "ben"
    for part_id, digest in first["ben"]["case_digests"].items():
        folder = out / part_id
        cases = [load_case(folder, i) for i in range(len(list(folder.glob("*.npz"))))]
        assert cases_digest(cases) == digest, part_id


@slow
def test_the_secret_and_the_seeds_appear_in_no_file_the_grader_writes(graded):
    course = graded / "course"
    secret = seeds.read_secret(course / seeds.SECRET_FILE)
    needles = [secret.hex().encode()] + [
        str(seeds.student_seed(secret, tiny.ASSIGNMENT, s)).encode() for s in ("ana", "ben", "cat")]
    written = [p for p in course.rglob("*") if p.is_file() and p.name != seeds.SECRET_FILE]
    released = [p for p in written if "release" in p.parts]
    assert released and any("feedback" in p.parts for p in written)
    for path in written:
        data = path.read_bytes()
        assert not any(needle in data for needle in needles), path


@slow
def test_a_malformed_secret_stops_the_run_with_a_clear_error(graded, tmp_path):
    bad = tmp_path / "secret"
    bad.write_text("not hex\n")
    done = grade(graded / "course", "--steps", "autograde", "--secret", str(bad))
    assert done.returncode == 2, done.stderr
    assert f"the course secret {bad}: expected 64 hex digits" in done.stderr


# --------------------------------------------------------------------------- the secret and the seed


def test_a_new_secret_is_never_written_over_an_existing_file(tmp_path):
    secret, note = seeds.course_secret(tmp_path)
    assert "created the course secret" in note and len(secret) == seeds.SECRET_BYTES
    assert seeds.course_secret(tmp_path) == (secret, None)  # read back, not made again
    with pytest.raises(FileExistsError):
        seeds.create_secret(tmp_path / seeds.SECRET_FILE)


@pytest.mark.parametrize("text", ["", "abc", "g" * 64, "ab" * 33])
def test_a_malformed_secret_is_refused_naming_the_file(tmp_path, text):
    path = tmp_path / "secret"
    path.write_text(text)
    with pytest.raises(seeds.SecretError, match=f"the course secret {path}: expected 64 hex"):
        seeds.read_secret(path)
    with pytest.raises(seeds.SecretError, match="--secret: expected an existing secret file"):
        seeds.course_secret(tmp_path, tmp_path / "missing")


def test_seeds_depend_on_the_secret_the_assignment_and_the_student():
    one, two = bytes(32), bytes([1]) + bytes(31)
    seed = seeds.student_seed(one, "03_bn_transform", "ana")
    assert seed == seeds.student_seed(one, "03_bn_transform", "ana") < 2**64
    others = {seeds.student_seed(two, "03_bn_transform", "ana"),
              seeds.student_seed(one, "04_backprop", "ana"),
              seeds.student_seed(one, "03_bn_transform", "ben")}
    assert seed not in others and len(others) == 3
    assert seeds.case_set_id(seed) != seeds.case_set_id(seed + 1)
    assert len(seeds.case_set_id(seed)) == 8 and seeds.case_set_id(None) == "fixed"


def test_a_changed_secret_changes_the_fingerprint_so_everyone_is_regraded():
    args = build_parser().parse_args([tiny.ASSIGNMENT, "--checks", tiny.CHECKS])
    stamps = {fingerprint(args, Limits(), "bwrap", {}, digest)
              for digest in (seeds.secret_digest(bytes(32)), seeds.secret_digest(bytes(31) + b"\1"),
                             "fixed")}
    assert len(stamps) == 3
