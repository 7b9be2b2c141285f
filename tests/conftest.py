"""Shared fixtures: every device test runs on the CPU, and on CUDA when present.

The book's notebooks (``--nbval-lax book``) count as slow tests, like the end-to-end ones,
so that ``pytest -m "not slow" tests book`` is a quick loop for a developer.
"""

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


ALL_DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
    ),
]


@pytest.fixture(params=ALL_DEVICES)
def device(request) -> torch.device:
    """A torch device: ``cpu`` always, ``cuda`` when available (skipped otherwise)."""
    return torch.device(request.param)


# The NumPy reference, and the torch functions on every device (CUDA skipped when absent).
IMPLEMENTATIONS = [
    pytest.param(("numpy", "cpu"), id="numpy"),
    pytest.param(("numpy-fast", "cpu"), id="numpy-fast"),  # bncourse.cpu_fast
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    pytest.param(
        ("torch", "cuda"),
        id="torch-cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
    ),
    # bncourse.fused (its kernels run eagerly; see tests/implementations.py)
    pytest.param(("fused", "cpu"), id="fused-cpu"),
    pytest.param(
        ("fused", "cuda"),
        id="fused-cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
    ),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def library_and_device(request) -> tuple[str, torch.device]:
    """("numpy", "numpy-fast", "torch" or "fused", device) for tests that run on every implementation."""
    library, device = request.param
    return library, torch.device(device)
