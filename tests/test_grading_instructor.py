"""What instructors need after the grades, through the real command on one class of ten:
LMS exports parsed back against the gradebook, late penalties in grades.csv, the report's
matrix against the gradebook, the similarity ranking, and feedback math rendered offline."""

from __future__ import annotations

import csv
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from hostile import tiny_course as tiny
from hostile.tiny_course import LOW_LIMITS, require_bwrap, shared_once
from nbformat.v4 import new_markdown_cell
from nbgrader.api import Gradebook

from bncourse.grading.course import Course
from bncourse.grading.feedback import REMOTE_SCRIPT

GRADE = str(Path(sys.executable).with_name("bncourse-grade"))
FIXTURES = Path(__file__).parent / "fixtures" / "lms"
DUE = datetime.datetime(2026, 1, 10, 12, 0)  # naive UTC, as nbgrader stores due dates
MATH = r"The batch mean is $\mu_\mathcal{B} = \frac{1}{m}\sum_{i=1}^m x_i$."

# six honest solutions written differently, a renamed and reformatted copy of one of them,
# two untouched starter notebooks and one unreadable file
HONEST = {
    "alice": (tiny.STANDARDIZE, tiny.SCALE_SHIFT),
    "bob": ("def standardize(x, eps=1e-5):\n    mu = np.mean(x, 0)\n    v = np.var(x, 0)\n"
            "    return (x - mu) * (v + eps) ** -0.5\n",
            "def scale_shift(x_hat, gamma, beta):\n    out = x_hat * gamma\n    out += beta\n"
            "    return out\n"),
    "carol": ("def standardize(x, eps=1e-5):\n    n = x.shape[0]\n    s = x.sum(axis=0) / n\n"
              "    d = x - s\n    spread = (d * d).sum(axis=0) / n\n"
              "    scale = 1.0 / np.sqrt(spread + eps)\n    return d * scale\n",
              "def scale_shift(x_hat, gamma, beta):\n    shifted = np.multiply(x_hat, gamma)\n"
              "    return np.add(shifted, beta)\n"),
    # ddof=1: the unbiased variance mistake
    "erin": ("def standardize(x, eps=1e-5):\n    out = np.empty_like(x)\n"
             "    for j in range(x.shape[1]):\n        col = x[:, j]\n"
             "        out[:, j] = (col - col.mean()) / np.sqrt(col.var(ddof=1) + eps)\n"
             "    return out\n",
             "def scale_shift(x_hat, gamma, beta):\n    return beta + x_hat * gamma\n"),
    "frank": ("def standardize(x, eps=1e-5):\n    centred = x - np.average(x, axis=0)\n"
              "    return centred / np.sqrt(np.average(centred ** 2, axis=0) + eps)\n",
              "def scale_shift(x_hat, gamma, beta):\n    return beta * x_hat + gamma\n"),
    "grace": ("def standardize(x, eps=1e-5):\n    m = np.einsum('ij->j', x) / len(x)\n"
              "    c = x - m\n    var = np.einsum('ij,ij->j', c, c) / len(x)\n"
              "    return c / np.sqrt(var + eps)\n",
              "def scale_shift(x_hat, gamma, beta):\n    result = gamma * x_hat\n"
              "    return result + beta\n"),
}
COPY = ("def standardize(data, eps = 1e-5):\n    # my own implementation\n"
        "    count = data.shape[0]\n    total = data.sum(axis = 0)/count\n\n"
        "    diff = data - total\n    spread = (diff*diff).sum(axis=0) / count   # variance\n"
        "    factor = 1.0/np.sqrt(spread+eps)\n    return diff*factor\n",
        "def scale_shift(x_hat, gamma, beta):\n    tmp = np.multiply(x_hat,gamma)\n"
        "    return np.add(tmp,beta)\n")


def _time(moment: datetime.datetime) -> float:
    return moment.replace(tzinfo=datetime.UTC).timestamp()


def build(folder: Path) -> None:
    course = tiny.make_course(folder / "course")
    source = course / "solutions" / tiny.ASSIGNMENT / f"{tiny.NOTEBOOK}.ipynb"
    notebook = nbformat.read(source, as_version=4)
    notebook.cells.insert(1, new_markdown_cell(MATH))
    nbformat.write(notebook, source)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        'c.AssignLatePenalties.plugin_class = "bncourse.grading.late.PenaltyPerDay"\n'
        "c.PenaltyPerDay.fraction_per_day = 0.25\n")
    with Course(course).gradebook() as gb:  # nbgrader's own due date, set as nbgrader does
        gb.update_or_create_assignment(tiny.ASSIGNMENT, duedate=DUE)
    incoming = folder / "in"
    on_time = _time(DUE - datetime.timedelta(hours=1))
    answers = {**HONEST, "dave": COPY}
    for student, (standardize, scale_shift) in answers.items():
        nb = tiny.student_notebook(course, {"standardize_impl": standardize,
                                            "scale_shift_impl": scale_shift})
        tiny.write_student(incoming, student, nb)
    for student in ("heidi", "ivan"):  # the starter code only
        tiny.write_student(incoming, student, tiny.released(course))
    tiny.write_student(incoming, "judy", "{ this is not a notebook")
    for path in incoming.iterdir():
        os.utime(path, (on_time, on_time))
    # bob: 30 h late -> two started days -> half his score; frank: 5 h late with 6 h extension
    os.utime(incoming / "bob.ipynb", (_time(DUE + datetime.timedelta(hours=30)),) * 2)
    os.utime(incoming / "frank.ipynb", (_time(DUE + datetime.timedelta(hours=5)),) * 2)
    # grace's file carries Canvas's _late token although its time is before the due date
    (incoming / "grace.ipynb").rename(incoming / "grace_late_101_202_tiny.ipynb")
    (folder / "extensions.csv").write_text("student_id,hours\nfrank,6\nnobody,1\n")
    done = subprocess.run(
        [GRADE, tiny.ASSIGNMENT, str(incoming), "--course-dir", str(course), "--checks",
         tiny.CHECKS, *LOW_LIMITS, "--workers", "2", "--extensions",
         str(folder / "extensions.csv"), "--export", "canvas,moodle,gradescope,csv"],
        capture_output=True, text=True, timeout=600)
    (folder / "console.txt").write_text(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    require_bwrap()
    return shared_once(tmp_path_factory, "instructor_class", build) / "course"


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def gradebook_scores(course: Path) -> dict[str, dict]:
    """{student: {"score", "penalty", "max", "grades": {test: score}}} from nbgrader."""
    found = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for submission in gb.assignment_submissions(tiny.ASSIGNMENT):
            grades = {g.name: g.score for nb in submission.notebooks for g in nb.grades}
            found[submission.student.id] = {
                "score": max(0.0, submission.score - submission.late_submission_penalty),
                "penalty": submission.late_submission_penalty,
                "max": submission.max_score, "grades": grades}
    return found


def test_late_submission_gets_the_configured_penalty_in_grades_csv(course):
    grades = {r["student_id"]: r for r in read_csv(course / "grades.csv")}
    assert float(grades["bob"]["raw_score"]) == 4.0
    assert float(grades["bob"]["late_submission_penalty"]) == 2.0  # 2 days x 0.25 x 4
    assert float(grades["bob"]["score"]) == 2.0
    assert float(grades["frank"]["late_submission_penalty"]) == 0.0  # extension covers it
    assert float(grades["alice"]["late_submission_penalty"]) == 0.0
    late = {r["student"]: r for r in read_csv(course / "reports" / tiny.ASSIGNMENT / "late.csv")}
    assert set(late) == {"bob", "grace"}
    assert late["bob"]["late_by"] == "1 d 6 h 0 min" and late["bob"]["late_submission_penalty"] == "2"
    assert late["grace"]["lms_marked_late"] == "yes"
    scores = {r["student"]: r for r in read_csv(course / "reports" / tiny.ASSIGNMENT / "scores.csv")}
    assert scores["bob"]["score"] == "4" and scores["bob"]["after_late_penalty"] == "2"
    assert "extension for nobody: no submission" in (course.parent / "console.txt").read_text()


def _check_keys(ours: dict, documented: dict, where: str) -> None:
    unknown = set(ours) - set(documented)
    assert not unknown, f"{where}: keys the documentation does not define: {unknown}"
    for key, value in ours.items():
        expected = type(documented[key])
        if expected is float:
            assert isinstance(value, int | float), f"{where}.{key} should be a number"
        else:
            assert isinstance(value, expected), f"{where}.{key} should be {expected.__name__}"


def test_exports_follow_the_documented_formats_and_match_the_gradebook(course):
    book = gradebook_scores(course)
    out = course / "exports" / tiny.ASSIGNMENT
    # Canvas: the documented identity columns, a Points Possible row, one row per student
    with open(out / "canvas.csv", newline="") as ours, open(FIXTURES / "canvas_gradebook_import.csv",
                                                               newline="") as doc:
        rows, fixture = list(csv.reader(ours)), list(csv.reader(doc))
    assert rows[0][:5] == fixture[0][:5] and rows[0][5] == tiny.ASSIGNMENT
    assert rows[1][0] == fixture[1][0] == "Points Possible" and float(rows[1][5]) == 5.0
    canvas = {r[3]: r[5] for r in rows[2:]}
    # Moodle: the documented column names; ID number carries the nbgrader id
    fixture_header = read_csv(FIXTURES / "moodle_grade_import.csv")[0].keys()
    moodle = read_csv(out / "moodle.csv")
    assert list(moodle[0])[:4] == list(fixture_header)[:4]
    moodle_scores = {r["ID number"]: r[tiny.ASSIGNMENT] for r in moodle}
    by_test = {r["student_id"]: r for r in read_csv(out / "grades_by_test.csv")}
    documented = json.loads((FIXTURES / "gradescope_results.json").read_text())
    journal = course / ".bncourse-grade" / tiny.ASSIGNMENT / "journal"
    for student, expected in book.items():
        assert float(canvas[student]) == pytest.approx(expected["score"]), student
        assert float(moodle_scores[student]) == pytest.approx(expected["score"]), student
        assert float(by_test[student]["score"]) == pytest.approx(expected["score"]), student
        for test, score in expected["grades"].items():
            assert float(by_test[student][test]) == pytest.approx(score or 0.0)
        results = json.loads((out / "gradescope" / student / "results.json").read_text())
        _check_keys(results, documented, "results")
        assert results["score"] == pytest.approx(expected["score"])
        parts = {p["id"]: p for p in json.loads(
            (journal / student / f"{tiny.NOTEBOOK}.json").read_text())["parts"]}
        for test in results["tests"]:
            _check_keys(test, documented["tests"][0], "tests[]")
            assert test["score"] == pytest.approx(expected["grades"][test["name"]] or 0.0)
            assert test["visibility"] in {"hidden", "after_due_date", "after_published",
                                          "visible"}
            part = parts.get(test["name"])
            if part is not None:
                assert test["visibility"] == ("after_published" if part["hidden"]
                                              else "visible")
                assert test["output"] == ("passed" if part["passed"] else part["message"])
    erin = json.loads((out / "gradescope" / "erin" / "results.json").read_text())
    hidden = next(t for t in erin["tests"] if t["name"] == "00_tiny-standardize_hidden")
    assert hidden["visibility"] == "after_published" and "m - 1" in hidden["output"]
    assert set(book) == set(canvas) == set(moodle_scores)  # judy too, with her 0


def test_report_matrix_agrees_with_the_gradebook(course):
    book = gradebook_scores(course)
    out = course / "reports" / tiny.ASSIGNMENT
    matrix = {r["student"]: r for r in read_csv(out / "matrix.csv")}
    assert set(matrix) == set(book)
    for student, expected in book.items():
        for test, score in expected["grades"].items():
            if test in matrix[student]:  # autograded tests; the written answer is manual
                assert float(matrix[student][test]) == pytest.approx(score or 0.0)
    assert matrix["judy"]["status"] == "not gradable"


def test_report_says_who_struggled_with_what(course):
    out = course / "reports" / tiny.ASSIGNMENT
    mistakes = {r["mistake"]: r for r in read_csv(out / "mistakes.csv")}
    assert mistakes["unbiased_variance"]["who"] == "erin"
    assert mistakes["unbiased_variance"]["name"] == "unbiased variance"
    assert set(mistakes["gamma_beta_swapped"]["who"].split()) == {"frank"}
    assert "not_graded" not in mistakes
    assert not any("judy" in r["who"].split() for r in mistakes.values())
    tests = {r["test"]: r for r in read_csv(out / "tests.csv")}
    # judy's unreadable file is left out of every denominator: 9 gradable notebooks
    assert {int(r["submissions"]) for r in tests.values()} == {9}
    assert tests["00_tiny-scale_shift"]["pass_rate"] == f"{6 / 9:.3f}"
    assert -1.0 <= float(tests["00_tiny-standardize"]["discrimination"]) <= 1.0
    page = (out / "report.html").read_text()
    assert "../../feedback/erin/00_tiny/tiny.html" in page  # links to the feedback
    problems = read_csv(out / "problems.csv")
    assert any(r["file_or_student"] == "judy/tiny" for r in problems)
    assert "not gradable: judy/tiny:" in (course.parent / "console.txt").read_text()


def test_similarity_ranks_the_copied_pair_first_and_ignores_the_starter(course):
    out = course / "reports" / tiny.ASSIGNMENT
    pairs = read_csv(out / "similarity.csv")
    assert {pairs[0]["student_a"], pairs[0]["student_b"]} == {"carol", "dave"}
    assert float(pairs[0]["similarity"]) > 0.8
    assert all(float(p["similarity"]) < 0.5 for p in pairs[1:])
    named = {p["student_a"] for p in pairs} | {p["student_b"] for p in pairs}
    assert not named & {"heidi", "ivan"}
    assert "<span class='same'>" in (out / "report.html").read_text()


def test_feedback_math_renders_offline_in_chromium(course):
    from browser import Browser

    folder = course / "feedback" / "alice" / tiny.ASSIGNMENT
    page = folder / f"{tiny.NOTEBOOK}.html"
    text = page.read_text()
    # no script from the network (mermaid's loader stays, and imports only for diagrams)
    assert not REMOTE_SCRIPT.search(text) and "mathjax/tex-svg-full.js" in text
    assert (folder / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000
    browser = Browser()
    try:
        browser.call("Network.enable")
        browser.call("Network.emulateNetworkConditions", offline=True, latency=0,
                     downloadThroughput=-1, uploadThroughput=-1)
        report = browser.open(page.as_uri())
        typeset = browser.call(
            "Runtime.evaluate", returnByValue=True, awaitPromise=True,
            expression="(async () => { await MathJax.startup.promise; return JSON.stringify({"
            "n: document.querySelectorAll('mjx-container').length, "
            "raw: document.body.innerText.includes('\\\\mu_')}); })()")
    finally:
        browser.close()
    found = json.loads(typeset["result"]["value"])
    assert report.mathjax_loaded and not report.console_errors
    assert found["n"] >= 1 and not found["raw"]


def test_errors_are_split_by_the_hint_the_student_received():
    from bncourse.grading.report import mistake_key

    broadcast = {"mistake": "exception", "message": "batchnorm_forward (case 2) raised "
                 "ValueError: operands could not be broadcast together with shapes (4,3,2,2) "
                 "(3,). Hint: reshape gamma to (1, C, 1, 1)"}
    pair = {"mistake": "exception", "message": "batchnorm_forward raised TypeError: "
            "batchnorm_forward should return a pair (out, cache), got None"}
    plain = {"mistake": "exception", "message": "standardize raised ZeroDivisionError: boom"}
    assert mistake_key(broadcast) == ("exception: arrays could not be broadcast",
                                      "raised an error: arrays could not be broadcast "
                                      "(hint given)")
    assert mistake_key(pair)[0] == "exception: did not return a pair"
    assert mistake_key(plain) == ("exception: ZeroDivisionError", "raised ZeroDivisionError")
    assert mistake_key({"mistake": "nchw_reshape"})[1] == "nchw reshape"


def test_histogram_bars_sit_on_attainable_scores_and_discrimination_is_pearson():
    import numpy as np

    from bncourse.grading.report import attainable_scores, pearson

    results = [{"parts": [{"id": "a", "points": 2.0}, {"id": "b", "points": 1.0},
                          {"id": "c", "points": 0.5}]}]
    assert attainable_scores(results) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    xs, ys = [0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 3.0, 2.5, 0.5, 2.0]
    assert pearson(xs, ys) == pytest.approx(np.corrcoef(xs, ys)[0, 1], rel=1e-12)
    assert pearson([1.0, 1.0, 1.0], ys[:3]) is None  # a test everyone passed: undefined


def test_bad_extensions_and_formats_are_named(tmp_path):
    from bncourse.grading import export, late

    path = tmp_path / "ext.csv"
    path.write_text("student,hours\nbob,2\n")
    with pytest.raises(ValueError, match="expected a header with student_id"):
        late.read_extensions(path)
    path.write_text("student_id,hours\nbob,two\n")
    with pytest.raises(ValueError, match="line 2: hours should be a number, got 'two'"):
        late.read_extensions(path)
    with pytest.raises(ValueError, match="expected formats among canvas"):
        export.parse_formats("canvas,blackboard")


def test_export_step_alone_rewrites_the_same_files_from_the_gradebook(course, tmp_path):
    from bncourse.grading.cli import main

    code = main([tiny.ASSIGNMENT, "--course-dir", str(course), "--checks", tiny.CHECKS,
                 "--quiet", "--steps", "export", "--export", "canvas,moodle",
                 "--export-dir", str(tmp_path), "--lms-column", "BN transform (12345)"])
    assert code == 0
    first = (course / "exports" / tiny.ASSIGNMENT / "canvas.csv").read_text()
    again = (tmp_path / "canvas.csv").read_text()
    assert again.splitlines()[0].endswith(",BN transform (12345)")
    assert again.splitlines()[1:] == first.splitlines()[1:]


def test_help_documents_the_instructor_options(capsys):
    from bncourse.grading.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in ("--export", "--export-dir", "--lms-column", "--extensions"):
        assert option in text
