"""Sweeps: an Optuna study over a :class:`SearchSpace`, in one or many worker processes.

Each trial runs :func:`~initlab.experiments.trial.run_configuration` (doctor at init, then
``fit``) and stores the doctor's verdict, the per-epoch history and the outcome as the trial's
user attributes. The objective Optuna maximizes is the best validation accuracy.

Seeds: every configuration runs for ``space.seeds`` seeds. Grid search puts the seed in the
grid (every grid point is enqueued up front and popped by the workers); random and TPE search
draw a configuration for seed 0 and enqueue the same configuration for the other seeds, so
every configuration ends with its spread.

Workers: ``workers`` processes (spawned, one torch thread each) join the same study through
the storage; with PostgreSQL, processes on other machines can join too (same ``--storage`` and
``--study``). A killed worker's trial is failed by heartbeat and retried (see
:mod:`initlab.experiments.storage`). The sweep stops when the study holds ``trials`` finished
trials, counting those of earlier runs, so running the same command again resumes it.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from initlab.errors import ConfigError
from initlab.experiments.space import SEARCHED, Range, SearchSpace
from initlab.experiments.storage import HEARTBEAT_SECONDS, open_storage
from initlab.experiments.trial import OUTCOME_ATTRIBUTE, get_task, run_configuration
from initlab.optional import require

__all__ = [
    "SweepSettings",
    "enqueue",
    "finished_trials",
    "grid_configurations",
    "make_objective",
    "run_sweep",
    "run_worker",
]


@dataclass(frozen=True)
class SweepSettings:
    """Everything a worker needs, as plain values (it crosses process boundaries)."""

    space: dict[str, Any]
    task: str
    storage: str
    study: str
    trials: int
    sampler_seed: int = 0
    heartbeat: int = HEARTBEAT_SECONDS


def _suggest(trial: Any, name: str, option: Any) -> Any:
    if isinstance(option, Range):
        return trial.suggest_float(name, option.low, option.high, log=option.log)
    return trial.suggest_categorical(name, list(option))


QUEUE_POLL_SECONDS = 0.25


def _wait_for_queue(trial: Any, poll_seconds: float) -> None:
    """Block while the grid queue is empty but other workers still run trials.

    One of them may die; its trial is then failed by heartbeat (checked here, as no new trial
    starts while this one waits) and comes back to the queue. Returns as soon as a trial waits
    in the queue, and stops the study once no other trial runs.
    """
    optuna = require("optuna", "initlab sweep")
    states = optuna.trial.TrialState
    study = trial.study
    while True:
        running = study.get_trials(deepcopy=False, states=(states.RUNNING,))
        if not any(other.number != trial.number for other in running):
            study.stop()
            return
        if study.get_trials(deepcopy=False, states=(states.WAITING,)):
            return
        time.sleep(poll_seconds)
        with warnings.catch_warnings():  # "experimental since 2.9", stable in use since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def make_objective(
    space: SearchSpace, task_name: str, *, poll_seconds: float = QUEUE_POLL_SECONDS
) -> Callable[[Any], float]:
    """The Optuna objective of ``space`` on the task called ``task_name``."""
    optuna = require("optuna", "initlab sweep")
    task = get_task(task_name)
    data = task.load()

    def objective(trial: Any) -> float:
        if space.sampler == "grid" and not trial.user_attrs.get("enqueued"):
            trial.set_user_attr("surplus", True)  # the queue is empty: no work in this trial
            _wait_for_queue(trial, poll_seconds)
            raise optuna.TrialPruned("queue empty")
        config = {name: _suggest(trial, name, getattr(space, name)) for name in SEARCHED}
        if space.sampler == "grid":
            seed = int(trial.suggest_categorical("seed", list(range(space.seeds))))
        else:
            seed = int(trial.user_attrs.get("seed", 0))
            if "seed" not in trial.user_attrs and space.seeds > 1:
                for other in range(1, space.seeds):
                    trial.study.enqueue_trial(config, user_attrs={"seed": other})
        trial.set_user_attr("seed", seed)

        def on_epoch(record: Any) -> None:
            if record.val_accuracy is not None and space.pruner != "none":
                trial.report(record.val_accuracy, record.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

        outcome = run_configuration(config, task, data, seed=seed, epochs=space.epochs,
                                    batch_size=space.batch_size, on_epoch=on_epoch)  # fmt: skip
        # One user attribute, one storage write (each write is a transaction: ~5 ms on SQLite).
        trial.set_user_attr(OUTCOME_ATTRIBUTE, outcome.attributes())
        return outcome.best_val_accuracy

    return objective


def _sampler(space: SearchSpace, seed: int) -> Any:
    samplers = require("optuna", "initlab sweep").samplers
    if space.sampler in ("grid", "random"):
        # Grid points are enqueued up front (see enqueue_grid); workers only pop the queue.
        return samplers.RandomSampler(seed=seed)
    return samplers.TPESampler(seed=seed, n_startup_trials=5)


def _pruner(space: SearchSpace) -> Any:
    pruners = require("optuna", "initlab sweep").pruners
    if space.pruner == "median":
        return pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2)
    return pruners.NopPruner()


def grid_configurations(space: SearchSpace) -> list[dict[str, Any]]:
    """Every grid point of ``space`` (configurations x seeds), in a fixed order."""
    grid = space.choices()
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def enqueue(study: Any, configurations: list[dict[str, Any]]) -> None:
    """Enqueue configurations (each with its ``seed``) not yet in the study.

    A shared queue in the storage, rather than a grid sampler per worker, hands each point to
    exactly one worker (Optuna claims a waiting trial atomically), so no point runs twice.
    """
    for params in configurations:
        study.enqueue_trial(params, user_attrs={"enqueued": True}, skip_if_exists=True)


def finished_trials(study: Any) -> int:
    """Trials that ended (complete or pruned): what counts toward the sweep's total."""
    states = require("optuna", "initlab sweep").trial.TrialState
    ended = study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED))
    return sum(1 for trial in ended if not trial.user_attrs.get("surplus"))


def _stop_at(total: int) -> Callable[[Any, Any], None]:
    """Callback stopping a worker once the study holds ``total`` finished (non-surplus) trials."""

    def stop(study: Any, _: Any) -> None:
        if finished_trials(study) >= total:
            study.stop()

    return stop


def run_worker(settings: SweepSettings) -> None:
    """One worker: join the study and run trials until it holds ``settings.trials`` finished."""
    import torch

    torch.set_num_threads(1)
    optuna = require("optuna", "initlab sweep")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.from_dict(settings.space)
    study = optuna.load_study(
        study_name=settings.study,
        storage=open_storage(settings.storage, heartbeat=settings.heartbeat),
        sampler=_sampler(space, settings.sampler_seed),
        pruner=_pruner(space),
    )
    if finished_trials(study) >= settings.trials:
        return
    objective = make_objective(space, settings.task)
    study.optimize(objective, callbacks=[_stop_at(settings.trials)], catch=(ConfigError,))


def create_study(space: SearchSpace, storage_url: str, study_name: str) -> Any:
    """Create the study (or load it: running the same sweep again resumes it)."""
    optuna = require("optuna", "initlab sweep")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage_url),
        direction="maximize",
        load_if_exists=True,
    )


def run_sweep(
    space: SearchSpace,
    task: str,
    *,
    trials: int,
    storage: str,
    study: str,
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    configurations: list[dict[str, Any]] | None = None,
) -> Any:
    """Run (or resume) a sweep and return the study.

    Args:
        space: the search space.
        task: a task name (``digits-mlp``...).
        trials: finished trials the study should hold at the end.
        storage: the storage URL (SQLite file or PostgreSQL).
        study: the study's name.
        workers: worker processes on this machine (``1`` runs in this process).
        on_progress: called with (finished, total) about once a second.
        configurations: explicit configurations (each with a ``seed``) to run instead of the
            space's grid; needs ``space.sampler == "grid"`` and lists covering their values.
    """
    if trials < 1 or workers < 1:
        raise ConfigError(
            f"trials and workers must be >= 1, got trials={trials}, workers={workers}."
        )
    get_task(task)
    if configurations is not None:
        if space.sampler != "grid":
            raise ConfigError("Explicit configurations run from the queue: use sampler 'grid'.")
        trials = min(trials, len(configurations))
    elif space.sampler == "grid":
        trials = min(trials, space.grid_size())
    handle = create_study(space, storage, study)
    if space.sampler == "grid":
        enqueue(handle, configurations or grid_configurations(space)[:trials])
    settings = [
        SweepSettings(space.model_dump(), task, storage, study, trials, sampler_seed=index)
        for index in range(workers)
    ]
    if workers == 1:
        return _run_here(settings[0], handle, on_progress)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=run_worker, args=(s,), daemon=False) for s in settings]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            if on_progress is not None:
                on_progress(finished_trials(handle), trials)
            time.sleep(1.0)
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        raise
    for process in processes:
        process.join()
    if on_progress is not None:
        on_progress(finished_trials(handle), trials)
    return handle


def _run_here(
    settings: SweepSettings, handle: Any, on_progress: Callable[[int, int], None] | None
) -> Any:
    optuna = require("optuna", "initlab sweep")
    space = SearchSpace.from_dict(settings.space)
    study = optuna.load_study(study_name=settings.study, storage=handle._storage,
                              sampler=_sampler(space, 0), pruner=_pruner(space))  # fmt: skip

    def progress(current: Any, _: Any) -> None:
        if on_progress is not None:
            on_progress(finished_trials(current), settings.trials)

    if finished_trials(study) < settings.trials:
        study.optimize(make_objective(space, settings.task),
                       callbacks=[_stop_at(settings.trials), progress],
                       catch=(ConfigError,))  # fmt: skip
    return study
