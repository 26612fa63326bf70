"""``print(result)`` of the demo: the trials by state and the best configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

from initlab.experiments.demo import DemoResult

pandas = pytest.importorskip("pandas")


def test_a_demo_result_prints_its_trials_and_best_configurations() -> None:
    rows = [
        ("complete", "kaiming, relu", 0, 0.95, False, True),
        ("complete", "kaiming, relu", 1, 0.97, False, True),
        ("complete", "zeros, relu", 0, 0.10, False, False),
        ("failed", "zeros, relu", 1, None, None, None),
    ]
    table = pandas.DataFrame(
        rows,
        columns=["state", "label", "seed", "best_val_accuracy", "diverged", "doctor_healthy"],
    )
    table["test_accuracy"] = table["best_val_accuracy"]
    result = DemoResult(table=table, curves=None, study=None, folder=Path("runs/demo"))
    lines = str(result).splitlines()
    assert lines[0] == f"initlab demo in {Path('runs/demo')}: 4 trials (3 complete, 1 failed)"
    assert lines[1] == "best configurations (mean best val accuracy over seeds):"
    assert lines[2] == "  kaiming, relu: 0.96 (std 0.014, 2 seeds)"
    assert lines[3] == "  zeros, relu: 0.1 (1 seed)"
