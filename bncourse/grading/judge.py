"""Decide every part in the grader's own process from the plain data the sandbox sent back.

Nothing here trusts the sandbox: frames are parsed with size caps, arrays are loaded with
``allow_pickle=False`` and must be numeric, the expected results come from ``part.judge`` on
the cases the grader generated itself, and the shortcut scan reads the student's source
from the notebook JSON. A part earns its points only when every case passes and its source
uses no ready-made normalisation.
"""

from __future__ import annotations

import io
import json
import signal
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bncourse.checks.outputs import unusable_message
from bncourse.grading import frames

MAX_ARRAY_ELEMENTS = 10_000_000
MAX_ARRAYS_PER_CASE = 64
MAX_MESSAGE_CHARS = 500


@dataclass
class PartResult:
    """The verdict on one part (one graded test cell)."""

    id: str
    target: str
    points: float
    hidden: bool
    description: str
    score: float = 0.0
    passed: bool = False
    message: str = ""
    mistake: str | None = None
    cases_passed: int = 0
    cases_total: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SandboxOutcome:
    """The sandbox's frames, sorted out: what each cell did and what each case returned."""

    cells: dict[int, dict] = field(default_factory=dict)
    cases: dict[tuple[str, int], tuple[dict, bytes]] = field(default_factory=dict)
    missing_targets: dict[str, str] = field(default_factory=dict)
    last_cell: int | None = None
    last_case: tuple[str, int] | None = None
    ready: bool = False
    finished: bool = False
    stopped: str | None = None


def _text(value: Any, limit: int = MAX_MESSAGE_CHARS) -> str:
    return str(value)[:limit] if value is not None else ""


def sort_frames(received: list[tuple[dict, bytes]]) -> SandboxOutcome:
    """Index frames; the first frame for a cell or case wins (a forked child may repeat)."""
    outcome = SandboxOutcome()
    for header, payload in received:
        kind = header.get("kind")
        if kind == frames.READY:
            outcome.ready = True
        elif kind == frames.CELL_START and isinstance(header.get("index"), int):
            outcome.last_cell = header["index"]
        elif kind == frames.CELL and isinstance(header.get("index"), int):
            outcome.cells.setdefault(header["index"], {
                "status": _text(header.get("status"), 20),
                "error": _text(header.get("error")) or None,
                "output": _text(header.get("output"), 20_000),
            })
        elif kind == frames.CASE_START:
            outcome.last_case = (_text(header.get("part")), header.get("case"))
        elif kind == frames.CASE:
            key = (_text(header.get("part")), header.get("case"))
            outcome.cases.setdefault(key, (header, payload))
        elif kind == frames.MISSING:
            outcome.missing_targets.setdefault(_text(header.get("part")), _text(header.get("target")))
        elif kind == frames.STOPPED:
            outcome.stopped = outcome.stopped or _text(header.get("reason"))
        elif kind == frames.DONE:
            outcome.finished = True
    return outcome


def load_outputs(payload: bytes) -> dict[str, np.ndarray]:
    """Untrusted .npz bytes -> dict of numeric arrays; raises ValueError when they are not."""
    try:
        archive = np.load(io.BytesIO(payload), allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"the outputs could not be read ({type(error).__name__})") from error
    with archive:
        if len(archive.files) > MAX_ARRAYS_PER_CASE:
            raise ValueError(f"more than {MAX_ARRAYS_PER_CASE} outputs")
        outputs = {}
        for key in archive.files:
            try:
                array = archive[key]
            except (ValueError, OSError, zipfile.BadZipFile) as error:
                raise ValueError(f"output {key!r} is not a plain array") from error
            if array.dtype.kind not in "biufc" or array.size > MAX_ARRAY_ELEMENTS:
                raise ValueError(f"output {key!r} is not a numeric array of sensible size")
            outputs[key] = np.array(array)
    return outputs


def _exit_description(returncode: int | None) -> str:
    """'killed by SIGSEGV' or 'exit status 3' (bwrap reports a child's signal as 128 + n)."""
    if returncode is None or returncode == 0:
        return ""
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if number:
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            pass
    return f"exit status {returncode}"


def _crash_reason(outcome: SandboxOutcome, sandbox_reason: str | None,
                  returncode: int | None) -> str:
    if sandbox_reason:
        return sandbox_reason
    if outcome.stopped:
        return outcome.stopped
    how = _exit_description(returncode)
    return ("the notebook's process ended abruptly (crash, os._exit or a limit"
            + (f"; {how})" if how else ")"))


def judge_part(part, cases: list[dict], outcome: SandboxOutcome, shortcut: str | None,
               not_run_reason: str) -> PartResult:
    """Judge every case of one part; the first failing case gives the message."""
    result = PartResult(part.id, part.target, float(part.points), bool(part.hidden),
                        part.description, cases_total=len(cases))
    failure: tuple[str, str | None] | None = None
    slip: tuple[str, str | None] | None = None  # right numbers, a side property slipped
    kept = 1.0
    if part.id in outcome.missing_targets:
        failure = (f"{part.target} is not defined: did its cell run without errors?",
                   "not_defined")
    for index, case in enumerate(cases):
        if failure and failure[1] == "not_defined":
            break
        verdict_message, mistake, credit = _judge_case(
            part, case, outcome.cases.get((part.id, index)), not_run_reason)
        if verdict_message is None:
            result.cases_passed += 1
        elif credit > 0:  # as bncourse.testing.check: partial credit, the first slip's message
            kept = min(kept, credit)
            slip = slip or (verdict_message, mistake)
        elif failure is None:
            failure = (verdict_message, mistake)
    if shortcut:  # the reason that matters, whatever the outputs were
        failure = (f"{part.target} gets 0 points for this part: {shortcut}.", "shortcut")
    if failure is None and slip is None:
        result.passed, result.score = True, result.points
    elif failure is None:
        result.score = round(result.points * kept, 6)
        result.message, result.mistake = _text(slip[0]), slip[1]
    else:
        result.message, result.mistake = _text(failure[0]), failure[1]
    return result


def _judge_case(part, case: dict, frame, not_run_reason: str) -> tuple[str | None, str | None, float]:
    """(None, None, 1.0) when the case passed, else (message, mistake id, credit): the share of
    the part's points the case leaves (the checks' one scoring rule, ``core.SIDE_SHARE``)."""
    if frame is None:
        return f"{part.target} was not checked: {not_run_reason}", "not_run", 0.0
    header, payload = frame
    status = header.get("status")
    if status == "timeout":
        return f"{part.target} ran past the time limit of one check", "timeout", 0.0
    if status != "ok":
        unusable = unusable_message(str(header.get("error") or ""))
        if unusable is not None:  # the checks' own finding, not an error of the student's code
            return f"{part.target}: {_text(unusable, 300)}", "unusable_result", 0.0
        return f"{part.target} raised {_text(header.get('error'), 300)}", "exception", 0.0
    try:
        outputs = load_outputs(payload)
    except ValueError as error:
        return (f"{part.target} returned something that is not plain numbers: {error}",
                "invalid_output", 0.0)
    try:
        verdict = part.judge(case, outputs)
    except Exception as error:  # a crash of the trusted side: never the student's fault
        return (f"internal error while checking {part.target} ({type(error).__name__}); "
                "the instructor will look at it"), "judge_error", 0.0
    if verdict.passed:
        return None, None, 1.0
    return (_text(verdict.message) or f"{part.target} gave a wrong result", verdict.mistake,
            float(verdict.credit))


def cells_summary(outcome: SandboxOutcome) -> list[dict]:
    """JSON-ready list of what each executed cell did."""
    return [dict(index=index, **info) for index, info in sorted(outcome.cells.items())]


def outcome_reason(outcome: SandboxOutcome, sandbox_reason: str | None,
                   returncode: int | None = None) -> str:
    """Why parts were not checked, naming the cell or check that was running."""
    reason = _crash_reason(outcome, sandbox_reason, returncode)
    if outcome.last_case and outcome.last_case not in outcome.cases:
        part_id, case = outcome.last_case
        return f"{reason} (while checking {part_id}, case {case})"
    if outcome.last_cell is not None and outcome.last_cell not in outcome.cells:
        return f"{reason} (while running cell {outcome.last_cell})"
    return reason


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
