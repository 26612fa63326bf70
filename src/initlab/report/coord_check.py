"""What a coordinate check and a learning-rate transfer sweep look like: tables and plots.

* :func:`coord_check_figure`: each layer's output scale against width, log-log, one panel per
  step (top row: the scale; bottom row: the change from init). Flat lines are
  width-independent; a line rising with width is the instability muP removes.
* :func:`slopes_table`: per layer, the fitted exponents at init and after the last step.
* :func:`transfer_figure`: final training loss against learning rate, one line per width, one
  panel per parametrization (the muP paper's Figure 1): the minima line up when the learning
  rate transfers.
* :func:`best_rates_table` / :func:`best_rates_markdown`: the best learning rate per width.

Figures are matplotlib ``Figure`` objects drawn off-screen (Agg; no pyplot state).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.text import Text

from initlab.optional import require
from initlab.report.tables import Column, FittedTable
from initlab.width.coordinates import SLOPE_THRESHOLD, CoordCheck, Quantity, WidthSlope

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from initlab.experiments.transfer import TransferResult

__all__ = [
    "best_rates_markdown",
    "best_rates_table",
    "comparison_figure",
    "coord_check_figure",
    "slopes_table",
    "transfer_figure",
]

_PANEL_INCHES = 2.6
_MIN_SPAN = 10.0  # every panel's y axis spans at least a decade
_SLOPE_STYLES = {"grows": "bold red", "shrinks": "yellow", "flat": "green", "undefined": "dim"}


def _new_figure(width: float, height: float) -> Figure:
    # A bare Figure draws with the Agg canvas when saved and never touches pyplot's state.
    figure_module = require("matplotlib.figure", "coordinate-check plots")
    figure: Figure = figure_module.Figure(figsize=(width, height), layout="constrained")
    return figure


def _colours(count: int) -> list[Any]:
    """``count`` colours along viridis: first layers dark, last layers light."""
    colormap = require("matplotlib", "coordinate-check plots").colormaps["viridis"]
    return [colormap(index / max(count - 1, 1) * 0.9) for index in range(count)]


def _log_axes(axis: Axes, widths: tuple[int, ...]) -> None:
    ticker = require("matplotlib.ticker", "coordinate-check plots")
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xticks(widths, [str(width) for width in widths], fontsize=7)
    axis.xaxis.set_minor_locator(ticker.NullLocator())
    # Labels on the minor ticks too: a range within one decade would otherwise have none.
    axis.yaxis.set_minor_formatter(
        ticker.LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.5))
    )
    axis.tick_params(labelsize=7, which="both", labelbottom=True)
    axis.grid(alpha=0.3)


def _draw_panel(axis: Axes, check: CoordCheck, step: int, delta: bool) -> None:
    quantity: Quantity = "delta" if delta else "rms"
    for layer, colour in zip(check.layers, _colours(len(check.layers)), strict=True):
        values = check.values(layer, step, quantity)
        if all(value > 0 and math.isfinite(value) for value in values):
            axis.plot(check.widths, values, marker="o", markersize=3, color=colour, label=layer)
    _log_axes(axis, check.widths)
    low, high = axis.get_ylim()
    if low > 0 and high < _MIN_SPAN * low:  # noise in a narrow range would look like a trend
        middle = math.sqrt(low * high)
        axis.set_ylim(middle / math.sqrt(_MIN_SPAN), middle * math.sqrt(_MIN_SPAN))
    when = "init" if step == 0 else f"step {step}"
    axis.set_title(("change from init, " if delta else "scale, ") + when, fontsize=8)


def coord_check_figure(check: CoordCheck) -> Figure:
    """Each layer's output rms (top) and its change from init (bottom) against width,
    log-log, one panel per step; one line per layer, the legend outside at the right."""
    columns = check.steps + 1
    figure = _new_figure(_PANEL_INCHES * columns + 2.4, 2 * _PANEL_INCHES + 0.8)
    grid = figure.subplots(2, columns, squeeze=False, sharex=True)
    for step in range(columns):
        _draw_panel(grid[0][step], check, step, delta=False)
        if step == 0:
            grid[1][0].set_visible(False)  # no change at init
        else:
            _draw_panel(grid[1][step], check, step, delta=True)
    grid[0][0].set_ylabel("rms of the layer's output", fontsize=8)
    grid[1][1].set_ylabel("rms of its change from init", fontsize=8)
    for axis in grid[1]:
        axis.set_xlabel("width", fontsize=8)
    handles, labels = grid[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False,
                  title="layer", title_fontsize=8)  # fmt: skip
    figure.suptitle(
        f"Coordinate check ({check.parametrization}, {check.optimizer}, lr {check.lr:g})\n"
        "flat lines = width-independent; lines rising with width blow up in wider models",
        fontsize=9,
    )
    return figure


def comparison_figure(checks: Sequence[CoordCheck]) -> Figure:
    """The change from init of every layer against width, one row per check (SP above muP,
    say), one panel per step after init; the rows share their y axis."""
    steps = max(check.steps for check in checks)
    figure = _new_figure(_PANEL_INCHES * steps + 2.4, _PANEL_INCHES * len(checks) + 0.6)
    grid = figure.subplots(len(checks), steps, squeeze=False, sharey=True)
    for row, check in zip(grid, checks, strict=True):
        for step, axis in enumerate(row, start=1):
            if step > check.steps:
                axis.set_visible(False)
                continue
            _draw_panel(axis, check, step, delta=True)
            axis.set_title(f"{check.parametrization}: change from init, step {step}", fontsize=8)
        row[0].set_ylabel(f"{check.parametrization}: rms of the change", fontsize=8)
    for axis in grid[-1]:
        axis.set_xlabel("width", fontsize=8)
    handles, labels = grid[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False,
                  title="layer", title_fontsize=8)  # fmt: skip
    optimizers = ", ".join(sorted({f"{c.optimizer} lr {c.lr:g}" for c in checks}))
    figure.suptitle(
        f"Coordinate check ({optimizers}): how much each layer's output moved in the first "
        "steps\nflat lines = width-independent; rising lines = blows up with width",
        fontsize=9,
    )
    return figure


def _slope_cell(slope: WidthSlope) -> Text:
    if slope.slope is None:
        return Text("zero", _SLOPE_STYLES["undefined"])
    return Text(f"{slope.slope:+.2f} {slope.direction}", _SLOPE_STYLES[slope.direction])


def slopes_table(check: CoordCheck) -> FittedTable:
    """Per layer, the exponent :math:`a` of ``scale ~ width^a`` at init, after the last step,
    and of the change from init after the last step."""
    last = check.steps
    columns = (
        Column("layer"),
        Column("scale at init"),
        Column(f"scale after {last} steps"),
        # Left out first at narrow widths, so that the layer names stay whole.
        Column(f"change after {last} steps", priority=1),
    )
    rows = [
        (
            layer + (" (output)" if layer == check.output_layer else ""),
            _slope_cell(check.slope(layer, 0, "rms")),
            _slope_cell(check.slope(layer, last, "rms")),
            _slope_cell(check.slope(layer, last, "delta")),
        )
        for layer in check.layers
    ]
    widths = ", ".join(str(width) for width in check.widths)
    return FittedTable(
        columns,
        rows,
        title=f"slope of log rms vs log width ({check.parametrization}, widths {widths})",
        caption=f"flat: |slope| <= {SLOPE_THRESHOLD}; 1 means the scale doubles when the "
        "width doubles",
    )


def _lr_label(lr: float) -> str:
    exponent = math.log2(lr)
    return f"2^{exponent:g}" if exponent == round(exponent) else f"{lr:.3g}"


def transfer_figure(result: TransferResult) -> Figure:
    """Final training loss against learning rate, one line per width (a dot at its minimum),
    one panel per parametrization, shared axes."""
    settings = result.settings
    panels = len(settings.parametrizations)
    figure = _new_figure(4.2 * panels + 1.4, 3.6)
    grid = figure.subplots(1, panels, squeeze=False, sharey=True)[0]
    colours = _colours(len(settings.widths))
    best = {(b.parametrization, b.width): b for b in result.best()}
    initial_loss = math.log(10)  # chance level of 10 classes: higher is worse than guessing
    for axis, parametrization in zip(grid, settings.parametrizations, strict=True):
        for width, colour in zip(settings.widths, colours, strict=True):
            points = sorted(
                (run.lr, run.final_loss)
                for run in result.runs
                if run.parametrization == parametrization and run.width == width
                and run.final_loss is not None
            )  # fmt: skip
            axis.plot([p[0] for p in points], [p[1] for p in points], marker=".",
                      color=colour, label=f"width {width}")  # fmt: skip
            if (parametrization, width) in best:
                top = best[parametrization, width]
                axis.plot([top.lr], [top.final_loss], "o", color=colour, markersize=8,
                          markeredgecolor="black")  # fmt: skip
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_ylim(top=1.5 * initial_loss)
        axis.set_xlabel("learning rate (Adam)", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        axis.set_title(f"{parametrization}: large dots = best lr per width", fontsize=9)
    grid[0].set_ylabel(f"training loss after {settings.epochs} epochs", fontsize=8)
    handles, labels = grid[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
    figure.suptitle(
        f"Learning-rate transfer on digits (MLP, {settings.depth} hidden layers)\n"
        "dots in a vertical line = the best learning rate transfers across width",
        fontsize=9,
    )
    return figure


def best_rates_table(result: TransferResult) -> FittedTable:
    """The best learning rate (and its loss) per width, one column per parametrization."""
    settings = result.settings
    best = {(b.parametrization, b.width): b for b in result.best()}
    columns = (Column("width", justify="right"),
               *(Column(f"best lr, {p}") for p in settings.parametrizations))  # fmt: skip
    rows = [
        (
            str(width),
            *(
                f"{_lr_label(best[p, width].lr)} (loss {best[p, width].final_loss:.3g})"
                if (p, width) in best
                else "all diverged"
                for p in settings.parametrizations
            ),
        )
        for width in settings.widths
    ]
    drifts = ", ".join(
        f"{p} {d:+.2f}" for p in settings.parametrizations if (d := result.drift(p)) is not None
    )
    return FittedTable(
        columns,
        rows,
        title=f"best learning rate per width ({settings.epochs} epochs)",
        caption=f"drift of the best lr, octaves per doubling of width: {drifts} (0: it transfers)",
    )


def best_rates_markdown(result: TransferResult) -> str:
    """The same table in Markdown (for a README)."""
    settings = result.settings
    best = {(b.parametrization, b.width): b for b in result.best()}
    header = "| width | " + " | ".join(f"best lr, {p}" for p in settings.parametrizations)
    lines = [header + " |", "|---:|" + "---|" * len(settings.parametrizations)]
    for width in settings.widths:
        cells = [
            f"{_lr_label(best[p, width].lr)} ({best[p, width].lr:.2g})"
            if (p, width) in best
            else "all diverged"
            for p in settings.parametrizations
        ]
        lines.append(f"| {width} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
