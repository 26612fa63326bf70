"""``initlab --help`` and every command's: what each option takes, an example, ``--quiet``.

Typer labels every value with its Python type (``<str>``, ``<int>``, ``<bool>`` even for a
flag); the help instead names what to give (``SHAPE``, ``FILE``, ``PRESET|FILE``), shows nothing
for a flag, and ends with one example command line, which must parse.
"""

from __future__ import annotations

import io
import re
import shlex
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
import typer.testing
from rich.console import Console
from typer.core import TyperOption

from initlab import progress
from initlab.cli import application as cli

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode adds no test folder
from readme_blocks import check_command_line

GROUP = typer.main.get_command(cli.app)
COMMANDS = sorted(GROUP.commands)
TYPE_LABEL = re.compile(r"<[a-z_]+(\[[a-z_]+\])?>")  # <str>, <bool>, <path>, <list[str]>


def help_text(*command: str) -> str:
    result = typer.testing.CliRunner().invoke(cli.app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_commands_are_all_here() -> None:
    assert {"schemes", "plan", "doctor", "lsuv", "demo", "sweep", "report"} <= set(COMMANDS)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_no_type_labels(command: str) -> None:
    text = help_text(*[command] if command else [])
    assert not TYPE_LABEL.search(text), TYPE_LABEL.search(text)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_names_its_value_and_a_flag_none(command: str) -> None:
    click_command = GROUP.commands[command]
    context = click_command.make_context(command, ["--help"], resilient_parsing=True)
    for param in click_command.get_params(context):
        if isinstance(param, TyperOption) and param.is_flag:
            assert param.metavar == "", param.opts
        else:
            assert param.metavar, f"{command} {param.opts or param.name}: no metavar"
            assert param.metavar == param.metavar.strip(), param.metavar


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_ends_with_an_example_that_parses(command: str) -> None:
    assert f"Example: initlab {command}" in help_text(command)
    epilog = GROUP.commands[command].epilog
    example = epilog.split("\n\n")[0].removeprefix("Example: ")
    words = shlex.split(example)
    check_command_line(words[: words.index(">")] if ">" in words else words)


def test_top_level_help_names_the_options_every_command_takes() -> None:
    text = " ".join(help_text().split())
    for option in ("--width N", "--quiet", "--debug", "Example: initlab schemes"):
        assert option in text


PROBE = """
from torch import nn

from initlab import progress

DRAWN = []


def make():
    with progress.steps("probe", total=1) as bar:  # the default: a bar on a terminal
        DRAWN.append(type(bar) is not progress.Steps)  # Steps: the no-op, nothing drawn
    return nn.Linear(2, 2)
"""


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """A factory module recording whether a bar would be drawn, on a terminal-like console."""
    (tmp_path / "quiet_probe.py").write_text(textwrap.dedent(PROBE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "quiet_probe", raising=False)
    monkeypatch.setattr(cli, "console", Console(width=160, color_system=None))
    progress.set_console(Console(file=io.StringIO(), force_terminal=True))
    import quiet_probe

    yield quiet_probe.DRAWN
    progress.set_console(None)


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_turns_the_bars_off_for_the_command_only(probe: list[bool], where: str) -> None:
    runner = typer.testing.CliRunner()
    args = ["plan", "quiet_probe:make"]
    loud = runner.invoke(cli.app, args)
    quiet = runner.invoke(cli.app, ["--quiet", *args] if where == "before" else [*args, "--quiet"])
    again = runner.invoke(cli.app, args)  # the default is back after a quiet command
    assert [loud.exit_code, quiet.exit_code, again.exit_code] == [0, 0, 0], quiet.output
    assert probe == [True, False, True]
