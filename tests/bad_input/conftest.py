"""Puts this directory on ``sys.path`` so the suites share ``one_line`` (pytest runs with
``--import-mode=importlib``, which adds no test directory itself)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
