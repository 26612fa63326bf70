"""The README runs as written, and shows what a fresh run prints.

Every ```python block is a snippet named by a ``<!-- readme-test: NAME -->`` line and run
unchanged in a fresh interpreter in an empty folder (the way a user pastes it into a file).
Every ```console/```text block is named by a ``<!-- readme-output: NAME -->`` line; its
``$ initlab`` command lines must parse, and its output is produced here from a real run and
compared (``tests/readme_blocks.py`` says how; each block's tolerance is in :data:`OUTPUTS`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.testing
from rich.console import Console

from initlab.cli import application as cli

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode adds no test folder
from readme_blocks import (
    Block,
    check_command_line,
    commands,
    named_blocks,
    output_differences,
    readme_blocks,
    run_initlab,
)

RunScript = Callable[[Path], str]  # the run_script fixture (tests/conftest.py)


@dataclass(frozen=True)
class Output:
    """How a README output block is compared: the relative tolerance on its decimals, and why
    that one."""

    relative: float
    why: str


# Printed with 3 significant digits, a value moves by one unit of its last digit when float
# summation order (thread count, CPU, BLAS) puts it on the other side of a rounding boundary:
# at most 1% of the value (a mantissa of 1.00). With 4 digits, 0.1%.
THREE_DIGITS = 0.01
FOUR_DIGITS = 0.001
TWO_DECIMALS = -0.01  # absolute (see readme_blocks._line_differs): slopes near 0 have no scale
OUTPUTS = {
    "schemes": Output(0.0, "fans and std are closed-form arithmetic on the shape"),
    "errors": Output(0.0, "a message: nothing computed"),
    "plan": Output(0.0, "fans, gains and std are closed-form arithmetic"),
    "doctor": Output(THREE_DIGITS, "float statistics of a seeded model and batch, 3 digits"),
    "lsuv": Output(FOUR_DIGITS, "variances of a seeded fit, 4 digits"),
    "demo-first-table": Output(THREE_DIGITS, "stds after 30 seeded matmuls, 3 digits"),
    "sweep": Output(0.0, "command lines only: each must parse"),
    "parametrize": Output(FOUR_DIGITS, "closed-form std and multipliers, 4 digits"),
    "coord-check": Output(
        TWO_DECIMALS,
        "least-squares slopes of a seeded 3-step run, 2 decimals: float summation order moves "
        "a slope by far less than 0.005, so at most one unit of its last digit",
    ),
    "transfer": Output(
        0.0,
        "command line only: it must parse (110 runs; the table below it "
        "is from `runs/transfer/best_lr.md`)",
    ),
}
SNIPPETS = sorted(named_blocks("test", "python"))
COMMAND_OUTPUTS = sorted(
    name
    for name, block in named_blocks("output").items()
    if any(command.expected for command in commands(block))
)


def test_every_python_block_is_a_named_snippet() -> None:
    python = [block for block in readme_blocks() if block.language == "python"]
    unmarked = [block.line for block in python if block.kind != "test"]
    assert not unmarked, f"README python blocks without <!-- readme-test: NAME --> at {unmarked}"
    names = [block.name for block in python]
    assert len(set(names)) == len(names), f"snippet names repeat: {names}"
    assert {"quickstart", "plan", "doctor-api", "lsuv", "train", "hf"} <= set(names)


def test_every_console_block_is_compared_with_a_stated_tolerance() -> None:
    shown = [block for block in readme_blocks() if block.language in ("console", "text")]
    unmarked = [block.line for block in shown if block.kind != "output"]
    assert not unmarked, f"README output blocks without <!-- readme-output: NAME --> at {unmarked}"
    names = [block.name for block in shown]
    assert len(set(names)) == len(names), f"output block names repeat: {names}"
    assert set(names) == set(OUTPUTS), "each output block needs its tolerance in OUTPUTS"
    without_commands = {name for name in names if not commands(named_blocks("output")[name])}
    assert without_commands <= {*SNIPPETS, "demo-first-table"}, "whose output is it?"


@pytest.mark.parametrize("name", sorted(named_blocks("output")))
def test_console_command_lines_parse(name: str) -> None:
    """Every ``$ initlab`` line, with or without output shown, is a valid command line."""
    for command in commands(named_blocks("output")[name]):
        assert command.argv[0] == "initlab", command.line
        check_command_line(command.argv)


def test_the_search_space_block_is_a_valid_space(tmp_path: Path) -> None:
    from initlab.experiments.space import SearchSpace

    (block,) = [b for b in readme_blocks() if b.language == "yaml"]
    assert block.text.startswith("# space.yaml")
    space = tmp_path / "space.yaml"
    space.write_text(block.text + "\n", encoding="utf-8")
    SearchSpace.from_file(space)


@pytest.mark.slow
@pytest.mark.parametrize("name", SNIPPETS)
def test_readme_snippet_runs(name: str, tmp_path: Path, run_script: RunScript) -> None:
    script = tmp_path / f"readme_snippet_{name}.py"  # not keras.py: it would shadow keras
    script.write_text(named_blocks("test")[name].text + "\n", encoding="utf-8")
    stdout = run_script(script)
    shown = named_blocks("output").get(name)
    if shown is not None and not commands(shown):  # a block of the same name shows its stdout
        _assert_shown(shown, stdout)


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMAND_OUTPUTS)
def test_console_output_is_a_fresh_run(name: str, tmp_path: Path) -> None:
    """Each command with output shown runs by the ``initlab`` console script in an empty
    folder, its output going to a pipe, as ``initlab ... > log`` would."""
    for command in commands(named_blocks("output")[name]):
        if command.expected:
            actual = run_initlab(command.argv, tmp_path)
            differences = output_differences(command.expected, actual, OUTPUTS[name].relative)
            assert not differences, f"README block {name!r}, $ {command.line}\n{differences}"


class _StoppedAfterTheFirstTableError(Exception):
    """Stands in for the minute of training ``initlab demo`` does after its first table."""


def test_demo_first_table_is_what_make_demo_prints_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make demo > demo.log`` runs ``initlab demo`` into a file (160 columns); the command
    prints this table before it trains, so the training is cut off here."""
    from initlab.experiments import demo

    def stop(*args: object, **kwargs: object) -> None:
        raise _StoppedAfterTheFirstTableError

    monkeypatch.setattr(demo, "run_demo", stop)
    monkeypatch.setattr(cli, "console", Console(width=cli.output_width(None, {})))
    result = typer.testing.CliRunner().invoke(cli.app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == cli.EXIT_INTERNAL_ERROR, result.output
    assert "_StoppedAfterTheFirstTableError" in result.stderr
    _assert_shown(named_blocks("output")["demo-first-table"], result.stdout)


def _assert_shown(block: Block, actual: str) -> None:
    expected = [*block.text.splitlines(), "..."]  # more output may follow the block
    if block.name in SNIPPETS:
        expected = expected[:-1]  # a snippet's block is all it prints
    differences = output_differences(expected, actual, OUTPUTS[block.name].relative)
    assert not differences, f"README block {block.name!r} (line {block.line})\n{differences}"


@pytest.mark.parametrize(
    ("expected", "actual", "relative", "same"),
    [
        (["std 1.00"], "std 1.005", 0.01, True),  # within the last digit's noise
        (["std 1.00"], "std 1.02", 0.01, False),
        (["std 0.1"], "std 0.1", 0.0, True),
        (["8 parameters"], "9 parameters", 0.5, False),  # counts are exact, whatever the tolerance
        (["final var 1"], "final var 0.9999", FOUR_DIGITS, True),  # "1" is 4 digits rounded
        (["│ a │  1.5 │"], "│ a │ 1.55 │", 0.05, True),  # a longer number widens its column
        (["┏━━━┓"], "┏━━━━━┓", 0.0, True),
        (["he_normal(mode='fan_out')"], "he_normal(mode='fan_in')", 0.0, False),
        (["x", "...", "z"], "x\ny\nz", 0.0, True),
        (["x", "...", "z"], "x\nz\ny", 0.0, False),  # without a final ..., the end is the end
        (["x", "..."], "x\ny", 0.0, True),
        (["y"], "x\ny", 0.0, False),  # without a leading ..., the start is the start
    ],
)
def test_output_comparison(expected: list[str], actual: str, relative: float, same: bool) -> None:
    assert (output_differences(expected, actual, relative) == "") is same
