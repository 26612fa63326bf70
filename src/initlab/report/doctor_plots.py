r"""Plots of a doctor report (matplotlib, drawn off-screen: no display, no global pyplot state).

:func:`doctor_figure` draws, against the modules in forward order:

a. forward: each module's output std (log scale), weight layers and activations apart, with the
   network input's std as a reference line;
b. backward: the std of :math:`\partial L/\partial h` at each module's output (log scale);
c. dead (rectifier) and saturated (tanh/sigmoid) fractions and the mean cosine similarity
   between examples, with the thresholds the findings use;
d. the signal-propagation plot of Brock et al. (2021): the average over channels of the squared
   channel mean and of the channel variance;
e. each weight's effective gain :math:`g^2 = \operatorname{Var}(W)\cdot\text{fan\_in}`, with
   reference lines at 2 (He), 1 (LeCun; Xavier for square layers) and 1/3 (PyTorch's default);

and a summary panel (verdict, findings, Jacobian spectrum). :func:`comparison_figure` overlays
(a) and (b) before and after a fix.

Each panel's title names what it shows, then what a healthy network looks like in it; legends
sit beside the axes, never over the data; numbers in legends keep 3 significant digits.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from initlab.doctor.diagnose import DoctorReport
from initlab.optional import require
from initlab.report.doctor import jacobian_summary, network_input_std, short_layers, verdict
from initlab.report.numbers import number

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["TITLES", "comparison_figure", "doctor_figure"]

_MAX_NAMED_TICKS = 40
# Each panel's title: what it shows, then (second line) what to look for.
TITLES = {
    "forward": "Forward: how large each module's output is\n"
    "healthy: flat with depth; a steady climb explodes, a steady fall vanishes",
    "backward": "Backward: gradient dL/dh reaching each module\n"
    "healthy: flat with depth; shrinking toward the input vanishes, growing explodes",
    "units": "Dead and saturated units; inputs collapsing together\n"
    "healthy: every line below its dotted threshold",
    "propagation": "Signal propagation plot (Brock et al., 2021)\n"
    "healthy: variance flat with depth, squared mean well below it",
    "gains": "Weight scale: effective gain^2 = Var(W) x fan_in\n"
    "healthy: near the line the next activation needs (He 2 before ReLU)",
    "summary": "Summary",
    "compare forward": "Forward: output std per module\n"
    "the fix worked where 'after' runs flatter than 'before'",
    "compare backward": "Backward: dL/dh std per module\n"
    "the fix worked where 'after' runs flatter than 'before'",
}
_GAIN_REFERENCES = ((2.0, "He: 2"), (1.0, "LeCun / Xavier (square): 1"),
                    (1.0 / 3.0, "PyTorch default: 1/3"))  # fmt: skip


def _new_figure(width: float, height: float) -> Figure:
    # A bare Figure draws with the Agg canvas when saved and never touches pyplot's global
    # figure manager, so it is safe in servers, threads and tests without a display.
    figure_module = require("matplotlib.figure", "doctor plots")
    figure: Figure = figure_module.Figure(figsize=(width, height), layout="constrained")
    return figure


def _weight_layers(report: DoctorReport) -> set[str]:
    return {w.layer for w in report.weights}


def _log_series(
    axes: Axes, xs: Sequence[int], ys: Sequence[float | None], **style: Any
) -> tuple[int, int]:
    """Plot the positive values on ``axes``; returns (how many shown, how many exactly 0)."""
    kept = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y)]
    shown = [(x, y) for x, y in kept if y > 0]
    if shown:
        axes.plot([x for x, _ in shown], [y for _, y in shown], **style)
    return len(shown), sum(y == 0 for _, y in kept)


def _finish_log_axes(axes: Axes, counts: Sequence[tuple[int, int]], what: str) -> None:
    """Log scale when there is anything positive; otherwise say why the panel is empty."""
    shown = sum(n for n, _ in counts)
    zeros = sum(z for _, z in counts)
    if axes.lines:
        axes.set_yscale("log")
    if not shown:
        message = f"every {what} is exactly 0" if zeros else f"no {what} recorded"
        axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes,
                  color="C3" if zeros else "0.4", fontsize=11)  # fmt: skip
    elif zeros:
        axes.text(0.99, 0.02, f"{zeros} value(s) exactly 0, not shown on the log scale",
                  ha="right", va="bottom", transform=axes.transAxes, fontsize=8,
                  color="C3")  # fmt: skip


def _module_ticks(axes: Axes, names: Sequence[str]) -> None:
    if len(names) <= _MAX_NAMED_TICKS:
        axes.set_xticks(range(len(names)), list(names), rotation=90, fontsize=7)
    axes.set_xlabel("module, in forward order")
    axes.grid(True, which="major", alpha=0.3)
    if names:
        axes.set_xlim(-0.5, len(names) - 0.5)


def _by_module_kind(
    axes: Axes,
    report: DoctorReport,
    values: Sequence[float | None],
    *,
    weight_label: str,
    other_label: str,
) -> list[tuple[int, int]]:
    """``values`` (one per record) as two series, weight layers apart from the other modules;
    returns the two series' counts."""
    layers = _weight_layers(report)
    weight_x = [r.index for r in report.records if r.name in layers]
    other_x = [r.index for r in report.records if r.name not in layers]
    return [_log_series(axes, weight_x, [values[i] for i in weight_x], marker="o",
                        color="C0", label=weight_label),
            _log_series(axes, other_x, [values[i] for i in other_x], marker="s", ms=4,
                        color="C1", alpha=0.8, label=other_label)]  # fmt: skip


def _legend_beside(axes: Axes, **options: Any) -> None:
    """The legend to the right of ``axes``, outside the data (the layout makes room for it)."""
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                **options)  # fmt: skip


def _finish_log_panel(
    axes: Axes, counts: Sequence[tuple[int, int]], what: str, *, title: str, ylabel: str
) -> None:
    """:func:`_finish_log_axes`, then the title, the y label and the legend."""
    _finish_log_axes(axes, counts, what)
    axes.set_title(title, fontsize=10)
    axes.set_ylabel(ylabel)
    if axes.lines:
        _legend_beside(axes)


def _forward(axes: Axes, report: DoctorReport) -> None:
    stds = [r.forward["std"] for r in report.records]
    counts = _by_module_kind(axes, report, stds, weight_label="weight layers",
                             other_label="activations / norms")  # fmt: skip
    reference = network_input_std(report)
    if reference:
        axes.axhline(reference, color="0.3", ls="--", lw=1, label=f"input std {number(reference)}")
    _finish_log_panel(axes, counts, "output std", title=TITLES["forward"],
                      ylabel="output std (log)")  # fmt: skip


def _backward(axes: Axes, report: DoctorReport) -> None:
    grads = [r.grad_std for r in report.records]
    counts = _by_module_kind(axes, report, grads, weight_label="at weight layers' outputs",
                             other_label="at activations / norms")  # fmt: skip
    _finish_log_panel(axes, counts, "gradient", title=TITLES["backward"],
                      ylabel="dL/dh std (log)")  # fmt: skip


def _units(axes: Axes, report: DoctorReport) -> None:
    limits = report.thresholds
    series = (
        ("dead_fraction", "dead units (rectifiers)", "C3", "v", limits.dead),
        ("saturated_fraction", "saturated outputs (tanh/sigmoid)", "C4", "^", limits.saturated),
        ("cosine", "cosine similarity between examples", "C2", "o", limits.collapse),
    )
    for key, label, color, marker, threshold in series:
        points = [(r.index, r.forward[key]) for r in report.records]
        points = [(x, y) for x, y in points if not math.isnan(y)]
        if not points:
            continue
        axes.plot([x for x, _ in points], [y for _, y in points], marker=marker, color=color,
                  label=label)  # fmt: skip
        axes.axhline(threshold, color=color, ls=":", lw=1)
    axes.set_ylim(-0.05, 1.05)
    axes.set_title(TITLES["units"], fontsize=10)
    axes.set_ylabel("fraction / similarity")
    if axes.lines:
        _legend_beside(axes, title="dotted: finding thresholds", title_fontsize=8)
    else:
        axes.text(0.5, 0.5, "no rectifier, saturating activation or layer to show", ha="center",
                  va="center", transform=axes.transAxes, color="0.4")  # fmt: skip


def _signal_propagation(axes: Axes, report: DoctorReport) -> None:
    xs = [r.index for r in report.records]
    counts = [
        _log_series(axes, xs, [r.forward["channel_mean_sq"] for r in report.records],
                    marker="o", color="C5", label="average channel squared mean"),
        _log_series(axes, xs, [r.forward["channel_var"] for r in report.records],
                    marker="s", ms=4, color="C9", label="average channel variance"),
    ]  # fmt: skip
    _finish_log_panel(axes, counts, "channel statistic", title=TITLES["propagation"],
                      ylabel="average over channels (log)")  # fmt: skip


def _gains(axes: Axes, report: DoctorReport) -> None:
    position: dict[str, int] = {}
    for record in report.records:  # a layer called several times is placed at its first call
        position.setdefault(record.name, record.index)
    placed = [(position[w.layer], w.gain_sq) for w in report.weights if w.layer in position]
    counts = [_log_series(axes, [x for x, _ in placed], [g for _, g in placed], marker="D",
                          ls="none", color="C0", label="weights")]  # fmt: skip
    _finish_log_axes(axes, counts, "weight gain^2")
    axes.set_title(TITLES["gains"], fontsize=10)
    axes.set_ylabel("gain^2 (log)")
    shown = [g for _, g in placed if g > 0 and math.isfinite(g)]
    if not shown:
        return
    # Fixed ticks at the reference gains read better than log-scale minor ticks near 1.
    low = min(*shown, 1.0 / 3.0) / 1.8
    high = max(*shown, 2.0) * 1.8
    axes.set_ylim(low, high)
    ticks = {value: label.rsplit(": ", 1)[1] for value, label in _GAIN_REFERENCES}
    decade = 10.0 ** math.floor(math.log10(low))
    while decade <= high:
        if low <= decade and all(abs(math.log(decade / t)) > 0.4 for t in ticks):
            ticks[decade] = f"{decade:g}"
        decade *= 10.0
    axes.minorticks_off()
    axes.set_yticks(sorted(ticks), [ticks[t] for t in sorted(ticks)])
    for value, label in _GAIN_REFERENCES:
        axes.axhline(value, color="0.5", ls="--", lw=0.8)
        axes.annotate(label, (0.995, value), xycoords=("axes fraction", "data"), fontsize=7,
                      color="0.3", ha="right", va="bottom", xytext=(0, 5),
                      textcoords="offset points")  # fmt: skip


def _summary(axes: Axes, report: DoctorReport) -> None:
    axes.set_axis_off()
    axes.set_title(TITLES["summary"], fontsize=10)
    lines = [verdict(report), ""]
    for finding in report.findings:
        text = f"[{finding.severity}] {finding.title} Layers: {short_layers(finding.layers, 4)}."
        lines.extend(textwrap.wrap(text, 70, subsequent_indent="    "))
    spectrum = jacobian_summary(report)
    if spectrum:
        lines.append("")
        lines.extend(textwrap.wrap(spectrum, 70))
    axes.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=8,
              family="monospace", transform=axes.transAxes, wrap=False)  # fmt: skip


def doctor_figure(report: DoctorReport) -> Figure:
    """The doctor's plots as one matplotlib Figure (six panels, modules in forward order).

    Example:
        >>> doctor_figure(initlab.doctor(model, batch)).savefig("doctor.png", dpi=120)

    Raises:
        MissingDependencyError: matplotlib is not installed (``pip install 'initlab[report]'``).
    """
    names = [r.label for r in report.records]
    figure = _new_figure(14.0, 12.5)
    grid = figure.subplots(3, 2, sharex=True)
    panels = (_forward, _backward, _units, _signal_propagation, _gains)
    for axes, draw in zip(grid.flat, panels, strict=False):
        draw(axes, report)
        _module_ticks(axes, names)
    for axes in grid[:-1].flat:
        axes.tick_params(labelbottom=False)
        axes.set_xlabel("")
    grid[2, 1].tick_params(labelbottom=False)
    _summary(grid[2, 1], report)
    grid[1, 1].tick_params(labelbottom=True)
    grid[1, 1].set_xlabel("module, in forward order")
    figure.suptitle(f"initlab doctor: {verdict(report)}", fontsize=13, fontweight="bold")
    return figure


def comparison_figure(before: DoctorReport, after: DoctorReport) -> Figure:
    """Forward output std and backward dL/dh std per module, before and after a fix.

    Both reports must describe the same model (modules are matched by name and call).
    """
    names = [r.label for r in before.records]
    figure = _new_figure(14.0, 4.8)
    forward_axes, backward_axes = figure.subplots(1, 2, sharex=True)
    forward_counts: list[tuple[int, int]] = []
    backward_counts: list[tuple[int, int]] = []
    position = {(r.name, r.call): i for i, r in enumerate(before.records)}
    for report, label, style in (
        (before, "before", {"color": "0.55", "ls": "--", "marker": "o", "ms": 3}),
        (after, "after the fix", {"color": "C2", "marker": "o", "ms": 4}),
    ):
        rows = [
            (position[(r.name, r.call)], r) for r in report.records if (r.name, r.call) in position
        ]
        xs = [x for x, _ in rows]
        stds = [r.forward["std"] for _, r in rows]
        forward_counts.append(_log_series(forward_axes, xs, stds, label=label, **style))
        grads = [r.grad_std for _, r in rows]
        backward_counts.append(_log_series(backward_axes, xs, grads, label=label, **style))
    reference = network_input_std(before)
    if reference:
        forward_axes.axhline(reference, color="0.3", ls=":", lw=1,
                             label=f"input std {number(reference)}")  # fmt: skip
    _finish_log_axes(forward_axes, forward_counts, "output std")
    _finish_log_axes(backward_axes, backward_counts, "gradient")
    forward_axes.set_title(TITLES["compare forward"], fontsize=10)
    forward_axes.set_ylabel("output std (log)")
    backward_axes.set_title(TITLES["compare backward"], fontsize=10)
    backward_axes.set_ylabel("dL/dh std (log)")
    for axes in (forward_axes, backward_axes):
        _module_ticks(axes, names)
        if axes.lines:
            _legend_beside(axes)
    figure.suptitle(
        f"before: {verdict(before)}    after: {verdict(after)}", fontsize=11, fontweight="bold"
    )
    return figure
