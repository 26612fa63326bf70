"""A sweep's report: PNG plots and one self-contained HTML file (images inlined, no URLs).

Plots: learning curves (validation accuracy per epoch, mean over seeds) per initialization;
the best validation accuracy per initialization and regularizer (mean and spread over seeds);
the doctor's verdict at init against the outcome (does the doctor predict training?).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from initlab.experiments.results import failures, varied_columns
from initlab.optional import require

__all__ = ["curves_figure", "doctor_vs_outcome_figure", "outcome_figure", "sweep_html"]


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "sweep report plots")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "sweep report plots")


def _label(row: Any, keys: list[str]) -> str:
    return ", ".join(f"{row[k]}" if k in ("init", "label") else f"{k}={row[k]}" for k in keys)


def curves_figure(curves: Any, keys: list[str], panel: str | None = None) -> Any:
    """Validation accuracy per epoch, mean over seeds, one line per configuration.

    With ``panel`` (a column of ``curves``, such as the demo's act), one plot per value of it,
    side by side on a shared y axis, so no plot holds more lines than colours can tell apart.
    """
    plt = _pyplot()
    has_curves = not curves.empty and "val_accuracy" in curves
    groups = [("", curves)]
    if has_curves and panel is not None and panel in curves:
        groups = list(curves.groupby(panel, sort=True))
    figure, axes = plt.subplots(
        1, len(groups), figsize=(max(8.0, 5.0 * len(groups)), 4.5), sharey=True,
        layout="constrained", squeeze=False,
    )  # fmt: skip
    for axis, (title, frame) in zip(axes[0], groups, strict=True):
        if has_curves:
            group_keys = keys or ["init"]
            frame = frame.assign(**{k: frame[k].astype(str) for k in group_keys})
            lines = list(frame.groupby(group_keys))
            colours = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20").colors
            for index, (label, group) in enumerate(lines):
                mean = group.groupby("epoch")["val_accuracy"].mean()
                name = label if isinstance(label, str) else ", ".join(map(str, label))
                axis.plot(mean.index, mean.values, marker=".", label=name,
                          color=colours[index % len(colours)])  # fmt: skip
            axis.legend(fontsize=7, ncol=1 if len(groups) > 1 else 2)
        axis.set_xlabel("epoch")
        axis.set_title(f"Learning curves: {title}" if title else "Learning curves")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy (mean over seeds)")
    return figure


def outcome_figure(summary: Any, keys: list[str]) -> Any:
    """Best validation accuracy per configuration with its spread over seeds."""
    plt = _pyplot()
    figure, axis = plt.subplots(
        figsize=(9, max(2.5, 0.3 * len(summary) + 1)), layout="constrained"
    )
    labels = [_label(row, keys or ["init"]) for _, row in summary.iterrows()]
    axis.barh(labels, summary["best_val_accuracy_mean"],
              xerr=summary["best_val_accuracy_std"].fillna(0), color="#4c72b0")  # fmt: skip
    axis.invert_yaxis()
    axis.set_xlabel("best validation accuracy (mean +- std over seeds)")
    axis.set_title("Outcome per initialization and regularizer")
    axis.set_xlim(0, 1)
    axis.grid(axis="x", alpha=0.3)
    return figure


def doctor_vs_outcome_figure(table: Any) -> Any:
    """Doctor's forward trend at init against the best validation accuracy."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4), layout="constrained")
    done = table[table["state"] == "complete"]
    healthy = done["doctor_healthy"].fillna(False).astype(bool)
    for mask, colour, name in ((healthy, "#2a9d8f", "healthy at init"),
                               (~healthy, "#e76f51", "problems at init")):  # fmt: skip
        part = done[mask]
        axis.scatter(part["doctor_forward_trend"], part["best_val_accuracy"], c=colour,
                     label=name, alpha=0.8)  # fmt: skip
    trend = done["doctor_forward_trend"]
    if (trend.dropna() > 0).any():  # a log axis needs a positive value to show
        axis.set_xscale("log")
    axis.set_xlabel("forward std factor over the stack at init (doctor)")
    axis.set_ylabel("best validation accuracy")
    axis.set_title("Does the doctor's verdict at init predict training?")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return figure


def png_data_uri(figure: Any, save_as: Path | None = None) -> str:
    """A figure as a ``data:image/png;base64,...`` URI (also written to ``save_as``); closes it."""
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    if save_as is not None:
        save_as.parent.mkdir(parents=True, exist_ok=True)
        save_as.write_bytes(buffer.getvalue())
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em} h1{font-size:1.6em} h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em} td,th{border:1px solid #ddd;padding:.3em .6em;
text-align:right} th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
img{max-width:100%} .meta{color:#666}
"""


def _table_html(frame: Any, limit: int = 200) -> str:
    shown = frame.head(limit)
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for _, row in shown.iterrows():
        cells = []
        for value in row:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{header}</tr>{''.join(body)}</table>"


def _failures_html(table: Any, complete: int) -> str:
    grouped = failures(table)
    if not grouped:
        return ""
    headline = "No trial completed: every trial failed." if not complete else "Failed trials"
    rows = "".join(
        f"<tr><td>{html.escape(reason)}</td><td>{len(numbers)}</td>"
        f"<td>{html.escape(', '.join(map(str, numbers)))}</td></tr>"
        for reason, numbers in grouped
    )
    return (
        f"<h2>{headline}</h2><table><tr><th>reason</th><th>trials</th><th>numbers</th></tr>"
        f"{rows}</table>"
    )


def sweep_html(
    study_name: str,
    table: Any,
    summary: Any,
    curves: Any,
    *,
    note: str = "",
    png_folder: Path | None = None,
) -> str:
    """The whole report as one HTML document (plots also saved as PNGs in ``png_folder``)."""
    keys = varied_columns(table)
    panel = "act" if "act" in table.columns else None  # the demo's acts, one plot each
    if "label" in table.columns:  # runs named by the caller (the demo) are shown by name
        keys = ["label"]
        if not curves.empty:
            named = ["trial", "label"] + ([panel] if panel else [])
            curves = curves.merge(table[named], on="trial")
    complete = int((table["state"] == "complete").sum())
    images = []
    if complete:  # plots of nothing would only hide that nothing completed
        figures = {
            "curves": curves_figure(curves, keys, panel),
            "outcome": outcome_figure(summary, keys),
            "doctor_vs_outcome": doctor_vs_outcome_figure(table),
        }
        images = [
            png_data_uri(figure, None if png_folder is None else png_folder / f"{name}.png")
            for name, figure in figures.items()
        ]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>initlab sweep {html.escape(study_name)}</title><style>{_STYLE}</style></head>",
        f"<body><h1>initlab sweep: {html.escape(study_name)}</h1>",
        f"<p class='meta'>{complete} complete trials of {len(table)}. {html.escape(note)}</p>",
        _failures_html(table, complete),
        "<h2>Summary per configuration</h2>",
        _table_html(summary),
        *(f"<p><img alt='plot' src='{uri}'></p>" for uri in images),
        "<h2>All trials</h2>",
        _table_html(table),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(path: str | Path, document: str) -> Path:
    """Write the HTML document, creating the folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document, encoding="utf-8")
    return target
