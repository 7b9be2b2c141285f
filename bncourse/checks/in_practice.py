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
from bncourse.checks.core import SIDE_SHARE, Verdict, array_output, fail, ok, part, part_pair
from bncourse.checks.outputs import UnusableResultError, as_array
from bncourse.data import load_digits

ASSIGNMENT = "06_in_practice"

HIGH_LR = 1.5
LOW_LR = 0.1
# Accuracy a working network must reach, and the one a diverged network stays under.
TARGET_ACCURACY = 0.90
DIVERGED_ACCURACY = 0.50


def _train_case(label: str, use_bn: bool, lr: float, goal: str = "reach", seed: int = 0,
                split_seed: int = 0, runs: int = 1) -> dict[str, Any]:
    """One training run to grade: ``goal`` is "reach" (TARGET_ACCURACY or more) or "diverge"
    (under DIVERGED_ACCURACY); ``runs`` = 2 trains twice with the same seed and compares."""
    return {"label": label, "use_bn": int(use_bn), "lr": lr, "goal": goal, "seed": seed,
            "split_seed": split_seed, "runs": runs}


# --------------------------------------------------------------------------- the BN layers train uses


def _layer_cases() -> list[dict[str, Any]]:
    """Assignment 04's visible (N, D) backward cases of ordinary magnitude, like the network's
    pre-activations. The precision stress case (mean 1e4 x std) stays with the layer parts
    above, so a forward that is only imprecise there does not cost the training parts too."""
    return [case for case in backprop.backward_cases()
            if np.asarray(case["x"]).ndim == 2 and np.abs(case["x"]).max() < 1e3]


def _student_function(train: Any, name: str) -> Any:
    function = getattr(train, "__globals__", {}).get(name)
    if not callable(function):
        raise UnusableResultError(f"train uses your {name}; define it in the notebook above")
    return function


def _run_layers(train: Any) -> dict[str, np.ndarray]:
    """The student's batchnorm_forward and batchnorm_backward (the ones ``train`` sees) on
    ``_layer_cases``, so the judge can check them before the training they feed."""
    backward = _student_function(train, "batchnorm_backward")
    _student_function(train, "batchnorm_forward")
    outputs = {}
    for index, case in enumerate(_layer_cases()):
        try:
            got = backprop.run_backward(backward, case)
        except UnusableResultError:
            raise
        except Exception as error:  # the student's layers raised, not train: say which code
            raise UnusableResultError(
                f"train was not run, because the batchnorm_forward and batchnorm_backward it uses "
                f"raised {type(error).__name__} on {case['label']}: {error}") from error
        outputs.update({f"layers{index}_{name}": value for name, value in got.items()})
    return outputs


def _layers_verdict(outputs: dict[str, np.ndarray]) -> Verdict | None:
    """A failing verdict naming the student's forward or backward when one of them has wrong
    numbers, else None. Side-property slips of the layers (a dtype) are the layer parts'
    business and cost the training parts nothing."""
    for index, case in enumerate(_layer_cases()):
        prefix = f"layers{index}_"
        got = {name[len(prefix):]: value for name, value in outputs.items() if name.startswith(prefix)}
        verdict = backprop.judge_forward_first("train", case, got.get("forward_out"))
        if not verdict.passed:
            return verdict
        verdict = backprop.judge_backward("batchnorm_backward")(case, got)
        if not verdict.passed and verdict.credit <= 0:
            return fail(f"train was not checked, because the batchnorm_backward it uses is wrong; fix "
                        f"the backward first. {verdict.message}", "wrong_backward")
    return None


# --------------------------------------------------------------------------- training


def _train_once(train: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    split = load_digits(seed=int(case["split_seed"]))
    with np.errstate(all="ignore"):  # a diverging plain network overflows; that is the point
        params = train(split.x_train.copy(), split.y_train.copy(), use_bn=bool(case["use_bn"]),
                       lr=float(case["lr"]), seed=int(case["seed"]))
    if not isinstance(params, dict):
        raise UnusableResultError(f"train should return a dict of parameters, got {type(params).__name__}")
    return {str(name): as_array(value) for name, value in params.items()}


def _run_train(train: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """The BN layers first (BN network only), then the training run(s): the parameters of the
    first run as they are, those of a second run (``runs`` = 2) prefixed "again_"."""
    outputs = _run_layers(train) if bool(case["use_bn"]) else {}
    outputs.update(_train_once(train, case))
    if int(case["runs"]) > 1:
        outputs.update({f"again_{name}": value for name, value in _train_once(train, case).items()})
    return outputs


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


def _low_accuracy_verdict(case: dict[str, Any], params: dict[str, np.ndarray], acc: float, where: str
                          ) -> Verdict:
    """Why a network that should reach the target did not, as far as the parameters tell."""
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


def _accuracy_verdict(case: dict[str, Any], params: dict[str, np.ndarray], where: str) -> Verdict:
    split = load_digits(seed=int(case["split_seed"]))
    acc = deepnet.accuracy(params, split.x_test, split.y_test)
    if case["goal"] == "diverge":
        if acc < DIVERGED_ACCURACY:
            return ok()
        return fail(f"{where}: the plain network reached {acc:.1%} at learning rate {case['lr']}, but an SGD "
                    "step of that size makes it diverge: check that train applies params -= lr * grad with "
                    "the lr it is given, for every parameter.", "lr_not_applied")
    return ok() if acc >= TARGET_ACCURACY else _low_accuracy_verdict(case, params, acc, where)


def _reproducibility_verdict(case: dict[str, Any], outputs: dict[str, np.ndarray], where: str) -> Verdict:
    """Two runs with one seed must return equal parameters. The accuracy is judged before, so a
    run that only fails this keeps 1 - SIDE_SHARE of the part (a side property, like a dtype)."""
    for name in deepnet.expected_keys(bool(case["use_bn"])):
        again = outputs.get(f"again_{name}")
        if again is None or again.shape != outputs[name].shape or not np.array_equal(again, outputs[name]):
            return fail(f"{where}: two runs with seed={case['seed']} gave different {name!r}; draw every "
                        "random number (initialisation, shuffling) from generators built from `seed`. The "
                        f"accuracy is reached, so this costs {SIDE_SHARE:.0%} of this part's points (a side "
                        "property, not the result).", "not_reproducible", credit=1.0 - SIDE_SHARE)
    return ok()


def _judge_train(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    """The BN layers train uses (BN network only), the parameters' names and shapes, the test
    accuracy against the case's goal, then (``runs`` = 2) reproducibility."""
    where = f"train ({case['label']})"
    if bool(case["use_bn"]):
        verdict = _layers_verdict(outputs)
        if verdict is not None:
            return verdict
    params, verdict = _params_verdict(case, outputs, where)
    if verdict is not None:
        return verdict
    verdict = _accuracy_verdict(case, params, where)
    if not verdict.passed or int(case["runs"]) < 2:
        return verdict
    return _reproducibility_verdict(case, outputs, where)


def _backward_cases_2d() -> list[dict[str, Any]]:
    """Assignment 04's visible backward cases in the (N, D) layout, the only one this network uses."""
    return [case for case in backprop.backward_cases() if np.asarray(case["x"]).ndim == 2]


_BN_AT_HIGH_LR = f"the BN network trained at lr = {HIGH_LR} reaches {TARGET_ACCURACY:.0%} test accuracy"

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
         _run_train, _judge_train),
    part(ASSIGNMENT, "plain_diverges", "train", 1.0, False,
         f"the plain network trained at lr = {HIGH_LR} stays below {DIVERGED_ACCURACY:.0%}",
         lambda: [_train_case(f"plain network, lr = {HIGH_LR}", False, HIGH_LR, goal="diverge")],
         _run_train, _judge_train),
    *part_pair(
        ASSIGNMENT, "train_bn", "train", (3.0, 2.0),
        (f"{_BN_AT_HIGH_LR} with seed 0 on split seed 0, and with seed 1 on split seed 2, where two "
         "runs give the same parameters (your batchnorm_forward and batchnorm_backward are checked first)",
         f"{_BN_AT_HIGH_LR} with seed 3 on split seed 1, and two runs with that seed give the same "
         "parameters"),
        (lambda: [_train_case(f"BN network, lr = {HIGH_LR}", True, HIGH_LR),
                  _train_case(f"BN network, lr = {HIGH_LR}, seed = 1, split seed = 2, trained twice", True,
                              HIGH_LR, seed=1, split_seed=2, runs=2)],
         lambda: [_train_case(f"BN network, lr = {HIGH_LR}, seed = 3, split seed = 1, trained twice", True,
                              HIGH_LR, seed=3, split_seed=1, runs=2)]),
        _run_train, _judge_train),
]
