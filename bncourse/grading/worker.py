"""Grade one submission end to end: validate -> sandbox -> judge, returning plain data.

``grade_submission`` is the unit of work of the local process pool and of Dask workers. It
takes everything it needs in its argument (the notebook's bytes, the released notebook, the
limits), touches no course files and returns a JSON-ready dict, so any machine with bncourse
and bubblewrap can run it and one process (``gradebook``) records the results.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from bncourse.checks.core import build_cases
from bncourse.checks.shortcuts import REFERENCE, find_shortcuts
from bncourse.grading import feedback, integrity, judge, validate
from bncourse.grading.harness import load_checks
from bncourse.grading.sandbox import Limits, run_sandboxed
from bncourse.grading.seeds import case_set_id

RESULT_VERSION = 1
# A result's status: "graded" (a score), "error" (the notebook cannot be graded: the student's
# file) or INTERNAL_ERROR (the grader failed: never a score, see _internal_error).
INTERNAL_ERROR = "internal_error"


@lru_cache(maxsize=8)
def checks_module(spec: str):
    return load_checks(spec)


@lru_cache(maxsize=256)
def part_cases(spec: str, part_id: str, seed: int | None = None) -> tuple:
    """The part's cases under a student's seed (hidden parts only; None: the fixed cases),
    made once per process and student (they are seeded, hence identical)."""
    return tuple(build_cases(checks_module(spec).PARTS[part_id], seed))


def cases_digest(cases) -> str:
    """12 hex digits naming the exact inputs of a part's cases (for the record)."""
    digest = hashlib.sha256()
    for case in cases:
        for key in sorted(case):
            value = case[key]
            if isinstance(value, np.ndarray):
                digest.update(f"{key}:{value.dtype.str}:{value.shape}".encode())
                digest.update(np.ascontiguousarray(value).tobytes())
            else:
                digest.update(f"{key}={value!r}".encode())
    return digest.hexdigest()[:12]


def write_cases(case_dir: Path, cases) -> None:
    """Arrays to .npz (no pickle), scalars and strings to .json; the harness reverses it."""
    case_dir.mkdir(parents=True)
    for index, case in enumerate(cases):
        arrays = {k: v for k, v in case.items() if isinstance(v, np.ndarray)}
        plain = {k: (v.item() if isinstance(v, np.generic) else v)
                 for k, v in case.items() if k not in arrays}
        np.savez(case_dir / f"{index}.npz", **arrays)
        (case_dir / f"{index}.json").write_text(json.dumps(plain))


def write_replay(spec: str, assignment: str, seed: int | None, out: Path) -> int:
    """Write every part's cases under ``seed`` into ``out/<part id>/`` (as the sandbox gets
    them: ``harness.load_case`` reads one back), to rerun a student's checks by hand.
    Returns the number of parts; refuses an existing ``out`` (nothing is overwritten)."""
    if out.exists():
        raise RuntimeError(f"--replay: {out} exists; remove it first (nothing is overwritten)")
    parts = [p for p in checks_module(spec).PARTS.values() if p.assignment == assignment]
    for part in parts:
        write_cases(out / part.id, part_cases(spec, part.id, seed))
    return len(parts)


def graded_parts(spec: str, release: nbformat.NotebookNode) -> tuple[list, list[str]]:
    """Parts that check a test cell of the released notebook, and test cells with no part."""
    parts = checks_module(spec).PARTS
    test_ids = [validate.grade_id(c) for c in release.cells if validate.is_test_cell(c)]
    return [parts[i] for i in test_ids if i in parts], [i for i in test_ids if i not in parts]


def _error_result(base: dict, message: str, parts, notes, seed: int | None) -> dict:
    base.update(status="error", error=message, notes=notes, parts=[
        judge.PartResult(p.id, p.target, float(p.points), bool(p.hidden), p.description,
                         message=f"not graded: {message}", mistake="not_graded",
                         cases_total=len(part_cases(base["checks"], p.id, seed))).as_dict()
        for p in parts
    ])
    return base


def grade_submission(job: dict[str, Any]) -> dict[str, Any]:
    """Grade one notebook. ``job``: student, assignment, notebook, data (bytes), release
    (notebook JSON), checks, limits (dict), sandbox, max_bytes, scratch (dir or None), seed
    (the student's hidden-case seed, ``grading.seeds``; None or absent: the fixed cases)."""
    return _grade(job, nbformat.reads(job["release"], as_version=4))[0]


def _grade(job: dict[str, Any], release: nbformat.NotebookNode
           ) -> tuple[dict[str, Any], nbformat.NotebookNode | None]:
    """(result, the submission as parsed, or None when it could not be read)."""
    start = time.monotonic()
    seed = job.get("seed")  # the result records the case set's public id, never the seed
    parts, unchecked = graded_parts(job["checks"], release)
    base = dict(
        version=RESULT_VERSION, student=job["student"], assignment=job["assignment"],
        notebook=job["notebook"], checks=job["checks"], case_set=case_set_id(seed),
        sha256=hashlib.sha256(job["data"]).hexdigest(), status="graded", error=None,
        max_score=float(sum(p.points for p in parts)), score=0.0, parts=[], flags=[],
        notes=[], problems=[], cells=[], sandbox={},
    )
    try:
        checked = validate.check_notebook(job["data"], release, job["assignment"],
                                          job["max_bytes"])
    except Exception as error:  # a structure nbformat accepted but nothing else expects
        checked = validate.Checked(error=f"the notebook's structure could not be understood "
                                   f"({type(error).__name__}: {str(error)[:200]})")
    if checked.error:
        return _finish(_error_result(base, checked.error, parts, checked.notes, seed), start), None
    base["notes"] = checked.notes
    base["flags"] = list(checked.flags)
    base["flags"] += [f"no check is registered for test cell {gid}" for gid in unchecked]
    base["flags"] += [f.describe() for f in integrity.scan_cells(checked.student_cells)]
    work = Path(tempfile.mkdtemp(prefix="bncourse-grade-", dir=job.get("scratch")))
    try:
        run = _run(job, checked, parts, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    outcome = judge.sort_frames(run.frames)
    reason = judge.outcome_reason(outcome, run.killed_reason, run.returncode)
    reference = _reference_import(checked.student_cells)
    for part in parts:
        source = integrity.find_target_source(checked.student_cells, part.target)
        shortcut = reference or _shortcut(source, checked.student_cells)
        result = judge.judge_part(part, list(part_cases(job["checks"], part.id, seed)),
                                  outcome, shortcut, reason)
        if shortcut:
            base["flags"].append(f"{part.target}: {shortcut}")
        base["parts"].append(result.as_dict())
    base["flags"] = list(dict.fromkeys(base["flags"]))  # one line per distinct reason
    base["cells"] = judge.cells_summary(outcome)
    base["problems"] = _problems(outcome, run, reason)
    base["sandbox"] = dict(mode=run.mode, returncode=run.returncode, wall_s=round(run.wall_s, 3),
                           reason=run.killed_reason, console_tail=run.console_tail[-2000:])
    base["score"] = float(sum(p["score"] for p in base["parts"]))
    base["case_digests"] = {p.id: cases_digest(part_cases(job["checks"], p.id, seed))
                            for p in parts}
    internal = _internal_error(outcome, run, base["parts"])
    if internal:
        base.update(status=INTERNAL_ERROR, error=internal)
    return _finish(base, start), checked.notebook


def _run(job: dict, checked: validate.Checked, parts, work: Path):
    job_dir = work / "job"
    job_dir.mkdir()
    seed = job.get("seed")  # stays here: the sandbox gets the cases' values, never the seed
    for part in parts:
        write_cases(job_dir / "cases" / part.id, part_cases(job["checks"], part.id, seed))
    limits = Limits(**job["limits"])
    spec = {
        "cells": [{"index": i, "source": s} for i, s in checked.run_cells],
        "parts": [{"id": p.id, "target": p.target,
                   "n_cases": len(part_cases(job["checks"], p.id, seed))} for p in parts],
        "checks": job["checks"], "cell_timeout": limits.cell_timeout,
        "case_timeout": limits.case_timeout, "max_output": limits.max_output,
        "keep_output": limits.keep_output,
    }
    return run_sandboxed(job_dir, spec, limits, job["sandbox"])


def _shortcut(source: str | None, student_cells) -> str | None:
    if source is None:  # defined some other way: scan everything the student wrote
        source = "\n".join(integrity.python_source(s) for _, s in student_cells)
    try:
        return find_shortcuts(source)
    except SyntaxError:
        return None


def _reference_import(student_cells) -> str | None:
    """Importing the course's reference code anywhere in the notebook voids every part: the
    target could call it through any helper, which a scan of the target alone would miss."""
    for finding in integrity.scan_cells(student_cells):
        if finding.kind == REFERENCE:
            return f"the notebook {finding.reason} in cell {finding.cell}, which computes it for you"
    return None


def _internal_error(outcome: judge.SandboxOutcome, run, parts: list[dict]) -> str | None:
    """Why this result says nothing about the student's work, or None when it does.

    The harness announces itself (a READY frame) after loading the checks and before any of
    the student's code runs, so a sandbox without that frame failed on its own (bubblewrap,
    the interpreter, an import of the harness or the checks). A judge that crashed is the
    grader's failure too.
    """
    if not outcome.ready:
        tail = run.console_tail.strip()[-1500:] or "(nothing printed)"
        return (f"the sandbox failed before running any of the student's code "
                f"({judge.outcome_reason(outcome, run.killed_reason, run.returncode)}); "
                f"the sandbox's own output ends with:\n{tail}")
    crashed = [p["id"] for p in parts if p["mistake"] == "judge_error"]
    if crashed:
        return f"the check of {', '.join(crashed)} crashed in the grader's own process"
    return None


def _problems(outcome: judge.SandboxOutcome, run, reason: str) -> list[str]:
    """Limits hit and crashes, one sentence each, for the report."""
    problems = []
    for index, cell in sorted(outcome.cells.items()):
        if cell["status"] == "timeout":
            problems.append(f"cell {index} ran past its time limit and was stopped")
        elif cell["status"] == "output_limit":
            problems.append(f"cell {index} printed too much output and was stopped")
        elif cell["error"] and cell["error"].startswith("MemoryError"):
            problems.append(f"cell {index} ran out of memory (memory limit)")
    if not outcome.finished:
        problems.append(reason)
    return problems


def _finish(result: dict, start: float) -> dict:
    result["grading_s"] = round(time.monotonic() - start, 3)
    return judge.jsonable(result)


def grade_and_render(job: dict[str, Any]) -> dict[str, Any]:
    """``grade_submission`` plus the autograded notebook and the feedback HTML, so that
    rendering (a good part of the work) runs on the workers too; each notebook is parsed once."""
    release = nbformat.reads(job["release"], as_version=4)
    result, submission = _grade(job, release)
    if result["status"] == INTERNAL_ERROR:
        return {"result": result, "autograded": None, "feedback": None}
    source = nbformat.reads(job["source"], as_version=4)
    autograded, page = feedback.render(result, submission, source, release)
    return {"result": result, "autograded": autograded, "feedback": page}
