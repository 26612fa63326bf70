"""Sweeps on SQLite: every configuration x seed exactly once (failed ones too), resumable with
any sampler, reported (a study whose trials all failed too)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from initlab.errors import ConfigError
from initlab.experiments.ledger import WorkKey
from initlab.experiments.results import curves_table, export, failures, summary, trials_table
from initlab.experiments.space import SearchSpace
from initlab.experiments.sweep import (
    ERROR_ATTRIBUTE,
    create_study,
    enqueue,
    finished_trials,
    grid_configurations,
    planned_trials,
    requeue_interrupted,
    run_sweep,
    trial_key,
)
from initlab.report.experiments import failures_lines
from initlab.report.sweep import sweep_html

TINY = {"depth": [2], "width": [16], "epochs": 2, "batch_size": 128, "lr": [0.05]}


def _configs(table: object) -> Counter[tuple[object, ...]]:
    done = table[table["state"] == "complete"]  # type: ignore[index]
    return Counter(zip(done["init"], done["seed"], strict=True))


def test_grid_sweep_runs_every_point_once_and_resumes(tmp_path: Path) -> None:
    space = SearchSpace.from_dict(
        {**TINY, "init": ["kaiming", "zeros"], "seeds": 2, "sampler": "grid"}
    )
    url = f"sqlite:///{tmp_path / 'grid.db'}"
    study = run_sweep(space, "digits-mlp", trials=10, storage=url, study="grid")
    table = trials_table(study)
    assert _configs(table) == Counter(
        {("kaiming", 0): 1, ("kaiming", 1): 1, ("zeros", 0): 1, ("zeros", 1): 1}
    )
    again = run_sweep(space, "digits-mlp", trials=10, storage=url, study="grid")
    assert len(trials_table(again)) == 4
    zeros = table[table["init"] == "zeros"]
    assert not zeros["doctor_healthy"].any()
    assert set(zeros["doctor_findings"].str.contains("symmetric_weights")) == {True}
    assert (zeros["best_val_accuracy"] < 0.2).all()


def test_random_sweep_repeats_each_configuration_for_every_seed(tmp_path: Path) -> None:
    space = SearchSpace.from_dict(
        {
            **TINY,
            "init": ["kaiming", "xavier", "lecun"],
            "dropout": {"low": 0.0, "high": 0.3},
            "seeds": 2,
            "sampler": "random",
        }
    )
    study = run_sweep(
        space, "digits-mlp", trials=4, storage=f"sqlite:///{tmp_path / 'r.db'}", study="random"
    )
    table = trials_table(study)
    per_config = table.groupby(["init", "dropout"])["seed"].apply(sorted)
    assert all(seeds == [0, 1] for seeds in per_config)


def test_two_workers_share_a_sqlite_study(tmp_path: Path) -> None:
    space = SearchSpace.from_dict(
        {**TINY, "init": ["kaiming", "xavier", "lecun"], "sampler": "grid"}
    )
    study = run_sweep(
        space,
        "digits-mlp",
        trials=3,
        storage=f"sqlite:///{tmp_path / 'w.db'}",
        study="workers",
        workers=2,
    )
    assert _configs(trials_table(study)) == Counter(
        {("kaiming", 0): 1, ("xavier", 0): 1, ("lecun", 0): 1}
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> object:
    space = SearchSpace.from_dict(
        {**TINY, "init": ["kaiming", "normal:1"], "seeds": 2, "sampler": "grid"}
    )
    path = tmp_path_factory.mktemp("report") / "report.db"
    return run_sweep(space, "digits-mlp", trials=4, storage=f"sqlite:///{path}", study="rep")


def test_tables_have_config_doctor_and_outcome_columns(finished: object) -> None:
    table = trials_table(finished)
    for column in (
        "init",
        "seed",
        "doctor_healthy",
        "doctor_forward_trend",
        "best_val_accuracy",
        "test_accuracy",
        "diverged",
    ):
        assert column in table.columns
    stats = summary(table)
    assert set(stats["seeds"]) == {2}
    kaiming = stats[stats["init"] == "kaiming"].iloc[0]
    runs = table[table["init"] == "kaiming"]["best_val_accuracy"]
    assert kaiming["best_val_accuracy_mean"] == pytest.approx(runs.mean())
    curves = curves_table(finished)
    assert set(curves["epoch"]) == {0, 1}


def test_report_is_self_contained_html_and_csv_exports(finished: object, tmp_path: Path) -> None:
    table = trials_table(finished)
    document = sweep_html("rep", table, curves_table(finished))
    assert document.startswith("<!DOCTYPE html>")
    assert "data:image/png;base64," in document
    assert "http://" not in document
    assert "https://" not in document
    exported = export(table, tmp_path / "trials.csv")
    assert exported.read_text().splitlines()[0].startswith("trial,state,init")


def _boom(*args: object, **kwargs: object) -> object:
    raise ConfigError("boom: this configuration cannot run")


def _keys(study: object) -> Counter[tuple[str, WorkKey]]:
    """(configuration, seed) of every trial holding work (no surplus), by state."""
    return Counter(
        (t.state.name, trial_key(t))
        for t in study.get_trials(deepcopy=False)  # type: ignore[attr-defined]
        if not t.user_attrs.get("surplus")
    )


def test_a_failing_trial_is_failed_once_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[object] = []

    def boom_counted(*args: object, **kwargs: object) -> object:
        attempts.append(args)
        return _boom(*args, **kwargs)

    monkeypatch.setattr("initlab.experiments.sweep.run_configuration", boom_counted)
    space = SearchSpace.from_dict({**TINY, "init": ["kaiming"], "sampler": "tpe"})
    study = run_sweep(
        space, "digits-mlp", trials=1, storage=f"sqlite:///{tmp_path / 'f.db'}", study="fail"
    )
    assert len(attempts) == 1, "a deterministic failure is run once, never retried"
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL"]
    assert (
        trials[0].user_attrs[ERROR_ATTRIBUTE] == "ConfigError: boom: this configuration cannot run"
    )
    table = trials_table(study)
    assert list(table["error"]) == [trials[0].user_attrs[ERROR_ATTRIBUTE]]
    assert failures(table) == [(trials[0].user_attrs[ERROR_ATTRIBUTE], [0])]
    document = sweep_html("fail", table, curves_table(study))
    assert "No trial completed" in document
    assert "boom" in document
    lines = [str(line) for line in failures_lines(table)]
    assert "no trial completed" in lines[0]
    assert "boom" in lines[1]


def test_failing_configurations_fail_once_per_seed_with_any_sampler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("initlab.experiments.sweep.run_configuration", _boom)
    space = SearchSpace.from_dict(
        {**TINY, "init": ["kaiming", "xavier", "lecun"], "seeds": 2, "sampler": "random"}
    )
    url = f"sqlite:///{tmp_path / 'f.db'}"
    study = run_sweep(space, "digits-mlp", trials=3, storage=url, study="fail")
    again = run_sweep(space, "digits-mlp", trials=3, storage=url, study="fail")
    keys = _keys(again)
    assert planned_trials(space, 3) == 4
    assert len(keys) == 4
    assert set(keys.values()) == {1}, keys
    assert {key[0] for key in keys} == {"FAIL"}
    assert finished_trials(study) == 4


@pytest.mark.parametrize(("sampler", "workers"), [("random", 1), ("tpe", 2)])
def test_resuming_never_reruns_a_configuration_and_seed(
    tmp_path: Path, sampler: str, workers: int
) -> None:
    space = SearchSpace.from_dict(
        {
            **TINY,
            "init": ["kaiming", "xavier", "lecun", "orthogonal"],
            "epochs": 1,
            "seeds": 2,
            "sampler": sampler,
        }
    )
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    progress: list[tuple[int, int]] = []
    run_sweep(space, "digits-mlp", trials=2, storage=url, study="r", workers=workers)
    study = run_sweep(
        space,
        "digits-mlp",
        trials=4,
        storage=url,
        study="r",
        workers=workers,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    keys = _keys(study)
    assert set(keys.values()) == {1}, f"a (configuration, seed) ran twice: {keys}"
    assert {key[0] for key in keys} == {"COMPLETE"}
    assert len(keys) == 4
    table = trials_table(study)
    assert set(summary(table)["seeds"]) == {2}
    assert progress[-1] == (4, 4)
    assert all(done <= total == 4 for done, total in progress)


def test_a_space_of_lists_is_not_asked_for_more_than_it_holds(tmp_path: Path) -> None:
    space = SearchSpace.from_dict({**TINY, "init": ["kaiming", "xavier"], "sampler": "random"})
    assert planned_trials(space, 10) == 2
    study = run_sweep(
        space, "digits-mlp", trials=10, storage=f"sqlite:///{tmp_path / 'a.db'}", study="all"
    )
    assert _configs(trials_table(study)) == Counter({("kaiming", 0): 1, ("xavier", 0): 1})


def test_only_interrupted_work_is_queued_again_and_only_a_bounded_number_of_times(
    tmp_path: Path,
) -> None:
    import optuna

    inits = ["kaiming", "xavier", "lecun"]
    space = SearchSpace.from_dict({**TINY, "init": inits, "sampler": "grid"})
    study = create_study(space, f"sqlite:///{tmp_path / 'q.db'}", "q")
    kaiming, xavier, lecun = grid_configurations(space)
    distributions: dict[str, optuna.distributions.BaseDistribution] = {
        name: optuna.distributions.CategoricalDistribution(values)
        for name, values in space.choices().items()
    }

    def failed(params: dict[str, object], **attributes: object) -> None:
        study.add_trial(
            optuna.create_trial(
                state=optuna.trial.TrialState.FAIL,
                params=params,
                distributions=distributions,
                user_attrs={"seed": 0, **attributes},
            )
        )

    failed(kaiming)  # interrupted once: run again
    failed(xavier, error="ConfigError: bad")  # its own error: never again
    for _ in range(3):  # interrupted 1 + 2 retries times: given up
        failed(lecun)
    assert requeue_interrupted(study, retries=2) == 1
    assert requeue_interrupted(study, retries=2) == 0, "already waiting"
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"]["init"] for t in waiting] == ["kaiming"]
    assert enqueue(study, [kaiming, xavier, lecun]) == 0


def test_report_of_a_study_whose_trials_all_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer.testing

    from initlab.cli import application as cli

    monkeypatch.setattr("initlab.experiments.sweep.run_configuration", _boom)
    url = f"sqlite:///{tmp_path / 'all.db'}"
    space = SearchSpace.from_dict({**TINY, "init": ["kaiming"], "sampler": "grid"})
    run_sweep(space, "digits-mlp", trials=1, storage=url, study="all")
    monkeypatch.setattr(cli, "console", Console(width=200, color_system=None))
    result = typer.testing.CliRunner().invoke(
        cli.app, ["report", "all", "--storage", url, "--out", str(tmp_path / "all.html")]
    )
    assert result.exit_code == 0, result.output
    assert "no trial completed" in result.output
    assert "ConfigError: boom" in result.output
    assert "No trial completed" in (tmp_path / "all.html").read_text()
