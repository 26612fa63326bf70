"""initlab.lsuv vs the ``lsuv`` package from PyPI on the same models and batch.

Both start from copies of one model, in eval mode (``lsuv`` 0.3.0 switches to eval for its
passes; here both see the same BatchNorm behaviour). Reported: the median wall time of
interleaved runs and their ratio, then every layer's output variance measured afterwards by a
fresh forward pass with plain hooks (not from either tool's own log). initlab's criterion is
``|var - 1| < 0.1``; ``lsuv``'s is ``|std - 1| <= 0.1``.

    python benchmarks/bench_lsuv.py [--repeats 5] [--threads 2] [--device cpu]
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

from bench_doctor import cases, timer
from initlab.lsuv import LSUV_LAYER_TYPES, lsuv


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats} interleaved runs; eval mode, tol 0.1, max 10 iterations"
    )
    timed = timer(device)
    for name, base, batch in cases(device):
        base.eval()
        ours_times, theirs_times = [], []
        ours_model = theirs_model = base
        for _ in range(args.repeats):
            theirs_model = copy.deepcopy(base)
            theirs_times.append(
                timed(
                    lambda m=theirs_model, x=batch: pypi_lsuv.lsuv_with_singlebatch(
                        m, x, verbose=False, device=device
                    )
                )
            )
            ours_model = copy.deepcopy(base)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ours_times.append(timed(lambda m=ours_model, x=batch: lsuv(m, x)))
        ours, theirs = statistics.median(ours_times), statistics.median(theirs_times)
        ours_var = output_variances(ours_model, batch)
        theirs_var = output_variances(theirs_model, batch)
        within_ours = sum(abs(v - 1) < 0.1 for v in ours_var.values())
        within_theirs = sum(abs(v - 1) < 0.1 for v in theirs_var.values())
        print(
            f"\n{name}: initlab {ours * 1e3:.0f} ms, lsuv (PyPI) {theirs * 1e3:.0f} ms, "
            f"ratio {ours / theirs:.2f}; layers with |var-1| < 0.1: initlab "
            f"{within_ours}/{len(ours_var)}, lsuv {within_theirs}/{len(theirs_var)}"
            + (f"; initlab warned: {caught[0].message}" if caught else "")
        )
        print(f"  {'layer':<14} {'initlab var':>11} {'lsuv var':>9}")
        for layer, value in ours_var.items():
            print(f"  {layer:<14} {value:>11.4f} {theirs_var.get(layer, float('nan')):>9.4f}")


if __name__ == "__main__":
    main()
