"""What people look at: Rich tables for the terminal, PNG plots and self-contained HTML.

The doctor's report is written by :func:`save_doctor_report` (``.json``, ``.html`` or a figure by
the suffix); :mod:`initlab.report.tensorboard` logs it to TensorBoard. Names load on first use,
so the torch-free views (the scheme catalogue) stay torch-free.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from initlab.report.doctor_files import save_doctor_report

__all__ = ["save_doctor_report"]


def __getattr__(name: str) -> Any:
    """Load ``save_doctor_report`` (and torch with it) on first use (PEP 562)."""
    if name == "save_doctor_report":
        return importlib.import_module("initlab.report.doctor_files").save_doctor_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
