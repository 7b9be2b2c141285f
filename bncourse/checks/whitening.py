"""Checks of assignment 02, whitening: ``standardize``, ``whiten`` (ZCA and PCA), and flop counts.

``whiten``'s judge checks the properties one at a time, so the message names the first one
that fails: the outputs' shapes and dtype, the mean, x_white = (x - mean) @ W, a symmetric W
for ZCA, cov(x_white) = I, and agreement with ``bncourse.cpu.whiten`` (up to the sign of
each principal axis for PCA, which is a convention). Known mistakes are named: PCA where ZCA
was asked, a covariance divided by N - 1, data not centred, W transposed, eps missing or
outside the square root, principal axes in increasing order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bncourse import cpu, flops
from bncourse.checks.core import (
    DtypeTolerance,
    Variant,
    Verdict,
    array_output,
    case_rng,
    compare,
    diagnose,
    fail,
    first_failure,
    ok,
    part,
    part_pair,
    unchanged,
    with_side_properties,
)
from bncourse.checks.outputs import UnusableResultError, as_array

ASSIGNMENT = "02_whitening"

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def correlated_data(
    N: int, D: int, seed: int, dtype: type = np.float64, constant_feature: bool = False, offset: float = 0.0
) -> np.ndarray:
    """(N, D) data with a random rotation of the variances 4 ... 0.05 and means in [-3, 3].

    Evenly spaced variances keep every eigenvalue gap >= 3.95 / D (so principal axes are well
    defined); the smallest, 0.05, is large against eps = 1e-5 yet small enough that eps
    changes the result by 1e-4 relative (so "no eps" is visible in float64).
    """
    rng = case_rng(seed)
    variances = np.linspace(4.0, 0.05, D) if D > 1 else np.array([2.0])
    rotation, _ = np.linalg.qr(rng.standard_normal((D, D)))
    x = (rng.standard_normal((N, D)) * np.sqrt(variances)) @ rotation.T
    x = x + rng.uniform(-3.0, 3.0, size=D) + offset
    if constant_feature:
        x[:, -1] = 2.5
    return x.astype(dtype)


# ---------------------------------------------------------------------------------------------
# standardize
# ---------------------------------------------------------------------------------------------


def _standardize_case(label: str, N: int, D: int, seed: int, dtype: type, eps: float = 1e-5, **flags: Any) -> dict:
    rng = case_rng(seed)
    means = rng.uniform(-3.0, 3.0, D) + flags.pop("offset", 0.0)
    stds = rng.uniform(0.5, 3.0, D)
    if flags.get("tiny"):
        stds[0] = 1e-3  # variance 1e-6 < eps: eps matters
    x = means + stds * rng.standard_normal((N, D))
    if flags.get("constant"):
        x[:, -1] = -1.5
    return {"label": label, "x": x.astype(dtype), "eps": eps, **{k: int(v) for k, v in flags.items()}}


STANDARDIZE_COVERS = ("standardize on (N, D) inputs, float64 and float32, with a tiny-variance column, "
                      "N = 2, a constant column, D = 1, eps = 1e-2, mean 1e4 x std in float32")


def _standardize_cases() -> list[dict[str, Any]]:
    return [
        _standardize_case("float64 x of shape (20, 3)", 20, 3, 1, np.float64),
        _standardize_case("float64 x of shape (12, 4) whose column 0 has variance 1e-6", 12, 4, 2, np.float64, tiny=1),
        _standardize_case("float32 x of shape (50, 6)", 50, 6, 3, np.float32),
        # Smaller twins of the hidden categories (no surprises at grading).
        _standardize_case("float64 x with N = 2, shape (2, 4), a constant column", 2, 4, 9,
                          np.float64, constant=1),
        _standardize_case("float32 x of shape (6, 1), eps = 1e-2", 6, 1, 10, np.float32,
                          eps=1e-2),
        _standardize_case("float32 x of shape (32, 2) with mean 1e4 x std", 32, 2, 13,
                          np.float32, offset=1e4, large_offset=1),
    ]


STANDARDIZE_HIDDEN_COVERS = ("standardize: mean 1e4 x std in float32, a constant column, N = 2, D = 1, "
                             "eps = 1e-2; input unchanged, dtype kept")


def _standardize_hidden_cases() -> list[dict[str, Any]]:
    return [
        _standardize_case("float32 x of shape (64, 3) with mean 1e4 x std", 64, 3, 4, np.float32, offset=1e4,
                          large_offset=1),
        _standardize_case("float64 x of shape (7, 5) with a constant column", 7, 5, 5, np.float64, constant=1),
        _standardize_case("float64 x with N = 2, shape (2, 3)", 2, 3, 6, np.float64),
        _standardize_case("float32 x of shape (9, 1)", 9, 1, 7, np.float32),
        _standardize_case("float64 x of shape (15, 4), eps = 1e-2", 15, 4, 8, np.float64, eps=1e-2, tiny=1),
    ]


def _run_standardize(standardize: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    x = np.array(case["x"])
    return {"out": as_array(standardize(x, eps=case["eps"])), "after_x": x}


def _standardized(case: Mapping[str, Any], ddof: int = 0, denominator: str = "sqrt(var+eps)",
                  axis: int = 0) -> dict[str, np.ndarray]:
    x = np.asarray(case["x"], dtype=np.float64)
    eps = float(case["eps"])
    centred = x - x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, ddof=ddof, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        std = {"sqrt(var+eps)": np.sqrt(var + eps), "sqrt(var)+eps": np.sqrt(var) + eps,
               "sqrt(var)": np.sqrt(var)}[denominator]
        return {"out": centred / std}


def _naive_variance_matches(case: Mapping[str, Any], outputs: Mapping[str, Any], expected: Any) -> bool:
    """E[x^2] - E[x]^2 in float32 at mean 1e4 x std: inf/NaN, or centred but wrongly scaled."""
    if not case.get("large_offset"):
        return False
    out = np.asarray(outputs.get("out"), dtype=np.float64)
    if out.shape != np.asarray(case["x"]).shape:
        return False
    # The centre of correctly centred float32 data is 0 to ~1e-3 (rounding of values ~1e4).
    return bool(not np.isfinite(out).all() or np.all(np.abs(out.mean(axis=0)) < 1e-2))


STANDARDIZE_VARIANTS = (
    Variant("unbiased_variance", "the variance seems to divide by N - 1; standardize uses the biased variance "
            "(divide by N, np.var's default), as BN does.", lambda case: _standardized(case, ddof=1)),
    Variant("eps_outside_sqrt", "eps seems to be added outside the square root; divide by sqrt(var + eps).",
            lambda case: _standardized(case, denominator="sqrt(var)+eps")),
    Variant("no_eps", "eps seems to be missing; divide by sqrt(var + eps) so that a (nearly) constant feature "
            "does not blow up.", lambda case: _standardized(case, denominator="sqrt(var)")),
    Variant("wrong_axis", "the statistics seem to be taken over each row (axis=1); standardise each feature, "
            "i.e. each column, over the N rows (axis=0).", lambda case: _standardized(case, axis=1)),
    Variant("naive_variance", "on data whose mean is 10^4 times its spread, the variance seems to be computed as "
            "E[x^2] - E[x]^2, which cancels catastrophically in float32; subtract the mean first.",
            matches=_naive_variance_matches),
)


# standardize's (rtol, atol). float64: any summation order agrees to ~1e-14, and 1e-7 still
# separates the eps variants (relative effect >= 5e-6) tenfold. float32: ~1e-6 from the truth,
# 1e-4 is 100x.
STANDARDIZE_TOLERANCE = DtypeTolerance(float64=(1e-7, 1e-9), float32=(1e-4, 1e-4))
# float32 inputs of size 1e4 carry rounding errors of ~5e-4, i.e. ~5e-4 standard deviations;
# correct float32 two-pass code errs by up to ~4e-3 on such data.
STANDARDIZE_TOL_LARGE_OFFSET = (1e-3, 3e-2)


def _standardize_tolerance(case: Mapping[str, Any]) -> tuple[float, float]:
    return STANDARDIZE_TOL_LARGE_OFFSET if case.get("large_offset") else STANDARDIZE_TOLERANCE.of(case)


def _judge_standardize(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    where = f"standardize ({case['label']})"
    mutated = unchanged(case, outputs, ["x"])
    if mutated:
        return fail(f"{where}: {mutated}", "mutates_input")
    out, verdict = array_output(outputs, "out", where)
    if verdict is not None:
        return verdict
    x = np.asarray(case["x"])
    if out.dtype != x.dtype:
        return fail(f"{where}: the output is {out.dtype} but x is {x.dtype}; keep the input's dtype.",
                    "dtype_changed")
    expected = cpu.standardize(x.astype(np.float64), eps=float(case["eps"]))
    return diagnose(where, case, outputs, {"out": expected}, _standardize_tolerance(case), STANDARDIZE_VARIANTS)


STANDARDIZE = part_pair(ASSIGNMENT, "standardize", target="standardize", points=(2.0, 1.0),
                        descriptions=(STANDARDIZE_COVERS, STANDARDIZE_HIDDEN_COVERS),
                        cases=(_standardize_cases, _standardize_hidden_cases), run=_run_standardize,
                        judge=with_side_properties(_judge_standardize, "standardize", ["out"], "x", ["x"]))


# ---------------------------------------------------------------------------------------------
# whiten
# ---------------------------------------------------------------------------------------------


def _whiten_case(label: str, method: str, N: int, D: int, seed: int, dtype: type = np.float64,
                 eps: float = 1e-5, constant_feature: bool = False) -> dict[str, Any]:
    x = correlated_data(N, D, seed, dtype, constant_feature=constant_feature)
    case = {"label": label, "x": x, "method": method, "eps": eps}
    if constant_feature:
        case["degenerate"] = 1
    return case


def _visible_whiten_cases(method: str, seed: int, smallest: dict[str, Any]) -> list[dict[str, Any]]:
    """The visible cases of one method (seeds ``seed``, ``seed + 1``, ``seed + 2``), ending
    with ``smallest``, the method's own small case."""
    return [
        _whiten_case(f"float64 x of shape (50, 4), method='{method}'", method, 50, 4, seed),
        _whiten_case(f"float32 x of shape (40, 5), method='{method}'", method, 40, 5, seed + 1, np.float32),
        # Smaller twins of the hidden categories (no surprises at grading).
        _whiten_case(f"float64 x of shape (20, 3) with a constant column, method='{method}'", method,
                     20, 3, seed + 2, constant_feature=True),
        smallest,
    ]


WHITEN_ZCA_COVERS = ("whiten(method='zca'): centring, x_white = (x - mean) @ W, symmetric W, cov(x_white) = I, "
                     "agreement with bncourse; a constant column, D = 1, eps = 1e-2")


def _zca_cases() -> list[dict[str, Any]]:
    return _visible_whiten_cases("zca", 11, _whiten_case("float64 x of shape (15, 1), method='zca', eps=1e-2",
                                                         "zca", 15, 1, 14, eps=1e-2))


WHITEN_PCA_COVERS = ("whiten(method='pca'): centring, cov(x_white) = I, principal axes in decreasing order, "
                     "agreement with bncourse up to signs; a constant column, N = 4")


def _pca_cases() -> list[dict[str, Any]]:
    return _visible_whiten_cases("pca", 21, _whiten_case("float64 x of shape (4, 2), method='pca'", "pca",
                                                         4, 2, 24))


WHITEN_HIDDEN_COVERS = ("whiten: D = 1, N = 3, D = 12, float32, a constant column, eps = 1e-2; input unchanged, "
                        "dtype kept")


def _whiten_hidden_cases() -> list[dict[str, Any]]:
    # The constant-column cases come first: there a missing eps shows as inf/NaN and is named.
    return [
        _whiten_case("float64 x of shape (25, 3) with a constant column, method='zca'", "zca", 25, 3, 35,
                     constant_feature=True),
        _whiten_case("float64 x of shape (25, 3) with a constant column, method='pca'", "pca", 25, 3, 36,
                     constant_feature=True),
        _whiten_case("float64 x of shape (200, 12), method='zca'", "zca", 200, 12, 33),
        _whiten_case("float32 x of shape (300, 8), method='pca'", "pca", 300, 8, 34, np.float32),
        _whiten_case("float64 x of shape (20, 3), method='zca', eps=1e-2", "zca", 20, 3, 37, eps=1e-2),
        _whiten_case("float64 x of shape (3, 2), method='pca'", "pca", 3, 2, 32),
        _whiten_case("float64 x of shape (30, 1), method='zca'", "zca", 30, 1, 31),
    ]


def _run_whiten(whiten: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    x = np.array(case["x"])
    result = whiten(x, method=str(case["method"]), eps=case["eps"])
    if not isinstance(result, tuple | list) or len(result) != 3:
        raise UnusableResultError(f"whiten should return a tuple (x_white, W, mean), got {type(result).__name__}")
    x_white, W, mean = result
    return {"x_white": as_array(x_white), "W": as_array(W), "mean": as_array(mean), "after_x": x}


def _reference_whitening(x: np.ndarray, method: str, eps: float, ddof: int = 0, centre: bool = True,
                         sqrt_rule: str = "sqrt(l+eps)") -> np.ndarray:
    """W as bncourse.cpu.whiten builds it, with the pieces a mistake may change (float64)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0) if centre else x
    cov = centred.T @ centred / (x.shape[0] - ddof)
    lam, U = np.linalg.eigh(cov)
    lam, U = np.clip(lam[::-1], 0.0, None), U[:, ::-1]
    # A mistaken rule on a constant column divides by 0: inf, then 0 * inf = nan in W, which is
    # what that mistake gives; no warning (in a notebook, stderr output zeroes nbgrader's cell).
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = {"sqrt(l+eps)": 1 / np.sqrt(lam + eps), "sqrt(l)+eps": 1 / (np.sqrt(lam) + eps),
                 "sqrt(l)": 1 / np.sqrt(lam)}[sqrt_rule]
        W = U * scale
        return W @ U.T if method == "zca" else W


def _align_signs(W: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Flip the columns of W whose direction opposes the reference's (PCA's sign convention)."""
    signs = np.sign(np.sum(W * reference, axis=0))
    return W * np.where(signs == 0, 1.0, signs)


def _close(a: np.ndarray, b: np.ndarray, tol: tuple[float, float]) -> bool:
    return a.shape == b.shape and bool(np.all(np.isfinite(a))) and compare("", a, b, *tol) is None


# whiten's (rtol, atol). float64: eigh-based, SVD-based and np.cov-based solutions agree with
# the reference to ~1e-12 (eigenvalue gaps >= 0.3, condition number 80); 1e-6 leaves room and
# still sees eps (effect 1e-4 relative). float32: rounding perturbs eigenvectors by
# ~1e-7 x 4 / gap, i.e. ~1e-5 after whitening; 1e-3 is a 100x margin, and N - 1 (>= 1/N = 2.5 %)
# still shows.
WHITEN_TOLERANCE = DtypeTolerance(float64=(1e-6, 1e-8), float32=(1e-3, 1e-3))


@dataclass(frozen=True)
class _Whitened:
    """One whiten case and what came back, in float64, for the property checks below."""

    where: str
    method: str
    eps: float
    x: np.ndarray  # float64
    got: dict[str, np.ndarray]  # x_white, W, mean (float64, shapes checked)
    tol: tuple[float, float]
    degenerate: bool

    def reference(self, method: str | None = None, **mistake: Any) -> np.ndarray:
        return _reference_whitening(self.x, method or self.method, self.eps, **mistake)

    def matches(self, W: np.ndarray) -> bool:
        """Whether the W that came back is ``W`` (up to each axis's sign for PCA)."""
        got = _align_signs(self.got["W"], W) if self.method == "pca" else self.got["W"]
        return _close(got, W, self.tol)


def _read_whiten(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> _Whitened | Verdict:
    """The outputs as float64 arrays of the right shapes and dtype, or the failing verdict."""
    x = np.asarray(case["x"])
    N, D = x.shape
    where = f"whiten ({case['label']})"
    mutated = unchanged(case, outputs, ["x"])
    if mutated:
        return fail(f"{where}: {mutated}", "mutates_input")
    got = {}
    for key, shape in (("x_white", (N, D)), ("W", (D, D)), ("mean", (D,))):
        array, verdict = array_output(outputs, key, where)
        if verdict is not None:
            return verdict
        if array.shape != shape:
            return fail(f"{where}: `{key}` has shape {array.shape}, expected {shape}.")
        if array.dtype != x.dtype:
            return fail(f"{where}: `{key}` is {array.dtype} but x is {x.dtype}; keep the input's dtype.",
                        "dtype_changed")
        got[key] = array.astype(np.float64)
    return _Whitened(where, str(case["method"]), float(case["eps"]), x.astype(np.float64), got,
                     WHITEN_TOLERANCE.of(case), bool(case.get("degenerate")))


def _check_finite(w: _Whitened) -> Verdict | None:
    if all(np.all(np.isfinite(a)) for a in w.got.values()):
        return None
    if w.degenerate:
        return fail(f"{w.where}: non-finite values: a constant feature has covariance eigenvalue 0, so eps is "
                    "needed in 1 / sqrt(lambda + eps).", "no_eps")
    return fail(f"{w.where}: the outputs hold inf or NaN.")


def _check_mean(w: _Whitened) -> Verdict | None:
    problem = compare("mean", w.got["mean"], w.x.mean(axis=0), *w.tol)
    if problem is None:
        return None
    uncentred = w.reference(centre=False)
    if np.allclose(w.got["mean"], 0.0) or _close(_align_signs(w.got["W"], uncentred), uncentred, w.tol):
        return fail(f"{w.where}: the data do not seem to be centred; subtract the feature means before "
                    "computing the covariance, and return them as `mean`.", "no_centering")
    return fail(f"{w.where}: {problem}")


def _check_product(w: _Whitened) -> Verdict | None:
    """x_white must be the centred data times the W returned."""
    centred = w.x - w.got["mean"]
    if _close(w.got["x_white"], centred @ w.got["W"], w.tol):
        return None
    if _close(w.got["x_white"], centred @ w.got["W"].T, w.tol):
        return fail(f"{w.where}: x_white equals (x - mean) @ W.T, not (x - mean) @ W: the W you return is the "
                    "transpose of the one you apply.", "w_transposed")
    if _close(w.got["x_white"], w.x @ w.got["W"], w.tol):
        return fail(f"{w.where}: x_white equals x @ W; apply W to the centred data, (x - mean) @ W.",
                    "no_centering")
    return fail(f"{w.where}: x_white is not (x - mean) @ W for the mean and W you return.")


def _check_symmetry(w: _Whitened) -> Verdict | None:
    """ZCA's W is the symmetric Sigma^(-1/2); PCA's is not."""
    symmetric = _close(w.got["W"], w.got["W"].T, w.tol)
    if w.method == "zca" and not symmetric:
        W_pca = w.reference("pca")
        if _close(_align_signs(w.got["W"], W_pca), W_pca, w.tol):
            return fail(f"{w.where}: W is PCA's U diag(1/sqrt(lambda + eps)), but ZCA was asked: rotate back, "
                        "W = U diag(1/sqrt(lambda + eps)) U^T, which is symmetric.", "pca_instead_of_zca")
        return fail(f"{w.where}: ZCA's W = Sigma^(-1/2) is symmetric, but yours is not.")
    if w.method == "pca" and w.x.shape[1] > 1 and symmetric and _close(w.got["W"], w.reference("zca"), w.tol):
        return fail(f"{w.where}: W is ZCA's (symmetric) one, but PCA was asked: W = U diag(1/sqrt(lambda + eps)) "
                    "with the principal axes U as columns.", "zca_instead_of_pca")
    return None


def _check_identity_covariance(w: _Whitened) -> Verdict | None:
    """cov(x_white) = I (1/N normalisation), up to what eps legitimately moves it."""
    if w.degenerate:
        return None
    N, D = w.x.shape
    cov = w.got["x_white"].T @ w.got["x_white"] / N
    # The exact covariance is U diag(lambda / (lambda + eps)) U^T (its diagonal for PCA): I up to
    # eps / (lambda + eps) for the smallest eigenvalue lambda of these data, which is tiny for
    # most samples but large for a few rows (N = 3) where the smallest sample variance can be
    # close to eps. Ten times that, plus the float tolerance; _check_reference then judges W
    # precisely (and names the eps mistakes this margin lets through).
    centred = w.x - w.x.mean(axis=0)
    lam = np.clip(np.linalg.eigvalsh(centred.T @ centred / N), 0.0, None)
    identity_atol = 10 * float(np.max(w.eps / (lam + w.eps))) + 10 * w.tol[0]
    if np.max(np.abs(cov - np.eye(D))) <= identity_atol:
        return None
    if np.max(np.abs(cov - (N - 1) / N * np.eye(D))) <= identity_atol:
        return fail(f"{w.where}: cov(x_white) = (N-1)/N I: the covariance was divided by N - 1; the course's "
                    "whiten divides by N (as BN's batch variance does).", "unbiased_covariance")
    i, j = np.unravel_index(np.argmax(np.abs(cov - np.eye(D))), cov.shape)
    return fail(f"{w.where}: the covariance of x_white (divided by N) is not the identity: entry ({i}, {j}) "
                f"is {cov[i, j]:.4g}.")


# Known mistakes in W once the properties above hold: (the W they give, mistake id, sentence).
def _w_mistakes(w: _Whitened) -> list[tuple[np.ndarray, str, str]]:
    return [
        (w.reference(sqrt_rule="sqrt(l)+eps"), "eps_outside_sqrt",
         "eps seems to be added outside the square root; use 1 / sqrt(lambda + eps)."),
        (w.reference(sqrt_rule="sqrt(l)"), "no_eps", "eps seems to be missing; use 1 / sqrt(lambda + eps)."),
    ]


def _check_reference(w: _Whitened) -> Verdict | None:
    """Agreement with the reference, up to the sign of each principal axis for PCA."""
    W_ref = w.reference()
    if w.matches(W_ref):
        return None
    if w.method == "pca" and _close(_align_signs(w.got["W"], W_ref[:, ::-1]), W_ref[:, ::-1], w.tol):
        return fail(f"{w.where}: the principal axes are in increasing order of variance (np.linalg.eigh's order); "
                    "PCA puts the largest variance first: reverse the eigenvalues and eigenvectors.",
                    "pca_ascending_order")
    wide = (10 * w.tol[0], 10 * w.tol[1])
    for variant, mistake, sentence in _w_mistakes(w):
        if not _close(variant, W_ref, wide) and w.matches(variant):
            return fail(f"{w.where}: {sentence}", mistake)
    if w.matches(w.reference(ddof=1)):
        return fail(f"{w.where}: the covariance seems to be divided by N - 1; divide by N.", "unbiased_covariance")
    W_got = _align_signs(w.got["W"], W_ref) if w.method == "pca" else w.got["W"]
    return fail(f"{w.where}: {compare('W', W_got, W_ref, *w.tol)} (compared with bncourse.cpu.whiten"
                + (", after matching the sign of each principal axis)." if w.method == "pca" else ")."))


# The properties of whiten's outputs, in the order the message names the first that fails.
_WHITEN_PROPERTIES = (_check_finite, _check_mean, _check_product, _check_symmetry,
                      _check_identity_covariance, _check_reference)


def _judge_whiten_values(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    whitened = _read_whiten(case, outputs)
    return whitened if isinstance(whitened, Verdict) else first_failure(_WHITEN_PROPERTIES, whitened)


# The input unchanged and the dtype kept are side properties (core.with_side_properties).
_judge_whiten = with_side_properties(_judge_whiten_values, "whiten", ["x_white", "W", "mean"],
                                     "x", ["x"])


WHITEN_ZCA = part(ASSIGNMENT, "whiten_zca", target="whiten", points=2.0, description=WHITEN_ZCA_COVERS,
                  cases=_zca_cases, run=_run_whiten, judge=_judge_whiten)

WHITEN_PCA = part(ASSIGNMENT, "whiten_pca", target="whiten", points=2.0, description=WHITEN_PCA_COVERS,
                  cases=_pca_cases, run=_run_whiten, judge=_judge_whiten)

WHITEN_HIDDEN = part(ASSIGNMENT, "whiten_hidden", target="whiten", points=2.0, hidden=True,
                     description=WHITEN_HIDDEN_COVERS, cases=_whiten_hidden_cases, run=_run_whiten, judge=_judge_whiten)


# ---------------------------------------------------------------------------------------------
# Flop counts
# ---------------------------------------------------------------------------------------------

# (N, d) pairs from d >> N to N >> d, so that every term of the counts dominates somewhere;
# the cubic terms come first because that is where a missing piece shows most.
_SIZES = [(200, 4_000), (1_000, 1_000), (10_000, 100), (100_000, 16)]
# The rules fix every leading term; 2 % leaves room for lower-order bookkeeping (sums of n
# numbers counted as n - 1, eps added or not), which is below 1 % on every size above.
FLOPS_RTOL = 0.02


def _flops_cases(method: str | None) -> list[dict[str, Any]]:
    cases = []
    for N, d in _SIZES:
        for m in ([method] if method else ["zca", "pca"]):
            label = f"N={N}, d={d}" + (f", method={m!r}" if m != "-" else "")
            cases.append({"label": label, "N": N, "d": d, "method": m})
    return cases


def _run_standardize_flops(count: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"flops": np.asarray(float(count(int(case["N"]), int(case["d"]))))}


def _run_whiten_flops(count: Any, case: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"flops": np.asarray(float(count(int(case["N"]), int(case["d"]), method=str(case["method"]))))}


def _judge_flops(case: dict[str, Any], outputs: dict[str, np.ndarray]) -> Verdict:
    N, d = int(case["N"]), int(case["d"])
    whitening = case["method"] != "-"
    name = "whiten_flops" if whitening else "standardize_flops"
    where = f"{name}({case['label']})"
    value, verdict = array_output(outputs, "flops", where)
    if verdict is not None:
        return verdict
    if value.size != 1 or not np.isfinite(value).all():
        return fail(f"{where}: expected one finite number, got {value!r}.")
    got = float(value.reshape(()))
    if not whitening:
        expected = flops.standardize_flops(N, d)
        variants = {}
    else:
        method = str(case["method"])
        expected = flops.whiten_flops(N, d, method)
        variants = {
            "flops_matmul_once": (flops.whiten_flops(N, d, method, matmul_cost=1),
                                  "a matrix product (a, b) @ (b, c) seems to be counted as abc flops; count 2abc "
                                  "(a multiply and an add per term)"),
            "flops_no_eigh": (flops.whiten_flops(N, d, method, eigh_cost=0),
                              "the eigendecomposition's 9 d^3 flops seem to be missing"),
            "flops_wrong_method": (flops.whiten_flops(N, d, "pca" if method == "zca" else "zca"),
                                   "the count is the one of the other method: ZCA costs PCA's flops plus the "
                                   "2 d^3 of W = (U * s) @ U^T"),
        }
    if abs(got - expected) <= FLOPS_RTOL * expected:
        return ok()
    for mistake, (wrong, sentence) in variants.items():
        if abs(wrong - expected) > 3 * FLOPS_RTOL * expected and abs(got - wrong) <= FLOPS_RTOL * wrong:
            return fail(f"{where} = {got:.4g}: {sentence}.", mistake)
    return fail(f"{where} = {got:.4g}, expected {expected:.4g} (within {FLOPS_RTOL:.0%}) by the counting rules.")


STANDARDIZE_FLOPS_COVERS = "standardize_flops(N, d) follows the counting rules, from N >> d to d >> N"

STANDARDIZE_FLOPS = part(ASSIGNMENT, "standardize_flops", target="standardize_flops", points=1.0,
                         description=STANDARDIZE_FLOPS_COVERS, cases=lambda: _flops_cases("-"),
                         run=_run_standardize_flops, judge=_judge_flops)

WHITEN_FLOPS_COVERS = "whiten_flops(N, d, method) follows the counting rules, from N >> d to d >> N"

WHITEN_FLOPS = part(ASSIGNMENT, "whiten_flops", target="whiten_flops", points=1.0, description=WHITEN_FLOPS_COVERS,
                    cases=lambda: _flops_cases(None), run=_run_whiten_flops, judge=_judge_flops)


PARTS = [*STANDARDIZE, WHITEN_ZCA, WHITEN_PCA, WHITEN_HIDDEN, STANDARDIZE_FLOPS, WHITEN_FLOPS]
