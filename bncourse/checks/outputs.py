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

__all__ = ["as_array", "broadcast_hint", "kind_of", "numpy_output", "pair"]


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
        raise TypeError(
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
    raise TypeError(f"{target} returned `{name}` as {kind_of(value)}; it should be a NumPy "
                    f"array: {advice}")


@contextlib.contextmanager
def broadcast_hint(hint: str) -> Iterator[None]:
    """Add ``hint`` to a NumPy "could not be broadcast" error raised by the student's code.

    The bare NumPy message names two shapes; on a layout with spatial axes the usual cause is
    a (C,) vector meeting an (N, C, H, W) array, which the hint explains. The error stays a
    ValueError raised by the student's call.
    """
    try:
        yield
    except ValueError as error:
        if "could not be broadcast" not in str(error):
            raise
        raise ValueError(f"{str(error).strip()}. Hint: {hint}") from error
