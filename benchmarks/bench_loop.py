"""initlab.train.fit vs a bare hand-written PyTorch loop: the ratio of training steps per second.

Same model (same initial weights), same data tensors, same batch size, same optimizer
(``torch.optim.SGD(lr, momentum=0.9, foreach=True)``, which is what ``fit`` builds), same
number of epochs. The bare loop is what a user writes by hand: a permutation per epoch,
``x[idx]``, forward, cross-entropy, backward, step, then the val loss and accuracy after each
epoch and the test loss and accuracy at the end (``fit`` reports those too). ``fit`` does all
that plus what it records on top: per-step loss, accuracy and global gradient norm kept on the
device, weight norms per epoch, its set-up (rule matching, a shape check). Steps per second
are counted over each call's whole wall time.

A second column compares against the same loop without any evaluation (training steps only),
to show what the per-epoch val pass itself costs on a dataset whose val split is 21% of train.

Runs alternate (bare, fit, train-only, then fit, train-only, bare, ...: the order rotates) in
many short rounds, so a busy neighbour slows all alike; ratios are fit's median steps/s over
the other loop's median steps/s (1.00 = no overhead, above 1 = fit is faster).

    python benchmarks/bench_loop.py [--repeats 15] [--epochs 5] [--batch-size 64] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional

from initlab.train import MLP, Dataset, SmallCNN, Split, TrainConfig, fit, load_digits

LR, MOMENTUM = 0.05, 0.9


def _evaluate(model: nn.Module, split: Split) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        out = model(split.x)
        loss = functional.cross_entropy(out, split.y).item()
        accuracy = (out.argmax(1) == split.y).float().mean().item()
    model.train()
    return loss, accuracy


def bare_loop(
    model: nn.Module, data: Dataset, epochs: int, batch_size: int, evaluate: bool = True
) -> int:
    """The loop a user writes by hand; returns the number of optimizer steps."""
    x, y = data.train.x, data.train.y
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, foreach=True)
    order = torch.Generator().manual_seed(0)
    steps = 0
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        for start in range(0, len(x), batch_size):
            index = perm[start : start + batch_size]
            loss = functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
        if evaluate:
            _evaluate(model, data.val)
    if evaluate:
        _evaluate(model, data.test)
    return steps


def train_only(model: nn.Module, data: Dataset, epochs: int, batch_size: int) -> int:
    return bare_loop(model, data, epochs, batch_size, evaluate=False)


def initlab_fit(model: nn.Module, data: Dataset, epochs: int, batch_size: int) -> int:
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=LR, momentum=MOMENTUM)
    history = fit(model, data, config)
    return len(history.epochs) * -(-len(data.train) // batch_size)


def compare(
    name: str, factory: Callable[[], nn.Module], data: Dataset, args: argparse.Namespace
) -> float:
    torch.manual_seed(0)
    initial = factory().state_dict()
    rates: dict[str, list[float]] = {"bare": [], "fit": [], "train_only": []}
    runners = list({"bare": bare_loop, "fit": initlab_fit, "train_only": train_only}.items())
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        shift = repeat % len(runners)  # rotate the order so no loop always runs first
        for label, runner in runners[shift:] + runners[:shift]:
            model = factory()
            model.load_state_dict(initial)
            start = time.perf_counter()
            steps = runner(model, data, args.epochs, args.batch_size)
            if repeat:
                rates[label].append(steps / (time.perf_counter() - start))
    bare, ours, only = (statistics.median(rates[k]) for k in ("bare", "fit", "train_only"))
    ratio = ours / bare
    print(
        f"{name:<22} {torch.get_num_threads()} thread(s)  bare {bare:6.0f} steps/s  "
        f"fit {ours:6.0f} steps/s  ratio {ratio:5.3f}   "
        f"(train-only {only:6.0f} steps/s, ratio {ours / only:5.3f})"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    data = load_digits(seed=0)
    steps = -(-len(data.train) // args.batch_size)
    print(
        f"torch {torch.__version__}, digits train {len(data.train)}, batch {args.batch_size} "
        f"({steps} steps/epoch), {args.epochs} epochs, median of {args.repeats}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    cases: list[tuple[str, Callable[[], nn.Module]]] = [
        ("MLP 64-256-256-10", lambda: MLP(64, 10, depth=2, width=256)),
        ("SmallCNN 8x8 (32, 64)", lambda: SmallCNN(1, 10, image_size=8)),
    ]
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, factory in cases:
            compare(name, factory, data, args)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
