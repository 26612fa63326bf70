"""Every terminal table keeps its names and numbers whole at 80 columns, and in a log.

Rich fits a table that is too wide by cutting cells with an ellipsis (``orthogon…``) or by
wrapping them letter by letter; either loses the name a user reads the table for. Each view is
rendered at 80 columns into a string: every scheme, layer and parameter name must appear whole
on one line, no line may be wider than 80 columns, and no cell may end in an ellipsis. Columns
left out to fit are named in the caption.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import torch
from rich.console import Console, RenderableType
from torch import nn

import initlab
from initlab.cli import application as cli
from initlab.plan.presets import as_plan
from initlab.report.doctor import (
    LAYER_COLUMNS,
    before_after_table,
    findings_panel,
    layer_cells,
    layers_table,
)
from initlab.report.experiments import demo_table, summary_table
from initlab.report.lsuv import fitted_table, skipped_table
from initlab.report.plan import assignments_view, rules_view
from initlab.report.schemes import catalogue_table, describe, propagation_table
from initlab.report.tables import Column, FittedTable
from initlab.schemes import scheme_aliases, scheme_names
from initlab.showcase import SHOWCASE_SCHEMES

WIDTH = 80
ELLIPSIS = "…"


def render(renderable: RenderableType, width: int = WIDTH) -> str:
    """``renderable`` as a terminal ``width`` columns wide shows it (no colour)."""
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def assert_whole(text: str, names: list[str], width: int = WIDTH) -> None:
    """Every name appears whole on one line; nothing wider than ``width``; no ellipsis."""
    assert ELLIPSIS not in text
    widest = max(len(line.rstrip()) for line in text.splitlines())
    assert widest <= width, f"a line is {widest} columns wide"
    lines = text.splitlines()
    cut = [name for name in names if not any(name in line for line in lines)]
    assert not cut, f"names not shown whole at {width} columns: {cut}\n{text}"


def _parameter_tokens() -> list[str]:
    from initlab.report.schemes import _defaults

    return [token for name in scheme_names() for token in _defaults(name).split(", ")]


# Schemes ----------------------------------------------------------------------------------


def test_the_catalogue_keeps_scheme_and_parameter_names_whole_at_80_columns() -> None:
    text = render(catalogue_table())
    assert_whole(text, [*scheme_names(), *(token.rstrip(",") for token in _parameter_tokens())])
    assert "left out to fit 80 columns: aliases" in " ".join(text.split())


def test_the_catalogue_shows_every_column_when_there_is_room() -> None:
    text = render(catalogue_table(), width=240)
    aliases = [alias for name in scheme_names() for alias in scheme_aliases(name)]
    assert_whole(text, [*scheme_names(), *aliases], width=240)
    assert "left out" not in text


def test_describe_keeps_its_labels_and_numbers_whole_at_80_columns() -> None:
    text = render(describe("he_normal", {"mode": "fan_out"}, shape=(64, 3, 3, 3)))
    assert_whole(text, ["he_normal(mode='fan_out')", "receptive field", "fan_in", "27", "576"])


def test_the_demos_first_table_keeps_every_scheme_label_whole_at_80_columns() -> None:
    text = render(propagation_table(depth=6, width=16, seed=0))
    assert_whole(text, [*SHOWCASE_SCHEMES, "layer 1", "layer 6"])
    assert "left out to fit 80 columns: layer 2, layer 4" in " ".join(text.split())


# Plans ------------------------------------------------------------------------------------


class Recurrent(nn.Module):
    """Parameters drawn per block (LSTM gates, attention q/k/v) and long qualified names."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 16)
        self.recurrent_encoder = nn.LSTM(16, 16, num_layers=2)
        self.self_attention = nn.MultiheadAttention(16, 2)
        self.classifier_head = nn.Linear(16, 4)


@pytest.mark.parametrize("preset", ["auto", "orthogonal", "xavier", "kaiming"])
def test_the_plan_table_keeps_parameter_and_scheme_names_whole_at_80_columns(
    preset: str,
) -> None:
    model = Recurrent()
    table = as_plan(preset, model).resolve(model)
    text = render(assignments_view(table, title=f"plan {preset!r} on Recurrent"))
    schemes = {
        re.sub(r"\(.*", "", word)
        for row in table
        for word in row.scheme_label.split()
        if word not in ("per", "x")
    }
    per_block = [row.scheme_label for row in table if row.parts]
    assert per_block, "the model should have parameters drawn per block"
    assert_whole(text, [*(row.name for row in table), *sorted(schemes), "i,f,g,o", "q,k,v"])


def test_a_plans_rules_keep_their_scheme_names_whole_at_80_columns() -> None:
    plan = as_plan("kaiming")
    text = render(rules_view(plan))
    assert_whole(text, [item.scheme_label for item in plan.rules])


# The doctor -------------------------------------------------------------------------------


def _deep_mlp() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for index in range(8):
        layers += [nn.Linear(32, 32), nn.Tanh() if index % 2 else nn.ReLU()]
    return nn.Sequential(nn.Flatten(), *layers, nn.Linear(32, 4))


def test_the_doctors_views_keep_layer_names_and_numbers_whole_at_80_columns() -> None:
    model = _deep_mlp()
    batch = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    before = initlab.doctor(model, batch, seed=0)
    assert before.fix.rules, "the default init of a deep MLP should have a fix"
    before.fix.apply(model, seed=0)
    after = initlab.doctor(model, batch, seed=0, activations=before.activations)
    labels = [record.label for record in before.records]
    for view in (layers_table(before), before_after_table(before, after)):
        assert_whole(render(view), labels)
    shown = [name for finding in before.findings for name in (finding.code, *finding.layers[:6])]
    assert_whole(render(findings_panel(before)), shown)  # a finding names its first 6 layers
    table = render(layers_table(before))
    headers = [word for header, _ in LAYER_COLUMNS for word in header.split()]
    assert_whole(table, [*headers, *(cells[2] for cells in layer_cells(before))])


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention_output_projection = nn.Linear(32, 32)
        self.feed_forward_activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.feed_forward_activation(self.attention_output_projection(x))
        return out


class _LongNames(nn.Module):
    """Qualified names as long as a transformer's (57 characters)."""

    def __init__(self) -> None:
        super().__init__()
        self.transformer_encoder_blocks = nn.ModuleList(_Block() for _ in range(2))
        self.classification_head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.transformer_encoder_blocks:
            x = block(x)
        out: torch.Tensor = self.classification_head(x)
        return out


def test_the_doctors_layer_table_keeps_long_qualified_names_whole_at_80_columns() -> None:
    torch.manual_seed(0)
    batch = torch.randn(32, 32, generator=torch.Generator().manual_seed(0))
    report = initlab.doctor(_LongNames(), batch, seed=0, jacobian=False)
    labels = [record.label for record in report.records]
    assert max(map(len, labels)) > 50
    text = render(layers_table(report))
    assert_whole(text, labels)
    assert "left out to fit 80 columns" in " ".join(text.split())


class _Recurrent(nn.Module):
    """A projection with a long name, then a GRU (which LSUV skips, with a reason)."""

    def __init__(self) -> None:
        super().__init__()
        self.projection_into_the_recurrent_encoder = nn.Linear(16, 32)
        self.recurrent_encoder_with_a_long_name = nn.GRU(32, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.projection_into_the_recurrent_encoder(x))
        out: torch.Tensor = self.recurrent_encoder_with_a_long_name(hidden.unsqueeze(1))[0]
        return out


def test_the_lsuv_tables_keep_layer_names_and_reasons_whole_at_80_columns() -> None:
    torch.manual_seed(0)
    batch = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="skipped"):
        log = initlab.lsuv(_Recurrent(), batch, seed=0)
    assert log.rows, "the projection is fitted"
    assert log.skipped, "the GRU is skipped, with a reason"
    fitted = render(fitted_table(log, "LSUV on _Recurrent (tests:model)"))
    assert_whole(fitted, [row.layer for row in log.rows] + ["converged"])
    skipped = render(skipped_table(log))
    assert_whole(skipped, [skip.layer for skip in log.skipped])


# Experiments ------------------------------------------------------------------------------

pandas = pytest.importorskip("pandas")

DEMO_ROWS = [
    ("1 plain MLP", "orthogonal, tanh", True, "", (0.97, 0.96), False),
    ("1 plain MLP", "xavier_normal, relu", False, "xavier_before_relu", (0.96, 0.95), False),
    ("1 plain MLP", "normal:0.01, relu", False, "vanishing_forward,vanishing_gradients",
     (0.1, 0.1), False),
    ("2 with BatchNorm", "torch-default, relu + BN", True, "", (0.95, 0.94), False),
    ("3 regularized", "kaiming, relu + weight decay 5e-4", True, "", (0.97, 0.97), True),
]  # fmt: skip


def _demo_results() -> Any:
    rows = [
        {"trial": 2 * index + seed, "state": "complete", "act": act, "label": label,
         "doctor_healthy": healthy, "doctor_findings": codes,
         "best_val_accuracy": best[seed], "test_accuracy": best[seed] - 0.01,
         "diverged": diverged and seed == 1}
        for index, (act, label, healthy, codes, best, diverged) in enumerate(DEMO_ROWS)
        for seed in (0, 1)
    ]  # fmt: skip
    return pandas.DataFrame(rows)


def test_the_demo_table_keeps_every_init_and_finding_whole_at_80_columns() -> None:
    text = render(demo_table(_demo_results()))
    names = ["orthogonal,", "xavier_normal,", "normal:0.01,", "torch-default,",
             "xavier_before_relu", "vanishing_forward,", "vanishing_gradients",
             "0.965 ± 0.007", "1 plain MLP", "2 with BatchNorm"]  # fmt: skip
    assert_whole(text, names)


def test_the_sweep_summary_has_short_distinct_headers_and_whole_numbers_at_80_columns() -> None:
    from initlab.experiments.results import summary

    table = _demo_results().assign(seed=lambda frame: frame["trial"] % 2)
    text = render(summary_table(summary(table), "study classic-inits"))
    header = next(line for line in text.splitlines() if "best" in line)
    assert "best_v" not in text
    assert_whole(text, ["label", "best", "val acc", "test acc", "healthy", "init", "seeds",
                        "0.965 ± 0.007"])  # fmt: skip
    assert header.count("best") == 1


def _many_settings() -> Any:
    """A sweep over seven settings, with a learning rate as a sampler draws it."""
    import itertools

    grid = itertools.product(("kaiming_normal", "xavier_uniform"), (0.012345678901234567, 0.1),
                             ("sgd", "adamw"), ("relu", "tanh"), (2, 8), ("batch", None),
                             (0.0, 0.5))  # fmt: skip
    rows = [
        {"trial": 2 * index + seed, "state": "complete", "init": init, "lr": lr,
         "optimizer": optimizer, "momentum": 0.9, "l1": 0.0, "l2": 0.0, "weight_decay": 0.0,
         "dropout": dropout, "schedule": "constant", "clip": None, "augment": False,
         "depth": depth, "width": 32, "activation": activation, "norm": norm, "seed": seed,
         "doctor_healthy": True, "doctor_findings": "", "best_val_accuracy": 0.9 + 0.01 * seed,
         "test_accuracy": 0.9, "diverged": False}
        for index, (init, lr, optimizer, activation, depth, norm, dropout) in enumerate(grid)
        for seed in (0, 1)
    ]  # fmt: skip
    return pandas.DataFrame(rows)


def test_a_sweep_over_many_settings_stacks_them_at_80_columns() -> None:
    from initlab.experiments.results import summary

    table = summary(_many_settings())
    assert len(table) == 2**7, "every setting varies, norm None vs batch included"
    stacked = render(summary_table(table.head(4), "study wide"))
    settings = ["init kaiming_normal", "lr 0.0123", "optimizer adamw", "activation relu",
                "depth 2", "norm batch", "norm none", "dropout 0"]  # fmt: skip
    assert_whole(stacked, [*settings, "best val acc", "0.905 ± 0.007"])
    assert "0.01234" not in stacked
    wide = render(summary_table(table.head(4), "study wide"), width=160)
    assert_whole(wide, ["kaiming_normal", "0.0123", "optimizer", "activation"], width=160)
    assert "configuration" not in wide


# The table itself and the console ---------------------------------------------------------


def test_a_name_longer_than_the_terminal_folds_onto_the_next_line_in_full() -> None:
    name = "encoder." * 12 + "weight"
    table = FittedTable([Column("parameter"), Column("std", justify="right")], [(name, "0.02")])
    text = render(table, width=60)
    assert ELLIPSIS not in text
    first_cells = [line.split("│")[1].strip() for line in text.splitlines() if line[0] == "│"]
    assert "".join(first_cells) == name
    assert "0.02" in text


def test_columns_are_left_out_highest_priority_first_and_the_caption_says_so() -> None:
    columns = [Column("name"), Column("low", priority=2), Column("high", priority=1)]
    rows = [("a" * 30, "b" * 20, "c" * 20)]
    assert "left out" not in render(FittedTable(columns, rows), width=90)
    text = " ".join(render(FittedTable(columns, rows), width=60).split())
    assert "left out to fit 60 columns: low" in text
    assert "c" * 20 in text
    assert "left out to fit 40 columns: low, high" in " ".join(
        render(FittedTable(columns, rows), width=40).split()
    )


def test_a_row_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        FittedTable([Column("a"), Column("b"), Column("c")], [("x", "y")])


@pytest.mark.parametrize(
    ("columns", "terminal", "expected"),
    [("", False, cli.NOT_A_TERMINAL_WIDTH), ("", True, None), ("100", False, 100),
     ("100", True, 100), ("wide", False, cli.NOT_A_TERMINAL_WIDTH), ("0", True, None)],
)  # fmt: skip
def test_the_console_is_wide_in_a_file_or_pipe_unless_columns_says_otherwise(
    columns: str, terminal: bool, expected: int | None
) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return terminal

    assert cli.output_width(Stream(), {"COLUMNS": columns} if columns else {}) == expected


@pytest.mark.parametrize("flag", [["--width", "80"], ["--width=80"]])
def test_the_width_option_works_anywhere_on_the_line(
    monkeypatch: pytest.MonkeyPatch, flag: list[str]
) -> None:
    from typer.testing import CliRunner

    from initlab.cli import app

    monkeypatch.setattr(cli, "console", Console(width=240, color_system=None))
    for args in ([*flag, "schemes"], ["schemes", *flag]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert max(len(line) for line in result.output.splitlines()) <= 80
        assert_whole(result.output, scheme_names())


@pytest.mark.parametrize("value", ["", "abc", "39", "-5"])
def test_a_bad_width_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from typer.testing import CliRunner

    from initlab.cli import app

    monkeypatch.setattr(cli, "error_console", Console(width=400, stderr=True, color_system=None))
    result = CliRunner().invoke(app, ["schemes", f"--width={value}"])
    assert result.exit_code == cli.EXIT_USAGE
    assert "--width takes the output's width in columns, 40 or more" in result.output


def test_initlab_schemes_in_a_pipe_is_wide_and_cuts_nothing() -> None:
    """The console script's own console, output to a pipe (a log), not a terminal."""
    code = "from initlab.cli import main; main()"
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    result = subprocess.run(
        [sys.executable, "-c", code, "schemes"], capture_output=True, text=True, env=env,
        stdin=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    text = result.stdout
    aliases = [alias for name in scheme_names() for alias in scheme_aliases(name)]
    assert_whole(text, [*scheme_names(), *aliases], width=cli.NOT_A_TERMINAL_WIDTH)
    assert "left out" not in text


def test_the_demos_first_table_in_a_log_has_every_scheme_label_whole() -> None:
    """``make demo > demo.log``: the showcase table, as the demo prints it, into a pipe."""
    code = (
        "from initlab.cli.application import console\n"
        "from initlab.report.schemes import propagation_table\n"
        "console.print(propagation_table(depth=30, width=256, seed=0))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env,
        stdin=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    assert_whole(result.stdout, [*SHOWCASE_SCHEMES, "layer 10", "layer 20"], width=160)
    assert "left out" not in result.stdout
