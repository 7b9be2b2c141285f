"""``bncourse-grade ASSIGNMENT SUBMISSIONS``: collect, autograde, feedback, report in one run.

Run ``bncourse-grade --help`` for every option. The steps can also run one at a time with
``--steps`` (e.g. ``--steps collect`` then ``--steps autograde,feedback,report``).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat

from bncourse.grading import backends, export, feedback, gradebook, late, report, seeds, similarity, validate
from bncourse.grading import collect as collecting
from bncourse.grading.course import Course
from bncourse.grading.journal import Journal, atomic_write
from bncourse.grading.sandbox import Limits, SandboxUnavailableError, resolve_mode
from bncourse.grading.worker import INTERNAL_ERROR, RESULT_VERSION, grade_and_render, write_replay

STEPS = ("collect", "autograde", "feedback", "report", "export")
DEFAULT_STEPS = ["collect", "autograde", "feedback", "report"]  # export: when --export is given
CANARY_FAILED = 3  # exit status when the instructor's solution is not graded full marks


def parse_size(text: str) -> int:
    """'512M', '4G', '100k' or a number of bytes -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size such as 512M or 4G, got {text!r}")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match[2].lower()]
    return int(float(match[1]) * scale)


def parse_steps(text: str) -> list[str]:
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise argparse.ArgumentTypeError(f"expected steps among {','.join(STEPS)}, got {text!r}")
    return steps


def parse_formats(text: str) -> list[str]:
    try:
        return export.parse_formats(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


SWITCH = "switch"  # in the option table: a flag without a value (store_true)


def option_table(defaults: Limits) -> dict[str, list[tuple[str, object, object, str]]]:
    """Every option of ``bncourse-grade`` by help group: (flag, type or SWITCH, default, help)."""
    return {
        "course": [
            ("--course-dir", Path, Path("."), "nbgrader course directory (default: current directory)"),
            ("--source-dir", str, None, "folder of instructor notebooks (default: nbgrader_config.py's "
             "source_directory, else 'solutions')"),
            ("--checks", str, "bncourse.checks", "module (or .py file) defining PARTS (default: bncourse.checks)"),
            ("--student-regex", str, None, "regex with a named group 'student' (and optionally 'notebook') "
             "for submission file names the built-in patterns do not know"),
            ("--report-dir", Path, None, "where the report goes (default: COURSE/reports/ASSIGNMENT)"),
            ("--grades", Path, None, "grades.csv path (default: COURSE/grades.csv)"),
        ],
        "per-student hidden cases": [
            ("--secret", Path, None, "the course secret that seeds each student's hidden cases (default: "
             f"COURSE/{seeds.SECRET_FILE}, created on first use)"),
            ("--fixed-cases", SWITCH, False, "grade everyone on the same fixed hidden cases (as plain "
             "nbgrader autograde does)"),
            ("--replay", str, None, "write the cases STUDENT was graded on into "
             "COURSE/.bncourse-grade/ASSIGNMENT/replay/STUDENT/ and stop"),
        ],
        "running": [
            ("--steps", parse_steps, DEFAULT_STEPS, "comma-separated steps to run (default: collect,autograde,"
             "feedback,report; export runs too when --export is given)"),
            ("--workers", int, os.cpu_count() or 1, "local worker processes (default: one per core)"),
            ("--scheduler", str, None, "address of a running Dask scheduler (tcp://host:8786) to grade on "
             "instead of the local pool"),
            ("--regrade", SWITCH, False, "grade again even submissions whose result is already journaled"),
            ("--scratch", Path, None, "folder for per-submission temporary files (default: system temp)"),
            ("--quiet", SWITCH, False, "no progress lines"),
        ],
        "late work and exports": [
            ("--extensions", Path, None, "CSV of extensions (student_id and any of weeks,days,hours,minutes), "
             "granted in the gradebook before late penalties are computed"),
            ("--export", parse_formats, [], "write grades for an LMS: comma-separated among canvas,moodle,"
             "gradescope,csv (into COURSE/exports/ASSIGNMENT)"),
            ("--export-dir", Path, None, "where exports go (default: COURSE/exports/ASSIGNMENT)"),
            ("--lms-column", str, None, "the assignment's column name in the LMS (default: ASSIGNMENT)"),
        ],
        "sandbox and limits": [
            ("--sandbox", ("auto", "bwrap", "rlimits"), "auto", "bwrap: bubblewrap + rlimits (required: fail "
             "if missing); rlimits: no bubblewrap (weaker, see README); auto: bwrap when installed"),
            ("--cell-timeout", float, defaults.cell_timeout, f"seconds per cell (default {defaults.cell_timeout:g})"),
            ("--case-timeout", float, defaults.case_timeout,
             f"seconds per checked case (default {defaults.case_timeout:g})"),
            ("--timeout", float, defaults.notebook_timeout,
             f"seconds per notebook (default {defaults.notebook_timeout:g})"),
            ("--memory", parse_size, defaults.memory, "address-space limit per notebook (default 4G)"),
            ("--max-procs", int, defaults.max_procs, f"processes+threads per notebook (default {defaults.max_procs})"),
            ("--max-output", parse_size, defaults.max_output,
             "printed output per notebook before it is stopped (default 2M)"),
            ("--max-notebook-size", parse_size, 50 * 2**20, "larger notebooks are not graded (default 50M)"),
        ],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bncourse-grade",
        description="Grade a whole class of nbgrader notebooks: collect the submissions into "
        "nbgrader's layout, run each in its own sandbox, judge every test outside it, write "
        "nbgrader's gradebook, autograded notebooks, feedback HTML, grades.csv and a report.",
    )
    parser.add_argument("assignment", help="assignment name, e.g. 03_bn_transform")
    parser.add_argument("submissions", nargs="?", type=Path,
                        help="folder or .zip of submissions (needed by the collect step)")
    for title, options in option_table(Limits()).items():
        group = parser.add_argument_group(title)
        for flag, kind, default, text in options:
            if kind == SWITCH:
                group.add_argument(flag, action="store_true", help=text)
            elif isinstance(kind, tuple):  # the allowed values
                group.add_argument(flag, default=default, choices=kind, help=text)
            else:
                group.add_argument(flag, type=kind, default=default, help=text)
    return parser


def limits_from(args) -> Limits:
    return Limits(cell_timeout=args.cell_timeout, case_timeout=args.case_timeout,
                  notebook_timeout=args.timeout, memory=args.memory, max_procs=args.max_procs,
                  max_output=args.max_output)


class Progress:
    """done/total, failures so far and an estimate of the time left, on stderr."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.done, self.failed = total, quiet, 0, 0
        self.start = time.monotonic()

    def update(self, label: str, result: dict | None) -> None:
        self.done += 1
        self.failed += result is None or result["status"] == "error" or result["score"] < result[
            "max_score"]
        if self.quiet:
            return
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done)
        score = "internal error" if result is None else (
            f"{result['score']:g}/{result['max_score']:g}"
            + (" (not gradable)" if result["status"] == "error" else "")
            + (" [flagged]" if result["flags"] else ""))
        print(f"[{self.done}/{self.total}] {label}: {score}; not full marks so far: "
              f"{self.failed}; ~{left:.0f} s left", file=sys.stderr, flush=True)


PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the bncourse this grader runs


def checks_digest(spec: str) -> str:
    """SHA-256 of every Python file of the bncourse package (what the judges import, whatever
    it is), plus the checks when they live elsewhere (a .py file, or every file of another
    package), so that fixing a check or the reference regrades instead of reusing old results."""
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    if spec.endswith(".py"):
        files.append(Path(spec))
    elif spec.split(".")[0] != "bncourse":  # checks of another package: all of that package
        found = importlib.util.find_spec(spec.split(".")[0])
        folders = list(found.submodule_search_locations or []) if found else []
        files += sorted(p for folder in folders for p in Path(folder).rglob("*.py"))
        files += [Path(found.origin)] if found and not folders and found.origin else []
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(PACKAGE_DIR) if path.is_relative_to(PACKAGE_DIR)
                          else path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(args, limits: Limits, mode: str, released: dict[str, str], secret: str) -> str:
    """What a journaled result depends on besides the notebook; a change means regrading.
    ``released``: notebook name -> released notebook (JSON); ``secret``: the course secret's
    digest (``seeds.secret_digest``, or "fixed"), so a new secret regrades."""
    data = json.dumps([RESULT_VERSION, args.checks, checks_digest(args.checks),
                       limits.as_dict(), mode, args.max_notebook_size, released, secret],
                      sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


class Grader:
    """One run of the pipeline over one assignment."""

    def __init__(self, args) -> None:
        self.args = args
        self.course = Course(args.course_dir, args.source_dir)
        self.assignment = args.assignment
        self.state = self.course.state / self.assignment
        self.journal = Journal(self.course, self.assignment)
        self.limits = limits_from(args)
        self.checks = str(Path(args.checks).resolve()) if args.checks.endswith(".py") else args.checks
        self.secret: bytes | None = None  # loaded by load_secret; None: the fixed cases

    def log(self, message: str) -> None:
        if not self.args.quiet:
            print(message, file=sys.stderr, flush=True)

    def run(self) -> int:
        self.course.state.mkdir(parents=True, exist_ok=True)
        with open(self.course.state / "lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError("another bncourse-grade run is using this course directory; "
                                   "wait for it to finish") from None
            return self.run_steps()

    def run_steps(self) -> int:
        if self.args.replay:
            return self.replay(self.args.replay)
        self.pool = None
        if "autograde" in self.args.steps and not self.args.scheduler:
            self.pool = backends.start_pool(self.args.workers, self.checks)
        try:
            return self.steps()
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)

    def steps(self) -> int:
        self.releases = self.course.prepare(self.assignment)
        self.released = {name: nbformat.writes(nb) for name, nb in self.releases.items()}
        self.sources = {name: self.source_path(name).read_text() for name in self.releases}
        self.notebooks = list(self.releases)
        if "collect" in self.args.steps:
            self.collect()
        code = 0
        if "autograde" in self.args.steps:
            code = self.autograde()
            if code == CANARY_FAILED:
                return code  # nothing was graded: no feedback or report to refresh
        if "feedback" in self.args.steps:
            self.feedback()
        if "report" in self.args.steps:
            self.report()
        if "export" in self.args.steps or self.args.export:
            self.export()
        return code

    def collect(self) -> None:
        if self.args.submissions is None:
            raise SystemExit("bncourse-grade: the collect step needs SUBMISSIONS (folder or .zip)")
        found = collecting.collect(self.args.submissions, self.course.root, self.assignment,
                                   self.notebooks, self.args.max_notebook_size,
                                   self.args.student_regex)
        atomic_write(self.state / "collect_problems.json", json.dumps(found.problems).encode())
        for name, why in found.problems:
            self.log(f"collect: {name}: {why}")
        for path in found.archived:
            self.log(f"collect: a different earlier submission was kept in {path}")
        self.log(f"collect: {len(found.submissions)} students")

    def job(self, student: str, notebook: str, data: bytes, mode: str) -> dict:
        """What a worker needs to grade one notebook (plain data: it may travel to Dask)."""
        return dict(
            student=student, assignment=self.assignment, notebook=notebook, data=data,
            release=self.released[notebook], source=self.sources[notebook],
            checks=self.checks, limits=self.limits.as_dict(), sandbox=mode,
            max_bytes=self.args.max_notebook_size,
            scratch=str(self.args.scratch) if self.args.scratch else None,
            seed=self.seed(student),
        )

    def load_secret(self) -> str:
        """Read (or create) the course secret; its digest for the fingerprint."""
        if self.args.fixed_cases:
            self.log("seeds: --fixed-cases: every student gets the same hidden cases")
            return "fixed"
        self.secret, note = seeds.course_secret(self.course.root, self.args.secret)
        if note:
            self.log(note)
        return seeds.secret_digest(self.secret)

    def seed(self, student: str) -> int | None:
        if self.secret is None:
            return None
        return seeds.student_seed(self.secret, self.assignment, student)

    def replay(self, student: str) -> int:
        """Write the cases ``student`` is graded on (``worker.write_replay``)."""
        self.load_secret()
        seed = self.seed(student)
        out = self.state / "replay" / student
        count = write_replay(self.checks, self.assignment, seed, out)
        print(f"replay: {count} parts of {student}'s case set {seeds.case_set_id(seed)} in {out}",
              file=sys.stderr, flush=True)
        return 0

    def jobs(self, mode: str, stamp: str) -> tuple[dict, list]:
        submitted = collecting.collected(self.course.root, self.assignment, self.notebooks)
        jobs, reused = {}, []
        for student, notebooks in submitted.items():
            for notebook, path in notebooks.items():
                data = path.read_bytes()
                old = self.journal.load(f"{student}/{notebook}")
                if (old and not self.args.regrade and old.get("fingerprint") == stamp
                        and old.get("sha256") == hashlib.sha256(data).hexdigest()):
                    reused.append(old)
                    continue
                jobs[(student, notebook)] = self.job(student, notebook, data, mode)
        return jobs, reused

    def autograde(self) -> int:
        mode = resolve_mode(self.args.sandbox)
        if mode == "rlimits":
            self.log("warning: bubblewrap (bwrap) is not used: submissions run with rlimits, "
                     "a private temp dir and a scrubbed environment only (see README)")
        stamp = fingerprint(self.args, self.limits, mode, self.released, self.load_secret())
        jobs, reused = self.jobs(mode, stamp)
        self.log(f"autograde: {len(jobs)} to grade, {len(reused)} already graded")
        if jobs and not self.canary(mode):
            return CANARY_FAILED
        with self.course.gradebook() as gb:
            for result in reused:  # idempotent: repairs a run killed before recording
                self.record(gb, result)
            progress = Progress(len(jobs), self.args.quiet)
            internal = []
            for key, outcome in self.backend(jobs):
                label = f"{key[0]}/{key[1]}"
                if isinstance(outcome, BaseException) or outcome["result"]["status"] == INTERNAL_ERROR:
                    # the grader's failure, not the student's: no score, no journal entry
                    # (the next run grades this notebook again), and the run ends non-zero
                    why = repr(outcome) if isinstance(outcome, BaseException) else outcome["result"]["error"]
                    internal.append((label, f"internal error, not graded: {why}"))
                    self.log(f"internal error grading {label}: {why}")
                    progress.update(label, None)
                    continue
                result = outcome["result"]
                result["fingerprint"] = stamp
                self.journal.save(result)
                self.record(gb, result)
                self.write_feedback(result, (outcome["autograded"], outcome["feedback"]))
                progress.update(label, result)
            for note in late.apply(gb, self.course.config, self.assignment,
                                   self.args.extensions):
                self.log(f"late: {note}")
            gradebook.export_csv(gb, self.assignment, self.grades_path())
        atomic_write(self.state / "internal_errors.json", json.dumps(internal).encode())
        return 1 if internal else 0

    def canary(self, mode: str) -> bool:
        """Grade the instructor's own solution first, on the same workers, in the same sandbox,
        with the same options. Short of full marks, the grader itself is broken (an environment
        the sandbox cannot import, a limit too tight for this machine, a check that fails the
        right answer): say why and grade nobody, rather than write a class of wrong grades."""
        jobs = {("solution", name): self.job("solution", name, self.source_path(name).read_bytes(), mode)
                for name in self.notebooks}
        healthy = True
        for (_, name), outcome in self.backend(jobs):
            where = self.source_path(name).relative_to(self.course.root)
            if isinstance(outcome, BaseException):
                self.log(f"canary: grading the instructor's solution {where} failed: {outcome!r}")
                healthy = False
                continue
            result = outcome["result"]
            score = f"{result['score']:g}/{result['max_score']:g}"
            if result["status"] == "graded" and result["score"] == result["max_score"] > 0:
                self.log(f"canary: the instructor's solution {where} gets {score}")
                continue
            healthy = False
            lines = [f"the instructor's solution {where} gets {score} in the sandbox "
                     f"({result['status']}), so the grader is not working here"]
            if result["error"]:
                lines.append(f"error: {result['error']}")
            lines += [f"problem: {problem}" for problem in result["problems"]]
            lines += [f"{part['id']}: {part['message']}" for part in result["parts"]
                      if not part["passed"]]
            tail = result["sandbox"].get("console_tail", "").strip()
            if tail and tail[-200:] not in (result["error"] or ""):
                lines.append("the sandbox's own output ends with:\n" + tail)
            print("bncourse-grade: error: " + "\n  ".join(lines), file=sys.stderr, flush=True)
        if not healthy:
            print("bncourse-grade: no submission was graded and no grade was written; fix the "
                  "problem above and run the command again", file=sys.stderr, flush=True)
        return healthy

    def backend(self, jobs: dict):
        if self.args.scheduler:
            return backends.run_dask(grade_and_render, jobs, self.args.scheduler)
        return backends.run_local(grade_and_render, jobs, self.args.workers, self.pool)

    def record(self, gb, result: dict) -> None:
        student = result["student"]
        results = [self.journal.load(f"{student}/{n}") for n in self.notebooks]
        if all(results):
            stamp = collecting.read_timestamp(self.course.root, self.assignment, student)
            gradebook.record(gb, results, stamp)

    def grades_path(self) -> Path:
        return self.args.grades or self.course.root / "grades.csv"

    def feedback(self) -> None:
        written = total = 0
        for result in self.journal.all():
            written += self.write_feedback(result)
            total += 1
        # Workers render feedback as they grade, so most pages are already up to date here.
        self.log(f"feedback: {total} pages in feedback/ ({written} written now, "
                 f"{total - written} already written while grading)")

    def source_path(self, notebook: str) -> Path:
        folder = self.course.root / self.course.config.CourseDirectory.source_directory
        return folder / self.assignment / f"{notebook}.ipynb"

    def write_feedback(self, result: dict, rendered: tuple | None = None) -> int:
        """Write the autograded notebook and the feedback page unless they are up to date
        (``rendered``: what a worker already made; else rendered here)."""
        student, notebook = result["student"], result["notebook"]
        # the page's own version too, so pages made by an older renderer are made again
        digest = hashlib.sha256((feedback.PAGE_VERSION + json.dumps(result, sort_keys=True))
                                .encode()).hexdigest()
        marker = self.state / "feedback" / student / f"{notebook}.sha256"
        html_path = self.course.root / "feedback" / student / self.assignment / f"{notebook}.html"
        feedback.place_mathjax(html_path.parent)  # the page loads its MathJax from beside it
        if marker.exists() and marker.read_text() == digest and html_path.exists():
            return 0
        if rendered is None:
            submitted = (self.course.root / "submitted" / student / self.assignment
                         / f"{notebook}.ipynb")
            parsed, _, _ = validate.read_notebook(submitted.read_bytes(), self.args.max_notebook_size)
            source = nbformat.reads(self.sources[notebook], as_version=4)
            rendered = feedback.render(result, parsed, source, self.releases[notebook])
        autograded, page = rendered
        if autograded is not None:
            target = self.course.root / "autograded" / student / self.assignment
            atomic_write(target / f"{notebook}.ipynb", autograded.encode())
        atomic_write(html_path, page.encode())
        atomic_write(marker, digest.encode())
        return 1

    def report(self) -> None:
        problems = []
        for name in ("collect_problems.json", "internal_errors.json"):
            path = self.state / name
            problems += json.loads(path.read_text()) if path.exists() else []
        out = self.args.report_dir or self.course.root / "reports" / self.assignment
        results = self.journal.all()
        for result in results:  # the console says why, as the report does
            if result["status"] == "error":
                self.log(f"not gradable: {result['student']}/{result['notebook']}: "
                         f"{result['error']}")
        with self.course.gradebook() as gb:
            late_rows = late.late_table(gb, self.assignment, self.course.root)
        links = {}
        for result in results:
            page = (self.course.root / "feedback" / result["student"] / self.assignment
                    / f"{result['notebook']}.html")
            links.setdefault(result["student"], os.path.relpath(page, out.resolve()))
        close = similarity.report(self.course.root, self.assignment, self.notebooks,
                                  similarity.starter_code(self.releases))
        path = report.write_report(out, self.assignment, results, problems, links, late_rows,
                                   close)
        self.log(f"report: {path}")

    def export(self) -> None:
        if not self.args.export:
            raise SystemExit("bncourse-grade: the export step needs --export FORMATS")
        out = self.args.export_dir or self.course.root / "exports" / self.assignment
        with self.course.gradebook() as gb:
            written = export.export(self.args.export, gb, self.assignment, self.journal.all(),
                                    out, self.args.lms_column)
        for path in written:
            self.log(f"export: {path}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return Grader(args).run()
    except (SandboxUnavailableError, FileNotFoundError, RuntimeError) as error:
        print(f"bncourse-grade: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
