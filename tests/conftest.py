"""Shared fixtures: every device test runs on the CPU, and on CUDA when present."""

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
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
