"""Puts this directory on ``sys.path``: the tests and ``tried_on.py`` import the registry
(``architectures``) and the checks (``checks``) by name, and pytest runs with
``--import-mode=importlib``, which adds no test directory itself."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
