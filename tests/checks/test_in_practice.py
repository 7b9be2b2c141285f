"""Assignment 06 (``bncourse.checks.in_practice``) and the network it grades, ``bncourse.deepnet``.

- the loss gradient against PyTorch, ``predict`` against the torch network in eval mode;
- the solution passes every part, the untouched stub fails every part, and every corpus
  submission of ``tests/submissions/06_in_practice`` loses exactly its EXPECT_LOST parts;
- judges given malformed outputs fail with a message instead of crashing;
- the BN training parts check the student's batchnorm_forward/backward first and name the wrong
  one; a side slip of those layers costs the training nothing; a visible case trains twice;
- the experiment behind the assignment holds on seeds other than the graded one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from judging import REPO_ROOT, notebook_tests, run_output_keys, solution_namespace, solution_sources
from submission_builder import load_submission

from bncourse import deepnet
from bncourse.checks import PARTS, in_practice
from bncourse.checks.core import SIDE_SHARE
from bncourse.data import load_digits
from bncourse.testing import check, run_case

ASSIGNMENT = "06_in_practice"


def _output_keys(part: Any, case: dict[str, Any]) -> list[str]:
    if part.target == "train":
        return list(deepnet.expected_keys(bool(case["use_bn"])))
    return run_output_keys(part, case)


# --------------------------------------------------------------------------- reference code


def test_softmax_cross_entropy_gradient_matches_torch() -> None:
    rng = np.random.default_rng(2)
    logits, y = rng.standard_normal((6, 4)) * 3, rng.integers(0, 4, 6)
    loss, dlogits = deepnet.softmax_cross_entropy(logits, y)
    t = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(t, torch.tensor(y))
    expected.backward()
    # float64 throughout: agreement to ~1e-15; 1e-12 is a margin.
    assert loss == pytest.approx(expected.item(), abs=1e-12)
    np.testing.assert_allclose(dlogits, t.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("use_bn", [False, True])
def test_predict_equals_the_torch_network_in_eval_mode(use_bn: bool) -> None:
    params = deepnet.init_mlp(use_bn, seed=3)
    rng = np.random.default_rng(4)
    if use_bn:  # give the running statistics and the affine parameters non-trivial values
        for layer in range(1, 4):
            for name, low, high in (("gamma", 0.5, 2), ("beta", -1, 1), ("running_mean", -1, 1),
                                    ("running_var", 0.2, 3)):
                params[f"{name}{layer}"] = rng.uniform(low, high, 100)
    modules: list[torch.nn.Module] = []
    for layer in range(1, 4):
        linear = torch.nn.Linear(*params[f"W{layer}"].shape[::-1], bias=not use_bn, dtype=torch.float64)
        linear.weight.data = torch.tensor(params[f"W{layer}"])
        modules.append(linear)
        if use_bn:
            bn = torch.nn.BatchNorm1d(100, dtype=torch.float64).eval()
            for name, buffer in (("gamma", bn.weight), ("beta", bn.bias), ("running_mean", bn.running_mean),
                                 ("running_var", bn.running_var)):
                buffer.data = torch.tensor(params[f"{name}{layer}"])
            modules.append(bn)
        else:
            linear.bias.data = torch.tensor(params[f"b{layer}"] + rng.uniform(-1, 1, 100))
            params[f"b{layer}"] = linear.bias.data.numpy().copy()
        modules.append(torch.nn.ReLU())
    last = torch.nn.Linear(100, 10, dtype=torch.float64)
    last.weight.data, last.bias.data = torch.tensor(params["W4"]), torch.tensor(params["b4"])
    net = torch.nn.Sequential(*modules, last).eval()
    x = load_digits().x_test.astype(np.float64)
    expected = net(torch.tensor(x)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(deepnet.predict(params, x), expected)


def test_predict_scores_a_diverged_network_as_a_failure() -> None:
    params = deepnet.init_mlp(False, seed=0)
    params["W2"] = np.full_like(params["W2"], np.nan)
    digits = load_digits()
    assert deepnet.accuracy(params, digits.x_test, digits.y_test) < 0.2


# --------------------------------------------------------------------------- the solution and the corpus

(
    test_the_solution_passes_every_part,
    test_the_untouched_stub_fails_every_part,
    test_submission_loses_exactly_its_parts,
    test_judges_fail_cleanly_on_malformed_outputs,
) = notebook_tests(ASSIGNMENT, _output_keys)


# --------------------------------------------------------------------------- the layers first, reproducibility

CORPUS = REPO_ROOT / "tests" / "submissions" / ASSIGNMENT
BN_PARTS = [f"{ASSIGNMENT}-train_bn", f"{ASSIGNMENT}-train_bn_hidden"]


def _namespace(overrides: dict[str, str]) -> dict[str, Any]:
    return solution_namespace(ASSIGNMENT, overrides)


@pytest.mark.parametrize("part_id", BN_PARTS)
def test_a_wrong_forward_that_breaks_training_is_named_by_the_bn_training_parts(part_id: str) -> None:
    namespace = _namespace(load_submission(CORPUS / "forward_per_row.py").overrides)
    part = PARTS[part_id]
    verdict = run_case(part, namespace["train"], part.cases()[0])
    assert verdict.mistake == "wrong_forward", verdict
    assert "the batchnorm_forward it uses is wrong, so fix it first" in verdict.message, verdict.message
    assert "taken per example" in verdict.message and "test accuracy" in verdict.message
    # The plain network uses no BN layer, so its parts do not depend on them.
    for plain in (f"{ASSIGNMENT}-train_plain", f"{ASSIGNMENT}-plain_diverges"):
        assert run_case(PARTS[plain], namespace["train"], PARTS[plain].cases()[0]).passed


def test_a_wrong_forward_does_not_cost_training_that_reaches_its_goal() -> None:
    # m - 1 in the variance: the layer parts lose their points, the network still trains.
    namespace = _namespace(load_submission(CORPUS / "forward_unbiased_variance.py").overrides)
    assert not run_case(PARTS[f"{ASSIGNMENT}-batchnorm_forward"], namespace["batchnorm_forward"],
                        PARTS[f"{ASSIGNMENT}-batchnorm_forward"].cases()[0]).passed
    for part_id in BN_PARTS:
        assert all(run_case(PARTS[part_id], namespace["train"], case).passed
                   for case in PARTS[part_id].cases())


def test_layers_that_raise_are_named_when_train_raises_too() -> None:
    namespace = _namespace({"batchnorm_forward": "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
                                                 "    raise NotImplementedError('paste it here')\n"})
    part = PARTS[f"{ASSIGNMENT}-train_bn"]
    verdict = run_case(part, namespace["train"], part.cases()[0])
    assert verdict.mistake == "unusable_result", verdict
    assert "raised NotImplementedError: paste it here. Fix the BN layers first: the batchnorm_forward and " \
        "batchnorm_backward it uses raised NotImplementedError" in verdict.message, verdict.message


def test_layers_that_raise_cost_nothing_when_train_does_not_use_them() -> None:
    # train with its own (right) layers under other names; the pasted forward is a stub.
    namespace = _namespace({})
    source = solution_sources(ASSIGNMENT)["train"]
    exec(source.replace("batchnorm_forward(", "own_forward(").replace("batchnorm_backward(", "own_backward("),
         namespace)
    namespace.update(own_forward=namespace["batchnorm_forward"], own_backward=namespace["batchnorm_backward"])
    exec("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    raise NotImplementedError\n", namespace)
    for part_id in BN_PARTS:
        assert all(run_case(PARTS[part_id], namespace["train"], case).passed for case in PARTS[part_id].cases())


def test_a_side_slip_of_the_layers_costs_the_training_parts_nothing() -> None:
    # float64 gradients for float32 input: the layer part keeps 1 - SIDE_SHARE, the training keeps all.
    slip = ("def batchnorm_backward(dout, cache):\n"
            "    x_hat, gamma, inv_std = cache\n"
            "    m = dout.shape[0]\n"
            "    dbeta = dout.sum(axis=0)\n"
            "    dgamma = (dout * x_hat).sum(axis=0)\n"
            "    dx = gamma * inv_std / m * (m * dout - dbeta - x_hat * dgamma)\n"
            "    return dx.astype(np.float64), dgamma.astype(np.float64), dbeta.astype(np.float64)\n")
    namespace = _namespace({"batchnorm_backward": slip})
    part = PARTS[f"{ASSIGNMENT}-batchnorm_backward"]
    assert check(part.id, namespace["batchnorm_backward"]) == part.points * (1 - SIDE_SHARE)
    for part_id in BN_PARTS:
        assert check(part_id, namespace["train"]) is None


def test_a_non_reproducible_train_is_caught_by_a_visible_case(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = _namespace(load_submission(CORPUS / "unseeded_shuffle.py").overrides)
    part = PARTS[f"{ASSIGNMENT}-train_bn"]
    assert not part.hidden
    # The accuracy is reached, so the slip keeps 1 - SIDE_SHARE of the part (the scoring rule).
    assert check(part.id, namespace["train"]) == part.points * (1 - SIDE_SHARE)
    assert "two runs with seed=1 gave different" in capsys.readouterr().out


def test_the_solution_keeps_full_marks_and_learns_what_grading_adds(capsys: pytest.CaptureFixture[str]) -> None:
    train = _namespace({})["train"]
    assert check(f"{ASSIGNMENT}-train_bn", train) is None
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("passed: the BN network") and "two runs give the same" in printed[0]
    assert printed[1] == f"at grading, hidden cases add: {PARTS[f'{ASSIGNMENT}-train_bn_hidden'].description}"
    assert check(f"{ASSIGNMENT}-train_bn_hidden", train) is None


# --------------------------------------------------------------------------- the experiment


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_bn_trains_at_the_rate_that_breaks_the_plain_network(seed: int) -> None:
    train = solution_namespace("06_in_practice")["train"]
    digits = load_digits(seed=seed)
    with np.errstate(all="ignore"):
        accuracies = {
            (use_bn, lr): deepnet.accuracy(train(digits.x_train, digits.y_train, use_bn, lr, seed=seed),
                                       digits.x_test, digits.y_test)
            for use_bn, lr in ((False, in_practice.LOW_LR), (False, in_practice.HIGH_LR),
                               (True, in_practice.HIGH_LR))
        }
    # Margins measured over 10 seeds: plain at 0.1 reaches 94-97 %, plain at 1.5 stays at 9-11 %,
    # BN at 1.5 reaches 95-98 %; the graded targets are 90 % and 50 %.
    assert accuracies[False, in_practice.LOW_LR] >= in_practice.TARGET_ACCURACY + 0.03
    assert accuracies[False, in_practice.HIGH_LR] <= in_practice.DIVERGED_ACCURACY - 0.3
    assert accuracies[True, in_practice.HIGH_LR] >= in_practice.TARGET_ACCURACY + 0.03
