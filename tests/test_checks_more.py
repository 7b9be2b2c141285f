"""Tests of assignments 01, 02 and 06: their reference code and their checks.

- ``bncourse.init``, ``bncourse.flops`` and ``bncourse.mlp`` against independent computations
  (PyTorch for the network, finite differences for the loss gradient, step-by-step counts);
- every part passes the instructor's solution and fails the untouched stub;
- every corpus submission of ``tests/submissions/0{1,2,6}_*`` loses exactly its EXPECT_LOST
  parts, each with a message containing EXPECT_FEEDBACK; judged in this process (the real
  nbgrader round trip of the same corpus is in tests/test_exercises.py);
- judges given malformed outputs fail with a message instead of crashing;
- the experiment behind assignment 06 holds on seeds other than the graded one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from submission_builder import load_submissions, read, solution_cells

from bncourse import flops, init, mlp
from bncourse.checks import PARTS, parts_for
from bncourse.data import load_digits
from bncourse.testing import find_shortcuts, run_case

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = {
    "01_initialization": "initialization.ipynb",
    "02_whitening": "whitening.ipynb",
    "06_in_practice": "in_practice.ipynb",
}


# --------------------------------------------------------------------------- reference code


def test_xavier_laws_have_the_glorot_variance_and_bound() -> None:
    rng = np.random.default_rng(0)
    fan_in, fan_out = 500, 300
    target = 2 / (fan_in + fan_out)
    uniform = init.xavier_uniform(fan_in, fan_out, rng)
    normal = init.xavier_normal(fan_in, fan_out, rng)
    assert uniform.shape == normal.shape == (fan_out, fan_in)
    assert np.abs(uniform).max() <= np.sqrt(6 / (fan_in + fan_out))
    # 150,000 draws: the sample variance's relative standard error is < 0.3 %; 2 % is > 6 of them.
    assert uniform.var() == pytest.approx(target, rel=0.02)
    assert normal.var() == pytest.approx(target, rel=0.02)
    # Kurtosis 1.8 (uniform) and 3 (normal), each estimated to within ~0.02.
    assert np.mean(uniform**4) / uniform.var() ** 2 == pytest.approx(1.8, abs=0.05)
    assert np.mean(normal**4) / normal.var() ** 2 == pytest.approx(3.0, abs=0.1)


def test_activation_stats_matches_a_torch_forward_pass() -> None:
    rng = np.random.default_rng(1)
    u = rng.standard_normal((40, 12))
    weights = [rng.standard_normal((20, 12)), rng.standard_normal((7, 20))]
    means, stds = init.activation_stats(u, weights, np.tanh)
    h = torch.tensor(u)
    for layer, w in enumerate(weights):
        h = torch.tanh(h @ torch.tensor(w).T)
        # Same float64 operations in another library: agreement to ~1e-15; 1e-12 is a margin.
        assert means[layer] == pytest.approx(h.mean().item(), abs=1e-12)
        assert stds[layer] == pytest.approx(h.std(correction=0).item(), rel=1e-12)


@pytest.mark.parametrize(
    ("stds", "label"),
    [
        ([1.0, 0.5, 0.099], "vanishing"),
        ([1.0, 0.5, 0.0], "vanishing"),
        ([1.0, 3.0, 10.1], "exploding"),
        ([1.0, np.inf, np.nan], "exploding"),
        ([1.0, 2.0, np.nan], "exploding"),
        ([1.0, 5.0, 9.9], "stable"),
        ([2.0, 0.21], "stable"),
    ],
)
def test_classify_signal_rule(stds: list[float], label: str) -> None:
    assert init.classify_signal(np.array(stds)) == label


def test_signal_profiles_of_real_passes_behave_as_the_chapter_says() -> None:
    # ReLU with Xavier loses a factor ~sqrt(2) per layer; He's gain keeps the scale; a linear
    # network with gain 3 overflows float32 within 100 layers.
    relu_xavier = init.signal_profile("relu", 1.0, 30, width=128, n=128)
    relu_he = init.signal_profile("relu", np.sqrt(2.0), 30, width=128, n=128)
    overflow = init.signal_profile("linear", 3.0, 100, width=128, n=128)
    assert relu_xavier[-1] / relu_xavier[0] < 1e-3
    assert 0.2 < relu_he[-1] / relu_he[0] < 5
    assert not np.all(np.isfinite(overflow))


def _count_standardize(N: int, d: int) -> int:
    """The counting rules applied step by step, as a student would (independent of flops.py)."""
    steps = {"sum for the mean": N * d, "divide by N": d, "centre": N * d, "square": N * d,
             "sum of squares": N * d, "divide by N again": d, "add eps": d, "sqrt": d, "divide": N * d}
    return sum(steps.values())


def _count_whiten(N: int, d: int, method: str) -> int:
    def matmul(a: int, b: int, c: int) -> int:
        return 2 * a * b * c

    steps = [N * d, d, N * d, matmul(d, N, d), d * d, 9 * d**3, d, d, d, d * d, matmul(N, d, d)]
    if method == "zca":
        steps.append(matmul(d, d, d))
    return sum(steps)


@pytest.mark.parametrize(("N", "d"), [(1, 1), (7, 3), (1000, 64), (200, 4000)])
def test_flop_counts_follow_the_rules(N: int, d: int) -> None:
    assert flops.standardize_flops(N, d) == _count_standardize(N, d)
    for method in ("zca", "pca"):
        assert flops.whiten_flops(N, d, method) == _count_whiten(N, d, method)


def test_flop_count_ratio_grows_with_d() -> None:
    ratios = [flops.whiten_flops(1024, d) / flops.standardize_flops(1024, d) for d in (8, 32, 128, 512)]
    assert all(b > 2 * a for a, b in zip(ratios, ratios[1:], strict=False))


def test_softmax_cross_entropy_gradient_matches_torch() -> None:
    rng = np.random.default_rng(2)
    logits, y = rng.standard_normal((6, 4)) * 3, rng.integers(0, 4, 6)
    loss, dlogits = mlp.softmax_cross_entropy(logits, y)
    t = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(t, torch.tensor(y))
    expected.backward()
    # float64 throughout: agreement to ~1e-15; 1e-12 is a margin.
    assert loss == pytest.approx(expected.item(), abs=1e-12)
    np.testing.assert_allclose(dlogits, t.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("use_bn", [False, True])
def test_predict_equals_the_torch_network_in_eval_mode(use_bn: bool) -> None:
    params = mlp.init_mlp(use_bn, seed=3)
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
    np.testing.assert_array_equal(mlp.predict(params, x), expected)


def test_predict_scores_a_diverged_network_as_a_failure() -> None:
    params = mlp.init_mlp(False, seed=0)
    params["W2"] = np.full_like(params["W2"], np.nan)
    digits = load_digits()
    assert mlp.accuracy(params, digits.x_test, digits.y_test) < 0.2


# --------------------------------------------------------------------------- parts vs. solutions


def _namespace(assignment: str, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """The solution notebook's setup and solution cells executed, then the overrides on top."""
    notebook = read(REPO_ROOT / "solutions" / assignment / ASSIGNMENTS[assignment])
    namespace: dict[str, Any] = {"__name__": "__student__"}
    for cell in notebook.cells:
        grading = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and grading.get("grade_id") == "setup":
            exec(cell.source, namespace)
    for source in solution_cells(notebook).values():
        exec(source, namespace)
    for source in (overrides or {}).values():
        exec(source, namespace)
    return namespace


def _lost(assignment: str, namespace: dict[str, Any], sources: dict[str, str]) -> dict[str, str]:
    """part id -> failure message, for every part of the assignment that fails."""
    lost = {}
    for part in parts_for(assignment):
        reason = find_shortcuts(sources.get(part.target, ""))
        if reason:
            lost[part.id] = reason
            continue
        for case in part.cases():
            verdict = run_case(part, namespace[part.target], case)
            if not verdict.passed:
                lost[part.id] = verdict.message
                break
    return lost


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_the_solution_passes_every_part(assignment: str) -> None:
    notebook = read(REPO_ROOT / "solutions" / assignment / ASSIGNMENTS[assignment])
    assert _lost(assignment, _namespace(assignment), solution_cells(notebook)) == {}


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_the_untouched_stub_fails_every_part(assignment: str) -> None:
    def stub(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError()

    namespace = _namespace(assignment)
    namespace.update({part.target: stub for part in parts_for(assignment)})
    lost = _lost(assignment, namespace, {})
    assert set(lost) == {part.id for part in parts_for(assignment)}
    assert all(" raised " in message for message in lost.values()), lost


SUBMISSIONS = [s for a in sorted(ASSIGNMENTS) for s in load_submissions(a)]


@pytest.mark.parametrize("submission", SUBMISSIONS, ids=[f"{s.assignment}/{s.name}" for s in SUBMISSIONS])
def test_submission_loses_exactly_its_parts(submission: Any) -> None:
    namespace = _namespace(submission.assignment, submission.overrides)
    with np.errstate(all="ignore"):
        lost = _lost(submission.assignment, namespace, submission.overrides)
    assert sorted(lost) == sorted(submission.expect_lost), lost
    for part_id, message in lost.items():
        assert submission.expect_feedback.lower() in message.lower(), (part_id, message)


def test_the_corpus_covers_every_diagnosis_of_these_assignments() -> None:
    named = {s.expect_feedback for s in SUBMISSIONS}
    assert len(SUBMISSIONS) >= 25 and "" in named  # wrong ones and correct alternatives


# --------------------------------------------------------------------------- malformed outputs

MY_PARTS = [p for p in PARTS.values() if p.assignment in ASSIGNMENTS]


@pytest.mark.parametrize("part", MY_PARTS, ids=[p.id for p in MY_PARTS])
@pytest.mark.parametrize(
    "outputs",
    [{}, {"junk": np.zeros(3)}, "strings"],
    ids=["nothing", "unknown key", "strings everywhere"],
)
def test_judges_fail_cleanly_on_malformed_outputs(part: Any, outputs: Any) -> None:
    case = part.cases()[0]
    if outputs == "strings":
        # Every key a correct run would return, each holding a string array.
        outputs = {key: np.asarray("oops") for key in _expected_output_keys(part, case)}
    verdict = part.judge(case, outputs)
    assert not verdict.passed and verdict.message


def _expected_output_keys(part: Any, case: dict[str, Any]) -> list[str]:
    if part.assignment == "06_in_practice" and part.target == "train":
        return list(mlp.expected_keys(bool(case["use_bn"])))
    namespace = _namespace(part.assignment)
    return list(part.run(namespace[part.target], case))


# --------------------------------------------------------------------------- the 06 experiment


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_bn_trains_at_the_rate_that_breaks_the_plain_network(seed: int) -> None:
    from bncourse.checks import in_practice

    train = _namespace("06_in_practice")["train"]
    digits = load_digits(seed=seed)
    with np.errstate(all="ignore"):
        accuracies = {
            (use_bn, lr): mlp.accuracy(train(digits.x_train, digits.y_train, use_bn, lr, seed=seed),
                                       digits.x_test, digits.y_test)
            for use_bn, lr in ((False, in_practice.LOW_LR), (False, in_practice.HIGH_LR),
                               (True, in_practice.HIGH_LR))
        }
    # Margins measured over 10 seeds: plain at 0.1 reaches 94-97 %, plain at 1.5 stays at 9-11 %,
    # BN at 1.5 reaches 95-98 %; the graded targets are 90 % and 50 %.
    assert accuracies[False, in_practice.LOW_LR] >= in_practice.TARGET_ACCURACY + 0.03
    assert accuracies[False, in_practice.HIGH_LR] <= in_practice.DIVERGED_ACCURACY - 0.3
    assert accuracies[True, in_practice.HIGH_LR] >= in_practice.TARGET_ACCURACY + 0.03


# --------------------------------------------------------------------------- named mistakes

# Wrong versions that the corpus does not cover, each with the mistake id its judge must name.


def _uniform_with_variance(variance: Any) -> Any:
    def xavier_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
        bound = np.sqrt(3 * variance(fan_in, fan_out))
        return rng.uniform(-bound, bound, size=(fan_out, fan_in))
    return xavier_uniform


def _normal_with_std(std: Any) -> Any:
    def xavier_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0.0, std(fan_in, fan_out), size=(fan_out, fan_in))
    return xavier_normal


def _stats_with_input(u: np.ndarray, weights: list[np.ndarray], g: Any) -> tuple[np.ndarray, np.ndarray]:
    means, stds = init.activation_stats(u, weights, g)
    return np.concatenate([[u.mean()], means]), np.concatenate([[u.std()], stds])


def _stats_in_place(u: np.ndarray, weights: list[np.ndarray], g: Any) -> tuple[np.ndarray, np.ndarray]:
    u -= u.mean()  # "centre the input first", in place
    return init.activation_stats(u, weights, g)


def _standardize_eps_outside(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return (x - x.mean(axis=0)) / (x.std(axis=0) + eps)


def _whiten_with(method_used: str | None = None, scale: Any = None) -> Any:
    def whiten(x: np.ndarray, method: str = "zca", eps: float = 1e-5) -> tuple[np.ndarray, ...]:
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=0)
        centred = x64 - mean
        lam, U = np.linalg.eigh(centred.T @ centred / len(x))
        lam, U = np.clip(lam[::-1], 0, None), U[:, ::-1]
        W = U * (scale or (lambda lam, eps: 1 / np.sqrt(lam + eps)))(lam, eps)
        if (method_used or method) == "zca":
            W = W @ U.T
        return (centred @ W).astype(x.dtype), W.astype(x.dtype), mean.astype(x.dtype)
    return whiten


NAMED = [
    ("01_initialization-xavier_uniform", _uniform_with_variance(lambda i, o: 1 / o), "fan_out_only"),
    ("01_initialization-xavier_uniform", _uniform_with_variance(lambda i, o: 1 / (i + o)), "missing_factor_2"),
    ("01_initialization-xavier_uniform", _uniform_with_variance(lambda i, o: (6 / (i + o)) ** 2 / 3),
     "bound_without_sqrt"),
    ("01_initialization-xavier_normal", _normal_with_std(lambda i, o: 2 / (i + o)), "variance_as_std"),
    ("01_initialization-xavier_uniform", _normal_with_std(lambda i, o: np.sqrt(2 / (i + o))),
     "normal_instead_of_uniform"),
    ("01_initialization-activation_stats", _stats_with_input, "includes_input"),
    ("01_initialization-activation_stats", _stats_in_place, "mutates_input"),
    ("02_whitening-standardize", _standardize_eps_outside, "eps_outside_sqrt"),
    ("02_whitening-whiten_pca", _whiten_with(method_used="zca"), "zca_instead_of_pca"),
    ("02_whitening-whiten_zca", _whiten_with(scale=lambda lam, eps: 1 / (np.sqrt(lam) + eps)), "eps_outside_sqrt"),
    ("02_whitening-whiten_flops", lambda N, d, method="zca": flops.whiten_flops(N, d, "zca"), "flops_wrong_method"),
]


@pytest.mark.parametrize(("part_id", "wrong", "mistake"), NAMED, ids=[m for _, _, m in NAMED])
def test_judges_name_the_mistake(part_id: str, wrong: Any, mistake: str) -> None:
    part = PARTS[part_id]
    verdicts = [run_case(part, wrong, case) for case in part.cases()]
    failed = [v for v in verdicts if not v.passed]
    assert failed and failed[0].mistake == mistake, failed[:1]
