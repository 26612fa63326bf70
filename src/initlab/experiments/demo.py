"""The main job: the folklore of initialization, measured on real data (scikit-learn's digits).

Three acts, each a set of configurations run through the sweep machinery (SQLite under
``runs/demo/``, two worker processes), every run diagnosed at init by the doctor and then
trained:

1. **Initializations on a deep plain MLP** (16 hidden layers of 128), ReLU and tanh:
   zero init, N(0, 1), N(0, 0.01), PyTorch's default, Xavier, He, orthogonal and LSUV.
2. **The same with BatchNorm** (ReLU): normalization rescues the badly scaled inits, as the
   tutorials say, but not the symmetric zero init.
3. **Regularization on the best init** (He, ReLU): L2 penalty, decoupled weight decay,
   dropout, gradient clipping, augmentation, and a cosine schedule.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initlab.experiments.results import curves_table, summary, trials_table
from initlab.experiments.space import SearchSpace
from initlab.experiments.storage import default_url
from initlab.experiments.sweep import run_sweep

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["DEMO_INITS", "DEMO_NOTE", "DemoResult", "DemoRun", "demo_configurations", "run_demo"]

DEMO_INITS = ("zeros", "normal:1", "normal:0.01", "torch-default", "xavier", "kaiming",
              "orthogonal", "lsuv")  # fmt: skip
BASE: dict[str, Any] = {
    "init": "kaiming",
    "lr": 0.01,
    "optimizer": "sgd",
    "momentum": 0.9,
    "l1": 0.0,
    "l2": 0.0,
    "weight_decay": 0.0,
    "dropout": 0.0,
    "schedule": "constant",
    "clip": None,
    "augment": False,
    "depth": 16,
    "width": 128,
    "activation": "relu",
    "norm": None,
}
DEMO_NOTE = "Deep MLPs (16 x 128) on scikit-learn's digits, doctor at init, then SGD."
REGULARIZERS: dict[str, dict[str, Any]] = {
    "L2 1e-3": {"l2": 1e-3},
    "weight decay 5e-4": {"weight_decay": 5e-4},
    "dropout 0.1": {"dropout": 0.1},
    "clip 1.0": {"clip": 1.0},
    "augment": {"augment": True},
    "cosine": {"schedule": "cosine"},
}


@dataclass(frozen=True)
class DemoRun:
    """One configuration of the demo: its act, its label and its parameters (with seed)."""

    act: str
    label: str
    config: dict[str, Any]


def demo_configurations(seeds: int = 2) -> list[DemoRun]:
    """Every run of the three acts, for ``seeds`` seeds."""
    runs = []
    for seed in range(seeds):
        for init in DEMO_INITS:
            for activation in ("relu", "tanh"):
                config = {**BASE, "init": init, "activation": activation, "seed": seed}
                runs.append(DemoRun("1 plain MLP", f"{init}, {activation}", config))
        for init in DEMO_INITS[:6]:
            config = {**BASE, "init": init, "norm": "batch", "seed": seed}
            runs.append(DemoRun("2 with BatchNorm", f"{init}, relu + BN", config))
        for name, changes in REGULARIZERS.items():
            config = {**BASE, **changes, "seed": seed}
            runs.append(DemoRun("3 regularized", f"kaiming, relu + {name}", config))
    return runs


def _space(configs: list[dict[str, Any]], epochs: int, seeds: int) -> SearchSpace:
    options: dict[str, list[Any]] = {}
    for config in configs:
        for key, value in config.items():
            if key != "seed" and value not in options.setdefault(key, []):
                options[key].append(value)
    return SearchSpace.from_dict(
        {**options, "epochs": epochs, "batch_size": 64, "seeds": seeds, "sampler": "grid"},
        source="demo",
    )


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured, as data (``initlab demo`` renders it and writes the report).

    Attributes:
        table: one row per trial (:func:`~initlab.experiments.results.trials_table`) with the
            run's ``act`` and ``label`` after the trial number.
        curves: per-epoch metrics of every complete trial
            (:func:`~initlab.experiments.results.curves_table`).
        study: the Optuna study.
        folder: where the study lives (and where the report belongs).
    """

    table: Any
    curves: Any
    study: Any
    folder: Path

    def __str__(self) -> str:
        """The trials by state, then the three best configurations by their mean best val
        accuracy over seeds (:func:`~initlab.experiments.results.summary`)."""
        states = self.table["state"].value_counts()
        counted = ", ".join(f"{count} {state}" for state, count in states.items())
        lines = [f"initlab demo in {self.folder}: {len(self.table)} trials ({counted})"]
        best = summary(self.table).head(3)
        if len(best):
            lines.append("best configurations (mean best val accuracy over seeds):")
        for row in best.itertuples(index=False):
            spread = row.best_val_accuracy_std  # NaN over a single seed
            std = "" if math.isnan(spread) else f"std {spread:.2g}, "
            mean = row.best_val_accuracy_mean
            seeds = f"{row.seeds} seed{'' if row.seeds == 1 else 's'}"
            lines.append(f"  {row.label}: {mean:.4g} ({std}{seeds})")
        return "\n".join(lines)

    def __rich__(self) -> Text:
        """What a Rich console prints: :meth:`__str__`'s summary (not the dataclass's fields)."""
        from rich.text import Text

        return Text(str(self))


def _label_runs(table: Any, study: Any, runs: list[DemoRun]) -> None:
    """Insert each trial's ``act`` and ``label`` (from the run it holds) after its number."""
    by_params = {tuple(sorted(run.config.items(), key=str)): run for run in runs}
    run_of_trial: dict[int, DemoRun] = {}
    for trial in study.get_trials(deepcopy=False):
        run = by_params.get(tuple(sorted(trial.params.items(), key=str)))
        if run is not None:
            run_of_trial[trial.number] = run
    unknown = DemoRun(act="", label="", config={})
    table.insert(1, "act", table["trial"].map(lambda n: run_of_trial.get(n, unknown).act))
    table.insert(2, "label", table["trial"].map(lambda n: run_of_trial.get(n, unknown).label))


def run_demo(
    root: str | Path = "runs/demo",
    *,
    seeds: int = 2,
    epochs: int = 12,
    workers: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Run the demo from scratch into ``root`` (its study: ``root/demo.db``)."""
    folder = Path(root)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    runs = demo_configurations(seeds)
    configs = [run.config for run in runs]
    study = run_sweep(
        _space(configs, epochs, seeds),
        "digits-mlp",
        trials=len(configs),
        storage=default_url("demo", folder),
        study="demo",
        workers=workers,
        on_progress=on_progress,
        configurations=configs,
    )
    table = trials_table(study)
    _label_runs(table, study, runs)
    return DemoResult(table=table, curves=curves_table(study), study=study, folder=folder)
