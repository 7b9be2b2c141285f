"""BatchNorm1d and BatchNorm2d are drop-in replacements of torch.nn's, on every device."""

import copy
import inspect

import pytest
import torch
from torch import nn

from bncourse import gpu

# float64 twins differ only in the order of floating-point sums (~1e-15 relative per
# step); 20 SGD steps with momentum amplify that a little, so 1e-9 is ample, and any
# difference in semantics (wrong momentum, biased running variance) is ~1e-2.
TIGHT = {"rtol": 1e-9, "atol": 1e-9}

# torch.nn.BatchNorm*d gained the keyword ``bias`` after 2.11 (pyproject allows torch>=2.3);
# our layers always accept it, but a comparison with torch's needs torch to accept it too.
TORCH_HAS_BIAS_OPTION = "bias" in inspect.signature(nn.BatchNorm2d.__init__).parameters
needs_torch_bias_option = pytest.mark.skipif(
    not TORCH_HAS_BIAS_OPTION, reason=f"torch {torch.__version__}: nn.BatchNorm2d has no bias= option"
)

LAYERS = [
    pytest.param(gpu.BatchNorm1d, nn.BatchNorm1d, (16, 5), id="1d-(N,C)"),
    pytest.param(gpu.BatchNorm1d, nn.BatchNorm1d, (8, 5, 3), id="1d-(N,C,L)"),
    pytest.param(gpu.BatchNorm2d, nn.BatchNorm2d, (4, 5, 3, 3), id="2d"),
]


def twin_models(ours_cls, torch_cls, shape, device, **options):
    """Linear/1x1-conv -> BN -> ReLU -> head, identical weights; BN ours in one, torch's in the other."""
    torch.manual_seed(0)
    channels = shape[1]
    if len(shape) == 4:
        first = nn.Conv2d(channels, channels, 1, dtype=torch.float64)
    elif len(shape) == 3:
        first = nn.Conv1d(channels, channels, 1, dtype=torch.float64)
    else:
        first = nn.Linear(channels, channels, dtype=torch.float64)
    reference = nn.Sequential(
        first,
        torch_cls(channels, dtype=torch.float64, **options),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(1, dtype=torch.float64),
    ).to(device)
    reference.eval()(torch.zeros(shape, dtype=torch.float64, device=device))  # materialise the lazy layer
    if options.get("affine", True):
        with torch.no_grad():  # not the default 1 and 0, so that a swapped gamma/beta shows
            reference[1].weight.uniform_(0.5, 2)
            if reference[1].bias is not None:
                reference[1].bias.uniform_(-1, 1)
    ours = copy.deepcopy(reference)
    ours[1] = ours_cls(channels, dtype=torch.float64, device=device, **options)
    ours[1].load_state_dict(reference[1].state_dict())
    return ours, reference


def train_both(ours, reference, shape, device, steps=20):
    optimisers = [torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) for model in (ours, reference)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(shape, generator=generator, dtype=torch.float64) * 3 + 2
        target = torch.randn(shape[0], 1, generator=generator, dtype=torch.float64)
        x, target = x.to(device), target.to(device)
        outputs = []
        for model, optimiser in zip((ours, reference), optimisers, strict=True):
            model.train()
            optimiser.zero_grad()
            out = model(x)
            nn.functional.mse_loss(out, target).backward()
            optimiser.step()
            outputs.append(out)
        torch.testing.assert_close(outputs[0], outputs[1], **TIGHT)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("ours_cls, torch_cls, shape", LAYERS)
@pytest.mark.parametrize("impl", ["reference", "fused-eager"])
def test_twenty_training_steps_then_eval_match_torch(device, impl, ours_cls, torch_cls, shape, momentum):
    ours, reference = twin_models(ours_cls, torch_cls, shape, device, momentum=momentum)
    ours[1] = ours_cls(shape[1], dtype=torch.float64, device=device, momentum=momentum, impl=impl)
    ours[1].load_state_dict(reference[1].state_dict())
    train_both(ours, reference, shape, device)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, **TIGHT, msg=name)
    assert ours[1].num_batches_tracked.item() == 20

    ours.eval(), reference.eval()
    x = torch.randn(shape, dtype=torch.float64, device=device) * 3 + 2
    torch.testing.assert_close(ours(x), reference(x), **TIGHT)
    torch.testing.assert_close(ours(x[:1]), reference(x[:1]), **TIGHT)  # one sample is fine in eval


@pytest.mark.parametrize(
    "options",
    [
        {"track_running_stats": False},
        {"affine": False},
        pytest.param({"bias": False}, marks=needs_torch_bias_option),
        {"momentum": 0.0},
        {"momentum": 1.0, "eps": 1e-3},
    ],
    ids=str,
)
def test_constructor_options_match_torch(device, options):
    shape = (6, 5, 2, 2)
    ours, reference = twin_models(gpu.BatchNorm2d, nn.BatchNorm2d, shape, device, **options)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in reference.named_parameters()]
    assert list(ours.state_dict()) == list(reference.state_dict())
    train_both(ours, reference, shape, device, steps=5)
    ours.eval(), reference.eval()
    x = torch.randn(shape, dtype=torch.float64, device=device)
    # With track_running_stats=False, eval mode still normalises with the batch's statistics.
    torch.testing.assert_close(ours(x), reference(x), **TIGHT)


@pytest.mark.parametrize("ours_cls, torch_cls, shape", LAYERS)
def test_state_dict_loads_in_both_directions(device, ours_cls, torch_cls, shape):
    torch.manual_seed(3)
    ours = ours_cls(shape[1], device=device)
    theirs = torch_cls(shape[1], device=device)
    for _ in range(3):
        theirs(torch.randn(shape, device=device) + 1)  # non-default running statistics
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 2)
    ours.load_state_dict(theirs.state_dict())  # strict: same keys, shapes
    ours.eval(), theirs.eval()
    x = torch.randn(shape, device=device)
    # float32 on both sides, one affine map per channel: a few ulps apart.
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)

    ours.train()
    ours(torch.randn(shape, device=device) * 2)
    fresh = torch_cls(shape[1], device=device)
    fresh.load_state_dict(ours.state_dict())
    for name, value in ours.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert fresh.num_batches_tracked.item() == 4


def test_parameters_buffers_and_repr_match_torch(device):
    for ours_cls, torch_cls in [(gpu.BatchNorm1d, nn.BatchNorm1d), (gpu.BatchNorm2d, nn.BatchNorm2d)]:
        kwargs = {"eps": 1e-3, "momentum": None, "device": device, "dtype": torch.float64}
        ours, theirs = ours_cls(7, **kwargs), torch_cls(7, **kwargs)
        ours_repr = repr(ours).replace("bncourse", "")
        if not TORCH_HAS_BIAS_OPTION:  # older torch prints no bias= (its layers always have one)
            ours_repr = ours_repr.replace(", bias=True", "")
        assert ours_repr == repr(theirs)
        for (name, a), (t_name, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
            assert name == t_name and a.dtype == b.dtype and a.device == b.device
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert [n for n, p in ours.named_parameters() if p.requires_grad] == ["weight", "bias"]


@pytest.mark.parametrize(
    "layer, bad_shape, expected",
    [
        (gpu.BatchNorm1d, (2, 3, 4, 5), "input: expected 2D or 3D input (got 4D input)"),
        (gpu.BatchNorm1d, (3,), "input: expected 2D or 3D input (got 1D input)"),
        (gpu.BatchNorm2d, (2, 3, 4), "input: expected 4D input (got 3D input)"),
    ],
)
def test_input_dimension_is_checked_like_torch(device, layer, bad_shape, expected):
    with pytest.raises(ValueError) as raised:
        layer(3, device=device)(torch.ones(bad_shape, device=device))
    assert str(raised.value) == expected


@pytest.mark.parametrize(
    "layer, shape", [(gpu.BatchNorm1d, (1, 3)), (gpu.BatchNorm1d, (1, 3, 1)), (gpu.BatchNorm2d, (1, 3, 1, 1))]
)
def test_one_value_per_channel_is_refused_in_training_only(device, layer, shape):
    bn = layer(3, device=device)
    x = torch.randn(shape, device=device)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training, got input size"):
        bn(x)
    bn.eval()
    assert bn(x).shape == x.shape


def test_reset_running_stats_restores_the_initial_state(device):
    bn = gpu.BatchNorm2d(3, device=device)
    bn(torch.randn(4, 3, 2, 2, device=device) + 5)
    bn.reset_running_stats()
    assert bn.num_batches_tracked.item() == 0
    torch.testing.assert_close(bn.running_mean, torch.zeros(3, device=device), rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, torch.ones(3, device=device), rtol=0, atol=0)


def test_switching_off_tracking_after_construction_matches_torch(device):
    """Training then uses and updates nothing; eval still reads the existing buffers."""
    ours, theirs = gpu.BatchNorm2d(3, device=device), nn.BatchNorm2d(3, device=device)
    x = torch.randn(4, 3, 2, 2, device=device) + 3
    ours(x), theirs(x)  # running statistics away from their initial values
    ours.track_running_stats = theirs.track_running_stats = False
    # float32 batch statistics of 16 values by two algorithms, outputs of size <= ~3: a few
    # ulps apart; 1e-5 is ~100 ulps, and normalising with the running statistics instead
    # would be off by O(1).
    torch.testing.assert_close(ours(2 * x), theirs(2 * x), rtol=1e-5, atol=1e-5)
    # The buffers from the first call: float32 means of 16 values near 3, blended with
    # momentum 0.1; 1e-6 is ~8 ulps of 3 and any further update would move them by ~0.1.
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-6, atol=1e-6, msg=name)
    ours.eval(), theirs.eval()
    # float32, one affine map per channel from the same buffers: a few ulps apart.
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_float32_layer_takes_half_precision_input(device, half):
    """As torch's layers (e.g. under autocast): half input, float32 parameters and buffers.

    The output has the input's dtype and the buffers stay float32. Half data is normalised
    in float32, so the result is exactly that of the same layer on the float32 copy of the
    data, rounded once to `half`; the running statistics are exactly equal."""
    ours = gpu.BatchNorm2d(3, device=device)
    twin = copy.deepcopy(ours)
    for training in (True, True, False):
        ours.train(training), twin.train(training)
        x = (torch.randn(4, 3, 2, 2, device=device) * 3 + 5).to(half)
        out = ours(x)
        assert out.dtype == half and ours.running_mean.dtype == ours.running_var.dtype == torch.float32
        assert torch.equal(out, twin(x.float()).to(half))
        for name, value in twin.state_dict().items():
            assert torch.equal(ours.state_dict()[name], value), name
