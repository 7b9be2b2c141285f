"""Bad input gets a clear error that names the argument, says what was expected and what came."""

import re

import numpy as np
import pytest
import torch
from implementations import module_for

from bncourse import gpu


@pytest.fixture
def backend(library_and_device):
    """(module, convert): convert turns a NumPy array into that module's array type."""
    library, device = library_and_device
    if library.startswith("numpy"):
        return module_for(library), np.asarray
    return module_for(library), lambda a: torch.from_numpy(np.asarray(a)).to(device)


X = np.ones((4, 3), np.float32)
X[::2] = 2.0
C3 = np.ones(3, np.float32)
C4 = np.ones(4, np.float32)

# (function, arguments as NumPy arrays or plain values, exception, name the message must
# start with, further text the message must contain)
CASES = {
    "gamma shape": (
        "batchnorm_forward",
        (X, C4, C3),
        ValueError,
        "gamma",
        "expected shape (3,) (one value per channel of x, C=3), got (4,)",
    ),
    "beta shape": ("batchnorm_forward", (X, C3, C3[:2]), ValueError, "beta", "got (2,)"),
    "x one dimension": ("batchnorm_forward", (C3, C3, C3), ValueError, "x", "at least 2 dimensions"),
    "x integer": ("batchnorm_forward", (X.astype(np.int64), C3, C3), TypeError, "x", "int64"),
    "x complex": (
        "batchnorm_forward",
        (X.astype(np.complex64), C3, C3),
        TypeError,
        "x",
        "expected real floating-point values, got complex",
    ),
    "gamma integer": ("batchnorm_forward", (X, C3.astype(np.int32), C3), TypeError, "gamma", "int32"),
    "one value per channel": (
        "batchnorm_forward",
        (X[:1], C3, C3),
        ValueError,
        "x",
        "Expected more than 1 value per channel when training, got input size (1, 3)",
    ),
    "one value per channel (images)": (
        "batchnorm_forward",
        (np.ones((1, 3, 1, 1), np.float32), C3, C3),
        ValueError,
        "x",
        "more than 1 value per channel",
    ),
    "eps zero": ("batchnorm_forward", (X, C3, C3, 0.0), ValueError, "eps", "got 0.0"),
    "eps negative": ("batchnorm_forward", (X, C3, C3, -1e-5), ValueError, "eps", "> 0"),
    "eps nan": ("batchnorm_forward", (X, C3, C3, float("nan")), ValueError, "eps", "finite"),
    "eps inf": ("batchnorm_inference", (X, C3, C3, C3, C3, float("inf")), ValueError, "eps", "inf"),
    "running_mean shape": (
        "batchnorm_inference",
        (X, C3, C3, C4, C3),
        ValueError,
        "running_mean",
        "expected shape (3,)",
    ),
    "running_var shape": ("batchnorm_inference", (X, C3, C3, C3, X), ValueError, "running_var", "(4, 3)"),
    "momentum above 1": ("update_running_stats", (C3, C3, X, 1.5), ValueError, "momentum", "[0, 1]"),
    "momentum negative": ("update_running_stats", (C3, C3, X, -0.1), ValueError, "momentum", "-0.1"),
    "update one value": ("update_running_stats", (C3, C3, X[:1]), ValueError, "x", "more than 1 value"),
    "update running_var": ("update_running_stats", (C3, C4, X), ValueError, "running_var", "got (4,)"),
    "no batches": ("population_stats", ([],), ValueError, "batches", "at least one batch"),
    "batch sizes differ": ("population_stats", ([X, X[:2]],), ValueError, "batches[1]", "same size"),
    "fold weight 1-D": ("fold_batchnorm", (C3, None, C3, C3, C3, C3), ValueError, "weight", "(out, in)"),
    "fold gamma shape": (
        "fold_batchnorm",
        (np.ones((3, 2), np.float32), None, C4, C3, C3, C3),
        ValueError,
        "gamma",
        "expected shape (3,)",
    ),
    "fold bias shape": (
        "fold_batchnorm",
        (np.ones((3, 2), np.float32), C4, C3, C3, C3, C3),
        ValueError,
        "bias",
        "got (4,)",
    ),
    "standardize 3-D": ("standardize", (np.ones((2, 3, 4)),), ValueError, "x", "2-D array (N, D)"),
    "standardize one row": ("standardize", (X[:1],), ValueError, "x", "at least 2 rows"),
    "whiten method": ("whiten", (X, "pcaa"), ValueError, "method", "'pcaa'"),
    "whiten integer": ("whiten", (np.ones((4, 2), np.int64),), TypeError, "x", "floating-point"),
}


def convert_all(values, convert):
    converted = []
    for value in values:
        if isinstance(value, np.ndarray):
            converted.append(convert(value))
        elif isinstance(value, list):
            converted.append([convert(v) for v in value])
        else:
            converted.append(value)
    return converted


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_with_a_message_naming_the_argument(backend, case):
    module, convert = backend
    function, arguments, error, name, detail = case
    with pytest.raises(error) as raised:
        getattr(module, function)(*convert_all(arguments, convert))
    message = str(raised.value)
    assert message.startswith(f"{name}: expected") or message.startswith(f"{name}: Expected"), message
    assert detail in message, message


def test_backward_checks_dout_and_cache(backend):
    module, convert = backend
    _, cache = module.batchnorm_forward(convert(X), convert(C3), convert(C3))
    with pytest.raises(ValueError, match=re.escape("dout: expected shape (4, 3)")):
        module.batchnorm_backward(convert(X[:2]), cache)
    with pytest.raises(TypeError, match="cache: expected the cache returned by batchnorm_forward"):
        module.batchnorm_backward(convert(X), (1, 2, 3))


def test_nan_is_not_an_error(backend):
    """NaN is data, not bad input: it propagates instead of raising (see test_numerics)."""
    module, convert = backend
    x = X.copy()
    x[0, 0] = np.nan
    out, _ = module.batchnorm_forward(convert(x), convert(C3), convert(C3))
    assert out.shape == x.shape


# ----------------------------------------------------------------------------- torch only


def test_mismatched_device_is_refused():
    """The meta device holds shapes but no data, so it tests device checks without a GPU."""
    x = torch.from_numpy(X)
    on_meta = torch.ones(3, device="meta")
    with pytest.raises(ValueError, match=r"^gamma: expected a tensor on cpu \(the device of x\), got one on meta"):
        gpu.batchnorm_forward(x, on_meta, torch.ones(3))
    with pytest.raises(ValueError, match="^running_mean: expected a tensor on cpu"):
        gpu.batch_norm(x, on_meta, torch.ones(3), training=True)


def calls_with_one_tensor_elsewhere(x, other):
    """Name -> a call whose argument of that name is on the device ``other``, the rest with x."""
    c3, weight, elsewhere = torch.ones_like(x[0]), torch.ones(3, 2, device=x.device), torch.ones(3, device=other)
    _, cache = gpu.batchnorm_forward(x, c3, c3)
    return {
        "gamma": lambda: gpu.batchnorm_forward(x, elsewhere, c3),
        "beta": lambda: gpu.batchnorm_inference(x, c3, elsewhere, c3, c3),
        "running_var": lambda: gpu.update_running_stats(c3, elsewhere, x),
        "running_mean": lambda: gpu.batch_norm(x, elsewhere, c3, training=True),
        "bias": lambda: gpu.fold_batchnorm(weight, elsewhere, c3, c3, c3, c3),
        "dout": lambda: gpu.batchnorm_backward(torch.ones(4, 3, device=other), cache),
        "batches[1]": lambda: gpu.population_stats([x, torch.ones(4, 3, device=other)]),
    }


def test_every_companion_tensor_is_checked_for_the_device(device):
    """Each tensor that must sit with the data, on the data's device (the meta device needs no
    GPU; on CUDA, CPU tensors next to CUDA data are checked too)."""
    x = torch.from_numpy(X).to(device)
    for other in ["meta"] + (["cpu"] if device.type != "cpu" else []):
        for name, call in calls_with_one_tensor_elsewhere(x, other).items():
            with pytest.raises(ValueError) as raised:
                call()
            message = str(raised.value)
            assert message.startswith(f"{name}: expected a tensor on {x.device}"), message
            assert message.endswith(f"got one on {torch.device(other)}"), message


def test_mixed_batches_are_refused(device):
    x = torch.from_numpy(X).to(device)
    with pytest.raises(TypeError, match=r"^batches\[1\]: expected dtype torch.float32 .*got torch.float64"):
        gpu.population_stats([x, x.double()])
    with pytest.raises(ValueError, match=r"^batches\[2\]: expected C=3 channels with m=4 values each"):
        gpu.population_stats([x, x, x[:, :2]])


def test_mismatched_dtype_is_refused(device):
    x, ones = torch.from_numpy(X).to(device), torch.ones(3, device=device)
    with pytest.raises(TypeError, match=r"^beta: expected dtype torch.float32 .*got torch.float64"):
        gpu.batchnorm_forward(x, ones, ones.double())
    with pytest.raises(TypeError, match="^weight: expected dtype torch.float16 or torch.float32"):
        gpu.batch_norm(x.half(), None, None, ones.double(), training=True)


def test_numpy_input_to_torch_functions_is_refused():
    with pytest.raises(TypeError, match="^x: expected a torch.Tensor, got ndarray"):
        gpu.batchnorm_forward(X, torch.ones(3), torch.ones(3))


def test_batch_norm_checks_its_running_stats(device):
    x = torch.from_numpy(X).to(device)
    with pytest.raises(ValueError, match="^running_mean, running_var: expected both tensors or both None"):
        gpu.batch_norm(x, torch.zeros(3, device=device), None, training=True)
    with pytest.raises(ValueError, match=r"^running_mean, running_var: expected tensors in evaluation mode"):
        gpu.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="^input: Expected more than 1 value per channel when training"):
        gpu.batch_norm(x[:1], None, None, training=True)
    with pytest.raises(ValueError, match="^momentum: expected a number in"):
        gpu.batch_norm(x, None, None, training=True, momentum=2.0)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_features": 0}, "num_features"),
        ({"num_features": 2.5}, "num_features"),
        ({"num_features": 3, "eps": 0}, "eps"),
        ({"num_features": 3, "momentum": 1.1}, "momentum"),
    ],
)
def test_layer_constructor_checks_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        gpu.BatchNorm2d(**kwargs)
