"""The graded parts of every assignment: what each test cell checks, and how.

One module per assignment (``bn_transform``, ``backprop``, ``inference``, ...) defines a
module-level list ``PARTS`` of ``Part`` objects; this package imports every module in it and
indexes the parts by id. A part's id equals the nbgrader ``grade_id`` of the test cell that
calls ``bncourse.testing.check(id, obj)``, and its points equal that cell's points.

Part ids are written ``"<assignment>-<name>"``, e.g. ``"03_bn_transform-forward_2d"``:
nbgrader 0.9 rejects a grade_id with anything but letters, digits, ``_`` and ``-``
(pattern ``^[a-zA-Z0-9_\\-]*$``), so the dotted form first planned for the interface cannot be
a grade_id. A dotted id given to ``Part`` or ``check`` is converted (``canonical_id``), so
code written against the dotted form keeps working, but notebooks must use the hyphen form.

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

Adding an assignment: create ``bncourse/checks/<name>.py`` with ``PARTS = [Part(...), ...]``
(see ``bn_transform.py`` for the pattern); nothing here changes.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bncourse.testing import Verdict

__all__ = ["PARTS", "Part", "canonical_id", "parts_for"]

_GRADE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def canonical_id(part_id: str) -> str:
    """The grade_id form of a part id: ``"03_bn_transform.forward_2d"`` -> ``"03_bn_transform-forward_2d"``."""
    return part_id.replace(".", "-")


@dataclass(frozen=True)
class Part:
    """One graded test cell.

    - id: "<assignment>-<name>", e.g. "03_bn_transform-forward_2d"; the cell's grade_id.
    - assignment: e.g. "03_bn_transform".
    - target: name of the student's function or class in the notebook, e.g.
      "batchnorm_forward".
    - points: the cell's nbgrader points.
    - hidden: True when the cell's check sits inside ### BEGIN/END HIDDEN TESTS.
    - description: one line saying what is checked (printed on success, used in reports).
    - cases: () -> list of cases (dicts of arrays, scalars and strings; seeded).
    - run: (student's object, case) -> dict of arrays.
    - judge: (case, outputs of run) -> Verdict.
    """

    id: str
    assignment: str
    target: str
    points: float
    hidden: bool
    description: str
    cases: Callable[[], list[dict[str, Any]]]
    run: Callable[[Any, dict[str, Any]], dict[str, np.ndarray]]
    judge: Callable[[dict[str, Any], dict[str, np.ndarray]], Verdict]

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", canonical_id(self.id))  # frozen: set once, here
        if not self.id.startswith(self.assignment + "-") or not _GRADE_ID.match(self.id):
            raise ValueError(
                f"id: expected '<assignment>-<name>' starting with {self.assignment!r} and made "
                f"of letters, digits, '_' and '-' (an nbgrader grade_id), got {self.id!r}"
            )
        if self.points <= 0:
            raise ValueError(f"points: expected a positive number, got {self.points!r}")


def _collect() -> dict[str, Part]:
    parts: dict[str, Part] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for part in getattr(module, "PARTS", []):
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
