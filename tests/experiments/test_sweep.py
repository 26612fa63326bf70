"""Sweeps on SQLite: every configuration x seed exactly once, resumable, reported."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from initlab.experiments.results import curves_table, export, summary, trials_table
from initlab.experiments.space import SearchSpace
from initlab.experiments.sweep import run_sweep
from initlab.report.sweep import sweep_html

TINY = {"depth": [2], "width": [16], "epochs": 2, "batch_size": 128, "lr": [0.05]}


def _configs(table: object) -> Counter[tuple[object, ...]]:
    done = table[table["state"] == "complete"]  # type: ignore[index]
    return Counter(zip(done["init"], done["seed"], strict=True))


def test_grid_sweep_runs_every_point_once_and_resumes(tmp_path: Path) -> None:
    space = SearchSpace.from_dict({**TINY, "init": ["kaiming", "zeros"], "seeds": 2,
                                   "sampler": "grid"})  # fmt: skip
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
    space = SearchSpace.from_dict({**TINY, "init": ["kaiming", "xavier", "lecun"],
                                   "dropout": {"low": 0.0, "high": 0.3}, "seeds": 2,
                                   "sampler": "random"})  # fmt: skip
    study = run_sweep(space, "digits-mlp", trials=4, storage=f"sqlite:///{tmp_path / 'r.db'}",
                      study="random")  # fmt: skip
    table = trials_table(study)
    per_config = table.groupby(["init", "dropout"])["seed"].apply(sorted)
    assert all(seeds == [0, 1] for seeds in per_config)


def test_two_workers_share_a_sqlite_study(tmp_path: Path) -> None:
    space = SearchSpace.from_dict({**TINY, "init": ["kaiming", "xavier", "lecun"],
                                   "sampler": "grid"})  # fmt: skip
    study = run_sweep(space, "digits-mlp", trials=3, storage=f"sqlite:///{tmp_path / 'w.db'}",
                      study="workers", workers=2)  # fmt: skip
    assert _configs(trials_table(study)) == Counter(
        {("kaiming", 0): 1, ("xavier", 0): 1, ("lecun", 0): 1}
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> object:
    space = SearchSpace.from_dict({**TINY, "init": ["kaiming", "normal:1"], "seeds": 2,
                                   "sampler": "grid"})  # fmt: skip
    path = tmp_path_factory.mktemp("report") / "report.db"
    return run_sweep(space, "digits-mlp", trials=4, storage=f"sqlite:///{path}", study="rep")


def test_tables_have_config_doctor_and_outcome_columns(finished: object) -> None:
    table = trials_table(finished)
    for column in ("init", "seed", "doctor_healthy", "doctor_forward_trend",
                   "best_val_accuracy", "test_accuracy", "diverged"):  # fmt: skip
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
    document = sweep_html("rep", table, summary(table), curves_table(finished))
    assert document.startswith("<!DOCTYPE html>")
    assert "data:image/png;base64," in document
    assert "http://" not in document
    assert "https://" not in document
    exported = export(table, tmp_path / "trials.csv")
    assert exported.read_text().splitlines()[0].startswith("trial,state,init")
