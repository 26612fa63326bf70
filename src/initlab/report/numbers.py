r"""The one way numbers are written in reports: terminal tables, HTML pages, plot labels.

Two rules. A single measurement keeps a fixed number of significant digits (:func:`number`).
A mean over repeats keeps only the digits its spread supports (:func:`mean_std`): the standard
deviation is rounded to one significant digit (two when that digit is a 1, so 0.014 does not
become 0.01, a 30% change), and the mean to the same decimal place,

.. math::

    d = -\lfloor \log_{10} s \rfloor + [\text{leading digit of } s = 1],
    \qquad \text{shown: } \operatorname{round}(m, d) \pm \operatorname{round}(s, d).

A missing value (``None`` or NaN) is :data:`MISSING`, never ``nan`` or ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["MISSING", "mean_std", "number", "percent", "spread_decimals"]

MISSING = "-"


def _absent(value: float | None) -> bool:
    return value is None or math.isnan(value)


def number(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits (``0.000123``, ``1.5e+14``); ``-`` if absent.

    Example:
        >>> number(0.98513), number(3.0e14), number(None), number(2.0)
        ('0.985', '3e+14', '-', '2')
    """
    if _absent(value):
        return MISSING
    return f"{value:.{digits}g}"


def percent(value: float | None, digits: int = 0) -> str:
    """A fraction as a percentage (``0.25`` -> ``25%``); ``-`` if absent."""
    if _absent(value):
        return MISSING
    return f"{value:.{digits}%}"


def spread_decimals(spread: float) -> int:
    """Decimal places a spread supports: one significant digit, two when it starts with a 1.

    Example:
        >>> spread_decimals(0.0158), spread_decimals(0.04), spread_decimals(12.0)
        (3, 2, 0)
    """
    if not spread > 0 or math.isinf(spread):
        raise ValueError(f"A spread must be positive and finite; got {spread!r}.")
    exponent = math.floor(math.log10(spread))
    leading = int(round(spread / 10**exponent, 6))
    return max(0, -exponent + (1 if leading == 1 else 0))


def mean_std(values: Sequence[float | None], digits: int = 3) -> str:
    """Mean +- standard deviation (``n - 1``) of ``values``, rounded to what the spread supports.

    NaN and ``None`` are left out; one value is written alone (``digits`` significant digits),
    as is the mean of identical values (``0.981 +- 0``: no spread to round to); no value gives
    ``-``.

    Example:
        >>> mean_std([0.9702, 0.9926]), mean_std([0.1, 0.1]), mean_std([0.5]), mean_std([])
        ('0.981 ± 0.016', '0.1 ± 0', '0.5', '-')
    """
    clean = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return MISSING
    mean = math.fsum(clean) / len(clean)
    if len(clean) == 1:
        return number(mean, digits)
    spread = math.sqrt(math.fsum((v - mean) ** 2 for v in clean) / (len(clean) - 1))
    if spread == 0 or math.isinf(spread) or math.isinf(mean):
        return f"{number(mean, digits)} ± {number(spread, digits)}"
    decimals = spread_decimals(spread)
    return f"{mean:.{decimals}f} ± {spread:.{decimals}f}"
