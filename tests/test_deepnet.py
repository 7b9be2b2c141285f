"""Tests of bncourse.deepnet: recorded gradients are the true ones; inits have their variance."""

import numpy as np
import pytest
import torch

from bncourse import deepnet
from bncourse.train import make_mlp, to_torch


def _torch_reference(net: deepnet.MLP, u: np.ndarray, y: np.ndarray):
    """The same network in PyTorch autograd (float64), an independent gradient."""
    Ws = [torch.tensor(W, requires_grad=True) for W in net.weights]
    bs = [torch.tensor(b, requires_grad=True) for b in net.biases]
    act = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
           "linear": lambda t: t}[net.nonlinearity]
    h = torch.tensor(u)
    for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        h = h @ W.T + b
        if i < len(Ws) - 1:
            h = act(h)
    loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    loss.backward()
    return loss.item(), [W.grad.numpy() for W in Ws], [b.grad.numpy() for b in bs]


@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid", "relu", "linear"])
def test_gradients_match_pytorch_autograd(nonlinearity):
    rng = np.random.default_rng(1)
    net = deepnet.MLP.create([5, 7, 6, 3], nonlinearity=nonlinearity, init="xavier", seed=2)
    for b in net.biases:  # non-zero biases so db and the bias path are exercised
        b += rng.normal(size=b.shape)
    u, y = rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)
    loss = net.loss_and_backward(u, y)
    ref_loss, ref_dW, ref_db = _torch_reference(net, u, y)
    # float64 on both sides with identical operations: differences are rounding only.
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for rec, dW, db in zip(net.records, ref_dW, ref_db, strict=True):
        np.testing.assert_allclose(rec.dW, dW, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(rec.db, db, rtol=1e-10, atol=1e-13)


def test_gradient_matches_central_finite_differences():
    rng = np.random.default_rng(3)
    net = deepnet.MLP.create([4, 5, 3], nonlinearity="tanh", init="xavier", seed=4)
    u, y = rng.normal(size=(6, 4)), rng.integers(0, 3, size=6)
    net.loss_and_backward(u, y)
    analytic = net.records[0].dW.copy()
    numeric = np.zeros_like(analytic)
    h = 1e-6  # central differences in float64: truncation ~h^2, rounding ~1e-16/h ~ 1e-10
    for idx in np.ndindex(*analytic.shape):
        for sign in (1, -1):
            net.weights[0][idx] += sign * h
            numeric[idx] += sign * deepnet.softmax_cross_entropy(net.forward(u), y)[0] / (2 * h)
            net.weights[0][idx] -= sign * h
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("scheme", "variance"),
    [("small", 1e-4), ("large", 1.0), ("xavier", 2.0 / (300 + 200)), ("he", 2.0 / 300), ("lecun", 1.0 / 300)],
)
def test_init_weights_has_the_scheme_variance(scheme, variance):
    W = deepnet.init_weights(300, 200, scheme, np.random.default_rng(0))
    assert W.shape == (200, 300)
    # 60,000 Gaussian draws: the sample variance has relative std sqrt(2/60000) ~ 0.6 %,
    # so 3 % is five standard deviations.
    assert W.var() == pytest.approx(variance, rel=0.03)
    assert abs(W.mean()) < 5 * np.sqrt(variance / W.size)


def test_zero_and_constant_init_keep_units_identical_during_training():
    rng = np.random.default_rng(0)
    u, y = rng.normal(size=(64, 6)), rng.integers(0, 4, size=64)
    for scheme in ("zeros", "constant"):
        net = deepnet.MLP.create([6, 8, 8, 4], init=scheme)
        deepnet.train(net, u, y, lr=0.5, steps=30, batch_size=16)
        for W in net.weights[:-1]:
            # Symmetry is never broken: every hidden unit keeps the same incoming weights.
            np.testing.assert_allclose(W, np.broadcast_to(W[0], W.shape), atol=1e-12)
        assert net.records[-1].dW is not None


def test_layer_stats_match_the_records():
    rng = np.random.default_rng(0)
    net = deepnet.MLP.create([10, 20, 20, 5], nonlinearity="tanh", init="large")
    net.forward(rng.normal(size=(50, 10)))
    stats = net.layer_stats()
    assert "dx_std" not in stats  # no backward yet
    net.loss_and_backward(rng.normal(size=(50, 10)), rng.integers(0, 5, size=50))
    stats = net.layer_stats()
    for i, rec in enumerate(net.records):
        assert stats["z_std"][i] == pytest.approx(rec.z.std())
        assert stats["dx_std"][i] == pytest.approx(rec.dx.std())
        assert stats["saturated"][i] == pytest.approx(np.mean(1 - rec.z**2 < 0.05) if i < 2
                                                      else 0.0)


def test_training_lowers_the_loss_on_digits():
    from bncourse.data import load_digits

    split = load_digits(dtype=np.float64)
    net = deepnet.MLP.create([64, 32, 10], init="xavier", seed=0)
    losses = deepnet.train(net, split.x_train, split.y_train, lr=0.5, steps=150)
    # Chance level is log(10) = 2.30; a working SGD loop gets far below it in 150 steps.
    assert losses[0] > 2.0
    assert losses[-10:].mean() < 0.5


def test_diverging_training_stops_with_nan_losses():
    rng = np.random.default_rng(0)
    net = deepnet.MLP.create([5, 50, 50, 3], nonlinearity="relu", init="large")
    losses = deepnet.train(net, 100 * rng.normal(size=(40, 5)), rng.integers(0, 3, 40),
                           lr=1e300, steps=20, batch_size=8)
    assert np.isnan(losses[-1])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="sizes"):
        deepnet.MLP.create([5])
    with pytest.raises(ValueError, match="nonlinearity"):
        deepnet.MLP.create([5, 3], nonlinearity="swish")
    with pytest.raises(ValueError, match="scheme"):
        deepnet.MLP.create([5, 3], init="orthogonal")
    net = deepnet.MLP.create([5, 3])
    with pytest.raises(ValueError, match=r"u: expected shape \(N, 5\)"):
        net.forward(np.zeros((2, 4)))
    with pytest.raises(RuntimeError, match="forward first"):
        net.backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        deepnet.train(net, np.zeros((4, 5)), np.zeros(4, dtype=int), lr=0.1, steps=1, batch_size=5)


# --------------------------------------------------------------------------- one MLP, two backends


@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid", "relu"])
def test_torch_twin_of_the_numpy_mlp_computes_the_same_logits(nonlinearity):
    net = deepnet.MLP.create([5, 7, 6, 3], nonlinearity=nonlinearity, init="xavier", seed=2)
    for b in net.biases:  # non-zero biases so the bias path is compared too
        b += np.random.default_rng(3).normal(size=b.shape)
    u = np.random.default_rng(4).normal(size=(8, 5))
    twin = to_torch(net.architecture, net.parameters(), dtype=torch.float64)
    with torch.no_grad():
        got = twin(torch.tensor(u)).numpy()
    # float64 on both sides, the same operations in the same order: rounding only (~1e-16).
    np.testing.assert_allclose(got, net.forward(u), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("use_bn", [True, False])
def test_torch_twin_of_the_assignment_network_computes_the_same_inference_logits(use_bn):
    params = deepnet.init_mlp(use_bn, seed=5, hidden=(20, 30))
    rng = np.random.default_rng(6)
    for name in params:  # statistics and shifts away from their initial 0 and 1
        if not name.startswith("W"):
            params[name] = params[name] + rng.uniform(0.1, 0.9, size=params[name].shape)
    x = rng.normal(size=(12, 64))
    twin = to_torch(deepnet.assignment_architecture(use_bn, hidden=(20, 30)), params, dtype=torch.float64).eval()
    with torch.no_grad():
        got = twin(torch.tensor(x)).numpy()
    # float64 both sides; torch's BN and bncourse.cpu.batchnorm_inference round differently,
    # within ~1e-15 relative per layer.
    np.testing.assert_allclose(got, deepnet.logits(params, x), rtol=1e-10, atol=1e-12)


def test_make_mlp_builds_the_assignment_architecture():
    torch_net = make_mlp(hidden=deepnet.HIDDEN_SIZES, activation="relu", norm="batch")
    numpy_net = deepnet.init_mlp(True, seed=0)
    assert [type(m) for m in torch_net] == [type(m) for m in to_torch(deepnet.assignment_architecture(True), numpy_net)]
    assert [tuple(p.shape) for p in torch_net.parameters()] == [
        shape for name, shape in deepnet.expected_keys(True).items() if not name.startswith("running")]


def test_make_mlp_draws_lecun_weights_scaled_in_the_hidden_layers_only():
    model = make_mlp(n_in=30, hidden=(20,), n_out=10, weight_scale=10.0, seed=4)
    generator = torch.Generator().manual_seed(4)
    hidden = torch.randn((20, 30), generator=generator) * (10.0 / np.sqrt(30))
    head = torch.randn((10, 20), generator=generator) * (1.0 / np.sqrt(20))
    assert torch.equal(model[0].weight, hidden) and torch.equal(model[-1].weight, head)


def test_to_torch_names_parameters_that_do_not_fit():
    architecture = deepnet.assignment_architecture(True, hidden=(20,))
    params = deepnet.init_mlp(True, seed=0, hidden=(20,))
    del params["running_var1"]
    with pytest.raises(ValueError, match="params: expected names and shapes"):
        to_torch(architecture, params)
    with pytest.raises(ValueError, match="norm"):
        deepnet.Architecture((5, 3), "relu", "instance")
