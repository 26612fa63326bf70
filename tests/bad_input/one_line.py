"""What every CLI bad-input case asserts: one ``error:`` line, its exit code, no traceback."""

from __future__ import annotations

import pytest
import typer.testing
from rich.console import Console

from initlab.cli import application as cli


def narrow_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Narrow consoles (a long message must still come out as one line) and no debug mode."""
    monkeypatch.delenv("INITLAB_DEBUG", raising=False)
    monkeypatch.setattr(cli, "console", Console(width=80, color_system=None))
    monkeypatch.setattr(cli, "error_console", Console(width=60, stderr=True, color_system=None))


def invoke(*args: str) -> typer.testing.Result:
    """``initlab ARGS...`` in this process."""
    return typer.testing.CliRunner().invoke(cli.app, list(args))


def assert_one_line(result: typer.testing.Result, code: int, says: tuple[str, ...]) -> str:
    """The run exited with ``code`` and printed one ``error:`` line holding every ``says``."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for words in says:
        assert words in lines[0], lines[0]
    return lines[0]
