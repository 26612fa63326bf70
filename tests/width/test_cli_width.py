"""``initlab coord-check`` and the transfer demo's command: exit codes, files, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import typer.testing
from rich.console import Console

from initlab.cli import application as cli
from initlab.cli.width import COORD_CHECK_JSON, COORD_CHECK_PNG, register

MLP = ["initlab.train.models:MLP", "--kwargs", json.dumps({"in_features": 64, "out_features": 10})]


@pytest.fixture
def app() -> typer.Typer:
    """An app of the width commands alone, with the application's exit-code handling."""
    application = typer.Typer(cls=cli.InitlabGroup)
    register(application)
    return application


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> typer.testing.CliRunner:
    monkeypatch.setattr(cli, "console", Console(width=200, color_system=None))
    monkeypatch.setattr(cli, "error_console", Console(width=400, stderr=True, color_system=None))
    return typer.testing.CliRunner()


def coord_check(
    app: typer.Typer, run: typer.testing.CliRunner, *args: str
) -> typer.testing.Result:
    options = ["--widths", "64,128,256", "--steps", "2", "--data", "digits"]
    return run.invoke(app, ["coord-check", *MLP, *options, *args])


def test_sp_exits_1_with_the_growing_layers_and_writes_the_files(
    app: typer.Typer, run: typer.testing.CliRunner, tmp_path: Path
) -> None:
    result = coord_check(app, run, "--out", str(tmp_path / "sp"))
    assert result.exit_code == 1, result.output
    assert "head (output)" in result.output
    assert "head: the change from init grows with width" in result.output
    png, data = tmp_path / "sp" / COORD_CHECK_PNG, tmp_path / "sp" / COORD_CHECK_JSON
    assert png.read_bytes().startswith(b"\x89PNG")
    stored = json.loads(data.read_text())
    assert stored["widths"] == [64, 128, 256]
    assert stored["parametrization"] == "sp"
    assert any(f["layer"] == "head" and f["direction"] == "grows" for f in stored["findings"])


def test_mup_exits_0(app: typer.Typer, run: typer.testing.CliRunner, tmp_path: Path) -> None:
    result = coord_check(app, run, "--parametrization", "mup", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / COORD_CHECK_PNG).is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--widths", "64,abc"], "--widths takes whole numbers >= 1 separated by commas"),
        (["--widths", "64"], "at least two different widths"),
        (["--data", "digts"], "Did you mean 'digits'?"),
        (["--optimizer", "adma"], "Did you mean 'adam'?"),
        (["--parametrization", "mupp"], "mupp"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    app: typer.Typer,
    run: typer.testing.CliRunner,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    result = coord_check(app, run, *args, "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_factory_without_width_is_exit_2(
    app: typer.Typer, run: typer.testing.CliRunner, tmp_path: Path
) -> None:
    factory = ["initlab.train.models:SmallCNN", "--kwargs", '{"in_channels": 1}']
    result = run.invoke(app, ["coord-check", *factory, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "the factory has no 'width' parameter" in result.output


def test_width_in_kwargs_is_exit_2(
    app: typer.Typer, run: typer.testing.CliRunner, tmp_path: Path
) -> None:
    kwargs = json.dumps({"in_features": 64, "out_features": 10, "width": 8})
    args = ["coord-check", "initlab.train.models:MLP", "--kwargs", kwargs, "--out", str(tmp_path)]
    result = run.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--kwargs sets 'width'" in result.output


def test_transfer_writes_the_study_the_plots_and_the_table(
    app: typer.Typer, run: typer.testing.CliRunner, tmp_path: Path
) -> None:
    args = ["transfer", "--out", str(tmp_path), "--widths", "32,64", "--epochs", "1"]
    result = run.invoke(app, [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "best learning rate per width" in result.output
    for name in ("transfer.db", "width_transfer.png", "coord_check.png", "best_lr.md"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "best_lr.md").read_text().startswith("| width | best lr, sp |")


def test_transfer_bad_widths_exit_2(
    app: typer.Typer, run: typer.testing.CliRunner, tmp_path: Path
) -> None:
    result = run.invoke(app, ["transfer", "--out", str(tmp_path), "--widths", "64,x"])
    assert result.exit_code == 2, result.output
    assert "--widths takes whole numbers" in result.output
