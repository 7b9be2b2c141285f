"""Benchmark of record: every BN implementation against PyTorch's and against the memory roofline.

    .venv/bin/python benchmarks/bench_reference_batchnorm.py [--repeats 20] [--threads 1 all]
        [--shapes 256x1024 32x64x32x32 64x64x56x56] [--out benchmarks/results]
        [--cuda-shapes 64x64x56x56 256x256x28x28 4096x4096] [--no-cuda]

For each device (CPU; CUDA when available), thread count (CPU), input shape
and mode (training forward, backward, forward + backward through autograd,
inference), times side by side, interleaved round by round in an order shuffled
each round (``bncourse.timing``; median of ``--repeats``):

- ``numpy``: ``bncourse.cpu`` (the book's readable NumPy; CPU only),
- ``numpy-fast``: ``bncourse.cpu_fast`` (fewer passes and temporaries),
- ``torch reference``: ``bncourse.gpu`` in eager PyTorch,
- ``reference compiled``: ``torch.compile`` of ``gpu.batchnorm_forward`` and
  ``gpu.batchnorm_backward`` as they are (forward and backward modes only),
- ``fused``: ``bncourse.fused`` compiled by torch.compile (C++ on CPU, Triton on CUDA),
- ``torch``: PyTorch's own kernels (``native_batch_norm`` and its backward;
  ``F.batch_norm`` for forward + backward and inference: cuDNN on CUDA),
- ``folded``: inference only, the per-channel ``x * s + b`` left once BN is
  folded into its neighbours' weights (``torch.addcmul``; zero passes if the
  layer before absorbs it).

Each row reports the time, the ratio to ``torch``, the bytes the model of
``bncourse.hardware`` says must move, the achieved GB/s and that as a
fraction of the bandwidth of a plain copy (``dst.copy_(src)`` of 256 MiB,
larger than the caches, timed in the same interleaved rounds): the memory
roofline. Small shapes that stay in the caches can exceed it. CUDA rows are timed with CUDA events,
on ``--shapes`` and then on the shapes of the CUDA targets (``CUDA_SHAPES``) unless
``--cuda-shapes`` names others.
Writes ``bench_reference_batchnorm.csv`` (columns ``bncourse.hardware.COLUMNS``)
and ``bench_reference_batchnorm.png`` to ``--out``.

``--allocator`` says where freed memory goes (both, one after the other, by
default; the CSV's ``allocator`` column tells the rows apart). ``system`` keeps
glibc's malloc as it is: a freed block of more than 128 KiB to 32 MiB is
handed back to the operating system, so every new tensor the size of x is
page-faulted in again, and eager code pays once per temporary. ``retain``
asks glibc (``mallopt(3)``: no ``mmap`` for large blocks, no trimming) to keep
freed memory for reuse, the steady state of a training loop with a caching
allocator such as jemalloc or tcmalloc, which PyTorch's CPU tuning guide
recommends. The ratio of the two runs is the price of the page faults.

Compilation happens before timing and is not timed; each thread count gets
kernels compiled for it (inductor fixes the OpenMP thread count when it
generates code). On a machine shared with other jobs run with enough repeats
and compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from bncourse import cpu, cpu_fast, fused, gpu
from bncourse.hardware import COLUMNS, bytes_moved
from bncourse.timing import compare_timings, round_orders

SHAPES = [(256, 1024), (32, 64, 32, 32), (64, 64, 56, 56)]
# The shapes of the CUDA targets (fused <= 1.1x torch, >= 60% of the device's copy roofline):
# a ResNet stage, a wide late stage, a large fully connected layer. CUDA runs them after SHAPES.
CUDA_SHAPES = [(64, 64, 56, 56), (256, 256, 28, 28), (4096, 4096)]
MODES = ["forward", "backward", "forward+backward", "inference"]
EPS = 1e-5


# mallopt(3) parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def retain_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for reuse (``--allocator retain``).

    Large blocks come from the heap instead of ``mmap`` (M_MMAP_MAX = 0), and the heap is
    never trimmed (M_TRIM_THRESHOLD at its largest), so a freed tensor's pages stay mapped.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not (libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)):
        raise RuntimeError("--allocator retain: mallopt(3) refused the settings (not glibc?)")


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(size) for size in text.split("x"))


def make_inputs(shape: tuple[int, ...], device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    channels = shape[1]
    tensors = {
        "x": torch.randn(shape, generator=generator) * 2 + 1,
        "dout": torch.randn(shape, generator=generator),
        "gamma": torch.rand(channels, generator=generator) + 0.5,
        "beta": torch.randn(channels, generator=generator),
        "mean": torch.randn(channels, generator=generator),
        "var": torch.rand(channels, generator=generator) + 0.5,
    }
    return {name: tensor.to(device) for name, tensor in tensors.items()}


# torch.compile of the reference functions as they are: what compiling readable code gives.
compiled_reference_forward = torch.compile(gpu.batchnorm_forward, dynamic=False)
compiled_reference_backward = torch.compile(gpu.batchnorm_backward, dynamic=False)


def candidates(mode: str, t: dict[str, torch.Tensor]) -> dict[str, Callable[[], object]]:
    """name -> zero-argument call doing one ``mode`` step of that implementation."""
    x, dout, gamma, beta, mean, var = (t[k] for k in ("x", "dout", "gamma", "beta", "mean", "var"))
    on_cpu = x.device.type == "cpu"
    arrays = {name: tensor.numpy() for name, tensor in t.items()} if on_cpu else {}
    found: dict[str, Callable[[], object]] = {}
    if mode == "forward":
        if on_cpu:
            found["numpy"] = lambda: cpu.batchnorm_forward(arrays["x"], arrays["gamma"], arrays["beta"])
            found["numpy-fast"] = lambda: cpu_fast.batchnorm_forward(arrays["x"], arrays["gamma"], arrays["beta"])
        found["torch reference"] = lambda: gpu.batchnorm_forward(x, gamma, beta)
        found["reference compiled"] = lambda: compiled_reference_forward(x, gamma, beta)
        found["fused"] = lambda: fused.batchnorm_forward(x, gamma, beta, compiled=True)
        found["torch"] = lambda: torch.native_batch_norm(x, gamma, beta, None, None, True, 0.1, EPS)
    elif mode == "backward":
        if on_cpu:
            numpy_cache = cpu.batchnorm_forward(arrays["x"], arrays["gamma"], arrays["beta"])[1]
            fast_cache = cpu_fast.batchnorm_forward(arrays["x"], arrays["gamma"], arrays["beta"])[1]
            found["numpy"] = lambda: cpu.batchnorm_backward(arrays["dout"], numpy_cache)
            found["numpy-fast"] = lambda: cpu_fast.batchnorm_backward(arrays["dout"], fast_cache)
        reference_cache = gpu.batchnorm_forward(x, gamma, beta)[1]
        fused_cache = fused.batchnorm_forward(x, gamma, beta, compiled=True)[1]
        _, save_mean, save_invstd = torch.native_batch_norm(x, gamma, beta, None, None, True, 0.1, EPS)
        found["torch reference"] = lambda: gpu.batchnorm_backward(dout, reference_cache)
        found["reference compiled"] = lambda: compiled_reference_backward(dout, reference_cache)
        found["fused"] = lambda: fused.batchnorm_backward(dout, fused_cache)
        found["torch"] = lambda: torch.ops.aten.native_batch_norm_backward(
            dout, x, gamma, None, None, save_mean, save_invstd, True, EPS, [True, True, True]
        )
    elif mode == "forward+backward":
        if on_cpu:

            def numpy_step(module=cpu):
                _, cache = module.batchnorm_forward(arrays["x"], arrays["gamma"], arrays["beta"])
                module.batchnorm_backward(arrays["dout"], cache)

            found["numpy"] = numpy_step
            found["numpy-fast"] = lambda: numpy_step(cpu_fast)
        leaves = [tensor.clone().requires_grad_() for tensor in (x, gamma, beta)]

        def autograd_step(function: Callable[..., torch.Tensor]) -> Callable[[], object]:
            def step() -> None:
                out = function(leaves[0], None, None, leaves[1], leaves[2], training=True)
                torch.autograd.grad(out, leaves, dout)

            return step

        found["torch reference"] = autograd_step(gpu.batch_norm)
        found["fused"] = autograd_step(lambda *args, **kw: gpu.batch_norm(*args, **kw, impl="fused"))
        found["torch"] = autograd_step(F.batch_norm)
    else:  # inference
        scale = gamma * torch.rsqrt(var + EPS)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        scale_b, shift_b = scale.reshape(shape), (beta - mean * scale).reshape(shape)
        if on_cpu:
            numpy_args = [arrays[k] for k in ("x", "gamma", "beta", "mean", "var")]
            found["numpy"] = lambda: cpu.batchnorm_inference(*numpy_args)
        found["torch reference"] = lambda: gpu.batchnorm_inference(x, gamma, beta, mean, var)
        found["folded"] = lambda: torch.addcmul(shift_b, x, scale_b)
        found["torch"] = lambda: F.batch_norm(x, mean, var, gamma, beta, training=False)
    return found


def cuda_timings(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call, timed with CUDA events, candidates interleaved in shuffled rounds."""
    for call in calls.values():
        for _ in range(3):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for order in round_orders(list(calls), repeats):  # shuffled rounds, as compare_timings
        for name in order:
            call = calls[name]
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end) / 1e3)
    return {name: float(np.median(values)) for name, values in times.items()}


def median_seconds(calls: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, float]:
    if device.type == "cuda":
        return cuda_timings(calls, repeats)
    return {name: timing.median for name, timing in compare_timings(calls, repeats=repeats).items()}


COPY_BYTES = 256 * 2**20  # larger than any cache: the copy streams from and to main memory


def copy_call(device: torch.device) -> Callable[[], object]:
    """``dst.copy_(src)`` on 256 MiB of float32: reads and writes every byte once.

    It is timed in the same rounds as the implementations, so that it sees the
    same load. A copy of x itself would stay in the caches for the small
    shapes, while a training step's tensors (x, y, dy, dx, temporaries) do not.
    """
    source = torch.ones(COPY_BYTES // 4, device=device)
    destination = torch.empty_like(source)
    return lambda: destination.copy_(source)


def compile_kernels(t: dict[str, torch.Tensor]) -> None:
    """Compile the fused kernels for this shape (not timed)."""
    out, cache = fused.batchnorm_forward(t["x"], t["gamma"], t["beta"], compiled=True)
    fused.batchnorm_backward(t["dout"], cache)
    with torch.no_grad():
        out, cache = compiled_reference_forward(t["x"], t["gamma"], t["beta"])
        compiled_reference_backward(t["dout"], cache)


def measure(
    device: torch.device, threads: int, shape: tuple[int, ...], repeats: int, allocator: str
) -> list[dict[str, object]]:
    t = make_inputs(shape, device)
    compile_kernels(t)
    copy = copy_call(device)
    rows = []
    for mode in MODES:
        with torch.no_grad() if mode in ("forward", "backward", "inference") else torch.enable_grad():
            seconds = median_seconds({**candidates(mode, t), "copy": copy}, device, repeats)
        copy_gbps = 2 * COPY_BYTES / seconds.pop("copy") / 1e9
        model_bytes = bytes_moved(shape, t["x"].element_size(), mode)
        for impl, value in seconds.items():
            gbps = model_bytes / value / 1e9
            rows.append(
                {
                    "device": device.type,
                    "allocator": allocator,
                    "threads": threads,
                    "shape": "x".join(map(str, shape)),
                    "dtype": "float32",
                    "mode": mode,
                    "impl": impl,
                    "ms": round(value * 1e3, 4),
                    "ratio_to_torch": round(value / seconds["torch"], 3),
                    "model_mb": round(model_bytes / 1e6, 3),
                    "gb_per_s": round(gbps, 3),
                    "copy_gb_per_s": round(copy_gbps, 3),
                    "roofline_fraction": round(gbps / copy_gbps, 3),
                    "repeats": repeats,
                }
            )
    return rows


def print_rows(rows: list[dict[str, object]]) -> None:
    first = rows[0]
    threads = f"{first['threads']} thread(s)" if first["device"] == "cpu" else "CUDA events"
    print(f"\n{first['device']}, {threads}, x {first['shape']} float32, allocator: {first['allocator']}")
    header = f"{'mode':17s} {'impl':20s} {'ms':>9s} {'x torch':>8s} {'MB':>8s} {'GB/s':>7s} {'copy GB/s':>9s}"
    print(f"  {header} {'roofline':>8s}")
    for row in rows:
        print(
            f"  {row['mode']:17s} {row['impl']:20s} {row['ms']:9.3f} {row['ratio_to_torch']:8.2f}"
            f" {row['model_mb']:8.1f} {row['gb_per_s']:7.1f} {row['copy_gb_per_s']:9.1f}"
            f" {row['roofline_fraction']:8.0%}"
        )


def plot(rows: list[dict[str, object]], path: Path) -> list[tuple[str, int]]:
    """Bar charts of forward + backward roofline fractions; returns the panels' (device, threads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in rows if row["allocator"] in (rows[0]["allocator"], "cuda")]  # one CPU allocator
    found = sorted({(row["device"], row["threads"]) for row in rows})
    # The first two CPU thread counts (1 and all, by default), then CUDA when it was measured.
    panels = [panel for panel in found if panel[0] == "cpu"][:2] + [panel for panel in found if panel[0] != "cpu"]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False, dpi=150)
    for axis, (device, threads) in zip(axes[0], panels, strict=False):
        chosen = [r for r in rows if (r["device"], r["threads"]) == (device, threads)]
        chosen = [r for r in chosen if r["mode"] == "forward+backward"]
        shapes = list(dict.fromkeys(r["shape"] for r in chosen))
        impls = list(dict.fromkeys(r["impl"] for r in chosen))
        width = 0.8 / len(impls)
        for index, impl in enumerate(impls):
            values = [
                next((r["roofline_fraction"] for r in chosen if (r["shape"], r["impl"]) == (s, impl)), 0)
                for s in shapes
            ]
            axis.bar(np.arange(len(shapes)) + index * width, values, width, label=impl)
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_xticks(np.arange(len(shapes)) + 0.4 - width / 2, shapes)
        axis.set_ylabel("fraction of copy bandwidth")
        axis.set_title(f"forward + backward, {device}, " + (f"{threads} thread(s)" if device == "cpu" else "CUDA"))
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return panels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", nargs="+", default=["1", "all"], help="CPU thread counts ('all' = every core)")
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=SHAPES)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--no-cuda", action="store_true", help="CPU rows only")
    parser.add_argument("--cuda-shapes", nargs="+", type=parse_shape, default=None,
                        help="shapes timed on CUDA (default: --shapes, then the CUDA targets' shapes)")
    parser.add_argument("--allocator", nargs="+", choices=("system", "retain"), default=["system", "retain"],
                        help="glibc's malloc as it is, then made to retain freed memory (see above)")
    args = parser.parse_args(argv)
    # Each thread count gets its own compiled kernels, so the on-disk cache is not used.
    torch._inductor.config.fx_graph_cache = False
    all_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, numpy {np.__version__}, {all_threads} CPU threads available")
    rows: list[dict[str, object]] = []
    # "system" first: once glibc is told to retain freed memory, that cannot be taken back.
    for allocator in sorted(set(args.allocator), key=("system", "retain").index):
        if allocator == "retain":
            retain_freed_memory()
        for setting in args.threads:
            threads = all_threads if setting == "all" else int(setting)
            torch.set_num_threads(threads)
            torch._dynamo.reset()
            fused._compiled_kernels.clear()
            for shape in args.shapes:
                new_rows = measure(torch.device("cpu"), threads, shape, args.repeats, allocator)
                print_rows(new_rows)
                rows += new_rows
    if torch.cuda.is_available() and not args.no_cuda:
        # Fresh compiled kernels: torch.compile keeps at most 8 shapes per function by default, and
        # a shape over the limit would silently run the "reference compiled" row eagerly.
        torch._dynamo.reset()
        fused._compiled_kernels.clear()
        cuda_shapes = args.cuda_shapes or list(dict.fromkeys(args.shapes + CUDA_SHAPES))
        for shape in cuda_shapes:
            new_rows = measure(torch.device("cuda"), 0, shape, args.repeats, "cuda")
            print_rows(new_rows)
            rows += new_rows
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "bench_reference_batchnorm.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "bench_reference_batchnorm.png")
    print(f"\nwrote {csv_path} and {csv_path.with_suffix('.png')}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
