"""The doctor's figures: the expected panels, log scales, reference lines, PNG output."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from torch import nn

from initlab.doctor import DoctorReport, doctor
from initlab.errors import InitlabError
from initlab.report.doctor_files import save_doctor_report
from initlab.report.doctor_plots import comparison_figure, doctor_figure

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Each panel's title: what it shows, then (after a line break) what a healthy net looks like.
TITLES = (
    "Forward: how large each module's output is",
    "Backward: gradient dL/dh reaching each module",
    "Dead and saturated units; inputs collapsing together",
    "Signal propagation plot (Brock et al., 2021)",
    "Weight scale: effective gain^2 = Var(W) x fan_in",
    "Summary",
)


def _model(init: str, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(6):
        layers += [nn.Linear(16, 16), activation()]
    model = nn.Sequential(*layers, nn.Linear(16, 4))
    if init == "zeros":
        for parameter in model.parameters():
            nn.init.zeros_(parameter)
    return model


def _diagnose(model: nn.Module) -> DoctorReport:
    batch = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    return doctor(model, batch, jacobian=False)


def _report(init: str, activation: type[nn.Module] = nn.ReLU) -> DoctorReport:
    return _diagnose(_model(init, activation))


@pytest.fixture(scope="module")
def default_init() -> DoctorReport:
    return _report("default")


def _png(figure: object) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=40)  # type: ignore[attr-defined]
    return buffer.getvalue()


def test_doctor_figure_has_the_panels(default_init: DoctorReport) -> None:
    figure = doctor_figure(default_init)
    titles = tuple(axes.get_title().split("\n")[0] for axes in figure.axes)
    assert titles == TITLES
    for axes in figure.axes[:5]:
        assert axes.get_title().split("\n")[1].startswith("healthy: ")
    forward, backward, units, propagation, gains, summary = figure.axes
    for axes in (forward, backward, propagation, gains):
        assert axes.get_yscale() == "log"
    assert units.get_yscale() == "linear"
    assert forward.get_ylabel() == "output std (log)"
    assert backward.get_ylabel() == "dL/dh std (log)"
    labels = [line.get_label() for line in forward.lines]
    assert labels[:2] == ["weight layers", "activations / norms"]
    assert labels[2].startswith("input std")
    assert [line.get_label() for line in propagation.lines] == [
        "average channel squared mean",
        "average channel variance",
    ]
    references = sorted(
        float(line.get_ydata()[0]) for line in gains.lines if line.get_linestyle() == "--"
    )
    assert references == pytest.approx([1 / 3, 1.0, 2.0])
    assert not summary.axison
    assert "problem" in summary.texts[0].get_text()
    assert figure.get_suptitle().startswith("initlab doctor: ")
    assert _png(figure).startswith(PNG_SIGNATURE)


def test_dead_saturated_and_cosine_series() -> None:
    relu = doctor_figure(_report("default")).axes[2]
    assert [line.get_label() for line in relu.lines if not line.get_label().startswith("_")] == [
        "dead units (rectifiers)",
        "cosine similarity between examples",
    ]
    tanh = doctor_figure(_report("default", nn.Tanh)).axes[2]
    assert "saturated outputs (tanh/sigmoid)" in [line.get_label() for line in tanh.lines]


def test_all_zero_values_are_said_not_hidden() -> None:
    figure = doctor_figure(_report("zeros"))
    forward, *_ = figure.axes
    gains = figure.axes[4]
    assert "every output std is exactly 0" in [text.get_text() for text in forward.texts]
    assert "every weight gain^2 is exactly 0" in [text.get_text() for text in gains.texts]
    assert _png(figure).startswith(PNG_SIGNATURE)


def test_comparison_figure_overlays_before_and_after() -> None:
    model = _model("default")
    before = _diagnose(model)
    assert before.fix.rules
    before.fix.apply(model, seed=0)
    after = _diagnose(model)
    figure = comparison_figure(before, after)
    forward, backward = figure.axes
    assert forward.get_title().startswith("Forward: output std per module\n")
    assert backward.get_title().startswith("Backward: dL/dh std per module\n")
    assert [line.get_label() for line in backward.lines] == ["before", "after the fix"]
    assert [line.get_label() for line in forward.lines][:2] == ["before", "after the fix"]
    assert figure.get_suptitle().endswith("after: healthy: no problem found")
    assert _png(figure).startswith(PNG_SIGNATURE)


def test_save_doctor_report_draws_the_figure_by_suffix(
    default_init: DoctorReport, tmp_path: Path
) -> None:
    written = save_doctor_report(default_init, tmp_path / "doctor.png")
    assert written.read_bytes().startswith(PNG_SIGNATURE)
    svg = save_doctor_report(default_init, tmp_path / "doctor.svg", comparison=default_init)
    assert "<svg" in svg.read_text(encoding="utf-8")


def test_save_doctor_report_refuses_an_unknown_suffix(
    default_init: DoctorReport, tmp_path: Path
) -> None:
    with pytest.raises(InitlabError, match=r"unknown format '\.txt'.*\.json, \.html"):
        save_doctor_report(default_init, tmp_path / "doctor.txt")
    assert not (tmp_path / "doctor.txt").exists()
