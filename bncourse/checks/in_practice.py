"""Checks of assignment 06, BN in practice: a network trained with the student's own BN layers.

The student's ``train(x, y, use_bn, lr, epochs=10, batch_size=32, seed=0)`` returns the
trained parameters (the names and shapes of ``bncourse.deepnet.expected_keys``). ``run`` trains on
the training split of the digits; ``judge`` rebuilds the split from its seed, evaluates the
returned parameters on the held-out test images with ``bncourse.deepnet.predict`` (inference-mode
BN with the returned running statistics) and compares the accuracy with the stated targets.
So the accuracy that earns points is computed by trusted code, from labels ``run`` never
passes to the student's function.

The experiment, measured with the solution over seeds 0-9 (tests/checks/test_in_practice.py re-checks
seeds 1 and 2): at the large learning rate 1.5 the plain ReLU network diverges (9-11 % test
accuracy, chance level) while the BN network reaches 95-98 %; at 0.1 the plain network reaches
94-97 %. The targets (90 % and 50 %) sit far from every one of those numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bncourse import deepnet
from bncourse.checks import backprop, bn_transform
from bncourse.checks.core import Verdict, array_output, fail, ok, part
from bncourse.checks.outputs import UnusableResultError, as_array
from bncourse.data import load_digits

ASSIGNMENT = "06_in_practice"

HIGH_LR = 1.5
LOW_LR = 0.1
# Accuracy a working network must reach, and the one a diverged network stays under.
TARGET_ACCURACY = 0.90
DIVERGED_ACCURACY = 0.50


def _train_case(label: str, use_bn: bool, lr: float, seed: int = 0, split_seed: int = 0) -> dict[str, Any]:
    return {"label": label, "use_bn": int(use_bn), "lr": lr, "seed": seed, "split_seed": split_seed}


def _run_train(train: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    split = load_digits(seed=int(case["split_seed"]))
    with np.errstate(all="ignore"):  # a diverging plain network overflows; that is the point
        params = train(split.x_train.copy(), split.y_train.copy(), use_bn=bool(case["use_bn"]),
                       lr=float(case["lr"]), seed=int(case["seed"]))
    if not isinstance(params, dict):
        raise UnusableResultError(f"train should return a dict of parameters, got {type(params).__name__}")
    return {str(name): as_array(value) for name, value in params.items()}


def _params_verdict(case: dict[str, Any], outputs: dict[str, np.ndarray], where: str
                    ) -> tuple[dict[str, np.ndarray], Verdict | None]:
    params = {}
    for name, shape in deepnet.expected_keys(bool(case["use_bn"])).items():
        array, verdict = array_output(outputs, name, where)
        if verdict is not None:
            return params, fail(f"{where}: the returned parameters have no {name!r} of shape {shape} "
                                "(see bncourse.deepnet.expected_keys)." if name not in outputs else verdict.message)
        if array.shape != shape:
            return params, fail(f"{where}: {name!r} has shape {array.shape}, expected {shape}.")
        params[name] = array
    return params, None


def _test_accuracy(case: dict[str, Any], params: dict[str, np.ndarray]) -> float:
    split = load_digits(seed=int(case["split_seed"]))
    return deepnet.accuracy(params, split.x_test, split.y_test)


def _judge_reaches(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    where = f"train ({case['label']})"
    params, verdict = _params_verdict(case, outputs, where)
    if verdict is not None:
        return verdict
    acc = _test_accuracy(case, params)
    if acc >= TARGET_ACCURACY:
        return ok()
    if bool(case["use_bn"]):
        n_bn = len(deepnet.HIDDEN_SIZES)
        untouched = all(
            np.all(params[f"running_mean{layer}"] == 0) and np.all(params[f"running_var{layer}"] == 1)
            for layer in range(1, n_bn + 1)
        )
        if untouched:
            return fail(f"{where}: test accuracy {acc:.1%} (target {TARGET_ACCURACY:.0%}); running_mean and "
                        "running_var still hold their initial values: update them at every training step, "
                        "since inference-mode BN normalises with them.", "running_stats_not_updated")
    if not all(np.all(np.isfinite(p)) for p in params.values()):
        return fail(f"{where}: the parameters hold inf/NaN, so training diverged (test accuracy {acc:.1%}, "
                    f"target {TARGET_ACCURACY:.0%}).", "diverged")
    return fail(f"{where}: test accuracy {acc:.1%} on the held-out images, target {TARGET_ACCURACY:.0%}.")


def _judge_diverges(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    where = f"train ({case['label']})"
    params, verdict = _params_verdict(case, outputs, where)
    if verdict is not None:
        return verdict
    acc = _test_accuracy(case, params)
    if acc < DIVERGED_ACCURACY:
        return ok()
    return fail(f"{where}: the plain network reached {acc:.1%} at learning rate {case['lr']}, but an SGD step "
                f"of that size makes it diverge: check that train applies params -= lr * grad with the lr it is "
                "given, for every parameter.", "lr_not_applied")


def _run_twice(train: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    first = _run_train(train, case)
    second = _run_train(train, case)
    return {**first, **{f"again_{name}": value for name, value in second.items()}}


def _judge_reproducible(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    verdict = _judge_reaches(case, {k: v for k, v in outputs.items() if not k.startswith("again_")})
    if not verdict.passed:
        return verdict
    for name in deepnet.expected_keys(bool(case["use_bn"])):
        again = outputs.get(f"again_{name}")
        if again is None or again.shape != outputs[name].shape or not np.array_equal(again, outputs[name]):
            return fail(f"train ({case['label']}): two runs with seed={case['seed']} gave different {name!r}; draw "
                        "every random number (initialisation, shuffling) from generators built from `seed`.",
                        "not_reproducible")
    return ok()


def _backward_cases_2d() -> list[dict[str, Any]]:
    """Assignment 04's visible backward cases in the (N, D) layout, the only one this network uses."""
    return [case for case in backprop.backward_cases() if np.asarray(case["x"]).ndim == 2]




PARTS = [
    part(ASSIGNMENT, "batchnorm_forward", "batchnorm_forward", 1.0, False,
         "your batchnorm_forward from assignment 03, on (N, D) inputs",
         bn_transform.cases_2d, bn_transform.run, bn_transform.judge),
    part(ASSIGNMENT, "batchnorm_backward", "batchnorm_backward", 1.0, False,
         "your batchnorm_backward from assignment 04, on (N, D) inputs",
         _backward_cases_2d, backprop.run_backward,
         backprop.judge_backward("batchnorm_backward")),
    part(ASSIGNMENT, "train_plain", "train", 2.0, False,
         f"the plain network trained at lr = {LOW_LR} reaches {TARGET_ACCURACY:.0%} test accuracy",
         lambda: [_train_case(f"plain network, lr = {LOW_LR}", False, LOW_LR)],
         _run_train, _judge_reaches),
    part(ASSIGNMENT, "plain_diverges", "train", 1.0, False,
         f"the plain network trained at lr = {HIGH_LR} stays below {DIVERGED_ACCURACY:.0%}",
         lambda: [_train_case(f"plain network, lr = {HIGH_LR}", False, HIGH_LR)],
         _run_train, _judge_diverges),
    part(ASSIGNMENT, "train_bn", "train", 3.0, False,
         f"the BN network trained at lr = {HIGH_LR} reaches {TARGET_ACCURACY:.0%} test accuracy",
         lambda: [_train_case(f"BN network, lr = {HIGH_LR}", True, HIGH_LR)],
         _run_train, _judge_reaches),
    part(ASSIGNMENT, "train_bn_hidden", "train", 2.0, True,
         f"the BN network at lr = {HIGH_LR} on another split and seed reaches "
         f"{TARGET_ACCURACY:.0%}, and the same seed gives the same parameters",
         lambda: [_train_case(f"BN network, lr = {HIGH_LR}, seed = 3, split seed = 1", True, HIGH_LR,
                              seed=3, split_seed=1)],
         _run_twice, _judge_reproducible),
]
