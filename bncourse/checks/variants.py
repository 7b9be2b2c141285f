"""The catalogue of known mistakes: what a student who made each one would return.

Each entry is a ``Variant`` (``bncourse.checks.core``): an id, one sentence for the student,
and a small function computing, in float64 from a test case, the outputs that mistake gives.
``core.diagnose`` tries a part's catalogue in order when a result is wrong, so adding a named
mistake is one entry here plus one test in ``tests/checks/``.

Soundness rules (a diagnosis must never be a guess):
- a variant is only tried when it differs from the right answer by more than ten times the
  tolerance on this case (so "no eps" is only named on a case whose variance is small enough
  for eps to matter);
- the student's result must match the variant within the same tolerance as the right answer;
- variants that cannot be computed exactly (cancellation in E[x^2] - E[x]^2 depends on the
  order of the floating-point operations) use a ``matches`` predicate that tests a property
  only that mistake has, on the cases built to expose it.

Check modules pass these tuples to ``core.judge_outputs``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bncourse.checks.core import Arrays, Case, Variant

# --------------------------------------------------------------------------- helpers


def channel_axes(x: np.ndarray) -> tuple[int, ...]:
    """Axes a per-channel statistic reduces over: all but axis 1."""
    return (0,) + tuple(range(2, x.ndim))


def per_channel(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Reshape a (C,) parameter so it broadcasts against x of shape (N, C, *spatial)."""
    return np.asarray(p, dtype=np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))


def _f64(case: Case, *names: str) -> list[np.ndarray]:
    return [np.asarray(case[name], dtype=np.float64) for name in names]


def _denominator(var: np.ndarray, eps: float, kind: str) -> np.ndarray:
    """What a variant divides by: the right sqrt(var + eps) or a mistaken form of it."""
    return {
        "sqrt(var+eps)": lambda: np.sqrt(var + eps),
        "sqrt(var)+eps": lambda: np.sqrt(var) + eps,
        "sqrt(var)": lambda: np.sqrt(var),
        "var+eps": lambda: var + eps,
        "sqrt(std+eps)": lambda: np.sqrt(np.sqrt(var) + eps),
    }[kind]()


def _normalise(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
    axes: tuple[int, ...] | None = None, ddof: int = 0, denominator: str = "sqrt(var+eps)",
    var_axes: tuple[int, ...] | None = None, centre: bool = True,
) -> np.ndarray:
    """BN forward in float64 with the pieces a variant may get wrong.

    ``axes`` are those of both statistics; ``var_axes``, when given, those of the variance
    alone (``None`` in a tuple's place means every axis); ``centre=False`` keeps the mean in x.
    """
    axes = channel_axes(x) if axes is None else axes
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes if var_axes is None else var_axes, keepdims=True, ddof=ddof)
    std = _denominator(var, eps, denominator)
    centred = x - mean if centre else x
    return per_channel(gamma, x) * centred / std + per_channel(beta, x)


def _forward_case(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    x, gamma, beta = _f64(case, "x", "gamma", "beta")
    return x, gamma, beta, float(case["eps"])


# --------------------------------------------------------------------------- forward


def forward_unbiased_variance(case: Case) -> Arrays:
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, eps, ddof=1)}


def forward_eps_outside_sqrt(case: Case) -> Arrays:
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, eps, denominator="sqrt(var)+eps")}


def forward_sqrt_of_std(case: Case) -> Arrays:
    """sqrt(std + eps): the square root taken twice, once for std and once more."""
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, eps, denominator="sqrt(std+eps)")}


SQRT_OF_STD = (
    "the denominator seems to be sqrt(std + eps), the square root taken twice; divide by "
    "sqrt(var + eps), where var is the variance, not the standard deviation."
)
EPS_IGNORED = (
    "the eps argument seems to be ignored (1e-5 used whatever eps is passed); use the "
    "eps the function receives."
)


def forward_no_eps(case: Case) -> Arrays:
    x, gamma, beta, eps = _forward_case(case)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"out": _normalise(x, gamma, beta, eps, denominator="sqrt(var)")}


def forward_per_sample(case: Case) -> Arrays:
    """Statistics over the features of each example (axis 1 and up) instead of the batch."""
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, eps, axes=tuple(range(1, x.ndim)))}


def forward_batch_axis_only(case: Case) -> Arrays:
    """(N, C, H, W): statistics over N only, one per (c, h, w) position."""
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, eps, axes=(0,))}


def forward_nchw_reshape(case: Case) -> Arrays:
    """x.reshape(-1, C) without moving the channel axis last, normalised, reshaped back."""
    x, gamma, beta, eps = _forward_case(case)
    rows = x.reshape(-1, x.shape[1])
    return {"out": _normalise(rows, gamma, beta, eps).reshape(x.shape)}


def forward_whole_array(case: Case) -> Arrays:
    """np.mean(x) and np.var(x) with no axis: one mean and one variance for everything."""
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, eps, axes=tuple(range(x.ndim)))}


def forward_var_whole_array(case: Case) -> Arrays:
    """The mean per channel, but np.var(x) with no axis."""
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, eps, var_axes=tuple(range(x.ndim)))}


def forward_per_instance(case: Case) -> Arrays:
    """(N, C, H, W): statistics over the spatial axes of each example and channel (instance
    normalisation), one mean per (n, c)."""
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, eps, axes=tuple(range(2, x.ndim)))}


def forward_channels_last_not_restored(case: Case) -> Arrays:
    """Channels moved last and flattened to (-1, C) correctly, but the result reshaped
    straight to x.shape without moving the channel axis back."""
    x, gamma, beta, eps = _forward_case(case)
    rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    return {"out": _normalise(rows, gamma, beta, eps).reshape(x.shape)}


def forward_no_sqrt(case: Case) -> Arrays:
    """Divides by var + eps instead of its square root."""
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, eps, denominator="var+eps")}


def forward_not_centred(case: Case) -> Arrays:
    """x / sqrt(var + eps): the mean is never subtracted."""
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, eps, centre=False)}


def forward_default_eps(case: Case) -> Arrays:
    """The eps argument ignored: 1e-5 written in the formula."""
    x, gamma, beta, _ = _forward_case(case)
    return {"out": _normalise(x, gamma, beta, DEFAULT_EPS)}


DEFAULT_EPS = 1e-5


def _eps_not_default(case: Case) -> bool:
    return float(case["eps"]) != DEFAULT_EPS


def forward_gamma_missing(case: Case) -> Arrays:
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, np.ones_like(gamma), beta, eps)}


def forward_beta_missing(case: Case) -> Arrays:
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, gamma, np.zeros_like(beta), eps)}


def forward_gamma_beta_missing(case: Case) -> Arrays:
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, np.ones_like(gamma), np.zeros_like(beta), eps)}


def forward_gamma_beta_swapped(case: Case) -> Arrays:
    x, gamma, beta, eps = _forward_case(case)
    return {"out": _normalise(x, beta, gamma, eps)}


def naive_variance_matches(case: Case, outputs: Mapping[str, Any], expected: Any) -> bool:
    """E[x^2] - E[x]^2 on a float32 case whose mean is 1e4 x its std.

    The cancellation leaves a variance that is garbage (a few multiples of float32's spacing
    at 1e8, i.e. 8, or zero, or negative) while the mean is right. So, only on cases marked
    ``large_offset``: the output is non-finite somewhere, or some channel is still an exact
    affine function of x (correlation above 0.999: only the statistics are wrong) whose
    spread is off by more than a factor 2 (the other statistics mistakes change it by at
    most a few per cent on these cases).
    """
    if not case.get("large_offset"):
        return False
    out = np.asarray(outputs.get("out"), dtype=np.float64)
    x = np.asarray(case["x"], dtype=np.float64)
    want = np.asarray(expected["out"], dtype=np.float64)
    if out.shape != x.shape:
        return False
    if not np.isfinite(out).all():
        return True
    for c in range(x.shape[1]):
        xc, oc, wc = x[:, c].ravel(), out[:, c].ravel(), want[:, c].ravel()
        if xc.std() == 0 or oc.std() == 0 or wc.std() == 0:
            continue
        affine = abs(np.corrcoef(xc, oc)[0, 1]) > 0.999
        ratio = oc.std() / wc.std()
        if affine and not 0.5 <= ratio <= 2.0:
            return True
    return False


def _is_spatial(case: Case) -> bool:
    return np.asarray(case["x"]).ndim > 2


FORWARD_VARIANTS: tuple[Variant, ...] = (
    Variant(
        "unbiased_variance",
        "the variance seems to divide by m - 1 (unbiased); BN's batch variance is the biased "
        "one, dividing by m (np.var's default, ddof=0).",
        forward_unbiased_variance,
    ),
    Variant(
        "eps_outside_sqrt",
        "eps seems to be added outside the square root; the denominator is "
        "sqrt(var + eps), not sqrt(var) + eps.",
        forward_eps_outside_sqrt,
    ),
    Variant("sqrt_of_std", SQRT_OF_STD, forward_sqrt_of_std),
    Variant(
        "no_eps",
        "eps seems to be missing; divide by sqrt(var + eps) so that a channel with (almost) "
        "constant values does not blow up.",
        forward_no_eps,
    ),
    Variant(
        "nchw_reshape",
        "the (N, C, H, W) input seems to be reshaped to (-1, C) without first moving the "
        "channel axis last, which mixes channels; transpose to (N, H, W, C) before reshaping "
        "(or reduce over axes (0, 2, 3) directly).",
        forward_nchw_reshape,
        applies=_is_spatial,
    ),
    Variant(
        "wrong_axis",
        "the statistics seem to be taken per example (over the features) instead of per "
        "channel over the batch; reduce over axis 0 (and the spatial axes 2, 3).",
        forward_per_sample,
    ),
    Variant(
        "wrong_axis",
        "the statistics seem to be taken over the batch axis only, one per (c, h, w) "
        "position; a convolutional channel shares one mean and variance over N, H and W.",
        forward_batch_axis_only,
        applies=_is_spatial,
    ),
    Variant(
        "wrong_axis",
        "the statistics seem to be taken over each example's spatial positions, one mean per "
        "(n, c) (instance normalisation); BN shares one mean and variance per channel over "
        "N, H and W: reduce over axes (0, 2, 3).",
        forward_per_instance,
        applies=_is_spatial,
    ),
    Variant(
        "wrong_axis",
        "the mean and variance seem to be taken over the whole array (np.mean(x), np.var(x) "
        "with no axis); BN computes one mean and one variance per channel: axis=0 for (N, D), "
        "axes (0, 2, 3) for (N, C, H, W).",
        forward_whole_array,
    ),
    Variant(
        "wrong_axis",
        "the mean is per channel but the variance seems to be taken over the whole array "
        "(np.var(x) with no axis); pass the same axes (and keepdims=True) to the variance.",
        forward_var_whole_array,
    ),
    Variant(
        "nchw_reshape",
        "the channels seem to be moved last and flattened correctly, but the result is "
        "reshaped straight back to (N, C, H, W), which scrambles it; reshape to (N, H, W, C) "
        "first and then move the channel axis back to position 1.",
        forward_channels_last_not_restored,
        applies=_is_spatial,
    ),
    Variant(
        "no_sqrt",
        "the output seems to divide by var + eps; x_hat divides by the standard deviation, "
        "sqrt(var + eps).",
        forward_no_sqrt,
    ),
    Variant(
        "not_centred",
        "the batch mean does not seem to be subtracted; x_hat = (x - mean) / sqrt(var + eps).",
        forward_not_centred,
    ),
    Variant(
        "eps_ignored",
        EPS_IGNORED,
        forward_default_eps,
        applies=_eps_not_default,
    ),
    Variant(
        "gamma_beta_swapped",
        "gamma and beta seem to be swapped; the output is gamma * x_hat + beta.",
        forward_gamma_beta_swapped,
    ),
    Variant(
        "gamma_beta_missing",
        "gamma and beta seem to be ignored; the output is gamma * x_hat + beta, not x_hat.",
        forward_gamma_beta_missing,
    ),
    Variant(
        "gamma_beta_missing",
        "gamma seems to be ignored; the output is gamma * x_hat + beta.",
        forward_gamma_missing,
    ),
    Variant(
        "gamma_beta_missing",
        "beta seems to be ignored; the output is gamma * x_hat + beta.",
        forward_beta_missing,
    ),
    Variant(
        "naive_variance",
        "on data whose mean is 10^4 times its spread, the variance seems to be computed as "
        "E[x^2] - E[x]^2, which cancels catastrophically in float32; subtract the mean first "
        "and average the squared deviations.",
        matches=naive_variance_matches,
    ),
)


# --------------------------------------------------------------------------- backward


def _backward_pieces(case: Case) -> tuple[np.ndarray, ...]:
    x, gamma, dout = _f64(case, "x", "gamma", "dout")
    axes = channel_axes(x)
    mean = x.mean(axis=axes, keepdims=True)
    std = np.sqrt(x.var(axis=axes, keepdims=True) + float(case["eps"]))
    x_hat = (x - mean) / std
    return x_hat, std, per_channel(gamma, x), dout, axes


def backward_drops_mean_var_terms(case: Case) -> Arrays:
    """Mean and variance treated as constants: dx = gamma / std * dout."""
    _, std, gamma, dout, _ = _backward_pieces(case)
    return {"dx": gamma / std * dout}


def backward_drops_var_term(case: Case) -> Arrays:
    """The path through the mean kept, the one through the variance dropped."""
    _, std, gamma, dout, axes = _backward_pieces(case)
    return {"dx": gamma / std * (dout - dout.mean(axis=axes, keepdims=True))}


def backward_no_1_over_m(case: Case) -> Arrays:
    """The compact formula with sums where it has means (the 1/m factor lost)."""
    x_hat, std, gamma, dout, axes = _backward_pieces(case)
    g = gamma * dout
    return {"dx": (g - g.sum(axis=axes, keepdims=True)
                   - x_hat * (g * x_hat).sum(axis=axes, keepdims=True)) / std}


def backward_m_is_n(case: Case) -> Arrays:
    """The compact formula with m = N (the batch size) where a channel has N * H * W values."""
    x_hat, std, gamma, dout, axes = _backward_pieces(case)
    g, n = gamma * dout, dout.shape[0]
    return {"dx": (g - g.sum(axis=axes, keepdims=True) / n
                   - x_hat * (g * x_hat).sum(axis=axes, keepdims=True) / n) / std}


def backward_overwrites_direct_path(case: Case) -> Arrays:
    """Staged backward with ``dcentred = <variance path>`` where it should add (``+=``) to the
    direct path dx_hat / std: only the variance path survives (its mean term is zero)."""
    x_hat, std, gamma, dout, axes = _backward_pieces(case)
    g = gamma * dout
    return {"dx": -x_hat * (g * x_hat).mean(axis=axes, keepdims=True) / std}


def backward_overwrites_with_mean_path(case: Case) -> Arrays:
    """Staged backward with ``dx = dmu / m`` where it should add the mean path to dcentred."""
    _, std, gamma, dout, axes = _backward_pieces(case)
    g = gamma * dout
    return {"dx": np.broadcast_to(-g.mean(axis=axes, keepdims=True) / std, dout.shape)}


STAGED_OVERWRITES = (
    "dx seems to keep only one of the paths that reach a node; where a node feeds two later "
    "nodes (x - mu feeds both x_hat and the variance; x feeds both x - mu and mu) the "
    "gradients of the paths add up: accumulate with `+=` (or `a = a + ...`), not `=`."
)


def backward_dx_ignores_gamma(case: Case) -> Arrays:
    """dx computed from dout instead of dx_hat = gamma * dout."""
    x_hat, std, _, dout, axes = _backward_pieces(case)
    return {"dx": (dout - dout.mean(axis=axes, keepdims=True)
                   - x_hat * (dout * x_hat).mean(axis=axes, keepdims=True)) / std}


def backward_params_averaged(case: Case) -> Arrays:
    """dgamma and dbeta averaged over the batch instead of summed."""
    x_hat, _, _, dout, axes = _backward_pieces(case)
    return {"dgamma": (dout * x_hat).mean(axis=axes), "dbeta": dout.mean(axis=axes)}


def _shape(outputs: Mapping[str, Any], name: str) -> tuple[int, ...] | None:
    value = outputs.get(name)
    return None if value is None else np.shape(value)


def backward_out_of_order(case: Case, outputs: Mapping[str, Any], expected: Any) -> bool:
    """The three gradients returned in another order: dx's shape is in another slot."""
    x_shape, channels = np.shape(case["x"]), (np.shape(case["x"])[1],)
    shapes = [_shape(outputs, name) for name in ("dx", "dgamma", "dbeta")]
    return shapes[0] == channels and x_shape in shapes[1:] and x_shape != channels


def backward_param_grad_axes(case: Case, outputs: Mapping[str, Any], expected: Any) -> bool:
    """dx has the right shape, but dgamma or dbeta is not one number per channel."""
    x_shape, channels = np.shape(case["x"]), (np.shape(case["x"])[1],)
    return _shape(outputs, "dx") == x_shape and any(
        _shape(outputs, name) not in (None, channels) for name in ("dgamma", "dbeta"))


def backward_dgamma_from_x(case: Case) -> Arrays:
    """dgamma summed from dout * x instead of dout * x_hat."""
    x, dout = _f64(case, "x", "dout")
    return {"dgamma": (dout * x).sum(axis=channel_axes(x))}


def backward_dgamma_dbeta_swapped(case: Case) -> Arrays:
    x_hat, _, _, dout, axes = _backward_pieces(case)
    return {"dgamma": dout.sum(axis=axes), "dbeta": (dout * x_hat).sum(axis=axes)}


BACKWARD_VARIANTS: tuple[Variant, ...] = (
    Variant(
        "backward_drops_mean_var_terms",
        "dx seems to treat the batch mean and variance as constants; both depend on every "
        "x_i, so dx has two more terms (through the mean and through the variance).",
        backward_drops_mean_var_terms,
    ),
    Variant(
        "backward_drops_mean_var_terms",
        "dx seems to drop the path through the batch variance; the variance depends on every "
        "x_i, so it adds a term proportional to x_hat * mean(dout * x_hat).",
        backward_drops_var_term,
    ),
    Variant(
        "dgamma_dbeta_swapped",
        "dgamma and dbeta seem to be swapped; dbeta sums dout, dgamma sums dout * x_hat.",
        backward_dgamma_dbeta_swapped,
    ),
    Variant(
        "dgamma_from_x",
        "dgamma seems to be computed from x; gamma multiplies the normalised x_hat, so "
        "dgamma = sum(dout * x_hat) over every axis except the channel axis.",
        backward_dgamma_from_x,
    ),
    Variant(
        "backward_missing_1_over_m",
        "dx seems to use sums where the formula has means (a factor 1/m lost): dx = "
        "(g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps) with g = gamma * dout, "
        "the means over the m values of a channel.",
        backward_no_1_over_m,
    ),
    Variant(
        "backward_m_is_n",
        "dx seems to divide by the batch size N where the formula has m, the number of values "
        "a channel has: m = N * H * W for an (N, C, H, W) input (x.size // C).",
        backward_m_is_n,
        applies=_is_spatial,
    ),
    Variant("staged_overwrites", STAGED_OVERWRITES, backward_overwrites_direct_path),
    Variant("staged_overwrites", STAGED_OVERWRITES, backward_overwrites_with_mean_path),
    Variant(
        "backward_dx_ignores_gamma",
        "dx seems to ignore gamma; the gradient reaching x_hat is gamma * dout, not dout.",
        backward_dx_ignores_gamma,
    ),
    Variant(
        "backward_params_averaged",
        "dgamma and dbeta seem to be averaged over the batch; they are sums over every "
        "example (and position): gamma and beta are used by all of them.",
        backward_params_averaged,
    ),
    Variant(
        "backward_out_of_order",
        "the gradients seem to come back in another order; return (dx, dgamma, dbeta).",
        matches=backward_out_of_order,
    ),
    Variant(
        "backward_param_grad_axes",
        "dgamma and dbeta should hold one number per channel, shape (C,): sum over every "
        "axis except the channel axis 1 (axis 0 for (N, D); axes 0, 2, 3 for (N, C, H, W)).",
        matches=backward_param_grad_axes,
    ),
)


# --------------------------------------------------------------------------- inference


def batch_var(x: np.ndarray, ddof: int) -> np.ndarray:
    """Per-channel variance of x (N, C, *spatial) in float64."""
    return np.asarray(x, dtype=np.float64).var(axis=channel_axes(np.asarray(x)), ddof=ddof)


def _running(case: Case, momentum_batch: float, ddof: int) -> Arrays:
    mean, var, x = _f64(case, "running_mean", "running_var", "x")
    keep = 1.0 - momentum_batch
    batch_mean = x.mean(axis=channel_axes(x))
    return {
        "new_mean": keep * mean + momentum_batch * batch_mean,
        "new_var": keep * var + momentum_batch * batch_var(x, ddof),
    }


def running_inverted_momentum(case: Case) -> Arrays:
    """new = momentum * old + (1 - momentum) * batch (Keras's convention, not PyTorch's)."""
    return _running(case, 1.0 - float(case["momentum"]), ddof=1)


def running_biased_var(case: Case) -> Arrays:
    return {"new_var": _running(case, float(case["momentum"]), ddof=0)["new_var"]}


def running_fed_std(case: Case) -> Arrays:
    """running_var fed the (unbiased) batch standard deviation instead of the variance."""
    _, var, x = _f64(case, "running_mean", "running_var", "x")
    momentum = float(case["momentum"])
    return {"new_var": (1 - momentum) * var + momentum * np.sqrt(batch_var(x, ddof=1))}


def running_swapped(case: Case) -> Arrays:
    right = _running(case, float(case["momentum"]), ddof=1)
    return {"new_mean": right["new_var"], "new_var": right["new_mean"]}


def bessel_with_n(x: np.ndarray) -> np.ndarray:
    """The biased per-channel variance times N / (N - 1): m taken as the batch size N
    instead of the N * H * W values a channel has."""
    n = np.shape(x)[0]
    return batch_var(x, ddof=0) * n / (n - 1)


def running_bessel_with_n(case: Case) -> Arrays:
    _, var, x = _f64(case, "running_mean", "running_var", "x")
    momentum = float(case["momentum"])
    return {"new_var": (1 - momentum) * var + momentum * bessel_with_n(x)}


BESSEL_WITH_N = (
    "the m / (m - 1) correction seems to use the batch size N for m; a channel of an "
    "(N, C, *spatial) batch has m = N * H * W values (x.size // C)."
)


RUNNING_VARIANTS: tuple[Variant, ...] = (
    Variant(
        "inverted_momentum",
        "the momentum seems inverted; in PyTorch's convention new = (1 - momentum) * old + "
        "momentum * batch statistic.",
        running_inverted_momentum,
    ),
    Variant(
        "biased_running_var",
        "the running variance seems to be fed the biased batch variance; the running "
        "estimate uses the unbiased one, m / (m - 1) times it.",
        running_biased_var,
    ),
    Variant(
        "running_var_fed_std",
        "running_var seems to be fed the batch standard deviation; it tracks the (unbiased) "
        "batch variance.",
        running_fed_std,
    ),
    Variant(
        "outputs_swapped",
        "new_mean and new_var seem to be swapped; return (new_mean, new_var).",
        running_swapped,
    ),
    Variant("bessel_with_n", BESSEL_WITH_N, running_bessel_with_n, applies=_is_spatial),
)


def population_biased(case: Case) -> Arrays:
    batches = np.asarray(case["batches"], dtype=np.float64)
    return {"var": np.mean([batch_var(b, ddof=0) for b in batches], axis=0)}


def population_averaged_std(case: Case) -> Arrays:
    """The batch standard deviations averaged, then squared (with the correction)."""
    batches = np.asarray(case["batches"], dtype=np.float64)
    m = batches[0].size // batches[0].shape[1]
    stds = [np.sqrt(batch_var(b, ddof=0)) for b in batches]
    return {"var": np.mean(stds, axis=0) ** 2 * m / (m - 1)}


def population_pooled(case: Case, ddof: int) -> Arrays:
    """The variance of all batches concatenated (it adds the spread of the batch means)."""
    batches = np.asarray(case["batches"], dtype=np.float64)
    return {"var": batch_var(np.concatenate(list(batches)), ddof=ddof)}


def population_bessel_with_n(case: Case) -> Arrays:
    batches = np.asarray(case["batches"], dtype=np.float64)
    return {"var": np.mean([bessel_with_n(b) for b in batches], axis=0)}


def population_m_is_batches(case: Case) -> Arrays:
    """The m / (m - 1) correction with m = the number of batches instead of the batch's size."""
    batches = np.asarray(case["batches"], dtype=np.float64)
    k = len(batches)
    return {"var": np.mean([batch_var(b, ddof=0) for b in batches], axis=0) * k / (k - 1)}


def _spatial_batches(case: Case) -> bool:
    return np.ndim(case["batches"]) > 3


def _several_batches(case: Case) -> bool:
    return len(case["batches"]) > 1


POOLED = (
    "the variance seems to be that of all batches put together; Algorithm 2 averages the "
    "variances of the batches (times m / (m - 1)), the spread each batch normalised with."
)

POPULATION_VARIANTS: tuple[Variant, ...] = (
    Variant(
        "biased_population_var",
        "the variance seems to lack the m / (m - 1) correction; the mean of biased batch "
        "variances underestimates Var[x].",
        population_biased,
    ),
    Variant(
        "population_averaged_std",
        "the batch standard deviations seem to be averaged and then squared; average the "
        "batch variances instead (the square of a mean is not the mean of the squares).",
        population_averaged_std,
        applies=_several_batches,
    ),
    Variant("pooled_variance", POOLED, lambda case: population_pooled(case, ddof=1),
            applies=_several_batches),
    Variant("pooled_variance", POOLED, lambda case: population_pooled(case, ddof=0),
            applies=_several_batches),
    Variant("bessel_with_n", BESSEL_WITH_N, population_bessel_with_n,
            applies=_spatial_batches),
    Variant(
        "population_m_is_batches",
        "the m / (m - 1) correction seems to use the number of batches for m; m is the number "
        "of values a channel has in one batch (N, or N * H * W with spatial axes).",
        population_m_is_batches,
        applies=_several_batches,
    ),
)


def _inference_case(case: Case) -> tuple[np.ndarray, ...]:
    return tuple(_f64(case, "x", "gamma", "beta", "running_mean", "running_var"))


def running_denominator_variants(simulate: Callable[..., Arrays], no_sqrt_message: str) -> tuple[Variant, ...]:
    """The slips in ``sqrt(running_var + eps)`` that the inference transform and the fold share:
    the square root taken twice, no square root, eps ignored. ``simulate(case, denominator=...,
    default_eps=...)`` computes the outputs under a slip; ``no_sqrt_message`` says what the
    right denominator is in that function's terms."""
    return (
        Variant("sqrt_of_std", SQRT_OF_STD, lambda case: simulate(case, denominator="sqrt(std+eps)")),
        Variant("no_sqrt", no_sqrt_message, lambda case: simulate(case, denominator="var+eps")),
        Variant("eps_ignored", EPS_IGNORED, lambda case: simulate(case, default_eps=True),
                applies=_eps_not_default),
    )


def inference_with(case: Case, denominator: str = "sqrt(var+eps)", swap: bool = False,
                   batch_stats: bool = False, default_eps: bool = False) -> Arrays:
    x, gamma, beta, mean, var = _inference_case(case)
    eps = DEFAULT_EPS if default_eps else float(case["eps"])
    if batch_stats:
        return {"out": _normalise(x, gamma, beta, eps)}
    if swap:
        gamma, beta = beta, gamma
    std = _denominator(var, eps, denominator)
    scale = per_channel(gamma / std, x)
    return {"out": scale * (x - per_channel(mean, x)) + per_channel(beta, x)}


INFERENCE_VARIANTS: tuple[Variant, ...] = (
    Variant(
        "batch_stats_in_inference",
        "the output seems to use the statistics of this batch; in inference BN uses "
        "running_mean and running_var, so each example's output is independent of the batch.",
        lambda case: inference_with(case, batch_stats=True),
    ),
    Variant(
        "eps_outside_sqrt",
        "eps seems to be added outside the square root; use sqrt(running_var + eps).",
        lambda case: inference_with(case, denominator="sqrt(var)+eps"),
    ),
    Variant(
        "no_eps",
        "eps seems to be missing; use sqrt(running_var + eps).",
        lambda case: inference_with(case, denominator="sqrt(var)"),
    ),
    Variant(
        "gamma_beta_swapped",
        "gamma and beta seem to be swapped; the output is gamma * x_hat + beta.",
        lambda case: inference_with(case, swap=True),
    ),
    *running_denominator_variants(
        inference_with,
        "the output seems to divide by running_var + eps; divide by the standard deviation, "
        "sqrt(running_var + eps).",
    ),
)


def _fold_case(case: Case) -> tuple[np.ndarray, ...]:
    weight, bias, gamma, beta, mean, var = _f64(
        case, "weight", "bias", "gamma", "beta", "running_mean", "running_var"
    )
    return weight, bias, gamma, beta, mean, var


def fold_with(case: Case, use_eps: bool = True, keep_bias: bool = True,
              denominator: str = "sqrt(var+eps)", default_eps: bool = False,
              scale_bias: bool = True, use_mean: bool = True) -> Arrays:
    weight, bias, gamma, beta, mean, var = _fold_case(case)
    eps = float(case["eps"]) if use_eps else 0.0
    if default_eps:
        eps = DEFAULT_EPS
    scale = gamma / _denominator(var, eps, denominator)
    old_bias = bias if keep_bias else np.zeros_like(bias)
    mean = mean if use_mean else np.zeros_like(mean)
    return {
        "weight": weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1)),
        "bias": (scale * (old_bias - mean) if scale_bias else old_bias - scale * mean) + beta,
    }


FOLD_VARIANTS: tuple[Variant, ...] = (
    Variant(
        "fold_forgets_eps",
        "eps seems to be missing from the folded scale; it is gamma / sqrt(running_var + eps).",
        lambda case: fold_with(case, use_eps=False),
    ),
    Variant(
        "fold_forgets_bias",
        "the layer's own bias seems to be dropped; the folded bias is "
        "gamma * (bias - running_mean) / sqrt(running_var + eps) + beta.",
        lambda case: fold_with(case, keep_bias=False),
    ),
    Variant(
        "fold_bias_unscaled",
        "the layer's own bias seems to be added unscaled; BN scales it like everything else "
        "the layer outputs: the folded bias is "
        "gamma * (bias - running_mean) / sqrt(running_var + eps) + beta.",
        lambda case: fold_with(case, scale_bias=False),
    ),
    Variant(
        "fold_bias_without_mean",
        "the folded bias seems to leave out the scaled running mean; BN subtracts "
        "running_mean before scaling, so the folded bias is "
        "gamma * (bias - running_mean) / sqrt(running_var + eps) + beta.",
        lambda case: fold_with(case, use_mean=False),
    ),
    *running_denominator_variants(
        fold_with,
        "the folded scale seems to divide by running_var + eps; it is gamma / sqrt(running_var + eps).",
    ),
)


# --------------------------------------------------------------------------- distributed (07)
#
# Cases of assignment 07 hold the whole batch as one array "x" (and "dout") with the group
# (rank) sizes in "sizes"; the merge cases hold per-group "count", "mean" and "m2" directly.


def split_groups(case: Case, name: str = "x") -> list[np.ndarray]:
    """The K groups (ranks) of ``case[name]`` in float64, split along axis 0 by ``sizes``."""
    edges = np.cumsum(np.asarray(case["sizes"]))[:-1]
    return np.split(np.asarray(case[name], dtype=np.float64), edges)


def group_stats(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group (count (K,), mean (K, C), M2 (K, C)) in float64, as each rank computes them."""
    count = np.array([g.size // g.shape[1] for g in groups])
    means = np.stack([g.mean(axis=channel_axes(g)) for g in groups])
    m2 = np.stack([((g - per_channel(mu, g)) ** 2).sum(axis=channel_axes(g))
                   for g, mu in zip(groups, means, strict=True)])
    return count, means, m2


def merged(count: np.ndarray, means: np.ndarray, m2: np.ndarray, weighted: bool = True,
           between: bool = True, between_around_wrong_mean: bool = True,
           between_weighted: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(mean, M2) of the union of the groups, with the pieces a mistaken merge gets wrong.

    - weighted=False: the mean is the plain average of the K group means;
    - between=False: M2 is the sum of the groups' M2 (no between-group term);
    - between_around_wrong_mean=False: with weighted=False, the between-group term is still
      taken around the right mean (only the returned mean is wrong);
    - between_weighted=False: the between-group term adds (mu_k - mu)^2 once per group
      instead of m_k times.
    """
    counts = np.asarray(count, dtype=np.float64)[:, None]
    right_mean = (counts * means).sum(axis=0) / counts.sum()
    mean = right_mean if weighted else means.mean(axis=0)
    centre = mean if between_around_wrong_mean else right_mean
    spread_weights = counts if between_weighted else np.ones_like(counts)
    between_term = (spread_weights * (means - centre) ** 2).sum(axis=0) if between else 0.0
    return mean, m2.sum(axis=0) + between_term


def _merge_case(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = np.asarray(case["count"])
    return count, *_f64(case, "mean", "m2")


def merge_with(case: Case, **mistake: bool) -> Arrays:
    mean, m2 = merged(*_merge_case(case), **mistake)
    return {"mean": mean, "m2": m2}


UNWEIGHTED_GROUP_MEANS = (
    "the group means seem to be averaged without weighting them by their counts; the mean of "
    "the whole batch is sum_k m_k mu_k / m, so a group of one sample weighs less than a group "
    "of eight (and an empty group not at all)."
)
NO_BETWEEN_GROUP_TERM = (
    "M2 seems to be the sum of the groups' M2 alone; the groups' means differ, so merging adds "
    "the between-group term sum_k m_k (mu_k - mu)^2 (Chan's delta^2 m_A m_B / m for two groups)."
)
BETWEEN_TERM_WITHOUT_COUNTS = (
    "M2's between-group term seems to add (mu_k - mu)^2 once per group; group k holds m_k "
    "values whose mean is that far from the merged mean, so the term is sum_k m_k (mu_k - mu)^2."
)

MERGE_VARIANTS = (
    Variant("unweighted_group_means", UNWEIGHTED_GROUP_MEANS,
            lambda case: {"mean": merge_with(case, weighted=False)["mean"]}),
    Variant("unweighted_group_means", UNWEIGHTED_GROUP_MEANS,
            lambda case: merge_with(case, weighted=False)),
    Variant("no_between_group_term", NO_BETWEEN_GROUP_TERM,
            lambda case: {"m2": merge_with(case, between=False)["m2"]}),
    Variant("between_term_without_counts", BETWEEN_TERM_WITHOUT_COUNTS,
            lambda case: {"m2": merge_with(case, between_weighted=False)["m2"]}),
)


def _sync_forward_case(case: Case) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, float]:
    gamma, beta = _f64(case, "gamma", "beta")
    return split_groups(case), gamma, beta, float(case["eps"])


def sync_forward_with(case: Case, variance: str = "M2/m", local: bool = False,
                      **mistake: bool) -> Arrays:
    """SyncBN's output over the whole batch, from group statistics merged as a mistake would.

    ``variance``: "M2/m" (right), "M2/(m-1)" (unbiased), "variances" (the merge fed the
    groups' biased variances in place of their M2). ``local``: every group normalised with
    its own statistics (nothing exchanged). ``mistake``: passed on to ``merged``.
    """
    groups, gamma, beta, eps = _sync_forward_case(case)
    count, means, m2 = group_stats(groups)
    if local:
        outs = [_normalise(g, gamma, beta, eps) for g in groups]
        return {"out": np.concatenate(outs)}
    if variance == "variances":
        mean, spread = merged(count, means, m2 / count[:, None], **mistake)
    else:
        mean, spread = merged(count, means, m2, **mistake)
    m = count.sum()
    var = spread / (m - 1 if variance == "M2/(m-1)" else m)
    x = np.concatenate(groups)
    out = per_channel(gamma, x) * (x - per_channel(mean, x)) / per_channel(np.sqrt(var + eps), x)
    return {"out": out + per_channel(beta, x)}


def _several_values(case: Case) -> bool:
    return int(np.sum(case["sizes"])) > 1


SYNC_FORWARD_VARIANTS = (
    Variant("unbiased_variance",
            "the variance seems to divide the merged M2 by m - 1; BN normalises with the biased "
            "batch variance M2 / m, m the number of values of a channel over all ranks.",
            lambda case: sync_forward_with(case, variance="M2/(m-1)"), applies=_several_values),
    Variant("unweighted_group_means", UNWEIGHTED_GROUP_MEANS,
            lambda case: sync_forward_with(case, weighted=False, between_around_wrong_mean=False)),
    Variant("unweighted_group_means", UNWEIGHTED_GROUP_MEANS,
            lambda case: sync_forward_with(case, weighted=False)),
    Variant("no_between_group_term", NO_BETWEEN_GROUP_TERM,
            lambda case: sync_forward_with(case, between=False)),
    Variant("between_term_without_counts", BETWEEN_TERM_WITHOUT_COUNTS,
            lambda case: sync_forward_with(case, between_weighted=False)),
    Variant("merged_variances",
            "the merge seems to be fed each rank's variance where it expects M2; M2_k is the "
            "sum of squared deviations, m_k times the rank's biased variance, and the merged "
            "M2 divided by m is the batch variance.",
            lambda case: sync_forward_with(case, variance="variances")),
    Variant("local_statistics",
            "each rank seems to normalise with the statistics of its own slice; SyncBN "
            "normalises every slice with the mean and variance of the whole batch (merge the "
            "ranks' (m_k, mu_k, M2_k) first).",
            lambda case: sync_forward_with(case, local=True)),
)


def sync_backward_with(case: Case, local_m: bool = False, local_sums: bool = False) -> Arrays:
    """dx of SyncBN over the whole batch, with the global statistics, and a mistake's pieces.

    ``local_m``: each rank divides the all-reduced sums by its own m_k instead of m;
    ``local_sums``: each rank uses the sums over its own slice (no all-reduce) and its m_k.
    """
    groups, gamma, _, eps = _sync_forward_case(case)
    douts = split_groups(case, "dout")
    x = np.concatenate(groups)
    axes = channel_axes(x)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hats = [(g - per_channel(mean, g)) * per_channel(inv_std, g) for g in groups]
    total_dy = sum(dy.sum(axis=axes) for dy in douts)
    total_dy_xhat = sum((dy * xh).sum(axis=axes) for dy, xh in zip(douts, x_hats, strict=True))
    m = x.size // x.shape[1]
    dxs = []
    for dy, xh in zip(douts, x_hats, strict=True):
        sum_dy, sum_dy_xhat = ((dy.sum(axis=axes), (dy * xh).sum(axis=axes)) if local_sums
                               else (total_dy, total_dy_xhat))
        count = dy.size // dy.shape[1] if (local_m or local_sums) else m
        dxs.append(per_channel(gamma * inv_std, dy) * (
            dy - per_channel(sum_dy / count, dy) - xh * per_channel(sum_dy_xhat / count, dy)))
    return {"dx": np.concatenate(dxs)}


SYNC_BACKWARD_VARIANTS = (
    Variant("local_m_in_backward",
            "dx seems to divide the all-reduced sums by the rank's own m_k; they are sums over "
            "the whole batch, so the means in dx divide them by the global m = sum_k m_k.",
            lambda case: sync_backward_with(case, local_m=True)),
    Variant("backward_not_all_reduced",
            "dx seems to use the sums of dy and dy * x_hat over the rank's own slice; every "
            "rank needs the sums over the whole batch (an all-reduce of the ranks' sums), "
            "divided by the global m.",
            lambda case: sync_backward_with(case, local_sums=True)),
)
