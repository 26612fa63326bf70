"""initlab.init vs torch.nn.init, side by side in one run: the ratio of median times.

A ratio of 1.00 means no overhead. Runs are interleaved (torch, initlab, torch, ...) so a busy
neighbour slows both sides alike.

    python benchmarks/bench_init.py [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.init as theirs

import initlab.init as ours

Fill = Callable[[torch.Tensor], object]


def _median_seconds(fill: Fill, tensor: torch.Tensor, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fill(tensor)
        times.append(time.perf_counter() - start)
    return times


def compare(
    name: str, ours_fill: Fill, theirs_fill: Fill, shape: tuple[int, ...], repeats: int
) -> None:
    tensor = torch.empty(shape)
    tensor.zero_()  # fault the pages in before timing
    ours_times: list[float] = []
    theirs_times: list[float] = []
    for _ in range(repeats):
        theirs_times += _median_seconds(theirs_fill, tensor, 1)
        ours_times += _median_seconds(ours_fill, tensor, 1)
    torch_median = statistics.median(theirs_times)
    ours_median = statistics.median(ours_times)
    elements = tensor.numel()
    print(
        f"{name:<26} {elements / 1e6:>7.1f}M  torch {torch_median * 1e3:>9.1f} ms  "
        f"initlab {ours_median * 1e3:>9.1f} ms  ratio {ours_median / torch_median:5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    cases: list[tuple[str, Fill, Fill]] = [
        ("uniform_", ours.uniform_, theirs.uniform_),
        ("normal_", ours.normal_, theirs.normal_),
        ("trunc_normal_", ours.trunc_normal_, theirs.trunc_normal_),
        ("xavier_uniform_", ours.xavier_uniform_, theirs.xavier_uniform_),
        ("kaiming_normal_", ours.kaiming_normal_, theirs.kaiming_normal_),
    ]
    for elements in (16, 64):
        shape = (elements * 1024, 1024)
        for name, ours_fill, theirs_fill in cases:
            compare(name, ours_fill, theirs_fill, shape, args.repeats)
    compare("orthogonal_ 4096x4096", ours.orthogonal_, theirs.orthogonal_, (4096, 4096), 3)


if __name__ == "__main__":
    main()
