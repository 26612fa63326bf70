"""Terminal views of a plan: its rules, and the table of what it does to each parameter."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.text import Text

from initlab.plan.assignments import Assignment, Assignments, zeroed_rows_text
from initlab.plan.checkpoint import Checkpoint
from initlab.plan.plan import Plan
from initlab.report.numbers import number
from initlab.report.tables import Column, FittedTable

__all__ = ["assignments_view", "rules_view"]


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _fans(row: Assignment) -> str:
    return "-" if row.fans is None else f"{row.fans.fan_in}/{row.fans.fan_out}"


def _source(row: Assignment) -> Text:
    if isinstance(row.scheme, Checkpoint):
        return Text(row.source, "green")
    return Text(row.source, "dim" if row.rule_index is None else "")


def _summary(table: Assignments) -> Text:
    from_files = [row for row in table if isinstance(row.scheme, Checkpoint)]
    kept = sum(row.scheme is None for row in table)
    counts = [f"{len(table) - len(from_files) - kept} drawn"]
    if from_files:
        paths = sorted(
            {row.scheme.path for row in from_files if isinstance(row.scheme, Checkpoint)}
        )
        counts.append(f"{len(from_files)} from {', '.join(paths)}")
    counts.append(f"{kept} kept")
    done = "dry run" if table.seed is None else f"applied with seed {table.seed}"
    return Text(f"{len(table)} parameters: {', '.join(counts)}; {done}", "bold")


def assignments_view(
    table: Assignments, *, title: str = "", show_unused: bool = True
) -> RenderableType:
    """The resolved plan: one row per parameter, then unused rules and the activation method.

    Columns: parameter, shape, role, scheme, fan_in/fan_out, std (after the multiplier),
    source (the rule or default that chose the scheme; rows read from a checkpoint in green)
    and notes (tied names, the activation that follows, fan notes, later matching rules).
    ``show_unused=False`` leaves out the rules that matched nothing (a preset's generic rules).
    At narrow widths role, fan_in/fan_out, shape, source, then notes are left out, in that
    order, and the caption says which; parameter names, schemes and stds stay whole.
    """
    columns = (
        Column("parameter", style="bold"),
        Column("shape", priority=3),
        Column("role", priority=5),
        Column("scheme", "words", style="cyan"),
        Column("fan_in/fan_out", justify="right", priority=4),
        Column("std", justify="right"),
        Column("source", "prose", priority=2),
        Column("notes", "prose", priority=1, style="dim"),
    )
    rows = [
        (
            row.name,
            _shape(row.site.shape),
            row.site.role,
            Text(row.scheme_label, "dim" if row.scheme is None else ""),
            _fans(row),
            number(row.std, 4),
            _source(row),
            row.notes,
        )
        for row in table
    ]
    grid = FittedTable(columns, rows, title=title or None)
    lines: list[RenderableType] = [grid, _summary(table)]
    lines += [
        Text(f"{row.name}: {zeroed_rows_text(row.zero_rows)} after the draw")
        for row in table
        if row.zero_rows
    ]
    if table.activation_method:
        method = Text.assemble(("activations: ", "dim"), table.activation_method)
        if table.activation_fallback:
            method.append(f" ({table.activation_fallback})", "yellow")
        lines.append(method)
    for index, description in table.unused_rules if show_unused else ():
        lines.append(Text(f"rule {index} ({description}) matched no parameter", "yellow"))
    return Group(*lines)


def rules_view(plan: Plan) -> RenderableType:
    """A plan's rules in order (the first match wins), then its default."""
    columns = (
        Column("#", justify="right"),
        Column("matches", "prose"),
        Column("scheme", "words", style="cyan"),
        Column("fans", priority=1),
    )
    rows = [
        (str(index), item.describe(), item.scheme_label, item.fans)
        for index, item in enumerate(plan.rules)
    ]
    grid = FittedTable(columns, rows, title=f"plan {plan.name!r}")
    default = Text.assemble(("default: ", "dim"), (str(plan.default), "cyan"))
    return Group(grid, default)
