"""Width and depth parametrizations (SP, muP, spectral, depth-muP) as plain data.

:func:`parametrize` reads an unmodified model (and a smaller base instance of it) and returns a
:class:`Parametrization`: an init :class:`~initlab.Plan`, per-parameter learning-rate and
weight-decay multipliers (``param_groups`` for any torch optimizer) and notes on the forward
changes it needs but does not make.
"""

from __future__ import annotations

from initlab.parametrize.parametrization import ParameterRow, Parametrization
from initlab.parametrize.resolution import PARAMETRIZATIONS, parametrize
from initlab.parametrize.widths import WIDTH_ROLES, ParameterWidths, WidthRole

__all__ = [
    "PARAMETRIZATIONS",
    "WIDTH_ROLES",
    "ParameterRow",
    "ParameterWidths",
    "Parametrization",
    "WidthRole",
    "parametrize",
]
