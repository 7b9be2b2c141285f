"""Tests of bncourse.timing: the helper measures what it is given, interleaved, and rejects bad input."""

import time

import numpy as np
import pytest

from bncourse.timing import Timing, compare_timings


def test_slower_function_measures_slower_and_every_repeat_is_recorded():
    calls = {"fast": 0, "slow": 0}

    def fast():
        calls["fast"] += 1

    def slow():
        calls["slow"] += 1
        time.sleep(0.004)

    timings = compare_timings({"fast": fast, "slow": slow}, repeats=5, warmup=2)
    assert calls == {"fast": 7, "slow": 7}  # warmup calls happen, but are not measured
    assert timings["slow"].seconds.shape == (5,)
    # sleep() guarantees at least the requested time; a 4 ms floor cannot be beaten by noise
    assert timings["slow"].median >= 0.004
    assert timings["fast"].median < timings["slow"].median


def test_candidates_are_interleaved_round_by_round_in_shuffled_order():
    order = []
    names = "abcd"
    calls = {name: (lambda name=name: order.append(name)) for name in names}
    compare_timings(calls, repeats=40, warmup=0)
    rounds = [order[i : i + 4] for i in range(0, len(order), 4)]
    assert len(rounds) == 40 and all(sorted(r) == list(names) for r in rounds)  # each round calls each once
    assert rounds[0] == list(names)
    # Every candidate runs right after every other one at some point, not always after the same one.
    follows = {(r[i], r[i + 1]) for r in rounds for i in range(3)}
    assert follows == {(x, y) for x in names for y in names if x != y}
    # The shuffle is seeded: the same calls again give the same order.
    first = list(order)
    order.clear()
    compare_timings(calls, repeats=40, warmup=0)
    assert order == first


def test_median_and_quartiles_of_known_durations():
    timing = Timing(np.array([4.0, 1.0, 3.0, 2.0, 100.0]))
    assert timing.median == 3.0  # the outlier does not move the median
    assert timing.quartiles == (2.0, 4.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidates": {}}, "candidates"),
        ({"candidates": {"x": 3}}, "candidates\\['x'\\]"),
        ({"candidates": {"x": lambda: None}, "repeats": 0}, "repeats"),
        ({"candidates": {"x": lambda: None}, "warmup": -1}, "warmup"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        compare_timings(**kwargs)
