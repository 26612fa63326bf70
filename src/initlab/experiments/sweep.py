"""Sweeps: an Optuna study over a :class:`SearchSpace`, in one or many worker processes.

Each trial runs :func:`~initlab.experiments.trial.run_configuration` (doctor at init, then
``fit``) and stores the doctor's verdict, the per-epoch history and the outcome as the trial's
user attributes. The objective Optuna maximizes is the best validation accuracy.

Seeds: every configuration runs for ``space.seeds`` seeds. Grid search puts the seed in the
grid (every grid point is enqueued up front and popped by the workers); random and TPE search
draw a configuration for seed 0 and enqueue the same configuration for the other seeds, so
every configuration ends with its spread.

Exactly once: a (configuration, seed) that the study holds (complete, pruned, running, waiting,
or failed by its own error) is never run again, with any sampler, by any worker, in this run or
a resumed one; a trial drawing one is marked ``surplus`` and pruned, and is no part of any
count or report. A trial whose code raises is failed once, its reason stored
(:data:`ERROR_ATTRIBUTE`). Only work lost to a kill (heartbeat) or an interrupt is run again,
at most ``RETRIES`` more times.

Workers: ``workers`` processes (spawned, one torch thread each) join the same study through
the storage; with PostgreSQL, processes on other machines can join too (same ``--storage`` and
``--study``). A killed worker's trial is failed by heartbeat and retried (see
:mod:`initlab.experiments.storage`); one killed before its first heartbeat, which Optuna never
judges, is failed once it has run a grace period without starting its objective
(:func:`~initlab.experiments.ledger.fail_lost_trials`). The sweep stops when the study holds
:func:`planned_trials` finished trials, counting those of earlier runs, so running the same
command again resumes it.
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
from initlab.experiments.ledger import (
    ERROR_ATTRIBUTE,
    claim,
    enqueue,
    fail_lost_trials,
    finished_trials,
    planned_trials,
    requeue_interrupted,
    trial_key,
)
from initlab.experiments.space import SEARCHED, Range, SearchSpace
from initlab.experiments.storage import GRACE_BEATS, HEARTBEAT_SECONDS, open_storage
from initlab.experiments.trial import (
    OUTCOME_ATTRIBUTE,
    SweepTask,
    run_configuration,
    sweep_task,
)
from initlab.optional import require
from initlab.train import EpochRecord

__all__ = [
    "ERROR_ATTRIBUTE",
    "SweepSettings",
    "create_study",
    "enqueue",
    "fail_lost_trials",
    "finished_trials",
    "grid_configurations",
    "make_objective",
    "planned_trials",
    "requeue_interrupted",
    "run_sweep",
    "run_worker",
    "trial_key",
]

QUEUE_POLL_SECONDS = 0.25
DUPLICATES_IN_A_ROW = 50  # a sampler proposing only done configurations this often is exhausted


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


def _wait_for_queue(trial: Any, poll_seconds: float, grace_seconds: float) -> None:
    """Block while the grid queue is empty but other workers still run trials.

    One of them may die; its trial is then failed by heartbeat, or as lost when it died before
    its first beat (both checked here, as no new trial starts while this one waits), and comes
    back to the queue. Returns as soon as a trial waits in the queue, and stops the study once
    no other trial runs.
    """
    optuna = require("optuna", "initlab sweep")
    states = optuna.trial.TrialState
    study = trial.study
    while True:
        # The queue first: a trial failed in the last round may have put its work back.
        if study.get_trials(deepcopy=False, states=(states.WAITING,)):
            return
        running = study.get_trials(deepcopy=False, states=(states.RUNNING,))
        if not any(other.number != trial.number for other in running):
            study.stop()
            return
        time.sleep(poll_seconds)
        with warnings.catch_warnings():  # "experimental since 2.9", stable in use since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        fail_lost_trials(study, grace_seconds=grace_seconds)


def _surplus(trial: Any, reason: str) -> Any:
    """Mark ``trial`` as holding no work; the objective raises what this returns."""
    trial.set_user_attr("surplus", reason)
    return require("optuna", "initlab sweep").TrialPruned(reason)


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass(frozen=True)
class _Work:
    """What a trial is to run: a configuration of the searched options, and a seed."""

    config: dict[str, Any]
    seed: int


class _Objective:
    """The Optuna objective of one worker: claim the trial's work, run it, store the outcome."""

    def __init__(
        self,
        space: SearchSpace,
        task: SweepTask,
        *,
        fresh_limit: int | None,
        poll_seconds: float,
        grace_seconds: float,
    ) -> None:
        self.space, self.task = space, task
        self.poll_seconds, self.grace_seconds = poll_seconds, grace_seconds
        self.data = task.load()
        self.fresh_limit = fresh_limit
        self.duplicates_in_a_row = 0

    def __call__(self, trial: Any) -> float:
        optuna = require("optuna", "initlab sweep")
        enqueued = "seed" in trial.user_attrs  # an enqueued trial carries its seed from the start
        if self.space.sampler == "grid" and not enqueued:
            trial.set_user_attr("surplus", "queue empty")  # no work in this trial
            _wait_for_queue(trial, self.poll_seconds, self.grace_seconds)
            raise optuna.TrialPruned("queue empty")
        try:
            return self.run(trial, self.claim_work(trial, enqueued))
        except optuna.TrialPruned:
            raise
        except Exception as error:  # the trial's own error: failed once, the reason kept
            trial.set_user_attr(ERROR_ATTRIBUTE, _reason(error))
            raise

    def claim_work(self, trial: Any, enqueued: bool) -> _Work:
        """The trial's work, once the study holds it for this trial (else the trial is pruned
        as ``surplus``); a fresh configuration also enqueues its other seeds."""
        space = self.space
        config = {name: _suggest(trial, name, getattr(space, name)) for name in SEARCHED}
        if space.sampler == "grid":
            seed = int(trial.suggest_categorical("seed", list(range(space.seeds))))
        else:
            seed = int(trial.user_attrs.get("seed", 0))
        trial.set_user_attr("seed", seed)
        refusal = claim(trial, trial_key(trial), None if enqueued else self.fresh_limit)
        if refusal is not None:
            self.duplicates_in_a_row += refusal == "duplicate"
            if refusal == "enough" or self.duplicates_in_a_row >= DUPLICATES_IN_A_ROW:
                trial.study.stop()
            raise _surplus(trial, refusal)
        self.duplicates_in_a_row = 0
        if not enqueued:
            for other in range(1, space.seeds):
                enqueue(trial.study, [{**config, "seed": other}], seed_as_attribute=True)
        return _Work(config, seed)

    def run(self, trial: Any, work: _Work) -> float:
        """Run the work, reporting validation accuracy to the pruner; store the outcome."""
        optuna = require("optuna", "initlab sweep")
        space = self.space

        def on_epoch(record: EpochRecord) -> None:
            if record.val_accuracy is not None and space.pruner != "none":
                trial.report(record.val_accuracy, record.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

        outcome = run_configuration(work.config, self.task, self.data, seed=work.seed,
                                    epochs=space.epochs, batch_size=space.batch_size,
                                    on_epoch=on_epoch)  # fmt: skip
        # One user attribute, one storage write (each write is a transaction: ~5 ms on SQLite).
        trial.set_user_attr(OUTCOME_ATTRIBUTE, outcome.attributes())
        return outcome.best_val_accuracy


def make_objective(
    space: SearchSpace,
    task_name: str,
    *,
    trials: int | None = None,
    poll_seconds: float = QUEUE_POLL_SECONDS,
    grace_seconds: float = HEARTBEAT_SECONDS * GRACE_BEATS,
) -> Callable[[Any], float]:
    """The Optuna objective of ``space`` on the task called ``task_name``.

    Every trial first claims its (configuration, seed): one already complete, running, waiting
    or failed by its own error is not run again (the trial is marked ``surplus`` and pruned).
    A trial that raises is failed once, its reason stored as :data:`ERROR_ATTRIBUTE`.

    Args:
        space: the search space.
        task_name: the task.
        trials: for random and TPE, the finished trials the sweep asks for (see
            :func:`planned_trials`); ``None``: no limit.
        poll_seconds: how often a grid worker with an empty queue looks again.
        grace_seconds: how long a trial may run without its objective starting before it is
            failed as lost (:func:`fail_lost_trials`).
    """
    require("optuna", "initlab sweep")
    fresh_limit = None
    if trials is not None and space.sampler != "grid":
        fresh_limit = planned_trials(space, trials) // space.seeds
    return _Objective(
        space,
        sweep_task(task_name),
        fresh_limit=fresh_limit,
        poll_seconds=poll_seconds,
        grace_seconds=grace_seconds,
    )


def _sampler(space: SearchSpace, seed: int) -> Any:
    samplers = require("optuna", "initlab sweep").samplers
    if space.sampler in ("grid", "random"):
        # Grid points are enqueued up front (ledger.enqueue); workers only pop the queue.
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


def _stop_at(total: int) -> Callable[[Any, Any], None]:
    """Callback stopping a worker once the study holds ``total`` finished trials."""

    def stop(study: Any, _: Any) -> None:
        if finished_trials(study) >= total:
            study.stop()

    return stop


def _load(settings: SweepSettings, space: SearchSpace, storage: Any) -> Any:
    optuna = require("optuna", "initlab sweep")
    # Failed trials are stored with their reason and reported; Optuna's per-failure traceback
    # in the log would only repeat them.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=settings.study, storage=storage)
    # A fresh stream per run and worker, so a resumed random sweep does not redraw its past.
    seed = settings.sampler_seed + 7919 * len(study.get_trials(deepcopy=False))
    study.sampler = _sampler(space, seed)
    study.pruner = _pruner(space)
    return study


def _optimize(study: Any, space: SearchSpace, settings: SweepSettings, *callbacks: Any) -> None:
    if finished_trials(study) >= settings.trials:
        return
    grace = settings.heartbeat * GRACE_BEATS
    objective = make_objective(space, settings.task, trials=settings.trials, grace_seconds=grace)
    study.optimize(objective, callbacks=[_stop_at(settings.trials), *callbacks],
                   catch=(Exception,))  # fmt: skip


def run_worker(settings: SweepSettings) -> None:
    """One worker: join the study and run trials until it holds ``settings.trials`` finished."""
    import torch

    torch.set_num_threads(1)
    space = SearchSpace.from_dict(settings.space)
    storage = open_storage(settings.storage, heartbeat=settings.heartbeat)
    _optimize(_load(settings, space, storage), space, settings)


def create_study(space: SearchSpace, storage_url: str, study_name: str) -> Any:
    """Create the study (or load it: running the same sweep again resumes it).

    Raises:
        ConfigError: the storage cannot be opened or reached (before any worker starts).
    """
    optuna = require("optuna", "initlab sweep")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage_url, create=True),
        direction="maximize",
        load_if_exists=True,
    )


def _check_request(
    space: SearchSpace, task: str, trials: int, workers: int, configurations: Any
) -> None:
    for name, value in (("trials", trials), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}.")
    sweep_task(task)
    if configurations is not None and space.sampler != "grid":
        raise ConfigError(
            f"Explicit configurations run from the queue: use sampler 'grid', not "
            f"{space.sampler!r}."
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

    Everything is checked before the storage is touched: the arguments, the task, the space
    (at its construction). Then the storage is opened (an unreachable one is an error here,
    before any worker starts), the work of killed or interrupted trials is queued again (trials
    lost before their first heartbeat are failed first: :func:`fail_lost_trials`), and
    the workers run until the study holds :func:`planned_trials` finished trials.

    Args:
        space: the search space.
        task: a task name (``digits-mlp``...).
        trials: finished trials the study should hold at the end (for random and TPE, rounded
            up to whole configurations over all seeds).
        storage: the storage URL (SQLite file or PostgreSQL).
        study: the study's name.
        workers: worker processes on this machine (``1`` runs in this process).
        on_progress: called with (finished, planned) about once a second.
        configurations: explicit configurations (each with a ``seed``) to run instead of the
            space's grid; needs ``space.sampler == "grid"`` and lists covering their values.

    Raises:
        ConfigError: a bad argument or an unreachable storage.
        UnknownNameError: an unknown task.
    """
    _check_request(space, task, trials, workers, configurations)
    planned = planned_trials(space, trials, configurations)
    handle = create_study(space, storage, study)
    fail_lost_trials(handle, grace_seconds=HEARTBEAT_SECONDS * GRACE_BEATS)
    requeue_interrupted(handle)
    if space.sampler == "grid":
        enqueue(handle, (configurations or grid_configurations(space))[:planned])
    settings = [
        SweepSettings(
            space=space.model_dump(),
            task=task,
            storage=storage,
            study=study,
            trials=planned,
            sampler_seed=index,
        )
        for index in range(workers)
    ]
    if workers == 1:
        return _run_here(settings[0], handle, on_progress)
    _run_processes(settings, handle, on_progress)
    return handle


def _run_processes(
    settings: list[SweepSettings], handle: Any, on_progress: Callable[[int, int], None] | None
) -> None:
    """One spawned process per worker; progress reported about once a second until all end."""
    planned = settings[0].trials
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=run_worker, args=(s,), daemon=False) for s in settings]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            if on_progress is not None:
                on_progress(finished_trials(handle), planned)
            time.sleep(1.0)
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        raise
    for process in processes:
        process.join()
    if on_progress is not None:
        on_progress(finished_trials(handle), planned)


def _run_here(
    settings: SweepSettings, handle: Any, on_progress: Callable[[int, int], None] | None
) -> Any:
    space = SearchSpace.from_dict(settings.space)
    study = _load(settings, space, handle._storage)

    def progress(current: Any, _: Any) -> None:
        if on_progress is not None:
            on_progress(finished_trials(current), settings.trials)

    if on_progress is not None:
        on_progress(finished_trials(study), settings.trials)
    _optimize(study, space, settings, progress)
    return study
