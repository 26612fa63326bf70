"""The ``initlab`` command line: one module per command family, all on one Typer app.

``initlab schemes``, ``plan``, ``doctor``, ``lsuv``, ``sweep``, ``report``, ``demo``.
"""

from __future__ import annotations

from initlab.cli import doctor, experiments, lsuv, plan, schemes
from initlab.cli.application import app

__all__ = ["app", "main"]

_COMMANDS = (
    doctor,
    experiments,
    lsuv,
    plan,
    schemes,
)  # imported for their @app.command registrations


def main() -> None:
    """Entry point of the ``initlab`` console script."""
    app()
