"""A small, readable PyTorch training helper for the book's experiments.

Two pieces:

- :func:`make_mlp` builds a fully connected network ``Linear -> [norm] ->
  nonlinearity -> [dropout]`` per hidden layer, with the normalisation placed
  *before* the nonlinearity as in Ioffe & Szegedy (2015), Section 3.2: the PyTorch
  backend (:func:`to_torch`) of the course's one MLP, ``bncourse.deepnet.Architecture``.
- :func:`train` runs seeded mini-batch SGD on a :class:`bncourse.data.Split`
  and records, every ``record_every`` steps, the test and training accuracy,
  the training loss, and percentiles of one chosen pre-activation (the input
  of one nonlinearity), which is what the paper's Figure 1 plots.

Everything is device-agnostic: pass ``device="cuda"`` to run on a GPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bncourse import deepnet, gpu
from bncourse.data import Split

NORMS = deepnet.NORMS
NORM_LAYERS = (nn.BatchNorm1d, gpu.BatchNorm1d, nn.LayerNorm, nn.GroupNorm)
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}


class FixedNoise(nn.Module):
    """Multiply each unit by ``1 + noise_scale * N(0,1)`` and add ``noise_scale * N(0,1)``.

    One random scale and shift per unit, redrawn at every training step (not per
    example), so the distribution each following layer sees keeps moving. Used
    to reproduce Santurkar et al. (2018): noise injected after BN. Identity in
    eval mode.
    """

    def __init__(self, noise_scale: float) -> None:
        super().__init__()
        self.noise_scale = noise_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.noise_scale == 0.0:
            return x
        shape = (1, x.shape[1])
        scale = 1.0 + self.noise_scale * torch.randn(shape, device=x.device, dtype=x.dtype)
        shift = self.noise_scale * torch.randn(shape, device=x.device, dtype=x.dtype)
        return x * scale + shift


def _norm_layer(norm: str, width: int, groups: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm1d(width)
    if norm == "bncourse":
        return gpu.BatchNorm1d(width)  # the course's hand-derived layer
    if norm == "layer":
        return nn.LayerNorm(width)
    if norm == "group":
        return nn.GroupNorm(groups, width)
    raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")


def make_mlp(
    n_in: int = 64,
    hidden: Sequence[int] = (100, 100, 100),
    n_out: int = 10,
    *,
    activation: str = "sigmoid",
    norm: str = "none",
    dropout: float = 0.0,
    weight_scale: float = 1.0,
    noise_after_norm: float = 0.0,
    groups: int = 10,
    seed: int = 0,
) -> nn.Sequential:
    """Build an MLP whose hidden layers are ``Linear -> norm -> activation -> dropout``.

    Inputs:
    - n_in, hidden, n_out: input size d, hidden widths, number of classes.
    - activation: "sigmoid", "relu" or "tanh".
    - norm: "none", "batch" (torch.nn.BatchNorm1d), "bncourse" (the course's
      bncourse.gpu.BatchNorm1d), "layer" or "group" (``groups`` groups).
    - dropout: drop probability after each nonlinearity (0 disables it).
    - weight_scale: multiplies the LeCun-normal initial weights N(0, 1/fan_in) of the hidden
      layers (``deepnet.weight_std("lecun", ...)``); 1 is the careful choice, 0.1 or 10
      are careless ones.
    - noise_after_norm: scale of :class:`FixedNoise` inserted after each norm.
    - seed: seed of the initial weights (drawn with torch's generator, layer by layer).

    Returns ``to_torch`` of the ``deepnet.Architecture`` with these widths, activation and
    norm. With a norm, the linear layers have no bias, since the norm's shift beta replaces it
    (the paper's Section 3.2).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {tuple(ACTIVATIONS)}, got {activation!r}")
    if weight_scale <= 0:
        raise ValueError(f"weight_scale: expected a positive number, got {weight_scale!r}")
    architecture = deepnet.Architecture((n_in, *hidden, n_out), activation, norm)
    generator = torch.Generator().manual_seed(seed)

    def draw_weight(layer: int, fan_in: int, fan_out: int) -> torch.Tensor:
        gain = weight_scale if layer < architecture.n_layers else 1.0  # the head: plain LeCun
        return torch.randn((fan_out, fan_in), generator=generator) * deepnet.weight_std("lecun", fan_in, fan_out, gain)

    return to_torch(architecture, architecture.initial_parameters(draw_weight), dropout=dropout,
                    noise_after_norm=noise_after_norm, groups=groups)


def to_torch(
    architecture: deepnet.Architecture,
    params: Mapping[str, Any],
    *,
    dropout: float = 0.0,
    noise_after_norm: float = 0.0,
    groups: int = 10,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """The PyTorch module of a ``deepnet.Architecture`` holding ``params``.

    Inputs:
    - architecture: widths, nonlinearity ("sigmoid", "relu" or "tanh") and norm.
    - params: name -> array or tensor, named and shaped as ``architecture.parameter_shapes()``
      (e.g. ``deepnet.init_mlp(...)``, ``deepnet.MLP.parameters()``); copied into the module.
    - dropout, noise_after_norm, groups: as in :func:`make_mlp` (torch-only layers).
    - dtype: of the module's parameters and buffers.

    Returns ``nn.Sequential`` of ``Linear -> [norm -> [FixedNoise]] -> activation ->
    [Dropout]`` per hidden layer, then the head ``Linear``; in training mode.
    """
    if architecture.nonlinearity not in ACTIVATIONS:
        raise ValueError(f"architecture: expected a nonlinearity in {tuple(ACTIVATIONS)}, "
                         f"got {architecture.nonlinearity!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
    expected = architecture.parameter_shapes()
    if set(params) != set(expected) or any(tuple(params[k].shape) != v for k, v in expected.items()):
        shapes = {k: tuple(v.shape) for k, v in params.items()}
        raise ValueError(f"params: expected names and shapes {expected}, got {shapes}")
    layers: list[nn.Module] = []
    for layer in range(1, architecture.n_layers + 1):
        fan_in, width = architecture.sizes[layer - 1], architecture.sizes[layer]
        layers.append(nn.Linear(fan_in, width, bias=not architecture.normalised(layer)))
        if layer == architecture.n_layers:
            break
        if architecture.normalised(layer):
            layers.append(_norm_layer(architecture.norm, width, groups))
            if noise_after_norm:
                layers.append(FixedNoise(noise_after_norm))
        layers.append(ACTIVATIONS[architecture.nonlinearity]())
        if dropout:
            layers.append(nn.Dropout(dropout))
    model = nn.Sequential(*layers).to(dtype)
    _load_parameters(model, params)
    return model


def _load_parameters(model: nn.Sequential, params: Mapping[str, Any]) -> None:
    """Copy ``W{l}``/``b{l}`` into the l-th Linear and ``gamma{l}``, ``beta{l}`` (and the running
    statistics) into the norm that follows it."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    norms = [m for m in model if isinstance(m, NORM_LAYERS)]
    with torch.no_grad():
        for layer, linear in enumerate(linears, start=1):
            targets = {"W": linear.weight, "b": linear.bias}
            if layer <= len(norms):
                norm = norms[layer - 1]
                targets.update(gamma=norm.weight, beta=norm.bias,
                               running_mean=getattr(norm, "running_mean", None),
                               running_var=getattr(norm, "running_var", None))
            for name, target in targets.items():
                if f"{name}{layer}" in params:
                    target.copy_(torch.as_tensor(params[f"{name}{layer}"]))


def activation_inputs(model: nn.Sequential) -> list[int]:
    """Indices in ``model`` of the modules whose *output* feeds a nonlinearity.

    ``activation_inputs(model)[-1]`` is the last hidden layer's pre-activation
    (after BN when there is one): the quantity the paper's Figure 1(b, c) plots.
    """
    kinds = tuple(ACTIVATIONS[name] for name in ACTIVATIONS)
    return [i - 1 for i, module in enumerate(model) if isinstance(module, kinds)]


@dataclass
class History:
    """What :func:`train` recorded; every array has one row per record.

    - steps (k,): training steps done at each record (0 = before training).
    - test_accuracy, train_accuracy (k,): fraction correct, in eval mode.
    - train_loss (k,): mean training loss over the steps since the previous record.
    - probe_percentiles (k, p): percentiles of the probed pre-activation on the
      test set (eval mode), p = len(percentiles); empty (k, 0) without a probe.
    - diverged_at: first step whose loss was not finite, or None.
    """

    steps: np.ndarray
    test_accuracy: np.ndarray
    train_accuracy: np.ndarray
    train_loss: np.ndarray
    probe_percentiles: np.ndarray
    diverged_at: int | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``x`` that ``model`` (in eval mode) classifies as ``y``."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        correct = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train(was_training)
    return correct


def _probe(
    model: nn.Sequential, x: torch.Tensor, layer: int, unit: int, q: torch.Tensor
) -> np.ndarray:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        values = model[: layer + 1](x)[:, unit]
    model.train(was_training)
    return torch.quantile(values.double(), q).cpu().numpy()


def minibatch_order(
    n: int, batch_size: int, generator: torch.Generator, reshuffle: bool = True
) -> Iterator[torch.Tensor]:
    """Endless mini-batches of indices into ``n`` examples: each epoch is cut from a permutation.

    The first permutation is drawn at once; a new one at the start of every
    later epoch when ``reshuffle`` (otherwise every epoch repeats the first).
    The ``n % batch_size`` examples left over in an epoch's permutation are skipped.
    """
    per_epoch = n // batch_size
    order = torch.randperm(n, generator=generator)
    for k in itertools.count():
        position = k % per_epoch
        if position == 0 and k > 0 and reshuffle:
            order = torch.randperm(n, generator=generator)
        yield order[position * batch_size : (position + 1) * batch_size]


def train(
    model: nn.Sequential,
    data: Split,
    *,
    steps: int,
    lr: float,
    batch_size: int = 60,
    seed: int = 0,
    weight_decay: float = 0.0,
    lr_decay: float = 1.0,
    reshuffle: bool = True,
    record_every: int = 50,
    probe: tuple[int, int] | None = None,
    percentiles: Sequence[float] = (15, 50, 85),
    callback: Callable[[nn.Sequential, int], dict[str, float]] | None = None,
    device: str | torch.device = "cpu",
) -> History:
    """Train ``model`` with mini-batch SGD (cross-entropy loss) and record its progress.

    Inputs:
    - model: e.g. from :func:`make_mlp`; trained in place.
    - data: a :class:`bncourse.data.Split` (NumPy arrays; moved to ``device``).
    - steps: number of SGD steps; batch_size: examples per step (m for BN).
    - lr: learning rate eta; lr_decay: the rate is ``lr * lr_decay**step``.
    - weight_decay: L2 coefficient (PyTorch's SGD convention).
    - reshuffle: draw a new permutation each epoch (True) or cut the data into
      the same mini-batches every epoch (False).
    - record_every: steps between records; seed: seed of the batch order.
    - probe: ``(module index, unit)`` whose output percentiles to record,
      e.g. ``(activation_inputs(model)[-1], 0)``.
    - callback: ``callback(model, step) -> {name: value}``, called at each
      record; the values end up in ``History.extra[name]``.

    Returns a :class:`History`. If the loss stops being finite, training stops
    and the last record is repeated to the end (so every run has k records).
    """
    if steps < 1 or record_every < 1 or batch_size < 1:
        raise ValueError(
            "steps, record_every, batch_size: expected positive integers, "
            f"got {steps!r}, {record_every!r}, {batch_size!r}"
        )
    if lr <= 0:
        raise ValueError(f"lr: expected a positive learning rate, got {lr!r}")
    if not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay: expected a factor in (0, 1], got {lr_decay!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay: expected a non-negative number, got {weight_decay!r}")
    if batch_size > len(data.x_train):
        raise ValueError(
            f"batch_size: expected at most {len(data.x_train)} (the training set), got {batch_size}"
        )
    device = torch.device(device)
    model.to(device).train()
    x_train, y_train, x_test, y_test = (torch.as_tensor(a, device=device) for a in data)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks and FixedNoise draw from the global generator
    q = torch.tensor([p / 100 for p in percentiles], dtype=torch.float64, device=device)
    batches = minibatch_order(len(x_train), batch_size, generator, reshuffle)
    rows: dict[str, list] = {k: [] for k in ("steps", "test", "train", "loss", "probe")}
    extra: dict[str, list[float]] = {}
    losses: list[float] = []
    diverged_at = None

    def record(step: int) -> None:
        rows["steps"].append(step)
        rows["test"].append(accuracy(model, x_test, y_test))
        rows["train"].append(accuracy(model, x_train, y_train))
        rows["loss"].append(float(np.mean(losses)) if losses else np.nan)
        rows["probe"].append(_probe(model, x_test, *probe, q) if probe else np.zeros(0))
        for name, value in (callback(model, step) if callback else {}).items():
            extra.setdefault(name, []).append(value)
        losses.clear()

    record(0)
    for step, idx in zip(range(1, steps + 1), batches, strict=False):  # batches never ends
        idx = idx.to(device)
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_decay ** (step - 1)
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        if not torch.isfinite(loss):
            diverged_at = step
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % record_every == 0:
            record(step)
    if diverged_at is not None:  # pad so every run has the same records
        while rows["steps"][-1] + record_every <= steps:
            for key in rows:
                rows[key].append(rows[key][-1] if key != "steps" else rows[key][-1] + record_every)
            for values in extra.values():
                values.append(values[-1])
    return History(
        steps=np.array(rows["steps"]),
        test_accuracy=np.array(rows["test"]),
        train_accuracy=np.array(rows["train"]),
        train_loss=np.array(rows["loss"]),
        probe_percentiles=np.array(rows["probe"]).reshape(len(rows["steps"]), -1),
        diverged_at=diverged_at,
        extra={name: np.array(values) for name, values in extra.items()},
    )


def precise_batchnorm_(model: nn.Module, x: torch.Tensor, batch_size: int = 60) -> nn.Module:
    """Replace every BN layer's EMA running stats by population stats of ``x``.

    "Precise BN" (Wu & Johnson, 2021): with the weights frozen, run the training
    data through the network in mini-batches of ``batch_size`` and set
    ``running_mean`` to the mean of the batch means and ``running_var`` to the
    mean of the unbiased batch variances (PyTorch's cumulative average,
    ``momentum=None``), as in the paper's Algorithm 2. Works on torch.nn's BN
    layers and on bncourse.gpu's (any module with running statistics and
    ``reset_running_stats``). Returns ``model`` (modified in place, in eval mode).
    """
    bns = [m for m in model.modules()
           if getattr(m, "running_mean", None) is not None and hasattr(m, "reset_running_stats")]
    if not bns:
        raise ValueError("model: expected at least one BatchNorm layer, got none")
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = plain mean over the batches
    model.train()
    with torch.no_grad():
        for start in range(0, len(x) - batch_size + 1, batch_size):
            model(x[start : start + batch_size])
    for bn, momentum in zip(bns, saved, strict=True):
        bn.momentum = momentum
    return model.eval()
