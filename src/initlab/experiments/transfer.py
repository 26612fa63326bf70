"""Learning-rate transfer across width, on real data: the pattern of the muP paper's Figure 1.

An MLP of ``depth`` hidden layers of width :math:`n` is trained with Adam on scikit-learn's
handwritten digits for every learning rate of a sweep, at every width, under each
parametrization (:func:`initlab.parametrize.parametrize`; the base model is the smallest
width's). The outcome of a run is its final training loss (cross-entropy over the whole train
split after the last epoch). Under the standard parametrization the best learning rate moves
with width (Adam's update to a readout weight is about the learning rate whatever the width,
so the logits' change grows like :math:`\\eta n` and the stable :math:`\\eta` shrinks like
:math:`1/n`); under muP the per-layer learning rates carry the width and the best learning
rate found at the base width is the best at every width (Yang et al., "Tensor Programs V",
2022, Figure 1 and section 3).

Every run is a trial of an Optuna study (``root/transfer.db``, SQLite) with parameters
``parametrization``, ``width`` and ``lr`` and the final loss as its value; a run whose loss
became NaN or infinite is stored as a failed trial with ``diverged`` set. The
:class:`TransferResult` is read back from the study (:func:`load_transfer`).
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from initlab.errors import ConfigError
from initlab.experiments.storage import default_url, open_storage
from initlab.optional import require
from initlab.parametrize import parametrize
from initlab.train.data import Split
from initlab.train.datasets import load_digits
from initlab.train.models import MLP

__all__ = [
    "STUDY",
    "TRANSFER_LEARNING_RATES",
    "TRANSFER_WIDTHS",
    "BestRate",
    "TransferResult",
    "TransferRun",
    "TransferSettings",
    "load_transfer",
    "run_transfer",
]

STUDY = "transfer"
TRANSFER_WIDTHS = (64, 128, 256, 512, 1024)
# 2^-14 .. 2^-4: Adam's useful range for these MLPs, one octave apart.
TRANSFER_LEARNING_RATES = tuple(2.0**exponent for exponent in range(-14, -3))
_CLASSES = 10
_PIXELS = 64


@dataclass(frozen=True)
class TransferSettings:
    """One sweep's grid and training settings (plain values: they cross process boundaries).

    Attributes:
        parametrizations: names :func:`initlab.parametrize.parametrize` knows.
        widths: hidden widths, ascending; the smallest is the base.
        learning_rates: Adam learning rates (at the base width, for muP).
        epochs: passes over the train split per run. Few on purpose: digits is small enough
            that longer runs drive every good learning rate's loss to about 0, and the minimum
            over learning rates is then flat and says nothing.
        depth: hidden layers of the MLP.
        batch_size: examples per step.
        seed: the data split, the models' init and the batch order (the same for every run).
    """

    parametrizations: tuple[str, ...] = ("sp", "mup")
    widths: tuple[int, ...] = TRANSFER_WIDTHS
    learning_rates: tuple[float, ...] = TRANSFER_LEARNING_RATES
    epochs: int = 2
    depth: int = 3
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("widths", "learning_rates", "parametrizations"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ConfigError(f"transfer: {name} must be distinct values, got {values!r}.")
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths):
            raise ConfigError(f"transfer: widths must be integers >= 1, got {self.widths!r}.")
        if tuple(sorted(self.widths)) != self.widths:
            raise ConfigError(f"transfer: widths must be ascending, got {self.widths!r}.")
        if any(not lr > 0 for lr in self.learning_rates):
            raise ConfigError(f"transfer: learning rates must be > 0: {self.learning_rates!r}.")
        for name in ("epochs", "depth", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"transfer: {name} must be >= 1, got {getattr(self, name)!r}.")


@dataclass(frozen=True)
class TransferRun:
    """One training run: its grid point and its final training loss (``None``: diverged)."""

    parametrization: str
    width: int
    lr: float
    final_loss: float | None


@dataclass(frozen=True)
class BestRate:
    """The learning rate with the lowest final loss at one width under one parametrization."""

    parametrization: str
    width: int
    lr: float
    final_loss: float


@dataclass(frozen=True)
class TransferResult:
    """Every run of a transfer sweep, read back from its study.

    Attributes:
        runs: one :class:`TransferRun` per (parametrization, width, learning rate).
        settings: the sweep's settings.
        storage: the study's storage URL.
    """

    runs: tuple[TransferRun, ...]
    settings: TransferSettings
    storage: str

    def best(self) -> tuple[BestRate, ...]:
        """The best learning rate per (parametrization, width), in the settings' order;
        a width whose runs all diverged has none."""
        found = []
        for parametrization in self.settings.parametrizations:
            for width in self.settings.widths:
                finished = [
                    (run.final_loss, run.lr)
                    for run in self.runs
                    if run.parametrization == parametrization
                    and run.width == width
                    and run.final_loss is not None
                ]
                if finished:
                    loss, lr = min(finished)
                    found.append(BestRate(parametrization, width, lr, loss))
        return tuple(found)

    def drift(self, parametrization: str) -> float | None:
        """Octaves the best learning rate moves per doubling of width: the least-squares slope

        .. math::

            \\log_2 \\eta^*(n) \\approx d \\log_2 n + c

        over the widths (``None`` with fewer than two widths that have a best rate). 0: the
        learning rate transfers; SP with Adam tends to :math:`-1` (:math:`\\eta^* \\propto 1/n`).
        A fit over all widths, not the two ends, so one noisy minimum moves it little.
        """
        rates = {b.width: b.lr for b in self.best() if b.parametrization == parametrization}
        if len(rates) < 2:
            return None
        widths = sorted(rates)
        logs = [math.log2(rates[width]) for width in widths]
        slope, _ = np.polyfit(np.log2(np.asarray(widths, float)), np.asarray(logs), 1)
        return float(slope)

    def __str__(self) -> str:
        """The best learning rate per width under each parametrization, and its drift."""
        lines = [f"learning-rate transfer on digits ({len(self.runs)} runs, {self.storage})"]
        for parametrization in self.settings.parametrizations:
            best = [b for b in self.best() if b.parametrization == parametrization]
            rates = ", ".join(f"{b.width}: 2^{math.log2(b.lr):g}" for b in best)
            drift = self.drift(parametrization)
            moved = "" if drift is None else f" (drift {drift:+.2f} octaves per doubling)"
            lines.append(f"  {parametrization}: best lr by width {rates}{moved}")
        return "\n".join(lines)


def _final_loss(model: torch.nn.Module, split: Split) -> float:
    model.eval()
    with torch.no_grad():
        return float(functional.cross_entropy(model(split.x), split.y))


def _train(settings: TransferSettings, split: Split, parametrization: str, width: int,
           lr: float) -> float | None:  # fmt: skip
    """Train one MLP; its final training loss, or ``None`` once the loss is not finite."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        base = MLP(_PIXELS, _CLASSES, depth=settings.depth, width=settings.widths[0])
        model = MLP(_PIXELS, _CLASSES, depth=settings.depth, width=width)
    chosen = parametrize(model, parametrization, base=base, optimizer="adam")
    chosen.plan.apply(model, seed=settings.seed)
    groups: Any = chosen.param_groups(lr)
    optimizer = torch.optim.Adam(groups, lr=lr)
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(split), generator=generator)
        for start in range(0, len(split), settings.batch_size):
            indices = order[start : start + settings.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(model(split.x[indices]), split.y[indices])
            if not torch.isfinite(loss):
                return None
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    final = _final_loss(model, split)
    return final if math.isfinite(final) else None


@dataclass(frozen=True)
class _Job:
    """One run to do: the settings and its grid point."""

    settings: TransferSettings
    parametrization: str
    width: int
    lr: float


@functools.cache
def _train_split(seed: int) -> Split:
    return load_digits(seed=seed).train


def _run_job(job: _Job) -> TransferRun:
    """Run one job in this process, on one torch thread (many small matrix products are
    ~10x slower with two threads on a busy two-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        split = _train_split(job.settings.seed)
        loss = _train(job.settings, split, job.parametrization, job.width, job.lr)
    finally:
        torch.set_num_threads(threads)
    return TransferRun(job.parametrization, job.width, job.lr, loss)


def _jobs(settings: TransferSettings) -> list[_Job]:
    """Every grid point, widest first (the longest runs start first, so workers end together)."""
    return [
        _Job(settings, parametrization, width, lr)
        for width in reversed(settings.widths)
        for parametrization in settings.parametrizations
        for lr in settings.learning_rates
    ]


def _run_jobs(
    jobs: list[_Job], workers: int, on_progress: Callable[[int, int], None] | None
) -> list[TransferRun]:
    if workers == 1:
        runs = []
        for job in jobs:
            runs.append(_run_job(job))
            if on_progress is not None:
                on_progress(len(runs), len(jobs))
        return runs
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending = [pool.submit(_run_job, job) for job in jobs]
        for done, _ in enumerate(concurrent.futures.as_completed(pending), start=1):
            if on_progress is not None:
                on_progress(done, len(jobs))
        return [future.result() for future in pending]


def _store(study: Any, settings: TransferSettings, runs: Sequence[TransferRun]) -> None:
    """Add every run to ``study`` as a finished trial (failed: diverged)."""
    optuna = require("optuna", "initlab demo transfer")
    distributions = {
        "parametrization": optuna.distributions.CategoricalDistribution(settings.parametrizations),
        "width": optuna.distributions.CategoricalDistribution(settings.widths),
        "lr": optuna.distributions.CategoricalDistribution(settings.learning_rates),
    }
    states = optuna.trial.TrialState
    trials = [
        optuna.trial.create_trial(
            params={"parametrization": run.parametrization, "width": run.width, "lr": run.lr},
            distributions=distributions,
            value=run.final_loss,
            state=states.FAIL if run.final_loss is None else states.COMPLETE,
            user_attrs={"diverged": run.final_loss is None},
        )
        for run in runs
    ]
    study.add_trials(trials)


def run_transfer(
    root: str | Path = "runs/transfer",
    settings: TransferSettings | None = None,
    *,
    workers: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
) -> TransferResult:
    """Run the learning-rate sweep over widths and parametrizations; store it; read it back.

    The study ``transfer`` in ``root/transfer.db`` is created afresh (an earlier one there is
    deleted). Each run is independent and seeded, so the result is the same with any number of
    workers.

    Example:
        >>> result = run_transfer("runs/transfer")
        >>> print(result)                 # best learning rate per width, SP and muP

    Args:
        root: the folder of the study (created).
        settings: the grid and the training (default :class:`TransferSettings`).
        workers: processes (spawned; one torch thread each).
        on_progress: called with (runs done, runs in all) after each run.

    Raises:
        ConfigError: bad settings or workers, or a storage that cannot be opened.
    """
    chosen = settings or TransferSettings()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"transfer: workers must be an integer >= 1, got {workers!r}.")
    optuna = require("optuna", "initlab demo transfer")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per study created
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    url = default_url(STUDY, folder)
    storage = open_storage(url, create=True)
    if STUDY in optuna.get_all_study_names(storage):
        optuna.delete_study(study_name=STUDY, storage=storage)
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="minimize")
    study.set_user_attr("settings", _settings_attribute(chosen))
    _store(study, chosen, _run_jobs(_jobs(chosen), workers, on_progress))
    return load_transfer(url)


def _settings_attribute(settings: TransferSettings) -> dict[str, Any]:
    return {name: list(v) if isinstance(v, tuple) else v for name, v in vars(settings).items()}


def load_transfer(url: str, study: str = STUDY) -> TransferResult:
    """A transfer sweep read back from its study (``url``: its storage URL).

    Raises:
        ConfigError: no such storage or study.
    """
    optuna = require("optuna", "initlab demo transfer")
    storage = open_storage(url)
    try:
        handle = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        raise ConfigError(
            f"No study named {study!r} in {url}; run `initlab demo transfer` first."
        ) from None
    stored = handle.user_attrs["settings"]
    settings = TransferSettings(
        parametrizations=tuple(str(name) for name in stored["parametrizations"]),
        widths=tuple(int(width) for width in stored["widths"]),
        learning_rates=tuple(float(lr) for lr in stored["learning_rates"]),
        epochs=int(stored["epochs"]),
        depth=int(stored["depth"]),
        batch_size=int(stored["batch_size"]),
        seed=int(stored["seed"]),
    )
    runs = tuple(
        TransferRun(
            trial.params["parametrization"],
            int(trial.params["width"]),
            float(trial.params["lr"]),
            None if trial.user_attrs.get("diverged") else float(trial.value),
        )
        for trial in handle.get_trials(deepcopy=False)
    )
    return TransferResult(runs, settings, url)
