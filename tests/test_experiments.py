"""Tests of bncourse.experiments: smoke runs, the CLI, the loader the chapters use, and that
cached results are neither stale nor out of reach of an installed package (Colab)."""

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from bncourse import experiments

ROOT = Path(__file__).resolve().parents[1]
CACHED = sorted(experiments.CACHE.glob("*.npz"))
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))


@pytest.fixture(autouse=True)
def one_thread():
    # tiny networks: with threads competing for 2 shared cores a step is ~50x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_unknown_experiment_is_named():
    with pytest.raises(ValueError, match="name"):
        experiments.run("figure2")
    with pytest.raises(ValueError, match="name"):
        experiments.load("figure2")


def test_every_experiment_has_a_quick_configuration():
    assert set(experiments.QUICK) == set(experiments.EXPERIMENTS)
    for name, overrides in experiments.QUICK.items():
        assert set(overrides) <= set(experiments.default_config(name)), name


def test_figure1_quick_shapes_and_ordered_percentiles():
    results = experiments.run("figure1", **experiments.QUICK["figure1"])
    assert results["steps"].tolist() == [0, 10, 20]
    assert results["test_accuracy"].shape == (2, 1, 3)  # network, seed, record
    assert results["percentiles"].shape == (2, 1, 2, 3, 3)  # network, seed, unit, record, p
    assert results["batch_percentiles"].shape == (2, 1, 2, 3)  # no training batch at step 0
    for key in ("percentiles", "batch_percentiles"):
        assert np.all(np.diff(results[key], axis=-1) >= 0)  # 15th <= 50th <= 85th


def test_noisy_bn_shares_figure1s_configuration():
    """Chapter 7 compares the noisy network with figure1's cached runs: same set-up (error 9)."""
    figure1, noisy = experiments.default_config("figure1"), experiments.default_config("noisy_bn")
    shared = set(figure1) & set(noisy)
    assert {"steps", "lr", "batch_size", "record_every", "seeds"} <= shared
    assert {k: figure1[k] for k in shared} == {k: noisy[k] for k in shared}


def test_smoothness_quick_measures_are_positive():
    results = experiments.run("smoothness", **experiments.QUICK["smoothness"])
    # a step along a nonzero gradient changes the loss and the gradient
    assert np.all(results["loss_range"] > 0) and np.all(results["beta_smoothness"] > 0)


def test_cli_writes_a_loadable_file(tmp_path):
    out = tmp_path / "recipe.npz"
    experiments.main(["recipe", "--out", str(out), "--quick"])
    results = experiments.load_file(out)
    n_variants = len(experiments.RECIPE_CHANGES)
    assert results["test_accuracy"].shape == (n_variants, 1, 3)
    assert results["config"]["steps"] == 20
    assert results["names"].tolist() == list(experiments.RECIPE_CHANGES)


def test_cli_refuses_to_overwrite_the_cache_with_a_smoke_run():
    with pytest.raises(SystemExit):
        experiments.main(["recipe", "--quick"])


# --- The loader: cache inside the package, regeneration when missing or stale ---------------


@pytest.fixture
def toy_experiment(monkeypatch, tmp_path):
    """A registered experiment of a few microseconds, with an empty cache folder."""
    calls = []

    def toy(scale: float = 2.0) -> dict:
        calls.append(scale)
        return {"values": np.arange(3) * scale}

    monkeypatch.setitem(experiments.EXPERIMENTS, "toy", toy)
    monkeypatch.setattr(experiments, "CACHE", tmp_path)
    return calls


def test_load_reads_the_cache_without_running(toy_experiment, tmp_path):
    np.savez(tmp_path / "toy.npz", values=np.array([7.0]), config=np.array(json.dumps({"scale": 2.0})))
    results = experiments.load("toy")
    assert results["values"].tolist() == [7.0] and toy_experiment == []


@pytest.mark.parametrize("cached_config", [None, {"scale": 3.0}], ids=["missing", "stale"])
def test_load_regenerates_a_missing_or_stale_cache(toy_experiment, tmp_path, cached_config):
    if cached_config is not None:
        np.savez(tmp_path / "toy.npz", values=np.array([7.0]), config=np.array(json.dumps(cached_config)))
    results = experiments.load("toy")
    assert results["values"].tolist() == [0.0, 2.0, 4.0] and toy_experiment == [2.0]
    assert results["config"] == {"scale": 2.0}
    with pytest.raises(FileNotFoundError, match="python -m bncourse.experiments toy"):
        experiments.load("toy", regenerate=False)


# --- The caches themselves --------------------------------------------------------------


def test_the_cache_is_package_data():
    """`pip install` of the repository (Colab, Binder) must bring the cached results along."""
    assert experiments.CACHE.parent == Path(experiments.__file__).parent
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "cached/*.npz" in package_data["bncourse"]


@pytest.mark.parametrize("path", CACHED, ids=[p.stem for p in CACHED])
def test_cached_result_matches_the_current_configuration(path):
    """A cached file is stale if the experiment's defaults changed since it was written."""
    results = experiments.load_file(path)
    assert path.stem in experiments.EXPERIMENTS
    assert results["config"] == experiments.default_config(path.stem), (
        f"{path} is stale: rerun `python -m bncourse.experiments {path.stem}`"
    )
    for key, value in results.items():
        if key != "config" and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), f"{path}: {key} has non-finite values"


# The start of a cached run, recomputed from today's code: (overrides, what to compare). What to
# compare maps a key to a slice, or to a list of slices and (slice, tolerance) pairs.
PREFIXES = {
    "figure1": ({"seeds": [0], "steps": 100},
                {"test_accuracy": np.s_[:, :1, :3], "percentiles": np.s_[:, :1, :, :3],
                 "batch_percentiles": np.s_[:, :1, :2]}),
    "deep_sigmoid": ({"steps": 50}, {"grad_norms": np.s_[:], "test_accuracy": np.s_[:, :2]}),
    "recipe": ({"seeds": [0], "steps": 100}, {"test_accuracy": np.s_[:, :1, :3]}),
    "noisy_bn": ({"seeds": [0], "steps": 100},
                 {"test_accuracy": np.s_[:1, :3], "batch_percentiles": np.s_[:1, :2]}),
    "diagnostics": ({"steps": 20, "snapshots": [0]},
                    {"initial_loss": np.s_[:], "update_ratio": np.s_[:, :20],
                     "act_hist": np.s_[:, :1], "grad_std": np.s_[:, :1]}),
    # decay 5e-3 at lr = 0.5 (row 2) amplifies rounding that differs between CPUs (BLAS kernels
    # chosen by instruction set): 8.6e-4 relative on sq_norm and 5 test images by step 100
    # where rows 0 and 1 agreed to 1e-7. Row 2 gets 1e-2 on sq_norm, still 40x smaller than
    # what the decay does to it by step 100 (0.63 against 1.03 without decay), and 15 images.
    "weight_decay": ({"seeds": [0], "steps": 100},
                     {"sq_norm": [np.s_[:2, :1, :3], (np.s_[2:, :1, :3], {"rtol": 1e-2})],
                      "test_accuracy": [np.s_[:2, :1, :3], (np.s_[2:, :1, :3], {"atol": 15 / 449})]}),
    # The plain convnet at lr = 0.5 is chaotic (the chapter's point): float32 rounding that
    # differs between CPUs (oneDNN picks its convolution kernels by instruction set) has
    # changed its test accuracy at step 100 by 0.19 while steps 0 and 50 agreed, so that row
    # is compared to step 50 and the stable rows (the smaller lr, and BN) to step 100.
    "convnet": ({"seeds": [0], "steps": 100, "timing_repeats": 1},
                {"test_accuracy": [np.s_[:, :, :1, :2], np.s_[1, :, :1, :3], np.s_[0, :1, :1, :3]]}),
    "jacobian_spectrum": ({"steps": 250}, {"percentiles": np.s_[:, :2]}),
}


@pytest.mark.parametrize("name", sorted(PREFIXES))
def test_cached_result_is_what_the_code_computes(name):
    """Rerun the first steps of a cached experiment and compare with the cache.

    Training is seeded, so the only differences allowed are float32 rounding (a different
    thread count or BLAS can change the order of sums): 1e-4 relative on gradient norms,
    percentiles and weight norms, 1e-3 on the log10 update ratios (a difference of two
    float32 weights), one count per histogram bin, and one test image (1/449) on accuracies.
    """
    cached = experiments.load_file(experiments.cached_path(name))
    overrides, compared = PREFIXES[name]
    fresh = experiments.run(name, **overrides)
    for key, places in compared.items():
        if "accuracy" in key:
            default = {"atol": 1.5 / 449}
        elif key == "update_ratio":
            default = {"atol": 1e-3}
        elif key == "act_hist":
            default = {"atol": 1}
        else:
            default = {"rtol": 1e-4, "atol": 1e-6}
        for place in places if isinstance(places, list) else [places]:
            has_own = isinstance(place, tuple) and isinstance(place[-1], dict)
            where, tolerance = place if has_own else (place, default)
            np.testing.assert_allclose(fresh[key][where], cached[key][where], **tolerance,
                                       err_msg=f"{name}: {key}{where} differs from a fresh run")


# --- The chapters reach their data through the package -----------------------------------

# Experiment results (.npz) must come through experiments.load; other data files a chapter
# ships under book/data/ are tests/test_book.py's concern (the install cell links that folder).
_FILE_LITERAL = re.compile(r"""["'][^"'\n]*\.(?:npz|npy)["']""")
_LOAD = re.compile(r"""experiments\.load\(\s*["'](\w+)["']""")


def _code(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapters_open_no_experiment_result_by_path(chapter):
    """A relative path like data/x.npz exists in the repository, not in an installed package."""
    literals = _FILE_LITERAL.findall(_code(chapter))
    assert not literals, f"{chapter.name} opens {literals}: use experiments.load(name)"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapters_load_only_cached_experiments(chapter):
    for name in _LOAD.findall(_code(chapter)):
        assert name in experiments.EXPERIMENTS, f"{chapter.name}: unknown experiment {name!r}"
        assert experiments.cached_path(name).is_file(), (
            f"{chapter.name} loads {name!r}, which has no cache: the page would rerun it "
            f"at build time; run `python -m bncourse.experiments {name}`"
        )


def test_the_path_check_catches_a_relative_data_path(tmp_path):
    chapter = tmp_path / "x.ipynb"
    source = 'sweep = experiments.load("data/lr_sweep.npz")\n'
    chapter.write_text(json.dumps({"cells": [{"cell_type": "code", "source": [source]}]}))
    assert _FILE_LITERAL.findall(_code(chapter)) == ['"data/lr_sweep.npz"']
