"""The course's NumPy multilayer perceptron, in two uses.

Every layer computes, in the course's notation,

    x = u W^T + b        (pre-activation; u is the layer input, W is (n_out, n_in))
    z = g(x)             (output of the nonlinearity g; the last layer has none)

and the network ends in a softmax cross-entropy loss.

- Chapter 1 uses ``MLP`` to watch activations and gradients travel through a deep network
  under different initialisations and nonlinearities: ``forward`` keeps every ``u``, ``x``
  and ``z``; ``backward`` keeps every ``dl/dx`` and ``dl/dW``, so the statistics of each
  layer can be read off after one call of each.
- Assignment 06 has students train the same ReLU network as a dict of parameters, with BN
  before the nonlinearity of each hidden layer (``x = BN(u W^T)``, BN's beta replacing the
  bias): ``expected_keys``, ``init_mlp`` and ``softmax_cross_entropy`` are the pieces that
  are not about BN, and ``predict``/``accuracy`` evaluate the trained parameters in
  inference mode with trusted code, so the accuracy that earns points is the grader's.
  Parameter names: ``W1``, ``b1`` (plain only), ``gamma1``, ``beta1``, ``running_mean1``,
  ``running_var1`` (BN only), ..., ``W{L}``, ``b{L}``.

Both are one network, written down once in ``Architecture``: the layer widths, the
nonlinearity, whether a normalisation sits before each hidden nonlinearity, the parameters'
names and shapes and their initial values. ``bncourse.train`` builds the PyTorch module of the
same ``Architecture`` (``make_mlp`` for the book's experiments, where torch's autograd and
normalisation layers are the point; ``to_torch`` for parameters from here), so a NumPy network
and its torch twin compute the same function (tests/test_deepnet.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bncourse.cpu import batchnorm_inference

Activation = tuple[
    Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray, np.ndarray], np.ndarray]
]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows for large |x|.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


#: name -> (g, g') where g' takes (x, z=g(x)) so it can reuse the forward value.
NONLINEARITIES: dict[str, Activation] = {
    "tanh": (np.tanh, lambda x, z: 1.0 - z**2),
    "sigmoid": (_sigmoid, lambda x, z: z * (1.0 - z)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x, z: (x > 0).astype(x.dtype)),
    "linear": (lambda x: x, lambda x, z: np.ones_like(x)),
}

#: The initialisation schemes ``init_weights`` understands.
INITS = ("zeros", "constant", "small", "large", "xavier", "he", "lecun")


def weight_std(scheme: str, n_in: int, n_out: int, gain: float = 1.0) -> float:
    """The standard deviation of a zero-mean Gaussian initialisation of an ``(n_out, n_in)`` weight.

    - "small": 0.01, a common pre-2010 default; "large": 1.
    - "xavier": variance 2 / (n_in + n_out) (Glorot & Bengio, 2010).
    - "he": variance 2 / n_in (He et al., 2015), for ReLU layers.
    - "lecun": variance 1 / n_in (LeCun et al., 1998), the book's PyTorch experiments.

    ``gain`` multiplies the standard deviation (careless scales such as 0.1 or 10).
    """
    if scheme == "lecun":
        return gain / np.sqrt(n_in)
    stds = {
        "small": 0.01,
        "large": 1.0,
        "xavier": np.sqrt(2.0 / (n_in + n_out)),
        "he": np.sqrt(2.0 / n_in),
    }
    if scheme not in stds:
        raise ValueError(f"scheme: expected one of {INITS}, got {scheme!r}")
    return gain * stds[scheme]


def init_weights(
    n_in: int, n_out: int, scheme: str, rng: np.random.Generator, dtype: type = np.float64
) -> np.ndarray:
    """Draw an ``(n_out, n_in)`` weight matrix under an initialisation scheme.

    "zeros": every weight 0; "constant": every weight 0.1 (non-zero, yet every unit
    identical); any other scheme: zero-mean Gaussian with ``weight_std(scheme, n_in, n_out)``.
    """
    shape = (n_out, n_in)
    if scheme == "zeros":
        return np.zeros(shape, dtype=dtype)
    if scheme == "constant":
        return np.full(shape, 0.1, dtype=dtype)
    return (weight_std(scheme, n_in, n_out) * rng.standard_normal(shape)).astype(dtype)


#: Where a normalisation sits: nowhere ("none"), or before the nonlinearity of every hidden
#: layer (Ioffe & Szegedy, 2015, Section 3.2). NumPy runs "batch" (BN) in inference mode
#: (``logits``); the PyTorch backend (``bncourse.train``) builds every kind: "batch"
#: (torch.nn.BatchNorm1d), "bncourse" (the course's bncourse.gpu.BatchNorm1d), "layer", "group".
NORMS = ("none", "batch", "bncourse", "layer", "group")
#: The norms with running statistics (``running_mean``, ``running_var``) besides gamma and beta.
NORMS_WITH_RUNNING_STATS = ("batch", "bncourse")


@dataclass(frozen=True)
class Architecture:
    """The course's multilayer perceptron, whichever backend runs it.

    ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``; hidden layer ``l`` (1-based) computes
    ``x = u W_l^T + b_l`` without a norm, ``x = Norm(u W_l^T)`` with one (its shift beta
    replacing the bias), then ``z = g(x)``; the last layer outputs the logits ``u W_L^T + b_L``.
    Parameters are named ``W{l}``, ``b{l}``, ``gamma{l}``, ``beta{l}``, ``running_mean{l}``,
    ``running_var{l}`` (``parameter_shapes``).
    """

    sizes: tuple[int, ...]
    nonlinearity: str = "relu"
    norm: str = "none"

    def __post_init__(self) -> None:
        if len(self.sizes) < 2 or any(int(s) < 1 for s in self.sizes):
            raise ValueError(f"sizes: expected at least two positive widths, got {list(self.sizes)!r}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"nonlinearity: expected one of {tuple(NONLINEARITIES)}, got {self.nonlinearity!r}"
            )
        if self.norm not in NORMS:
            raise ValueError(f"norm: expected one of {NORMS}, got {self.norm!r}")
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def normalised(self, layer: int) -> bool:
        """Whether layer ``layer`` (1-based) has a norm, and so no bias."""
        return self.norm != "none" and layer < self.n_layers

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter and buffer, layer by layer."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(1, self.n_layers + 1):
            fan_in, fan_out = self.sizes[layer - 1], self.sizes[layer]
            shapes[f"W{layer}"] = (fan_out, fan_in)
            if not self.normalised(layer):
                shapes[f"b{layer}"] = (fan_out,)
                continue
            names = ("gamma", "beta")
            if self.norm in NORMS_WITH_RUNNING_STATS:
                names += ("running_mean", "running_var")
            for name in names:
                shapes[f"{name}{layer}"] = (fan_out,)
        return shapes

    def initial_parameters(
        self, draw_weight: Callable[[int, int, int], Any], dtype: type = np.float64
    ) -> dict[str, Any]:
        """Every parameter at the start: ``W{l} = draw_weight(l, fan_in, fan_out)`` in layer
        order (the backend's random numbers), biases and beta 0, gamma 1, and the running
        statistics of a fresh BN layer (PyTorch's): mean 0, variance 1."""
        params: dict[str, Any] = {}
        for name, shape in self.parameter_shapes().items():
            if name.startswith("W"):
                params[name] = draw_weight(int(name[1:]), shape[1], shape[0])
            elif name.startswith(("gamma", "running_var")):
                params[name] = np.ones(shape, dtype=dtype)
            else:
                params[name] = np.zeros(shape, dtype=dtype)
        return params


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``logits (N, K)`` against integer labels ``y (N,)``.

    Returns ``(loss, dlogits)`` with ``dlogits (N, K)`` the gradient of the mean loss.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)  # avoids overflow in exp
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -log_probs[np.arange(n), y].mean()
    dlogits = np.exp(log_probs)
    dlogits[np.arange(n), y] -= 1.0
    return float(loss), dlogits / n


@dataclass
class LayerRecord:
    """What one layer saw in the last forward and backward pass.

    ``u (N, n_in)`` input, ``x (N, n_out)`` pre-activation, ``z (N, n_out)``
    output; after ``backward``: ``dx`` = dl/dx and ``dW`` = dl/dW, ``db`` = dl/db.
    """

    u: np.ndarray
    x: np.ndarray
    z: np.ndarray
    dx: np.ndarray | None = None
    dW: np.ndarray | None = None  # noqa: N815 (the course's name for dl/dW)
    db: np.ndarray | None = None


@dataclass
class MLP:
    """A fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Every hidden layer applies ``nonlinearity``; the last layer outputs logits.
    Build one with :meth:`create`; the weights are plain arrays in ``weights``
    and ``biases`` so a chapter can inspect or overwrite them.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    nonlinearity: str = "tanh"
    records: list[LayerRecord] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        sizes: Sequence[int],
        nonlinearity: str = "tanh",
        init: str = "xavier",
        seed: int = 0,
        dtype: type = np.float64,
    ) -> MLP:
        """Initialise an MLP with layer widths ``sizes`` (input first), zero biases."""
        architecture = Architecture(tuple(sizes), nonlinearity)
        rng = np.random.default_rng(seed)
        params = architecture.initial_parameters(
            lambda layer, n_in, n_out: init_weights(n_in, n_out, init, rng, dtype), dtype
        )
        layers = range(1, architecture.n_layers + 1)
        return cls([params[f"W{l}"] for l in layers], [params[f"b{l}"] for l in layers], nonlinearity)

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def architecture(self) -> Architecture:
        sizes = (self.weights[0].shape[1], *(W.shape[0] for W in self.weights))
        return Architecture(sizes, self.nonlinearity)

    def parameters(self) -> dict[str, np.ndarray]:
        """The weights and biases by name (``W1``, ``b1``, ...), e.g. for ``bncourse.train.to_torch``."""
        params: dict[str, np.ndarray] = {}
        for layer, (W, b) in enumerate(zip(self.weights, self.biases, strict=True), start=1):
            params[f"W{layer}"], params[f"b{layer}"] = W, b
        return params

    def forward(self, u: np.ndarray) -> np.ndarray:
        """Run ``u (N, sizes[0])`` through the network; return logits ``(N, sizes[-1])``."""
        if u.ndim != 2 or u.shape[1] != self.weights[0].shape[1]:
            raise ValueError(
                f"u: expected shape (N, {self.weights[0].shape[1]}), got {u.shape}"
            )
        g, _ = NONLINEARITIES[self.nonlinearity]
        self.records = []
        for i, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = u @ W.T + b
            z = x if i == self.n_layers - 1 else g(x)
            self.records.append(LayerRecord(u=u, x=x, z=z))
            u = z
        return u

    def backward(self, dlogits: np.ndarray) -> None:
        """Backpropagate ``dlogits`` = dl/d(logits); fill ``dx``, ``dW``, ``db`` of each record."""
        if not self.records:
            raise RuntimeError("backward: call forward first")
        _, dg = NONLINEARITIES[self.nonlinearity]
        dz = dlogits
        for i in reversed(range(self.n_layers)):
            rec = self.records[i]
            rec.dx = dz if i == self.n_layers - 1 else dz * dg(rec.x, rec.z)
            rec.dW = rec.dx.T @ rec.u
            rec.db = rec.dx.sum(axis=0)
            dz = rec.dx @ self.weights[i]

    def loss_and_backward(self, u: np.ndarray, y: np.ndarray) -> float:
        """Forward, softmax cross-entropy against labels ``y``, backward; return the loss."""
        loss, dlogits = softmax_cross_entropy(self.forward(u), y)
        self.backward(dlogits)
        return loss

    def sgd_step(self, lr: float) -> None:
        """Move every weight and bias against its gradient: ``W <- W - lr * dW``."""
        for W, b, rec in zip(self.weights, self.biases, self.records, strict=True):
            W -= lr * rec.dW
            b -= lr * rec.db

    def layer_stats(self) -> dict[str, np.ndarray]:
        """Per-layer statistics of the last forward/backward pass, each an ``(L,)`` array.

        Keys: ``x_std`` (pre-activations), ``z_mean``, ``z_std`` (outputs),
        ``saturated`` (share of hidden outputs with ``|g'(x)| < 0.05``, i.e. a
        unit passing back less than 5 % of its gradient), and after
        ``backward``: ``dx_std`` (dl/dx) and ``dW_std`` (dl/dW).
        """
        if not self.records:
            raise RuntimeError("layer_stats: call forward first")
        _, dg = NONLINEARITIES[self.nonlinearity]
        stats = {
            "x_std": [r.x.std() for r in self.records],
            "z_mean": [r.z.mean() for r in self.records],
            "z_std": [r.z.std() for r in self.records],
            # The output layer has no nonlinearity, so it never saturates.
            "saturated": [np.mean(np.abs(dg(r.x, r.z)) < 0.05) for r in self.records[:-1]] + [0.0],
        }
        if self.records[0].dx is not None:
            stats["dx_std"] = [r.dx.std() for r in self.records]
            stats["dW_std"] = [r.dW.std() for r in self.records]
        return {k: np.asarray(v, dtype=float) for k, v in stats.items()}


def train(
    net: MLP,
    x: np.ndarray,
    y: np.ndarray,
    lr: float,
    steps: int,
    batch_size: int = 64,
    seed: int = 0,
    callback: Callable[[int, MLP], None] | None = None,
) -> np.ndarray:
    """Train ``net`` with plain mini-batch SGD for ``steps`` steps; return the ``(steps,)`` losses.

    Batches are drawn without replacement from ``x (n, d)``, ``y (n,)``,
    reshuffling every epoch. ``callback(step, net)``, when given, runs before
    each step (so step 0 sees the initial network). A diverged run (loss not
    finite) stops early; its remaining losses are NaN.
    """
    if batch_size < 1 or batch_size > len(x):
        raise ValueError(f"batch_size: expected an integer in [1, {len(x)}], got {batch_size!r}")
    rng = np.random.default_rng(seed)
    losses = np.full(steps, np.nan)
    order, pos = rng.permutation(len(x)), 0
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(steps):
            if pos + batch_size > len(x):
                order, pos = rng.permutation(len(x)), 0
            idx = order[pos : pos + batch_size]
            pos += batch_size
            if callback is not None:
                callback(step, net)
            losses[step] = net.loss_and_backward(x[idx], y[idx])
            if not np.isfinite(losses[step]):
                break
            net.sgd_step(lr)
    return losses


# --------------------------------------------------------------------------- assignment 06

# 64 pixels -> three hidden layers of 100 units -> 10 classes: deep enough that a large
# learning rate breaks the plain network, small enough to train in about a second.
HIDDEN_SIZES = (100, 100, 100)
ASSIGNMENT_NONLINEARITY = "relu"


def assignment_architecture(use_bn: bool, n_inputs: int = 64, n_classes: int = 10,
                            hidden: Sequence[int] = HIDDEN_SIZES) -> Architecture:
    """The assignment-06 network: ReLU hidden layers, with BN before each ReLU when ``use_bn``."""
    return Architecture((n_inputs, *hidden, n_classes), ASSIGNMENT_NONLINEARITY, "batch" if use_bn else "none")


def expected_keys(use_bn: bool, n_inputs: int = 64, n_classes: int = 10,
                  hidden: Sequence[int] = HIDDEN_SIZES) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter and buffer of the assignment-06 network."""
    return assignment_architecture(use_bn, n_inputs, n_classes, hidden).parameter_shapes()


def init_mlp(use_bn: bool, seed: int, n_inputs: int = 64, n_classes: int = 10,
             hidden: Sequence[int] = HIDDEN_SIZES) -> dict[str, np.ndarray]:
    """Initial parameters (float64): He-normal weights (``init_weights(..., "he")``), zero
    biases, gamma = 1, beta = 0, running_mean = 0, running_var = 1 (PyTorch's buffers).

    He et al.'s std sqrt(2 / fan_in) keeps the signal's scale through ReLU layers, so both
    networks start well; what differs is how they tolerate a large learning rate.
    """
    rng = np.random.default_rng(seed)
    architecture = assignment_architecture(use_bn, n_inputs, n_classes, hidden)
    return architecture.initial_parameters(lambda layer, n_in, n_out: init_weights(n_in, n_out, "he", rng))


def logits(params: Mapping[str, np.ndarray], x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """The assignment-06 network's logits ``(N, K)`` in inference mode (BN with the running
    statistics), in float64.

    The network is a BN network when ``params`` holds ``gamma1``. A diverged run may leave a
    negative or NaN running_var; that layer's output is then NaN (garbage in, garbage out)
    rather than an error: the student's network simply scores badly.
    """
    use_bn = "gamma1" in params
    n_layers = sum(1 for name in params if name.startswith("W"))
    g, _ = NONLINEARITIES[ASSIGNMENT_NONLINEARITY]
    h = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        for layer in range(1, n_layers):
            pre = h @ np.asarray(params[f"W{layer}"], dtype=np.float64).T
            if use_bn:
                stats = [np.asarray(params[f"{n}{layer}"], dtype=np.float64)
                         for n in ("gamma", "beta", "running_mean", "running_var")]
                stats[3] = np.where(np.isfinite(stats[3]) & (stats[3] >= 0), stats[3], np.nan)
                finite = np.all(np.isfinite(stats[3]))
                pre = batchnorm_inference(pre, *stats, eps=eps) if finite else pre * np.nan
            else:
                pre = pre + np.asarray(params[f"b{layer}"], dtype=np.float64)
            h = g(pre)
        return h @ np.asarray(params[f"W{n_layers}"], dtype=np.float64).T + params[f"b{n_layers}"]


def predict(params: Mapping[str, np.ndarray], x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Class predictions ``(N,)`` of the network in inference mode (``logits``).

    Non-finite parameters give non-finite logits, and ``argmax`` of NaN logits is class 0: a
    diverged network scores about chance, as it should.
    """
    scores = logits(params, x, eps)
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    return np.argmax(scores, axis=1)


def accuracy(params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Share of ``x``'s rows whose predicted class equals ``y``."""
    return float(np.mean(predict(params, x) == np.asarray(y)))
