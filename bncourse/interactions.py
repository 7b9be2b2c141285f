"""Experiments on how BN interacts with the rest of training: weight decay, dropout, the batch.

Each function is an experiment of :mod:`bncourse.experiments` (keyword defaults
are its configuration; it returns a dict of NumPy arrays), run on the digits
with the ReLU MLP of :func:`bncourse.train.make_mlp` (3 x 100 units, BN before
the nonlinearity):

- :func:`weight_decay`: BN makes a layer invariant to the scale of its weights,
  so L2 weight decay cannot change what the layer computes; it changes the
  weight norm and with it the effective learning rate eta / ||w||^2
  (van Laarhoven, 2017; Hoffer et al., 2018);
- :func:`variance_shift`: dropout before a BN layer makes the variance BN sees
  in training larger than the one it sees at inference (Li et al., 2019);
- :func:`batch_composition`: what a BN network learns from how its mini-batches
  are composed (Wu & Johnson, 2021, information leaking within a batch);
- :func:`domain_shift`: BN's statistics estimated on one domain and used on
  another, and re-estimated on the new one without labels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from bncourse.data import Split, load_digits
from bncourse.train import accuracy, make_mlp, precise_batchnorm_, train


def _hidden_linears(model: nn.Sequential) -> list[nn.Linear]:
    return [m for m in model[:-1] if isinstance(m, nn.Linear)]


def weight_decay(
    decays: Sequence[float] = (0.0, 5e-4, 5e-3),
    lr: float = 0.5,
    steps: int = 3000,
    seeds: Sequence[int] = (0, 1),
    record_every: int = 50,
) -> dict[str, np.ndarray]:
    """A BN ReLU MLP trained with several L2 coefficients (PyTorch's SGD ``weight_decay``).

    Returns decays (D,), steps (k,), and for each decay and seed (D, S, k):
    sq_norm, the median over hidden units of ||w_r||^2 (row r of a hidden weight
    matrix, one BN channel); effective_lr, the median of eta / ||w_r||^2 (a median:
    the few rows that weight decay shrinks to almost nothing would dominate a
    mean); and test_accuracy.
    """
    data = load_digits()
    shape = (len(decays), len(seeds))
    results = {k: np.zeros(shape, dtype=object) for k in ("sq_norm", "effective_lr", "test_accuracy")}

    def norms(model, step):
        rows = torch.cat([(m.weight.detach() ** 2).sum(dim=1) for m in _hidden_linears(model)])
        return {"sq_norm": rows.median().item(), "effective_lr": (lr / rows).median().item()}

    for i, decay in enumerate(decays):
        for k, seed in enumerate(seeds):
            model = make_mlp(norm="batch", activation="relu", seed=seed)
            history = train(model, data, steps=steps, lr=lr, weight_decay=decay, seed=seed,
                            record_every=record_every, callback=norms)
            results["sq_norm"][i, k] = history.extra["sq_norm"]
            results["effective_lr"][i, k] = history.extra["effective_lr"]
            results["test_accuracy"][i, k] = history.test_accuracy
    return {"decays": np.array(decays), "steps": history.steps,
            **{k: np.array(v.tolist()) for k, v in results.items()}}


def recompute_bn_statistics_(model: nn.Module, x: torch.Tensor, batch_size: int = 60) -> nn.Module:
    """Precise BN (:func:`bncourse.train.precise_batchnorm_`) with dropout switched off.

    The statistics are those of the network as it runs at inference (no dropout),
    which is what removes the variance shift. Returns ``model`` in eval mode.
    """
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    saved = [d.p for d in dropouts]
    for d in dropouts:
        d.p = 0.0
    try:
        precise_batchnorm_(model, x, batch_size)
    finally:
        for d, p in zip(dropouts, saved, strict=True):
            d.p = p
    return model.eval()


def _bn_input_variances(model: nn.Sequential, x: torch.Tensor) -> list[np.ndarray]:
    """Per-unit variance (unbiased) of the input of each BN layer, in eval mode, over ``x``."""
    inputs: list[torch.Tensor] = []
    bns = [m for m in model if isinstance(m, nn.BatchNorm1d)]
    hooks = [bn.register_forward_hook(lambda m, i, o: inputs.append(i[0].detach())) for bn in bns]
    model.eval()
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return [values.double().var(dim=0).numpy() for values in inputs]


def variance_shift(
    rates: Sequence[float] = (0.0, 0.1, 0.3, 0.5),
    seeds: Sequence[int] = (0, 1),
    steps: int = 2000,
    lr: float = 0.1,
) -> dict[str, np.ndarray]:
    """Dropout of each rate after every hidden ReLU, so before the next layer's BN.

    After training, compares each BN layer's ``running_var`` (collected in
    training mode, dropout on) with the variance of the same BN input at
    inference (dropout off) over the training images. Returns rates (R,),
    var_ratio (R, S, 2, 100): running_var / inference variance for the BN layers
    of hidden layers 2 and 3 (the ones that follow a dropout), and test accuracy
    acc_running (R, S) with the running statistics and acc_recomputed (R, S) with
    statistics recomputed at inference (:func:`recompute_bn_statistics_`).
    """
    data = load_digits()
    x_train = torch.as_tensor(data.x_train)
    x_test, y_test = torch.as_tensor(data.x_test), torch.as_tensor(data.y_test)
    ratios = np.zeros((len(rates), len(seeds), 2, 100))
    acc_running, acc_recomputed = np.zeros((2, len(rates), len(seeds)))
    for i, rate in enumerate(rates):
        for k, seed in enumerate(seeds):
            model = make_mlp(norm="batch", activation="relu", dropout=rate, seed=seed)
            train(model, data, steps=steps, lr=lr, seed=seed, record_every=steps)
            bns = [m for m in model if isinstance(m, nn.BatchNorm1d)]
            inference_var = _bn_input_variances(model, x_train)
            for layer in (1, 2):
                ratios[i, k, layer - 1] = bns[layer].running_var.double().numpy() / inference_var[layer]
            acc_running[i, k] = accuracy(model, x_test, y_test)
            acc_recomputed[i, k] = accuracy(recompute_bn_statistics_(model, x_train), x_test, y_test)
    return {"rates": np.array(rates), "var_ratio": ratios, "acc_running": acc_running,
            "acc_recomputed": acc_recomputed}


def _composed_batches(y: np.ndarray, classes_per_batch: int, batch_size: int, rng: np.random.Generator):
    """An endless stream of index batches drawing ``batch_size / classes_per_batch`` images from each of
    ``classes_per_batch`` random classes (10 = an ordinary shuffled batch). A class with fewer
    images than that (the test set has about 45 per class) is drawn with replacement."""
    by_class = [np.flatnonzero(y == c) for c in range(10)]
    while True:
        if classes_per_batch == 10:
            yield rng.choice(len(y), batch_size, replace=False)
            continue
        chosen = rng.choice(10, classes_per_batch, replace=False)
        per_class = batch_size // classes_per_batch
        yield np.concatenate([rng.choice(by_class[c], per_class, replace=per_class > len(by_class[c]))
                              for c in chosen])


def _train_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batches, steps: int, lr: float) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.as_tensor(next(batches))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _train_mode_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batches, n_batches: int) -> float:
    """Accuracy in training mode (batch statistics) on ``n_batches`` batches, on a copy of the model."""
    probe = copy.deepcopy(model).train()
    correct = total = 0
    with torch.no_grad():
        for _ in range(n_batches):
            idx = torch.as_tensor(next(batches))
            correct += (probe(x[idx]).argmax(dim=1) == y[idx]).sum().item()
            total += len(idx)
    return correct / total


def batch_composition(
    classes_per_batch: Sequence[int] = (10, 2, 1),
    seeds: Sequence[int] = (0, 1),
    steps: int = 1500,
    lr: float = 0.1,
    batch_size: int = 60,
    test_batches: int = 40,
) -> dict[str, np.ndarray]:
    """BN ReLU MLPs trained on mini-batches drawn from few classes, evaluated three ways.

    Each training batch holds ``batch_size / c`` images of each of c random classes
    (c = 10: ordinary shuffled batches). Returns classes_per_batch (C,) and accuracy
    (C, 3, S) on the test set: [0] in training mode on test batches composed like
    the training batches, [1] in training mode on shuffled test batches, [2] in
    inference mode (running statistics).
    """
    data = load_digits()
    x_train, y_train = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    x_test, y_test = torch.as_tensor(data.x_test), torch.as_tensor(data.y_test)
    acc = np.zeros((len(classes_per_batch), 3, len(seeds)))
    for i, c in enumerate(classes_per_batch):
        for k, seed in enumerate(seeds):
            rng = np.random.default_rng(seed)
            model = make_mlp(norm="batch", activation="relu", seed=seed)
            _train_on(model, x_train, y_train, _composed_batches(data.y_train, c, batch_size, rng), steps, lr)
            acc[i, 0, k] = _train_mode_accuracy(
                model, x_test, y_test, _composed_batches(data.y_test, c, batch_size, rng), test_batches)
            acc[i, 1, k] = _train_mode_accuracy(
                model, x_test, y_test, _composed_batches(data.y_test, 10, batch_size, rng), test_batches)
            acc[i, 2, k] = accuracy(model, x_test, y_test)
    return {"classes_per_batch": np.array(classes_per_batch), "accuracy": acc}


#: Shifted versions of the digits (pixel values in [0, 1]): name -> transform of a (n, 64) array.
DOMAINS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "original": lambda x, rng: x,
    "dimmed": lambda x, rng: 0.4 * x + 0.3,
    "noisy": lambda x, rng: x + rng.normal(0.0, 0.3, x.shape).astype(x.dtype),
    "inverted": lambda x, rng: 1.0 - x,
}


def _shifted(data: Split, name: str, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    move = DOMAINS[name]
    return Split(move(data.x_train, rng), data.y_train, move(data.x_test, rng), data.y_test)


def domain_shift(
    domains: Sequence[str] = ("original", "dimmed", "noisy", "inverted"),
    seeds: Sequence[int] = (0, 1),
    steps: int = 1500,
    lr: float = 0.1,
) -> dict[str, np.ndarray]:
    """Train on the original digits, test on shifted ones (:data:`DOMAINS`).

    Returns domains (D,) and accuracy (3, D, S) on each domain's test images:
    [0] the plain ReLU MLP, [1] the BN MLP with the running statistics of the
    original digits, [2] the same BN MLP with its statistics recomputed on the
    shifted *training* images (no labels used, weights unchanged).
    """
    data = load_digits()
    acc = np.zeros((3, len(domains), len(seeds)))
    for k, seed in enumerate(seeds):
        plain = make_mlp(norm="none", activation="relu", seed=seed)
        train(plain, data, steps=steps, lr=lr, seed=seed, record_every=steps)
        bn = make_mlp(norm="batch", activation="relu", seed=seed)
        train(bn, data, steps=steps, lr=lr, seed=seed, record_every=steps)
        for j, name in enumerate(domains):
            shifted = _shifted(data, name, seed)
            x_test, y_test = torch.as_tensor(shifted.x_test), torch.as_tensor(shifted.y_test)
            acc[0, j, k] = accuracy(plain, x_test, y_test)
            acc[1, j, k] = accuracy(bn, x_test, y_test)
            adapted = precise_batchnorm_(copy.deepcopy(bn), torch.as_tensor(shifted.x_train))
            acc[2, j, k] = accuracy(adapted, x_test, y_test)
    return {"domains": np.array(domains), "accuracy": acc}
