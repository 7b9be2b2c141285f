"""Diagnostics to watch while a network trains, in the style of Karpathy's lectures.

Three checks that catch most training problems before the accuracy does:

- the initial loss: with C classes and an output layer that favours none of
  them, the cross-entropy at step 0 should be close to ln C;
- histograms of each hidden layer's activations (the outputs of the
  nonlinearities) and of the gradients of the loss with respect to them, at a
  few chosen steps: saturated units and vanishing or exploding gradients show
  up as mass piled at the ends or as histograms of very different widths;
- the update-to-data ratio of each weight matrix at every step,
  ``log10(std(W_new - W_old) / std(W_old))``: about -3 is the usual rule of thumb;
  far below it a layer hardly learns, far above it a layer is thrown around.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from bncourse.data import Split, load_digits
from bncourse.train import ACTIVATIONS, activation_inputs, make_mlp, minibatch_order, precise_batchnorm_, train

#: Bin edges of the activation histograms of sigmoid units (outputs in (0, 1)).
SIGMOID_BINS = np.linspace(0.0, 1.0, 41)


def expected_initial_loss(n_classes: int) -> float:
    """The cross-entropy of a uniform prediction over ``n_classes`` classes: ln C."""
    if n_classes < 2:
        raise ValueError(f"n_classes: expected at least 2 classes, got {n_classes!r}")
    return math.log(n_classes)


def initial_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Cross-entropy of the untrained ``model`` on the mini-batch ``(x, y)``, in training mode.

    Computed on a copy, so the model's BN running statistics are not touched.
    """
    probe = copy.deepcopy(model).train()
    with torch.no_grad():
        return nn.functional.cross_entropy(probe(x), y).item()


def _hidden_activations(model: nn.Sequential) -> list[nn.Module]:
    kinds = tuple(ACTIVATIONS.values())
    return [m for m in model if isinstance(m, kinds)]


def diagnose_training(
    model: nn.Sequential,
    data: Split,
    *,
    steps: int, lr: float, batch_size: int = 60, seed: int = 0,  # the SGD settings of train()
    snapshots: Sequence[int] = (0, 100, 1000),
    activation_bins: np.ndarray = SIGMOID_BINS,
    gradient_bins: int = 40,
) -> dict[str, np.ndarray]:
    """Train ``model`` with plain SGD and record the diagnostics of this module's docstring.

    Inputs:
    - model: an MLP from :func:`bncourse.train.make_mlp`; trained in place.
    - data, steps, lr, batch_size, seed: as for :func:`bncourse.train.train`.
    - snapshots: steps (0 = before any update) at which to take the histograms.
    - activation_bins: bin edges of the activation histograms.
    - gradient_bins: number of bins of the gradient histograms, over a symmetric
      range set by the largest gradient of each snapshot (one range for all layers).

    Returns a dict of arrays; L hidden layers, H snapshots, P weight matrices:
    initial_loss (), update_ratio (steps, P), act_hist (H, L, bins), act_std (H, L),
    grad_hist (H, L, gradient_bins), grad_edges (H, gradient_bins + 1), grad_std (H, L),
    snapshots (H,).
    """
    if steps < max(snapshots, default=0):
        raise ValueError(f"snapshots: expected steps up to {steps}, got {list(snapshots)}")
    x_train, y_train = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    generator = torch.Generator().manual_seed(seed)
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    seen: list[torch.Tensor] = []

    def keep(module, inputs, output):
        if output.requires_grad:  # not under no_grad (the initial-loss check)
            output.retain_grad()
            seen.append(output)

    hooks = [m.register_forward_hook(keep) for m in _hidden_activations(model)]
    batches = minibatch_order(len(x_train), batch_size, generator)
    out: dict[str, list] = {k: [] for k in ("update_ratio", "act_hist", "act_std", "grad_hist",
                                            "grad_edges", "grad_std")}
    model.train()
    try:
        for step, idx in zip(range(steps + 1), batches, strict=False):
            if step == 0:
                loss0 = initial_loss(model, x_train[idx], y_train[idx])
            seen.clear()
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            if step in snapshots:
                _snapshot(seen, activation_bins, gradient_bins, out)
            if step == steps:
                break
            before = [w.detach().clone() for w in weights]
            optimizer.step()
            out["update_ratio"].append([
                math.log10(((w.detach() - b).std() / b.std()).item()) for w, b in zip(weights, before, strict=True)
            ])
    finally:
        for hook in hooks:
            hook.remove()
    return {"initial_loss": np.array(loss0), "snapshots": np.array(list(snapshots)),
            **{k: np.array(v) for k, v in out.items()}}


def _snapshot(seen: list[torch.Tensor], activation_bins: np.ndarray, gradient_bins: int, out: dict) -> None:
    acts = [a.detach().double().numpy().ravel() for a in seen]
    grads = [a.grad.double().numpy().ravel() for a in seen]
    top = max(np.abs(g).max() for g in grads)
    edges = np.linspace(-top, top, gradient_bins + 1)
    out["act_hist"].append([np.histogram(a, activation_bins)[0] for a in acts])
    out["act_std"].append([a.std() for a in acts])
    out["grad_hist"].append([np.histogram(g, edges)[0] for g in grads])
    out["grad_edges"].append(edges)
    out["grad_std"].append([g.std() for g in grads])


def diagnostics(
    steps: int = 1000, lr: float = 0.5, batch_size: int = 60, seed: int = 0,
    snapshots: Sequence[int] = (0, 100, 1000),
) -> dict[str, np.ndarray]:
    """Karpathy-style diagnostics of Figure 1's two networks (3 x 100 sigmoid units).

    Returns the arrays of :func:`diagnose_training` stacked over the two
    networks (row 0 without BN, row 1 with BN), plus the shared ``snapshots``
    and ``expected_initial_loss`` (ln 10).
    """
    data = load_digits()
    runs = [diagnose_training(make_mlp(norm=norm, activation="sigmoid", seed=seed), data, steps=steps,
                              lr=lr, batch_size=batch_size, seed=seed, snapshots=snapshots)
            for norm in ("none", "batch")]
    stacked = {k: np.array([run[k] for run in runs]) for k in runs[0] if k != "snapshots"}
    return {**stacked, "snapshots": runs[0]["snapshots"], "expected_initial_loss": np.array(math.log(10))}



def _standardised_block(model: nn.Sequential, x_train: torch.Tensor, layer: int):
    """The map from hidden layer ``layer``'s standardised pre-activation to layer ``layer + 1``'s.

    For a BN network this is x_hat_l -> x_hat_{l+1} with population statistics (the
    inference-mode BN of a copy whose statistics are recomputed on ``x_train``); for a
    plain network the pre-activations are standardised with their mean and standard
    deviation over ``x_train``, which changes nothing the network computes. Returns
    (the map of one standardised vector, the map from network inputs to standardised
    vectors of layer ``layer``).
    """
    model = copy.deepcopy(model)
    has_bn = any(isinstance(m, nn.BatchNorm1d) for m in model)
    if has_bn:
        precise_batchnorm_(model, x_train)
    model.eval()
    ends = activation_inputs(model)  # index of the module whose output enters each nonlinearity
    first, second = ends[layer - 1], ends[layer]
    if has_bn:  # the BN layers' own population statistics
        bn_a, bn_b = model[first], model[second]
        mean_a, std_a = bn_a.running_mean, torch.sqrt(bn_a.running_var + bn_a.eps)
        mean_b, std_b = bn_b.running_mean, torch.sqrt(bn_b.running_var + bn_b.eps)
        below, between = model[:first], model[first + 1 : second]
    else:
        with torch.no_grad():
            pre_a, pre_b = model[: first + 1](x_train), model[: second + 1](x_train)
        mean_a, std_a = pre_a.mean(dim=0), pre_a.std(dim=0)
        mean_b, std_b = pre_b.mean(dim=0), pre_b.std(dim=0)
        below, between = model[: first + 1], model[first + 1 : second + 1]

    def block(v: torch.Tensor) -> torch.Tensor:
        # BN: x_hat_l -> gamma x_hat_l + beta -> g -> W -> x_hat_{l+1};
        # plain: standardised x_l -> x_l -> g -> W, b -> standardised x_{l+1}
        x_l = bn_a.weight * v + bn_a.bias if has_bn else v * std_a + mean_a
        return (between(x_l) - mean_b) / std_b

    def standardise(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (below(x) - mean_a) / std_a

    return block, standardise


def jacobian_singular_values(
    model: nn.Sequential, x_train: torch.Tensor, x_probe: torch.Tensor, layer: int = 2
) -> np.ndarray:
    """Singular values of the Jacobian between consecutive standardised layers, per example.

    The paper's Section 3.4 conjectures that BN makes the Jacobian of the map between the
    normalised inputs of consecutive layers have singular values close to 1. Returns an
    ``(len(x_probe), width)`` array: for each probe example, the singular values of
    d x_hat_{layer+1} / d x_hat_{layer}, with statistics over ``x_train``.
    """
    if layer < 1:
        raise ValueError(f"layer: expected a hidden layer followed by another (1, 2, ...), got {layer!r}")
    block, standardise = _standardised_block(model, x_train, layer)
    jacobians = torch.func.vmap(torch.func.jacrev(block))(standardise(x_probe))
    return torch.linalg.svdvals(jacobians.detach().double()).numpy()


def jacobian_spectrum(
    steps: int = 4000, lr: float = 0.5, batch_size: int = 60, record_every: int = 250,
    seed: int = 0, probes: int = 50, layer: int = 2,
) -> dict[str, np.ndarray]:
    """The paper's Section 3.4 conjecture, measured on Figure 1's two networks over training.

    Trains seed ``seed`` of :func:`bncourse.experiments.figure1`'s networks (same set-up, so the
    same runs) and, every ``record_every`` steps, takes the singular values of the Jacobian
    between hidden layers ``layer`` and ``layer + 1`` (:func:`jacobian_singular_values`) at the
    first ``probes`` test images. Returns steps (k,), percentiles (2, k, 3): the 10th, 50th
    and 90th percentiles of all those singular values (row 0 without BN, row 1 with BN).
    """
    data = load_digits()
    x_train, x_probe = torch.as_tensor(data.x_train), torch.as_tensor(data.x_test[:probes])
    rows = []
    for norm in ("none", "batch"):
        def spectrum(model, step):
            values = jacobian_singular_values(model, x_train, x_probe, layer)
            return {"percentiles": np.percentile(values, (10, 50, 90))}

        model = make_mlp(norm=norm, activation="sigmoid", seed=seed)
        history = train(model, data, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                        record_every=record_every, callback=spectrum)
        rows.append(history.extra["percentiles"])
    return {"steps": history.steps, "percentiles": np.array(rows)}
