"""Terminal views of sweeps and of the demo (Rich)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from initlab.report.numbers import mean_std, number
from initlab.report.verdicts import stored_verdict

__all__ = ["demo_table", "failures_lines", "summary_table", "trial_progress"]


@contextlib.contextmanager
def trial_progress(console: Console, title: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar of finished trials; yields the ``on_progress(done, total)`` callback.

    The bar appears on the first call, so a sweep refused before its first trial (a storage
    that cannot be reached) prints its error alone.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    progress = Progress(*columns, console=console, transient=False)
    task = progress.add_task(title, total=None)

    def update(done: int, total: int) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if progress.live.is_started:
            progress.stop()


def _verdict(findings: Any, healthy: Any) -> Text:
    found = stored_verdict(healthy, findings)
    if not found.flagged:
        return Text("healthy", "green")
    return Text(", ".join(found.codes) or found.level,
                "red" if found.level == "critical" else "yellow")  # fmt: skip


def demo_table(table: Any) -> Table:
    """One row per demo configuration: doctor verdict at init beside the training outcome."""
    view = Table(title="Doctor at init vs training outcome (digits, mean ± std over seeds)",
                 title_justify="left")  # fmt: skip
    for name, justify in (("act", "left"), ("configuration", "left"), ("doctor at init", "left"),
                          ("best val acc", "right"), ("test acc", "right"),
                          ("diverged", "right")):  # fmt: skip
        view.add_column(name, justify=justify)  # type: ignore[arg-type]
    done = table[table["state"] == "complete"]
    for (act, label), group in done.groupby(["act", "label"], sort=False):
        first = group.iloc[0]
        diverged = int(group["diverged"].fillna(False).astype(bool).sum())
        view.add_row(
            str(act),
            Text(str(label)),
            _verdict(first["doctor_findings"], first["doctor_healthy"]),
            mean_std(list(group["best_val_accuracy"])),
            mean_std(list(group["test_accuracy"])),
            f"{diverged}/{len(group)}",
        )
    return view


def summary_table(summary: Any, title: str) -> Table:
    """The per-configuration summary of a sweep."""
    view = Table(title=title, title_justify="left")
    for column in summary.columns:
        view.add_column(
            str(column), justify="right" if summary[column].dtype.kind in "fi" else "left"
        )
    for _, row in summary.iterrows():
        view.add_row(*(number(v) if isinstance(v, float) else Text(str(v)) for v in row))
    return view


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
