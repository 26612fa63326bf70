"""`initlab doctor MODULE:FACTORY`: verdicts and exit codes, reports, --fix, data, errors."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import typer.testing
from rich.console import Console

from initlab import preset
from initlab.cli import application as cli

MODULE = "initlab_doctor_cli_models"
FACTORIES = """
from torch import nn


def mlp(depth: int = 8, width: int = 32, init: str = "default", inputs: int = 64) -> nn.Module:
    layers, size = [], inputs
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.ReLU()]
        size = width
    model = nn.Sequential(*layers, nn.Linear(size, 10))
    for module in model.modules():
        if isinstance(module, nn.Linear) and init == "he":
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and init == "zeros":
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def cnn() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 10),
    )
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model


def broken() -> nn.Module:
    raise RuntimeError("needs a GPU that is not there")
"""

Run = Callable[..., typer.testing.Result]


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A factory module in a fresh directory on ``sys.path`` (also the working directory)."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(FACTORIES), encoding="utf-8")
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Run:
    """Invoke ``initlab doctor`` with consoles at a fixed width (wide, so no text wraps)."""
    monkeypatch.setattr(cli, "console", Console(width=240, color_system=None))
    monkeypatch.setattr(cli, "error_console", Console(width=400, stderr=True, color_system=None))
    runner = typer.testing.CliRunner()

    def invoke(*args: str) -> typer.testing.Result:
        return runner.invoke(cli.app, ["doctor", *args])

    return invoke


def test_healthy_model_exits_0(models: Path, run: Run) -> None:
    result = run(f"{MODULE}:mlp", "--input-shape", "64,64", "--kwargs", '{"init": "he"}', "--fix")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "healthy: no problem found" in out
    assert "--fix: nothing to fix." in out  # the empty fix is not applied, nor compared
    assert "before -> after" not in out
    for header in ("layer", "kind", "output std", "x input", "dead", "cosine", "dL/dh std"):
        assert header in out
    assert "gain^2" in out
    assert "input-output Jacobian singular values" in out


def test_zero_init_exits_1_with_the_symmetry_finding(models: Path, run: Run) -> None:
    result = run(f"{MODULE}:mlp", "--input-shape", "64,64", "--kwargs", '{"init": "zeros"}')
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "CRITICAL" in out
    assert "Weights are symmetric" in out
    assert "[symmetric_weights]" in out
    assert "100% zero rows" in out


def test_json_and_html_are_written(models: Path, run: Run) -> None:
    result = run(
        f"{MODULE}:mlp",
        "--input-shape",
        "32,64",
        "--kwargs",
        '{"init": "zeros", "depth": 3}',
        "--json",
        "report.json",
        "--html",
        "report.html",
        "--no-jacobian",
    )
    assert result.exit_code == 1, result.output
    document = json.loads((models / "report.json").read_text(encoding="utf-8"))
    assert document["healthy"] is False
    assert "symmetric_weights" in [f["code"] for f in document["findings"]]
    assert document["jacobian"] is None  # --no-jacobian
    assert "after_fix" not in document
    page = (models / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "Weights are symmetric" in page
    assert "report written to report.json" in result.stdout


def test_fix_shows_before_and_after_and_the_after_report_is_healthier(
    models: Path, run: Run
) -> None:
    result = run(
        f"{MODULE}:mlp", "--input-shape", "64,64", "--fix", "--json", "r.json", "--html", "r.html"
    )
    # The exit code describes the model as built: the fix lives in memory only.
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "before -> after the fix" in out
    assert "before: 2 problems" in out
    assert "after:  healthy: no problem found" in out
    document = json.loads((models / "r.json").read_text(encoding="utf-8"))
    before, after = document, document["after_fix"]
    assert not before["healthy"]
    assert after["healthy"]
    problems = [f for f in before["findings"] if f["severity"] != "info"]
    assert problems
    assert not [f for f in after["findings"] if f["severity"] != "info"]
    first_weight = {row["layer"]: row for row in after["layers"]}["0"]
    assert first_weight["weight_gain_sq"] == pytest.approx(2.0, rel=0.2)  # He after the fix
    page = (models / "r.html").read_text(encoding="utf-8")
    assert "Before and after the fix" in page


def test_fix_on_a_healthy_model_has_nothing_to_do(models: Path, run: Run) -> None:
    result = run(f"{MODULE}:mlp", "--input-shape", "16,64", "--kwargs", '{"init": "he"}', "--fix")
    assert result.exit_code == 0, result.output
    assert "--fix: nothing to fix." in result.stdout


def test_data_digits_on_an_mlp_and_a_cnn(models: Path, run: Run) -> None:
    mlp = run(f"{MODULE}:mlp", "--data", "digits", "--kwargs", '{"init": "he"}')
    assert mlp.exit_code == 0, mlp.output
    cnn = run(f"{MODULE}:cnn", "--data", "digits", "--input-shape", "64,1,8,8")
    assert cnn.exit_code == 0, cnn.output
    assert "Conv2d" in cnn.stdout


def test_data_from_npz_and_npy_files(models: Path, run: Run) -> None:
    rng = np.random.default_rng(0)
    np.savez(models / "batch.npz", y=np.zeros(3), x=rng.standard_normal((40, 64)))
    np.save(models / "batch.npy", rng.standard_normal((40, 8, 8)).astype(np.float32))
    from_npz = run(f"{MODULE}:mlp", "--data", "batch.npz", "--kwargs", '{"init": "he"}')
    assert from_npz.exit_code == 0, from_npz.output
    from_npy = run(
        f"{MODULE}:mlp", "--data", "batch.npy", "--input-shape", "32,64", "--kwargs",
        '{"init": "he"}',
    )  # fmt: skip
    assert from_npy.exit_code == 0, from_npy.output


def test_plan_preset_and_plan_file(models: Path, run: Run) -> None:
    with_preset = run(f"{MODULE}:mlp", "--input-shape", "64,64", "--plan", "kaiming")
    assert with_preset.exit_code == 0, with_preset.output
    preset("kaiming").to_file(models / "plan.yaml")
    with_file = run(f"{MODULE}:mlp", "--input-shape", "64,64", "--plan", "plan.yaml")
    assert with_file.exit_code == 0, with_file.output


def _one_error_line(result: typer.testing.Result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((f"{MODULE}:broken", "--input-shape", "8,64"), "the factory raised RuntimeError"),
        ((f"{MODULE}:nope", "--input-shape", "8,64"), "has no attribute 'nope'"),
        (("not_a_module_here:make", "--input-shape", "8,64"), "cannot import module"),
        ((f"{MODULE}:mlp",), "Give --input-shape"),
        ((f"{MODULE}:mlp", "--input-shape", "8,a"), "--input-shape expects"),
        ((f"{MODULE}:mlp", "--input-shape", "0,64"), "positive sizes"),
        ((f"{MODULE}:mlp", "--data", "missing.npz"), "no such file"),
        ((f"{MODULE}:mlp", "--data", "digits", "--input-shape", "64,3,8,8"), "needs 192"),
        ((f"{MODULE}:mlp", "--data", "digits", "--input-shape", "5000,64"), "1797 examples"),
        ((f"{MODULE}:mlp", "--input-shape", "8,32,2"), "the model failed on a batch"),
        ((f"{MODULE}:mlp", "--input-shape", "8,64", "--plan", "kaimin"), "Did you mean"),
        ((f"{MODULE}:mlp", "--input-shape", "8,64", "--kwargs", "{depth: 2}"), "not JSON"),
    ],
)
def test_bad_inputs_are_one_line_and_exit_2(
    models: Path, run: Run, args: tuple[str, ...], expected: str
) -> None:
    assert expected in _one_error_line(run(*args))


def test_wrong_shape_quotes_the_models_own_error(models: Path, run: Run) -> None:
    line = _one_error_line(run(f"{MODULE}:mlp", "--input-shape", "8,32"))
    assert "shape (8, 32)" in line
    assert "mat1 and mat2 shapes cannot be multiplied" in line


def test_digits_are_standardized_as_the_training_data_set_is() -> None:
    pytest.importorskip("sklearn")
    from initlab.doctor.inputs import digits_batch
    from initlab.train.datasets import load_digits

    every = digits_batch((1797, 64)).double()
    assert float(every.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(every.std(unbiased=False)) == pytest.approx(1.0, abs=1e-6)
    # load_digits fits the same two numbers on its train split (70% of the images): a blank
    # pixel lands at -mean/std in both, up to that split's sampling error (well under 2%).
    train = load_digits().train.x
    assert float(every.min()) == pytest.approx(float(train.min()), rel=0.02)
    assert float(every.max()) == pytest.approx(float(train.max()), rel=0.02)
