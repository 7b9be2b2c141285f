"""The vocabulary of every check: a graded ``Part``, a ``Verdict``, and how a verdict is reached.

A part's ``judge`` gets the inputs of one case and the plain arrays the student's code
returned, and answers with a ``Verdict``. Most judges call ``judge_outputs``: inputs left
unchanged (``unchanged``), every output present, the input's dtype kept, then ``diagnose``:
each output against the reference (``compare``) and, when one is wrong, the known mistakes
(``Variant`` objects from ``bncourse.checks.variants``) tried in order, so the message names
the probable mistake or, failing that, the largest difference and where it is.

This module imports nothing of the course: the check modules, the catalogue and
``bncourse.testing`` build on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Arrays",
    "Case",
    "DtypeTolerance",
    "Part",
    "Tolerance",
    "Variant",
    "Verdict",
    "array_output",
    "build_cases",
    "case_rng",
    "compare",
    "compare_arrays",
    "diagnose",
    "fail",
    "SIDE_SHARE",
    "judge_outputs",
    "kept_share",
    "ok",
    "first_failure",
    "part",
    "part_pair",
    "student_cases",
    "unchanged",
    "with_side_properties",
]

Case = Mapping[str, Any]
Arrays = dict[str, np.ndarray]
Tolerance = tuple[float, float]


@dataclass(frozen=True)
class DtypeTolerance:
    """A check module's (rtol, atol) for float64 results and for float32 ones.

    Each module fills one in with its own numbers and says why next to them; ``of`` picks the
    one for the dtype of an input of the case (float32 for anything that is not float64).
    """

    float64: Tolerance
    float32: Tolerance

    def of(self, case: Case, key: str = "x") -> Tolerance:
        """The tolerance for the dtype of ``case[key]``."""
        return self.float64 if np.asarray(case[key]).dtype == np.float64 else self.float32

_GRADE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one case of one part.

    - passed: whether the student's outputs are right.
    - message: one or two sentences for the student ("" when passed).
    - mistake: id of the known mistake that explains the outputs (a ``Variant``'s id),
      ``"exception"``/``"shortcut"``/``"mutates_input"``/... for the generic failures, or
      None when passed or when no known mistake matched.
    - credit: the share of the part's points a failing case still leaves: 0 for wrong
      numbers (or no numbers), ``1 - SIDE_SHARE`` for a slip in a side property only.
    """

    passed: bool
    message: str = ""
    mistake: str | None = None
    credit: float = 0.0


def ok() -> Verdict:
    return Verdict(passed=True)


def fail(message: str, mistake: str | None = None, credit: float = 0.0) -> Verdict:
    return Verdict(passed=False, message=message, mistake=mistake, credit=credit)


# The one scoring rule of every assignment: a part whose numbers are right on every case but
# whose result slips in a side property (the input's dtype not kept, an input modified in
# place) keeps 1 - SIDE_SHARE of its points; wrong numbers on any case lose the part.
SIDE_SHARE = 0.25


def kept_share(verdicts: Sequence[Verdict]) -> float:
    """The share of a part's points its case verdicts leave: 1 when all pass, else the least
    credit of a failing case (0 when any case has wrong numbers)."""
    return min((1.0 if v.passed else v.credit for v in verdicts), default=1.0)


Cases = Callable[[], list[dict[str, Any]]]
Run = Callable[[Any, Case], Arrays]
Judge = Callable[[Case, Arrays], Verdict]


@dataclass(frozen=True)
class Part:
    """One graded test cell.

    - id: "<assignment>-<name>", e.g. "03_bn_transform-forward_2d"; the cell's nbgrader
      grade_id (nbgrader 0.9 accepts letters, digits, ``_`` and ``-`` only).
    - assignment: e.g. "03_bn_transform".
    - target: name of the student's function or class in the notebook.
    - points: the cell's nbgrader points.
    - hidden: True when the cell's check sits inside ### BEGIN/END HIDDEN TESTS.
    - description: one line saying what is checked (printed on success, used in reports).
    - cases: () -> list of cases (dicts of arrays, scalars and strings; seeded). The grader
      calls it through ``build_cases``, which draws a hidden part's values per student.
    - run: (student's object, case) -> dict of arrays; runs in the student's process and
      decides nothing.
    - judge: (case, outputs of run) -> Verdict; trusted, accepts anything run may return.
    """

    id: str
    assignment: str
    target: str
    points: float
    hidden: bool
    description: str
    cases: Cases
    run: Run
    judge: Judge

    def __post_init__(self) -> None:
        if not self.id.startswith(self.assignment + "-") or not _GRADE_ID.match(self.id):
            raise ValueError(
                f"id: expected '<assignment>-<name>' starting with {self.assignment!r} and made "
                f"of letters, digits, '_' and '-' (an nbgrader grade_id), got {self.id!r}"
            )
        if self.points <= 0:
            raise ValueError(f"points: expected a positive number, got {self.points!r}")


def part(assignment: str, name: str, *, target: str, points: float, description: str, cases: Cases,
         run: Run, judge: Judge, hidden: bool = False) -> Part:
    """A ``Part`` whose id is "<assignment>-<name>" (the fields are those of ``Part``)."""
    return Part(id=f"{assignment}-{name}", assignment=assignment, target=target,
                points=points, hidden=hidden, description=description, cases=cases, run=run,
                judge=judge)


def part_pair(assignment: str, name: str, *, target: str, points: tuple[float, float],
              descriptions: tuple[str, str], cases: tuple[Cases, Cases], run: Run, judge: Judge) -> list[Part]:
    """A visible part "<name>" and its hidden twin "<name>_hidden", with the same target, run
    and judge; ``points``, ``descriptions`` and ``cases`` are (visible, hidden)."""
    return [part(assignment, name, target=target, points=points[0], description=descriptions[0],
                 cases=cases[0], run=run, judge=judge),
            part(assignment, f"{name}_hidden", target=target, points=points[1], description=descriptions[1],
                 cases=cases[1], run=run, judge=judge, hidden=True)]


# --------------------------------------------------------------------------- per-student cases

# The student seed in force while a hidden part's cases are built (None: the fixed cases).
_STUDENT_SEED: ContextVar[int | None] = ContextVar("bncourse_student_seed", default=None)


def case_rng(base: int) -> np.random.Generator:
    """The generator a case constructor draws its values from.

    ``base`` is the case's own constant seed. Outside ``student_cases`` this is
    ``np.random.default_rng(base)``: the fixed cases every notebook and plain ``nbgrader
    autograde`` see. Inside ``student_cases(seed)`` it is seeded by ``[base, seed]``: other
    values, same shapes, dtypes and constructed properties (constant or tiny-variance
    channels, offsets), which the constructors set after drawing.
    """
    seed = _STUDENT_SEED.get()
    if seed is None:
        return np.random.default_rng(base)
    return np.random.default_rng([base, seed])


@contextmanager
def student_cases(seed: int | None) -> Iterator[None]:
    """Within this block ``case_rng`` draws one student's values (``seed``: a non-negative
    int, or None for the fixed cases). Use ``build_cases``, which applies it to hidden parts
    only: constructors are shared by a visible part and its hidden twin."""
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"seed: expected a non-negative int or None, got {seed!r}")
    token = _STUDENT_SEED.set(seed)
    try:
        yield
    finally:
        _STUDENT_SEED.reset(token)


def build_cases(part: Part, seed: int | None = None) -> list[dict[str, Any]]:
    """The cases of ``part`` for one student: a hidden part's drawn under ``seed``, a
    visible part's always the fixed ones (what the student's own checks ran on)."""
    with student_cases(seed if part.hidden else None):
        return part.cases()


def first_failure(properties: Sequence[Callable[[Any], Verdict | None]], subject: Any) -> Verdict:
    """The verdict of the first property that fails on ``subject``, else a pass: for judges
    that check properties one at a time, so the message names the first that fails."""
    for check in properties:
        verdict = check(subject)
        if verdict is not None:
            return verdict
    return ok()


# --------------------------------------------------------------------------- comparing


def _index(flat_index: int, shape: tuple[int, ...]) -> str:
    if not shape:
        return "()"
    return str(tuple(int(i) for i in np.unravel_index(flat_index, shape)))


def _quoted(name: str) -> str:
    """A code name in backticks; a description (``labels`` of ``judge_outputs``) as it is."""
    return f"`{name}`" if name.isidentifier() else name


def compare(name: str, got: Any, expected: np.ndarray, rtol: float, atol: float) -> str | None:
    """Compare one output with the expected array.

    Inputs:
    - name: how the message calls the output, e.g. "out" or "dgamma".
    - got: the student's output (anything; an array is expected).
    - expected: the right answer (the reference's, usually float64).
    - rtol, atol: elementwise tolerance |got - expected| <= atol + rtol * |expected|.

    Returns None when they agree, else one sentence: wrong type, shape or non-finite
    values, or the largest difference, its index and the two values there.
    """
    expected = np.asarray(expected)
    name = _quoted(name)
    if not isinstance(got, np.ndarray) and not np.isscalar(got):
        return f"{name} should be a NumPy array, got {type(got).__name__}."
    got = np.asarray(got)
    if got.shape != expected.shape:
        return f"{name} has shape {got.shape}, expected {expected.shape}."
    if not np.issubdtype(got.dtype, np.number) or np.iscomplexobj(got):
        return f"{name} has dtype {got.dtype}, expected real numbers."
    got64 = got.astype(np.float64)
    exp64 = expected.astype(np.float64)
    bad_finite = np.isfinite(got64) != np.isfinite(exp64)
    if bad_finite.any():
        flat = int(np.flatnonzero(bad_finite)[0])
        return (
            f"{name} holds {got64.flat[flat]} at index {_index(flat, got.shape)} where "
            f"{exp64.flat[flat]:.6g} was expected."
        )
    finite = np.isfinite(exp64)
    excess = np.where(finite, np.abs(got64 - exp64) - (atol + rtol * np.abs(exp64)), -np.inf)
    if got.size == 0 or excess.max() <= 0:
        return None
    flat = int(np.argmax(excess))
    diff = float(np.abs(got64 - exp64).flat[flat])
    return (
        f"{name} is wrong: the largest difference is {diff:.3g} at index "
        f"{_index(flat, got.shape)} (got {got64.flat[flat]:.6g}, expected "
        f"{exp64.flat[flat]:.6g})."
    )


def compare_arrays(got: Any, expected: np.ndarray, rtol: float, atol: float, name: str) -> Verdict:
    """``compare`` as a Verdict (largest difference and its index on failure)."""
    message = compare(name, got, expected, rtol=rtol, atol=atol)
    return ok() if message is None else fail(message)


def array_output(
    outputs: Mapping[str, Any], key: str, where: str, numeric: bool = True
) -> tuple[np.ndarray, Verdict | None]:
    """Fetch ``outputs[key]`` as a real numeric ndarray, or a failing verdict saying what came."""
    if key not in outputs:
        return np.empty(0), fail(f"{where}: no result named {key!r} came back.")
    array = np.asarray(outputs[key])
    if numeric and array.dtype.kind not in "fiu":
        return array, fail(f"{where}: expected a real floating-point array for {key}, got "
                           f"dtype {array.dtype}.")
    return array, None


def unchanged(case: Case, outputs: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """Check that the inputs ``names`` came back unmodified.

    ``run`` returns the arrays it passed to the student, after the call, under
    ``"after_<name>"``. Returns a sentence naming the first mutated input, or None.
    """
    for name in names:
        after = outputs.get(f"after_{name}")
        if after is None:
            continue
        before = np.asarray(case[name])
        if after.shape != before.shape or not np.array_equal(after, before, equal_nan=True):
            return (
                f"it modified its input `{name}` in place; build new arrays instead "
                f"(write `a = a - b`, not `a -= b`)."
            )
    return None


# --------------------------------------------------------------------------- diagnosing


@dataclass(frozen=True)
class Variant:
    """One known mistake (the catalogue is ``bncourse.checks.variants``).

    - mistake: its id, e.g. "unbiased_variance".
    - message: one sentence saying what is probably wrong and what is right.
    - compute: case -> the outputs this mistake produces (only those it changes; the others
      must still be right). Leave None when ``matches`` is given.
    - matches: (case, outputs, expected) -> whether the outputs show this mistake, for
      mistakes whose outputs cannot be computed exactly.
    - applies: case -> whether to try this variant on the case at all.
    """

    mistake: str
    message: str
    compute: Callable[[Case], Arrays] | None = None
    matches: Callable[[Case, Mapping[str, Any], Mapping[str, np.ndarray]], bool] | None = None
    applies: Callable[[Case], bool] = lambda case: True


def _problems(
    outputs: Mapping[str, Any], wanted: Mapping[str, np.ndarray], rtol: float, atol: float,
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    found = []
    for name, value in wanted.items():
        label = (labels or {}).get(name, name)
        problem = compare(label, outputs.get(name), value, rtol, atol)
        if problem:
            found.append(problem)
    return found


def diagnose(where: str, case: Case, outputs: Mapping[str, Any], expected: Mapping[str, np.ndarray],
             tolerance: Tolerance, variants: Sequence[Variant] = (),
             labels: Mapping[str, str] | None = None) -> Verdict:
    """Verdict on ``outputs``: right, a known mistake, or the largest difference.

    Soundness rules (a diagnosis must never be a guess): a variant is only tried when it
    differs from the right answer by more than ten times the tolerance on this case, and the
    student's result must match it within the same tolerance as the right answer; variants
    that cannot be computed exactly use a ``matches`` predicate instead.

    Inputs:
    - where: "<function> (<case label>)", the start of every message.
    - case: the inputs.
    - outputs: the student's outputs (name -> array).
    - expected: the right outputs (name -> array).
    - tolerance: (rtol, atol).
    - variants: known mistakes to try, in order of preference.
    - labels: output name -> how messages call it, for outputs whose names are internal keys
      (e.g. "train_out_0" -> "the output of training step 1").
    """
    rtol, atol = tolerance
    problems = _problems(outputs, expected, rtol, atol, labels)
    if not problems:
        return ok()
    for variant in variants:
        if not variant.applies(case):
            continue
        if variant.matches is not None:
            if variant.matches(case, outputs, expected):
                return fail(f"{where}: {variant.message}", variant.mistake)
            continue
        changed = variant.compute(case)
        if not _problems(changed, expected, 10 * rtol, 10 * atol):
            continue  # this case cannot tell the variant from the right answer
        if not _problems(outputs, {**expected, **changed}, rtol, atol):
            return fail(f"{where}: {variant.message}", variant.mistake)
    return fail(f"{where}: {problems[0]}")


def judge_outputs(target: str, case: Case, outputs: Mapping[str, Any],
                  expected: Mapping[str, np.ndarray], tolerance: Tolerance,
                  variants: Sequence[Variant] = (), dtype_of: str | None = None,
                  inputs: Sequence[str] = (),
                  labels: Mapping[str, str] | None = None) -> Verdict:
    """The usual judge: outputs present, values right or diagnosed; inputs intact and dtype
    kept are side properties, scored by ``with_side_properties``.

    Inputs:
    - target: the student's function name, for the messages.
    - case: the inputs (with a "label" string describing them).
    - outputs: what ``run`` returned (arrays; missing or extra keys are tolerated).
    - expected: name -> right answer, for every output that is compared.
    - tolerance: (rtol, atol) used for every output.
    - variants: known mistakes to try when the result is wrong.
    - dtype_of: name of the case input whose dtype every output must keep, or None.
    - inputs: names of the case inputs that must come back unmodified.
    - labels: output name -> how messages call it (default: the name in backticks).
    """
    labels = labels or {}
    where = f"{target} ({case.get('label', 'a test case')})"
    missing = [name for name in expected if name not in outputs]
    if missing:
        return fail(f"{where}: returned no {_quoted(labels.get(missing[0], missing[0]))}.",
                    "exception")

    def values(case: Case, outputs: Mapping[str, Any]) -> Verdict:
        return diagnose(where, case, outputs, expected, tolerance, variants, labels)

    return with_side_properties(values, target, list(expected), dtype_of, inputs, labels)(
        case, outputs)


def with_side_properties(
    judge: Callable[[Case, Mapping[str, Any]], Verdict], target: str, outputs_named: Sequence[str],
    dtype_of: str | None = None, inputs: Sequence[str] | Callable[[Case], Sequence[str]] = (),
    labels: Mapping[str, str] | None = None,
) -> Callable[[Case, Mapping[str, Any]], Verdict]:
    """``judge`` (of the values) with the side properties scored by the one rule (SIDE_SHARE).

    The side properties: every input in ``inputs`` comes back unmodified (``unchanged``) and
    every output in ``outputs_named`` keeps the dtype of the case input ``dtype_of``. A slip
    in one of them is set aside, ``judge`` sees the outputs as if there were none (outputs
    cast to the input's dtype, inputs as they were), and then: wrong values give ``judge``'s
    verdict (no credit); right values give the slip's message, saying what share it costs,
    with credit ``1 - SIDE_SHARE``.
    """
    labels = labels or {}

    def judged(case: Case, outputs: Mapping[str, Any]) -> Verdict:
        where = f"{target} ({case.get('label', 'a test case')})"
        names = inputs(case) if callable(inputs) else inputs
        slip: tuple[str, str] | None = None
        outputs = dict(outputs)
        mutated = unchanged(case, outputs, names)
        if mutated:
            slip = (mutated, "mutates_input")
            outputs.update({f"after_{n}": np.asarray(case[n]) for n in names})
        if dtype_of is not None:
            want = np.asarray(case[dtype_of]).dtype
            for name in outputs_named:
                got = np.asarray(outputs[name]) if name in outputs else None
                if got is None or got.dtype == want or got.dtype.kind != "f" or want.kind != "f":
                    continue
                if slip is None:
                    slip = (f"{_quoted(labels.get(name, name))} is {got.dtype} but the input "
                            f"is {want}; keep the input's dtype.", "dtype_changed")
                outputs[name] = got.astype(want)
        verdict = judge(case, outputs)
        if slip is None:
            return verdict
        if not verdict.passed:  # wrong numbers lose the part; the slip may be their cause
            return fail(f"{verdict.message} Also, {slip[0]}", verdict.mistake or slip[1])
        return fail(f"{where}: {slip[0]} The numbers are right, so this costs "
                    f"{SIDE_SHARE:.0%} of this part's points (a side property, not the "
                    f"values).", slip[1], credit=1.0 - SIDE_SHARE)

    return judged

