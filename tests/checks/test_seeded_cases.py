"""Per-student hidden cases (``core.build_cases`` under a student seed, as ``bncourse-grade``
builds them): visible cases never change; a hidden part's cases keep their shapes, dtypes,
labels and scalars and change only drawn values; the right answer passes every seeded case;
a known mistake named on a fixed hidden case is named the same way on its seeded twin.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import test_backprop
import test_bn_transform
import test_distributed
import test_inference
import test_initialization
import test_whitening
from corpus import STYLES
from judging import Family, cast, solution_namespace
from test_corpus import _backward_in_notebook

from bncourse.checks import PARTS
from bncourse.checks.core import Verdict, build_cases, student_cases
from bncourse.testing import run_case

# Seeds as bncourse-grade derives them (64-bit), and a small one.
SEEDS = [7, 0x9F3B_21C4_77D0_5E19, 0xFFFF_FFFF_FFFF_FFFE]

# Hidden parts whose cases hold no drawn values, with the reason they stay fixed.
FIXED = {
    # a training run judged on accuracy; the threshold was measured on these seeds and splits
    "06_in_practice-train_bn_hidden": "training seed and split fixed",
    # layer shapes and the seed handed to the student's initialiser: nothing is drawn
    "01_initialization-xavier_uniform_hidden": "shapes only",
    # the answer is a class set by the construction (activation, gain, depth), not by a draw
    "01_initialization-classify_signal_hidden": "profiles from the reference's own seeds",
}
HIDDEN = [p for p in PARTS.values() if p.hidden]
VISIBLE = [p for p in PARTS.values() if not p.hidden]
FAMILIES: dict[str, Family] = {
    f"{module.__name__[5:]}-{name}": family
    for module in (test_backprop, test_bn_transform, test_distributed, test_inference)
    for name, family in module.FAMILIES.items()
}


def _arrays(case: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: v for k, v in case.items() if isinstance(v, np.ndarray)}


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    return a == b


def _same(first: list[dict], second: list[dict]) -> bool:
    return len(first) == len(second) and all(
        a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
        for a, b in zip(first, second, strict=True))


def test_visible_cases_never_change():
    for part in VISIBLE:
        assert _same(build_cases(part, SEEDS[1]), part.cases()), part.id


@pytest.mark.parametrize("part", HIDDEN, ids=lambda p: p.id)
def test_seeded_hidden_cases_keep_their_structure_and_change_their_values(part):
    fixed = build_cases(part)
    assert _same(fixed, part.cases())  # no seed: the cases plain nbgrader sees
    seeded = {seed: build_cases(part, seed) for seed in SEEDS}
    for seed, cases in seeded.items():
        assert _same(cases, build_cases(part, seed)), "the same seed must give the same cases"
        assert len(cases) == len(fixed)
        for a, b in zip(fixed, cases, strict=True):
            assert a.keys() == b.keys(), a["label"]
            assert {k: v for k, v in a.items() if k not in _arrays(a)} == \
                   {k: v for k, v in b.items() if k not in _arrays(b)}, a["label"]
            for key, array in _arrays(a).items():
                assert (array.shape, array.dtype) == (b[key].shape, b[key].dtype), (a["label"], key)
    if part.id in FIXED:
        assert all(_same(cases, fixed) for cases in seeded.values())
        return
    assert not any(_same(cases, fixed) for cases in seeded.values()), "values did not change"
    assert not _same(seeded[SEEDS[0]], seeded[SEEDS[1]]), "two students got the same values"


def test_a_seed_must_be_a_non_negative_int():
    with pytest.raises(ValueError, match="seed: expected a non-negative int"), student_cases(-1):
        pass


def _seeded_hidden_cases(family: Family, seed: int | None) -> list[dict]:
    """Every hidden case of the family's parts, under ``seed``."""
    return [case for part in family[0] if part.hidden for case in build_cases(part, seed)]


def _named(family: Family, index: int, cases: list[dict]) -> str | None:
    """The mistake a part's feedback names for the variant ``index`` (its first failing
    case's, as ``grading.judge.judge_part`` reports it), or None when every case passes."""
    _, variants, expected, judge, dtype_key = family
    variant = variants[index]
    for case in cases:
        if not variant.applies(case):
            continue
        with np.errstate(all="ignore"):
            outputs = {**expected(case), **variant.compute(case)}
        verdict = judge(case, cast(outputs, case, dtype_key))
        if not verdict.passed:
            return verdict.mistake
    return None


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_right_answer_passes_every_seeded_case(name):
    _, _, expected, judge, dtype_key = FAMILIES[name]
    for seed in SEEDS:
        for case in _seeded_hidden_cases(FAMILIES[name], seed):
            verdict = judge(case, cast(expected(case), case, dtype_key))
            assert verdict == Verdict(True), (seed, case["label"], verdict)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_mistake_named_on_the_fixed_hidden_cases_is_named_on_seeded_ones(name):
    """What a student with this mistake reads: the same named mistake, whatever the seed."""
    family = FAMILIES[name]
    named = 0
    for part in (p for p in family[0] if p.hidden):
        fixed = build_cases(part)
        seeded = {seed: build_cases(part, seed) for seed in SEEDS}
        for index, variant in enumerate(family[1]):
            if variant.compute is None or _named(family, index, fixed) != variant.mistake:
                continue
            named += 1
            for seed, cases in seeded.items():
                assert _named(family, index, cases) == variant.mistake, (part.id, variant.mistake, seed)
    assert named > 0


# The wrong implementations 01 and 02 name on their visible parts, on the hidden twins.
def _hidden_twin(part_id: str) -> str | None:
    """The hidden part checking the same function ("whiten_pca" -> "whiten_hidden")."""
    for twin in (f"{part_id}_hidden", f"{part_id.rsplit('_', 1)[0]}_hidden"):
        if twin in PARTS and twin not in FIXED and PARTS[twin].target == PARTS[part_id].target:
            return twin
    return None


TWIN_NAMED = [(_hidden_twin(part_id), wrong, mistake)
              for part_id, wrong, mistake in test_initialization.NAMED + test_whitening.NAMED
              if _hidden_twin(part_id)]


def _first_mistake(part_id: str, wrong: Any, seed: int | None) -> str | None:
    for case in build_cases(PARTS[part_id], seed):
        verdict = run_case(PARTS[part_id], wrong, case)
        if not verdict.passed:
            return verdict.mistake
    return None


@pytest.mark.parametrize(("part_id", "wrong", "mistake"), TWIN_NAMED, ids=[m for _, _, m in TWIN_NAMED])
def test_a_wrong_implementation_named_on_fixed_hidden_cases_is_named_on_seeded_ones(part_id, wrong, mistake):
    if _first_mistake(part_id, wrong, None) != mistake:
        pytest.fail(f"{part_id} does not name {mistake} on its fixed cases: drop it from TWIN_NAMED")
    for seed in SEEDS:
        assert _first_mistake(part_id, wrong, seed) == mistake, seed


# More students for the solution notebooks: a judge whose margin depends on the drawn values can
# fail correct work on a few seeds in a hundred (04's numerical gradient did on 21 of 200, with a
# fixed tolerance below the central difference's own truncation error).
SWEEP = SEEDS + [int(seed) for seed in np.random.default_rng(2026).integers(0, 2**63, size=40)]


@pytest.mark.parametrize("assignment", ["01_initialization", "02_whitening", "03_bn_transform", "04_backprop",
                                        "05_inference", "07_distributed"])
def test_the_solution_notebook_passes_every_seeded_case(assignment):
    namespace = solution_namespace(assignment)
    for part in (p for p in HIDDEN if p.assignment == assignment):
        for seed in SWEEP:
            for case in build_cases(part, seed):
                verdict = run_case(part, namespace[part.target], case)
                assert verdict.passed, (part.id, seed, verdict.message)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_each_correct_style_passes_the_seeded_bn_cases(style):
    forward, backward = STYLES[style]
    students = {"03_bn_transform-forward_2d_hidden": forward, "03_bn_transform-forward_4d_hidden": forward,
                "04_backprop-backward_hidden": _backward_in_notebook(forward, backward),
                "04_backprop-backward_compact_hidden": _backward_in_notebook(forward, backward)}
    for part_id, student in students.items():
        for seed in SEEDS:
            for case in build_cases(PARTS[part_id], seed):
                verdict = run_case(PARTS[part_id], student, case)
                assert verdict.passed, (part_id, seed, verdict.message)
