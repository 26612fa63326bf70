"""The study as a ledger of work: which (configuration, seed) each trial holds.

A sweep runs every (configuration, seed) exactly once. A trial *holds* its key while it waits,
runs, or once it has ended for good: complete, pruned, or failed by its own error (the reason
kept as :data:`ERROR_ATTRIBUTE`; the same code would fail again). A trial failed by a kill
(heartbeat) or an interrupt holds nothing: its work is queued again, at most ``RETRIES`` more
times. Trials marked ``surplus`` (one that found its key held, or the queue empty) hold nothing
and count nowhere.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from initlab.experiments.space import SEARCHED, SearchSpace
from initlab.experiments.storage import RETRIES
from initlab.optional import require

__all__ = [
    "ERROR_ATTRIBUTE",
    "WorkKey",
    "claim",
    "enqueue",
    "fail_lost_trials",
    "finished_trials",
    "planned_trials",
    "requeue_interrupted",
    "trial_key",
]

ERROR_ATTRIBUTE = "error"  # user attribute of a trial failed by its own error: "Type: message"


@dataclass(frozen=True)
class WorkKey:
    """The work a trial holds: a configuration and a seed.

    Attributes:
        configuration: ``repr`` of every searched option's value, in :data:`SEARCHED` order.
        seed: the seed it runs with.
    """

    configuration: tuple[str, ...]
    seed: int


def trial_key(trial: Any) -> WorkKey:
    """The configuration and seed of a trial, waiting ones included."""
    params = trial.params or trial.system_attrs.get("fixed_params", {})
    seed = trial.user_attrs.get("seed", params.get("seed"))
    return WorkKey(tuple(repr(params.get(name)) for name in SEARCHED), int(seed or 0))


def _failed_by_error(trial: Any) -> bool:
    return trial.state.name == "FAIL" and ERROR_ATTRIBUTE in trial.user_attrs


def _holds(trial: Any) -> bool:
    """Whether ``trial`` holds its (configuration, seed): done, failed by its own error, running
    or waiting. A trial failed by a kill or an interrupt does not: its work may be run again."""
    if trial.user_attrs.get("surplus"):
        return False
    return trial.state.name in ("COMPLETE", "PRUNED", "RUNNING", "WAITING") or _failed_by_error(
        trial
    )


def _done(trial: Any) -> bool:
    if trial.user_attrs.get("surplus"):
        return False
    return trial.state.name in ("COMPLETE", "PRUNED") or _failed_by_error(trial)


def _given_up(trials: Iterable[Any], retries: int) -> set[WorkKey]:
    """Keys whose work was lost to a kill or an interrupt more than ``1 + retries`` times."""
    lost = Counter(
        trial_key(trial)
        for trial in trials
        if trial.state.name == "FAIL"
        and not _failed_by_error(trial)
        and not trial.user_attrs.get("surplus")
    )
    return {key for key, count in lost.items() if count > retries}


def finished_trials(study: Any) -> int:
    """Trials that ended for good (complete, pruned, or failed by their own error): what counts
    toward the sweep's total. Trials failed by a kill or an interrupt are run again."""
    return sum(1 for trial in study.get_trials(deepcopy=False) if _done(trial))


def planned_trials(
    space: SearchSpace, trials: int, configurations: list[dict[str, Any]] | None = None
) -> int:
    """How many finished trials the study will hold once a sweep asking for ``trials`` ends.

    Grid: at most the grid (or the explicit configurations). Random and TPE: whole
    configurations, each over every seed, so ``trials`` is rounded up to a multiple of
    ``seeds``, and capped by the configurations a space of lists holds.
    """
    if configurations is not None:
        return min(trials, len(configurations))
    if space.sampler == "grid":
        return min(trials, space.grid_size())
    wanted = math.ceil(trials / space.seeds)
    size = space.configurations()
    return (wanted if size is None else min(wanted, size)) * space.seeds


def claim(trial: Any, key: WorkKey, fresh_limit: int | None) -> str | None:
    """Why ``trial`` must not run ``key`` (``None``: it may).

    Ties between workers are broken by trial number: only trials numbered before this one are
    compared, so of two trials that drew the same key at once, the earlier one runs.
    ``fresh_limit``: for a configuration drawn by the sampler, how many configurations the
    study may hold.
    """
    trials = trial.study.get_trials(deepcopy=False)
    keys = {trial_key(other) for other in trials if other.number < trial.number and _holds(other)}
    if key in keys or key in _given_up(trials, RETRIES):
        return "duplicate"
    if fresh_limit is not None and len({other.configuration for other in keys}) >= fresh_limit:
        return "enough"
    return None


def _params_key(params: dict[str, Any]) -> WorkKey:
    return WorkKey(tuple(repr(params.get(name)) for name in SEARCHED), int(params.get("seed", 0)))


def enqueue(
    study: Any,
    configurations: Iterable[dict[str, Any]],
    *,
    seed_as_attribute: bool = False,
    retries: int = RETRIES,
) -> int:
    """Enqueue configurations (each with its ``seed``) whose work the study does not hold.

    A shared queue in the storage, rather than a grid sampler per worker, hands each point to
    exactly one worker (Optuna claims a waiting trial atomically). A point is enqueued again
    only if every earlier attempt was killed or interrupted, at most ``retries`` times (see
    :func:`requeue_interrupted`).

    Args:
        study: the study.
        configurations: the points, each a dict of options with its ``seed``.
        seed_as_attribute: keep the seed as a user attribute rather than a parameter (random
            and TPE trials, whose seed the sampler does not draw).
        retries: how many times work lost to a kill or an interrupt is enqueued again.

    Returns:
        How many were enqueued.
    """
    trials = study.get_trials(deepcopy=False)
    held = {trial_key(trial) for trial in trials if _holds(trial)} | _given_up(trials, retries)
    count = 0
    for point in configurations:
        key = _params_key(point)
        if key in held:
            continue
        held.add(key)
        params = dict(point)
        attributes: dict[str, Any] = {"seed": int(params["seed"])}
        if seed_as_attribute:
            del params["seed"]
        study.enqueue_trial(params, user_attrs=attributes)
        count += 1
    return count


class _Requeue(NamedTuple):
    """Lost work to enqueue again: its configuration with ``seed``, and where the seed goes."""

    configuration: dict[str, Any]
    seed_as_attribute: bool


def requeue_interrupted(study: Any, *, retries: int = RETRIES) -> int:
    """Enqueue again the work of trials failed by a kill or an interrupt (not by their own
    error), unless it is held by another trial or was attempted ``retries + 1`` times.

    Returns:
        How many were enqueued.
    """
    points: dict[WorkKey, _Requeue] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name == "FAIL" and not _failed_by_error(trial) and trial.params:
            key = trial_key(trial)
            points[key] = _Requeue({**trial.params, "seed": key.seed}, "seed" not in trial.params)
    return sum(
        enqueue(
            study,
            [point.configuration],
            seed_as_attribute=point.seed_as_attribute,
            retries=retries,
        )
        for point in points.values()
    )


def fail_lost_trials(study: Any, *, grace_seconds: float, retries: int = RETRIES) -> list[int]:
    """Fail the trials whose worker died before their first heartbeat; queue their work again.

    Optuna fails a running trial whose heartbeat is older than the grace period
    (``fail_stale_trials``) but never judges one that has not beaten yet, so a worker killed
    between its trial becoming RUNNING and the first beat would leave that trial running for
    ever, and grid workers waiting on it. A trial running for longer than ``grace_seconds``
    whose objective has not started (no parameter suggested, not marked ``surplus``) is such a
    trial: a live worker suggests within milliseconds. It is failed like a stale one (without
    :data:`ERROR_ATTRIBUTE`: lost work) and handed to the same retry callback, which enqueues
    its work again, at most ``retries`` times. Of workers racing to fail it, one does.

    Returns:
        The numbers of the trials failed here.
    """
    optuna = require("optuna", "initlab sweep")
    states = optuna.trial.TrialState
    with warnings.catch_warnings():  # "experimental", as the storage's own (see storage.py)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries)
    now = datetime.now()  # Optuna stamps datetime_start with the worker's local time, naive
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        started = trial.datetime_start
        if trial.params or trial.user_attrs.get("surplus") or started is None:
            continue
        if (now - started).total_seconds() <= grace_seconds:
            continue
        try:
            lost = study.tell(trial.number, state=states.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker (or the heartbeat check) has just ended it
        retry(study, lost)
        failed.append(trial.number)
    return failed
