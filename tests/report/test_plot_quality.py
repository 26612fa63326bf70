"""Every figure initlab draws reads as a careful author would make it.

Each figure is built from small real data (a doctor report of a real model, a sweep's trials
table in the layout :func:`~initlab.experiments.results.trials_table` returns) and drawn with the
Agg backend; then, on every figure: epoch axes are ticked at whole numbers, numbers in legends
keep at most 3 significant digits, no legend lies over an axes' data area, every error bar's
two ends lie inside the limits, and every axes has a title.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from initlab.doctor import DoctorReport, doctor
from initlab.experiments.results import CONFIG_COLUMNS, DOCTOR, OUTCOMES
from initlab.report.doctor_plots import TITLES, comparison_figure, doctor_figure
from initlab.report.numbers import number
from initlab.report.sweep_plots import curves_figure, outcome_figure, padded_limits
from initlab.report.sweep_view import configurations, curve_panels

pandas = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

# A decimal number as a label writes it (0.887, 1.5e-05, .5): its digits, then the exponent.
DECIMAL = re.compile(r"(?<![\w.])(\d*\.\d+)(?:e[+-]?\d+)?")
# Overlaps thinner than this (in pixels) are anti-aliasing, not a legend over the data.
TOUCH_PX = 1.0

# ---------------------------------------------------------------------------- the checks


def _drawn(figure: Figure) -> Any:
    """Draw ``figure`` on an Agg canvas (layout, ticks and legends placed); its renderer."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def _axes(figure: Figure) -> list[Any]:
    return [axes for axes in figure.axes if axes.get_visible()]


def _legends(figure: Figure) -> Iterator[Any]:
    yield from figure.legends
    for axes in _axes(figure):
        if axes.get_legend() is not None:
            yield axes.get_legend()


def significant_digits(decimal: str) -> int:
    """Significant digits of a written decimal: ``0.0120`` has 3, ``12.5`` has 3."""
    digits = decimal.replace(".", "").lstrip("0")
    return max(len(digits), 1)


def assert_integer_epoch_ticks(figure: Figure) -> None:
    for axes in _axes(figure):
        if "epoch" not in axes.get_xlabel():
            continue
        low, high = sorted(axes.get_xlim())
        shown = [loc for loc in axes.xaxis.get_majorticklocs() if low <= loc <= high]
        assert shown, "an epoch axis without ticks"
        assert all(float(loc).is_integer() for loc in shown), shown
        labels = [label.get_text().replace("\N{MINUS SIGN}", "-") for label in
                  axes.get_xticklabels()]  # fmt: skip
        assert all(re.fullmatch(r"-?\d+", text) for text in labels if text), labels


def assert_rounded_legends(figure: Figure) -> None:
    for legend in _legends(figure):
        texts = [text.get_text() for text in legend.get_texts()]
        texts.append(legend.get_title().get_text())
        for text in texts:
            long = [d for d in DECIMAL.findall(text) if significant_digits(d) > 3]
            assert not long, f"legend entry {text!r} has more than 3 significant digits"


def assert_legends_beside_the_data(figure: Figure, renderer: Any) -> None:
    for legend in _legends(figure):
        box = legend.get_window_extent(renderer)
        for axes in _axes(figure):
            if not axes.axison:  # a text panel (the doctor's summary) has no data area
                continue
            common = Bbox.intersection(box, axes.get_window_extent(renderer))
            covered = 0.0 if common is None else common.width * common.height
            assert covered <= TOUCH_PX * max(box.width, box.height), (
                f"a legend ({[t.get_text() for t in legend.get_texts()][:3]}) covers "
                f"the data of axes {axes.get_title(loc='left') or axes.get_title()!r}"
            )


def _error_bar_ends(axes: Any) -> Iterator[tuple[float, float]]:
    for container in axes.containers:
        if not isinstance(container, ErrorbarContainer):
            continue
        _, caps, bars = container.lines
        for collection in bars:
            for segment in collection.get_segments():
                yield from ((float(x), float(y)) for x, y in segment)
        for cap in caps:
            yield from zip(cap.get_xdata(), cap.get_ydata(), strict=True)


def assert_error_bars_whole(figure: Figure) -> int:
    """Every error bar's ends inside the axes' limits; returns how many ends were checked."""
    checked = 0
    for axes in _axes(figure):
        x_low, x_high = sorted(axes.get_xlim())
        y_low, y_high = sorted(axes.get_ylim())
        for x, y in _error_bar_ends(axes):
            assert x_low < x < x_high, f"an error bar ends at x={x}, outside {x_low, x_high}"
            assert y_low < y < y_high, f"an error bar ends at y={y}, outside {y_low, y_high}"
            checked += 1
    return checked


def assert_titled(figure: Figure) -> None:
    for axes in _axes(figure):
        titles = [axes.get_title(loc=where) for where in ("left", "center", "right")]
        assert any(titles), f"an axes without a title (y label {axes.get_ylabel()!r})"


def assert_careful(figure: Figure) -> None:
    renderer = _drawn(figure)
    assert_integer_epoch_ticks(figure)
    assert_rounded_legends(figure)
    assert_legends_beside_the_data(figure, renderer)
    assert_error_bars_whole(figure)
    assert_titled(figure)


# ------------------------------------------------------------------------------ the data

BASE: dict[str, Any] = {"init": "kaiming", "lr": 0.01, "optimizer": "sgd", "momentum": 0.9,
                        "l1": 0.0, "l2": 0.0, "weight_decay": 0.0, "dropout": 0.0,
                        "schedule": "constant", "clip": None, "augment": False, "depth": 4,
                        "width": 32, "activation": "relu", "norm": None}  # fmt: skip
# (init, learning rate as a sampler draws it, healthy, codes, best val accuracy per seed)
SWEEP = [
    ("kaiming", 0.012345678901234567, True, "", (0.97, 1.0)),  # mean + std passes 1.0
    ("kaiming", 0.0031622776601683794, True, "", (0.95, 0.93)),
    ("xavier", 0.012345678901234567, False, "xavier_before_relu", (0.96, 0.90)),
    ("zeros", 0.0031622776601683794, False, "symmetric_weights,dead_relu", (0.10, 0.11)),
    ("orthogonal", 0.012345678901234567, True, "", (0.35, 0.62)),
]
EPOCHS = 3  # few epochs: an automatic locator would tick 0.25, 0.5, ...


def _trials() -> Any:
    rows = []
    for index, (init, lr, healthy, codes, best) in enumerate(SWEEP):
        for seed, accuracy in enumerate(best):
            rows.append({
                "trial": 2 * index + seed, "state": "complete", **BASE, "init": init, "lr": lr,
                "seed": seed, "doctor_healthy": healthy, "doctor_findings": codes,
                "best_val_accuracy": accuracy, "final_val_accuracy": accuracy,
                "test_accuracy": accuracy - 0.01, "final_train_loss": 0.3, "diverged": False,
                "epochs_run": EPOCHS, "seconds": 1.0, "error": None,
            })  # fmt: skip
    columns = ["trial", "state", *CONFIG_COLUMNS, "seed", *DOCTOR, *OUTCOMES, "error"]
    return pandas.DataFrame(rows, columns=columns)


def _curves(table: Any) -> Any:
    rows = [{"trial": trial, "epoch": epoch, "val_accuracy": best * (epoch + 1) / EPOCHS}
            for trial, best in zip(table["trial"], table["best_val_accuracy"], strict=True)
            for epoch in range(EPOCHS)]  # fmt: skip
    return pandas.DataFrame(rows)


def _report(model: nn.Module) -> DoctorReport:
    batch = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    return doctor(model, batch, seed=0, jacobian=False)


def _deep_relu() -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(6):
        layers += [nn.Linear(16, 16), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(16, 4))


@pytest.fixture(scope="module")
def reports() -> tuple[DoctorReport, DoctorReport]:
    """A deep ReLU net at PyTorch's default init, then after the doctor's fix."""
    model = _deep_relu()
    before = _report(model)
    assert before.fix.rules, "the default init of a deep ReLU net should have a fix"
    before.fix.apply(model, seed=0)
    return before, _report(model)


# ----------------------------------------------------------------------------- the tests


def test_the_outcome_plot_shows_every_error_bar_whole() -> None:
    found = configurations(_trials())
    spreads = [statistics.stdev(c.best) for c in found]
    assert max(c.best_mean + s for c, s in zip(found, spreads, strict=True)) > 1.0
    bar = number(0.9 * max(c.best_mean for c in found))
    figure = outcome_figure(found)
    assert_careful(figure)
    assert assert_error_bars_whole(figure) == 2 * 2 * len(found)  # bar ends and caps
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert f"trained: {bar} or more (90% of the best)" in legend


def test_the_learning_curves_tick_whole_epochs_and_round_their_legends() -> None:
    table = _trials()
    panels = curve_panels(configurations(table), _curves(table))
    figure = curves_figure(panels)
    assert_careful(figure)
    names = [text.get_text() for axes in _axes(figure) for text in axes.get_legend().get_texts()]
    assert "init kaiming, lr 0.0123" in names
    assert "higher is better" in figure.get_suptitle()


def test_the_doctors_figure_is_careful(reports: tuple[DoctorReport, DoctorReport]) -> None:
    figure = doctor_figure(reports[0])
    assert_careful(figure)
    titles = [axes.get_title() for axes in figure.axes]
    assert all("\nhealthy: " in title for title in titles[:5]), titles
    assert titles[5] == TITLES["summary"]


def test_the_before_and_after_figure_is_careful(
    reports: tuple[DoctorReport, DoctorReport],
) -> None:
    assert_careful(comparison_figure(*reports))


def test_the_checks_catch_what_they_look_for() -> None:
    """A figure with every fault: each check must fail on it."""
    figure = Figure(figsize=(4, 3))
    axes = figure.subplots()
    axes.plot([0, 1, 2], [0.1, 0.5, 0.9], label="lr 0.012345678901234567")
    axes.errorbar([1.0], [0.9], yerr=[0.2])
    axes.set_ylim(0.0, 1.0)
    axes.set_xlim(0.0, 2.0)
    axes.set_xlabel("epoch")
    axes.legend(loc="center")
    renderer = _drawn(figure)
    for check in (
        assert_integer_epoch_ticks,
        assert_rounded_legends,
        assert_error_bars_whole,
        assert_titled,
    ):
        with pytest.raises(AssertionError):
            check(figure)
    with pytest.raises(AssertionError, match="covers"):
        assert_legends_beside_the_data(figure, renderer)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0.1, 0.5, 1.02], (0.0632, 1.0568)), ([0.5, 0.5], (0.46, 0.54))],
)
def test_padded_limits_widen_the_range_on_both_sides(
    values: list[float], expected: tuple[float, float]
) -> None:
    assert padded_limits(values) == pytest.approx(expected)


def test_significant_digits() -> None:
    assert [significant_digits(d) for d in ("0.0120", "12.5", ".5", "0.887")] == [3, 3, 1, 3]
