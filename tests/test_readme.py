"""The README's runnable snippets run as written.

A ```python block right after a ``<!-- readme-test: NAME -->`` line is executed, unchanged, in a
fresh interpreter in an empty folder (the way a user pastes it into a file).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

RunScript = Callable[[Path], str]  # the run_script fixture (tests/conftest.py)

README = Path(__file__).resolve().parents[1] / "README.md"
_SNIPPET = re.compile(r"<!-- readme-test: ([\w-]+) -->\n```python\n(.*?)\n```", re.DOTALL)


def readme_snippets() -> dict[str, str]:
    return dict(_SNIPPET.findall(README.read_text(encoding="utf-8")))


def test_readme_has_the_promised_snippets() -> None:
    assert {"lsuv", "train", "keras", "tensorboard", "lightning", "hf"} <= set(readme_snippets())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(readme_snippets()))
def test_readme_snippet_runs(name: str, tmp_path: Path, run_script: RunScript) -> None:
    script = tmp_path / f"readme_snippet_{name}.py"  # not keras.py: it would shadow keras
    script.write_text(readme_snippets()[name] + "\n", encoding="utf-8")
    run_script(script)
