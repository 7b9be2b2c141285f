"""The training experiments of chapters 6 and 7 (and 7b), each regenerable from the command line.

Every experiment is a function whose keyword defaults *are* its configuration;
it returns a dict of NumPy arrays (plus ``"config"``, the JSON of the
arguments it ran with). The chapters load them with :func:`load`, from files
cached inside the package (``bncourse/cached/``, installed with it); regenerate
any of them with::

    python -m bncourse.experiments NAME

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

from bncourse.convnet import convnet
from bncourse.data import load_digits
from bncourse.interactions import batch_composition, domain_shift, variance_shift, weight_decay
from bncourse.monitor import diagnostics, jacobian_spectrum
from bncourse.train import History, activation_inputs, make_mlp, train

PERCENTILES = (15, 50, 85)


def _final(history: History, last: int = 5) -> float:
    """Mean test accuracy of the last ``last`` records: one record can catch a loss spike."""
    return float(np.mean(history.test_accuracy[-last:]))


def _sigmoid_run(
    norm: str, noise: float, seed: int, units: Sequence[int], *, steps: int, lr: float,
    batch_size: int, record_every: int, data,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One run of Figure 1's network (3 x 100 sigmoid units); what the book plots of it.

    Returns steps (k,), test_accuracy (k,), test_percentiles (U, k, 3): the 15th, 50th
    and 85th percentiles of the input of each of ``units`` of the last hidden layer
    on the test set in inference mode, and batch_percentiles (k - 1, 3): those of
    unit ``units[0]`` on the latest training mini-batch (noise included), from the
    first step on.
    """
    model = make_mlp(norm=norm, activation="sigmoid", noise_after_norm=noise, seed=seed)
    layer = activation_inputs(model)[-1]
    x_test = torch.as_tensor(data.x_test)
    seen: list[torch.Tensor] = []

    def keep_training_batch(module, inputs, output):
        if module.training:
            seen[:] = [output[:, units[0]].detach()]

    model[layer].register_forward_hook(keep_training_batch)

    def percentiles(model, step):
        was_training = model.training
        model.eval()
        with torch.no_grad():
            values = model[: layer + 1](x_test)[:, list(units)].double().numpy()
        model.train(was_training)
        test = np.percentile(values, PERCENTILES, axis=0)  # (3, U)
        batch = (np.percentile(seen[0].double().numpy(), PERCENTILES) if seen
                 else np.full(len(PERCENTILES), np.nan))  # no training batch before step 1
        return {"test": test.T, "batch": batch}

    history = train(model, data, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                    record_every=record_every, callback=percentiles)
    test = np.transpose(history.extra["test"], (1, 0, 2))
    return history.steps, history.test_accuracy, test, history.extra["batch"][1:]


def figure1(
    steps: int = 4000,
    lr: float = 0.5,
    batch_size: int = 60,
    record_every: int = 50,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    units: Sequence[int] = (0, 1, 2, 3, 4),
) -> dict[str, np.ndarray]:
    """The paper's Figure 1 on digits: 3 x 100 sigmoid units, batch 60, with and without BN.

    One run per seed and network. Returns steps (k,), test_accuracy (2, S, k),
    percentiles (2, S, U, k, 3): the 15th, 50th and 85th percentiles of the input
    of each of ``units`` of the last hidden layer, on the test set in inference
    mode, and batch_percentiles (2, S, k - 1, 3): those of unit ``units[0]`` on the
    latest training mini-batch. Row 0 is without BN, row 1 with BN. This is the one
    cached run of these two networks: chapter 7 compares with it too.
    """
    data = load_digits()
    results: dict[str, list] = {"test_accuracy": [], "percentiles": [], "batch_percentiles": []}
    for norm in ("none", "batch"):
        rows = [_sigmoid_run(norm, 0.0, seed, units, steps=steps, lr=lr, batch_size=batch_size,
                             record_every=record_every, data=data) for seed in seeds]
        for key, i in (("test_accuracy", 1), ("percentiles", 2), ("batch_percentiles", 3)):
            results[key].append([row[i] for row in rows])
    return {"steps": rows[0][0], **{k: np.array(v) for k, v in results.items()}}


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
    noise: float = 0.5,
    steps: int = 4000,
    lr: float = 0.5,
    batch_size: int = 60,
    record_every: int = 50,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
) -> dict[str, np.ndarray]:
    """Santurkar et al. (2018): Figure 1's BN network followed by random scale and shift.

    After every BN layer, :class:`bncourse.train.FixedNoise` of scale ``noise``.
    Everything else is :func:`figure1`'s configuration, so the book compares this
    run with :func:`figure1`'s networks instead of training them again. Returns
    steps (k,), test_accuracy (S, k) and batch_percentiles (S, k - 1, 3): the
    percentiles of the input of unit 0 of the last hidden layer as seen during
    training (the latest mini-batch, noise included).
    """
    data = load_digits()
    rows = [_sigmoid_run("batch", noise, seed, (0,), steps=steps, lr=lr, batch_size=batch_size,
                         record_every=record_every, data=data) for seed in seeds]
    return {"steps": rows[0][0], "test_accuracy": np.array([row[1] for row in rows]),
            "batch_percentiles": np.array([row[3] for row in rows])}


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
              smoothness, batch_size, convnet, diagnostics, weight_decay, variance_shift,
              batch_composition, domain_shift, jacobian_spectrum)
}

#: Overrides for ``--quick``: a smoke run of a few seconds (numbers mean nothing).
QUICK = {
    "figure1": {"steps": 20, "record_every": 10, "seeds": (0,), "units": (0, 1)},
    "lr_sweep": {"lrs": (0.1, 1.0), "seeds": (0,), "steps": 50},
    "init_scale": {"scales": (0.1, 1.0), "seeds": (0,), "steps": 50},
    "deep_sigmoid": {"depth": 3, "steps": 20, "record_every": 10},
    "dropout": {"seeds": (0,), "steps": 20, "record_every": 10},
    "recipe": {"seeds": (0,), "steps": 20, "record_every": 10},
    "noisy_bn": {"steps": 20, "record_every": 10, "seeds": (0,)},
    "smoothness": {"steps": 20, "record_every": 10, "probe_size": 50},
    "batch_size": {"sizes": (8, 64), "norms": ("batch", "layer"), "epochs": 1, "seeds": (0,)},
    "convnet": {"lrs": (0.1,), "seeds": (0,), "steps": 20, "record_every": 10, "timing_repeats": 3},
    "diagnostics": {"steps": 20, "snapshots": (0, 20)},
    "weight_decay": {"decays": (0.0, 1e-2), "seeds": (0,), "steps": 20, "record_every": 10},
    "variance_shift": {"rates": (0.0, 0.5), "seeds": (0,), "steps": 20},
    "batch_composition": {"classes_per_batch": (10, 1), "seeds": (0,), "steps": 20, "test_batches": 2},
    "domain_shift": {"domains": ("original", "dimmed"), "seeds": (0,), "steps": 20},
    "jacobian_spectrum": {"steps": 20, "record_every": 10, "probes": 5},
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


#: Where the cached results live: inside the package, so that ``pip install`` of the
#: repository (Colab, Binder) brings them along with the code that made them.
CACHE = Path(__file__).resolve().parent / "cached"


def cached_path(name: str) -> Path:
    """The file that caches experiment ``name``'s default run."""
    _experiment(name)  # a clear error for an unknown name
    return CACHE / f"{name}.npz"


def load_file(path: str | Path) -> dict:
    """Load a result saved by the CLI: arrays by name, ``"config"`` as a dict."""
    with np.load(path, allow_pickle=False) as saved:
        results = {key: saved[key] for key in saved.files}
    results["config"] = json.loads(str(results["config"]))
    return results


def load(name: str, regenerate: bool = True) -> dict:
    """The default run of experiment ``name``: from the package's cache, or computed afresh.

    Chapters call this instead of opening a data file, so they work wherever the
    package is installed. Without a cache file (or with a stale one, whose stored
    configuration differs from the current defaults) the experiment is rerun when
    ``regenerate`` is true (this can take minutes) and the result is returned
    without writing anything; otherwise a ``FileNotFoundError`` names the command
    that rebuilds the cache.
    """
    path = cached_path(name)
    if path.exists():
        results = load_file(path)
        if results["config"] == default_config(name):
            return results
    if not regenerate:
        raise FileNotFoundError(
            f"{path}: no up-to-date cache of {name!r}; rebuild it with "
            f"`python -m bncourse.experiments {name}`"
        )
    print(f"bncourse.experiments: no up-to-date cache of {name!r}, running it (may take minutes)")
    results = run(name)
    results["config"] = json.loads(str(results["config"]))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m bncourse.experiments NAME [--out FILE.npz] [--quick]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(EXPERIMENTS))
    parser.add_argument("--out", type=Path, help="where to write the .npz (default: the cache)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick needs --out: a smoke run must not replace the cache")
    out = args.out or cached_path(args.name)
    start = time.perf_counter()
    results = run(args.name, **(QUICK[args.name] if args.quick else {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **results)
    print(f"{args.name}: wrote {out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
