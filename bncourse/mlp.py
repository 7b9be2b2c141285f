"""The multilayer perceptron of assignment 06, and its trusted evaluation.

Students write the training loop (forward, backward, SGD step and running statistics) with
their own ``batchnorm_forward``/``batchnorm_backward``; this module gives them the pieces
that are not about BN, and gives the grader ``predict``, which evaluates the parameters a
student's ``train`` returned, so the accuracy that earns points is computed by trusted code.

The network, in the course's notation, for hidden layers l = 1 .. L-1:

    x_l = u_l @ W_l.T + b_l              (plain network)
    x_l = BN(u_l @ W_l.T)                (BN network: BN's beta replaces the bias)
    u_{l+1} = relu(x_l)

and the last layer L is linear: logits = u_L @ W_L.T + b_L. Parameter names: ``W1``, ``b1``
(plain only), ``gamma1``, ``beta1``, ``running_mean1``, ``running_var1`` (BN only), ...,
``W{L}``, ``b{L}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bncourse.deepnet import softmax_cross_entropy  # re-exported: the notebook imports it from here

__all__ = ["HIDDEN_SIZES", "accuracy", "expected_keys", "init_mlp", "predict", "softmax_cross_entropy"]

# 64 pixels -> three hidden layers of 100 units -> 10 classes: deep enough that a large
# learning rate breaks the plain network, small enough to train in about a second.
HIDDEN_SIZES = (100, 100, 100)


def _sizes(n_inputs: int, n_classes: int, hidden: Sequence[int]) -> list[int]:
    return [int(n_inputs), *(int(h) for h in hidden), int(n_classes)]


def expected_keys(use_bn: bool, n_inputs: int = 64, n_classes: int = 10,
                  hidden: Sequence[int] = HIDDEN_SIZES) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter and buffer of the network."""
    sizes = _sizes(n_inputs, n_classes, hidden)
    n_layers = len(sizes) - 1
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(1, n_layers + 1):
        fan_in, fan_out = sizes[layer - 1], sizes[layer]
        shapes[f"W{layer}"] = (fan_out, fan_in)
        if use_bn and layer < n_layers:
            for name in ("gamma", "beta", "running_mean", "running_var"):
                shapes[f"{name}{layer}"] = (fan_out,)
        else:
            shapes[f"b{layer}"] = (fan_out,)
    return shapes


def init_mlp(use_bn: bool, seed: int, n_inputs: int = 64, n_classes: int = 10,
             hidden: Sequence[int] = HIDDEN_SIZES) -> dict[str, np.ndarray]:
    """Initial parameters (float64): He-normal weights, zero biases, gamma = 1, beta = 0,
    running_mean = 0, running_var = 1 (PyTorch's initial buffers).

    He et al.'s std sqrt(2 / fan_in) keeps the signal's scale through ReLU layers, so both
    networks start well; what differs is how they tolerate a large learning rate.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for name, shape in expected_keys(use_bn, n_inputs, n_classes, hidden).items():
        if name.startswith("W"):
            params[name] = rng.standard_normal(shape) * np.sqrt(2.0 / shape[1])
        elif name.startswith(("gamma", "running_var")):
            params[name] = np.ones(shape)
        else:
            params[name] = np.zeros(shape)
    return params


def predict(params: Mapping[str, np.ndarray], x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Class predictions ``(N,)`` of the network in inference mode (BN with the running statistics).

    The network is a BN network when ``params`` holds ``gamma1``. Non-finite parameters give
    non-finite logits, and ``argmax`` of NaN logits is class 0: a diverged network scores
    about chance, as it should.
    """
    from bncourse.cpu import batchnorm_inference

    use_bn = "gamma1" in params
    n_layers = sum(1 for name in params if name.startswith("W"))
    h = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        for layer in range(1, n_layers):
            pre = h @ np.asarray(params[f"W{layer}"], dtype=np.float64).T
            if use_bn:
                stats = [np.asarray(params[f"{n}{layer}"], dtype=np.float64)
                         for n in ("gamma", "beta", "running_mean", "running_var")]
                # A diverged run may leave a negative or NaN running_var; treat it as garbage in,
                # garbage out rather than an error (the student's network simply scores badly).
                stats[3] = np.where(np.isfinite(stats[3]) & (stats[3] >= 0), stats[3], np.nan)
                pre = batchnorm_inference(pre, *stats, eps=eps) if np.all(np.isfinite(stats[3])) else pre * np.nan
            else:
                pre = pre + np.asarray(params[f"b{layer}"], dtype=np.float64)
            h = np.maximum(pre, 0.0)
        logits = h @ np.asarray(params[f"W{n_layers}"], dtype=np.float64).T + params[f"b{n_layers}"]
    logits = np.where(np.isfinite(logits), logits, -np.inf)
    return np.argmax(logits, axis=1)


def accuracy(params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Share of ``x``'s rows whose predicted class equals ``y``."""
    return float(np.mean(predict(params, x) == np.asarray(y)))
