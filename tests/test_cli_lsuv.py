"""``initlab lsuv``: the table, the exit code, the saved weights, and one-line user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer.testing
from rich.console import Console
from safetensors.torch import load_file

from initlab.cli import application as cli
from initlab.doctor.inputs import digits_batch
from initlab.train.models import SmallCNN

CNN = [
    "initlab.train.models:SmallCNN",
    "--kwargs",
    json.dumps({"in_channels": 1, "num_classes": 10}),
]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> typer.testing.CliRunner:
    monkeypatch.setattr(cli, "console", Console(width=200, color_system=None))
    monkeypatch.setattr(cli, "error_console", Console(width=400, stderr=True, color_system=None))
    return typer.testing.CliRunner()


def test_lsuv_on_digits_converges_and_saves_the_weights(
    run: typer.testing.CliRunner, tmp_path: Path
) -> None:
    target = tmp_path / "cnn.safetensors"
    args = ["lsuv", *CNN, "--data", "digits", "--input-shape", "256,1,8,8", "--save", str(target)]
    result = run.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert "3/3 layers converged" in result.output
    assert "blocks.0.conv" in result.output
    assert "head" in result.output

    saved = load_file(str(target))
    model = SmallCNN(1, 10)
    model.load_state_dict(saved)
    with torch.no_grad():
        out = model(digits_batch((256, 1, 8, 8)))
    assert abs(out.var().item() - 1.0) < 0.1  # the last layer's tolerance, as LSUV left it


def test_lsuv_exits_1_when_a_layer_does_not_converge(run: typer.testing.CliRunner) -> None:
    result = run.invoke(cli.app, ["lsuv", *CNN, "--input-shape", "32,1,8,8", "--max-iter", "0"])
    assert result.exit_code == 1
    assert "NO" in result.output


def test_lsuv_bad_input_is_one_line(run: typer.testing.CliRunner) -> None:
    result = run.invoke(cli.app, ["lsuv", *CNN, "--input-shape", "32,1,8,8", "--save", "w.pt"])
    assert result.exit_code == 2
    assert "--save writes a .safetensors file" in result.output
    assert "Traceback" not in result.output
