"""The shape of the code a reader relies on: functions short enough to hold, layers kept."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "initlab"
# A function's code, docstring left out, fits on one screen: the "~50 lines".
LONGEST_FUNCTION = 50


def _code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = function.body
    first = body[0]
    has_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    if has_docstring and len(body) > 1:
        first = body[1]
    end = function.end_lineno or function.lineno
    return end - first.lineno + 1


def _long_functions() -> list[str]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = _code_lines(node)
                if lines > LONGEST_FUNCTION:
                    where = path.relative_to(SOURCE.parent)
                    found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_a_screen() -> None:
    assert _long_functions() == []


def test_the_import_contract_holds() -> None:
    """The layers of the design and no import circles, as `make lint` checks them."""
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if linter is None:
        pytest.fail("lint-imports is missing: install the dev extra (make test does).")
    root = SOURCE.parents[1]
    result = subprocess.run(
        [linter, "--no-logo", "--no-cache"], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
