"""initlab.scale side by side with what large-model users run today, ratios from one run.

1. Filling 64M and 256M float32 elements, reproducibly: initlab's counter stream
   (``initlab.counter.counter_fill_``) vs ``Tensor.normal_`` / ``uniform_`` /
   ``torch.nn.init.trunc_normal_`` with a seeded ``torch.Generator``, and vs the memory-write
   bound (``fill_(0)`` of the same pre-faulted tensor). Runs are interleaved (torch, initlab,
   fill, torch, ...) so a busy neighbour slows every side alike; medians are reported, with the
   range of the per-round speed-ups and the ratio of CPU times (all threads: on a busy machine
   the wall-clock gain of a second thread shrinks, the CPU-time ratio does not).
2. A GPT-2-XL-shaped stack (48 blocks, d_model 1600, MLP 4x, vocab 50257, context 1024, tied
   head: 1.56B parameters): ``initlab.scale.materialize`` with the ``gpt2`` preset vs
   ``Model()`` followed by the same init with ``torch.nn.init``. Each variant runs in a fresh
   process; time covers build + init (imports excluded, numba's too: the compiled kernels are
   loaded from numba's cache inside the time), also as CPU time (all threads, user +
   system: what a busy machine cannot distort) and its system part alone; memory is the
   process's peak RSS (``VmHWM``), also shown above the peak the process had after its imports.
   The load average before and after tells how busy the machine was.

   Both variants touch every parameter page for the first time inside the time, and on a
   virtual machine that first touch (the guest's page fault, and the host backing the page)
   costs more than the fill: 0.2-2 s per GiB on the 2-core VM these figures come from,
   changing from one run to the next with the host, against about 0.13 s per GiB for
   initlab's normal fill on 2 threads. Both variants pay it (it is most of the "system"
   column), so it moves the speed-up between runs: 2.2x to 5.6x medians on the same code in
   one evening; the model part runs 5 rounds by default. Tried against it, each variant in
   its own process, interleaved, and slower or no faster: one flat buffer per dtype with each
   parameter a view into it (the same page faults; and one shared storage, which
   ``torch.save`` of a single tensor and safetensors' shared-tensor check would see),
   ``MADV_HUGEPAGE`` on that buffer (3x slower on this VM), ``MAP_POPULATE`` and
   ``MADV_POPULATE_WRITE`` from one or two threads (2-4x slower than faulting in the fill).

   ``--resident`` times a second build + init in each process instead, after a first one was
   freed with glibc told to keep freed memory (``MALLOC_*`` variables: no ``mmap``, no trim): the
   parameters land mostly on pages the process has touched already, as for a sweep that
   builds model after model (glibc still hands out about a fifth of them fresh: 320,000 of
   the first build's 1.5M page faults). It shows what each variant computes, nearly without
   the first touch.

   The last line bounds the speed-up from the run's own figures: the kernel's part of
   materialize (its system time, over the thread count: it runs on the process's threads) is
   a floor under its wall clock however fast the fill, so ``Model()`` + init over it is the
   most any fill could show on that machine that day.

    python benchmarks/bench_scale.py [--threads 2] [--sizes 64 256] [--repeats 5]
        [--model-repeats 5] [--layers 48] [--dtype float32] [--device cpu] [--skip-fill]
        [--skip-model] [--resident]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Fill = Callable[[torch.Tensor], object]


# --- 1. fill throughput -------------------------------------------------------------------------
def _fills() -> dict[str, tuple[Fill, Fill]]:
    from initlab.counter import counter_fill_
    from initlab.rng import CounterStream
    from initlab.schemes import Normal, TruncatedNormal, Uniform

    generator = torch.Generator().manual_seed(0)
    stream = CounterStream(0)
    return {
        "normal": (
            lambda t: t.normal_(0.0, 1.0, generator=generator),
            lambda t: counter_fill_(t, Normal(0.0, 1.0), stream),
        ),
        "uniform": (
            lambda t: t.uniform_(-1.0, 1.0, generator=generator),
            lambda t: counter_fill_(t, Uniform(-1.0, 1.0), stream),
        ),
        "truncated normal": (
            lambda t: nn.init.trunc_normal_(t, 0.0, 1.0, -2.0, 2.0, generator=generator),
            lambda t: counter_fill_(t, TruncatedNormal(0.0, 1.0, -2.0, 2.0), stream),
        ),
    }


def _seconds(fill: Fill, tensor: torch.Tensor, cpu: list[float] | None = None) -> float:
    """Wall seconds of one fill; its CPU seconds (all threads) go to ``cpu``."""
    start, used = time.perf_counter(), time.process_time()
    fill(tensor)
    if cpu is not None:
        cpu.append(time.process_time() - used)
    return time.perf_counter() - start


def _spread(values: list[float]) -> str:
    """The range of per-round ratios around their median: ``low-high``."""
    return f"{min(values):.2f}-{max(values):.2f}"


def bench_fills(sizes: list[int], repeats: int) -> None:
    from initlab.counter import fill_backend

    print(
        f"\n## Fill throughput, float32, {torch.get_num_threads()} threads, median of {repeats} "
        f"interleaved rounds; initlab fill backend: {fill_backend()}"
    )
    print(
        f"{'law':<17} {'elements':>9} {'torch G/s':>10} {'initlab G/s':>12} {'speed-up':>9} "
        f"{'(spread)':>11} {'CPU-time':>9} {'fill_(0) G/s':>13} {'initlab/write bound':>20}"
    )
    for millions in sizes:
        tensor = torch.empty(millions * 2**20)
        tensor.fill_(0)  # fault the pages in before timing
        for law, (theirs, ours) in _fills().items():
            ours(tensor[:1024])  # the compiled kernels load (or compile) on first use
            times: dict[str, list[float]] = {"torch": [], "initlab": [], "fill": []}
            cpu: dict[str, list[float]] = {"torch": [], "initlab": []}
            for _ in range(repeats):
                times["torch"].append(_seconds(theirs, tensor, cpu["torch"]))
                times["initlab"].append(_seconds(ours, tensor, cpu["initlab"]))
                times["fill"].append(_seconds(lambda t: t.fill_(0), tensor))
            cpu_ratio = statistics.median(cpu["torch"]) / statistics.median(cpu["initlab"])
            rate = {k: tensor.numel() / statistics.median(v) / 1e9 for k, v in times.items()}
            rounds = [t / o for t, o in zip(times["torch"], times["initlab"], strict=True)]
            print(
                f"{law:<17} {millions:>8}M {rate['torch']:>10.3f} {rate['initlab']:>12.3f} "
                f"{rate['initlab'] / rate['torch']:>8.2f}x {_spread(rounds):>11} "
                f"{cpu_ratio:>8.2f}x {rate['fill']:>13.3f} "
                f"{rate['initlab'] / rate['fill']:>19.3f}x"
            )
        del tensor


# --- 2. GPT-2-XL-shaped stack -------------------------------------------------------------------
class Block(nn.Module):
    """A GPT-2 block with nanoGPT's parameter names."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(width, 3 * width)
        self.attn.c_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(width, 4 * width)
        self.mlp.c_proj = nn.Linear(4 * width, width)


class GPT(nn.Module):
    """GPT-2 XL's shapes by default: 48 blocks, width 1600, vocab 50257, context 1024."""

    def __init__(
        self, n_layer: int = 48, width: int = 1600, vocab: int = 50257, context: int = 1024
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList(Block(width) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.wte.weight


def torch_gpt2_init(model: nn.Module, n_layer: int) -> None:
    """GPT-2's init (Radford et al., 2019; nanoGPT) written with torch.nn.init."""
    for name, param in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(param, 0.0, 0.02 / math.sqrt(2 * n_layer))
        elif param.dim() == 2:
            nn.init.normal_(param, 0.0, 0.02)
        elif ".ln_" in f".{name}" and name.endswith("weight"):
            nn.init.ones_(param)
        else:
            nn.init.zeros_(param)


def _peak_rss_bytes() -> float:
    """This process's peak resident set size: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``,
    which a child inherits from its parent on Linux), else ``getrusage``."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _system_seconds() -> float:
    """This process's kernel CPU time, all threads: page faults are most of it here."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def _load() -> str:
    """The 1-minute load average (how many runnable threads the machine had), or ``?``."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def _environment(resident: bool) -> dict[str, str]:
    """The variant's environment; ``resident``: glibc allocates everything from its heap and
    never gives freed memory back (set before the process starts: ``mallopt`` takes an int,
    under the 5.8 GiB freed here)."""
    environment = dict(os.environ)
    if resident:
        environment["MALLOC_MMAP_MAX_"] = "0"  # a threshold above 32 MiB would be ignored
        environment["MALLOC_TRIM_THRESHOLD_"] = str(2**40)
    return environment


def _build(kind: str, layers: int, dtype: torch.dtype, device: str, plan: Any) -> nn.Module:
    from initlab.scale import materialize

    if kind == "materialize":
        return materialize(lambda: GPT(layers), plan, device=device, dtype=dtype, seed=0)
    model = GPT(layers).to(device=device, dtype=dtype)
    torch_gpt2_init(model, layers)
    return model


def _variant(
    kind: str, layers: int, dtype_name: str, device: str, resident: bool
) -> dict[str, float | str]:
    """Runs in a fresh process: build + init one model (the second one, ``resident``),
    report time and memory."""
    import initlab
    from initlab.counter import fill_backend

    dtype = getattr(torch, dtype_name)
    plan = initlab.preset("gpt2", n_layer=layers)
    backend = fill_backend()  # imports numba, as the imports above are left out of the time
    if resident:  # the parent set glibc's variables: the memory freed here stays in use
        _build(kind, layers, dtype, device, plan)
        gc.collect()
    baseline = _peak_rss_bytes()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start, cpu, system = time.perf_counter(), time.process_time(), _system_seconds()
    model = _build(kind, layers, dtype, device, plan)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    system = _system_seconds() - system
    peak = _peak_rss_bytes()
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "backend": backend,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "system_seconds": system,
        "parameters": parameters,
        "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "peak_bytes": peak,
        "baseline_bytes": baseline,
        "device_peak_bytes": float(torch.cuda.max_memory_allocated()) if device == "cuda" else 0,
    }


def bench_model(
    layers: int, dtype: str, device: str, repeats: int, threads: int, resident: bool
) -> None:
    results: dict[str, list[dict[str, Any]]] = {"eager": [], "materialize": []}
    load_before = _load()
    for _ in range(repeats):
        for kind in ("eager", "materialize"):
            command = [sys.executable, __file__, "--variant", kind, "--layers", str(layers),
                       "--dtype", dtype, "--device", device,
                       "--threads", str(threads)]  # fmt: skip
            command += ["--resident"] if resident else []
            output = subprocess.run(
                command, check=True, capture_output=True, text=True, env=_environment(resident)
            ).stdout
            results[kind].append(json.loads(output.strip().splitlines()[-1]))
    first = results["eager"][0]
    print(
        f"\n## GPT-2-XL-shaped stack{' (pages resident)' if resident else ''}: {layers} "
        f"blocks, {first['parameters'] / 1e9:.3f}B "
        f"parameters, {dtype} ({first['parameter_bytes'] / 2**30:.2f} GiB), {device}, "
        f"{threads} threads, median of {repeats} fresh processes each, interleaved; load "
        f"average {load_before} before, {_load()} after"
    )
    print(
        f"{'variant':<34} {'seconds':>8} {'(spread)':>13} {'CPU s':>7} {'system s':>9} "
        f"{'peak RSS GiB':>13} {'peak / params':>14} {'(peak - imports) / params':>26}"
    )
    seconds, cpu = {}, {}
    for kind, label in (
        ("eager", "Model() + torch.nn.init"),
        ("materialize", "initlab.scale.materialize"),
    ):
        runs = results[kind]
        times = [r["seconds"] for r in runs]
        seconds[kind] = statistics.median(times)
        cpu[kind] = statistics.median(r["cpu_seconds"] for r in runs)
        system = statistics.median(r["system_seconds"] for r in runs)
        peak = statistics.median(r["peak_bytes"] for r in runs)
        above = statistics.median(r["peak_bytes"] - r["baseline_bytes"] for r in runs)
        params = runs[0]["parameter_bytes"]
        print(
            f"{label:<34} {seconds[kind]:>8.2f} {_spread(times):>13} {cpu[kind]:>7.2f} "
            f"{system:>9.2f} {peak / 2**30:>13.2f} {peak / params:>13.3f}x "
            f"{above / params:>25.3f}x"
        )
        if device == "cuda":
            device_peak = statistics.median(r["device_peak_bytes"] for r in runs)
            print(f"{'':<34} CUDA peak allocated {device_peak / params:.3f}x params")
    rounds = [
        e["seconds"] / m["seconds"]
        for e, m in zip(results["eager"], results["materialize"], strict=True)
    ]
    print(
        f"materialize speed-up: {seconds['eager'] / seconds['materialize']:.2f}x (per round "
        f"{_spread(rounds)}; CPU time {cpu['eager'] / cpu['materialize']:.2f}x); fill backend "
        f"{results['materialize'][0]['backend']}"
    )
    # The kernel's time runs on the process's threads only: materialize's wall clock is at
    # least its system time over the thread count, whatever the fill computes.
    touch = [m["system_seconds"] / threads for m in results["materialize"]]
    if device != "cpu" or min(touch) <= 0.0:  # a device's memory is not the host's pages
        return
    ceiling = [e["seconds"] / t for e, t in zip(results["eager"], touch, strict=True)]
    print(
        f"first touch alone (materialize's system time / {threads} threads): "
        f"{statistics.median(touch):.2f} s, so with a free fill the speed-up could not pass "
        f"{seconds['eager'] / statistics.median(touch):.2f}x (per round {_spread(ceiling)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="millions")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-fill", action="store_true")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--resident", action="store_true")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.variant:
        found = _variant(args.variant, args.layers, args.dtype, args.device, args.resident)
        print(json.dumps(found))
        return
    gpu = torch.cuda.is_available()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'CUDA ' + torch.cuda.get_device_name() if gpu else 'no GPU in this run'}"
    )
    if not args.skip_fill:
        bench_fills(args.sizes, args.repeats)
    if not args.skip_model:
        bench_model(
            args.layers, args.dtype, args.device, args.model_repeats, args.threads, args.resident
        )


if __name__ == "__main__":
    main()
