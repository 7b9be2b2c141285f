"""Small judging helpers shared by the checks of assignments 01, 02 and 06.

They only read plain arrays (what a ``run`` shipped back) and build ``Verdict`` objects; a
missing key, a non-numeric array or a wrong shape becomes a failing verdict, never a crash.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bncourse.testing import Verdict, compare


def ok() -> Verdict:
    return Verdict(passed=True)


def fail(message: str, mistake: str | None = None) -> Verdict:
    return Verdict(passed=False, message=message, mistake=mistake)


def array_output(
    outputs: dict[str, Any], key: str, where: str, numeric: bool = True
) -> tuple[np.ndarray, Verdict | None]:
    """Fetch ``outputs[key]`` as a real numeric ndarray, or a failing verdict saying what came."""
    if key not in outputs:
        return np.empty(0), fail(f"{where}: no result named {key!r} came back.")
    array = np.asarray(outputs[key])
    if numeric and array.dtype.kind not in "fiu":
        return array, fail(f"{where}: expected a real floating-point array for {key}, got dtype {array.dtype}.")
    return array, None


def compare_arrays(got: Any, expected: np.ndarray, rtol: float, atol: float, name: str) -> Verdict:
    """``bncourse.testing.compare`` as a Verdict (largest difference and its index on failure)."""
    message = compare(name, got, expected, rtol=rtol, atol=atol)
    return ok() if message is None else fail(message)
