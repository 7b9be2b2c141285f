"""Tests of the modules behind chapter 8: bncourse.convnet, bncourse.monitor, bncourse.interactions."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from bncourse import interactions, monitor
from bncourse.convnet import make_convnet, training_step_seconds
from bncourse.data import load_digits
from bncourse.train import make_mlp, precise_batchnorm_, train


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(autouse=True)
def one_thread():
    # tiny networks: with threads competing for 2 shared cores a step is ~50x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- convnet ------------------------------------------------------------------------------


def test_convnet_maps_flat_digits_to_logits_with_bn_replacing_the_bias(digits):
    plain, bn = make_convnet("none"), make_convnet("batch")
    x = torch.as_tensor(digits.x_train[:5])
    assert plain(x).shape == bn(x).shape == (5, 10)
    convs = [m for m in bn if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(c.bias is None for c in convs)  # beta replaces the bias
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain)
    assert all(m.bias is not None for m in plain if isinstance(m, nn.Conv2d))


def test_convnet_is_seeded():
    a, b, c = make_convnet("batch", seed=1), make_convnet("batch", seed=1), make_convnet("batch", seed=2)
    assert torch.equal(a[1].weight, b[1].weight) and not torch.equal(a[1].weight, c[1].weight)


@pytest.mark.parametrize(("kwargs", "name"), [({"norm": "layer"}, "norm"), ({"channels": (4, 4)}, "channels")])
def test_convnet_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_convnet(**kwargs)


def test_step_timings_are_side_by_side_and_positive(digits):
    x, y = torch.as_tensor(digits.x_train[:8]), torch.as_tensor(digits.y_train[:8])
    timings = training_step_seconds({"plain": make_convnet("none"), "bn": make_convnet("batch")},
                                    x, y, repeats=3, warmup=1)
    assert set(timings) == {"plain", "bn"}
    assert all(t.seconds.shape == (3,) and np.all(t.seconds > 0) for t in timings.values())


# --- monitor ------------------------------------------------------------------------------


def test_expected_initial_loss_is_ln_c():
    assert monitor.expected_initial_loss(10) == pytest.approx(math.log(10))
    with pytest.raises(ValueError, match="n_classes"):
        monitor.expected_initial_loss(1)


def test_initial_loss_leaves_the_running_statistics_alone(digits):
    model = make_mlp(norm="batch", activation="sigmoid", seed=0)
    before = model[1].running_mean.clone()
    loss = monitor.initial_loss(model, torch.as_tensor(digits.x_train[:60]),
                                torch.as_tensor(digits.y_train[:60]))
    assert torch.equal(model[1].running_mean, before)
    # a freshly initialised network spreads its probability: within 15% of ln 10
    assert loss == pytest.approx(math.log(10), rel=0.15)


def test_diagnose_training_records_every_step_and_snapshot(digits):
    model = make_mlp(norm="batch", activation="sigmoid", seed=0)
    result = monitor.diagnose_training(model, digits, steps=12, lr=0.5, snapshots=(0, 12))
    assert result["update_ratio"].shape == (12, 4)  # 3 hidden weight matrices + the output layer
    assert result["act_hist"].shape == (2, 3, len(monitor.SIGMOID_BINS) - 1)
    assert result["grad_hist"].shape[:2] == (2, 3) and result["grad_edges"].shape == (2, 41)
    assert np.all(result["act_hist"].sum(axis=-1) == 60 * 100)  # every activation counted
    assert np.all(np.isfinite(result["update_ratio"]))


def test_update_ratio_is_the_log_relative_step(digits):
    """One SGD step by hand: log10(std(lr * grad) / std(W)) of the first layer."""
    model = make_mlp(norm="none", activation="sigmoid", seed=0)
    probe = copy.deepcopy(model)
    result = monitor.diagnose_training(model, digits, steps=1, lr=0.5, snapshots=(0,))
    idx = torch.randperm(len(digits.x_train), generator=torch.Generator().manual_seed(0))[:60]
    x, y = torch.as_tensor(digits.x_train)[idx], torch.as_tensor(digits.y_train)[idx]
    nn.functional.cross_entropy(probe(x), y).backward()
    w = probe[0].weight
    expected = math.log10((0.5 * w.grad).std().item() / w.std().item())
    assert result["update_ratio"][0, 0] == pytest.approx(expected, abs=1e-4)  # float32 rounding


def test_jacobian_singular_values_match_the_chain_rule_by_hand(digits):
    """Plain network: d x_hat_3 / d x_hat_2 = diag(1/s_3) W_3 diag(sigmoid'(x_2)) diag(s_2)."""
    model = make_mlp(norm="none", activation="sigmoid", seed=0).double()
    x_train, probe = torch.as_tensor(digits.x_train).double(), torch.as_tensor(digits.x_test[:1]).double()
    values = monitor.jacobian_singular_values(model, x_train, probe, layer=2)
    with torch.no_grad():
        pre2_all, pre3_all = model[:3](x_train), model[:5](x_train)
        pre2 = model[:3](probe)[0]
    s2, s3 = pre2_all.std(dim=0), pre3_all.std(dim=0)
    slope = torch.sigmoid(pre2) * (1 - torch.sigmoid(pre2))
    jacobian = (model[4].weight * slope * s2) / s3[:, None]
    expected = torch.linalg.svdvals(jacobian.detach()).numpy()
    np.testing.assert_allclose(values[0], expected, rtol=1e-10)  # float64 throughout


def test_snapshots_beyond_the_run_are_refused(digits):
    with pytest.raises(ValueError, match="snapshots"):
        monitor.diagnose_training(make_mlp(), digits, steps=5, lr=0.1, snapshots=(0, 10))


# --- interactions -------------------------------------------------------------------------


def test_composed_batches_hold_the_requested_classes():
    y = load_digits().y_train
    rng = np.random.default_rng(0)
    for classes in (1, 2, 10):
        batches = interactions._composed_batches(y, classes, 60, rng)
        for _ in range(5):
            batch = next(batches)
            assert len(batch) == 60
            if classes < 10:
                assert len(np.unique(y[batch])) == classes


def test_recomputed_statistics_remove_the_variance_shift_and_keep_dropout(digits):
    model = make_mlp(norm="batch", activation="relu", dropout=0.5, seed=0)
    train(model, digits, steps=200, lr=0.1, record_every=200)
    x = torch.as_tensor(digits.x_train)
    inference_var = interactions._bn_input_variances(model, x)
    running = [m.running_var.double().numpy() for m in model if isinstance(m, nn.BatchNorm1d)]
    # the BN of hidden layer 3 follows a dropout: its running variance is inflated
    assert np.median(running[2] / inference_var[2]) > 1.1
    interactions.recompute_bn_statistics_(model, x)
    recomputed = [m.running_var.double().numpy() for m in model if isinstance(m, nn.BatchNorm1d)]
    # at inference, layer 3's input now comes from layer 2 normalised with its new statistics
    inference_var = interactions._bn_input_variances(model, x)
    # mean of unbiased batch variances vs the variance over all 1,348 images: equal in
    # expectation; 22 batches of 60 leave a few percent of sampling error per unit
    assert np.median(recomputed[2] / inference_var[2]) == pytest.approx(1.0, abs=0.05)
    assert all(m.p == 0.5 for m in model if isinstance(m, nn.Dropout))  # dropout restored


def test_recomputed_statistics_undo_an_affine_change_of_the_inputs(digits):
    """The first layer has no bias, so dimming changes each pre-activation by a positive scale and
    a shift, which statistics recomputed on the dimmed images absorb (up to epsilon and float32)."""
    model = make_mlp(norm="batch", activation="relu", seed=0)
    train(model, digits, steps=100, lr=0.1, record_every=100)
    dim = interactions.DOMAINS["dimmed"]
    x_train, x_test = digits.x_train, digits.x_test
    original = precise_batchnorm_(copy.deepcopy(model), torch.as_tensor(x_train))
    adapted = precise_batchnorm_(copy.deepcopy(model), torch.as_tensor(dim(x_train, None)))
    with torch.no_grad():
        want, got = original(torch.as_tensor(x_test)), adapted(torch.as_tensor(dim(x_test, None)))
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
