"""Weight initialisation and the per-layer signal of a deep network (assignment 01).

Reference code for the first assignment and the first chapter: Xavier/Glorot
initialisation (Glorot & Bengio, 2010), the mean and standard deviation of the
activations layer by layer, and a rule that names a std profile "vanishing",
"exploding" or "stable".

Conventions (the course's notation): a layer computes ``x = u @ W.T + b`` with
``W`` of shape ``(fan_out, fan_in)`` (PyTorch's layout), then ``z = g(x)``.
Biases are zero at initialisation, so they are left out here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "SIGNAL_RATIO",
    "activation_stats",
    "classify_signal",
    "signal_profile",
    "xavier_normal",
    "xavier_uniform",
    "xavier_variance",
]

# The named nonlinearities g the assignment uses; "linear" is the identity.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
}

# A profile is "vanishing" when the last layer's std is below 1/SIGNAL_RATIO of the
# first layer's, "exploding" above SIGNAL_RATIO times it. A factor of ten over the
# depth of the network is far outside the sampling noise of a std estimated from
# thousands of values, and small enough that a real drift is caught at depth 10-50.
SIGNAL_RATIO = 10.0


def _check_fans(fan_in: int, fan_out: int) -> None:
    for name, value in (("fan_in", fan_in), ("fan_out", fan_out)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def xavier_variance(fan_in: int, fan_out: int) -> float:
    """Glorot & Bengio's weight variance 2 / (fan_in + fan_out) (their eq. 12's compromise)."""
    _check_fans(fan_in, fan_out)
    return 2.0 / (fan_in + fan_out)


def xavier_uniform(
    fan_in: int, fan_out: int, rng: np.random.Generator, dtype: type = np.float64
) -> np.ndarray:
    """Draw a ``(fan_out, fan_in)`` weight matrix from U[-a, a], a = sqrt(6 / (fan_in + fan_out)).

    A uniform law on [-a, a] has variance a^2 / 3, so this is ``xavier_variance``.
    """
    bound = np.sqrt(3.0 * xavier_variance(fan_in, fan_out))
    return rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(dtype)


def xavier_normal(
    fan_in: int, fan_out: int, rng: np.random.Generator, dtype: type = np.float64
) -> np.ndarray:
    """Draw a ``(fan_out, fan_in)`` weight matrix from N(0, 2 / (fan_in + fan_out))."""
    std = np.sqrt(xavier_variance(fan_in, fan_out))
    return (std * rng.standard_normal(size=(fan_out, fan_in))).astype(dtype)


def activation_stats(
    u: np.ndarray, weights: Sequence[np.ndarray], g: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Forward ``u`` through the layers ``z = g(h @ W.T)`` and record each layer's output statistics.

    Inputs:
    - u: ``(N, d)`` input batch.
    - weights: L matrices; layer l has shape ``(d_l, d_{l-1})`` with ``d_0 = d``.
    - g: elementwise nonlinearity.

    Returns ``(means, stds)``, each ``(L,)`` float64: the mean and the (population, ddof=0)
    standard deviation of all ``N * d_l`` entries of layer l's output ``z``. Overflow is not
    hidden: a signal that blows up gives ``inf`` or ``nan`` entries.
    """
    h = np.asarray(u)
    means, stds = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for weight in weights:
            h = g(h @ np.asarray(weight).T)
            means.append(np.mean(h, dtype=np.float64))
            stds.append(np.std(h, dtype=np.float64))
    return np.asarray(means), np.asarray(stds)


def classify_signal(stds: np.ndarray) -> str:
    """Name a per-layer std profile: "vanishing", "exploding" or "stable".

    The rule (stated in assignment 01): a profile holding ``inf`` or ``nan`` overflowed, so it
    is "exploding"; otherwise compare the last layer's std with the first layer's: below
    ``1 / SIGNAL_RATIO`` times it is "vanishing", above ``SIGNAL_RATIO`` times it "exploding",
    anything in between "stable".
    """
    stds = np.asarray(stds, dtype=np.float64)
    if stds.ndim != 1 or stds.size < 2:
        raise ValueError(f"stds: expected a 1-D profile of at least 2 layers, got shape {stds.shape}")
    if not np.all(np.isfinite(stds)):
        return "exploding"
    if stds[-1] < stds[0] / SIGNAL_RATIO:
        return "vanishing"
    if stds[-1] > stds[0] * SIGNAL_RATIO:
        return "exploding"
    return "stable"


def signal_profile(
    activation: str, gain: float, depth: int, width: int = 256,  # the network
    n: int = 256, seed: int = 0, dtype: type = np.float32,  # the batch fed to it
) -> np.ndarray:
    """The per-layer std profile of a real forward pass (the test profiles of assignment 01).

    A ``depth``-layer network of constant ``width``, weights ``gain * xavier_normal``, fed a
    standard normal batch of ``n`` rows, in ``dtype`` (float32 overflows as a real run would).
    Returns the ``(depth,)`` stds from ``activation_stats``.
    """
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, width)).astype(dtype)
    weights = [
        (gain * xavier_normal(width, width, rng)).astype(dtype) for _ in range(depth)
    ]
    return activation_stats(u, weights, ACTIVATIONS[activation])[1]
