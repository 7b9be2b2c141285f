"""Time a Conv2d followed by an eval-mode BatchNorm2d against the same Conv2d with BN folded in.

    .venv/bin/python benchmarks/bench_fold_batchnorm.py [--repeats 30] [--threads 1] [--device cpu|cuda]

For a few layer shapes, builds ``Conv2d(bias=False) -> BatchNorm2d`` with
non-trivial running statistics, folds the pair with
``bncourse.gpu.fold_batchnorm``, checks that the folded layer computes the same
output (float32 tolerance), and prints the median time of each (interleaved
repeats, ``bncourse.timing.compare_timings``) and their ratio. Chapter 5 of the
book makes the same measurement for one shape; this script is the place for
the broader comparison. Timings are of this machine, at the time of the run.
"""

from __future__ import annotations

import argparse

import torch

from bncourse.gpu import fold_batchnorm
from bncourse.timing import compare_timings

# (batch N, in channels, out channels, height = width, kernel size)
SHAPES = [(16, 32, 64, 32, 3), (64, 64, 64, 16, 3), (32, 128, 128, 8, 1)]


def build_pair(n_in: int, n_out: int, kernel: int, device: torch.device):
    """Conv2d -> BatchNorm2d in eval mode with statistics from a few training batches, and the folded Conv2d."""
    conv = torch.nn.Conv2d(n_in, n_out, kernel, padding=kernel // 2, bias=False).to(device)
    bn = torch.nn.BatchNorm2d(n_out).to(device)
    with torch.no_grad():
        for _ in range(5):
            bn(conv(torch.randn(8, n_in, 8, 8, device=device) * 2.0 + 0.5))
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    conv.eval()
    bn.eval()
    weight, bias = fold_batchnorm(conv.weight.detach(), None, bn.weight.detach(), bn.bias.detach(),
                                  bn.running_mean, bn.running_var, eps=bn.eps)
    folded = torch.nn.Conv2d(n_in, n_out, kernel, padding=kernel // 2).to(device)
    with torch.no_grad():
        folded.weight.copy_(weight)
        folded.bias.copy_(bias)
    return conv, bn, folded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    # one thread by default: on a shared machine, torch's worker threads wait for busy cores
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    def sync(_output: torch.Tensor) -> None:
        # CUDA kernels are asynchronous: wait for them, or we would time the launch only
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(f"device {device}, {torch.get_num_threads()} CPU threads, median of {args.repeats} interleaved repeats")
    for n, n_in, n_out, size, kernel in SHAPES:
        conv, bn, folded = build_pair(n_in, n_out, kernel, device)
        x = torch.randn(n, n_in, size, size, device=device)
        with torch.inference_mode():
            # float32: the two orders of summation differ by rounding, relative to the output size
            reference = bn(conv(x))
            error = (folded(x) - reference).abs().max().item() / reference.abs().max().item()
            assert error < 1e-5, f"folded layer disagrees with Conv2d+BN: relative error {error:.1e}"

            timings = compare_timings(
                {
                    "unfolded": lambda conv=conv, bn=bn, x=x: sync(bn(conv(x))),
                    "folded": lambda folded=folded, x=x: sync(folded(x)),
                },
                repeats=args.repeats,
            )
        unfolded_ms, folded_ms = (1e3 * timings[k].median for k in ("unfolded", "folded"))
        print(f"N={n:3d} {n_in:3d}->{n_out:3d} ch {size:2d}x{size:<2d} k={kernel}: Conv2d+BN {unfolded_ms:7.2f} ms,"
              f" folded {folded_ms:7.2f} ms, ratio {unfolded_ms / folded_ms:.2f}")


if __name__ == "__main__":
    main()
