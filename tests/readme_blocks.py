"""The README's code blocks, read the way ``tests/test_readme.py`` checks them.

A fenced block may follow a marker line that names it:

- ``<!-- readme-test: NAME -->`` before a ```python block: a snippet, run unchanged in a fresh
  interpreter in an empty folder;
- ``<!-- readme-output: NAME -->`` before a ```console or ```text block: output a test
  produces from a real run and compares. In a console block, ``$ initlab ...`` lines are
  commands (a trailing ``\\`` continues one, ``#`` starts a comment) and the lines after one, up
  to the next ``$``, are its output; a block without ``$`` lines is the stdout of the snippet
  of the same NAME, or of the run its test names. A line ``...`` stands for lines left out.

Compared line by line, blank lines aside, after collapsing runs of spaces and of table rules (a
number one digit longer widens its column): words exactly, integers exactly, decimals within
the relative tolerance the test states for the block.

``python tests/readme_blocks.py`` prints each console command's fresh output, to paste when
an intended change of the output makes a README block stale; ``--demo`` runs ``initlab demo``
(about a minute) and checks the README's table of its results, which no test reruns.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import typer.main

from initlab.cli import application as cli

README = Path(__file__).resolve().parents[1] / "README.md"
ELIDED = "..."

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"<!-- readme-(test|output): ([\w.-]+) -->")
_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)")
_SPACES = re.compile(r"\s+")
_RULES = re.compile(r"([━─═])\1+")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, text, the README line of its opening fence, and the
    marker before it (``kind`` "test" or "output", ``name``; both empty when unmarked)."""

    language: str
    text: str
    line: int
    kind: str
    name: str


@dataclass(frozen=True)
class Command:
    """A ``$ initlab ...`` line of a console block and the output shown after it."""

    line: str
    argv: tuple[str, ...]
    expected: tuple[str, ...]


def readme_blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README, in order."""
    text = README.read_text(encoding="utf-8") if text is None else text
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.fullmatch(before.strip())
        kind, name = marker.groups() if marker else ("", "")
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(match.group(1), match.group(2).rstrip("\n"), line, kind, name))
    return found


def named_blocks(kind: str, language: str | None = None) -> dict[str, Block]:
    """The blocks with a ``readme-KIND: NAME`` marker, by name."""
    return {
        block.name: block
        for block in readme_blocks()
        if block.kind == kind and (language is None or block.language == language)
    }


def commands(block: Block) -> list[Command]:
    """The ``$`` commands of a console block with the output lines shown after each."""
    found: list[Command] = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        if not lines[index].startswith("$ "):
            index += 1
            continue
        typed = lines[index][2:]
        while typed.endswith("\\") and index + 1 < len(lines):
            index += 1
            typed = typed[:-1].rstrip() + " " + lines[index].strip()
        index += 1
        start = index
        while index < len(lines) and not lines[index].startswith("$ "):
            index += 1
        argv = tuple(shlex.split(typed, comments=True))
        found.append(Command(typed, argv, tuple(lines[start:index])))
    return found


def check_command_line(argv: Sequence[str]) -> None:
    """Parse ``initlab ARGS...`` as the CLI would, without running it.

    Raises:
        typer's UsageError: an unknown command or option, a missing argument, a bad value.
        initlab.errors.ConfigError: a bad ``--width``.
    """
    args = list(argv[1:] if argv and argv[0] == "initlab" else argv)
    for flag in (cli.DEBUG_FLAG, cli.QUIET_FLAG):
        cli._take_flag(args, flag)
    cli._take_width_option(args)
    group = typer.main.get_command(cli.app)
    context = group.context_class(group, info_name="initlab")
    name, command, rest = group.resolve_command(context, args)  # the group has no options
    assert command is not None, f"no command {name!r}"
    command.make_context(name, rest, parent=context).close()


def run_initlab(argv: Sequence[str], folder: Path) -> str:
    """``initlab ARGS...`` run by its console script in ``folder``, as from a shell whose
    output goes to a file or a pipe (no COLUMNS): stdout and stderr together."""
    script = Path(sys.executable).with_name("initlab")
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("COLUMNS", "LINES", cli.DEBUG_VARIABLE)
    }
    environment["OMP_NUM_THREADS"] = "1"  # a shared CI machine; tolerances cover thread counts
    done = subprocess.run(
        [str(script), *argv[1:]],
        cwd=folder,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=600,
    )
    return done.stdout


def _normalized(line: str) -> str:
    return _RULES.sub(r"\1", _SPACES.sub(" ", line.strip()))


def _line_differs(expected: str, actual: str, relative: float) -> bool:
    """Whether two lines differ beyond ``relative`` on their decimals (words and integers
    exactly). A negative ``relative`` is an absolute tolerance instead: ``-0.01`` allows one
    unit of a value printed with two decimals (a slope near 0, where a relative bound is 0)."""
    want = _NUMBER.split(_normalized(expected))
    got = _NUMBER.split(_normalized(actual))
    if len(want) != len(got):
        return True
    for index, (a, b) in enumerate(zip(want, got, strict=True)):
        if a == b:
            continue
        words = index % 2 == 0  # split() alternates: words, number, words, ...
        integers = not any(c in a + b for c in ".e")  # a count, an index, a size: exact
        if words or integers:
            return True
        limit = -relative if relative < 0 else relative * max(abs(float(a)), abs(float(b)))
        if abs(float(a) - float(b)) > limit + 1e-12:  # + rounding of the printed decimals
            return True
    return False


def _find(segment: Sequence[str], actual: Sequence[str], start: int, relative: float) -> int:
    """Where ``segment`` runs in ``actual`` from ``start`` on, or -1."""
    for at in range(start, len(actual) - len(segment) + 1):
        if not any(
            _line_differs(want, actual[at + offset], relative)
            for offset, want in enumerate(segment)
        ):
            return at
    return -1


def _first_difference(
    segment: Sequence[str], actual: Sequence[str], starts: range, relative: float
) -> str:
    """The README line that differs from the fresh output, where (of ``starts``) they agree
    longest."""

    def agreeing(at: int) -> int:
        count = 0
        while (
            count < len(segment)
            and at + count < len(actual)
            and not _line_differs(segment[count], actual[at + count], relative)
        ):
            count += 1
        return count

    at = max(starts, key=agreeing)
    offset = agreeing(at)
    fresh = actual[at + offset] if at + offset < len(actual) else "(the output ends)"
    return (
        f"README:      {segment[offset]}\nfresh run:   {fresh}\n--- fresh output:\n"
        + "\n".join(actual)
    )


def output_differences(expected: Sequence[str], actual: str, relative: float) -> str:
    """Why ``actual`` is not the README's ``expected`` lines ("" when it is).

    ``...`` lines split ``expected`` into segments found in ``actual`` in order; without one at
    its start (end), the first (last) segment must be the start (end) of ``actual``.
    """
    lines = [line for line in actual.splitlines() if line.strip()]
    wanted = [line for line in expected if line.strip()]
    segments: list[list[str]] = [[]]
    for line in wanted:
        if line.strip() == ELIDED:
            segments.append([])
        else:
            segments[-1].append(line)
    position = 0
    for index, segment in enumerate(segments):
        if not segment:
            continue
        at = _find(segment, lines, position, relative)
        anchored_start = index == 0
        anchored_end = index == len(segments) - 1
        if at < 0 or (anchored_start and at != 0):
            starts = range(1) if anchored_start else range(position, max(position + 1, len(lines)))
            return _first_difference(segment, lines, starts, relative)
        position = at + len(segment)
        if anchored_end and position != len(lines):
            return f"the output goes on after:\n{segment[-1]}\n--- actual:\n{actual}"
    return ""


def _table_rows(lines: Sequence[str], border: str) -> dict[tuple[str, str], list[str]]:
    """The demo table's rows by (act, configuration): a README markdown table (``|``) or the
    log's Rich table (``│``)."""
    rows = {}
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip(border).split(border)]
        if len(cells) == 6 and cells[0][:1] in "123":
            rows[cells[0], cells[1]] = cells
    return rows


def _rounded_apart(readme: str, log: str) -> bool:
    """Whether a README cell (``0.123 ± 0.032``) and the log's (``0.12 ± 0.03``) differ by more
    than their rounding: half a unit of the last digit of each."""
    if "±" not in readme + log:
        return readme != log
    for shown, printed in zip(readme.split("±"), log.split("±"), strict=True):
        half_units = sum(
            10.0 ** -len(text.strip().partition(".")[2]) / 2 for text in (shown, printed)
        )
        if abs(float(shown) - float(printed)) > half_units + 1e-12:
            return True
    return False


def check_demo_table() -> int:
    """Run ``initlab demo`` (about a minute) and compare its last table with the README's."""
    with tempfile.TemporaryDirectory() as folder:
        log = run_initlab(["initlab", "demo", "--out", str(Path(folder) / "demo")], Path(folder))
    fresh = _table_rows(log.splitlines(), "│")
    shown = _table_rows(README.read_text(encoding="utf-8").splitlines(), "|")
    differing = [
        f"README {shown[key]}\nfresh  {fresh.get(key)}"
        for key in shown
        if key not in fresh
        or any(_rounded_apart(a, b) for a, b in zip(shown[key][2:], fresh[key][2:], strict=True))
    ]
    print("\n".join(differing) or f"the README's {len(shown)} demo rows match a fresh run")
    return 1 if differing or len(shown) != len(fresh) else 0


def main() -> int:
    """Print every README console command's output from a fresh run; with ``--demo``, check
    the README's ``make demo`` table against a fresh run instead."""
    if "--demo" in sys.argv[1:]:
        return check_demo_table()
    for name, block in named_blocks("output").items():
        for command in commands(block):
            if command.expected and command.argv[0] == "initlab":
                with tempfile.TemporaryDirectory() as folder:
                    print(f"=== {name}: $ {command.line}")
                    print(run_initlab(command.argv, Path(folder)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
