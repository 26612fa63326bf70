"""The one number formatter: significant digits for a measurement, the spread's digits for a
mean over seeds, a dash for a missing value."""

from __future__ import annotations

import math

import pytest

from initlab.report.numbers import MISSING, mean_std, number, percent, spread_decimals


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (0.98513, 3, "0.985"),
        (3.0e14, 3, "3e+14"),
        (2.0, 3, "2"),
        (0.000123456, 3, "0.000123"),
        (0.1234567, 6, "0.123457"),
        (None, 3, MISSING),
        (math.nan, 3, MISSING),
        (math.inf, 3, "inf"),
    ],
)
def test_number_keeps_significant_digits(value: float | None, digits: int, text: str) -> None:
    assert number(value, digits) == text


def test_percent() -> None:
    assert percent(0.25) == "25%"
    assert percent(0.1234, 1) == "12.3%"
    assert percent(None) == MISSING


@pytest.mark.parametrize(
    ("spread", "decimals"),
    [(0.0158, 3), (0.04, 2), (0.0099, 3), (0.15, 2), (0.96, 1), (12.0, 0), (1.0, 1), (150, 0)],
)
def test_spread_decimals_one_digit_two_when_it_is_a_one(spread: float, decimals: int) -> None:
    assert spread_decimals(spread) == decimals


@pytest.mark.parametrize("spread", [0.0, -1.0, math.inf, math.nan])
def test_spread_decimals_refuses_what_is_no_spread(spread: float) -> None:
    with pytest.raises(ValueError, match="positive and finite"):
        spread_decimals(spread)


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ([0.9702, 0.9926], "0.981 ± 0.016"),  # std 0.0158: two digits, it starts with a 1
        ([97.02, 99.26], "98.1 ± 1.6"),
        ([76.0, 80.0, 72.0], "76 ± 4"),
        ([41.0, 59.0], "50 ± 13"),
        ([10.0372, 10.0372], "10 ± 0"),  # no spread: the mean keeps 3 significant digits
        ([0.5], "0.5"),
        ([0.5, None, math.nan], "0.5"),
        ([], MISSING),
        ([None, math.nan], MISSING),
    ],
)
def test_mean_std_rounds_to_what_the_spread_supports(
    values: list[float | None], text: str
) -> None:
    assert mean_std(values) == text
