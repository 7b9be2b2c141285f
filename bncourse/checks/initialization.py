"""Checks of assignment 01, initialisation: Xavier/Glorot weights, per-layer statistics, signals.

Each ``Part`` pairs a ``run`` (executes in the student's process, returns plain arrays) with a
``judge`` (trusted: recomputes the expectation with ``bncourse.initialization`` and names the mistake).

Random initialisers cannot be compared entry by entry with a reference (a student may draw
in another order), so their judges test the law instead: shape, bound, variance, shape of
the distribution, and that the ``rng`` argument alone decides the draw. The sample sizes
make each statistical test's false-failure probability negligible (see the tolerances).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bncourse import initialization as ref
from bncourse.checks.core import (
    Verdict,
    array_output,
    case_rng,
    compare_arrays,
    fail,
    first_failure,
    ok,
    part,
    part_pair,
    with_side_properties,
)
from bncourse.checks.core import unchanged as inputs_unchanged
from bncourse.checks.outputs import as_array

ASSIGNMENT = "01_initialization"

# ---------------------------------------------------------------------------------------------
# Xavier uniform / normal
# ---------------------------------------------------------------------------------------------

# Relative tolerance on the sample variance. For n >= 30,000 entries the relative standard error
# of a variance estimate is sqrt((kurtosis - 1) / n): 0.5 % for a uniform law (kurtosis 1.8),
# 0.8 % for a normal one (kurtosis 3). 5 % is over 6 standard errors, yet every wrong scale
# below differs from the right one by at least 25 % on the cases used (fan_in != fan_out).
VARIANCE_RTOL = 0.05
# Tolerance on a probability estimated from n >= 30,000 entries: standard error <= 0.003,
# so 0.02 is over 6 standard errors; uniform and normal laws differ by >= 0.04 on both tests.
FRACTION_ATOL = 0.02


def _wrong_variances(fan_in: int, fan_out: int) -> dict[str, tuple[float, str]]:
    """Variances that known slips produce, with the sentence that names each slip."""
    total = fan_in + fan_out
    return {
        "fan_in_only": (1 / fan_in, "uses 1/fan_in (LeCun's variance) instead of 2/(fan_in + fan_out)"),
        "he_variance": (2 / fan_in, "uses 2/fan_in (He's variance, for ReLU) instead of 2/(fan_in + fan_out)"),
        "fan_out_only": (1 / fan_out, "uses 1/fan_out instead of 2/(fan_in + fan_out)"),
        "missing_factor_2": (1 / total, "uses 1/(fan_in + fan_out): the factor 2 is missing"),
        "bound_without_sqrt": (
            (6 / total) ** 2 / 3, "takes a = 6/(fan_in + fan_out) as the bound: the square root is missing"
        ),
        "std_as_bound": (
            2 / total / 3,
            "uses the standard deviation sqrt(2/(fan_in + fan_out)) as the bound of the uniform law; "
            "U[-a, a] has variance a^2/3, so a = sqrt(6/(fan_in + fan_out))",
        ),
        "variance_as_std": (
            (2 / total) ** 2, "uses the variance 2/(fan_in + fan_out) where the standard deviation is needed"
        ),
    }


def _xavier_cases(sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    return [
        {"fan_in": fan_in, "fan_out": fan_out, "seed": 100 + i, "label": f"fan_in={fan_in}, fan_out={fan_out}"}
        for i, (fan_in, fan_out) in enumerate(sizes)
    ]


XAVIER_UNIFORM_COVERS = ("xavier_uniform: shape (fan_out, fan_in), bound, variance 2/(fan_in+fan_out), "
                         "uniform law, uses rng; a single row or column, a very unbalanced layer")


def _xavier_visible_cases() -> list[dict[str, Any]]:
    # fan_in != fan_out in the first two so every wrong variance above is distinguishable.
    # Then smaller twins of the hidden categories: a single row or column, a very unbalanced layer.
    return _xavier_cases([(300, 100), (120, 360), (256, 256), (1500, 15), (1, 4), (6, 1)])


XAVIER_UNIFORM_HIDDEN_COVERS = "xavier_uniform on a single row/column and a very unbalanced layer"


def _xavier_hidden_cases() -> list[dict[str, Any]]:
    # Very unbalanced large layers (first: there a wrong variance is diagnosed by name), then
    # odd shapes: a single row or column, too small for statistics, checked for shape and bound.
    return _xavier_cases([(2000, 20), (33, 1000), (1, 7), (5, 1)])


def _run_xavier(init_fn: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    fan_in, fan_out, seed = int(case["fan_in"]), int(case["fan_out"]), int(case["seed"])
    return {
        "w": as_array(init_fn(fan_in, fan_out, np.random.default_rng(seed))),
        "w_same_seed": as_array(init_fn(fan_in, fan_out, np.random.default_rng(seed))),
        "w_other_seed": as_array(init_fn(fan_in, fan_out, np.random.default_rng(seed + 1))),
    }


@dataclass(frozen=True)
class _Draw:
    """One xavier case and the three draws that came back, for the property checks below."""

    where: str
    law: str  # "uniform" or "normal"
    fan_in: int
    fan_out: int
    w: np.ndarray
    same_seed: np.ndarray
    other_seed: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.fan_out, self.fan_in)

    @property
    def target(self) -> float:
        return ref.xavier_variance(self.fan_in, self.fan_out)

    @property
    def variance(self) -> float:
        """The mean square of the draw (its variance about the law's mean, 0)."""
        return float(np.mean(self.w.astype(np.float64) ** 2))

    @property
    def large(self) -> bool:
        """Enough entries for the statistical tests (see VARIANCE_RTOL)."""
        return self.w.size >= 30_000


def _read_draw(case: dict[str, Any], outputs: dict[str, np.ndarray], law: str) -> _Draw | Verdict:
    fan_in, fan_out = int(case["fan_in"]), int(case["fan_out"])
    where = f"xavier_{law}({fan_in}, {fan_out}, rng)"
    arrays = {}
    for key in ("w", "w_same_seed", "w_other_seed"):
        array, verdict = array_output(outputs, key, where)
        if verdict is not None:
            return verdict
        arrays[key] = array
    return _Draw(where, law, fan_in, fan_out, arrays["w"], arrays["w_same_seed"], arrays["w_other_seed"])


def _check_shape(d: _Draw) -> Verdict | None:
    if d.w.shape == d.shape:
        return None
    if d.w.shape == d.shape[::-1] and d.fan_in != d.fan_out:
        return fail(
            f"{d.where} returned shape {d.w.shape}; the course stores W as (fan_out, fan_in) = {d.shape} "
            "(PyTorch's layout, x = u @ W.T): your matrix is transposed.",
            "transposed_shape",
        )
    return fail(f"{d.where}: expected shape {d.shape} (fan_out, fan_in), got {d.w.shape}.")


def _check_finite_draw(d: _Draw) -> Verdict | None:
    return None if np.all(np.isfinite(d.w)) else fail(f"{d.where} returned non-finite values.")


def _check_rng(d: _Draw) -> Verdict | None:
    """The ``rng`` argument alone decides the draw."""
    if d.same_seed.shape != d.shape or not np.array_equal(d.w, d.same_seed):
        return fail(
            f"{d.where} gave different weights for two generators with the same seed: draw from the "
            "`rng` argument (e.g. rng.uniform / rng.normal), not from np.random's global state.",
            "ignores_rng",
        )
    if d.other_seed.shape == d.shape and np.array_equal(d.w, d.other_seed) and d.w.size > 1:
        return fail(
            f"{d.where} gave the same weights for generators with different seeds: the draw must come "
            "from the `rng` argument.",
            "ignores_rng",
        )
    return None


def _check_bound(d: _Draw) -> Verdict | None:
    """U[-a, a] never leaves [-a, a]."""
    bound = np.sqrt(3 * d.target)
    # 1e-6 relative: a bound computed in float32 may round up by half an ulp (6e-8).
    if d.law != "uniform" or np.max(np.abs(d.w)) <= bound * (1 + 1e-6):
        return None
    if d.large and abs(d.variance / d.target - 1) <= VARIANCE_RTOL:
        return fail(
            f"{d.where}: the variance is right but entries reach {np.max(np.abs(d.w)):.4g}, beyond the bound "
            f"a = {bound:.4g}: this looks like a normal law where the uniform one U[-a, a] was asked.",
            "normal_instead_of_uniform",
        )
    return _wrong_scale(d.where, d.w, d.fan_in, d.fan_out) or fail(
        f"{d.where} has an entry of magnitude {np.max(np.abs(d.w)):.4g}, outside the bound "
        f"a = sqrt(6/(fan_in + fan_out)) = {bound:.4g}."
    )


def _check_variance(d: _Draw) -> Verdict | None:
    if not d.large or abs(d.variance / d.target - 1) <= VARIANCE_RTOL:
        return None
    return _wrong_scale(d.where, d.w, d.fan_in, d.fan_out) or fail(
        f"{d.where}: the entries have variance {d.variance:.4g} (mean square), expected "
        f"2/(fan_in + fan_out) = {d.target:.4g}."
    )


def _check_mean(d: _Draw) -> Verdict | None:
    mean = float(np.mean(d.w, dtype=np.float64))
    # The sample mean has standard error sqrt(target / n) <= 0.006 * sqrt(target) here.
    if not d.large or abs(mean) <= 0.05 * np.sqrt(d.target):
        return None
    return fail(f"{d.where}: the entries have mean {mean:.3g}; Xavier weights are centred on 0.")


def _check_law(d: _Draw) -> Verdict | None:
    """The shape of the distribution, from the share of small entries."""
    if not d.large:
        return None
    std = np.sqrt(d.target)
    if d.law == "uniform":
        # U[-a, a]: P(|w| < a/2) = 0.5; a normal law of the same variance gives 0.61.
        inside, expected = float(np.mean(np.abs(d.w) < np.sqrt(3) * std / 2)), 0.5
        other, other_name = "normal_instead_of_uniform", "a normal law where the uniform one was asked"
    else:
        # N(0, s^2): P(|w| < s) = 0.683; a uniform law of the same variance gives 0.577.
        inside, expected = float(np.mean(np.abs(d.w) < std)), 0.6827
        other, other_name = "uniform_instead_of_normal", "a uniform law where the normal one was asked"
    if abs(inside - expected) <= FRACTION_ATOL:
        return None
    return fail(
        f"{d.where}: the variance is right but the shape of the distribution is not: this looks "
        f"like {other_name} (share of small entries {inside:.3f}, expected {expected:.3f}).",
        other,
    )


# In this order: the message names the first property that fails. Below 30,000 entries only
# the first four apply (too few entries for a reliable statistical test).
_XAVIER_PROPERTIES = (_check_shape, _check_finite_draw, _check_rng, _check_bound, _check_variance,
                      _check_mean, _check_law)


def _judge_xavier(case: dict[str, Any], outputs: dict[str, np.ndarray], law: str) -> Verdict:
    draw = _read_draw(case, outputs, law)
    return draw if isinstance(draw, Verdict) else first_failure(_XAVIER_PROPERTIES, draw)


def _wrong_scale(where: str, w: np.ndarray, fan_in: int, fan_out: int) -> Verdict | None:
    """Name the slip whose variance the sample matches (None when none does)."""
    var = float(np.mean(w.astype(np.float64) ** 2))
    if w.size < 30_000:
        return None
    target = ref.xavier_variance(fan_in, fan_out)
    for mistake, (wrong_var, sentence) in _wrong_variances(fan_in, fan_out).items():
        # Only name a slip that this case tells apart from the right variance.
        if abs(wrong_var / target - 1) > 3 * VARIANCE_RTOL and abs(var / wrong_var - 1) < VARIANCE_RTOL:
            return fail(f"{where}: the entries have variance {var:.4g}; your code probably {sentence}.", mistake)
    return None


def _judge_xavier_uniform(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    return _judge_xavier(case, outputs, "uniform")


XAVIER_UNIFORM = part_pair(ASSIGNMENT, "xavier_uniform", target="xavier_uniform", points=(2.0, 1.0),
                           descriptions=(XAVIER_UNIFORM_COVERS, XAVIER_UNIFORM_HIDDEN_COVERS),
                           cases=(_xavier_visible_cases, _xavier_hidden_cases), run=_run_xavier,
                           judge=_judge_xavier_uniform)


def _judge_xavier_normal(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    return _judge_xavier(case, outputs, "normal")


XAVIER_NORMAL_COVERS = "xavier_normal: shape, variance 2/(fan_in+fan_out), normal law, uses rng"

XAVIER_NORMAL = part(ASSIGNMENT, "xavier_normal", target="xavier_normal", points=2.0, description=XAVIER_NORMAL_COVERS,
                     cases=lambda: _xavier_visible_cases() + _xavier_hidden_cases(), run=_run_xavier,
                     judge=_judge_xavier_normal)


# ---------------------------------------------------------------------------------------------
# activation_stats
# ---------------------------------------------------------------------------------------------


def _stats_case(widths: list[int], activation: str, n: int, seed: int, dtype: str) -> dict[str, Any]:
    rng = case_rng(seed)
    shapes = " -> ".join(str(d) for d in widths)
    case: dict[str, Any] = {
        "label": f"a {activation} network {shapes}, {dtype}, N={n}",
        "activation": activation,
        "n_layers": len(widths) - 1,
        "u": rng.standard_normal((n, widths[0])).astype(dtype),
    }
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        case[f"w{i}"] = ref.xavier_normal(fan_in, fan_out, rng).astype(dtype) * 1.2
    return case


ACTIVATION_STATS_COVERS = ("activation_stats: per-layer mean and std of z = g(u W^T) against the float64 "
                           "reference; one layer and one example, float32")


def _stats_visible_cases() -> list[dict[str, Any]]:
    return [
        _stats_case([40, 40, 40, 40], "tanh", 50, 0, "float64"),
        _stats_case([30, 50, 20, 10], "relu", 64, 1, "float64"),
        # Smaller twins of the hidden categories: one layer and one example, float32.
        _stats_case([8, 8], "sigmoid", 1, 5, "float64"),
        _stats_case([24, 24, 24], "tanh", 12, 6, "float32"),
    ]


ACTIVATION_STATS_HIDDEN_COVERS = ("activation_stats: one layer and one example, non-square layers, float32, inputs "
                                  "not mutated")


def _stats_hidden_cases() -> list[dict[str, Any]]:
    return [
        _stats_case([16, 16], "sigmoid", 1, 2, "float64"),  # one layer, one example
        _stats_case([64, 100, 7, 100, 64], "linear", 33, 3, "float64"),
        _stats_case([32, 32, 32], "tanh", 20, 4, "float32"),
    ]


def _weights_of(case: dict[str, Any]) -> list[np.ndarray]:
    return [np.asarray(case[f"w{i}"]) for i in range(int(case["n_layers"]))]


def _run_stats(stats_fn: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    u = np.array(case["u"])
    weights = [w.copy() for w in _weights_of(case)]
    means, stds = stats_fn(u, weights, ref.ACTIVATIONS[str(case["activation"])])
    outputs = {"means": as_array(means), "stds": as_array(stds), "after_u": u}
    outputs.update({f"after_w{i}": w for i, w in enumerate(weights)})
    return outputs


def _stats_variants(case: dict[str, Any]) -> dict[str, tuple[tuple[np.ndarray, np.ndarray], str]]:
    """Known wrong versions of ``activation_stats`` on this case, computed in float64."""
    g = ref.ACTIVATIONS[str(case["activation"])]
    weights = [w.astype(np.float64) for w in _weights_of(case)]
    h = np.asarray(case["u"], dtype=np.float64)
    pre_means, pre_stds, ddof1, per_unit = [], [], [], []
    for w in weights:
        x = h @ w.T
        h = g(x)
        pre_means.append(x.mean())
        pre_stds.append(x.std())
        ddof1.append(h.std(ddof=1) if h.size > 1 else np.nan)
        per_unit.append(h.std(axis=0).mean())
    ref_means, _ = ref.activation_stats(np.asarray(case["u"], np.float64), weights, g)
    return {
        "pre_activation": (
            (np.asarray(pre_means), np.asarray(pre_stds)),
            "these are the statistics of the pre-activations x = u @ W.T; record z = g(x), the "
            "output of the nonlinearity, which the next layer receives",
        ),
        "std_ddof_1": (
            (ref_means, np.asarray(ddof1)),
            "the stds use ddof=1; use the population std (ddof=0) of all N * d_l entries",
        ),
        "std_per_unit": (
            (ref_means, np.asarray(per_unit)),
            "the std is computed per unit and then averaged; take it over all N * d_l entries of the layer",
        ),
    }


def _stats_inputs(case: dict[str, Any]) -> list[str]:
    return ["u"] + [f"w{i}" for i in range(len(_weights_of(case)))]


def _judge_stats(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    g = ref.ACTIVATIONS[str(case["activation"])]
    u = np.asarray(case["u"])
    weights = _weights_of(case)
    exp_means, exp_stds = ref.activation_stats(u.astype(np.float64), [w.astype(np.float64) for w in weights], g)
    shapes = " -> ".join(str(d) for d in [u.shape[1]] + [w.shape[0] for w in weights])
    where = f"activation_stats on a {case['activation']} network {shapes} ({u.dtype}, N={u.shape[0]})"
    # float64 inputs: summation orders differ by ~1e-12 relative, and a student who computes in
    # float32 is still within 1e-6; the smallest known slip (ddof=1) shifts a std by 1/(2 N d_l)
    # >= 2e-3 on these cases. float32 inputs through <= 3 layers: a few hundred ulps, so 1e-4.
    rtol = 1e-6 if u.dtype == np.float64 else 1e-4
    names = ["u"] + [f"w{i}" for i in range(len(weights))]
    mutated = inputs_unchanged(case, outputs, names)
    if mutated:
        return fail(f"{where}: {mutated}", "mutates_input")
    got = {}
    for key in ("means", "stds"):
        array, verdict = array_output(outputs, key, where)
        if verdict is not None:
            return verdict
        got[key] = array.astype(np.float64).ravel()
    n_layers = len(weights)
    if got["stds"].size == n_layers + 1:
        return fail(
            f"{where}: expected one value per layer ({n_layers}), got {n_layers + 1}: leave the input out.",
            "includes_input",
        )
    for key, expected in (("means", exp_means), ("stds", exp_stds)):
        # A mean near 0 has no relative precision: allow rtol times the layer's spread.
        atol = rtol * float(np.max(exp_stds[np.isfinite(exp_stds)], initial=1.0))
        verdict = compare_arrays(got[key], expected, rtol=rtol, atol=atol, name=f"{where}: {key}")
        if verdict.passed:
            continue
        for mistake, ((v_means, v_stds), sentence) in _stats_variants(case).items():
            variant = v_means if key == "means" else v_stds
            distinct = not np.allclose(variant, expected, rtol=10 * rtol, atol=0)
            if distinct and got[key].shape == variant.shape and np.allclose(got[key], variant, rtol=10 * rtol, atol=0):
                return fail(f"{where}: {sentence}.", mistake)
        return verdict
    return ok()


ACTIVATION_STATS = part_pair(ASSIGNMENT, "activation_stats", target="activation_stats", points=(2.0, 1.0),
                             descriptions=(ACTIVATION_STATS_COVERS, ACTIVATION_STATS_HIDDEN_COVERS),
                             cases=(_stats_visible_cases, _stats_hidden_cases), run=_run_stats,
                             judge=with_side_properties(_judge_stats, "activation_stats", [], None, _stats_inputs))


# ---------------------------------------------------------------------------------------------
# classify_signal
# ---------------------------------------------------------------------------------------------

_VISIBLE_PROFILES = [
    ("linear", 0.5, 30),
    ("linear", 1.0, 30),
    ("linear", 2.0, 30),
    ("relu", np.sqrt(2.0), 30),
    ("relu", 2.0, 30),
    # Smaller twins of the hidden categories: tanh and sigmoid, overflow, underflow, depth 3.
    ("tanh", 0.4, 30),
    ("sigmoid", 1.0, 20),
    ("linear", 3.5, 90),
    ("relu", 0.25, 150),
    ("linear", 1.0, 3),
]
_HIDDEN_PROFILES = [
    ("tanh", 0.5, 30),  # vanishing
    ("tanh", 3.0, 30),  # saturated, not exploding: tanh is bounded
    ("relu", 1.0, 30),  # Xavier with ReLU halves the variance per layer
    ("sigmoid", 1.0, 30),
    ("linear", 3.0, 100),  # overflows float32: inf and nan in the profile
    ("relu", 0.3, 200),  # underflows to exact zeros
    ("linear", 1.0, 2),  # the shortest profile
]


def _profile_cases(profiles: list[tuple[str, float, int]]) -> list[dict[str, Any]]:
    return [
        {
            "label": f"the profile of a {depth}-layer {act} network, weights {gain:.3g} x Xavier",
            "activation": act,
            "gain": float(gain),
            "depth": depth,
            "stds": ref.signal_profile(act, float(gain), depth, width=64, n=64, seed=i),
        }
        for i, (act, gain, depth) in enumerate(profiles)
    ]


# The answer travels as a number, so that every output of every part is a numeric array.
LABELS = ("vanishing", "exploding", "stable")


def _run_classify(classify_fn: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    answer = classify_fn(np.array(case["stds"]))
    code = LABELS.index(answer) if isinstance(answer, str) and answer in LABELS else -1
    return {"answer": np.asarray(code)}


def _judge_classify(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    stds = np.asarray(case["stds"], dtype=np.float64)
    expected = ref.classify_signal(stds)
    code, verdict = array_output(outputs, "answer", "classify_signal")
    if verdict is not None:
        return verdict
    if code.shape != () or code.dtype.kind not in "iu" or int(code) not in range(len(LABELS)):
        return fail("classify_signal must return one of the strings 'vanishing', 'exploding', 'stable'.")
    got = LABELS[int(code)]
    what = (
        f"the profile of a {case['depth']}-layer {case['activation']} network with weights "
        f"{float(case['gain']):.3g} x Xavier (first std {stds[0]:.3g}, last {stds[-1]:.3g})"
    )
    if got == expected:
        return ok()
    if not np.all(np.isfinite(stds)):
        return fail(
            f"For {what} you returned {got!r}: the profile holds inf/nan because the signal overflowed "
            "float32, which is 'exploding'.",
            "non_finite_profile",
        )
    return fail(f"For {what} you returned {got!r}, expected {expected!r}.")


CLASSIFY_SIGNAL_COVERS = ("classify_signal on std profiles of real linear, ReLU, tanh and sigmoid forward "
                          "passes, with overflow, underflow and depth 3")
CLASSIFY_SIGNAL_HIDDEN_COVERS = ("classify_signal on tanh/sigmoid profiles, overflow (inf/nan), underflow "
                                 "(zeros), depth 2")

CLASSIFY_SIGNAL = part_pair(ASSIGNMENT, "classify_signal", target="classify_signal", points=(1.0, 1.0),
                            descriptions=(CLASSIFY_SIGNAL_COVERS, CLASSIFY_SIGNAL_HIDDEN_COVERS),
                            cases=(lambda: _profile_cases(_VISIBLE_PROFILES), lambda: _profile_cases(_HIDDEN_PROFILES)),
                            run=_run_classify, judge=_judge_classify)


PARTS = [*XAVIER_UNIFORM, XAVIER_NORMAL, *ACTIVATION_STATS, *CLASSIFY_SIGNAL]
