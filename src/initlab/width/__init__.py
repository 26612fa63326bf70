"""Width and depth in practice: coordinate checks across widths.

:func:`coord_check` builds a model at several widths, trains each a few steps under a
parametrization (:func:`initlab.parametrize.parametrize`) and measures how every layer's
output scale depends on width; :class:`CoordCheck` holds the scales, the fitted exponents and
the findings.
"""

from __future__ import annotations

from initlab.width.check import DEFAULT_LEARNING_RATES, OUTPUT, Optimizer, coord_check
from initlab.width.coordinates import (
    SLOPE_THRESHOLD,
    CoordCheck,
    CoordinateRecord,
    Quantity,
    WidthFinding,
    WidthSlope,
    width_slope,
)

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "OUTPUT",
    "SLOPE_THRESHOLD",
    "CoordCheck",
    "CoordinateRecord",
    "Optimizer",
    "Quantity",
    "WidthFinding",
    "WidthSlope",
    "coord_check",
    "width_slope",
]
