"""Assignment 07, BN across processes: Chan's merge of per-group statistics, and SyncBN's
forward and backward simulated with K ranks in one process.

The ranks are the groups of one batch split along axis 0 (unequal sizes, one of a single
sample); a case holds the whole batch ``x`` (and ``dout``) with the group sizes ``sizes``,
and ``run`` hands the student a list of K arrays. The right answer is BN over the whole batch
(``bncourse.cpu`` in float64), which is what SyncBN must equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bncourse import cpu
from bncourse.checks.core import DtypeTolerance, Verdict, array_output, case_rng, fail, judge_outputs, part_pair
from bncourse.checks.outputs import broadcast_hint, channel_broadcast_hint, kind_of, numpy_output
from bncourse.checks.variants import MERGE_VARIANTS, SYNC_BACKWARD_VARIANTS, SYNC_FORWARD_VARIANTS

ASSIGNMENT = "07_distributed"

# Tolerances (rtol, atol).
# float64: correct code agrees with the float64 reference to ~1e-13 on these values (order
# 0.1-100); 1e-7 is a wide margin and still separates every variant by orders of magnitude.
# float32: the solution's BN outputs and gradients (order 0.1-10) come within 0.2% of this
# tolerance, and float32 merges of groups ~1000 standard deviations from zero within ~1e-7
# relative, sequential or vectorised: a margin of several hundred. The naive
# E[x^2] - E[x]^2 merge is off by ~2e-2 there (tests/checks/test_distributed.py).
TOLERANCE = DtypeTolerance(float64=(1e-7, 1e-9), float32=(1e-4, 1e-4))

BROADCAST_HINT = channel_broadcast_hint("gamma, beta, or a statistic reduced without keepdims=True")


def _unpack(result: Any, target: str, names: tuple[str, ...]) -> tuple[Any, ...]:
    """A tuple of len(names) items, or a TypeError saying what came instead."""
    if not isinstance(result, tuple | list) or len(result) != len(names):
        raise TypeError(f"{target} should return a tuple ({', '.join(names)}), got "
                        f"{kind_of(result)}")
    return tuple(result)


def _groups_output(values: Any, shapes: list[tuple[int, ...]], name: str, target: str) -> np.ndarray:
    """The K per-rank arrays a student returned, checked and joined along axis 0."""
    if not isinstance(values, list | tuple) or len(values) != len(shapes):
        raise TypeError(f"{target} should return `{name}` as a list of {len(shapes)} arrays "
                        f"(one per rank), got {kind_of(values)}")
    arrays = [numpy_output(value, f"{name}[{k}]", target) for k, value in enumerate(values)]
    for k, (array, shape) in enumerate(zip(arrays, shapes, strict=True)):
        if array.shape != shape:
            raise ValueError(f"{target}: `{name}[{k}]` has shape {array.shape}, expected {shape} "
                             f"(the shape of rank {k}'s slice)")
    return np.concatenate(arrays)


def _data(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Per-channel means in [-2, 2] and standard deviations in [0.5, 2]."""
    stat_shape = (1, shape[1]) + (1,) * (len(shape) - 2)
    mean = rng.uniform(-2.0, 2.0, stat_shape)
    std = rng.uniform(0.5, 2.0, stat_shape)
    return (mean + std * rng.standard_normal(shape)).astype(dtype)


# --------------------------------------------------------------------------- the merge


def merge_case(label: str, sizes: tuple[int, ...], channels: int, dtype: type, seed: int,
               offset: float = 0.0, spread: float = 1.0) -> dict[str, Any]:
    """Per-group (count, mean, M2) of K groups of data whose channel means lie within 2 of
    ``offset``; values spread by about ``spread`` within a group and the group means by as
    much between groups. An empty group holds mean 0 and M2 0, as a rank without data
    reports."""
    rng = case_rng(seed)
    base = offset + rng.uniform(-2.0, 2.0, channels)
    means, m2 = np.zeros((len(sizes), channels)), np.zeros((len(sizes), channels))
    for k, size in enumerate(sizes):
        if size == 0:
            continue
        values = base + spread * rng.uniform(-1.0, 1.0, channels) + spread * rng.standard_normal(
            (size, channels))
        means[k] = values.mean(axis=0)
        m2[k] = ((values - means[k]) ** 2).sum(axis=0)
    return {"label": label, "count": np.array(sizes, dtype=np.int64),
            "mean": means.astype(dtype), "m2": m2.astype(dtype)}


MERGE_COVERS = ("merge_batch_stats: equal and unequal groups, a group of one value, an empty "
                "group, float32 means near 1000")


def merge_cases() -> list[dict[str, Any]]:
    return [
        merge_case("3 float64 groups of 4 values, C = 3", (4, 4, 4), 3, np.float64, seed=701),
        merge_case("4 float64 groups of sizes (1, 5, 2, 8), one of a single value", (1, 5, 2, 8),
                   3, np.float64, seed=702),
        merge_case("3 float64 groups of sizes (0, 6, 3), the first empty", (0, 6, 3), 2,
                   np.float64, seed=703),
        merge_case("3 float32 groups of sizes (8, 5, 7), means near 1000 and spread 1 (where "
                   "sum x^2 - m mu^2 cancels)",
                   (8, 5, 7), 4, np.float32, seed=704, offset=1000.0),
    ]


MERGE_HIDDEN_COVERS = ("merge_batch_stats: two groups, empty groups in the middle and last, float32 "
                       "means near -2000")


def merge_cases_hidden() -> list[dict[str, Any]]:
    return [
        merge_case("2 float64 groups of sizes (7, 3)", (7, 3), 4, np.float64, seed=711),
        merge_case("5 float64 groups of sizes (2, 0, 1, 6, 0), empty ones in the middle and "
                   "last", (2, 0, 1, 6, 0), 3, np.float64, seed=712),
        merge_case("4 float32 groups of sizes (1, 9, 4, 6), means near -2000 and spread 2",
                   (1, 9, 4, 6), 3, np.float32, seed=713, offset=-2000.0, spread=2.0),
    ]


def run_merge(merge_batch_stats: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    count, mean, m2 = (np.array(case[n]) for n in ("count", "mean", "m2"))
    result = merge_batch_stats(count, mean, m2)
    total, merged_mean, merged_m2 = _unpack(result, "merge_batch_stats", ("count", "mean", "m2"))
    return {"total": numpy_output(total, "count", "merge_batch_stats"),
            "mean": numpy_output(merged_mean, "mean", "merge_batch_stats"),
            "m2": numpy_output(merged_m2, "m2", "merge_batch_stats"),
            "after_count": count, "after_mean": mean, "after_m2": m2}


def judge_merge(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    """The count exactly, then mean and M2 against Chan's merge in float64 (``bncourse.cpu``)."""
    where = f"merge_batch_stats ({case['label']})"
    count = np.asarray(case["count"])
    mean, m2 = (np.asarray(case[n], dtype=np.float64) for n in ("mean", "m2"))
    want_total, want_mean, want_m2 = cpu.merge_batch_stats(count, mean, m2)
    total, problem = array_output(outputs, "total", where)
    if problem is not None:
        return problem
    if total.shape != () or total != want_total:
        return fail(f"{where}: the count should be the total number of values, "
                    f"{int(want_total)} (one number), got {total.tolist()}.")
    return judge_outputs("merge_batch_stats", case, outputs, {"mean": want_mean, "m2": want_m2},
                         TOLERANCE.of(case, "mean"), MERGE_VARIANTS, dtype_of="mean", inputs=("count", "mean", "m2"))


MERGE = part_pair(ASSIGNMENT, "merge", target="merge_batch_stats", points=(2.0, 1.0),
                  descriptions=(MERGE_COVERS, MERGE_HIDDEN_COVERS), cases=(merge_cases, merge_cases_hidden),
                  run=run_merge, judge=judge_merge)


# --------------------------------------------------------------------------- SyncBN forward


def sync_case(label: str, shape: tuple[int, ...], sizes: tuple[int, ...], dtype: type,
              seed: int, eps: float = 1e-5) -> dict[str, Any]:
    """A batch of ``shape`` split over len(sizes) ranks, with parameters and an upstream
    gradient; the ranks' slices come from one distribution, as in data-parallel training."""
    if sum(sizes) != shape[0]:
        raise ValueError(f"sizes: expected sizes adding up to N = {shape[0]}, got {sizes}")
    rng = case_rng(seed)
    channels = shape[1]
    return {
        "label": label, "eps": eps, "sizes": np.array(sizes, dtype=np.int64),
        "x": _data(rng, shape, dtype),
        "gamma": (rng.uniform(0.5, 2.0, channels) * rng.choice([-1.0, 1.0], channels)).astype(dtype),
        "beta": rng.uniform(-2.0, 2.0, channels).astype(dtype),
        "dout": rng.standard_normal(shape).astype(dtype),
    }


# What the cases cover, after what each function is checked against.
SYNC_COVERS = "unequal ranks, a rank of one example, (N, C), (N, C, L) and (N, C, H, W), float32"


def sync_cases() -> list[dict[str, Any]]:
    return [
        sync_case("float64 x of shape (12, 3) on 3 ranks of sizes (5, 1, 6)", (12, 3), (5, 1, 6),
                  np.float64, seed=721),
        sync_case("float32 x of shape (6, 2, 3, 2) on 2 ranks of sizes (4, 2), eps = 1e-3",
                  (6, 2, 3, 2), (4, 2), np.float32, seed=722, eps=1e-3),
        # One spatial axis, as the hidden cases have (no surprises at grading).
        sync_case("float32 x of shape (5, 3, 4) on 2 ranks of sizes (2, 3)", (5, 3, 4), (2, 3),
                  np.float32, seed=723),
    ]


SYNC_HIDDEN_COVERS = "4 ranks, (N, C, L) with eps = 1e-2, equal float32 ranks"


def sync_cases_hidden() -> list[dict[str, Any]]:
    return [
        sync_case("float64 x of shape (10, 4) on 4 ranks of sizes (1, 2, 3, 4)", (10, 4),
                  (1, 2, 3, 4), np.float64, seed=731),
        sync_case("float64 x of shape (7, 2, 3) on 2 ranks of sizes (6, 1), eps = 1e-2",
                  (7, 2, 3), (6, 1), np.float64, seed=732, eps=1e-2),
        sync_case("float32 x of shape (9, 3) on 3 ranks of 3", (9, 3), (3, 3, 3), np.float32,
                  seed=733),
    ]


def _ranks(case: dict[str, Any], name: str) -> list[np.ndarray]:
    """The ranks' slices of ``case[name]``, each a copy in the case's dtype."""
    edges = np.cumsum(np.asarray(case["sizes"]))[:-1]
    return [np.array(piece) for piece in np.split(np.asarray(case[name]), edges)]


def _call_forward(forward: Any, case: dict[str, Any]) -> tuple[dict[str, np.ndarray], Any, list]:
    """The student's forward on copies of the ranks' slices: (inputs after the call, the
    whole batch's output, the caches)."""
    x_groups = _ranks(case, "x")
    gamma, beta = np.array(case["gamma"]), np.array(case["beta"])
    with broadcast_hint(BROADCAST_HINT):
        result = forward(x_groups, gamma, beta, eps=case["eps"])
    out_groups, caches = _unpack(result, "sync_batchnorm_forward", ("out_groups", "caches"))
    out = _groups_output(out_groups, [g.shape for g in x_groups], "out_groups",
                         "sync_batchnorm_forward")
    after = {"after_x": np.concatenate(x_groups), "after_gamma": gamma, "after_beta": beta}
    return after, out, caches


def run_forward(sync_batchnorm_forward: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    after, out, _ = _call_forward(sync_batchnorm_forward, case)
    return {"out": out, **after}


def _whole_batch(case: dict[str, Any]) -> tuple[np.ndarray, Any]:
    """BN over the concatenated batch in float64: (out, cache) of ``bncourse.cpu``."""
    x, gamma, beta = (np.asarray(case[n], dtype=np.float64) for n in ("x", "gamma", "beta"))
    return cpu.batchnorm_forward(x, gamma, beta, eps=case["eps"])


def judge_forward(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    out, _ = _whole_batch(case)
    return judge_outputs("sync_batchnorm_forward", case, outputs, {"out": out}, TOLERANCE.of(case),
                         SYNC_FORWARD_VARIANTS, dtype_of="x", inputs=("x", "gamma", "beta"))


FORWARD = part_pair(ASSIGNMENT, "forward", target="sync_batchnorm_forward", points=(2.0, 1.0),
                    descriptions=(f"sync_batchnorm_forward equals BN over the whole batch: {SYNC_COVERS}",
                                  f"sync_batchnorm_forward: {SYNC_HIDDEN_COVERS}"),
                    cases=(sync_cases, sync_cases_hidden),
                    run=run_forward, judge=judge_forward)


# --------------------------------------------------------------------------- SyncBN backward


def _student_forward(backward: Any) -> Any:
    forward = getattr(backward, "__globals__", {}).get("sync_batchnorm_forward")
    if forward is None:
        raise NameError("the backward part calls your sync_batchnorm_forward to get the caches; "
                        "define it in the notebook first")
    return forward


def run_backward(sync_batchnorm_backward: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """The student's forward, then the student's backward on its caches; inputs copied."""
    after, out, caches = _call_forward(_student_forward(sync_batchnorm_backward), case)
    dout_groups = _ranks(case, "dout")
    with broadcast_hint(BROADCAST_HINT):
        result = sync_batchnorm_backward(dout_groups, caches)
    dx_groups, dgamma, dbeta = _unpack(result, "sync_batchnorm_backward",
                                       ("dx_groups", "dgamma", "dbeta"))
    target = "sync_batchnorm_backward"
    return {"dx": _groups_output(dx_groups, [g.shape for g in dout_groups], "dx_groups", target),
            "dgamma": numpy_output(dgamma, "dgamma", target),
            "dbeta": numpy_output(dbeta, "dbeta", target),
            "out": out, "after_dout": np.concatenate(dout_groups), **after}


def judge_backward(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    """The forward's output first (the caches come from the student's forward), then the
    gradients against BN's backward over the whole batch."""
    forward = judge_forward(case, outputs)
    if not forward.passed:
        return fail(f"the backward part runs your sync_batchnorm_forward first, and "
                    f"{forward.message}", forward.mistake)
    _, cache = _whole_batch(case)
    dx, dgamma, dbeta = cpu.batchnorm_backward(np.asarray(case["dout"], dtype=np.float64), cache)
    return judge_outputs("sync_batchnorm_backward", case, outputs,
                         {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}, TOLERANCE.of(case),
                         SYNC_BACKWARD_VARIANTS, dtype_of="x",
                         inputs=("x", "gamma", "beta", "dout"))


BACKWARD = part_pair(ASSIGNMENT, "backward", target="sync_batchnorm_backward", points=(2.0, 1.0),
                     descriptions=(f"sync_batchnorm_backward equals BN's backward over the whole batch (dx per rank, "
                                   f"dgamma and dbeta of the whole batch): {SYNC_COVERS}",
                                   f"sync_batchnorm_backward: {SYNC_HIDDEN_COVERS}"),
                     cases=(sync_cases, sync_cases_hidden),
                     run=run_backward, judge=judge_backward)


PARTS = [*MERGE, *FORWARD, *BACKWARD]
