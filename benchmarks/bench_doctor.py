"""The doctor's statistics vs a plain forward+backward on the same batch: the ratio of medians.

"plain" is ``model(x)``, a random-cotangent backward; "probed" is the same under
``Probe(model)`` (every layer, activation and norm; gradients and cosine similarity on) plus
``collect()`` and ``weight_records(model)``, the measurement :func:`initlab.doctor.doctor`
makes. The target is a ratio of at most 1.5. The Jacobian estimate is timed on its own.
Runs are interleaved (plain, probed, plain, ...) so a busy neighbour slows both sides alike.

    python benchmarks/bench_doctor.py [--repeats 7] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from initlab.doctor.metrics import jacobian_spectrum, weight_records
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
    """The two benchmark models with their batches, seeded."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    return [
        (
            "MLP 20x1024, batch 256",
            mlp().to(device),
            torch.randn(256, 1024, generator=generator).to(device),
        ),
        (
            "ResNet (16-32-64), batch 32x3x32x32",
            resnet().to(device),
            torch.randn(32, 3, 32, 32, generator=generator).to(device),
        ),
    ]


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def run(step: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return run


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    run = timer(device)
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats} interleaved runs"
    )
    for name, model, batch in cases(device):
        for _ in range(2):  # warm-up: allocator, kernels, lazy inits
            plain(model, batch)
            probed(model, batch)
        plain_times, probed_times = [], []
        for _ in range(args.repeats):
            plain_times.append(run(lambda m=model, x=batch: plain(m, x)))
            probed_times.append(run(lambda m=model, x=batch: probed(m, x)))
        jacobian_times = [run(lambda m=model, x=batch: jacobian_spectrum(m, x)) for _ in range(3)]
        base = statistics.median(plain_times)
        stats = statistics.median(probed_times)
        jacobian = statistics.median(jacobian_times)
        print(
            f"{name:<36} plain fwd+bwd {base * 1e3:8.1f} ms   probe+weights "
            f"{stats * 1e3:8.1f} ms   ratio {stats / base:5.2f} (target <= 1.50)   "
            f"jacobian estimate {jacobian * 1e3:8.1f} ms ({jacobian / base:4.1f}x plain)"
        )


if __name__ == "__main__":
    main()
