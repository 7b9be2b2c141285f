"""Assignment 05, BN at inference: running statistics, population statistics, the inference
transform, folding BN into the layer before it, and a ``BatchNorm1d`` module with train/eval
behaviour checked against ``torch.nn.BatchNorm1d``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bncourse import cpu
from bncourse.checks.core import DtypeTolerance, Variant, Verdict, case_rng, compare, fail, judge_outputs, part_pair
from bncourse.checks.outputs import (
    UnusableResultError,
    as_array,
    broadcast_hint,
    channel_broadcast_hint,
    numpy_output,
    pair,
)
from bncourse.checks.variants import (
    FOLD_VARIANTS,
    INFERENCE_VARIANTS,
    POPULATION_VARIANTS,
    RUNNING_VARIANTS,
    channel_axes,
)

ASSIGNMENT = "05_inference"

# Tolerances (rtol, atol) on values of order 0.1-10.
# float64: correct code agrees with the float64 reference to ~1e-14; 1e-7 separates every
# variant here (eps-related ones change results by >= 1e-4 relative: the running variances
# below include 0.01).
# float32: rounding of a handful of operations, ~1e-6 relative; 1e-4 is a 100x margin.
TOLERANCE = DtypeTolerance(float64=(1e-7, 1e-9), float32=(1e-4, 1e-4))


# A (C,) vector against (N, C, L) or (N, C, H, W) data lines up with the last axis.
BROADCAST_HINT = channel_broadcast_hint(
    "gamma, beta, the running statistics, or a statistic reduced without keepdims=True"
)
# A (out,) vector against a weight of shape (out, in, *kernel) lines up with its last axis.
FOLD_BROADCAST_HINT = (
    "the per-output-channel scale, shape (out,), lines up with the LAST axis of the weight; "
    "reshape it to (out, 1, ...), i.e. (-1,) followed by weight.ndim - 1 ones, to scale each "
    "row (output channel)"
)


def _numpy_outputs(values: Any, names: tuple[str, ...], target: str) -> dict[str, np.ndarray]:
    return {name: numpy_output(value, name, target)
            for name, value in zip(names, values, strict=True)}


def _channels(rng: np.random.Generator, channels: int, dtype: type) -> dict[str, np.ndarray]:
    """Per-channel parameters: gamma != 1, beta != 0, running stats far from any batch's."""
    var = rng.uniform(0.5, 4.0, size=channels)
    var[0] = 0.01  # small enough for eps (1e-5) to change 1/sqrt(var) by 5e-4 relative
    return {
        "gamma": (rng.uniform(0.5, 2.0, channels) * rng.choice([-1.0, 1.0], channels)).astype(dtype),
        "beta": rng.uniform(-2.0, 2.0, channels).astype(dtype),
        "running_mean": rng.uniform(-3.0, 3.0, channels).astype(dtype),
        "running_var": var.astype(dtype),
    }


def _data(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    stat_shape = (1, shape[1]) + (1,) * (len(shape) - 2)
    mean = rng.uniform(-2.0, 2.0, stat_shape)
    std = rng.uniform(0.5, 2.0, stat_shape)
    return (mean + std * rng.standard_normal(shape)).astype(dtype)


# --------------------------------------------------------------------------- running statistics


def running_case(label: str, shape: tuple[int, ...], dtype: type, seed: int,
                 momentum: float = 0.1) -> dict[str, Any]:
    rng = case_rng(seed)
    stats = _channels(rng, shape[1], dtype)
    return {"label": label, "x": _data(rng, shape, dtype), "momentum": momentum,
            "running_mean": stats["running_mean"], "running_var": stats["running_var"]}


RUNNING_STATS_COVERS = ("update_running_stats on (N, C), (N, C, L) and (N, C, H, W), N = 2, momentum "
                        "0.1 to 1.0, float64 and float32")


def running_cases() -> list[dict[str, Any]]:
    return [
        running_case("float64 x of shape (8, 3), momentum 0.1", (8, 3), np.float64, seed=101),
        running_case("float32 x of shape (5, 4), momentum 0.2", (5, 4), np.float32, seed=102,
                     momentum=0.2),
        # Smaller twins of the hidden categories (no surprises at grading).
        running_case("float64 x with N = 2, shape (2, 2, 3, 2), momentum 0.5", (2, 2, 3, 2),
                     np.float64, seed=103, momentum=0.5),
        running_case("float32 x of shape (3, 3, 4), one spatial axis, momentum 1.0", (3, 3, 4),
                     np.float32, seed=104, momentum=1.0),
    ]


RUNNING_STATS_HIDDEN_COVERS = ("update_running_stats: N = 2, (N, C, H, W), (N, C, L), momentum 0.3 and 1.0; "
                               "inputs unchanged, dtype kept")


def running_cases_hidden() -> list[dict[str, Any]]:
    return [
        running_case("float64 x with N = 2, shape (2, 3)", (2, 3), np.float64, seed=111),
        running_case("float64 x of shape (2, 3, 2, 2), momentum 0.3", (2, 3, 2, 2), np.float64,
                     seed=112, momentum=0.3),
        running_case("float32 x of shape (4, 2, 3), momentum 1.0", (4, 2, 3), np.float32,
                     seed=113, momentum=1.0),
    ]


def run_running(update_running_stats: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    mean, var, x = (np.array(case[n]) for n in ("running_mean", "running_var", "x"))
    with broadcast_hint(BROADCAST_HINT):
        result = update_running_stats(mean, var, x, momentum=case["momentum"])
    names = ("new_mean", "new_var")
    outputs = _numpy_outputs(pair(result, "update_running_stats", names), names,
                             "update_running_stats")
    return {**outputs, "after_running_mean": mean, "after_running_var": var, "after_x": x}


def judge_running(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    mean, var, x = (np.asarray(case[n], dtype=np.float64) for n in ("running_mean", "running_var", "x"))
    new_mean, new_var = cpu.update_running_stats(mean, var, x, momentum=case["momentum"])
    return judge_outputs("update_running_stats", case, outputs,
                         {"new_mean": new_mean, "new_var": new_var}, TOLERANCE.of(case),
                         RUNNING_VARIANTS, dtype_of="x",
                         inputs=("running_mean", "running_var", "x"))


RUNNING_STATS = part_pair(ASSIGNMENT, "running_stats", target="update_running_stats", points=(1.0, 1.0),
                          descriptions=(RUNNING_STATS_COVERS, RUNNING_STATS_HIDDEN_COVERS),
                          cases=(running_cases, running_cases_hidden), run=run_running, judge=judge_running)


# --------------------------------------------------------------------------- population statistics


def population_case(label: str, shape: tuple[int, ...], dtype: type, seed: int) -> dict[str, Any]:
    """``batches`` is one array (K, *batch shape); run hands the student a list of K batches."""
    rng = case_rng(seed)
    return {"label": label, "batches": _data(rng, shape, dtype)}


POPULATION_STATS_COVERS = ("population_stats over several (m, C) batches, a single batch, (N, C, L) and "
                           "(N, C, H, W) batches")


def population_cases() -> list[dict[str, Any]]:
    return [
        population_case("5 float64 batches of shape (4, 3)", (5, 4, 3), np.float64, seed=121),
        population_case("3 float32 batches of shape (6, 2)", (3, 6, 2), np.float32, seed=122),
        # Smaller twins of the hidden categories (no surprises at grading).
        population_case("1 float64 batch of shape (3, 2)", (1, 3, 2), np.float64, seed=123),
        population_case("3 float64 batches of shape (2, 2, 3, 2)", (3, 2, 2, 3, 2), np.float64,
                        seed=124),
        population_case("2 float64 batches of shape (3, 2, 4), one spatial axis", (2, 3, 2, 4),
                        np.float64, seed=125),
    ]


POPULATION_STATS_HIDDEN_COVERS = "population_stats: a single batch with m = 2, (N, C, H, W) batches"


def population_cases_hidden() -> list[dict[str, Any]]:
    return [
        population_case("1 float64 batch of shape (2, 4)", (1, 2, 4), np.float64, seed=131),
        population_case("4 float64 batches of shape (2, 3, 2, 2)", (4, 2, 3, 2, 2), np.float64,
                        seed=132),
    ]


def run_population(population_stats: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    batches = [np.array(b) for b in case["batches"]]
    with broadcast_hint(BROADCAST_HINT):
        result = population_stats(batches)
    names = ("mean", "var")
    outputs = _numpy_outputs(pair(result, "population_stats", names), names, "population_stats")
    return {**outputs, "after_batches": np.stack(batches)}


def judge_population(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    batches = np.asarray(case["batches"], dtype=np.float64)
    mean, var = cpu.population_stats(list(batches))
    return judge_outputs("population_stats", case, outputs, {"mean": mean, "var": var},
                         TOLERANCE.of(case, "batches"), POPULATION_VARIANTS, dtype_of="batches",
                         inputs=("batches",))


POPULATION_STATS = part_pair(ASSIGNMENT, "population_stats", target="population_stats", points=(1.0, 1.0),
                             descriptions=(POPULATION_STATS_COVERS, POPULATION_STATS_HIDDEN_COVERS),
                             cases=(population_cases, population_cases_hidden), run=run_population,
                             judge=judge_population)


# --------------------------------------------------------------------------- inference transform


def inference_case(label: str, shape: tuple[int, ...], dtype: type, seed: int,
                   eps: float = 1e-5) -> dict[str, Any]:
    rng = case_rng(seed)
    return {"label": label, "x": _data(rng, shape, dtype), "eps": eps,
            **_channels(rng, shape[1], dtype)}


INFERENCE_COVERS = "batchnorm_inference on (N, C), (N, C, L) and (N, C, H, W), a single example"


def inference_cases() -> list[dict[str, Any]]:
    return [
        inference_case("float64 x of shape (6, 3)", (6, 3), np.float64, seed=141),
        inference_case("float32 x of shape (2, 3, 4, 4)", (2, 3, 4, 4), np.float32, seed=142),
        # Smaller twins of the hidden categories (no surprises at grading).
        inference_case("float64 x of a single example, shape (1, 3)", (1, 3), np.float64,
                       seed=143),
        inference_case("float64 x of shape (2, 3, 4), one spatial axis, eps = 1e-1", (2, 3, 4),
                       np.float64, seed=144, eps=1e-1),
    ]


INFERENCE_HIDDEN_COVERS = "batchnorm_inference: a single example, (N, C, L), eps = 1e-2, float32"


def inference_cases_hidden() -> list[dict[str, Any]]:
    return [
        inference_case("float64 x of a single example, shape (1, 4)", (1, 4), np.float64,
                       seed=151),
        inference_case("float64 x of shape (3, 2, 5), eps = 1e-2", (3, 2, 5), np.float64,
                       seed=152, eps=1e-2),
        inference_case("float32 x of shape (7, 5)", (7, 5), np.float32, seed=153),
    ]


_INFERENCE_INPUTS = ("x", "gamma", "beta", "running_mean", "running_var")


def run_inference(batchnorm_inference: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays = {n: np.array(case[n]) for n in _INFERENCE_INPUTS}
    with broadcast_hint(BROADCAST_HINT):
        out = batchnorm_inference(*arrays.values(), eps=case["eps"])
    return {"out": numpy_output(out, "out", "batchnorm_inference"),
            **{f"after_{n}": a for n, a in arrays.items()}}


def judge_inference(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    arrays = [np.asarray(case[n], dtype=np.float64) for n in _INFERENCE_INPUTS]
    out = cpu.batchnorm_inference(*arrays, eps=case["eps"])
    return judge_outputs("batchnorm_inference", case, outputs, {"out": out}, TOLERANCE.of(case),
                         INFERENCE_VARIANTS, dtype_of="x", inputs=_INFERENCE_INPUTS)


INFERENCE = part_pair(ASSIGNMENT, "inference", target="batchnorm_inference", points=(1.0, 1.0),
                      descriptions=(INFERENCE_COVERS, INFERENCE_HIDDEN_COVERS),
                      cases=(inference_cases, inference_cases_hidden), run=run_inference, judge=judge_inference)


# --------------------------------------------------------------------------- folding


def fold_case(label: str, weight_shape: tuple[int, ...], dtype: type, seed: int,
              no_bias: bool = False, eps: float = 1e-5) -> dict[str, Any]:
    """``no_bias`` cases keep a zero ``bias`` array (cases hold arrays); run passes None."""
    rng = case_rng(seed)
    out_channels = weight_shape[0]
    bias = np.zeros(out_channels) if no_bias else rng.uniform(-1.0, 1.0, out_channels)
    case = {"label": label, "weight": rng.standard_normal(weight_shape).astype(dtype),
            "bias": bias.astype(dtype), "eps": eps, **_channels(rng, out_channels, dtype)}
    if no_bias:
        case["no_bias"] = 1
    return case


FOLD_COVERS = "fold_batchnorm into Linear, Conv1d and Conv2d weights, with bias and bias None"


def fold_cases() -> list[dict[str, Any]]:
    return [
        fold_case("float64 Linear weight (4, 3) with bias", (4, 3), np.float64, seed=161),
        fold_case("float32 Linear weight (3, 5) with bias", (3, 5), np.float32, seed=162),
        # Smaller twins of the hidden categories (no surprises at grading).
        fold_case("float64 Linear weight (3, 4) and bias None", (3, 4), np.float64, seed=163,
                  no_bias=True),
        fold_case("float64 Conv weight (2, 3, 2, 2) with bias, eps = 1e-2", (2, 3, 2, 2),
                  np.float64, seed=164, eps=1e-2),
        fold_case("float32 Conv1d weight (3, 2, 3) with bias", (3, 2, 3), np.float32,
                  seed=165),
    ]


FOLD_HIDDEN_COVERS = "fold_batchnorm: Conv2d and Conv1d weights, bias None, eps = 1e-3"


def fold_cases_hidden() -> list[dict[str, Any]]:
    return [
        fold_case("float64 Conv weight (3, 2, 3, 3) with bias", (3, 2, 3, 3), np.float64,
                  seed=171),
        fold_case("float64 Linear weight (2, 6) and bias None", (2, 6), np.float64, seed=172,
                  no_bias=True),
        fold_case("float64 Conv1d weight (5, 1, 2) with bias, eps = 1e-3", (5, 1, 2),
                  np.float64, seed=173, eps=1e-3),
    ]


_FOLD_INPUTS = ("weight", "bias", "gamma", "beta", "running_mean", "running_var")


def run_fold(fold_batchnorm: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays = {n: np.array(case[n]) for n in _FOLD_INPUTS}
    args = dict(arrays)
    if case.get("no_bias"):
        args["bias"] = None
    try:
        with broadcast_hint(FOLD_BROADCAST_HINT):
            result = fold_batchnorm(*args.values(), eps=case["eps"])
    except TypeError as error:
        if args["bias"] is not None or "NoneType" not in str(error):
            raise
        raise TypeError(f"{error} (bias is None here, a layer built with bias=False; "
                        "treat it as zeros)") from error
    names = ("weight", "bias")
    outputs = _numpy_outputs(pair(result, "fold_batchnorm", names), names, "fold_batchnorm")
    return {**outputs, **{f"after_{n}": a for n, a in arrays.items()}}


def judge_fold(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    arrays = {n: np.asarray(case[n], dtype=np.float64) for n in _FOLD_INPUTS}
    if case.get("no_bias"):
        arrays["bias"] = None
    weight, bias = cpu.fold_batchnorm(*arrays.values(), eps=case["eps"])
    return judge_outputs("fold_batchnorm", case, outputs, {"weight": weight, "bias": bias},
                         TOLERANCE.of(case, "weight"), FOLD_VARIANTS, dtype_of="weight",
                         inputs=_FOLD_INPUTS)


FOLD = part_pair(ASSIGNMENT, "fold", target="fold_batchnorm", points=(1.0, 1.0),
                 descriptions=(FOLD_COVERS, FOLD_HIDDEN_COVERS), cases=(fold_cases, fold_cases_hidden), run=run_fold,
                 judge=judge_fold)


# --------------------------------------------------------------------------- the layer

STEPS = 3  # training steps before switching to eval


def layer_case(label: str, shape: tuple[int, ...], seed: int, momentum: float = 0.1,
               eps: float = 1e-5) -> dict[str, Any]:
    """float32 (torch's default): STEPS training batches, their upstream gradients, a test batch."""
    rng = case_rng(seed)
    stats = _channels(rng, shape[1], np.float32)
    return {
        "label": label, "momentum": momentum, "eps": eps,
        "weight": stats["gamma"], "bias": stats["beta"],
        "train_x": np.stack([_data(rng, shape, np.float32) for _ in range(STEPS)]),
        "train_dout": rng.standard_normal((STEPS, *shape)).astype(np.float32),
        "test_x": _data(rng, (3, *shape[1:]), np.float32),
    }


LAYER_COVERS = ("BatchNorm1d against torch.nn.BatchNorm1d: 3 training steps (outputs, input "
                "gradients, running statistics), then eval; (N, C) and (N, C, L), N = 2; "
                "running_mean and running_var registered as buffers")


def layer_cases() -> list[dict[str, Any]]:
    return [
        layer_case("BatchNorm1d(4), batches of shape (8, 4)", (8, 4), seed=181),
        layer_case("BatchNorm1d(3, momentum=0.2), batches of shape (5, 3, 4)", (5, 3, 4),
                   seed=182, momentum=0.2),
        layer_case("BatchNorm1d(2, momentum=0.5, eps=1e-2), batches of shape (2, 2)", (2, 2),
                   seed=183, momentum=0.5, eps=1e-2),
    ]


LAYER_HIDDEN_COVERS = "BatchNorm1d: N = 2 with momentum 0.3 and eps = 1e-3, (N, C, L) inputs"


def layer_cases_hidden() -> list[dict[str, Any]]:
    return [
        layer_case("BatchNorm1d(3, momentum=0.3, eps=1e-3), batches of shape (2, 3)", (2, 3),
                   seed=191, momentum=0.3, eps=1e-3),
        layer_case("BatchNorm1d(2), batches of shape (4, 2, 5)", (4, 2, 5), seed=192),
    ]


def run_layer(layer_class: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """STEPS training steps (outputs, input gradients, running stats), then eval outputs."""
    import torch  # on first use: the NumPy parts of this assignment load without it

    channels = case["weight"].shape[0]
    layer = layer_class(channels, eps=case["eps"], momentum=case["momentum"])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(case["weight"]))
        layer.bias.copy_(torch.from_numpy(case["bias"]))
    outputs: dict[str, np.ndarray] = {}
    layer.train()
    for step in range(STEPS):
        x = torch.tensor(case["train_x"][step], requires_grad=True)
        with broadcast_hint(BROADCAST_HINT):  # torch's size mismatch gets NumPy's hint
            out = layer(x)
        out.backward(torch.from_numpy(case["train_dout"][step]))
        if x.grad is None:
            raise UnusableResultError("no gradient reached the input: compute the forward pass with "
                               "torch operations so that autograd can differentiate it")
        outputs[f"train_out_{step}"] = as_array(out)
        outputs[f"train_dx_{step}"] = as_array(x.grad)
        outputs[f"running_mean_{step}"] = as_array(layer.running_mean).copy()
        outputs[f"running_var_{step}"] = as_array(layer.running_var).copy()
    layer.eval()
    with torch.no_grad():
        outputs["eval_out"] = as_array(layer(torch.from_numpy(case["test_x"])))
    outputs["eval_running_mean"] = as_array(layer.running_mean).copy()
    outputs["buffers"] = np.asarray(_are_buffers(layer))
    return outputs


def _are_buffers(layer: Any) -> bool:
    """Whether running_mean and running_var are registered buffers: listed by named_buffers()
    (so .to() moves them), saved in state_dict(), and taking no gradient."""
    buffers, state = dict(layer.named_buffers()), layer.state_dict()
    return all(name in buffers and name in state and not buffers[name].requires_grad
               for name in ("running_mean", "running_var"))


NOT_BUFFERS = (
    "running_mean and running_var should be buffers: create them with "
    "self.register_buffer('running_mean', torch.zeros(num_features)) (and likewise "
    "running_var), so that they move with .to(), appear in state_dict() and take no gradient."
)


def _layer_labels() -> dict[str, str]:
    """How messages call the layer's outputs (never the internal keys)."""
    labels = {"eval_out": "the output in eval mode",
              "eval_running_mean": "running_mean after the call in eval mode"}
    for step in range(STEPS):
        after = f"after training step {step + 1}"
        labels |= {f"train_out_{step}": f"the output of training step {step + 1}",
                   f"train_dx_{step}": f"the input gradient of training step {step + 1}",
                   f"running_mean_{step}": f"running_mean {after}",
                   f"running_var_{step}": f"running_var {after}"}
    return labels


def simulate_layer(case: dict[str, Any], momentum_inverted: bool = False, ddof: int = 1,
                   eval_batch_stats: bool = False, feed_std: bool = False,
                   update_in_eval: str = "", out_ddof: int = 0) -> dict[str, np.ndarray]:
    """The layer in float64, with the switches a mistaken layer gets wrong (no gradients).

    - feed_std: running_var fed the unbiased batch standard deviation.
    - update_in_eval: "before" / "after" the eval output is computed, the running statistics
      are also updated with the eval batch ("" : not updated, as it should be).
    - out_ddof: 1 normalises the training outputs by the unbiased variance (torch.var's
      default) instead of the biased one.
    """
    weight, bias = (np.asarray(case[n], dtype=np.float64) for n in ("weight", "bias"))
    momentum = 1.0 - case["momentum"] if momentum_inverted else case["momentum"]
    eps = case["eps"]
    mean, var = np.zeros_like(weight), np.ones_like(weight)

    def normalise(x: np.ndarray, mu: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (weight.reshape(shape) * (x - mu.reshape(shape)) / np.sqrt(sigma2.reshape(shape) + eps)
                + bias.reshape(shape))

    result: dict[str, np.ndarray] = {}
    for step, x in enumerate(np.asarray(case["train_x"], dtype=np.float64)):
        axes = channel_axes(x)
        result[f"train_out_{step}"] = normalise(x, x.mean(axis=axes),
                                                x.var(axis=axes, ddof=out_ddof))
        mean = (1 - momentum) * mean + momentum * x.mean(axis=axes)
        batch_var = x.var(axis=axes, ddof=ddof)
        var = (1 - momentum) * var + momentum * (np.sqrt(batch_var) if feed_std else batch_var)
        result[f"running_mean_{step}"], result[f"running_var_{step}"] = mean, var
    test = np.asarray(case["test_x"], dtype=np.float64)
    axes = channel_axes(test)
    updated_mean = (1 - momentum) * mean + momentum * test.mean(axis=axes)
    updated_var = (1 - momentum) * var + momentum * test.var(axis=axes, ddof=ddof)
    if update_in_eval == "before":
        mean, var = updated_mean, updated_var
    result["eval_out"] = (normalise(test, test.mean(axis=axes), test.var(axis=axes))
                          if eval_batch_stats else normalise(test, mean, var))
    result["eval_running_mean"] = updated_mean if update_in_eval else mean
    return result


def _layer_detached(case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Input gradients of a layer whose batch mean and variance are detached from the graph:
    dx = gamma / sqrt(var + eps) * dout (the backward that drops the mean and variance terms)."""
    weight = np.asarray(case["weight"], dtype=np.float64)
    result = {}
    for step, x in enumerate(np.asarray(case["train_x"], dtype=np.float64)):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        std = np.sqrt(x.var(axis=channel_axes(x)) + case["eps"]).reshape(shape)
        dout = np.asarray(case["train_dout"][step], dtype=np.float64)
        result[f"train_dx_{step}"] = weight.reshape(shape) / std * dout
    return result


def _unbiased_in_training(case: dict[str, Any], outputs: Any, expected: Any) -> bool:
    """The training outputs normalised by the unbiased variance (torch.var's default); their
    gradients differ too, so only the outputs are compared."""
    simulated = simulate_layer(case, out_ddof=1)
    keys = [f"train_out_{step}" for step in range(STEPS)]
    rtol, atol = TOLERANCE.float32
    return (any(compare(k, simulated[k], expected[k], 10 * rtol, 10 * atol) for k in keys)
            and not any(compare(k, outputs.get(k), simulated[k], rtol, atol) for k in keys))


def _simulated(prefixes: tuple[str, ...], **mistake: Any) -> Callable[[dict[str, Any]], dict[str, np.ndarray]]:
    """A variant's function: the outputs of the layer simulated with ``mistake`` whose names
    start with one of ``prefixes`` (the outputs that mistake changes)."""
    return lambda case: {k: v for k, v in simulate_layer(case, **mistake).items() if k.startswith(prefixes)}


UPDATES_IN_EVAL = (
    "the running statistics seem to be updated in eval mode too; after layer.eval() they "
    "must stay as they are (update them only when self.training)."
)


LAYER_VARIANTS = (
    Variant("unbiased_variance",
            "the training outputs seem to be normalised by the unbiased variance (torch.var "
            "divides by m - 1 unless told otherwise); normalise by the biased one, "
            "torch.var(x, unbiased=False) or ((x - mean) ** 2).mean(...), and keep the "
            "unbiased one for running_var.",
            matches=_unbiased_in_training),
    Variant("inverted_momentum",
            "the running statistics seem to use an inverted momentum; PyTorch's convention is "
            "new = (1 - momentum) * old + momentum * batch statistic.",
            _simulated(("running", "eval"), momentum_inverted=True)),
    Variant("biased_running_var",
            "running_var seems to be fed the biased batch variance; use the unbiased one, "
            "m / (m - 1) times it, as torch.nn.BatchNorm1d does.",
            _simulated(("running_var", "eval_out"), ddof=0)),
    Variant("batch_stats_in_inference",
            "in eval mode the layer seems to use the statistics of the batch; after "
            "layer.eval() it must use running_mean and running_var (check self.training).",
            _simulated(("eval_out",), eval_batch_stats=True)),
    Variant("updates_in_eval", UPDATES_IN_EVAL,
            _simulated(("eval",), update_in_eval="before")),
    Variant("updates_in_eval", UPDATES_IN_EVAL,
            _simulated(("eval",), update_in_eval="after")),
    Variant("running_var_fed_std",
            "running_var seems to be fed the batch standard deviation; it tracks the unbiased "
            "batch variance, m / (m - 1) times the biased one.",
            _simulated(("running_var", "eval_out"), feed_std=True)),
    Variant("backward_drops_mean_var_terms",
            "the input gradient seems to treat the batch mean and variance as constants "
            "(detached from the graph?); in training they depend on every input, so autograd "
            "must see them computed from x.",
            _layer_detached),
)


def judge_layer(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    """Expected results from torch.nn.BatchNorm1d in float64 on the same data."""
    import torch  # on first use, as in run_layer

    reference = torch.nn.BatchNorm1d(case["weight"].shape[0], eps=case["eps"],
                                     momentum=case["momentum"]).double()
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(case["weight"].astype(np.float64)))
        reference.bias.copy_(torch.from_numpy(case["bias"].astype(np.float64)))
    expected: dict[str, np.ndarray] = {}
    for step in range(STEPS):
        x = torch.tensor(case["train_x"][step], dtype=torch.float64, requires_grad=True)
        out = reference(x)
        out.backward(torch.tensor(case["train_dout"][step], dtype=torch.float64))
        expected[f"train_out_{step}"] = out.detach().numpy()
        expected[f"train_dx_{step}"] = x.grad.numpy()
        expected[f"running_mean_{step}"] = reference.running_mean.numpy().copy()
        expected[f"running_var_{step}"] = reference.running_var.numpy().copy()
    reference.eval()
    with torch.no_grad():
        expected["eval_out"] = reference(torch.tensor(case["test_x"], dtype=torch.float64)).numpy()
    expected["eval_running_mean"] = reference.running_mean.numpy().copy()
    if not bool(np.asarray(outputs.get("buffers", True))):
        return fail(f"BatchNorm1d ({case['label']}): {NOT_BUFFERS}", "not_buffers")
    # The training-mode parts of the layer are the student's BN forward; float32 throughout.
    return judge_outputs("BatchNorm1d", case, outputs, expected, TOLERANCE.float32, LAYER_VARIANTS,
                         labels=_layer_labels())


LAYER = part_pair(ASSIGNMENT, "layer", target="BatchNorm1d", points=(2.0, 1.0),
                  descriptions=(LAYER_COVERS, LAYER_HIDDEN_COVERS), cases=(layer_cases, layer_cases_hidden),
                  run=run_layer, judge=judge_layer)


PARTS = [*RUNNING_STATS, *POPULATION_STATS, *INFERENCE, *FOLD, *LAYER]
