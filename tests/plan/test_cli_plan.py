"""`initlab plan MODULE:FACTORY`: the table, --apply --save, --show, and one-line errors."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import typer.testing
from rich.console import Console
from safetensors.torch import load_file
from torch import nn

from initlab.cli import application as cli
from initlab.errors import ConfigError
from initlab.plan import Plan, load_factory, rule
from initlab.plan.presets import preset

MODULE = "initlab_cli_test_models"
FACTORIES = """
from torch import nn


def make_mlp(depth: int = 2, width: int = 8) -> nn.Module:
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 2))


def make_tied() -> nn.Module:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight
    return model


class Zoo:
    class Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)


def broken() -> nn.Module:
    raise RuntimeError("needs a GPU that is not there")


def not_a_model() -> list[int]:
    return [1, 2]


NUMBER = 3
"""

Run = Callable[..., typer.testing.Result]


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A factory module in a fresh directory on ``sys.path``."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(FACTORIES), encoding="utf-8")
    (tmp_path / "explodes.py").write_text("raise ValueError('bad config at import')\n")
    for name in (MODULE, "explodes"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Run:
    """Invoke the CLI with consoles at a fixed width (160 columns for tables, 60 for errors)."""
    monkeypatch.setattr(cli, "console", Console(width=160, color_system=None))
    monkeypatch.setattr(cli, "error_console", Console(width=60, stderr=True, color_system=None))
    runner = typer.testing.CliRunner()

    def invoke(*args: str) -> typer.testing.Result:
        return runner.invoke(cli.app, ["plan", *args])

    return invoke


def test_plan_on_a_factory_prints_the_table(models: Path, run: Run) -> None:
    result = run(f"{MODULE}:make_mlp", "--kwargs", '{"depth": 3}')
    assert result.exit_code == 0, result.output
    out = result.stdout
    for header in ("parameter", "shape", "role", "scheme", "fan_in/fan_out", "std", "source"):
        assert header in out
    assert "plan 'auto' on Sequential" in out
    assert "4.weight" in out  # the third hidden layer: --kwargs reached the factory
    assert "he_normal(nonlinearity='relu')" in out
    assert "then relu [fx]" in out
    assert "8 parameters: 8 drawn, 0 kept; dry run" in out
    assert "activations: fx" in out


def test_apply_save_writes_a_loadable_safetensors_file(models: Path, run: Run) -> None:
    result = run(
        f"{MODULE}:make_mlp",
        "--preset",
        "kaiming",
        "--apply",
        "--seed",
        "7",
        "--save",
        "weights.safetensors",
        "--json",
        "table.json",
    )
    assert result.exit_code == 0, result.output
    assert "applied with seed 7" in result.stdout
    assert "matched no parameter" not in result.stdout  # a preset's unused generic rules
    saved = load_file(str(models / "weights.safetensors"))
    expected = load_factory(f"{MODULE}:make_mlp")
    preset("kaiming", expected).apply(expected, seed=7)
    assert saved.keys() == expected.state_dict().keys()
    for key, tensor in expected.state_dict().items():
        assert torch.equal(saved[key], tensor), key
    document = json.loads((models / "table.json").read_text(encoding="utf-8"))
    assert document["seed"] == 7
    assert [row["parameter"] for row in document["parameters"]][:2] == ["0.weight", "0.bias"]


def test_save_handles_tied_parameters(models: Path, run: Run) -> None:
    result = run(f"{MODULE}:make_tied", "--apply", "--save", "tied.safetensors")
    assert result.exit_code == 0, result.output
    assert "tied: 1.weight" in result.stdout
    saved = load_file(str(models / "tied.safetensors"))
    assert len(saved) == 1
    model = load_factory(f"{MODULE}:make_tied")
    Plan([rule(scheme="checkpoint", path="tied.safetensors")]).apply(model)
    assert torch.equal(model[1].weight, next(iter(saved.values())))


def test_config_with_a_checkpoint_marks_the_rows_from_the_file(models: Path, run: Run) -> None:
    source = load_factory(f"{MODULE}:make_mlp")
    torch.save({k: v for k, v in source.state_dict().items() if k.startswith("0.")}, "first.pt")
    (models / "plan.yaml").write_text(
        "name: warm-start\nrules:\n  - scheme: checkpoint\n    params: {path: first.pt}\n",
        encoding="utf-8",
    )
    result = run(f"{MODULE}:make_mlp", "--config", "plan.yaml")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count("-> checkpoint first.pt") == 2  # the key may wrap to the next line
    assert "[0.weight]" in out
    assert "[0.bias]" in out
    assert "2 from first.pt" in out
    assert "default auto" in out  # the other layers


def test_show_prints_a_presets_rules_without_a_model(run: Run) -> None:
    result = run("--preset", "kaiming", "--show")
    assert result.exit_code == 0, result.output
    assert "plan 'kaiming'" in result.stdout
    assert "role=weight" in result.stdout
    assert "he_normal(nonlinearity='relu')" in result.stdout
    assert "default: keep" in result.stdout


def test_show_passes_preset_options(run: Run) -> None:
    result = run("--preset", "gpt2", "--option", "n_layer=2", "--show")
    assert result.exit_code == 0, result.output
    assert "'*c_proj.weight'" in result.stdout
    assert "normal(std=0.01)" in result.stdout  # 0.02 / sqrt(2 * 2)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["models_without_colon"], "MODULE:FACTORY must be an import path"),
        (["no_such_module_xyz:make"], "cannot import module 'no_such_module_xyz'"),
        (
            ["explodes:make"],
            "importing module 'explodes' failed: ValueError: bad config at import",
        ),
        (
            [f"{MODULE}:mak_mlp"],
            f"'{MODULE}' has no attribute 'mak_mlp'. Did you mean 'make_mlp'?",
        ),
        ([f"{MODULE}:Zoo.Big"], f"'{MODULE}.Zoo' has no attribute 'Big'"),
        ([f"{MODULE}:NUMBER"], "'NUMBER' is a int, not a function or class"),
        ([f"{MODULE}:broken"], "the factory raised RuntimeError: needs a GPU that is not there"),
        ([f"{MODULE}:not_a_model"], "the factory returned a list, not a torch.nn.Module"),
        ([f"{MODULE}:make_mlp", "--kwargs", "[1]"], "--kwargs is a JSON object"),
        ([f"{MODULE}:make_mlp", "--kwargs", "{depth: 3}"], "is not JSON"),
        ([f"{MODULE}:make_mlp", "--kwargs", '{"dpth": 3}'], "unexpected keyword argument 'dpth'"),
        ([f"{MODULE}:make_mlp", "--save", "w.safetensors"], "--save writes the initialized"),
        ([f"{MODULE}:make_mlp", "--preset", "kaimin"], "Did you mean 'kaiming'?"),
        ([f"{MODULE}:make_mlp", "--preset", "xavier", "--config", "p.yaml"], "alternatives"),
        ([f"{MODULE}:make_mlp", "--config", "missing.yaml"], "'missing.yaml' does not exist"),
        (["--preset", "xavier"], "Give MODULE:FACTORY"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(
    models: Path, run: Run, args: list[str], says: str
) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # wider than the 60-column console, still one line
    assert lines[0].startswith("error: ")
    assert says in lines[0]
    assert "Traceback" not in result.output


def test_the_cli_imports_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    (tmp_path / "here_only_models.py").write_text(
        "from torch import nn\n\ndef make():\n    return nn.Linear(2, 2)\n", encoding="utf-8"
    )
    monkeypatch.delitem(sys.modules, "here_only_models", raising=False)
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    result = run("here_only_models:make")
    assert result.exit_code == 0, result.output
    assert "weight" in result.stdout
    assert sys.path == before


def test_load_factory_follows_dotted_attributes_and_calls_classes(models: Path) -> None:
    assert isinstance(load_factory(f"{MODULE}:Zoo.Small"), nn.Module)
    assert isinstance(load_factory(f"{MODULE}:make_mlp", {"depth": 1}), nn.Sequential)


def test_load_factory_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="must be an import path"):
        load_factory("a:b:c")
