"""Time the reference BN (forward + backward) against PyTorch's own, side by side.

    .venv/bin/python benchmarks/bench_reference_batchnorm.py [--repeats 20] [--threads 1]

For each input shape and each available device, times one training-mode
forward and backward pass of:

- ``bncourse.cpu`` (NumPy; CPU only),
- ``bncourse.gpu.batch_norm`` (torch operations, hand-derived backward),
- ``torch.nn.functional.batch_norm`` (PyTorch's fused kernels; cuDNN on CUDA),

and prints the median time and the ratio to PyTorch. The reference code is
written to be read, not to be fast: expect it to be a few times slower than
the fused kernels, which read the data fewer times.

torch runs on one CPU thread by default: on a machine shared with other jobs,
torch's worker threads wait for busy cores and a 0.2 ms call can take 30 ms,
which would measure the load rather than the code (NumPy's elementwise
operations are single-threaded anyway).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from bncourse import cpu, gpu
from bncourse.timing import compare_timings

SHAPES = [(256, 512), (32, 64, 32, 32)]


def candidates(shape: tuple[int, ...], device: torch.device) -> dict[str, Callable[[], object]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).to(device)
    gamma = torch.rand(shape[1], generator=generator).to(device) + 0.5
    beta = torch.randn(shape[1], generator=generator).to(device)
    dout = torch.randn(shape, generator=generator).to(device)
    leaves = [t.clone().requires_grad_() for t in (x, gamma, beta)]

    def synchronised(fn: Callable[[], object]) -> Callable[[], object]:
        if device.type != "cuda":
            return fn
        return lambda: (fn(), torch.cuda.synchronize(device))

    def torch_step(function: Callable[..., torch.Tensor]) -> Callable[[], object]:
        def step() -> None:
            out = function(leaves[0], None, None, leaves[1], leaves[2], training=True)
            torch.autograd.grad(out, leaves, dout)

        return synchronised(step)

    found: dict[str, Callable[[], object]] = {}
    if device.type == "cpu":
        arrays = [t.numpy() for t in (x, gamma, beta, dout)]

        def numpy_step() -> None:
            _, cache = cpu.batchnorm_forward(*arrays[:3])
            cpu.batchnorm_backward(arrays[3], cache)

        found["bncourse.cpu (NumPy)"] = numpy_step
    found["bncourse.gpu.batch_norm"] = torch_step(gpu.batch_norm)
    found["torch F.batch_norm"] = torch_step(F.batch_norm)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} CPU threads")
    for device in devices:
        for shape in SHAPES:
            timings = compare_timings(candidates(shape, device), repeats=args.repeats)
            reference = timings["torch F.batch_norm"].median
            print(f"\n{device.type}, x {shape}, float32, forward + backward (median of {args.repeats}):")
            for name, timing in timings.items():
                print(f"  {name:26s} {timing.median * 1e3:9.3f} ms   {timing.median / reference:5.1f}x torch")


if __name__ == "__main__":
    main()
