"""Every result object a user gets back prints as a readable summary, never a dataclass repr:
``print(table)`` of a plan table, ``print(log)`` of LSUV, a study's tables, and the same text
when a Rich console prints them."""

from __future__ import annotations

import io
import re

import pytest
import torch
from rich.console import Console
from torch import nn

import initlab
from initlab.plan.presets import as_plan

# A dataclass's repr starts with its class name and an opening parenthesis.
DATACLASS_REPR = re.compile(r"\b(Assignments?|ParameterSite|LsuvLog|LsuvRow|Skipped\w*)\(")


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.LayerNorm(8), nn.Linear(8, 2))
    model.register_parameter("temperature", nn.Parameter(torch.tensor(1.0)))
    return model


def _rich(value: object) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(value)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def test_a_plan_table_prints_one_line_per_parameter_and_the_count() -> None:
    model = _model()
    table = as_plan("auto", model).resolve(model)
    text = str(table)
    assert not DATACLASS_REPR.search(text)
    lines = text.splitlines()
    assert lines[0].split() == ["parameter", "shape", "role", "scheme", "std", "source"]
    assert f"{len(table)} parameters: 6 drawn, 1 kept; dry run" in lines
    for row in table:
        assert any(line.startswith(row.name + " ") for line in lines), row.name
    assert re.search(r"^temperature\s+scalar\s", text, re.MULTILINE)
    assert _rich(table).split() == text.split()


def test_an_applied_plan_table_says_with_which_seed() -> None:
    model = _model()
    table = as_plan("auto", model).apply(model, seed=3)
    assert "7 parameters: 6 drawn, 1 kept; applied with seed 3" in str(table).splitlines()


def test_an_lsuv_log_prints_its_layers_and_cost() -> None:
    log = initlab.lsuv(_model(), torch.randn(64, 4, generator=torch.Generator().manual_seed(0)),
                       seed=0)  # fmt: skip
    text = str(log)
    assert not DATACLASS_REPR.search(text)
    assert text.splitlines()[0].startswith("LSUV: target variance 1 ± 0.1")
    assert all(row.layer in text for row in log.rows)
    assert text.splitlines()[-1].startswith("cost: ")
    assert _rich(log).split() == text.split()


def test_a_studys_tables_print_as_tables() -> None:
    pandas = pytest.importorskip("pandas")
    from initlab.experiments.results import summary

    rows = [
        {"trial": 2 * index + seed, "state": "complete", "init": init, "lr": 0.012345678901234567,
         "optimizer": "sgd", "momentum": 0.9, "l1": 0.0, "l2": 0.0, "weight_decay": 0.0,
         "dropout": 0.0, "schedule": "constant", "clip": None, "augment": False, "depth": 4,
         "width": 32, "activation": "relu", "norm": None, "seed": seed, "doctor_healthy": True,
         "best_val_accuracy": 0.9, "test_accuracy": 0.9, "diverged": False}
        for index, init in enumerate(("kaiming", "xavier"))
        for seed in (0, 1)
    ]  # fmt: skip
    table = pandas.DataFrame(rows)
    for result in (table, summary(table)):
        text = str(result)
        assert "object at 0x" not in text
        assert "kaiming" in text
        assert "xavier" in text


def test_a_doctor_report_and_a_history_print_their_summaries_on_a_rich_console() -> None:
    from initlab.train import TrainConfig, fit, from_arrays

    model = _model()
    batch = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    report = initlab.doctor(model, batch)
    assert _rich(report).split() == str(report).split()
    assert not DATACLASS_REPR.search(_rich(report))
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 4, generator=generator), torch.randint(0, 2, (60,), generator=generator)
    data = from_arrays(x, y)
    history = fit(model, data, TrainConfig(epochs=1, batch_size=16), progress=False)
    assert _rich(history).split() == str(history).split()
    assert not DATACLASS_REPR.search(_rich(history))
