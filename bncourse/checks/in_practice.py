"""Checks of assignment 06, BN in practice: a network trained with the student's own BN layers.

The student's ``train(x, y, use_bn, lr, epochs=10, batch_size=32, seed=0)`` returns the
trained parameters (the names and shapes of ``bncourse.deepnet.expected_keys``). ``run`` trains on
the training split of the digits; ``judge`` rebuilds the split from its seed, evaluates the
returned parameters on the held-out test images with ``bncourse.deepnet.predict`` (inference-mode
BN with the returned running statistics) and compares the accuracy with the stated targets.
So the accuracy that earns points is computed by trusted code, from labels ``run`` never
passes to the student's function. One judge, ``_judge_train``, serves every training part; a
case says what it expects (``goal``: reach the target or diverge) and how often to train
(``runs``).

What a training part depends on is checked with it. For the BN network, ``run`` also calls the
student's ``batchnorm_forward`` and ``batchnorm_backward`` (the ones ``train`` uses) on two
small cases of assignment 04; when the network misses its goal and one of them is wrong, the
message names that layer (``_blame_layers``) instead of only the accuracy. Training that reaches
its goal keeps its points with a wrong layer: the layer parts charge that mistake, once.

The visible BN part trains on the notebook's split and seed, and on another split and seed twice
with one seed, so the hidden twin (a third split and seed, trained twice) adds only other values.
Two runs with one seed must return equal parameters; a run that reaches the accuracy but is not
reproducible slips in a side property and keeps ``1 - SIDE_SHARE`` of the part.

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
    above, so a training part never blames a forward that is only imprecise there."""
    return [case for case in backprop.backward_cases()
            if np.asarray(case["x"]).ndim == 2 and np.abs(case["x"]).max() < 1e3]


def _student_function(train: Any, name: str) -> Any:
    function = getattr(train, "__globals__", {}).get(name)
    if not callable(function):
        raise UnusableResultError(f"the BN network uses your {name}; define it in the notebook above")
    return function


def _run_layers(train: Any) -> dict[str, np.ndarray]:
    """The student's batchnorm_forward and batchnorm_backward (the ones ``train`` sees) on
    ``_layer_cases``, so that the judge can tell a wrong layer from a wrong training loop."""
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
                f"the batchnorm_forward and batchnorm_backward it uses raised {type(error).__name__} "
                f"on {case['label']}: {error}") from error
        outputs.update({f"layers{index}_{name}": value for name, value in got.items()})
    return outputs


def _wrong_layer(outputs: dict[str, np.ndarray]) -> Verdict | None:
    """The verdict on the first of the student's batchnorm_forward and batchnorm_backward whose
    numbers are wrong on ``_layer_cases`` (the forward before the backward that uses its cache),
    or None. A side-property slip of the layers (a dtype) is the layer parts' business."""
    for index, case in enumerate(_layer_cases()):
        prefix = f"layers{index}_"
        got = {name[len(prefix):]: value for name, value in outputs.items() if name.startswith(prefix)}
        if "forward_out" not in got:  # nothing to blame: the layers did not run
            return None
        for verdict in (bn_transform.judge(case, {"out": got["forward_out"]}),
                        backprop.judge_backward("batchnorm_backward")(case, got)):
            if not verdict.passed and verdict.credit <= 0:
                return verdict
    return None


def _blame_layers(case: dict[str, Any], outputs: dict[str, np.ndarray], verdict: Verdict) -> Verdict:
    """A training verdict that misses its goal; when the BN layers the network uses are wrong,
    the message names the wrong layer first, since fixing it comes before anything else."""
    layer = _wrong_layer(outputs) if bool(case["use_bn"]) else None
    if layer is None:
        return verdict
    where = f"train ({case['label']})"
    name = "batchnorm_forward" if layer.message.startswith("batchnorm_forward") else "batchnorm_backward"
    return fail(f"{where}: the {name} it uses is wrong, so fix it first and train again. {layer.message} "
                f"(With it, training gave: {verdict.message.removeprefix(where + ': ')})",
                f"wrong_{name.removeprefix('batchnorm_')}")


BATCHNORM_BACKWARD_COVERS = "your batchnorm_backward from assignment 04, on (N, D) inputs"


def _backward_cases_2d() -> list[dict[str, Any]]:
    """Assignment 04's visible backward cases in the (N, D) layout, the only one this network uses."""
    return [case for case in backprop.backward_cases() if np.asarray(case["x"]).ndim == 2]


BATCHNORM_FORWARD_COVERS = "your batchnorm_forward from assignment 03, on (N, D) inputs"

BATCHNORM_FORWARD = part(ASSIGNMENT, "batchnorm_forward", target="batchnorm_forward", points=1.0,
                         description=BATCHNORM_FORWARD_COVERS, cases=bn_transform.cases_2d, run=bn_transform.run,
                         judge=bn_transform.judge)

BATCHNORM_BACKWARD = part(ASSIGNMENT, "batchnorm_backward", target="batchnorm_backward", points=1.0,
                          description=BATCHNORM_BACKWARD_COVERS, cases=_backward_cases_2d, run=backprop.run_backward,
                          judge=backprop.judge_backward("batchnorm_backward"))


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
    """The BN layers (BN network only, keys "layers<i>_..."), then the training run(s): the
    parameters of the first run as they are, those of a second run (``runs`` = 2) prefixed
    "again_". Layers that raise are named only if train raises too."""
    outputs: dict[str, np.ndarray] = {}
    layers_error = None
    if bool(case["use_bn"]):
        try:
            outputs.update(_run_layers(train))
        except UnusableResultError as error:  # counts only if train fails too (it may not use them)
            layers_error = error
    try:
        outputs.update(_train_once(train, case))
    except Exception as error:
        if layers_error is None:
            raise
        raise UnusableResultError(f"raised {type(error).__name__}: {error}. Fix the BN layers first: "
                                  f"{layers_error}") from error
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
    """The parameters' names and shapes and the test accuracy against the case's goal (a miss
    names a wrong BN layer first, ``_blame_layers``), then (``runs`` = 2) reproducibility.
    Training that reaches its goal keeps its points even with a wrong layer: that mistake is
    charged once, by the layer parts above."""
    where = f"train ({case['label']})"
    params, verdict = _params_verdict(case, outputs, where)
    if verdict is None:
        verdict = _accuracy_verdict(case, params, where)
    if not verdict.passed:
        return _blame_layers(case, outputs, verdict)
    return verdict if int(case["runs"]) < 2 else _reproducibility_verdict(case, outputs, where)


_BN_AT_HIGH_LR = f"the BN network trained at lr = {HIGH_LR} reaches {TARGET_ACCURACY:.0%} test accuracy"

TRAIN_PLAIN_COVERS = f"the plain network trained at lr = {LOW_LR} reaches {TARGET_ACCURACY:.0%} test accuracy"

TRAIN_PLAIN = part(ASSIGNMENT, "train_plain", target="train", points=2.0, description=TRAIN_PLAIN_COVERS,
                   cases=lambda: [_train_case(f"plain network, lr = {LOW_LR}", False, LOW_LR)], run=_run_train,
                   judge=_judge_train)

PLAIN_DIVERGES_COVERS = f"the plain network trained at lr = {HIGH_LR} stays below {DIVERGED_ACCURACY:.0%}"

PLAIN_DIVERGES = part(ASSIGNMENT, "plain_diverges", target="train", points=1.0, description=PLAIN_DIVERGES_COVERS,
                      cases=lambda: [_train_case(f"plain network, lr = {HIGH_LR}", False, HIGH_LR, goal="diverge")],
                      run=_run_train, judge=_judge_train)


TRAIN_BN_COVERS = (f"{_BN_AT_HIGH_LR} with seed 0 on split seed 0, and with seed 1 on split seed 2, where two "
                   "runs give the same parameters (a miss names a wrong batchnorm_forward or batchnorm_backward first)")


def _train_bn_cases() -> list[dict[str, Any]]:
    return [_train_case(f"BN network, lr = {HIGH_LR}", True, HIGH_LR),
            _train_case(f"BN network, lr = {HIGH_LR}, seed = 1, split seed = 2, trained twice", True,
                        HIGH_LR, seed=1, split_seed=2, runs=2)]


TRAIN_BN_HIDDEN_COVERS = (f"{_BN_AT_HIGH_LR} with seed 3 on split seed 1, and two runs with that seed give the same "
                          "parameters")


def _train_bn_hidden_cases() -> list[dict[str, Any]]:
    return [_train_case(f"BN network, lr = {HIGH_LR}, seed = 3, split seed = 1, trained twice", True,
                        HIGH_LR, seed=3, split_seed=1, runs=2)]


TRAIN_BN = part_pair(ASSIGNMENT, "train_bn", target="train", points=(3.0, 2.0),
                     descriptions=(TRAIN_BN_COVERS, TRAIN_BN_HIDDEN_COVERS),
                     cases=(_train_bn_cases, _train_bn_hidden_cases), run=_run_train, judge=_judge_train)


PARTS = [BATCHNORM_FORWARD, BATCHNORM_BACKWARD, TRAIN_PLAIN, PLAIN_DIVERGES, *TRAIN_BN]
