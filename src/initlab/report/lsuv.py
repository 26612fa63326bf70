"""Terminal views of an LSUV log: the fitted layers and the ones left as they were."""

from __future__ import annotations

from rich.text import Text

from initlab.lsuv import LsuvLog
from initlab.report.numbers import number
from initlab.report.tables import Column, FittedTable

__all__ = ["fitted_table", "skipped_table"]


def fitted_table(log: LsuvLog, title: str) -> FittedTable:
    """One row per fitted layer: iterations, output variance before and after, converged."""
    columns = (
        Column("layer"),
        Column("kind", priority=2),
        Column("iterations", justify="right", priority=1),
        Column("initial var", justify="right"),
        Column("final var", justify="right"),
        Column("converged", justify="right"),
    )
    rows = [
        (
            row.layer,
            row.kind,
            str(row.iterations),
            number(row.initial_var, 4),
            number(row.final_var, 4),
            "yes" if row.converged else Text("NO", "bold red"),
        )
        for row in log.rows
    ]
    return FittedTable(
        columns, rows, title=f"{title}: target variance {log.target_var:g} ± {log.tol:g}"
    )


def skipped_table(log: LsuvLog) -> FittedTable:
    """The layers LSUV left as they were, with the reason."""
    columns = (Column("layer"), Column("kind", priority=1), Column("reason", "prose"))
    rows = [(skip.layer, skip.kind, skip.reason) for skip in log.skipped]
    return FittedTable(columns, rows, title="skipped (left as they were)")
