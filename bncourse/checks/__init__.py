"""The graded parts of every assignment: what each test cell checks, and how.

The framework (see README.md in this folder):

- ``core``: ``Part``, ``Verdict``, comparing, ``Variant`` and ``diagnose``;
- ``outputs``: calling the student's code and reading what it returns;
- ``shortcuts``: the one policy on ready-made results (the scan and the tripwire);
- ``variants``: the catalogue of known mistakes.

Then one module per assignment (``initialization``, ``whitening``, ``bn_transform``,
``backprop``, ``inference``, ``in_practice``, ``distributed``), each defining ``ASSIGNMENT``
and a list ``PARTS``; this package imports every one of them and indexes the parts by id. A part's id,
``"<assignment>-<name>"``, equals the nbgrader ``grade_id`` of the test cell that calls
``bncourse.testing.check(id, obj)``, and its points equal that cell's points.

A part splits in two on purpose, because the grading pipeline runs the student's code in a
sandbox and decides outside it:

- ``cases()`` builds deterministic inputs: values are NumPy arrays, Python scalars or strings,
  so they travel as .npz/JSON without pickle;
- ``run(obj, case)`` calls the student's object on one case and returns ONLY arrays
  (dict str -> ndarray). It runs in the student's process, so it never calls a reference
  implementation and decides nothing. To let ``judge`` see whether inputs were mutated, it
  returns the arrays it passed in, after the call, as ``"after_<name>"``;
- ``judge(case, outputs)`` recomputes the expected result with the reference (float64
  ground truth), compares and diagnoses, returning a ``Verdict``. It accepts anything
  ``run`` may return, extra or missing keys included, and fails rather than crash.

Adding an assignment: create ``bncourse/checks/<name>.py`` with ``ASSIGNMENT`` and
each part declared with ``part`` or ``part_pair`` after its judge and listed in ``PARTS``
(see ``README.md``); nothing here changes.
"""

from __future__ import annotations

import importlib
import pkgutil

from bncourse.checks.core import Part

__all__ = ["PARTS", "Part", "parts_for"]

# The modules of this package that are not assignments.
_FRAMEWORK = {"core", "outputs", "shortcuts", "variants"}


def _collect() -> dict[str, Part]:
    parts: dict[str, Part] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name in _FRAMEWORK:
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for part in module.PARTS:
            if part.id in parts:
                raise ValueError(f"part id {part.id!r} is defined twice")
            parts[part.id] = part
    return parts


PARTS: dict[str, Part] = _collect()


def parts_for(assignment: str) -> list[Part]:
    """The parts of one assignment, in the order their modules list them.

    Raises ValueError naming the known assignments when ``assignment`` has no parts.
    """
    found = [part for part in PARTS.values() if part.assignment == assignment]
    if not found:
        known = sorted({part.assignment for part in PARTS.values()})
        raise ValueError(f"assignment: expected one of {known}, got {assignment!r}")
    return found
