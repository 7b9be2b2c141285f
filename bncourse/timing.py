"""A small, honest timing helper for the book's speed comparisons.

Timings on a shared machine are noisy, so the helper (1) warms every function
up before measuring, (2) interleaves the candidates round by round, so that a
burst of load from another process hits all of them rather than one, in an
order shuffled each round, so that no candidate always runs after the same one
(a predecessor that reads other memory leaves the caches cold for it), and
(3) reports the median of the repeats, which one slow outlier cannot move.
It measures wall-clock time with ``time.perf_counter``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np


class Timing(NamedTuple):
    """Repeated wall-clock timings of one function, in seconds."""

    seconds: np.ndarray  # (repeats,) one measurement per round

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))

    @property
    def quartiles(self) -> tuple[float, float]:
        low, high = np.percentile(self.seconds, [25, 75])
        return float(low), float(high)


def compare_timings(
    candidates: Mapping[str, Callable[[], object]], repeats: int = 30, warmup: int = 3
) -> dict[str, Timing]:
    """Time each zero-argument callable ``repeats`` times, interleaved round by round.

    Inputs:
    - candidates: name -> callable taking no argument (wrap the call in a lambda).
    - repeats: number of measured calls of each candidate, at least 1.
    - warmup: unmeasured calls of each candidate made first (allocator, caches,
      lazy initialisation), at least 0.

    Returns name -> ``Timing`` holding the ``repeats`` durations in seconds.
    """
    if not candidates:
        raise ValueError("candidates: expected at least one callable, got an empty mapping")
    for name, fn in candidates.items():
        if not callable(fn):
            raise TypeError(f"candidates[{name!r}]: expected a callable, got {type(fn).__name__}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: expected a positive integer, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected a non-negative integer, got {warmup!r}")

    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    durations = {name: np.empty(repeats) for name in candidates}
    orders = round_orders(list(candidates), repeats)
    for round_index, order in enumerate(orders):
        for name in order:
            fn = candidates[name]
            start = time.perf_counter()
            fn()
            durations[name][round_index] = time.perf_counter() - start
    return {name: Timing(seconds) for name, seconds in durations.items()}


def round_orders(names: list[str], repeats: int, seed: int = 0) -> list[list[str]]:
    """The order of each round: ``names`` first, then seeded random permutations.

    In one fixed order a candidate always runs right after the same one, and if that one
    reads other memory (a large copy, another library's arrays) it always starts with cold
    caches: measured, that made a BN step 20 % slower than the same step placed elsewhere.
    Shuffled rounds give every candidate every predecessor; the seed keeps a run reproducible.
    """
    rng = np.random.default_rng(seed)
    return [list(names)] + [[names[i] for i in rng.permutation(len(names))] for _ in range(repeats - 1)]
