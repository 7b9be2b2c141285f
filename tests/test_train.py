"""Tests of bncourse.train: the MLP builder, the seeded training loop, precise BN."""

import numpy as np
import pytest
import torch
from torch import nn

from bncourse.data import load_digits
from bncourse.train import (
    FixedNoise,
    accuracy,
    activation_inputs,
    make_mlp,
    minibatch_order,
    precise_batchnorm_,
    train,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(autouse=True)
def one_thread():
    # the networks are tiny: with threads competing for 2 shared cores a step is ~50x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_layer_order_puts_the_norm_before_the_nonlinearity():
    model = make_mlp(hidden=(20, 30), norm="batch", activation="sigmoid", dropout=0.5)
    kinds = [type(m) for m in model]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.Sigmoid, nn.Dropout,
                     nn.Linear, nn.BatchNorm1d, nn.Sigmoid, nn.Dropout, nn.Linear]
    # beta replaces the bias, so normalised linear layers have none; the head keeps its bias
    assert model[0].bias is None and model[4].bias is None and model[-1].bias is not None
    assert activation_inputs(model) == [1, 5]


def test_plain_network_has_biases_and_probes_the_linear_output():
    model = make_mlp(hidden=(10,), norm="none", activation="relu")
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]
    assert model[0].bias is not None
    assert activation_inputs(model) == [0]


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_weight_scale_multiplies_the_lecun_std(scale):
    model = make_mlp(n_in=400, hidden=(300,), weight_scale=scale, seed=3)
    std = model[0].weight.std().item()
    # 120,000 Gaussian draws: the sample std is within ~0.2% of the truth; 2% is loose
    assert std == pytest.approx(scale / np.sqrt(400), rel=0.02)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"norm": "batchnorm"}, "norm"), ({"activation": "gelu"}, "activation"),
     ({"dropout": 1.0}, "dropout"), ({"weight_scale": 0.0}, "weight_scale")],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_mlp(**kwargs)


def test_bad_training_arguments_are_named(digits):
    model = make_mlp()
    with pytest.raises(ValueError, match="lr"):
        train(model, digits, steps=1, lr=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        train(model, digits, steps=1, lr=0.1, batch_size=10_000)
    with pytest.raises(ValueError, match="lr_decay"):
        train(model, digits, steps=1, lr=0.1, lr_decay=1.5)
    with pytest.raises(ValueError, match="weight_decay"):
        train(model, digits, steps=1, lr=0.1, weight_decay=-1.0)


def test_training_is_seeded_and_learns(digits):
    runs = [train(make_mlp(norm="batch", seed=s), digits, steps=150, lr=0.5, seed=s,
                  record_every=50) for s in (0, 0, 1)]
    np.testing.assert_array_equal(runs[0].test_accuracy, runs[1].test_accuracy)
    np.testing.assert_array_equal(runs[0].train_loss[1:], runs[1].train_loss[1:])
    assert not np.array_equal(runs[0].train_loss[1:], runs[2].train_loss[1:])
    assert runs[0].steps.tolist() == [0, 50, 100, 150]
    # ten classes: an untrained net is near 10%; 150 BN steps reach well above 80%
    assert runs[0].test_accuracy[0] < 0.3 and runs[0].test_accuracy[-1] > 0.8


def test_probe_percentiles_match_the_pre_activation(digits):
    model = make_mlp(norm="batch", seed=0)
    layer = activation_inputs(model)[-1]
    history = train(model, digits, steps=40, lr=0.5, record_every=20, probe=(layer, 7),
                    percentiles=(10, 50, 90))
    model.eval()
    with torch.no_grad():
        values = model[: layer + 1](torch.as_tensor(digits.x_test))[:, 7].double().numpy()
    # same float32 activations, same linear-interpolation percentile: agreement to rounding
    np.testing.assert_allclose(history.probe_percentiles[-1], np.percentile(values, [10, 50, 90]),
                               rtol=1e-6, atol=1e-6)
    assert history.probe_percentiles.shape == (3, 3)


def _first_inputs_per_step(digits, reshuffle):
    model = make_mlp(hidden=(5,))
    seen = []
    model[0].register_forward_hook(
        lambda m, inputs, out: seen.append(inputs[0].clone()) if m.training else None)
    per_epoch = len(digits.x_train) // 300
    train(model, digits, steps=2 * per_epoch, lr=0.1, batch_size=300, reshuffle=reshuffle,
          record_every=100)
    return seen[0], seen[per_epoch]


def test_reshuffle_controls_whether_batches_repeat(digits):
    first, next_epoch = _first_inputs_per_step(digits, reshuffle=False)
    assert torch.equal(first, next_epoch)
    first, next_epoch = _first_inputs_per_step(digits, reshuffle=True)
    assert not torch.equal(first, next_epoch)


def test_minibatch_order_cuts_each_epoch_from_one_permutation():
    n, batch_size, per_epoch = 10, 3, 3  # 10 // 3: one example of each epoch is left over
    for reshuffle in (True, False):
        batches = minibatch_order(n, batch_size, torch.Generator().manual_seed(0), reshuffle)
        epochs = [torch.cat([next(batches) for _ in range(per_epoch)]) for _ in range(3)]
        for epoch in epochs:
            assert len(epoch) == per_epoch * batch_size and len(set(epoch.tolist())) == len(epoch)
        repeats = [torch.equal(epochs[0], later) for later in epochs[1:]]
        assert repeats == [not reshuffle] * 2


def test_divergence_stops_and_pads(digits):
    model = make_mlp(activation="relu", weight_scale=10.0)
    history = train(model, digits, steps=200, lr=50.0, record_every=20)
    assert history.diverged_at is not None and history.diverged_at < 200
    assert history.steps.tolist() == list(range(0, 201, 20))
    assert len(history.test_accuracy) == len(history.steps)


def test_callback_values_are_recorded(digits):
    history = train(make_mlp(), digits, steps=20, lr=0.1, record_every=10,
                    callback=lambda model, step: {"step_twice": 2.0 * step})
    assert history.extra["step_twice"].tolist() == [0.0, 20.0, 40.0]


def test_precise_batchnorm_sets_population_statistics(digits):
    model = make_mlp(hidden=(16,), norm="batch", seed=0)
    train(model, digits, steps=30, lr=0.5, record_every=30)
    x = torch.as_tensor(digits.x_train[:600])
    precise_batchnorm_(model, x, batch_size=60)
    with torch.no_grad():
        pre = model[0](x).double().reshape(10, 60, 16)  # input of BN, batch by batch
    # Algorithm 2: E[x] = mean of batch means, Var[x] = m/(m-1) * mean of batch variances
    expected_mean = pre.mean(dim=1).mean(dim=0)
    expected_var = pre.var(dim=1, unbiased=True).mean(dim=0)
    bn = model[1]
    # float32 running sums over 10 batches: relative error ~1e-6; 1e-5 leaves margin
    torch.testing.assert_close(bn.running_mean.double(), expected_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var.double(), expected_var, rtol=1e-5, atol=1e-6)
    assert not model.training and bn.momentum == 0.1


def test_precise_batchnorm_needs_a_bn_layer():
    with pytest.raises(ValueError, match="BatchNorm"):
        precise_batchnorm_(make_mlp(norm="layer"), torch.zeros(60, 64))


def test_fixed_noise_is_shared_over_the_batch_and_off_in_eval():
    noise = FixedNoise(0.5)
    x = torch.ones(8, 4)
    noisy = noise(x)
    assert not torch.equal(noisy, x)
    # one scale and shift per unit: every row of a constant input gets the same noise
    assert torch.equal(noisy, noisy[:1].expand(8, 4))
    assert torch.equal(noise.eval()(x), x)


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_other_norms_build_and_train(digits, norm):
    model = make_mlp(norm=norm, activation="relu")
    history = train(model, digits, steps=10, lr=0.1, batch_size=2, record_every=10)
    assert np.isfinite(history.train_loss[-1])


def test_training_runs_on_the_device(digits, device):
    model = make_mlp(norm="batch")
    history = train(model, digits, steps=10, lr=0.5, record_every=10, device=device,
                    probe=(activation_inputs(model)[-1], 0))
    assert next(model.parameters()).device.type == device.type
    assert accuracy(model, torch.as_tensor(digits.x_test, device=device),
                    torch.as_tensor(digits.y_test, device=device)) == history.test_accuracy[-1]


def test_the_course_layer_trains_like_torchs(digits):
    from bncourse.gpu import BatchNorm1d

    model = make_mlp(hidden=(32, 32), norm="bncourse", seed=0)
    assert isinstance(model[1], BatchNorm1d)
    runs = [train(make_mlp(hidden=(32, 32), norm=norm, seed=0), digits, steps=40, lr=0.5,
                  record_every=20) for norm in ("batch", "bncourse")]
    # same mathematics, different float32 summation order: losses agree to ~1e-7 per step;
    # 1e-5 over 40 steps still catches any real difference (a wrong gradient is off by > 1e-2)
    np.testing.assert_allclose(runs[0].train_loss[1:], runs[1].train_loss[1:], rtol=1e-5)


def test_precise_batchnorm_works_on_the_course_layer(digits):
    model = make_mlp(hidden=(16,), norm="bncourse", seed=0)
    x = torch.as_tensor(digits.x_train[:120])
    precise_batchnorm_(model, x, batch_size=60)
    with torch.no_grad():
        pre = model[0](x).double().reshape(2, 60, 16)
    # float32 sums over two batches; see the torch.nn test above for the tolerance
    torch.testing.assert_close(model[1].running_mean.double(), pre.mean(dim=1).mean(dim=0),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].running_var.double(),
                               pre.var(dim=1, unbiased=True).mean(dim=0), rtol=1e-5, atol=1e-6)
