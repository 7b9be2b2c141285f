"""A small convolutional network for the 8x8 digits, with or without BN, and BN's cost per step.

The network of chapter 7's convolutional experiment, in the paper's placement
(Section 3.2: BN after the convolution, before the nonlinearity, the
convolution's bias dropped because beta replaces it):

    8x8 image -> [Conv 3x3 -> (BN2d) -> ReLU] x 2 -> MaxPool 2 -> Conv 3x3 -> (BN2d)
              -> ReLU -> global average pool -> Linear -> 10 logits

For a convolution BN keeps one mean and one variance per channel, over the
m = N * H * W values of that channel in the mini-batch (the paper's Section 3.2).
The model takes flat ``(N, 64)`` rows, like the MLPs, so :func:`bncourse.train.train`
trains it unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from bncourse.data import load_digits
from bncourse.timing import Timing, compare_timings
from bncourse.train import train

CONV_NORMS = ("none", "batch")


def make_convnet(norm: str = "none", channels: Sequence[int] = (16, 32, 32), seed: int = 0) -> nn.Sequential:
    """Build the digits convnet; ``norm`` is "none" or "batch" (``nn.BatchNorm2d``).

    Inputs:
    - norm: "none" (convolutions with a bias) or "batch" (no bias, BN2d after each).
    - channels: output channels of the three 3x3 convolutions.
    - seed: seed of the He-normal initial weights N(0, 2 / fan_in).

    Returns an ``nn.Sequential`` mapping ``(N, 64)`` to ``(N, 10)`` logits.
    """
    if norm not in CONV_NORMS:
        raise ValueError(f"norm: expected one of {CONV_NORMS}, got {norm!r}")
    if len(channels) != 3 or min(channels) < 1:
        raise ValueError(f"channels: expected three positive integers, got {channels!r}")
    generator = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = [nn.Unflatten(1, (1, 8, 8))]
    widths = [1, *channels]
    for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=norm == "none")
        _he_normal_(conv, generator)
        layers.append(conv)
        if norm == "batch":
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU())
        if i == 1:
            layers.append(nn.MaxPool2d(2))  # 8x8 -> 4x4
    head = nn.Linear(widths[-1], 10)
    _he_normal_(head, generator, gain=1.0)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), head]
    return nn.Sequential(*layers)


def _he_normal_(layer: nn.Module, generator: torch.Generator, gain: float = 2.0) -> None:
    with torch.no_grad():
        fan_in = layer.weight[0].numel()
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * np.sqrt(gain / fan_in))
        if layer.bias is not None:
            layer.bias.zero_()


def training_step_seconds(
    models: Mapping[str, nn.Module], x: torch.Tensor, y: torch.Tensor, repeats: int = 50, warmup: int = 5
) -> dict[str, Timing]:
    """Wall-clock seconds of one SGD step (forward, loss, backward, update) of each model.

    The models are timed side by side, interleaved round by round on the same
    mini-batch ``x`` (N, 64), ``y`` (N,), by :func:`bncourse.timing.compare_timings`,
    so that load from other processes hits all of them alike; compare their
    medians as a ratio. The models are trained in place (a tiny learning rate).
    """
    def step_of(model: nn.Module):
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
        model.train()

        def step() -> None:
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return step

    return compare_timings({name: step_of(m) for name, m in models.items()}, repeats=repeats, warmup=warmup)


def convnet(
    lrs: Sequence[float] = (0.05, 0.5), seeds: Sequence[int] = (0, 1, 2),  # the grid of runs
    steps: int = 1500, batch_size: int = 60, record_every: int = 50,  # one run
    timing_repeats: int = 50,
) -> dict[str, np.ndarray]:
    """The digits convnet trained without and with BN, and the cost of one training step.

    Returns lrs (L,), steps (k,), test_accuracy (2, L, S, k) (row 0 without BN,
    row 1 with BN), diverged (2, L, S), and step_seconds (2, R): the durations of
    ``timing_repeats`` SGD steps of each network on one mini-batch of
    ``batch_size``, measured side by side (they depend on the machine).
    """
    data = load_digits()
    accs = np.zeros((2, len(lrs), len(seeds)), dtype=object)
    diverged = np.zeros((2, len(lrs), len(seeds)), dtype=bool)
    for i, norm in enumerate(CONV_NORMS):
        for j, lr in enumerate(lrs):
            for k, seed in enumerate(seeds):
                model = make_convnet(norm, seed=seed)
                history = train(model, data, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                                record_every=record_every)
                accs[i, j, k] = history.test_accuracy
                diverged[i, j, k] = history.diverged_at is not None
    x = torch.as_tensor(data.x_train[:batch_size])
    y = torch.as_tensor(data.y_train[:batch_size])
    timings = training_step_seconds({norm: make_convnet(norm) for norm in CONV_NORMS}, x, y,
                                    repeats=timing_repeats)
    return {"lrs": np.array(lrs), "steps": history.steps, "test_accuracy": np.array(accs.tolist()),
            "diverged": diverged, "step_seconds": np.array([timings[n].seconds for n in CONV_NORMS])}
