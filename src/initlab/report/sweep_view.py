r"""A sweep's trials as its report sees them: configurations with the doctor's verdict at init,
their outcome over seeds, and whether the verdict foretold it.

A configuration *trained* when its mean best validation accuracy reaches
:data:`TRAINED_FRACTION` of the best configuration's,

.. math::

    \text{trained}(c) = \bar a_c \ge 0.9 \max_{c'} \bar a_{c'},

and the doctor was *right* about it when it flagged (warning or critical) exactly the
configurations that did not train. The two ways to be wrong are a *missed* failure (healthy at
init, did not train) and a *false alarm* (flagged, trained).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from initlab.experiments.results import CONFIG_COLUMNS, varied_columns
from initlab.report.numbers import number
from initlab.report.verdicts import Verdict, stored_verdict, worst

__all__ = ["COLUMN_LABELS", "TRAINED_FRACTION", "Configuration", "CurvePanel",
           "configuration_name", "configurations", "curve_panels", "row_verdict", "setting_text",
           "shared_settings"]  # fmt: skip

# Within 10% of the best: a run that learned the task, if less well; chance-level and
# part-way runs (the demo's 0.1 and 0.4-0.77) fall far below it.
TRAINED_FRACTION = 0.9
# More lines than this in one panel and the colours stop telling them apart.
MOST_LINES_PER_PANEL = 8

Judgement = Literal["right", "missed", "false alarm"]

COLUMN_LABELS: dict[str, str] = {
    "init": "Initialization",
    "lr": "Learning rate",
    "optimizer": "Optimizer",
    "momentum": "Momentum",
    "l1": "L1 penalty",
    "l2": "L2 penalty",
    "weight_decay": "Weight decay",
    "dropout": "Dropout rate",
    "schedule": "Learning-rate schedule",
    "clip": "Gradient clipping (max norm)",
    "augment": "Augmentation",
    "depth": "Depth (hidden layers)",
    "width": "Width (units per layer)",
    "activation": "Activation",
    "norm": "Normalization",
}


def setting_text(value: Any) -> str:
    """A configuration value as a person reads it: ``none``, ``yes``/``no``, ``0.01``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, float):
        return number(value)
    return str(value)


@dataclass(frozen=True)
class Configuration:
    """One configuration's complete trials (one per seed) as the report shows them.

    Attributes:
        name: the caller's label, or the varied settings (``init kaiming, lr 0.01``).
        group: the caller's act (the demo's), else ``""``.
        settings: every configuration column -> its value as text.
        verdict: the doctor's worst verdict at init over the seeds.
        best: best validation accuracy per seed.
        test: test accuracy per seed (``None`` where the run diverged).
        diverged: how many seeds diverged.
        trials: the trial numbers.
    """

    name: str
    group: str
    settings: dict[str, str]
    verdict: Verdict
    best: tuple[float, ...]
    test: tuple[float | None, ...]
    diverged: int
    trials: tuple[int, ...]
    trained: bool = field(default=False)

    @property
    def best_mean(self) -> float:
        """Mean best validation accuracy over seeds."""
        return math.fsum(self.best) / len(self.best)

    @property
    def judgement(self) -> Judgement:
        """Whether the doctor's verdict at init foretold the outcome."""
        if self.verdict.flagged != self.trained:
            return "right"
        return "false alarm" if self.verdict.flagged else "missed"


def configuration_name(row: Any, keys: Sequence[str]) -> str:
    """A trial's configuration in words: the caller's ``label``, else its value of the one
    varied setting (``xavier``), else ``key value`` pairs (``init xavier, lr 0.1``)."""
    if "label" in row and isinstance(row["label"], str) and row["label"]:
        return row["label"]
    if len(keys) == 1:
        return setting_text(row[keys[0]])
    return ", ".join(f"{key} {setting_text(row[key])}" for key in keys) or "all trials"


def _configuration(group: Any, keys: list[str]) -> Configuration:
    first = group.iloc[0]
    verdicts = [row_verdict(row) for _, row in group.iterrows()]
    tests = [None if _missing(v) else float(v) for v in group["test_accuracy"]]
    return Configuration(
        name=configuration_name(first, keys),
        group=str(first["act"]) if "act" in first else "",
        settings={column: setting_text(first[column]) for column in CONFIG_COLUMNS},
        verdict=worst(verdicts),
        best=tuple(float(v) for v in group["best_val_accuracy"]),
        test=tuple(tests),
        diverged=int(sum(bool(v) for v in group["diverged"] if not _missing(v))),
        trials=tuple(int(n) for n in group["trial"]),
    )


def row_verdict(row: Any) -> Verdict:
    """The doctor's verdict at init stored with one trial (a row of the trials table)."""
    return stored_verdict(
        row.get("doctor_healthy"), row.get("doctor_findings"), row.get("doctor_severity")
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def configurations(table: Any) -> list[Configuration]:
    """The complete trials of ``table`` grouped by configuration (all but the seed).

    Order: by group (the caller's acts, in order), then best mean accuracy first; ``trained``
    is set against :data:`TRAINED_FRACTION` of the best configuration.
    """
    done = table[(table["state"] == "complete") & table["best_val_accuracy"].notna()]
    if done.empty:
        return []
    keys = ["label"] if "label" in done.columns else varied_columns(done)
    group_keys = (["act"] if "act" in done.columns else []) + (keys or ["init"])
    text_keys = done.assign(**{k: done[k].map(setting_text) for k in group_keys})
    found = [
        _configuration(done.loc[rows.index], keys)
        for _, rows in text_keys.groupby(group_keys, sort=False)
    ]
    bar = TRAINED_FRACTION * max(c.best_mean for c in found)
    order = list(dict.fromkeys(c.group for c in found))
    found.sort(key=lambda c: (order.index(c.group), -c.best_mean))
    return [replace(c, trained=c.best_mean >= bar) for c in found]


def shared_settings(table: Any) -> dict[str, str]:
    """Configuration columns that take one value in every trial: human label -> value."""
    shared = {}
    for column in CONFIG_COLUMNS:
        values = {setting_text(v) for v in table[column]}
        if len(values) == 1:
            shared[COLUMN_LABELS.get(column, column)] = values.pop()
    return shared


@dataclass(frozen=True)
class CurveLine:
    """One configuration's validation accuracy per epoch, mean over its seeds."""

    name: str
    epochs: tuple[int, ...]
    accuracy: tuple[float, ...]
    verdict: Verdict


@dataclass(frozen=True)
class CurvePanel:
    """At most :data:`MOST_LINES_PER_PANEL` learning curves under one title."""

    title: str
    lines: tuple[CurveLine, ...]


def _split(chunk: list[Configuration]) -> list[tuple[str, list[Configuration]]]:
    """Parts of at most ``MOST_LINES_PER_PANEL``: by the setting that splits the fewest ways,
    else in even slices."""
    if len(chunk) <= MOST_LINES_PER_PANEL:
        return [("", chunk)]
    best: list[tuple[str, list[Configuration]]] | None = None
    for column in CONFIG_COLUMNS:
        parts: dict[str, list[Configuration]] = {}
        for c in chunk:
            parts.setdefault(c.settings[column], []).append(c)
        fits = len(parts) > 1 and all(len(p) <= MOST_LINES_PER_PANEL for p in parts.values())
        if fits and (best is None or len(parts) < len(best)):
            best = [(f"{COLUMN_LABELS[column].lower()} {v}", p) for v, p in parts.items()]
    if best is not None:
        return best
    slices = math.ceil(len(chunk) / MOST_LINES_PER_PANEL)
    size = math.ceil(len(chunk) / slices)
    return [(f"part {i + 1}", chunk[i * size : (i + 1) * size]) for i in range(slices)]


def curve_panels(found: Sequence[Configuration], curves: Any) -> list[CurvePanel]:
    """The learning curves of ``found`` in panels: one per group, split where it holds more
    than :data:`MOST_LINES_PER_PANEL` configurations."""
    if curves is None or curves.empty or "val_accuracy" not in curves:
        return []
    groups: dict[str, list[Configuration]] = {}
    for configuration in found:
        groups.setdefault(configuration.group, []).append(configuration)
    panels = []
    for group, members in groups.items():
        for part, chunk in _split(members):
            lines = []
            for c in chunk:
                mean = curves[curves["trial"].isin(c.trials)].groupby("epoch")["val_accuracy"]
                series = mean.mean().dropna()
                lines.append(CurveLine(c.name, tuple(int(e) for e in series.index),
                                       tuple(float(v) for v in series), c.verdict))  # fmt: skip
            title = ": ".join(t for t in (group, part) if t)
            panels.append(CurvePanel(title, tuple(lines)))
    return panels
