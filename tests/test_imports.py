"""``import initlab`` stays light: the heavy extras load only inside the features that use them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "scipy",
    "optuna",
    "matplotlib",
    "pandas",
    "sklearn",
    "kornia",
    "sqlalchemy",
    "safetensors",
    "keras",
    "lightning",
    "transformers",
    "tensorboard",
)


def test_import_initlab_loads_no_optional_dependency() -> None:
    code = f"import sys, initlab\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"import initlab loaded: {loaded}"
