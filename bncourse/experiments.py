"""The training experiments of chapters 6 and 7, each regenerable from the command line.

Every experiment is a function whose keyword defaults *are* its configuration;
it returns a dict of NumPy arrays (plus ``"config"``, the JSON of the
arguments it ran with). The chapters load the longer ones from ``book/data/``;
regenerate any of them with::

    python -m bncourse.experiments NAME --out book/data/NAME.npz

where NAME is one of :data:`EXPERIMENTS`. Runs are seeded and use one CPU
thread, so a rerun on the same versions of PyTorch and NumPy gives the same
numbers. Add ``--quick`` for a seconds-long smoke run (tiny step counts; its
numbers mean nothing).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bncourse.data import load_digits
from bncourse.train import History, activation_inputs, make_mlp, train

PERCENTILES = (15, 50, 85)


def _final(history: History, last: int = 5) -> float:
    """Mean test accuracy of the last ``last`` records: one record can catch a loss spike."""
    return float(np.mean(history.test_accuracy[-last:]))


def figure1(
    steps: int = 4000, lr: float = 0.5, batch_size: int = 60, record_every: int = 50, seed: int = 0
) -> dict[str, np.ndarray]:
    """The paper's Figure 1 on digits: 3 x 100 sigmoid units, batch 60, with and without BN.

    Returns steps (k,), test_accuracy (2, k) and percentiles (2, k, 3) of the
    input of unit 0 of the last hidden layer (15th, 50th, 85th), on the test set;
    row 0 is without BN, row 1 with BN.
    """
    data = load_digits()
    accs, percentiles = [], []
    for norm in ("none", "batch"):
        model = make_mlp(norm=norm, activation="sigmoid", seed=seed)
        history = train(
            model, data, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
            record_every=record_every, probe=(activation_inputs(model)[-1], 0),
            percentiles=PERCENTILES,
        )
        accs.append(history.test_accuracy)
        percentiles.append(history.probe_percentiles)
    return {"steps": history.steps, "test_accuracy": np.array(accs),
            "percentiles": np.array(percentiles)}


def lr_sweep(
    lrs: Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
    seeds: Sequence[int] = (0, 1),
    steps: int = 1500,
    activation: str = "relu",
) -> dict[str, np.ndarray]:
    """Final test accuracy vs learning rate, without and with BN.

    Returns lrs (L,), final_accuracy (2, L, S) (row 0 none, row 1 BN; mean of
    the last 5 records) and diverged (2, L, S) booleans.
    """
    data = load_digits()
    final = np.zeros((2, len(lrs), len(seeds)))
    diverged = np.zeros_like(final, dtype=bool)
    for i, norm in enumerate(("none", "batch")):
        for j, lr in enumerate(lrs):
            for k, seed in enumerate(seeds):
                model = make_mlp(norm=norm, activation=activation, seed=seed)
                history = train(model, data, steps=steps, lr=lr, seed=seed, record_every=50)
                final[i, j, k] = _final(history)
                diverged[i, j, k] = history.diverged_at is not None
    return {"lrs": np.array(lrs), "final_accuracy": final, "diverged": diverged}


def init_scale(
    scales: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0),
    activations: Sequence[str] = ("sigmoid", "relu"),
    seeds: Sequence[int] = (0, 1),
    steps: int = 1500,
    lr: float = 0.1,
) -> dict[str, np.ndarray]:
    """Final test accuracy when the initial weights are scaled by ``scales``.

    Returns scales (K,), final_accuracy (A, 2, K, S): activation, norm (none,
    BN), scale, seed.
    """
    data = load_digits()
    final = np.zeros((len(activations), 2, len(scales), len(seeds)))
    for a, activation in enumerate(activations):
        for i, norm in enumerate(("none", "batch")):
            for j, scale in enumerate(scales):
                for k, seed in enumerate(seeds):
                    model = make_mlp(norm=norm, activation=activation, weight_scale=scale,
                                     seed=seed)
                    history = train(model, data, steps=steps, lr=lr, seed=seed, record_every=50)
                    final[a, i, j, k] = _final(history)
    return {"scales": np.array(scales), "final_accuracy": final}


def deep_sigmoid(
    depth: int = 10, steps: int = 3000, lr: float = 0.5, seed: int = 0, record_every: int = 50
) -> dict[str, np.ndarray]:
    """A ``depth``-layer sigmoid network (100 units each), without and with BN.

    Returns steps (k,), test_accuracy (2, k) and grad_norms (2, depth): the
    gradient norm of each hidden layer's weights on the first mini-batch,
    before any update.
    """
    data = load_digits()
    accs, grads = [], []
    for norm in ("none", "batch"):
        model = make_mlp(hidden=(100,) * depth, norm=norm, activation="sigmoid", seed=seed)
        grads.append(_first_layer_gradients(model, data.x_train[:60], data.y_train[:60]))
        history = train(model, data, steps=steps, lr=lr, seed=seed, record_every=record_every)
        accs.append(history.test_accuracy)
    return {"steps": history.steps, "test_accuracy": np.array(accs),
            "grad_norms": np.array(grads)}


def _first_layer_gradients(model: nn.Sequential, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    loss = nn.functional.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y))
    model.zero_grad()
    loss.backward()
    norms = [m.weight.grad.norm().item() for m in model[:-1] if isinstance(m, nn.Linear)]
    model.zero_grad()
    return np.array(norms)


def dropout(
    rates: Sequence[float] = (0.0, 0.5),
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 4000,
    lr: float = 0.5,
    record_every: int = 100,
) -> dict[str, np.ndarray]:
    """Train and test accuracy over training, with/without BN and with/without dropout.

    Returns steps (k,), train_accuracy and test_accuracy (2, R, S, k): norm
    (none, BN), dropout rate, seed, record.
    """
    data = load_digits()
    shape = (2, len(rates), len(seeds))
    train_acc, test_acc = np.zeros(shape, dtype=object), np.zeros(shape, dtype=object)
    for i, norm in enumerate(("none", "batch")):
        for j, rate in enumerate(rates):
            for k, seed in enumerate(seeds):
                model = make_mlp(norm=norm, activation="sigmoid", dropout=rate, seed=seed)
                history = train(model, data, steps=steps, lr=lr, seed=seed,
                                record_every=record_every)
                train_acc[i, j, k], test_acc[i, j, k] = (history.train_accuracy,
                                                         history.test_accuracy)
    return {"rates": np.array(rates), "steps": history.steps,
            "train_accuracy": np.array(train_acc.tolist()),
            "test_accuracy": np.array(test_acc.tolist())}


#: The starting point of the recipe: a BN network trained as a plain one would be.
RECIPE_BASELINE = {"lr": 0.1, "dropout": 0.5, "weight_decay": 1e-3,
                   "lr_decay": 0.5 ** (1 / 1500), "reshuffle": False}
#: Section 4.2.1's changes that apply to an MLP on digits, each as an override.
RECIPE_CHANGES = {
    "baseline": {},
    "higher learning rate (x5)": {"lr": 0.5},
    "remove dropout": {"dropout": 0.0},
    "L2 reduced 5x": {"weight_decay": 2e-4},
    "decay 6x faster": {"lr_decay": 0.5 ** (1 / 250)},
    "reshuffle every epoch": {"reshuffle": True},
    "all of the above": {"lr": 0.5, "dropout": 0.0, "weight_decay": 2e-4,
                         "lr_decay": 0.5 ** (1 / 250), "reshuffle": True},
}


def recipe(
    seeds: Sequence[int] = (0, 1), steps: int = 3000, record_every: int = 50
) -> dict[str, np.ndarray]:
    """Section 4.2.1's recipe for BN networks, one change at a time and all together.

    Returns names (V,), steps (k,) and test_accuracy (V, S, k), the variants in
    the order of :data:`RECIPE_CHANGES`.
    """
    data = load_digits()
    accs = np.zeros((len(RECIPE_CHANGES), len(seeds)), dtype=object)
    for i, change in enumerate(RECIPE_CHANGES.values()):
        settings = {**RECIPE_BASELINE, **change}
        for k, seed in enumerate(seeds):
            model = make_mlp(norm="batch", activation="sigmoid", dropout=settings["dropout"],
                             seed=seed)
            history = train(model, data, steps=steps, seed=seed, record_every=record_every,
                            lr=settings["lr"], weight_decay=settings["weight_decay"],
                            lr_decay=settings["lr_decay"], reshuffle=settings["reshuffle"])
            accs[i, k] = history.test_accuracy
    return {"names": np.array(list(RECIPE_CHANGES)), "steps": history.steps,
            "test_accuracy": np.array(accs.tolist())}


def noisy_bn(
    noise: float = 0.5, steps: int = 3000, lr: float = 0.5, seed: int = 0, record_every: int = 50
) -> dict[str, np.ndarray]:
    """Santurkar et al. (2018): BN followed by random, time-varying scale and shift.

    Three sigmoid networks (Figure 1's architecture): no BN, BN, BN + noise of
    scale ``noise``. Returns names (3,), steps (k,), test_accuracy (3, k) and
    percentiles (3, k - 1, 3) of the input of unit 0 of the last hidden layer *as
    seen during training* (the latest mini-batch, noise included) at every
    record after step 0.
    """
    data = load_digits()
    variants = {"no BN": ("none", 0.0), "BN": ("batch", 0.0), "BN + noise": ("batch", noise)}
    accs, percentiles = [], []
    for norm, noise_scale in variants.values():
        model = make_mlp(norm=norm, activation="sigmoid", noise_after_norm=noise_scale, seed=seed)
        seen: list[torch.Tensor] = []

        def keep_training_batch(module, inputs, output, seen=seen):
            if module.training:
                seen[:] = [output[:, 0].detach()]

        model[activation_inputs(model)[-1]].register_forward_hook(keep_training_batch)

        def batch_percentiles(model, step, seen=seen):
            if not seen:  # before the first step: no training batch yet
                return {f"p{p}": np.nan for p in PERCENTILES}
            values = np.percentile(seen[0].double().numpy(), PERCENTILES)
            return {f"p{p}": v for p, v in zip(PERCENTILES, values, strict=True)}

        history = train(model, data, steps=steps, lr=lr, seed=seed, record_every=record_every,
                        callback=batch_percentiles)
        accs.append(history.test_accuracy)
        percentiles.append(np.stack([history.extra[f"p{p}"] for p in PERCENTILES], axis=1)[1:])
    return {"names": np.array(list(variants)), "steps": history.steps,
            "test_accuracy": np.array(accs), "percentiles": np.array(percentiles)}


def smoothness(
    steps: int = 2000,
    lr: float = 0.1,
    step_multiples: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
    probe_size: int = 500,
    seed: int = 0,
    record_every: int = 100,
) -> dict[str, np.ndarray]:
    """Santurkar et al.'s loss-landscape measurements along the gradient, without and with BN.

    ReLU networks (3 x 100). At each record, on a fixed set of ``probe_size``
    training examples (in training mode, on a copy of the network), take the
    gradient g at the current weights w and, for each s = multiple * lr, the
    loss and the gradient at w - s g. Records the range (max - min) of those
    losses ("loss variation") and the largest ||grad(w - s g) - g|| / ||s g||
    ("effective beta-smoothness"). Returns steps (k,), loss_range (2, k) and
    beta_smoothness (2, k); row 0 without BN, row 1 with BN.
    """
    data = load_digits()
    x_probe = torch.as_tensor(data.x_train[:probe_size])
    y_probe = torch.as_tensor(data.y_train[:probe_size])
    results: dict[str, list] = {"loss_range": [], "beta_smoothness": []}
    for norm in ("none", "batch"):
        def along_gradient(model, step):
            return _landscape(model, x_probe, y_probe, [m * lr for m in step_multiples])

        model = make_mlp(norm=norm, activation="relu", seed=seed)
        history = train(model, data, steps=steps, lr=lr, seed=seed, record_every=record_every,
                        callback=along_gradient)
        results["loss_range"].append(history.extra["loss_range"])
        results["beta_smoothness"].append(history.extra["beta_smoothness"])
    return {"steps": history.steps, **{k: np.array(v) for k, v in results.items()}}


def _loss_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])


def _landscape(model: nn.Module, x, y, step_sizes: Sequence[float]) -> dict[str, float]:
    probe = copy.deepcopy(model).train()  # a copy: BN's running stats of the real model stay put
    _, grad = _loss_and_grad(probe, x, y)
    start = [p.detach().clone() for p in probe.parameters()]
    losses, betas = [], []
    for s in step_sizes:
        with torch.no_grad():
            offset = 0
            for p, p0 in zip(probe.parameters(), start, strict=True):
                p.copy_(p0 - s * grad[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        loss, moved_grad = _loss_and_grad(probe, x, y)
        losses.append(loss)
        betas.append(((moved_grad - grad).norm() / (s * grad.norm())).item())
    return {"loss_range": max(losses) - min(losses), "beta_smoothness": max(betas)}


def batch_size(
    sizes: Sequence[int] = (2, 4, 8, 16, 32, 64),
    norms: Sequence[str] = ("none", "batch", "group", "layer"),
    epochs: int = 20,
    base_lr: float = 0.1,
    seeds: Sequence[int] = (0, 1),
) -> dict[str, np.ndarray]:
    """Test accuracy vs batch size for several normalisations (ReLU, 3 x 100).

    Each run sees ``epochs`` passes over the training set; the learning rate is
    ``base_lr * size / 32`` (the linear scaling rule), so only the batch size
    changes what each step sees. Group norm uses 10 groups of 10 units.
    Returns sizes (B,), norms (M,), final_accuracy (M, B, S).
    """
    data = load_digits()
    final = np.zeros((len(norms), len(sizes), len(seeds)))
    for i, norm in enumerate(norms):
        for j, size in enumerate(sizes):
            steps = epochs * (len(data.x_train) // size)
            for k, seed in enumerate(seeds):
                model = make_mlp(norm=norm, activation="relu", seed=seed)
                history = train(model, data, steps=steps, lr=base_lr * size / 32,
                                batch_size=size, seed=seed, record_every=max(1, steps // 20))
                final[i, j, k] = _final(history, last=3)
    return {"sizes": np.array(sizes), "norms": np.array(norms), "final_accuracy": final}


EXPERIMENTS: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    f.__name__: f
    for f in (figure1, lr_sweep, init_scale, deep_sigmoid, dropout, recipe, noisy_bn,
              smoothness, batch_size)
}

#: Overrides for ``--quick``: a smoke run of a few seconds (numbers mean nothing).
QUICK = {
    "figure1": {"steps": 20, "record_every": 10},
    "lr_sweep": {"lrs": (0.1, 1.0), "seeds": (0,), "steps": 50},
    "init_scale": {"scales": (0.1, 1.0), "seeds": (0,), "steps": 50},
    "deep_sigmoid": {"depth": 3, "steps": 20, "record_every": 10},
    "dropout": {"seeds": (0,), "steps": 20, "record_every": 10},
    "recipe": {"seeds": (0,), "steps": 20, "record_every": 10},
    "noisy_bn": {"steps": 20, "record_every": 10},
    "smoothness": {"steps": 20, "record_every": 10, "probe_size": 50},
    "batch_size": {"sizes": (8, 64), "norms": ("batch", "layer"), "epochs": 1, "seeds": (0,)},
}


def default_config(name: str) -> dict:
    """The keyword defaults of experiment ``name``, as stored in its ``config``."""
    signature = inspect.signature(_experiment(name))
    return json.loads(json.dumps({k: p.default for k, p in signature.parameters.items()}))


def _experiment(name: str) -> Callable[..., dict[str, np.ndarray]]:
    if name not in EXPERIMENTS:
        raise ValueError(f"name: expected one of {sorted(EXPERIMENTS)}, got {name!r}")
    return EXPERIMENTS[name]


def run(name: str, **overrides) -> dict[str, np.ndarray]:
    """Run experiment ``name`` (defaults updated by ``overrides``) on one CPU thread.

    Returns its arrays plus ``"config"``: the JSON of every argument it used.
    """
    config = {**default_config(name), **overrides}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and deterministic
    try:
        results = _experiment(name)(**config)
    finally:
        torch.set_num_threads(threads)
    return {**results, "config": np.array(json.dumps(config))}


def load(path: str | Path) -> dict:
    """Load a result saved by the CLI: arrays by name, ``"config"`` as a dict."""
    with np.load(path, allow_pickle=False) as saved:
        results = {key: saved[key] for key in saved.files}
    results["config"] = json.loads(str(results["config"]))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m bncourse.experiments NAME --out FILE.npz [--quick]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(EXPERIMENTS))
    parser.add_argument("--out", required=True, type=Path, help="where to write the .npz")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run(args.name, **(QUICK[args.name] if args.quick else {}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **results)
    print(f"{args.name}: wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
