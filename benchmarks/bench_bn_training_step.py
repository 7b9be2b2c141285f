"""Time one SGD training step of a network with BN against the same network without it.

    .venv/bin/python benchmarks/bench_bn_training_step.py [--repeats 50] [--threads 1]

For the digits convnet of chapter 8 (``bncourse.convnet.make_convnet``) and
Figure 1's MLP (``bncourse.train.make_mlp``, 3 x 100 sigmoid units), at two
mini-batch sizes, times a full step (forward, loss, backward, SGD update) of
the plain and the BN network side by side, interleaved round by round
(``bncourse.convnet.training_step_seconds``), and prints the medians and their
ratio. Chapter 8 quotes the ratio for the convnet at m = 60. CPU only; the
timings are of this machine, at the time of the run, and the ratio is the
meaningful part.
"""

from __future__ import annotations

import argparse

import torch

from bncourse.convnet import make_convnet, training_step_seconds
from bncourse.data import load_digits
from bncourse.train import make_mlp

NETWORKS = {
    "convnet 16-32-32": lambda norm: make_convnet(norm),
    "MLP 3 x 100 sigmoid": lambda norm: make_mlp(norm=norm, activation="sigmoid"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    # one thread by default: on a shared machine, torch's worker threads wait for busy cores
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    digits = load_digits()
    print(f"{'network':<20} {'m':>4} {'plain ms':>9} {'BN ms':>7} {'BN / plain':>11}")
    for name, build in NETWORKS.items():
        for m in (60, 256):
            x, y = torch.as_tensor(digits.x_train[:m]), torch.as_tensor(digits.y_train[:m])
            timings = training_step_seconds({"none": build("none"), "batch": build("batch")}, x, y,
                                            repeats=args.repeats)
            plain, bn = timings["none"].median, timings["batch"].median
            print(f"{name:<20} {m:>4} {1e3 * plain:>9.2f} {1e3 * bn:>7.2f} {bn / plain:>10.2f}x")


if __name__ == "__main__":
    main()
