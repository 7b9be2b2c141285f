"""Calling the student's code and reading what it returns (what a part's ``run`` uses).

Everything here runs in the student's process, inside the grading sandbox: it converts
what came back into plain NumPy arrays, or raises an error whose message says what came
instead and what to do. It decides nothing; the part's judge does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["UnusableResultError", "as_array", "broadcast_hint", "channel_broadcast_hint", "kind_of",
           "numeric_outputs", "numpy_output", "pair", "unusable_message"]


class UnusableResultError(TypeError):
    """What the student's code returned cannot be checked (a wrong kind, count or order).

    Raised by the checks' own code, not by the student's: its message is shown as it is,
    never as "<function> raised ...". (A subclass of TypeError, so code that catches
    TypeError still catches it.)
    """


def unusable_message(error_text: str) -> str | None:
    """The message of an ``UnusableResultError`` from its one-line description, as the grading
    sandbox reports errors ("bncourse.checks.outputs.UnusableResultError: ..."); None for any
    other error."""
    prefix = f"{UnusableResultError.__module__}.{UnusableResultError.__qualname__}: "
    return error_text[len(prefix):] if error_text.startswith(prefix) else None


def numeric_outputs(outputs: Any) -> dict[str, np.ndarray]:
    """What a part's ``run`` returned, checked to be a dict of numeric arrays: the only thing
    that crosses from the sandbox to the judge (as .npz, without pickle). The notebook's
    ``check`` applies the same rule, so that a test cell and the grader agree.

    Raises TypeError naming the first output that is not a numeric array.
    """
    if not isinstance(outputs, dict):
        raise TypeError(f"run returned {type(outputs).__name__}, expected a dict of arrays")
    arrays = {}
    for key, value in outputs.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"output {key!r} is not a numeric array (dtype {array.dtype})")
        arrays[str(key)] = array
    return arrays


def as_array(value: Any) -> np.ndarray:
    """A plain NumPy array from an array, a tensor (any device) or a scalar."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def kind_of(value: Any) -> str:
    """How a message names what came back: "a torch.Tensor", "a list of 3 items", "None"..."""
    if value is None:
        return "None"
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return "a torch.Tensor"
    if isinstance(value, tuple | list | dict):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, np.ndarray):
        return f"a single array of shape {value.shape}"
    return f"a {type(value).__name__}"


def pair(result: Any, target: str, names: tuple[str, str] = ("out", "cache")) -> tuple[Any, Any]:
    """Unpack a two-element return value, with a clear error when it is not one."""
    if not isinstance(result, tuple | list) or len(result) != 2:
        hint = ""
        if names == ("out", "cache"):
            hint = " (end with `return out, cache`; the cache may be None until assignment 4)"
        elif result is None:
            hint = " (is the `return` statement missing?)"
        raise UnusableResultError(
            f"{target} should return a pair ({names[0]}, {names[1]}), got {kind_of(result)}{hint}"
        )
    return result[0], result[1]


def numpy_output(value: Any, name: str, target: str) -> np.ndarray:
    """``value`` as an array, or a TypeError saying what a NumPy exercise got instead.

    For the functions students write in NumPy (the ``bncourse.cpu`` API): a tensor, a list,
    a tuple or None is a wrong answer with a message of its own, rather than being converted
    (``np.asarray`` would turn a list into float64 and report a misleading dtype).
    """
    if isinstance(value, np.ndarray | np.generic | float | int) and not isinstance(value, bool):
        return np.asarray(value)
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        advice = "compute it with NumPy operations (or convert with `.numpy()`)"
    elif value is None:
        advice = "is a `return` statement missing?"
    else:
        advice = "build it with NumPy operations (or convert with `np.asarray`)"
    raise UnusableResultError(f"{target} returned `{name}` as {kind_of(value)}; it should be a NumPy "
                    f"array: {advice}")


def channel_broadcast_hint(vectors: str) -> str:
    """The hint for a per-channel vector broadcast against (N, C, *spatial) data; ``vectors``
    names the (C,) vectors of the function at hand."""
    return (
        f"a (C,) vector ({vectors}) lines up with the LAST axis of x, not with the channel "
        "axis 1; reshape it to (1, -1) followed by x.ndim - 2 ones, such as (1, C, 1, 1) for "
        "(N, C, H, W) data, or reduce over every axis but 1 with keepdims=True"
    )


@contextlib.contextmanager
def broadcast_hint(hint: str) -> Iterator[None]:
    """Add ``hint`` to a shape-mismatch error raised by the student's code: NumPy's "could not
    be broadcast" (a ValueError) and torch's "The size of tensor a (..) must match the size of
    tensor b (..)" (a RuntimeError).

    The bare messages name two shapes or sizes; on a layout with spatial axes the usual cause
    is a (C,) vector meeting an (N, C, H, W) array, which the hint explains. The error keeps
    its type: it is still raised by the student's call.
    """
    try:
        yield
    except (ValueError, RuntimeError) as error:
        text = str(error)
        if "could not be broadcast" not in text and "must match the size of tensor" not in text:
            raise
        raise type(error)(f"{text.strip()}. Hint: {hint}") from error
