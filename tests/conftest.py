"""Shared test configuration: a derandomized hypothesis profile so CI runs are reproducible.

Tests run in parallel workers (``pytest -n 2``) on a 2-core machine: one torch thread per
worker avoids oversubscribing the cores (two threads per worker made small ops ~40x slower).
"""

from __future__ import annotations

import os

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
