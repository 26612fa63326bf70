"""``write_doctor``: the event file holds exactly the report's numbers."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import initlab
from initlab.doctor.diagnose import DoctorReport
from initlab.errors import InitlabError
from initlab.optional import MissingDependencyError
from initlab.report.tensorboard import write_doctor
from initlab.train.models import MLP

tensorboard = pytest.importorskip("torch.utils.tensorboard")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

README_SNIPPET = """\
import torch
import initlab
from initlab.report.tensorboard import write_doctor
from initlab.train.models import MLP

torch.manual_seed(0)
model = MLP(64, 10, depth=3, width=32)
report = initlab.doctor(model, torch.randn(256, 64))
scalars = write_doctor(report, "runs/doctor", step=0, model=model)  # tensorboard --logdir runs
print(f"{len(scalars)} scalars, e.g. {scalars['doctor/layers.2.act/dead_fraction']:.3f}")
"""

NOT_STATISTICS = ("layer", "kind", "index", "activation_after")


@pytest.fixture(scope="module")
def model() -> MLP:
    torch.manual_seed(0)
    return MLP(64, 10, depth=3, width=32)


@pytest.fixture(scope="module")
def report(model: MLP) -> DoctorReport:
    generator = torch.Generator().manual_seed(1)
    return initlab.doctor(model, torch.randn(128, 64, generator=generator))


def _accumulator(log_dir: Path) -> Any:
    accumulator = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={"scalars": 0, "histograms": 0}
    )
    accumulator.Reload()
    return accumulator


def _expected_layer_scalars(report: DoctorReport) -> dict[str, float]:
    expected = {}
    for row in report.rows():
        for key, value in row.items():
            finite = isinstance(value, float) and math.isfinite(value)
            if key not in NOT_STATISTICS and finite:
                expected[f"doctor/{row['layer']}/{key}"] = value
    return expected


def _written(report: DoctorReport, log_dir: Path, **kwargs: Any) -> dict[str, float]:
    with tensorboard.SummaryWriter(log_dir=str(log_dir)) as writer:
        return write_doctor(report, writer, **kwargs)


def test_event_file_scalars_equal_the_report_rows(report: DoctorReport, tmp_path: Path) -> None:
    returned = _written(report, tmp_path, step=3)
    accumulator = _accumulator(tmp_path)
    expected = _expected_layer_scalars(report)
    assert set(expected) <= set(accumulator.Tags()["scalars"])
    for tag, value in expected.items():
        (event,) = accumulator.Scalars(tag)
        assert event.step == 3
        # TensorBoard stores scalars as float32: equal after the same rounding.
        assert event.value == float(np.float32(value)), tag
        assert returned[tag] == value
    assert set(accumulator.Tags()["scalars"]) == set(returned)


def test_the_named_statistics_are_there(report: DoctorReport, tmp_path: Path) -> None:
    returned = _written(report, tmp_path)
    rows = {row["layer"]: row for row in report.rows()}
    first, relu = rows["layers.0.linear"], rows["layers.2.act"]
    assert returned["doctor/layers.0.linear/std"] == first["std"]
    assert returned["doctor/layers.0.linear/grad_std"] == first["grad_std"]
    assert returned["doctor/layers.0.linear/weight_gain_sq"] == first["weight_gain_sq"]
    assert returned["doctor/layers.0.linear/cosine"] == first["cosine"]
    assert returned["doctor/layers.2.act/dead_fraction"] == relu["dead_fraction"]
    # Statistics that do not apply (NaN) or do not exist (None) are left out.
    assert "doctor/layers.0.linear/dead_fraction" not in returned
    assert "doctor/layers.2.act/weight_std" not in returned


def test_summary_scalars(report: DoctorReport, tmp_path: Path) -> None:
    returned = _written(report, tmp_path)
    assert report.jacobian is not None
    assert returned["doctor/jacobian/largest"] == report.jacobian.largest
    assert returned["doctor/jacobian/mean_square"] == report.jacobian.mean_square
    assert returned["doctor/healthy"] == float(report.healthy)
    warnings = sum(1 for finding in report.findings if finding.severity == "warning")
    assert returned["doctor/findings/warning"] == warnings
    critical = sum(1 for finding in report.findings if finding.severity == "critical")
    assert _accumulator(tmp_path).Scalars("doctor/findings/critical")[0].value == critical


def test_histograms_across_layers_and_of_weights(
    report: DoctorReport, model: MLP, tmp_path: Path
) -> None:
    _written(report, tmp_path, model=model)
    accumulator = _accumulator(tmp_path)
    stds = [row["std"] for row in report.rows()]
    across = accumulator.Histograms("doctor/across_layers/std")[0].histogram_value
    assert across.num == len(stds)
    assert across.min == pytest.approx(min(stds))
    assert across.max == pytest.approx(max(stds))
    weight = model.layers[1].linear.weight.detach()
    values = accumulator.Histograms("doctor/layers.1.linear/weight_values")[0].histogram_value
    assert values.num == weight.numel()
    assert values.min == pytest.approx(float(weight.min()))
    assert values.sum == pytest.approx(float(weight.sum()), abs=1e-4)


def test_a_log_directory_is_opened_and_closed(report: DoctorReport, tmp_path: Path) -> None:
    log_dir = tmp_path / "runs" / "doctor"
    returned = write_doctor(report, log_dir, step=0)
    assert returned == report.scalars()
    accumulator = _accumulator(log_dir)
    tag = "doctor/head/std"
    assert accumulator.Scalars(tag)[0].value == float(np.float32(returned[tag]))


def test_steps_and_prefix(report: DoctorReport, tmp_path: Path) -> None:
    with tensorboard.SummaryWriter(log_dir=str(tmp_path)) as writer:
        for step in (0, 1):
            write_doctor(report, writer, step=step, prefix="init")
    events = _accumulator(tmp_path).Scalars("init/head/std")
    assert [event.step for event in events] == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step": "0"}, "step must be an int, got '0'"),
        ({"prefix": ""}, "prefix must be a non-empty tag"),
        ({"model": torch.nn.Linear(2, 2)}, "no parameter 'layers.0.linear.weight'"),
    ],
)
def test_bad_arguments_are_initlab_errors(
    report: DoctorReport, tmp_path: Path, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InitlabError, match=match):
        write_doctor(report, tmp_path, **kwargs)


def test_missing_tensorboard_names_the_extra(
    report: DoctorReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'initlab\[tensorboard\]'"):
        write_doctor(report, tmp_path)


def test_the_report_module_does_not_load_tensorboard() -> None:
    code = "import sys, initlab.report.tensorboard\nprint('tensorboard' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "False"


def test_readme_snippet_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(README_SNIPPET, "README.md", "exec"), {})
    assert list((tmp_path / "runs" / "doctor").glob("events.out.tfevents.*"))
    assert capsys.readouterr().out.strip().endswith(tuple("0123456789"))
