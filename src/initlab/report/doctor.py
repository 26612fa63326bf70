"""Terminal views of a doctor report: the findings, the per-layer table, before/after a fix.

The cell formatting here (:func:`layer_cells`, :func:`jacobian_summary`) is shared with the HTML
report, and the verdict's words (:func:`verdict`, from :mod:`initlab.doctor.report`, which
``print(report)`` uses too) with both, so the terminal, the file and ``print`` say the same.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from initlab.doctor.diagnose import DoctorReport
from initlab.doctor.finding import Finding
from initlab.doctor.report import problem_count, short_layers, verdict
from initlab.report.numbers import number, percent
from initlab.report.tables import Column, FittedTable

__all__ = [
    "LAYER_COLUMNS",
    "before_after_table",
    "findings_panel",
    "jacobian_summary",
    "layer_cells",
    "layers_table",
    "network_input_std",
    "problem_count",
    "short_layers",
    "verdict",
]

SEVERITY_STYLE = {"critical": "bold white on red", "warning": "bold black on yellow",
                  "info": "bold white on blue"}  # fmt: skip

LAYER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("layer", "the module's qualified name"),
    ("kind", "its class"),
    ("output std", "std of its output over the batch"),
    ("x input", "output std / the network input's std"),
    ("dead", "rectifier units that are 0 on every example"),
    ("tanh sat.", "saturated tanh/sigmoid outputs: |tanh| > 0.99, sigmoid outside [.01, .99]"),
    ("cosine", "mean cosine similarity between examples' outputs"),
    ("dL/dh std", "std of the gradient w.r.t. the output"),
    ("gain^2", "weight's Var(W) * fan_in: He 2, LeCun 1, PyTorch default 1/3"),
)


def jacobian_summary(report: DoctorReport) -> str:
    """The input-output Jacobian's singular values in one line ("" when not computed)."""
    spectrum = report.jacobian
    if spectrum is None:
        return ""
    if spectrum.skipped:
        return f"input-output Jacobian: not computed ({spectrum.skipped})"
    parts = []
    if spectrum.smallest is not None:
        parts.append(f"smallest {number(spectrum.smallest)}")
    parts.append(f"largest {number(spectrum.largest)}")
    parts.append(f"mean square {number(spectrum.mean_square)}")
    if spectrum.spread is not None:
        parts.append(f"largest/smallest {number(spectrum.spread)}")
    return (
        f"input-output Jacobian singular values ({spectrum.method}, one example): "
        + ", ".join(parts)
        + "; dynamical isometry wants them all near 1"
    )


def network_input_std(report: DoctorReport) -> float | None:
    """The std of the batch the model was fed (the first layer's input), if recorded."""
    for record in report.records:
        value = record.forward["input_std"]
        if not math.isnan(value):
            return value
    return None


def layer_cells(report: DoctorReport) -> list[list[str]]:
    """One row of formatted cells per probed module, in :data:`LAYER_COLUMNS` order."""
    reference = network_input_std(report)
    gains = {w.layer: w.gain_sq for w in report.weights}
    rows = []
    for record in report.records:
        forward = record.forward
        std = forward["std"]
        ratio = std / reference if reference else math.nan
        rows.append(
            [
                record.label,
                record.kind,
                number(std),
                number(ratio),
                percent(forward["dead_fraction"]),
                percent(forward["saturated_fraction"]),
                number(forward["cosine"]),
                number(record.grad_std),
                number(gains.get(record.name)),
            ]
        )
    return rows


def _finding_view(finding: Finding) -> RenderableType:
    badge = Text(f" {finding.severity.upper()} ", SEVERITY_STYLE[finding.severity])
    header = Text.assemble(badge, " ", (finding.title, "bold"), (f"  [{finding.code}]", "dim"))
    # A grid keeps wrapped evidence and fixes aligned under their own column.
    details = Table.grid(padding=(0, 2))
    details.add_column(style="dim", no_wrap=True)
    details.add_column(overflow="fold")
    details.add_row("layers", Text(short_layers(finding.layers)))
    details.add_row("evidence", Text(finding.evidence))
    details.add_row("fix", Text(finding.fix))
    details.add_row("expected", Text(finding.expected))
    if finding.plan is not None:
        rules = finding.plan.rules
        schemes = ", ".join(sorted({item.scheme_label for item in rules}))
        details.add_row(
            "fix plan",
            Text(
                f"re-initialize {len(rules)} layer(s) with {schemes} (auto: He/Xavier/LeCun "
                "by the activation that follows), the rest kept"
            ),
        )
    return Group(header, Padding(details, (0, 0, 0, 2)))


def findings_panel(report: DoctorReport, *, title: str = "initlab doctor") -> Panel:
    """The verdict, every finding (severity, title, layers, evidence, fix) and the Jacobian."""
    healthy = report.healthy
    lines: list[RenderableType] = [
        Text(verdict(report), "bold green" if healthy else "bold red"),
    ]
    for finding in report.findings:
        lines.append(Text(""))
        lines.append(_finding_view(finding))
    summary = jacobian_summary(report)
    if summary:
        lines.extend([Text(""), Text(summary, "dim")])
    for note in report.skipped:
        lines.append(Text(note, "dim"))
    return Panel(
        Group(*lines),
        title=Text(title),
        title_align="left",
        border_style="green" if healthy else "red",
    )


# What the per-layer table leaves out first at narrow widths (0: always shown).
_LAYER_PRIORITY = {"kind": 6, "x input": 5, "cosine": 4, "gain^2": 3, "tanh sat.": 2, "dead": 1}


def layers_table(report: DoctorReport, *, title: str = "per-layer statistics") -> FittedTable:
    """The per-layer table: scales, dead/saturated units, similarity, gradients, weight gain.

    At narrow widths the columns of :data:`_LAYER_PRIORITY` are left out, the highest first
    (the caption says which); layer names and numbers stay whole.
    """
    columns = [
        Column(LAYER_COLUMNS[0][0], style="bold"),
        Column(LAYER_COLUMNS[1][0], style="dim", priority=_LAYER_PRIORITY["kind"]),
    ]
    columns += [
        Column(name, justify="right", priority=_LAYER_PRIORITY.get(name, 0))
        for name, _ in LAYER_COLUMNS[2:]
    ]
    reference = network_input_std(report)
    notes = [f"network input std {reference:.3g}"] if reference is not None else []
    notes.append("gain^2 = Var(W) * fan_in: He 2, LeCun 1, PyTorch default 1/3")
    return FittedTable(columns, layer_cells(report), title=title, caption="; ".join(notes))


def _arrow(before: float | None, after: float | None, style: str = "") -> Text:
    return Text.assemble((number(before), "dim"), " -> ", (number(after), style))


def before_after_table(before: DoctorReport, after: DoctorReport) -> RenderableType:
    """The fix side by side: per-layer scales and gradients before -> after, then both verdicts.

    Rows are matched by module name and call (both reports describe the same model).
    """
    columns = (
        Column("layer", style="bold"),
        Column("kind", style="dim", priority=4),
        Column("output std", "words", justify="right"),
        Column("dL/dh std", "words", justify="right"),
        Column("dead or sat.", "words", justify="right", priority=2),
        Column("gain^2", "words", justify="right", priority=3),
    )
    later = {(record.name, record.call): record for record in after.records}
    gains_before = {w.layer: w.gain_sq for w in before.weights}
    gains_after = {w.layer: w.gain_sq for w in after.weights}
    rows: list[tuple[RenderableType, ...]] = []
    for record in before.records:
        match = later.get((record.name, record.call))
        if match is None:
            continue
        rows.append(
            (
                record.label,
                record.kind,
                _arrow(record.forward["std"], match.forward["std"]),
                _arrow(record.grad_std, match.grad_std),
                Text.assemble(
                    (_dead_or_saturated(record.forward), "dim"),
                    " -> ",
                    _dead_or_saturated(match.forward),
                ),
                _arrow(gains_before.get(record.name), gains_after.get(record.name)),
            )
        )
    table = FittedTable(columns, rows, title="before -> after the fix")
    verdicts = Text.assemble(
        ("before: ", "dim"),
        (verdict(before), "green" if before.healthy else "red"),
        ("\nafter:  ", "dim"),
        (verdict(after), "bold green" if after.healthy else "bold red"),
    )
    return Group(table, verdicts, *_remaining(after))


def _dead_or_saturated(forward: dict[str, Any]) -> str:
    dead = forward["dead_fraction"]
    return percent(dead if not math.isnan(dead) else forward["saturated_fraction"])


def _remaining(after: DoctorReport) -> list[RenderableType]:
    return [
        Text(f"  still: [{f.severity}] {f.title}", "yellow")
        for f in after.findings
        if f.severity != "info"
    ]
