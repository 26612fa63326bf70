"""Every script in examples/ runs as a user would run it, and prints what it promises."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

RunScript = Callable[[Path], str]  # the run_script fixture (tests/conftest.py)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, folder: Path, run_script: RunScript) -> str:
    """Copy the example into ``folder`` (as a user copies it) and run it there."""
    return run_script(Path(shutil.copy(EXAMPLES / name, folder)))


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == [
        "plan_and_doctor.py",
        "train_digits.py",
    ]


@pytest.mark.slow
def test_plan_and_doctor_example_fixes_the_model(tmp_path: Path, run_script: RunScript) -> None:
    out = run_example("plan_and_doctor.py", tmp_path, run_script)
    assert "vanish" in out
    assert "after the fix: healthy" in out
    assert (tmp_path / "doctor.html").stat().st_size > 10_000


@pytest.mark.slow
def test_train_digits_example_learns(tmp_path: Path, run_script: RunScript) -> None:
    out = run_example("train_digits.py", tmp_path, run_script)
    accuracy = float(out.split("val accuracy ")[1].split()[0])
    assert out.startswith("completed")
    assert accuracy > 0.9  # chance is 0.1; this MLP reaches ~0.98 on digits in 10 epochs
