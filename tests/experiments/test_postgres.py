"""Two workers on a real PostgreSQL server; one is killed mid-trial with SIGKILL.

The killed worker's trial must be failed by heartbeat and retried by the survivor, every
configuration must end complete exactly once, and the report must build.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter

import pytest

from initlab.experiments.results import curves_table, summary, trials_table
from initlab.experiments.space import SearchSpace
from initlab.experiments.storage import open_storage
from initlab.experiments.sweep import (
    SweepSettings,
    create_study,
    enqueue,
    grid_configurations,
    run_worker,
)
from initlab.report.sweep import sweep_html

pytestmark = pytest.mark.postgres

INITS = ["kaiming", "xavier", "lecun", "orthogonal"]


def _wait_for_running(study: object, timeout: float) -> None:
    import optuna

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))  # type: ignore[attr-defined]
        if running:
            return
        time.sleep(0.05)
    raise AssertionError("no trial started running")


def test_killed_worker_trial_is_retried_and_nothing_is_lost(postgres_url: str) -> None:
    import optuna

    space = SearchSpace.from_dict({"init": INITS, "depth": [4], "width": [64], "epochs": 15,
                                   "batch_size": 32, "lr": [0.05], "sampler": "grid"})  # fmt: skip
    study = create_study(space, postgres_url, "crash")
    enqueue(study, grid_configurations(space))
    settings = SweepSettings(space.model_dump(), "digits-mlp", postgres_url, "crash",
                             trials=len(INITS), heartbeat=1)  # fmt: skip
    context = multiprocessing.get_context("spawn")
    victim, survivor = (context.Process(target=run_worker, args=(settings,)) for _ in range(2))
    victim.start()
    _wait_for_running(study, timeout=120)
    survivor.start()
    time.sleep(0.5)
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    survivor.join(timeout=300)
    assert survivor.exitcode == 0

    reloaded = optuna.load_study(study_name="crash", storage=open_storage(postgres_url))
    trials = [t for t in reloaded.get_trials() if not t.user_attrs.get("surplus")]
    complete = Counter(t.params["init"] for t in trials if t.state.name == "COMPLETE")
    assert complete == Counter(dict.fromkeys(INITS, 1))
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1, "the killed worker's running trial is marked failed by heartbeat"
    assert failed[0].params["init"] in complete

    table = trials_table(reloaded)
    document = sweep_html("crash", table, summary(table), curves_table(reloaded))
    assert "data:image/png;base64," in document
