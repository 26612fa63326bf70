"""The ``initlab`` command line: one module per command family, all on one Typer app.

``initlab schemes``, ``plan``, ``doctor``, ``lsuv``, ``sweep``, ``report``, ``demo``,
``demo transfer``, ``coord-check``.
"""

from __future__ import annotations

from initlab.cli import doctor, experiments, lsuv, plan, schemes, width
from initlab.cli.application import app

__all__ = ["app", "main"]

_COMMANDS = (
    doctor,
    experiments,
    lsuv,
    plan,
    schemes,
)  # imported for their registrations (application.command: metavars, an example)


width.register(app, demo=experiments.demo)


def main() -> None:
    """Entry point of the ``initlab`` console script."""
    app()
