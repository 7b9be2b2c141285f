"""Argument checks shared by ``bncourse.cpu`` (NumPy) and ``bncourse.gpu`` (PyTorch).

Every check looks only at ``.shape``, ``.ndim`` and the kind of ``.dtype``, so
the same code serves NumPy arrays and torch tensors. Each error names the
argument, says what was expected and what came, e.g.::

    ValueError: gamma: expected shape (3,) (one value per channel of x, C=3), got (4,)

Device and dtype agreement between tensors is PyTorch-specific and lives in
``bncourse.gpu``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "check_floating",
    "check_batch",
    "check_per_channel",
    "check_same_shape",
    "check_eps",
    "check_momentum",
    "check_data_matrix",
    "check_weight",
    "check_method",
    "check_choice",
    "check_group_stats",
    "values_per_channel",
]


def _dtype_kind(array: Any) -> str:
    """NumPy's one-letter dtype kind ('f', 'c', 'i', 'u', 'b', ...) for arrays and tensors."""
    dtype = array.dtype
    if hasattr(dtype, "kind"):  # a NumPy dtype
        return dtype.kind
    if dtype.is_complex:  # a torch dtype
        return "c"
    if dtype.is_floating_point:
        return "f"
    return "b" if str(dtype) == "torch.bool" else "i"


def _shape(array: Any) -> tuple[int, ...]:
    return tuple(int(size) for size in array.shape)


def check_floating(name: str, array: Any) -> None:
    """Raise TypeError unless ``array`` holds real floating-point numbers."""
    if not hasattr(array, "dtype"):
        raise TypeError(f"{name}: expected an array or tensor, got {type(array).__name__}")
    kind = _dtype_kind(array)
    if kind == "c":
        raise TypeError(f"{name}: expected real floating-point values, got complex dtype {array.dtype}")
    if kind != "f":
        raise TypeError(
            f"{name}: expected a floating-point dtype (e.g. float32 or float64), got {array.dtype}"
            " (convert it first, e.g. x.astype(np.float32) or x.float())"
        )


def values_per_channel(x: Any) -> int:
    """m: the number of values per channel of ``x`` (N, or N*H*W for ``(N, C, H, W)``)."""
    shape = _shape(x)
    return math.prod(shape[:1] + shape[2:])


def check_batch(name: str, x: Any, training: bool) -> int:
    """Check a batch shaped ``(N, C)`` or ``(N, C, *spatial)``; return C.

    In training mode BN divides by the batch's standard deviation, which is
    meaningless for a single value per channel, so such a batch is refused
    (with the same wording as PyTorch).
    """
    check_floating(name, x)
    if x.ndim < 2:
        raise ValueError(
            f"{name}: expected at least 2 dimensions (N, C) or (N, C, *spatial), "
            f"got shape {_shape(x)} with {x.ndim} dimension(s)"
        )
    if training and values_per_channel(x) <= 1:
        raise ValueError(f"{name}: Expected more than 1 value per channel when training, got input size {_shape(x)}")
    return _shape(x)[1]


def check_per_channel(name: str, vector: Any, num_channels: int, of: str = "x") -> None:
    """Check a per-channel vector (gamma, beta, running statistics): shape ``(C,)``."""
    check_floating(name, vector)
    if _shape(vector) != (num_channels,):
        raise ValueError(
            f"{name}: expected shape ({num_channels},) (one value per channel of {of}, "
            f"C={num_channels}), got {_shape(vector)}"
        )


def check_same_shape(name: str, array: Any, expected: tuple[int, ...], what: str) -> None:
    """Check that ``array`` has the shape ``expected`` (described by ``what``)."""
    check_floating(name, array)
    if _shape(array) != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)} ({what}), got {_shape(array)}")


def _is_real_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_eps(eps: Any) -> None:
    """eps keeps the division defined for a constant channel: it must be finite and > 0."""
    if not _is_real_number(eps) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps: expected a finite number > 0, got {eps!r}")


def check_momentum(momentum: Any) -> None:
    """PyTorch's momentum is the weight of the new batch: a number in [0, 1]."""
    if not _is_real_number(momentum) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")


def check_data_matrix(name: str, x: Any) -> int:
    """Check an ``(N, D)`` data matrix with at least two rows; return D."""
    check_floating(name, x)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (N, D), got shape {_shape(x)}")
    if _shape(x)[0] < 2:
        raise ValueError(f"{name}: expected at least 2 rows (samples) to estimate a variance, got shape {_shape(x)}")
    return _shape(x)[1]


def check_weight(name: str, weight: Any) -> int:
    """Check a Linear ``(out, in)`` or Conv ``(out, in, *kernel)`` weight; return out."""
    check_floating(name, weight)
    if weight.ndim < 2:
        raise ValueError(
            f"{name}: expected a Linear weight (out, in) or a Conv weight (out, in, *kernel), "
            f"got shape {_shape(weight)}"
        )
    return _shape(weight)[0]


def check_method(method: Any) -> None:
    """Whitening method: 'zca' or 'pca'."""
    if method not in ("zca", "pca"):
        raise ValueError(f"method: expected 'zca' or 'pca', got {method!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Check that ``value`` is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        expected = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name}: expected one of {expected}, got {value!r}")


def check_group_stats(count: Any, mean: Any, m2: Any) -> None:
    """Check per-group statistics: count (K,), mean and m2 (K, C), counts >= 0 with a positive total."""
    for name, array in (("count", count), ("mean", mean), ("m2", m2)):
        if not hasattr(array, "dtype"):
            raise TypeError(f"{name}: expected an array or tensor, got {type(array).__name__}")
    if count.ndim != 1:
        raise ValueError(f"count: expected shape (K,) (one count per group), got {_shape(count)}")
    check_floating("mean", mean)
    if mean.ndim != 2 or _shape(mean)[0] != _shape(count)[0]:
        groups = _shape(count)[0]
        raise ValueError(f"mean: expected shape ({groups}, C) (one row per group of count), got {_shape(mean)}")
    check_same_shape("m2", m2, _shape(mean), "the shape of mean")
    if bool((count < 0).any()) or not bool(count.sum() > 0):
        raise ValueError(f"count: expected counts >= 0 with a positive total, got {count.tolist()}")
