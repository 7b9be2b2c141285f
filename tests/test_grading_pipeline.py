"""bncourse-grade end to end: Dask, kill -9 and resume, re-runs, LMS zips, the fallback."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from hostile import tiny_course as tiny
from hostile.corpus import WRONG_STANDARDIZE
from hostile.tiny_course import LOW_LIMITS, require_bwrap
from nbgrader.api import Gradebook

from bncourse.grading.cli import main

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow" for a quick loop

GRADE = str(Path(sys.executable).with_name("bncourse-grade"))
SWAPPED = "def scale_shift(x_hat, gamma, beta):\n    return beta * x_hat + gamma\n"
SLOW = "import time\ntime.sleep(1.0)\n" + tiny.STANDARDIZE


def make_class(course: Path, folder: Path, count: int) -> None:
    """``count`` students cycling through right, wrong, swapped and slow answers."""
    answers = [{}, {"standardize_impl": WRONG_STANDARDIZE}, {"scale_shift_impl": SWAPPED},
               {"standardize_impl": SLOW}]
    for index in range(count):
        notebook = tiny.student_notebook(course, answers[index % len(answers)])
        tiny.write_student(folder, f"s{index:02d}", notebook)


def args(course: Path, *extra: str) -> list[str]:
    return ["--course-dir", str(course), "--checks", tiny.CHECKS, "--quiet", *LOW_LIMITS,
            *extra]


def journal(course: Path) -> dict[str, dict]:
    folder = course / ".bncourse-grade" / tiny.ASSIGNMENT / "journal"
    return {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/*.json")}


def essentials(results: dict[str, dict]) -> dict:
    """What must not depend on how the grading was scheduled."""
    return {s: (r["score"], r["parts"], r["flags"], r["problems"], r["cells"])
            for s, r in results.items()}


def scores(course: Path) -> dict[str, tuple]:
    with open(course / "grades.csv", newline="") as stream:
        return {r["student_id"]: (r["raw_score"], r["score"], r["max_score"])
                for r in csv.DictReader(stream)}


@pytest.fixture
def course(tmp_path):
    require_bwrap()
    return tiny.make_course(tmp_path / "course")


def test_dask_cluster_gives_the_same_results_as_one_by_one(tmp_path, course):
    from distributed import LocalCluster

    make_class(course, tmp_path / "in", 3)
    other = tiny.make_course(tmp_path / "other")
    make_class(other, tmp_path / "in_other", 3)
    assert main([tiny.ASSIGNMENT, str(tmp_path / "in"), *args(course, "--workers", "1")]) == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        code = main([tiny.ASSIGNMENT, str(tmp_path / "in_other"),
                     *args(other, "--scheduler", cluster.scheduler_address)])
    assert code == 0
    assert essentials(journal(course)) == essentials(journal(other))
    assert scores(course) == scores(other)
    assert {s: r[0] for s, r in scores(course).items()} == {
        "s00": "4.0", "s01": "1.0", "s02": "3.0"}


def gradebook_is_whole(course: Path) -> int:
    """Every recorded submission has every autograded score (never half-written)."""
    with Gradebook("sqlite:///" + str(course / "gradebook.db")) as gb:
        submissions = gb.assignment_submissions(tiny.ASSIGNMENT)
        for submission in submissions:
            for notebook in submission.notebooks:
                autograded = [g for g in notebook.grades if g.cell.cell_type == "code"]
                assert autograded and all(g.auto_score is not None for g in autograded)
        return len(submissions)


def test_killed_run_resumes_without_losing_or_double_counting(tmp_path, course):
    make_class(course, tmp_path / "in", 6)
    command = [GRADE, tiny.ASSIGNMENT, str(tmp_path / "in"), *args(course, "--workers", "1")]
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    folder = course / ".bncourse-grade" / tiny.ASSIGNMENT / "journal"
    deadline = time.monotonic() + 600  # a cap only: the loop ends when two are journaled
    while len(list(folder.glob("*/*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = len(list(folder.glob("*/*.json")))
    assert 2 <= done < 6, "the run should have been killed midway"
    assert gradebook_is_whole(course) <= done
    verbose = [part for part in command if part != "--quiet"]
    rerun = subprocess.run(verbose, capture_output=True, text=True, check=True)
    assert f"{6 - done} to grade, {done} already graded" in rerun.stderr
    assert gradebook_is_whole(course) == 6
    reference = tiny.make_course(tmp_path / "reference")
    make_class(reference, tmp_path / "in_reference", 6)
    assert main([tiny.ASSIGNMENT, str(tmp_path / "in_reference"),
                 *args(reference, "--workers", "2")]) == 0
    assert scores(course) == scores(reference)
    assert essentials(journal(course)) == essentials(journal(reference))


def test_rerun_is_idempotent_and_keeps_every_submission(tmp_path, course, capsys):
    make_class(course, tmp_path / "in", 2)
    assert main([tiny.ASSIGNMENT, str(tmp_path / "in"), *args(course, "--workers", "1")]) == 0
    first = scores(course)
    verbose = [part for part in args(course) if part != "--quiet"]
    assert main([tiny.ASSIGNMENT, str(tmp_path / "in"), *verbose]) == 0
    assert "0 to grade, 2 already graded" in capsys.readouterr().err
    assert scores(course) == first
    # s01 hands in a corrected notebook: regraded, the first version kept in the archive
    tiny.write_student(tmp_path / "in", "s01", tiny.student_notebook(course))
    assert main([tiny.ASSIGNMENT, str(tmp_path / "in"), *args(course)]) == 0
    assert scores(course)["s01"][0] == "4.0" and scores(course)["s00"] == first["s00"]
    archived = list((course / "submitted_archive" / "s01" / tiny.ASSIGNMENT).glob("*.ipynb"))
    assert len(archived) == 1 and "ddof=1" in archived[0].read_text()
    assert gradebook_is_whole(course) == 2


def test_zip_with_lms_names_is_collected_into_nbgrader_layout(tmp_path, course):
    good = json.dumps(tiny.student_notebook(course))
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("export/alice_12345_67890_tiny.ipynb", good)
        zipped.writestr("export/bob_late_222_333_tiny-1.ipynb", good)
        zipped.writestr("export/Carol Smith_4444_assignsubmission_file_tiny.ipynb", good)
        zipped.writestr("export/dave/tiny.ipynb", good)
        zipped.writestr("export/erin/00_tiny/tiny.ipynb", good)
        zipped.writestr("export/dave_777_888_tiny.ipynb", good)  # dave, a second time
        zipped.writestr("export/__MACOSX/._alice_12345_67890_tiny.ipynb", "junk")
        zipped.writestr("export/report.pdf", "%PDF")
        zipped.writestr("../escape.ipynb", good)
    assert main([tiny.ASSIGNMENT, str(archive), *args(course, "--steps", "collect")]) == 0
    submitted = sorted(p.relative_to(course / "submitted").as_posix()
                       for p in (course / "submitted").rglob("*.ipynb"))
    assert submitted == [f"{s}/00_tiny/tiny.ipynb" for s in
                         ("4444", "alice", "bob", "dave", "erin")]
    problems = json.loads((course / ".bncourse-grade" / tiny.ASSIGNMENT /
                           "collect_problems.json").read_text())
    named = " ".join(name for name, _ in problems)
    assert "report.pdf" in named and "escape" in named
    assert any("second submission for dave/tiny" in why for _, why in problems)
    assert not (tmp_path / "escape.ipynb").exists()


def test_rlimits_fallback_still_contains_loops_and_grades(tmp_path, course):
    make_class(course, tmp_path / "in", 2)
    broken = tiny.student_notebook(course, {"scale_shift_impl": "while True:\n    pass\n"})
    tiny.write_student(tmp_path / "in", "looper", broken)
    options = args(course, "--workers", "1")
    options[options.index("bwrap")] = "rlimits"
    assert main([tiny.ASSIGNMENT, str(tmp_path / "in"), *options]) == 0
    results = journal(course)
    assert results["looper"]["score"] == 3
    assert any("time limit" in p for p in results["looper"]["problems"])
    assert results["s00"]["sandbox"]["mode"] == "rlimits"
    page = (course / "reports" / tiny.ASSIGNMENT / "report.html").read_text()
    assert "graded without bubblewrap" in page


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in ("--course-dir", "--checks", "--workers", "--scheduler", "--sandbox",
                   "--cell-timeout", "--timeout", "--memory", "--max-procs", "--max-output",
                   "--steps", "--regrade", "--student-regex", "--max-notebook-size"):
        assert option in text
