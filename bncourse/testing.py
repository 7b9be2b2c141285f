"""What a graded test cell calls: ``check(part_id, obj)``.

A test cell in an exercise notebook is one line, ``check("03_bn_transform-forward_2d",
batchnorm_forward)``. ``check`` looks the part up in ``bncourse.checks.PARTS``, refuses
ready-made normalisation (``bncourse.checks.shortcuts``), and runs every case through
``run_case``: the part's ``run`` under the tripwire, then its ``judge``. The first failing
case raises ``AssertionError`` with the verdict's message, which is what nbgrader shows the
student. ``bncourse/checks/README.md`` follows one verdict from here to its message.

The grading pipeline (``bncourse.grading``) uses the same parts in two processes instead:
``run`` in a sandbox, ``judge`` and the shortcut scan in its own.
"""

from __future__ import annotations

from typing import Any

from bncourse.checks import PARTS, Part
from bncourse.checks.core import Verdict, fail, kept_share
from bncourse.checks.outputs import UnusableResultError, numeric_outputs
from bncourse.checks.shortcuts import borrowed, find_shortcuts, source_of, tripwire

__all__ = ["check", "run_case"]


def check(part_id: str, obj: Any) -> float | None:
    """Run one graded part on the student's function or class; raise AssertionError if wrong.

    Inputs:
    - part_id: the part's id, equal to the nbgrader grade_id of the calling cell.
    - obj: the student's function or class (the part's ``target``).

    Returns None and prints ``passed: <description>`` when every case passes (and, for a
    visible part with a hidden twin, one more line naming what the hidden cases add).
    Raises AssertionError with the first wrong case's message when any case has wrong
    numbers. When the numbers are right but a side property slips (``core.SIDE_SHARE``),
    prints the slip's message and returns the points kept: the cell's last value, which
    nbgrader records as partial credit, as ``bncourse-grade`` does.
    """
    if part_id not in PARTS:
        raise KeyError(f"part_id: expected one of {sorted(PARTS)}, got {part_id!r}")
    part = PARTS[part_id]
    reason = borrowed(obj) or find_shortcuts(source_of(obj))
    if reason:
        raise AssertionError(f"{part.target} gets 0 points for this part: {reason}.")
    verdicts = []
    for case in part.cases():
        verdict = run_case(part, obj, case)
        if not verdict.passed and verdict.credit <= 0:
            raise AssertionError(verdict.message)
        verdicts.append(verdict)
    kept = kept_share(verdicts)
    if kept < 1.0:
        slip = next(v for v in verdicts if not v.passed)
        print(f"partly passed: {slip.message}")
        return round(part.points * kept, 6)
    print(f"passed: {part.description}")
    hidden = hidden_twin(part)
    if hidden is not None:  # what grading adds, so that nothing there is a surprise
        print(f"at grading, hidden cases add: {hidden.description}")
    return None


def hidden_twin(part: Part) -> Part | None:
    """The hidden part that grades the same function further: "<id>_hidden", else the one
    hidden part of the assignment with the same target that is no other part's named twin
    (02's ``whiten_hidden`` for ``whiten_zca`` and ``whiten_pca``). None for a hidden part."""
    if part.hidden:
        return None
    named = PARTS.get(f"{part.id}_hidden")
    if named is not None:
        return named
    return next((other for other in PARTS.values()
                 if other.hidden and other.assignment == part.assignment
                 and other.target == part.target and other.id.removesuffix("_hidden") not in PARTS),
                None)


def run_case(part: Part, obj: Any, case: dict[str, Any]) -> Verdict:
    """One case of a part in this process: ``part.run`` under the tripwire, then ``part.judge``."""
    try:
        with tripwire() as hits:
            outputs = numeric_outputs(part.run(obj, case))  # what the grader's sandbox accepts
    except UnusableResultError as error:  # the checks' own finding: the student's code raised nothing
        where = f"{part.target} ({case.get('label', 'a test case')})"
        return fail(f"{where}: {error}", "unusable_result")
    except Exception as error:  # any error of the student's code is a verdict
        where = f"{part.target} ({case.get('label', 'a test case')})"
        return fail(f"{where} raised {type(error).__name__}: {error}", "exception")
    if hits:
        return fail(f"{part.target} gets 0 points for this part: it called {hits[0]}, a "
                    f"ready-made normalisation, instead of computing the result.", "shortcut")
    try:
        return part.judge(case, outputs)
    except Exception as error:  # malformed outputs must fail, not crash
        return fail(f"{part.target} returned something that could not be checked "
                    f"({type(error).__name__}: {error}).", "exception")
