"""A sweep's plots (matplotlib, drawn off-screen: no display, no global pyplot state).

:func:`outcome_figure` is the plot the demo exists for: the outcome of every configuration
coloured by the doctor's verdict at init, its finding codes beside it, and a ring where the
verdict was wrong. :func:`curves_figure` draws the learning curves, a few per panel.

Every figure is drawn as a careful reader wants it: each panel's title says what to look for,
legends sit outside the data (above or beside the axes), the limits come from the data
*including* every error bar, with a margin (:func:`padded_limits`), epochs are ticked at whole
numbers, and numbers in legends keep 3 significant digits
(:func:`~initlab.report.numbers.number`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from initlab.optional import require
from initlab.report.numbers import number
from initlab.report.sweep_view import TRAINED_FRACTION, Configuration, CurvePanel
from initlab.report.verdicts import LEVEL_COLOURS, LEVELS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["CURVES_TITLE", "OUTCOME_TITLE", "curves_figure", "outcome_figure", "padded_limits"]

OUTCOME_TITLE = (
    "Best validation accuracy per configuration: right of the dashed line trained.\n"
    "Colour: the doctor's verdict at init; a ring marks where it did not foretell the outcome."
)
CURVES_TITLE = (
    "Validation accuracy per epoch, mean over seeds: higher is better; a line flat near chance "
    "did not train, one that falls late overfits.\nLine style: the doctor's verdict at init, "
    "healthy (solid), warning (dashed), critical (dotted)."
)
# Space left on each side of the data, as a fraction of its range: a point or an error bar's
# cap on the limit would be cut in half.
_MARGIN = 0.04

# Line style by verdict in the learning curves: the colour already tells the lines apart.
_LINE_STYLES = {"healthy": "-", "warning": "--", "critical": ":"}
_INK = "#1f2328"


def _new_figure(width: float, height: float) -> Figure:
    # A bare Figure draws with the Agg canvas when saved and never touches pyplot's state.
    figure_module = require("matplotlib.figure", "sweep report plots")
    figure: Figure = figure_module.Figure(figsize=(width, height), layout="constrained")
    return figure


def _rows(found: Sequence[Configuration]) -> list[Configuration | str]:
    """Configurations in order with their group's title before each group (when named)."""
    rows: list[Configuration | str] = []
    for configuration in found:
        starts_group = not rows or _group_of(rows[-1]) != configuration.group
        if starts_group and configuration.group:
            rows.append(configuration.group)
        rows.append(configuration)
    return rows


def _group_of(row: Configuration | str) -> str:
    return row if isinstance(row, str) else row.group


def _note(configuration: Configuration) -> str:
    verdict = configuration.verdict
    note = ", ".join(verdict.codes) if verdict.codes else "healthy"
    if configuration.judgement != "right":
        note += f"  [{configuration.judgement}]"
    if configuration.diverged:
        note += f"  (diverged {configuration.diverged}/{len(configuration.best)})"
    return note


def padded_limits(values: Sequence[float], *, margin: float = _MARGIN) -> tuple[float, float]:
    r"""Axis limits that show every one of ``values`` whole: their range widened by ``margin``
    of it on each side (by ``margin`` itself when all values are equal).

    .. math::

        [\min v - m (\max v - \min v),\ \max v + m (\max v - \min v)]

    Example:
        >>> padded_limits([0.0, 0.5, 1.0])
        (-0.04, 1.04)
    """
    low, high = min(values), max(values)
    pad = margin * (high - low) if high > low else margin
    return low - pad, high + pad


def _spread(configuration: Configuration) -> float:
    """Standard deviation (``n - 1``) of the best accuracy over seeds; 0 for one seed."""
    seeds, mean = configuration.best, configuration.best_mean
    if len(seeds) < 2:
        return 0.0
    return math.sqrt(math.fsum((v - mean) ** 2 for v in seeds) / (len(seeds) - 1))


def _extent(found: Sequence[Configuration], bar: float) -> list[float]:
    """Every x the outcome plot draws: each seed, each error bar's two ends, the trained bar."""
    ends = [c.best_mean + sign * _spread(c) for c in found for sign in (-1.0, 1.0)]
    return [*(v for c in found for v in c.best), *ends, bar]


def _draw_configuration(axis: Axes, y: int, configuration: Configuration) -> None:
    colour = LEVEL_COLOURS[configuration.verdict.level]
    seeds = configuration.best
    mean = configuration.best_mean
    spread = _spread(configuration)
    axis.scatter(seeds, [y] * len(seeds), s=14, color=colour, alpha=0.45, linewidths=0, zorder=2)
    axis.errorbar(mean, y, xerr=spread, fmt="o", color=colour, markersize=7, capsize=3, zorder=3)
    if configuration.judgement != "right":
        axis.scatter([mean], [y], s=230, facecolors="none", edgecolors=_INK, linewidths=1.4,
                     zorder=4)  # fmt: skip
    transform = axis.get_yaxis_transform()  # x in axes fractions, y in data
    axis.text(1.01, y, _note(configuration), transform=transform, va="center", fontsize=8,
              color=colour)  # fmt: skip


def _legend_handles(bar: float) -> list[Any]:
    lines = require("matplotlib.lines", "sweep report plots")
    handles = [
        lines.Line2D(
            [],
            [],
            marker="o",
            ls="",
            color=LEVEL_COLOURS[level],
            markersize=7,
            label=f"doctor at init: {level}",
        )
        for level in LEVELS
    ]
    ring = lines.Line2D([], [], marker="o", ls="", markersize=13, markerfacecolor="none",
                        markeredgecolor=_INK, label="verdict did not foretell it")  # fmt: skip
    trained = lines.Line2D([], [], ls="--", color="0.45",
                           label=f"trained: {number(bar)} or more "
                                 f"({TRAINED_FRACTION:.0%} of the best)")  # fmt: skip
    handles.extend([ring, trained])
    return handles


def outcome_figure(found: Sequence[Configuration]) -> Figure:
    """Best validation accuracy per configuration (each seed, and mean +- std), coloured by the
    doctor's verdict at init, with its finding codes at the right; a ring marks a configuration
    whose verdict did not foretell the outcome (a missed failure or a false alarm).

    The accuracy axis spans the data, every error bar whole, with a margin; the legend sits
    above the axes, the finding codes to their right."""
    rows = _rows(found)
    bar = TRAINED_FRACTION * max(c.best_mean for c in found)
    figure = _new_figure(11.0, 0.27 * len(rows) + 1.6)
    axis = figure.subplots()
    for y, row in enumerate(rows):
        if isinstance(row, str):
            axis.axhline(y, color="0.85", lw=0.8, zorder=1)
        else:
            _draw_configuration(axis, y, row)
    axis.set_yticks(range(len(rows)), [r if isinstance(r, str) else r.name for r in rows],
                   fontsize=8)  # fmt: skip
    for label, row in zip(axis.get_yticklabels(), rows, strict=True):
        if isinstance(row, str):
            label.set_fontweight("bold")
    axis.set_ylim(len(rows) - 0.5, -0.5)
    axis.set_xlim(*padded_limits(_extent(found, bar)))
    axis.axvline(bar, ls="--", color="0.45", lw=1)
    axis.set_title(OUTCOME_TITLE, fontsize=9, loc="left")
    axis.set_xlabel("best validation accuracy (small dots: each seed; large: mean ± std)")
    axis.grid(axis="x", alpha=0.3)
    axis.spines[["top", "right"]].set_visible(False)
    figure.legend(handles=_legend_handles(bar), loc="outside upper center", ncol=5, fontsize=8,
                  frameon=False)  # fmt: skip
    return figure


def curves_figure(panels: Sequence[CurvePanel]) -> Figure:
    """Validation accuracy per epoch (mean over seeds), one panel per group of configurations,
    each legend beside its panel, epochs ticked at whole numbers; line style by the doctor's
    verdict at init (solid healthy, dashed warning, dotted critical)."""
    columns = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / columns)
    figure = _new_figure(12.0 if columns == 2 else 8.0, 3.0 * rows + 0.4)
    grid = figure.subplots(rows, columns, squeeze=False, sharey=True)
    palette = require("matplotlib", "sweep report plots").colormaps["tab10"].colors
    ticker = require("matplotlib.ticker", "sweep report plots")
    for index, axis in enumerate(grid.flat):
        if index >= len(panels):
            axis.set_visible(False)
            continue
        panel = panels[index]
        for position, line in enumerate(panel.lines):
            axis.plot(line.epochs, line.accuracy, marker=".", label=line.name,
                      color=palette[position % len(palette)],
                      ls=_LINE_STYLES[line.verdict.level])  # fmt: skip
        axis.set_title(panel.title or "validation accuracy per epoch", fontsize=9, loc="left")
        axis.set_xlabel("epoch", fontsize=8)
        axis.set_ylabel("validation accuracy", fontsize=8)
        axis.tick_params(labelsize=8, labelleft=True)
        axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    figure.suptitle(CURVES_TITLE, fontsize=9, ha="left", x=0.01)
    return figure
