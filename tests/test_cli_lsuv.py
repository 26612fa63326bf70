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
    assert "3 of 3 fitted layers converged; 0 skipped" in result.output
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
    assert "--save 'w.pt': this option writes a .safetensors file" in result.output
    assert "Traceback" not in result.output


RECURRENT = """
from torch import nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        hidden, _ = self.gru(self.proj(x))
        return self.head(hidden)
"""


def test_lsuv_lists_skipped_layers_with_the_reason(
    run: typer.testing.CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tagger_models.py").write_text(RECURRENT)
    monkeypatch.chdir(tmp_path)
    result = run.invoke(cli.app, ["lsuv", "tagger_models:Tagger", "--input-shape", "32,6,8"])
    assert result.exit_code == 0, result.output  # both fitted layers converged
    assert "2 of 2 fitted layers converged; 1 skipped" in result.output
    assert "gru" in result.output
    assert "recurrent: its output variance depends on the sequence dynamics" in result.output


def test_lsuv_exits_1_when_nothing_could_be_fitted(run: typer.testing.CliRunner) -> None:
    gru = ["torch.nn:GRU", "--kwargs", json.dumps({"input_size": 8, "hidden_size": 8})]
    result = run.invoke(cli.app, ["lsuv", *gru, "--input-shape", "6,4,8"])
    assert result.exit_code == 1, result.output
    assert "0 of 0 fitted layers converged; 1 skipped (nothing was fitted)" in result.output
    assert "recurrent" in result.output
