"""The learning-rate transfer sweep: stored as an Optuna study, read back, summarized, drawn."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from initlab.errors import ConfigError
from initlab.experiments.storage import open_storage
from initlab.experiments.transfer import (
    STUDY,
    TransferResult,
    TransferRun,
    TransferSettings,
    load_transfer,
    run_transfer,
)
from initlab.report.coord_check import best_rates_markdown, transfer_figure

SMALL = TransferSettings(widths=(32, 64), learning_rates=(2.0**-12, 2.0**-7, 2.0**-2), epochs=1)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> TransferResult:
    return run_transfer(tmp_path_factory.mktemp("transfer"), SMALL, workers=1)


def test_every_run_is_a_trial_of_the_study(result: TransferResult) -> None:
    study = optuna.load_study(study_name=STUDY, storage=open_storage(result.storage))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == len(result.runs) == 2 * 2 * 3
    points = {(t.params["parametrization"], t.params["width"], t.params["lr"]) for t in trials}
    assert points == {
        (p, w, lr) for p in ("sp", "mup") for w in (32, 64) for lr in SMALL.learning_rates
    }
    for trial in trials:
        if trial.user_attrs["diverged"]:
            assert trial.state == optuna.trial.TrialState.FAIL
        else:
            assert trial.value is not None
            assert math.isfinite(trial.value)
    assert load_transfer(result.storage) == result
    assert result.settings == SMALL


def test_best_rate_is_the_lowest_final_loss_per_width(result: TransferResult) -> None:
    best = result.best()
    assert [(b.parametrization, b.width) for b in best] == [
        ("sp", 32), ("sp", 64), ("mup", 32), ("mup", 64)
    ]  # fmt: skip
    for choice in best:
        losses = [
            run.final_loss
            for run in result.runs
            if (run.parametrization, run.width) == (choice.parametrization, choice.width)
            and run.final_loss is not None
        ]
        assert choice.final_loss == min(losses)
    # At the base width (the smallest) muP is SP: the same init and learning rates.
    by_key = {(b.parametrization, b.width): b for b in best}
    assert by_key["sp", 32].final_loss == pytest.approx(by_key["mup", 32].final_loss, rel=1e-5)
    table = best_rates_markdown(result)
    assert table.splitlines()[0] == "| width | best lr, sp | best lr, mup |"
    assert f"| 32 | 2^{math.log2(by_key['sp', 32].lr):g}" in table
    assert "drift" in str(result)


def test_drift_is_the_slope_of_log_best_rate_against_log_width() -> None:
    points = [(64, 2**-6, 0.1), (64, 2**-8, 0.2), (256, 2**-6, 0.3), (256, 2**-8, 0.1)]
    runs = [TransferRun("sp", width, lr, loss) for width, lr, loss in points]
    moved = TransferResult(tuple(runs), TransferSettings(("sp",), (64, 256), (2**-8, 2**-6)), "")
    assert moved.drift("sp") == pytest.approx(-1.0)  # 2 octaves over 2 doublings


def test_the_figure_draws(result: TransferResult, tmp_path: Path) -> None:
    target = tmp_path / "transfer.png"
    transfer_figure(result).savefig(target)
    assert target.read_bytes().startswith(b"\x89PNG")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="widths must be ascending"):
        TransferSettings(widths=(128, 64))
    with pytest.raises(ConfigError, match="learning rates must be > 0"):
        TransferSettings(learning_rates=(0.0, 0.1))
    with pytest.raises(ConfigError, match="workers must be an integer >= 1"):
        run_transfer("unused", SMALL, workers=0)


def test_a_missing_study_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_storage(url, create=True)
    with pytest.raises(ConfigError, match="No study named 'transfer'"):
        load_transfer(url)
