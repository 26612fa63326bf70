"""Terminal views of the scheme catalogue and of one scheme on one shape."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from initlab.fans import Layout, compute_fans, torch_fans
from initlab.report.numbers import number
from initlab.report.tables import Column, FittedTable
from initlab.schemes import get, scheme_aliases, scheme_class, scheme_names

if TYPE_CHECKING:
    from initlab.showcase import Propagation

__all__ = ["catalogue_table", "describe", "propagation_table"]


def _defaults(name: str) -> str:
    cls = scheme_class(name)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    return ", ".join(f"{f.name}={f.default!r}" for f in fields) or "-"


def catalogue_table() -> FittedTable:
    """Every registered scheme: name, aliases, parameters with defaults, formula.

    At narrow widths the aliases are left out (the caption says so); names and parameters
    stay whole.
    """
    columns = (
        Column("scheme", style="bold cyan"),
        Column("aliases", "words", priority=1, style="dim"),
        Column("parameters (defaults)", "words"),
        Column("formula", "prose"),
    )
    rows = [
        (name, ", ".join(scheme_aliases(name)), _defaults(name), scheme_class(name).formula)
        for name in scheme_names()
    ]
    return FittedTable(columns, rows, title="initlab schemes")


def describe(
    name: str,
    params: dict[str, Any],
    *,
    shape: tuple[int, ...] | None = None,
    layout: str = "torch",
    groups: int = 1,
) -> RenderableType:
    """One scheme: its parameters and formula, and for ``shape`` its fans, std and bound.

    Args:
        name: the scheme's name or alias.
        params: its parameters (:func:`initlab.schemes.get`'s keywords).
        shape: the weight's shape; ``None`` for the parameters and formula only.
        layout: the shape's axis order (see :mod:`initlab.fans`).
        groups: the layer's groups (grouped convolutions).
    """
    scheme = get(name, **params)
    lines: list[RenderableType] = [
        Text.assemble(("scheme  ", "dim"), (str(scheme), "bold cyan")),
        Text.assemble(("formula ", "dim"), scheme.formula),
    ]
    if shape is None:
        lines.append(
            Text("Pass --shape (e.g. --shape 256,128,3,3) for fans, std and bound.", "dim")
        )
        return Group(*lines)
    typed_layout: Layout = layout  # type: ignore[assignment]
    stats = scheme.stats(shape, layout=typed_layout, groups=groups)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("shape", f"{shape} ({layout} layout)")
    if len(shape) >= 2 or layout.startswith("keras"):
        fans = compute_fans(shape, layout=typed_layout, groups=groups)
        table.add_row("fan_in", str(fans.fan_in))
        table.add_row("fan_out", str(fans.fan_out))
        table.add_row("receptive field", str(fans.receptive_field))
        torch_in, torch_out = torch_fans(shape) if len(shape) >= 2 else (0, 0)
        if len(shape) >= 2 and (torch_in, torch_out) != (fans.fan_in, fans.fan_out):
            table.add_row(
                "torch's array fans",
                f"fan_in {torch_in}, fan_out {torch_out} (torch reads the shape as (out, in, *k))",
            )
    table.add_row("mean", f"{stats.mean:.6g}")
    table.add_row("std", f"{stats.std:.6g}")
    table.add_row("bound", "unbounded" if stats.bound is None else number(stats.bound, 6))
    return Group(*lines, table)


def propagation_table(*, depth: int, width: int, seed: int = 0) -> FittedTable:
    """The showcase: pre-activation std at a few depths of a deep MLP, per scheme.

    At narrow widths the middle depths are left out first (the caption says so); the first
    and last depth, the scheme and the verdict stay.
    """
    from initlab.showcase import showcase  # torch: not for the catalogue

    results: list[Propagation] = showcase(depth=depth, width=width, seed=seed)
    checkpoints = sorted({1, max(1, depth // 3), max(1, 2 * depth // 3), depth})
    columns = [Column("scheme", style="bold"), Column("activation")]
    columns += [
        Column(f"layer {layer}", justify="right", priority=0 if layer in (1, depth) else 1)
        for layer in checkpoints
    ]
    columns.append(Column("verdict", "words"))
    rows: list[list[RenderableType]] = [
        [
            row.scheme,
            row.activation,
            *(f"{row.stds[layer - 1]:.3g}" for layer in checkpoints),
            _verdict(row),
        ]
        for row in results
    ]
    title = f"Pre-activation std through a {depth}-layer MLP (width {width}, Gaussian batch)"
    return FittedTable(columns, rows, title=title)


def _verdict(row: Propagation) -> Text:
    first, last = row.stds[0], row.stds[-1]
    if last == 0 or first == 0:
        return Text("dead: all zero", "red")
    ratio = last / first
    if row.activation == "tanh" and first > 3:
        return Text("saturated", "red")
    if ratio < 1e-2:
        return Text("vanishing", "red")
    if ratio > 1e2:
        return Text("exploding", "red")
    if 0.5 <= ratio <= 2:
        return Text("healthy", "green")
    return Text("drifting", "yellow")
