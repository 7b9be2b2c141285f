"""Assignment 04, backpropagation through BN.

The student writes ``batchnorm_forward`` (whose cache they design), a staged
``batchnorm_backward`` and a ``batchnorm_backward_compact``, a finite-difference
``numerical_gradient``, and ``BatchNormFunction``, a ``torch.autograd.Function`` with their
backward. The caches are opaque: the backward parts call the student's own forward (found in
the globals of the student's backward, i.e. the notebook) and pass its cache on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from bncourse import cpu
from bncourse.checks.bn_transform import BROADCAST_HINT
from bncourse.checks.bn_transform import tolerance as bn_tolerance
from bncourse.checks.core import DtypeTolerance, Variant, Verdict, case_rng, fail, judge_outputs, ok, part_pair
from bncourse.checks.outputs import UnusableResultError, as_array, broadcast_hint, kind_of, numpy_output, pair
from bncourse.checks.variants import BACKWARD_VARIANTS, FORWARD_VARIANTS

ASSIGNMENT = "04_backprop"

# Tolerances (rtol, atol) on gradients of order 1-10.
# float64: correct staged and compact backward passes agree with the float64 reference to
# ~1e-13; 1e-7 separates every variant (they change dx by O(1)).
# float32: dx subtracts terms of similar size (dout, its mean, x_hat * mean(dout * x_hat)),
# so correct float32 code loses a few digits (~1e-6 relative here); 5e-4 is a wide margin.
TOLERANCE = DtypeTolerance(float64=(1e-7, 1e-9), float32=(5e-4, 5e-4))


def _random_case(label: str, shape: tuple[int, ...], dtype: type, seed: int, eps: float = 1e-5,
                 tiny_channel: bool = False, constant_channel: bool = False,
                 offset: float = 0.0) -> dict[str, Any]:
    rng = case_rng(seed)
    channels = shape[1]
    stat_shape = (1, channels) + (1,) * (len(shape) - 2)
    std = rng.uniform(0.5, 3.0, size=stat_shape)
    if tiny_channel:
        std[0, 0] = 1e-3
    x = offset + rng.uniform(-3, 3, size=stat_shape) + std * rng.standard_normal(shape)
    if constant_channel:
        x[:, -1] = -1.5
    gamma = rng.uniform(0.5, 2.0, size=channels) * rng.choice([-1.0, 1.0], size=channels)
    return {
        "label": label,
        "x": x.astype(dtype),
        "gamma": gamma.astype(dtype),
        "beta": rng.uniform(-2, 2, size=channels).astype(dtype),
        "dout": rng.standard_normal(shape).astype(dtype),
        "eps": eps,
    }


# What the cases cover, after the name of the backward function they are given to.
BACKWARD_COVERS = ("on (N, D), (N, C, L) and (N, C, H, W), float64 and float32, N = 2, a constant channel, "
                   "mean 1e4 x std")


def backward_cases() -> list[dict[str, Any]]:
    return [
        _random_case("float64 x of shape (6, 4)", (6, 4), np.float64, seed=41),
        _random_case("float64 x of shape (2, 3, 4, 4)", (2, 3, 4, 4), np.float64, seed=42),
        _random_case("float32 x of shape (8, 3)", (8, 3), np.float32, seed=43),
        # Smaller twins of the hidden categories (no surprises at grading).
        _random_case("float64 x with N = 2, shape (2, 3, 5), one spatial axis, a constant "
                     "channel, eps = 1e-3", (2, 3, 5), np.float64, seed=44,
                     constant_channel=True, eps=1e-3),
        _random_case("float64 x of shape (10, 2) with mean 1e4 x std, column 0 of variance "
                     "1e-6", (10, 2), np.float64, seed=45, offset=1e4, tiny_channel=True),
    ]


BACKWARD_HIDDEN_COVERS = ("N = 2, tiny variance, a constant channel, eps = 1e-3, one spatial axis, mean 1e4 x std; "
                          "dout unchanged, dtype kept")


def backward_cases_hidden() -> list[dict[str, Any]]:
    return [
        _random_case("float64 x with N = 2, shape (2, 5)", (2, 5), np.float64, seed=51),
        _random_case("float64 x of shape (7, 3) whose column 0 has variance 1e-6", (7, 3),
                     np.float64, seed=52, tiny_channel=True),
        _random_case("float64 x of shape (4, 3, 2, 2) with a constant channel", (4, 3, 2, 2),
                     np.float64, seed=53, constant_channel=True),
        _random_case("float64 x of shape (3, 2, 5), one spatial axis, eps = 1e-3", (3, 2, 5),
                     np.float64, seed=54, eps=1e-3),
        _random_case("float64 x of shape (16, 3) with mean 1e4 x std", (16, 3), np.float64,
                     seed=55, offset=1e4),
        _random_case("float32 x of shape (3, 5, 3, 1)", (3, 5, 3, 1), np.float32, seed=56),
    ]



def _student_forward(backward: Any) -> Any:
    forward = getattr(backward, "__globals__", {}).get("batchnorm_forward")
    if forward is None:
        raise UnusableResultError(
            "the backward parts call your batchnorm_forward to get the cache; define it in the "
            "notebook above"
        )
    return forward


def run_backward(backward: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Student's forward, then the student's backward on its cache; inputs copied."""
    x, gamma, beta, dout = (np.array(case[n]) for n in ("x", "gamma", "beta", "dout"))
    with broadcast_hint(BROADCAST_HINT):
        out, cache = pair(_student_forward(backward)(x, gamma, beta, eps=case["eps"]),
                          "batchnorm_forward")
        grads = backward(dout, cache)
    if not isinstance(grads, tuple | list) or len(grads) != 3:
        raise UnusableResultError(
            f"the backward pass should return (dx, dgamma, dbeta), got {type(grads).__name__}"
        )
    dx, dgamma, dbeta = (numpy_output(g, name, "the backward pass")
                         for g, name in zip(grads, ("dx", "dgamma", "dbeta"), strict=True))
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta, "after_dout": dout,
            "forward_out": numpy_output(out, "out", "batchnorm_forward")}


def expected_grads(case: dict[str, Any]) -> dict[str, np.ndarray]:
    """The reference's (dx, dgamma, dbeta) on the float64 copy of the case."""
    x, gamma, beta, dout = (np.asarray(case[n], dtype=np.float64)
                            for n in ("x", "gamma", "beta", "dout"))
    _, cache = cpu.batchnorm_forward(x, gamma, beta, eps=case["eps"])
    dx, dgamma, dbeta = cpu.batchnorm_backward(dout, cache)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def judge_forward_first(target: str, case: dict[str, Any], out: Any) -> Verdict:
    """The student's forward, which a backward part depends on, judged before the backward:
    a wrong forward gets a message that names the forward (and its known mistake), not a
    "wrong dx". Its dtype is not judged here (assignment 03 does that)."""
    x, gamma, beta = (np.asarray(case[n], dtype=np.float64) for n in ("x", "gamma", "beta"))
    expected, _ = cpu.batchnorm_forward(x, gamma, beta, eps=case["eps"])
    verdict = judge_outputs("batchnorm_forward", case, {"out": out}, {"out": expected},
                            bn_tolerance(case), FORWARD_VARIANTS)
    if verdict.passed:
        return verdict
    return fail(f"{target} was not checked, because the batchnorm_forward it uses (whose cache "
                f"it gets) is wrong; fix the forward first. {verdict.message}", "wrong_forward")


def judge_backward(target: str) -> Any:
    """The judge of a backward part whose messages name ``target``: the student's forward
    first (``judge_forward_first``), then the gradients."""
    def judge(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
        if "forward_out" in outputs:
            verdict = judge_forward_first(target, case, outputs["forward_out"])
            if not verdict.passed:
                return verdict
        return judge_outputs(target, case, outputs, expected_grads(case), TOLERANCE.of(case),
                             BACKWARD_VARIANTS, dtype_of="x", inputs=("dout",))
    return judge


BACKWARD = part_pair(ASSIGNMENT, "backward", target="batchnorm_backward", points=(2.0, 1.0),
                     descriptions=(f"batchnorm_backward {BACKWARD_COVERS}",
                                   f"batchnorm_backward: {BACKWARD_HIDDEN_COVERS}"),
                     cases=(backward_cases, backward_cases_hidden), run=run_backward,
                     judge=judge_backward("batchnorm_backward"))

BACKWARD_COMPACT = part_pair(ASSIGNMENT, "backward_compact", target="batchnorm_backward_compact", points=(2.0, 1.0),
                             descriptions=(f"batchnorm_backward_compact {BACKWARD_COVERS}",
                                           f"batchnorm_backward_compact: {BACKWARD_HIDDEN_COVERS}"),
                             cases=(backward_cases, backward_cases_hidden), run=run_backward,
                             judge=judge_backward("batchnorm_backward_compact"))


# --------------------------------------------------------------------------- numerical gradient

# Smooth test functions f(x) built from the case's arrays (plain NumPy, no reference code),
# with their exact gradients for the judge.


def _test_function(case: dict[str, Any]) -> Any:
    if case["kind"] == "tanh_matmul":
        return lambda x: np.tanh(x @ case["A"])
    return lambda x: x**3 * case["A"]  # "cube"


def _analytic_gradient(case: dict[str, Any]) -> np.ndarray:
    x, A, dout = case["x"], case["A"], case["dout"]
    if case["kind"] == "tanh_matmul":
        return (dout * (1.0 - np.tanh(x @ A) ** 2)) @ A.T
    return 3.0 * x**2 * A * dout


def _gradient_case(rng: np.random.Generator, label: str, kind: str, x_shape: tuple[int, ...],
                   out_shape: tuple[int, ...], h: float) -> dict[str, Any]:
    """A case of ``numerical_gradient``: x, then A (the shape of x for "cube", (D_in, D_out)
    for "tanh_matmul"), then dout, drawn from ``rng`` in that order."""
    a_shape = x_shape if kind == "cube" else (x_shape[-1], out_shape[-1])
    return {"label": label, "kind": kind, "x": rng.standard_normal(x_shape),
            "A": rng.standard_normal(a_shape), "dout": rng.standard_normal(out_shape), "h": h}


NUMERICAL_GRADIENT_COVERS = ("numerical_gradient against exact gradients of two smooth functions, steps h "
                             "1e-6 to 1e-4, a 1-D x and a single output")


def gradient_cases() -> list[dict[str, Any]]:
    rng, twins = np.random.default_rng(61), np.random.default_rng(63)
    return [
        _gradient_case(rng, "f(x) = tanh(x @ A), x of shape (4, 3)", "tanh_matmul", (4, 3), (4, 5), 1e-5),
        _gradient_case(rng, "f(x) = x**3 * A elementwise, x of shape (3, 2, 2)", "cube", (3, 2, 2),
                       (3, 2, 2), 1e-5),
        # Smaller twins of the hidden categories (no surprises at grading).
        _gradient_case(twins, "f(x) = x**3 * A with h = 1e-4, x of shape (3,)", "cube", (3,), (3,), 1e-4),
        _gradient_case(twins, "f(x) = tanh(x @ A) with h = 1e-6, x of shape (1, 4) and output (1, 1)",
                       "tanh_matmul", (1, 4), (1, 1), 1e-6),
    ]


NUMERICAL_GRADIENT_HIDDEN_COVERS = "numerical_gradient with other steps h and shapes; x and dout unchanged"


def gradient_cases_hidden() -> list[dict[str, Any]]:
    rng = case_rng(62)
    return [
        _gradient_case(rng, "f(x) = x**3 * A with h = 1e-4, x of shape (5,)", "cube", (5,), (5,), 1e-4),
        _gradient_case(rng, "f(x) = tanh(x @ A), x of shape (1, 6) and output (1, 1)", "tanh_matmul",
                       (1, 6), (1, 1), 1e-6),
    ]


def run_gradient(numerical_gradient: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    x, dout = np.array(case["x"]), np.array(case["dout"])
    dx = numpy_output(numerical_gradient(_test_function(case), x, dout, h=case["h"]), "dx",
                      "numerical_gradient")
    return {"dx": dx, "after_x": x, "after_dout": dout}


def _one_sided(case: dict[str, Any]) -> dict[str, np.ndarray]:
    f, x, h = _test_function(case), np.asarray(case["x"], dtype=np.float64), case["h"]
    dx = np.zeros_like(x)
    base = f(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        dx[index] = np.sum((f(x + step) - base) * case["dout"]) / h
    return {"dx": dx}


GRADIENT_VARIANTS = (
    Variant("one_sided_difference",
            "it looks like a one-sided difference (f(x + h) - f(x)) / h, whose error is of "
            "order h; the central difference (f(x + h) - f(x - h)) / (2h) errs by order h^2.",
            _one_sided),
    Variant("missing_factor_2",
            "the result is twice the gradient; a central difference divides by 2h, not h.",
            lambda case: {"dx": 2.0 * _analytic_gradient(case)}),
    Variant("ignores_dout",
            "dout seems to be ignored; the numerical gradient of sum(f(x) * dout) weighs each "
            "output's change by dout.",
            lambda case: {"dx": _analytic_gradient({**case, "dout": np.ones_like(case["dout"])})}),
)

# A correct central difference errs by its truncation, about h^2 / 6 * |f'''| times dout, plus
# rounding ~1e-16 / h (<= 1e-10). TOL_GRADIENT covers the rounding and the order of sums; each
# case adds twice its own truncation bound (_truncation_bound), which grows with the drawn A and
# dout: with h = 1e-4 and |A * dout| = 3 it is 3e-8, above a fixed 1e-8, and a fixed tolerance
# failed correct work on 21 of 200 students' hidden cases. A one-sided difference errs by
# ~h / 2 * |f''| * |dout|, orders of magnitude more, and is still named.
TOL_GRADIENT = (1e-7, 1e-8)


def _truncation_bound(case: dict[str, Any]) -> float:
    """The largest error of an exact central difference on ``case``, from the third derivative.

    - cube, f = x^3 * A: f''' = 6 A, so each entry of dx errs by exactly h^2 * A * dout;
    - tanh_matmul, f = tanh(x @ A): |tanh'''| <= 2, so entry (r, i) errs by at most
      h^2 / 3 * sum_j |dout_rj| |A_ij|^3.
    """
    A, dout, h = np.abs(case["A"]), np.abs(case["dout"]), case["h"]
    if case["kind"] == "tanh_matmul":
        return float(h**2 / 3 * (dout @ (A**3).T).max())
    return float(h**2 * (A * dout).max())


def judge_gradient(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    rtol, atol = TOL_GRADIENT
    tolerance = (rtol, atol + 2 * _truncation_bound(case))
    return judge_outputs("numerical_gradient", case, outputs, {"dx": _analytic_gradient(case)},
                         tolerance, GRADIENT_VARIANTS, inputs=("x", "dout"))


NUMERICAL_GRADIENT = part_pair(ASSIGNMENT, "numerical_gradient", target="numerical_gradient", points=(1.0, 1.0),
                               descriptions=(NUMERICAL_GRADIENT_COVERS, NUMERICAL_GRADIENT_HIDDEN_COVERS),
                               cases=(gradient_cases, gradient_cases_hidden), run=run_gradient, judge=judge_gradient)


# --------------------------------------------------------------------------- autograd Function


# torch is imported on first use, here and below: the NumPy assignments' checks (and their
# sandboxes) load without paying for it.


def _devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


FUNCTION_COVERS = ("BatchNormFunction: output, gradients and torch.autograd.gradcheck on every "
                   "device; (N, C), (N, C, L) and (N, C, H, W), N = 2, a constant channel; tensors "
                   "stay in torch")


def function_cases() -> list[dict[str, Any]]:
    cases = []
    for device in _devices():
        for case in (
            _random_case(f"float64 x of shape (5, 3) on {device}", (5, 3), np.float64, seed=71),
            _random_case(f"float64 x of shape (2, 3, 2, 2) on {device}", (2, 3, 2, 2),
                         np.float64, seed=72),
            _random_case(f"float64 x with N = 2, shape (2, 3, 3), one spatial axis, a "
                         f"constant channel, eps = 1e-2, on {device}", (2, 3, 3), np.float64,
                         seed=73, constant_channel=True, eps=1e-2),
        ):
            cases.append({**case, "device": device})
    return cases


FUNCTION_HIDDEN_COVERS = "BatchNormFunction: N = 2, one spatial axis with a constant channel, eps = 1e-2"


def function_cases_hidden() -> list[dict[str, Any]]:
    cases = []
    for device in _devices():
        for case in (
            _random_case(f"float64 x with N = 2, shape (2, 4), on {device}", (2, 4), np.float64,
                         seed=81),
            _random_case(f"float64 x of shape (3, 2, 4), a constant channel, on {device}",
                         (3, 2, 4), np.float64, seed=82, constant_channel=True),
            _random_case(f"float64 x of shape (4, 2) with eps = 1e-2 on {device}", (4, 2),
                         np.float64, seed=83, eps=1e-2),
        ):
            cases.append({**case, "device": device})
    return cases


# torch's errors for the usual slips in a custom Function, and what to do about them.
_AUTOGRAD_HINTS = {
    "incorrect number of gradients": "backward returns one gradient per input of forward, "
                                     "(dx, dgamma, dbeta, None): None for eps",
    "save_for_backward can only save": "save_for_backward takes tensors only; keep numbers "
                                       "such as eps as attributes, e.g. ctx.eps = eps",
}


@contextlib.contextmanager
def _autograd_hints() -> Iterator[None]:
    """Re-raise torch's error for a known slip with what to do about it appended."""
    try:
        yield
    except (RuntimeError, TypeError) as error:
        hint = next((h for key, h in _AUTOGRAD_HINTS.items() if key in str(error)), None)
        if hint is None:
            raise
        kind = TypeError if isinstance(error, TypeError) else RuntimeError
        raise kind(f"{error} (hint: {hint})") from error


# The two ways a tensor becomes a NumPy array; run counts the calls of each, in this order.
NUMPY_EXITS = ("numpy", "__array__")


@contextlib.contextmanager
def _numpy_watch() -> Iterator[list[str]]:
    """Record every tensor turned into a NumPy array while the block runs (``.numpy()`` or
    ``np.asarray(tensor)``): BatchNormFunction must stay in torch, so that it runs on the
    tensors' device and autograd sees every step."""
    import torch

    seen: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in NUMPY_EXITS}

    def watched(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(name)
            return originals[name](self, *args, **kwargs)
        return method

    for name in originals:
        setattr(torch.Tensor, name, watched(name))
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


NUMPY_INSIDE = (
    "it turned a tensor into a NumPy array ({how}); a torch.autograd.Function must stay in "
    "torch, so that it runs on the tensors' device (a GPU tensor has no NumPy view): use "
    "torch operations (x.mean(dim=...), torch.rsqrt, ...)."
)


def run_function(function: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Forward and backward through the student's Function, then torch's gradcheck on it."""
    import torch

    device, eps = torch.device(case["device"]), case["eps"]

    def leaf(name: str) -> torch.Tensor:
        return torch.tensor(case[name], device=device, requires_grad=True)

    x, gamma, beta = leaf("x"), leaf("gamma"), leaf("beta")
    with _autograd_hints(), broadcast_hint(BROADCAST_HINT), _numpy_watch() as numpy_calls:
        out = function.apply(x, gamma, beta, eps)
        if not isinstance(out, torch.Tensor):
            raise UnusableResultError(f"BatchNormFunction.forward returned {kind_of(out)}; it should return "
                            "the output tensor alone (keep what backward needs on ctx)")
        out.backward(torch.tensor(case["dout"], device=device))
    # gradcheck compares the student's backward with finite differences of the student's
    # forward (float64, central differences with step 1e-6).
    consistent = torch.autograd.gradcheck(
        lambda x_, g_, b_: function.apply(x_, g_, b_, eps),
        (x.detach().requires_grad_(), gamma.detach().requires_grad_(),
         beta.detach().requires_grad_()),
        eps=1e-6, atol=1e-5, rtol=1e-4, raise_exception=False,
    )
    return {
        "out": as_array(out), "dx": as_array(x.grad), "dgamma": as_array(gamma.grad),
        "dbeta": as_array(beta.grad), "gradcheck": np.asarray(bool(consistent)),
        # Counts, not names: run returns numeric arrays only (outputs.numeric_outputs).
        "numpy_calls": np.asarray([numpy_calls.count(name) for name in NUMPY_EXITS]),
    }


def judge_function(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    where = f"BatchNormFunction ({case['label']})"
    numpy_calls = np.asarray(outputs.get("numpy_calls", np.zeros(len(NUMPY_EXITS)))).ravel()
    if numpy_calls.dtype.kind not in "iuf" or numpy_calls.shape != (len(NUMPY_EXITS),):
        return fail(f"{where}: the run's record of NumPy calls is unreadable ({numpy_calls.dtype}, "
                    f"shape {numpy_calls.shape}).")
    if numpy_calls.sum() > 0:
        how = "tensor.numpy()" if numpy_calls[0] > 0 else "np.asarray(tensor) or a NumPy call"
        return fail(f"{where}: {NUMPY_INSIDE.format(how=how)}", "numpy_inside_function")
    x, gamma, beta = (np.asarray(case[n], dtype=np.float64) for n in ("x", "gamma", "beta"))
    out, _ = cpu.batchnorm_forward(x, gamma, beta, eps=case["eps"])
    verdict = judge_outputs("BatchNormFunction", case, outputs, {"out": out}, TOLERANCE.float64,
                            FORWARD_VARIANTS)
    if not verdict.passed:  # the forward first: the backward's check relies on it
        message = verdict.message.replace("`out`", "the forward's `out`")
        return fail(f"{message} (the forward is checked before the backward; fix it first)",
                    verdict.mistake)
    verdict = judge_outputs("BatchNormFunction", case, outputs, expected_grads(case),
                            TOLERANCE.float64, BACKWARD_VARIANTS)
    if not verdict.passed:
        return verdict
    if not bool(np.asarray(outputs.get("gradcheck", False))):
        return fail(f"{where}: torch.autograd.gradcheck disagrees with your backward.",
                    "gradcheck")
    return ok()


FUNCTION = part_pair(ASSIGNMENT, "function", target="BatchNormFunction", points=(2.0, 1.0),
                     descriptions=(FUNCTION_COVERS, FUNCTION_HIDDEN_COVERS),
                     cases=(function_cases, function_cases_hidden), run=run_function, judge=judge_function)


PARTS = [*BACKWARD, *BACKWARD_COMPACT, *NUMERICAL_GRADIENT, *FUNCTION]
