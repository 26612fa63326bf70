"""A worker killed between its trial becoming RUNNING and the trial's first heartbeat.

Optuna's ``fail_stale_trials`` never judges a trial without a heartbeat, so such a trial would
stay RUNNING for ever and grid workers would wait on it. ``study.ask()`` without running the
objective is exactly that trial: RUNNING, no heartbeat, no parameter suggested.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from initlab.experiments.ledger import WorkKey, fail_lost_trials, trial_key
from initlab.experiments.space import SearchSpace
from initlab.experiments.sweep import (
    create_study,
    enqueue,
    grid_configurations,
    make_objective,
    run_sweep,
)

TINY = {"depth": [2], "width": [16], "epochs": 1, "batch_size": 128, "lr": [0.05]}
SPACE = SearchSpace.from_dict({**TINY, "init": ["kaiming", "xavier"], "sampler": "grid"})


def _ask(study: Any) -> Any:
    """A trial made RUNNING outside ``optimize``: no heartbeat thread ever starts for it."""
    with pytest.warns(UserWarning, match="Heartbeat of storage"):
        return study.ask()


def _key(study: Any, number: int) -> WorkKey:
    return trial_key(study.get_trials(deepcopy=False)[number])


def _states(study: Any) -> Counter[tuple[str, WorkKey]]:
    return Counter(
        (t.state.name, trial_key(t))
        for t in study.get_trials(deepcopy=False)
        if not t.user_attrs.get("surplus")
    )


@pytest.fixture
def queued(tmp_path: Path) -> tuple[Any, str]:
    """A study with the two grid points enqueued, and its URL."""
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    study = create_study(SPACE, url, "lost")
    enqueue(study, grid_configurations(SPACE))
    return study, url


def test_a_lost_trial_is_failed_once_and_its_work_queued_again(queued: tuple[Any, str]) -> None:
    import optuna

    study, _ = queued
    lost = _ask(study)  # RUNNING; its worker dies before the first heartbeat
    working = _ask(study)
    working.suggest_categorical("init", ["kaiming", "xavier"])  # its objective has started
    assert fail_lost_trials(study, grace_seconds=3600) == [], "not lost within the grace period"
    assert fail_lost_trials(study, grace_seconds=0) == [lost.number]
    assert fail_lost_trials(study, grace_seconds=0) == [], "failed once"
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[lost.number].state == optuna.trial.TrialState.FAIL
    assert by_number[working.number].state == optuna.trial.TrialState.RUNNING
    retried = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [trial_key(t) for t in retried] == [trial_key(by_number[lost.number])]
    assert "error" not in by_number[lost.number].user_attrs, "lost work, not the trial's error"


def test_a_waiting_grid_worker_recovers_a_lost_trial(queued: tuple[Any, str]) -> None:
    study, _ = queued
    lost = _key(study, _ask(study).number)
    # The worker finds the queue holding one point while the lost trial still looks RUNNING; it
    # must not wait for ever: after the grace period the lost work comes back and is run.
    objective = make_objective(SPACE, "digits-mlp", poll_seconds=0.05, grace_seconds=0.5)
    study.optimize(objective, catch=(Exception,))
    states = _states(study)
    assert states[("COMPLETE", lost)] == 1
    assert states[("FAIL", lost)] == 1
    assert sorted(state for state, _ in states) == ["COMPLETE", "COMPLETE", "FAIL"]


def test_a_resumed_sweep_fails_an_old_lost_trial_and_runs_its_work(
    queued: tuple[Any, str], tmp_path: Path
) -> None:
    study, url = queued
    lost = _key(study, _ask(study).number)
    with sqlite3.connect(tmp_path / "lost.db") as connection:  # the worker died an hour ago
        connection.execute(
            "UPDATE trials SET datetime_start = datetime(datetime_start, '-1 hour')"
        )
    resumed = run_sweep(SPACE, "digits-mlp", trials=2, storage=url, study="lost")
    states = _states(resumed)
    assert states[("COMPLETE", lost)] == 1
    assert sum(1 for state, _ in states if state == "COMPLETE") == 2
    assert states[("FAIL", lost)] == 1
