"""Shared test configuration: a derandomized hypothesis profile so CI runs are reproducible.

Tests run in parallel workers (``pytest -n 2``) on a 2-core machine: one torch thread per
worker avoids oversubscribing the cores (two threads per worker made small ops ~40x slower).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=50,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


RunScript = Callable[[Path], str]


@pytest.fixture
def run_script() -> RunScript:
    """Run a Python file as a user would (fresh interpreter, its folder as the working
    directory, one torch thread, Keras on its torch backend); return its stdout."""

    def run(script: Path) -> str:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "KERAS_BACKEND": "torch"}
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=script.parent,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert done.returncode == 0, f"{script.name} failed:\n{done.stderr}"
        return done.stdout

    return run
