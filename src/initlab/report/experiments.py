"""Terminal views of sweeps and of the demo (Rich)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from initlab.progress import Steps, steps
from initlab.report.numbers import mean_std, number, spread_decimals
from initlab.report.sweep_view import setting_text
from initlab.report.tables import Column, FirstFitting, FittedTable
from initlab.report.verdicts import stored_verdict

__all__ = ["demo_table", "failures_lines", "summary_table", "trial_progress"]


@contextlib.contextmanager
def trial_progress(title: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar of finished trials (:mod:`initlab.progress`: on standard error, when it
    is a terminal and ``--quiet`` was not given); yields the ``on_progress(done, total)``
    callback.

    The bar appears on the first call, so a sweep refused before its first trial (a storage
    that cannot be reached) prints its error alone.
    """
    with contextlib.ExitStack() as opened:
        bar: list[Steps] = []

        def update(done: int, total: int) -> None:
            if not bar:
                bar.append(opened.enter_context(steps(title, total)))
            bar[0].reach(done, total)

        yield update


def _verdict(findings: Any, healthy: Any) -> Text:
    found = stored_verdict(healthy, findings)
    if not found.flagged:
        return Text("healthy", "green")
    return Text(", ".join(found.codes) or found.level,
                "red" if found.level == "critical" else "yellow")  # fmt: skip


def demo_table(table: Any) -> FittedTable:
    """One row per demo configuration: doctor verdict at init beside the training outcome."""
    columns = (
        Column("act", "words"),
        Column("configuration", "words", style="bold"),
        Column("doctor at init", "words"),
        Column("best val acc", justify="right"),
        Column("test acc", justify="right", priority=2),
        Column("diverged", justify="right", priority=1),
    )
    done = table[table["state"] == "complete"]
    rows = []
    for (act, label), group in done.groupby(["act", "label"], sort=False):
        first = group.iloc[0]
        diverged = int(group["diverged"].fillna(False).astype(bool).sum())
        rows.append(
            (
                str(act),
                str(label),
                _verdict(first["doctor_findings"], first["doctor_healthy"]),
                mean_std(list(group["best_val_accuracy"])),
                mean_std(list(group["test_accuracy"])),
                f"{diverged}/{len(group)}",
            )
        )
    title = "Doctor at init vs training outcome (digits, mean ± std over seeds)"
    return FittedTable(columns, rows, title=title)


# The summary's outcome columns: header, mean column, std column (or None), and priority
# (the highest is left out first at narrow widths; 0 never).
_OUTCOMES = (
    ("best val acc", "best_val_accuracy_mean", "best_val_accuracy_std", 0),
    ("test acc", "test_accuracy_mean", None, 0),
    ("diverged", "diverged_rate", None, 1),
    ("healthy at init", "doctor_healthy_rate", None, 2),
    ("seeds", "seeds", None, 3),
)


def summary_table(summary: Any, title: str) -> FirstFitting:
    """The per-configuration summary of a sweep: the configuration's keys (numbers to 3
    significant digits: a sampled learning rate reads ``0.0123``), then the outcomes under
    short headers (``best val acc`` is the mean ± std over seeds; rates are fractions).

    At narrow widths the rates are left out before the accuracies (the caption says so); when
    the keys still do not fit side by side (a sweep over many settings), they are stacked in
    one ``configuration`` column, one ``key value`` line each.
    """
    outcomes = [item for item in _OUTCOMES if item[1] in summary.columns]
    used = {name for _, mean, std, _ in outcomes for name in (mean, std) if name is not None}
    keys = [str(column) for column in summary.columns if column not in used]
    outcome_columns = [
        Column(header, justify="right", priority=priority) for header, _, _, priority in outcomes
    ]
    settings: list[list[str]] = []
    results: list[list[RenderableType]] = []
    for _, row in summary.iterrows():
        settings.append([setting_text(row[key]) for key in keys])
        results.append([
            _mean_std_cell(row[mean], None if std is None else row[std])
            for _, mean, std, _ in outcomes
        ])  # fmt: skip
    side_by_side = FittedTable(
        [*(Column(key, "words") for key in keys), *outcome_columns],
        [[*values, *cells] for values, cells in zip(settings, results, strict=True)],
        title=title,
    )
    stacked = FittedTable(
        [Column("configuration"), *outcome_columns],  # one whole "key value" line per key
        [
            ["\n".join(f"{key} {value}" for key, value in zip(keys, values, strict=True)), *cells]
            for values, cells in zip(settings, results, strict=True)
        ],
        title=title,
        row_lines=True,
    )
    return FirstFitting(side_by_side, stacked) if len(keys) > 1 else FirstFitting(side_by_side)


def _cell(value: Any) -> str:
    return number(value) if isinstance(value, float) else str(value)


def _mean_std_cell(mean: Any, std: Any) -> str:
    """``mean ± std`` rounded as :func:`~initlab.report.numbers.mean_std` rounds: to the
    decimals the spread supports; the mean alone when there is no spread."""
    if not isinstance(std, float) or not 0 < std < math.inf:
        return _cell(mean)
    decimals = spread_decimals(std)
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def failures_lines(table: Any, *, shown: int = 5) -> list[Text]:
    """One line per reason of failed trials (the ``shown`` most frequent), after a headline;
    nothing when no trial failed."""
    from initlab.experiments.results import failures

    grouped = failures(table)
    if not grouped:
        return []
    failed = sum(len(numbers) for _, numbers in grouped)
    complete = int((table["state"] == "complete").sum())
    headline = f"{failed} trial(s) failed, {complete} complete"
    if not complete:
        headline += ": no trial completed, nothing to compare"
    lines = [Text(headline, "bold red" if not complete else "yellow")]
    for reason, numbers in grouped[:shown]:
        listed = ", ".join(map(str, numbers[:8])) + (", ..." if len(numbers) > 8 else "")
        lines.append(Text(f"  {len(numbers)} x {reason} (trials {listed})"))
    return lines
