"""BN on real hardware: the bytes-moved model and the benchmark's cached results.

BN performs a handful of arithmetic operations per value it reads, far fewer
than a processor can do in the time memory delivers the value, so its time
is set by the bytes it moves. The model below counts, for each mode, how
many times a tensor of the size of x must cross memory at the least (a
"pass"): the per-channel vectors are negligible.

- forward (training): read x for mu_B and sigma^2_B, read x again and write
  y: 3 passes.
- backward: read dy and x (or x_hat) for sum dy and sum dy * x_hat, read them
  again and write dx: 5 passes.
- inference: read x, write y: 2 passes (0 once folded into the layer before).

``benchmarks/bench_reference_batchnorm.py`` times every implementation and
writes one row per measurement with the columns ``COLUMNS``; the book's
chapter reads a committed copy with ``load_results``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

__all__ = ["PASSES", "COLUMNS", "bytes_moved", "load_results"]

PASSES = {"forward": 3, "backward": 5, "forward+backward": 8, "inference": 2}

COLUMNS = (
    "device",  # "cpu" or "cuda"
    "allocator",  # "system" (glibc's malloc as it is) or "retain" (freed memory kept; CPU only)
    "threads",  # CPU threads torch used (0 on CUDA)
    "shape",  # e.g. "32x64x32x32"
    "dtype",  # "float32"
    "mode",  # a key of PASSES
    "impl",  # "torch", "numpy", "fused", ...
    "ms",  # median time of one call, milliseconds
    "ratio_to_torch",  # ms / ms of the "torch" row of the same device, threads, shape, mode
    "model_mb",  # bytes the model says must move, in MB (1e6 bytes)
    "gb_per_s",  # model_mb / ms, in GB/s
    "copy_gb_per_s",  # bandwidth of a plain copy measured in the same run
    "roofline_fraction",  # gb_per_s / copy_gb_per_s
    "repeats",  # number of timed calls the median is taken over
)

_NUMERIC = {"threads": int, "repeats": int}
_TEXT = {"device", "allocator", "shape", "dtype", "mode", "impl"}


def bytes_moved(shape: tuple[int, ...], itemsize: int, mode: str) -> int:
    """Bytes that ``mode`` must move at the least on a tensor of ``shape`` (see the module docstring).

    Inputs:
    - shape: the shape of x, (N, C) or (N, C, *spatial).
    - itemsize: bytes per value (4 for float32).
    - mode: "forward", "backward", "forward+backward" or "inference".

    Returns the number of bytes: PASSES[mode] * prod(shape) * itemsize.
    """
    if mode not in PASSES:
        raise ValueError(f"mode: expected one of {', '.join(map(repr, PASSES))}, got {mode!r}")
    return PASSES[mode] * math.prod(shape) * itemsize


def load_results(path: str | Path) -> list[dict[str, object]]:
    """Read a CSV written by the benchmark: a list of rows, numbers as int or float.

    Raises ValueError naming the file if its header is not ``COLUMNS`` (the
    cache was written by another version of the benchmark: re-run it).
    """
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(
                f"{path}: expected the columns {', '.join(COLUMNS)} (bncourse.hardware.COLUMNS), "
                f"got {', '.join(reader.fieldnames or ())}; re-run benchmarks/bench_reference_batchnorm.py"
            )
        rows = []
        for raw in reader:
            row: dict[str, object] = {}
            for name, value in raw.items():
                row[name] = value if name in _TEXT else _NUMERIC.get(name, float)(value)
            rows.append(row)
    return rows
