"""A study's trials as tidy tables: one row per trial, a summary per configuration, curves.

Columns of :func:`trials_table`: ``trial``, ``state``, every searched option (``init``, ``lr``,
..., ``seed``), the doctor's verdict at init (``doctor_healthy``, ``doctor_findings``,
``doctor_severity``, ``doctor_forward_trend``, ``doctor_gradient_trend``,
``doctor_jacobian_mean_square``), the outcome (``best_val_accuracy``, ``final_val_accuracy``,
``test_accuracy``, ``final_train_loss``, ``diverged``, ``epochs_run``, ``seconds``) and, for a
trial failed by its own error, ``error`` (its type and message). :func:`summary` groups trials
by configuration (all options but the seed) and gives mean, std and count over seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from initlab.errors import ConfigError
from initlab.experiments.ledger import ERROR_ATTRIBUTE
from initlab.experiments.space import SEARCHED
from initlab.experiments.trial import OUTCOME_ATTRIBUTE
from initlab.optional import require

__all__ = [
    "CONFIG_COLUMNS",
    "curves_table",
    "export",
    "failures",
    "summary",
    "trials_table",
]

CONFIG_COLUMNS = SEARCHED
OUTCOMES = ("best_val_accuracy", "final_val_accuracy", "test_accuracy", "final_train_loss",
            "diverged", "epochs_run", "seconds")  # fmt: skip
DOCTOR = ("doctor_healthy", "doctor_findings", "doctor_severity", "doctor_forward_trend",
          "doctor_gradient_trend", "doctor_jacobian_mean_square")  # fmt: skip


def trials_table(study: Any) -> Any:
    """One row per finished (complete, pruned or failed) trial of an Optuna study."""
    pandas = require("pandas", "initlab report")
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name in ("RUNNING", "WAITING") or trial.user_attrs.get("surplus"):
            continue
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name.lower()}
        for name in CONFIG_COLUMNS:
            row[name] = trial.params.get(name)
        row["seed"] = trial.user_attrs.get("seed", trial.params.get("seed"))
        outcome = trial.user_attrs.get(OUTCOME_ATTRIBUTE, {})
        for name in (*DOCTOR, *OUTCOMES):
            row[name] = outcome.get(name)
        row["error"] = trial.user_attrs.get(ERROR_ATTRIBUTE)
        rows.append(row)
    columns = ["trial", "state", *CONFIG_COLUMNS, "seed", *DOCTOR, *OUTCOMES, "error"]
    return pandas.DataFrame(rows, columns=columns)


def _as_text(column: Any) -> Any:
    # ``map(str)``, not ``astype(str)``: pandas 3 keeps a missing value missing under astype,
    # and a setting left out in some trials (norm None vs "batch") must count as a value.
    return column.map(str)


def varied_columns(table: Any) -> list[str]:
    """The configuration columns that take more than one value in ``table`` (``None`` is a
    value: ``norm`` None in some trials and ``"batch"`` in others varies)."""
    return [c for c in CONFIG_COLUMNS if _as_text(table[c]).nunique(dropna=False) > 1]


def summary(table: Any) -> Any:
    """Mean, std and count over seeds of the outcomes, per configuration (complete trials).

    The configuration's columns keep their values as the trials hold them (a learning rate
    stays a float, to be rounded where it is shown); trials are grouped by their text, so
    ``None`` and NaN form a group of their own.
    """
    done = table[table["state"] == "complete"]
    keys = ["label"] if "label" in done.columns else varied_columns(done) or ["init"]
    as_text = done.assign(**{k: _as_text(done[k]) for k in keys})
    grouped = as_text.groupby(keys, dropna=False)
    result = grouped.agg(
        best_val_accuracy_mean=("best_val_accuracy", "mean"),
        best_val_accuracy_std=("best_val_accuracy", "std"),
        test_accuracy_mean=("test_accuracy", "mean"),
        diverged_rate=("diverged", "mean"),
        doctor_healthy_rate=("doctor_healthy", "mean"),
        seeds=("seed", "count"),
    )
    result = result.reset_index()
    for key in keys:
        values = dict(zip(as_text[key], done[key], strict=True))
        result[key] = result[key].map(values)
    return result.sort_values("best_val_accuracy_mean", ascending=False)


def failures(table: Any) -> list[tuple[str, list[int]]]:
    """The failed trials grouped by reason: ``(reason, trial numbers)``, most frequent first.

    A trial failed by a kill or an interrupt (its work run again) has the reason
    ``"interrupted"``.
    """
    failed = table[table["state"] == "fail"]
    groups: dict[str, list[int]] = {}
    for number, error in zip(failed["trial"], failed["error"], strict=True):
        reason = error if isinstance(error, str) and error else "interrupted"
        groups.setdefault(reason, []).append(int(number))
    return sorted(groups.items(), key=lambda item: -len(item[1]))


def curves_table(study: Any) -> Any:
    """Long table of per-epoch metrics: one row per (trial, epoch), with the configuration."""
    pandas = require("pandas", "initlab report")
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name != "COMPLETE":
            continue
        config = {name: trial.params.get(name) for name in CONFIG_COLUMNS}
        config["seed"] = trial.user_attrs.get("seed", trial.params.get("seed"))
        for epoch in trial.user_attrs.get(OUTCOME_ATTRIBUTE, {}).get("history", []):
            rows.append({"trial": trial.number, **config, **epoch})
    return pandas.DataFrame(rows)


def export(table: Any, path: str | Path) -> Path:
    """Write ``table`` as CSV or Parquet (by suffix); Parquet needs pyarrow."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".csv":
        table.to_csv(target, index=False)
    elif suffix in (".parquet", ".pq"):
        require("pyarrow", "Parquet export")
        table.to_parquet(target, index=False)
    else:
        raise ConfigError(f"Cannot export to {target}: use a .csv or .parquet path.")
    return target
