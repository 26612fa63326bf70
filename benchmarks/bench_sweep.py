"""Sweep throughput, in one run: 2 workers vs 1, and a sweep's overhead over bare ``fit``.

1. A fixed 16-trial grid sweep on digits with 1 worker, then with 2 worker processes (one
   torch thread each): the ratio of wall times (target: 2 workers >= 1.7x faster on 2 cores).
2. The same 16 configurations trained with ``fit`` alone in a loop (same model, init, data and
   settings) vs the 1-worker sweep: the sweep's per-trial overhead (storage, doctor at init,
   bookkeeping; target < 5%). Two long runs minutes apart on a shared machine differ by more
   than 5%, so the sweep's own share is also given without the comparison: its wall time
   minus the summed wall time its trials measured for themselves (build, init, doctor, fit).
3. What a worker process costs to start (Python, torch, Optuna, the dataset, torch.optim's
   first-call import of ``torch._dynamo``): a 2-worker sweep of 2 one-epoch trials. It is paid
   once per sweep, so the 2-worker speed-up grows with the work per trial: at the default
   100 epochs (about 4 s a trial) it is small next to the sweep; at 8 epochs it is not.

Everything is warmed up first (one short fit), so no side pays a first-call import alone.

    python benchmarks/bench_sweep.py [--epochs 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from initlab.experiments.inits import init_by_name
from initlab.experiments.results import trials_table
from initlab.experiments.space import SearchSpace
from initlab.experiments.sweep import grid_configurations, run_sweep
from initlab.experiments.trial import SWEEP_TASKS, train_config
from initlab.train import fit


def _space(epochs: int) -> SearchSpace:
    return SearchSpace.from_dict(
        {
            "init": ["kaiming", "xavier", "lecun", "orthogonal"],
            "activation": ["relu", "tanh"],
            "dropout": [0.0, 0.1],
            "depth": [6],
            "width": [128],
            "lr": [0.02],
            "epochs": epochs,
            "sampler": "grid",
        }
    )


def _sweep_seconds(space: SearchSpace, workers: int, folder: Path) -> tuple[float, float]:
    """Wall time of the sweep, and the summed wall time of its trials' own work."""
    start = time.perf_counter()
    url = f"sqlite:///{folder / f'w{workers}.db'}"
    study = run_sweep(space, "digits-mlp", trials=16, storage=url, study=f"bench-{workers}",
                      workers=workers)  # fmt: skip
    wall = time.perf_counter() - start
    trials = trials_table(study)
    return wall, float(trials["seconds"].sum())


def _bare_fit_seconds(space: SearchSpace) -> float:
    task = SWEEP_TASKS["digits-mlp"]
    data = task.load()
    start = time.perf_counter()
    for config in grid_configurations(space):
        torch.manual_seed(0)
        model = task.build(config, data)
        init_by_name(model, str(config["init"]), seed=0)
        settings = train_config(config, epochs=space.epochs, batch_size=space.batch_size, seed=0)
        fit(model, data, settings)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = _space(args.epochs)
    assert space.grid_size() == 16
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _bare_fit_seconds(_space(1))  # warm-up: imports and first calls
        one, inside = _sweep_seconds(space, 1, folder)
        bare = _bare_fit_seconds(space)
        two, _ = _sweep_seconds(space, 2, folder)
        start = time.perf_counter()
        run_sweep(_space(1), "digits-mlp", trials=2, storage=f"sqlite:///{folder / 's.db'}",
                  study="startup", workers=2)  # fmt: skip
        startup = time.perf_counter() - start
    print(f"16 trials, {args.epochs} epochs each, digits MLP 6x128, 1 torch thread per worker")
    print(f"bare fit loop      {bare:7.1f} s")
    print(f"sweep, 1 worker    {one:7.1f} s   overhead over fit {100 * (one - bare) / bare:5.1f}%"
          f"   (storage and scheduling alone: {100 * (one - inside) / inside:4.1f}% of the trials'"
          f" own {inside:.1f} s)")  # fmt: skip
    print(f"sweep, 2 workers   {two:7.1f} s   speed-up over 1 worker {one / two:4.2f}x")
    print(f"2 workers, 2 one-epoch trials {startup:5.1f} s   (worker start-up, paid once)")


if __name__ == "__main__":
    main()
