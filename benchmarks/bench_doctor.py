"""The doctor vs a plain forward+backward on the same batch: ratios of medians.

"plain" is ``model(x)``, a random-cotangent backward. "statistics" is the same under
``Probe(model)`` (every layer, activation and norm; gradients and cosine similarity on) plus
``collect()`` and ``weight_records(model)``: the measurement :func:`initlab.doctor.doctor`
makes (floor 1.2x). "doctor()" is the whole call: statistics, weights, the Jacobian's
spectrum, activation detection and findings (floor 2.0x). Runs are interleaved (plain,
statistics, doctor(), plain, ...) so a busy neighbour slows all alike; the first doctor() call
of each model (lazy imports) is timed on its own, and the last line says whether the doctor
loaded ``torch._dynamo`` (over a second on first use).

``--heap steady`` keeps freed memory in the process (glibc's ``mallopt``: no trimming of the
heap's top, no ``mmap`` below 32 MiB). With glibc's defaults a step's freed activations are
sometimes given back to the system and faulted in again by the next step, at random from one
process to the next: on the 2-core VM these figures come from, that swings the plain pass of
the small ResNet from 49 to 90 ms (0 to 9,000 page faults), and every ratio with it. The
steady heap takes that out of both sides; the default (``--heap default``) is what a user's
process gets.

    python benchmarks/bench_doctor.py [--repeats 7] [--threads 2] [--device cpu] [--clock wall]
        [--heap {default,steady}]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

import initlab
from initlab.doctor.metrics import weight_records
from initlab.doctor.probe import Probe


def mlp(depth: int = 20, width: int = 1024) -> nn.Sequential:
    """``depth`` Linear layers of ``width`` with ReLU between them."""
    layers: list[nn.Module] = []
    for index in range(depth):
        layers.append(nn.Linear(width, width))
        if index < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, channels_in: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        result: torch.Tensor = self.relu2(out + self.shortcut(x))
        return result


def resnet(
    widths: tuple[int, ...] = (16, 32, 64), blocks: int = 2, classes: int = 10
) -> nn.Module:
    """A small CIFAR-style ResNet (He et al., 2016): 3x3 stem, ``blocks`` per stage."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(),
    ]
    channels = widths[0]
    for stage, width in enumerate(widths):
        for index in range(blocks):
            layers.append(BasicBlock(channels, width, 2 if stage and not index else 1))
            channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]
    return nn.Sequential(*layers)


def cases(device: torch.device) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """The benchmark models with their batches, seeded."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    return [
        (
            "MLP 20x1024, batch 256",
            mlp().to(device),
            torch.randn(256, 1024, generator=generator).to(device),
        ),
        (
            "ResNet (16-32-64), batch 32",
            resnet().to(device),
            torch.randn(32, 3, 32, 32, generator=generator).to(device),
        ),
        (
            "ResNet-18-like (64-512), batch 32",
            resnet((64, 128, 256, 512)).to(device),
            torch.randn(32, 3, 32, 32, generator=generator).to(device),
        ),
    ]


def timer(device: torch.device, clock: str) -> Callable[[Callable[[], object]], float]:
    """Seconds one call takes: wall-clock, or the process's CPU time (``--clock cpu``: what
    the call computed, nearly blind to other processes on a shared machine; with one thread,
    as OpenMP's waiting threads count too)."""
    now = time.perf_counter if clock == "wall" else time.process_time

    def run(step: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = now()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return now() - start

    return run


def steady_heap() -> bool:
    """Keep freed memory in this process from now on (glibc only; ``False`` elsewhere)."""
    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or name is None:
        return False
    libc = ctypes.CDLL(name)
    trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    # mallopt returns 1 on success; 32 MiB is the largest mmap threshold glibc accepts.
    return bool(
        libc.mallopt(mmap_threshold, 32 * 2**20) and libc.mallopt(trim_threshold, 2**31 - 1)
    )


def backward(model: nn.Module, batch: torch.Tensor) -> None:
    output = model(batch)
    cotangent = torch.randn_like(output)
    (output * cotangent).sum().backward()


def plain(model: nn.Module, batch: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    backward(model, batch)


def probed(model: nn.Module, batch: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    with Probe(model) as probe:
        backward(model, batch)
        probe.collect()
    weight_records(model)


def whole(model: nn.Module, batch: torch.Tensor) -> None:
    initlab.doctor(model, batch)


def _ratio(times: dict[str, list[float]], name: str) -> str:
    """Median of ``name`` over the median plain pass, and the spread of the paired ratios
    (each run over the plain run beside it): their 25th-75th percentiles."""
    paired = sorted(t / p for t, p in zip(times[name], times["plain"], strict=True))
    low, high = paired[len(paired) // 4], paired[(3 * len(paired)) // 4]
    ratio = statistics.median(times[name]) / statistics.median(times["plain"])
    return f"{ratio:5.2f} [{low:.2f}-{high:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--heap", choices=("default", "steady"), default="default")
    args = parser.parse_args()
    heap = "steady" if args.heap == "steady" and steady_heap() else "default"
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    run = timer(device, args.clock)
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
        f"{args.clock} clock, {heap} heap, "
        f"median of {args.repeats} interleaved runs, ratio to the plain pass "
        "[25th-75th percentile of the paired ratios]"
    )
    steps = {"plain": plain, "statistics": probed, "doctor()": whole}
    for name, model, batch in cases(device):
        first = run(lambda m=model, x=batch: whole(m, x))  # lazy imports, kernels, allocator
        for _ in range(2):
            for step in steps.values():
                step(model, batch)
        times: dict[str, list[float]] = {key: [] for key in steps}
        for _ in range(args.repeats):
            for key, step in steps.items():
                times[key].append(run(lambda m=model, x=batch, s=step: s(m, x)))
        print(
            f"{name:<34} plain fwd+bwd {statistics.median(times['plain']) * 1e3:7.1f} ms   "
            f"statistics {_ratio(times, 'statistics')} (floor 1.20)   "
            f"doctor() {_ratio(times, 'doctor()')} (floor 2.00)   first doctor() "
            f"{first * 1e3:6.0f} ms"
        )
    print(f"torch._dynamo loaded: {'torch._dynamo' in sys.modules}")


if __name__ == "__main__":
    main()
