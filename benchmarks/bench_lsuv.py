"""initlab.lsuv vs the ``lsuv`` package from PyPI on the same models and batch.

Both start from copies of one model, in eval mode (``lsuv`` 0.3.0 switches to eval for its
passes; here both see the same BatchNorm behaviour). Reported: the median wall time of
interleaved runs (theirs, ours, theirs, ...), their ratio with the spread of the per-pair ratios,
the forward passes' worth initlab's log says it spent, then every layer's output variance
measured afterwards by a fresh forward pass with plain hooks (not from either tool's own log).
initlab's criterion is ``|var - 1| < 0.1``; ``lsuv``'s is ``|std - 1| <= 0.1``.

The cases (issue 14's table): a ResNet-18-like network (4 stages of 2 basic blocks, widths
64-512, 32x32 input, batch 64), a 20 x 1024 ReLU MLP (batch 256), and the small ResNet
(16-32-64, batch 32) of ``bench_doctor``.

    python benchmarks/bench_lsuv.py [--repeats 5] [--threads 2] [--device cpu]
        [--clock wall|cpu] [--no-orthogonal] [--cases resnet18 mlp resnet-small]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import warnings
from collections.abc import Callable

import lsuv as pypi_lsuv
import torch
from torch import nn

from bench_doctor import mlp, resnet, timer
from initlab.lsuv import LSUV_LAYER_TYPES, LsuvLog, lsuv

CASES: dict[str, tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet18": (
        "ResNet-18-like (64-128-256-512, 2 blocks per stage), batch 64x3x32x32",
        lambda: resnet(widths=(64, 128, 256, 512)),
        (64, 3, 32, 32),
    ),
    "mlp": ("MLP 20x1024, batch 256", mlp, (256, 1024)),
    "resnet-small": ("ResNet (16-32-64), batch 32x3x32x32", resnet, (32, 3, 32, 32)),
}


def output_variances(model: nn.Module, batch: torch.Tensor) -> dict[str, float]:
    """Each LSUV layer's output variance (over all elements) in one fresh forward pass."""
    found: dict[str, float] = {}

    def recorder(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            found.setdefault(name, output.detach().float().var(unbiased=False).item())

        return hook

    handles = [
        module.register_forward_hook(recorder(name))
        for name, module in model.named_modules()
        if isinstance(module, LSUV_LAYER_TYPES)
    ]
    with torch.no_grad():
        model(batch)
    for handle in handles:
        handle.remove()
    return found


def compare(
    name: str,
    base: nn.Module,
    batch: torch.Tensor,
    repeats: int,
    device: torch.device,
    clock: str,
    orthogonal: bool,
) -> None:
    """Time both tools interleaved on copies of ``base`` and print the ratio and variances."""
    timed = timer(device, clock)
    base.eval()
    ours_times, theirs_times = [], []
    ours_model = theirs_model = base
    logs: list[LsuvLog] = []
    warned: list[str] = []
    for _ in range(repeats):
        theirs_model = copy.deepcopy(base)
        theirs_times.append(
            timed(
                lambda m=theirs_model, x=batch: pypi_lsuv.lsuv_with_singlebatch(
                    m, x, verbose=False, device=device, do_orthonorm=orthogonal
                )
            )
        )
        ours_model = copy.deepcopy(base)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours_times.append(
                timed(lambda m=ours_model, x=batch: logs.append(lsuv(m, x, orthogonal=orthogonal)))
            )
        warned.extend(str(warning.message) for warning in caught)
    ours, theirs = statistics.median(ours_times), statistics.median(theirs_times)
    ratios = sorted(a / b for a, b in zip(ours_times, theirs_times, strict=True))
    ours_var = output_variances(ours_model, batch)
    theirs_var = output_variances(theirs_model, batch)
    within_ours = sum(abs(v - 1) < 0.1 for v in ours_var.values())
    within_theirs = sum(abs(v - 1) < 0.1 for v in theirs_var.values())
    log = logs[-1]
    print(
        f"\n{name}: initlab {ours * 1e3:.0f} ms (min {min(ours_times) * 1e3:.0f}, max "
        f"{max(ours_times) * 1e3:.0f}), lsuv (PyPI) {theirs * 1e3:.0f} ms (min "
        f"{min(theirs_times) * 1e3:.0f}, max {max(theirs_times) * 1e3:.0f}); ratio of medians "
        f"{ours / theirs:.3f}, per-pair ratios {ratios[0]:.3f}-{ratios[-1]:.3f}; initlab's log: "
        f"{log.forward_equivalents:.2f} forward passes' worth ({log.forward_passes} passes, "
        f"{log.layer_calls} single-layer calls); layers with |var-1| < 0.1: initlab "
        f"{within_ours}/{len(ours_var)}, lsuv {within_theirs}/{len(theirs_var)}"
        + (f"; initlab warned: {warned[0]}" if warned else "")
    )
    print(f"  {'layer':<20} {'initlab var':>11} {'lsuv var':>9}")
    for layer, value in ours_var.items():
        print(f"  {layer:<20} {value:>11.4f} {theirs_var.get(layer, float('nan')):>9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=["resnet18", "mlp"])
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument(
        "--no-orthogonal",
        action="store_true",
        help="skip both tools' orthonormal pre-init (a QR per layer), timing the passes alone",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
        f"{args.clock} clock, median of {args.repeats} interleaved runs; eval mode, tol 0.1, "
        "max 10 iterations" + ("; no orthonormal pre-init" if args.no_orthogonal else "")
    )
    generator = torch.Generator().manual_seed(0)
    for key in args.cases:
        name, build, shape = CASES[key]
        torch.manual_seed(0)
        model = build().to(device)
        batch = torch.randn(shape, generator=generator).to(device)
        compare(
            name, model, batch, args.repeats, device, args.clock, orthogonal=not args.no_orthogonal
        )


if __name__ == "__main__":
    main()
