"""Assignment 03, the BN transform: ``batchnorm_forward`` on (N, D), then on (N, C, H, W).

Four parts, two points each: a visible and a hidden check for each layout. The visible cases
catch the usual mistakes quickly (they include a channel of tiny variance, where eps
matters); the hidden ones add float32 data whose mean is 10^4 times its spread, a constant
channel, N = 2, odd shapes, a non-default eps and other spatial ranks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bncourse import cpu
from bncourse.checks.core import DtypeTolerance, Verdict, case_rng, judge_outputs, part_pair
from bncourse.checks.outputs import UnusableResultError, broadcast_hint, channel_broadcast_hint, numpy_output, pair
from bncourse.checks.variants import FORWARD_VARIANTS

ASSIGNMENT = "03_bn_transform"
TARGET = "batchnorm_forward"

# Tolerances (rtol, atol) on outputs of order 1-10.
# float64: a correct implementation agrees with the float64 reference to ~1e-14; 1e-7 leaves
# room for any summation order yet still separates eps-related variants (relative effect
# >= 5e-6 when var <= 1) by more than 10x.
# float32: correct two-pass, Welford and np.var implementations differ from the float64 truth
# by ~1e-6 on these data; 1e-4 is a 100x margin.
TOLERANCE = DtypeTolerance(float64=(1e-7, 1e-9), float32=(1e-4, 1e-4))
# float32 with mean = 1e4 x std: the inputs' own rounding makes correct float32 algorithms
# err by up to 4e-3 (measured over 50 seeds, m = 64: two-pass, np.var, Welford); 3e-2 is ~7x
# that, while E[x^2] - E[x]^2 errs by O(1) or gives inf/NaN.
TOL_LARGE_OFFSET = (1e-3, 3e-2)

BROADCAST_HINT = channel_broadcast_hint("gamma, beta, or a statistic reduced without keepdims=True")


def _case(label: str, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
          eps: float = 1e-5, **flags: Any) -> dict[str, Any]:
    dtype = x.dtype
    return {"label": label, "x": x, "gamma": gamma.astype(dtype), "beta": beta.astype(dtype),
            "eps": eps, **flags}


def random_case(label: str, shape: tuple[int, ...], dtype: type, seed: int,
                eps: float = 1e-5, tiny_channel: bool = False, constant_channel: bool = False,
                large_offset: bool = False) -> dict[str, Any]:
    """A seeded case: channels with different means and spreads, gamma != 1, beta != 0.

    - tiny_channel: channel 0 gets std 1e-3 (variance 1e-6 < eps, so eps matters).
    - constant_channel: the last channel is constant (variance exactly 0).
    - large_offset: every channel has mean 1e4 x its std (std 1).
    """
    rng = case_rng(seed)
    channels = shape[1]
    stat_shape = (1, channels) + (1,) * (len(shape) - 2)
    mean = rng.uniform(-3.0, 3.0, size=stat_shape)
    std = rng.uniform(0.5, 3.0, size=stat_shape)
    if tiny_channel:
        std[0, 0] = 1e-3
    if large_offset:
        std[:] = 1.0
        mean[:] = 1e4
    x = mean + std * rng.standard_normal(shape)
    if constant_channel:
        x[:, -1] = 2.5
    gamma = rng.uniform(0.5, 2.0, size=channels) * rng.choice([-1.0, 1.0], size=channels)
    beta = rng.uniform(-2.0, 2.0, size=channels)
    flags = {"large_offset": 1} if large_offset else {}
    return _case(label, x.astype(dtype), gamma, beta, eps, **flags)


# What each list of cases covers, as the test cells print it.
FORWARD_2D_COVERS = ("batchnorm_forward on (N, D) inputs, float64 and float32, a tiny-variance column, "
                     "N = 2, a constant column, mean 1e4 x std in float32")
FORWARD_2D_HIDDEN_COVERS = ("batchnorm_forward on (N, D): mean 1e4 x std in float32, a constant column, "
                            "N = 2, odd shapes, eps = 1e-3; inputs unchanged, dtype kept")
FORWARD_4D_COVERS = ("batchnorm_forward on (N, C, H, W), (N, C, L) and three spatial axes, float64 and "
                     "float32, a constant channel, mean 1e4 x std")
FORWARD_4D_HIDDEN_COVERS = ("batchnorm_forward on (N, C, *spatial): odd shapes, 1 and 3 spatial axes, mean "
                            "1e4 x std, a constant channel, tiny variance; inputs unchanged, dtype kept")


def cases_2d() -> list[dict[str, Any]]:
    return [
        random_case("float64 x of shape (8, 5)", (8, 5), np.float64, seed=1),
        random_case("float32 x of shape (16, 4)", (16, 4), np.float32, seed=2),
        random_case("float64 x of shape (10, 3) whose column 0 has variance 1e-6",
                    (10, 3), np.float64, seed=3, tiny_channel=True),
        # Smaller twins of the hidden categories (no surprises at grading).
        random_case("float64 x with N = 2, shape (2, 3), a constant column", (2, 3),
                    np.float64, seed=4, constant_channel=True),
        random_case("float32 x of shape (32, 3) with mean 1e4 x std", (32, 3), np.float32,
                    seed=5, large_offset=True),
    ]


def cases_2d_hidden() -> list[dict[str, Any]]:
    # Large offsets come last: a student whose variance is merely unbiased gets that named
    # on an earlier case rather than a generic message on the hardest one.
    return [
        random_case("float64 x of shape (6, 4) with a constant column", (6, 4), np.float64,
                    seed=12, constant_channel=True),
        random_case("float64 x with N = 2, shape (2, 5)", (2, 5), np.float64, seed=13),
        random_case("float64 x of shape (3, 7) and eps = 1e-3", (3, 7), np.float64, seed=14,
                    eps=1e-3, tiny_channel=True),
        random_case("float32 x of shape (5, 1)", (5, 1), np.float32, seed=15),
        random_case("float64 x of shape (33, 6) against bncourse", (33, 6), np.float64,
                    seed=16),
        random_case("float32 x of shape (64, 4) with mean 1e4 x std", (64, 4), np.float32,
                    seed=11, large_offset=True),
    ]


def cases_4d() -> list[dict[str, Any]]:
    return [
        random_case("float64 x of shape (4, 3, 5, 5)", (4, 3, 5, 5), np.float64, seed=21),
        random_case("float32 x of shape (2, 4, 3, 3)", (2, 4, 3, 3), np.float32, seed=22),
        # Smaller twins of the hidden categories (no surprises at grading).
        random_case("float32 x of shape (3, 2, 5), one spatial axis, a constant channel",
                    (3, 2, 5), np.float32, seed=23, constant_channel=True),
        random_case("float64 x of shape (2, 2, 3, 2, 2), three spatial axes",
                    (2, 2, 3, 2, 2), np.float64, seed=25),
        random_case("float32 x of shape (2, 3, 3, 3) with mean 1e4 x std", (2, 3, 3, 3),
                    np.float32, seed=24, large_offset=True),
    ]


def cases_4d_hidden() -> list[dict[str, Any]]:
    return [
        random_case("float64 x of shape (2, 3, 1, 7)", (2, 3, 1, 7), np.float64, seed=31),
        random_case("float32 x of shape (5, 2, 6), one spatial axis", (5, 2, 6), np.float32,
                    seed=32),
        random_case("float64 x of shape (2, 2, 2, 3, 3), three spatial axes",
                    (2, 2, 2, 3, 3), np.float64, seed=33),
        random_case("float64 x of shape (3, 4, 2, 2) with a constant channel",
                    (3, 4, 2, 2), np.float64, seed=35, constant_channel=True),
        random_case("float64 x of shape (2, 3, 2, 2), N = 2, channel 0 of variance 1e-6, "
                    "eps = 1e-3", (2, 3, 2, 2), np.float64, seed=36, eps=1e-3,
                    tiny_channel=True),
        random_case("float32 x of shape (4, 3, 4, 4) with mean 1e4 x std", (4, 3, 4, 4),
                    np.float32, seed=34, large_offset=True),
    ]


def run(batchnorm_forward: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Call the student's forward on copies of the inputs; return out and the inputs after."""
    x, gamma, beta = (np.array(case[name]) for name in ("x", "gamma", "beta"))
    with broadcast_hint(BROADCAST_HINT):
        result = batchnorm_forward(x, gamma, beta, eps=case["eps"])
    out, cache = pair(result, TARGET)
    if (not isinstance(out, np.ndarray) and isinstance(cache, np.ndarray)
            and cache.shape == x.shape):
        raise UnusableResultError(f"{TARGET} seems to return (cache, out): its second element has the "
                        "shape of x; return them in the order (out, cache)")
    out = numpy_output(out, "out", TARGET)
    return {"out": out, "after_x": x, "after_gamma": gamma, "after_beta": beta}


def tolerance(case: dict[str, Any]) -> tuple[float, float]:
    if case.get("large_offset"):
        return TOL_LARGE_OFFSET
    return TOLERANCE.of(case)


def judge(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    """Compare with bncourse.cpu's forward on the float64 copy of the inputs."""
    x, gamma, beta = (np.asarray(case[n], dtype=np.float64) for n in ("x", "gamma", "beta"))
    expected, _ = cpu.batchnorm_forward(x, gamma, beta, eps=case["eps"])
    return judge_outputs(
        TARGET, case, outputs, {"out": expected}, tolerance(case), FORWARD_VARIANTS,
        dtype_of="x", inputs=("x", "gamma", "beta"),
    )


FORWARD_2D = part_pair(ASSIGNMENT, "forward_2d", target=TARGET, points=(2.0, 2.0),
                       descriptions=(FORWARD_2D_COVERS, FORWARD_2D_HIDDEN_COVERS), cases=(cases_2d, cases_2d_hidden),
                       run=run, judge=judge)

FORWARD_4D = part_pair(ASSIGNMENT, "forward_4d", target=TARGET, points=(2.0, 2.0),
                       descriptions=(FORWARD_4D_COVERS, FORWARD_4D_HIDDEN_COVERS), cases=(cases_4d, cases_4d_hidden),
                       run=run, judge=judge)


PARTS = [*FORWARD_2D, *FORWARD_4D]
