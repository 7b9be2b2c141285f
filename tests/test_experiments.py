"""Tests of bncourse.experiments: smoke runs, the CLI, and that cached results are not stale."""

from pathlib import Path

import numpy as np
import pytest

from bncourse import experiments

DATA = Path(__file__).resolve().parents[1] / "book" / "data"
CACHED = sorted(DATA.glob("*.npz"))


def test_unknown_experiment_is_named():
    with pytest.raises(ValueError, match="name"):
        experiments.run("figure2")


def test_every_experiment_has_a_quick_configuration():
    assert set(experiments.QUICK) == set(experiments.EXPERIMENTS)
    for name, overrides in experiments.QUICK.items():
        assert set(overrides) <= set(experiments.default_config(name)), name


def test_figure1_quick_shapes_and_ordered_percentiles():
    results = experiments.run("figure1", **experiments.QUICK["figure1"])
    assert results["steps"].tolist() == [0, 10, 20]
    assert results["test_accuracy"].shape == (2, 3)
    assert results["percentiles"].shape == (2, 3, 3)
    assert np.all(np.diff(results["percentiles"], axis=-1) >= 0)  # 15th <= 50th <= 85th


def test_smoothness_quick_measures_are_positive():
    results = experiments.run("smoothness", **experiments.QUICK["smoothness"])
    # a step along a nonzero gradient changes the loss and the gradient
    assert np.all(results["loss_range"] > 0) and np.all(results["beta_smoothness"] > 0)


def test_cli_writes_a_loadable_file(tmp_path):
    out = tmp_path / "recipe.npz"
    experiments.main(["recipe", "--out", str(out), "--quick"])
    results = experiments.load(out)
    n_variants = len(experiments.RECIPE_CHANGES)
    assert results["test_accuracy"].shape == (n_variants, 1, 3)
    assert results["config"]["steps"] == 20
    assert results["names"].tolist() == list(experiments.RECIPE_CHANGES)


def test_some_results_are_cached():
    assert CACHED, f"expected cached experiment results in {DATA}"


@pytest.mark.parametrize("path", CACHED, ids=[p.stem for p in CACHED])
def test_cached_result_matches_the_current_configuration(path):
    """A cached file is stale if the experiment's defaults changed since it was written."""
    results = experiments.load(path)
    assert path.stem in experiments.EXPERIMENTS
    assert results["config"] == experiments.default_config(path.stem), (
        f"{path} is stale: rerun `python -m bncourse.experiments {path.stem} --out {path}`"
    )
    for key, value in results.items():
        if key != "config" and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), f"{path}: {key} has non-finite values"


# The start of a cached run, recomputed from today's code: (experiment, overrides, slices to compare)
PREFIXES = {
    "deep_sigmoid": ({"steps": 50}, {"grad_norms": np.s_[:], "test_accuracy": np.s_[:, :2]}),
    "recipe": ({"seeds": [0], "steps": 100}, {"test_accuracy": np.s_[:, :1, :3]}),
    "noisy_bn": ({"steps": 100}, {"test_accuracy": np.s_[:, :3], "percentiles": np.s_[:, :2]}),
}


@pytest.mark.parametrize("name", sorted(PREFIXES))
def test_cached_result_is_what_the_code_computes(name):
    """Rerun the first steps of a cached experiment and compare with the cache.

    Training is seeded, so the only differences allowed are float32 rounding (a different
    thread count or BLAS can change the order of sums): 1e-4 relative on gradient norms and
    percentiles, and one test image (1/449) on accuracies.
    """
    path = DATA / f"{name}.npz"
    cached = experiments.load(path)
    overrides, compared = PREFIXES[name]
    fresh = experiments.run(name, **overrides)
    for key, where in compared.items():
        tolerance = {"atol": 1.5 / 449} if "accuracy" in key else {"rtol": 1e-4, "atol": 1e-6}
        np.testing.assert_allclose(fresh[key][where], cached[key][where], **tolerance,
                                   err_msg=f"{path}: {key} differs from a fresh run")
