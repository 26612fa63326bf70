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
from pathlib import Path
from typing import Any

import pytest

from initlab.experiments.results import curves_table, trials_table
from initlab.experiments.space import SearchSpace
from initlab.experiments.storage import open_storage
from initlab.experiments.sweep import (
    SweepSettings,
    create_study,
    enqueue,
    grid_configurations,
    run_sweep,
    run_worker,
)
from initlab.report.sweep import sweep_html

pytestmark = pytest.mark.postgres

INITS = ["kaiming", "xavier", "lecun", "orthogonal"]


def close(*storages: Any) -> None:
    """Close the storages' pooled connections (psycopg 3 warns about connections left open)."""
    for storage in storages:
        getattr(storage, "_backend", storage).engine.dispose()  # a study's storage is cached


def _wait_for_running(study: object, timeout: float) -> None:
    """Until a trial runs and has beaten once: a worker killed before its trial's first
    heartbeat leaves a running trial that Optuna never calls stale (it judges only trials with a
    heartbeat), so the kill must come after it, as it does for any trial killed mid-work."""
    import optuna
    import sqlalchemy

    deadline = time.monotonic() + timeout
    engine = study._storage._backend.engine  # type: ignore[attr-defined]  # the RDBStorage
    while time.monotonic() < deadline:
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))  # type: ignore[attr-defined]
        if running:
            with engine.connect() as connection:
                beats = connection.execute(
                    sqlalchemy.text("SELECT count(*) FROM trial_heartbeats")
                ).scalar()
            if beats:
                return
        time.sleep(0.05)
    raise AssertionError("no trial started running with a heartbeat")


def test_killed_worker_trial_is_retried_and_nothing_is_lost(postgres_url: str) -> None:
    import optuna

    space = SearchSpace.from_dict(
        {
            "init": INITS,
            "depth": [4],
            "width": [64],
            "epochs": 15,
            "batch_size": 32,
            "lr": [0.05],
            "sampler": "grid",
        }
    )
    study = create_study(space, postgres_url, "crash")
    enqueue(study, grid_configurations(space))
    settings = SweepSettings(
        space.model_dump(), "digits-mlp", postgres_url, "crash", trials=len(INITS), heartbeat=1
    )
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
    document = sweep_html("crash", table, curves_table(reloaded))
    assert "data:image/png;base64," in document
    close(study._storage, reloaded._storage)


def test_the_readme_url_form_is_psycopg_3_and_the_psycopg2_form_still_works(
    postgres_url: str,
) -> None:
    import optuna

    assert postgres_url.startswith("postgresql://"), "the form the README writes"
    storage = open_storage(postgres_url)
    assert storage.engine.dialect.driver == "psycopg"
    old_form = open_storage(postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    assert old_form.engine.dialect.driver == "psycopg2"
    optuna.create_study(study_name="forms", storage=storage)
    assert "forms" in optuna.get_all_study_names(old_form), "one database, either driver"
    close(storage, old_form)


def test_a_bad_space_touches_no_postgres_study(postgres_url: str, tmp_path: Path) -> None:
    import optuna

    from initlab.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text('init: ["normal:-1"]\nepochs: 1\n')
    with pytest.raises(ConfigError, match="normal:-1"):
        run_sweep(
            SearchSpace.from_file(bad), "digits-mlp", trials=1, storage=postgres_url, study="never"
        )
    storage = open_storage(postgres_url)
    assert "never" not in optuna.get_all_study_names(storage)
    close(storage)
