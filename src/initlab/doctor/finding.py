r"""A finding and the thresholds behind it: plain data, with the plan that fixes it.

A :class:`Finding` says what is wrong in one sentence, the numbers behind it, what to change and
what that should do; its ``plan`` is the fix as a :class:`~initlab.plan.Plan`, and a report's
fix is the findings' own plans merged (:func:`merged_plan`), so the two never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from initlab.errors import ConfigError
from initlab.plan.plan import Plan
from initlab.plan.rules import rule

__all__ = ["Finding", "Severity", "Thresholds", "fix_plan", "merged_plan", "trend"]

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class Thresholds:
    """Where a measurement becomes a finding.

    Attributes:
        vanishing: compound forward (or backward) factor over the stack below which the
            signal is said to vanish. 1e-2: a hundredfold loss of scale is far outside what
            normalization-free training recovers from in its first steps.
        exploding: compound factor above which it explodes (1e2, symmetric to ``vanishing``).
        drifting: compound forward factor beyond which (below it, or above its inverse) the
            signal is said to shrink or grow: a warning, not yet a vanishing signal. 0.1: a
            tenfold change over the stack is what a per-layer factor of 1/2 gives over 4
            layers (a stride-blind transposed conv, Xavier before ReLU); variance-preserving
            inits stay within a factor 2 (tests/zoo: 31 stock architectures).
        min_layers: points on a path (layer calls, or block calls of a stack) needed before a
            depth trend is judged (3: a line through two points is no trend).
        dead: fraction of a rectifier's units that are zero for the whole batch. 0.5: at He
            init about none are (a unit is dead for a batch of 64 with probability 2^-64).
        collapse: mean cosine similarity between examples above which inputs are said to have
            collapsed to one direction; then units that are off for the whole batch are not
            called dead (in deep ReLU nets at init this is the usual cause, not dead weights).
        saturated: fraction of tanh/sigmoid outputs in saturation. 0.3: under N(0, 1)
            pre-activations only 0.8% of tanh outputs exceed 0.99; 30% needs a pre-activation
            std of about 2.5.
        symmetric: fraction of a weight's rows that duplicate another row (or are zero).
        gain_tolerance: relative distance of the effective gain^2 from a scheme's value within
            which the layer is said to use that scheme (0.15: sampling noise of a 64x64 weight's
            variance is ~2.5%, and He's 2 vs Xavier's 1 differ by 100%).
        mismatch_depth: weight layers needed before a mismatch matters (6: a per-layer
            variance factor of 1/2 compounds to 1/32 by then).
        mismatch_loss: the variance a rectifier mismatch must lose, compounded over the
            mismatched layers (the product of gain^2 / He's gain^2), before it is reported:
            1/32, what Xavier's 1/2 per layer loses over 5 layers and PyTorch's default (1/6)
            over 2. One mis-scaled layer in a residual MLP branch loses a constant factor once;
            only a chain of them compounds.
        mismatch_fan_in: the smallest fan_in whose gain is judged (16). The gain argument is
            about sums of many terms; a depthwise conv (Mamba's, ConvNeXt's, MobileNet's) sums
            ``kernel`` terms per unit, so each channel's own gain^2 is a chi-square with
            fan_in degrees of freedom (relative spread sqrt(2/fan_in): 71% at 4, 35% at 16)
            and the pointwise layers around it set the scale.
    """

    vanishing: float = 1e-2
    exploding: float = 1e2
    drifting: float = 1e-1
    min_layers: int = 3
    dead: float = 0.5
    collapse: float = 0.9
    saturated: float = 0.3
    symmetric: float = 0.5
    gain_tolerance: float = 0.15
    mismatch_depth: int = 6
    mismatch_loss: float = 1 / 32
    mismatch_fan_in: int = 16

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                example = "Thresholds(dead=0.5)" if isinstance(value, dict) else "a number"
                raise ConfigError(
                    f"Thresholds: {name} must be a number, got {value!r} "
                    f"({type(value).__name__}); pass thresholds by keyword, e.g. {example}."
                )
            if not math.isfinite(value):
                raise ConfigError(f"Thresholds: {name} must be finite, got {value!r}.")
        for name in _FRACTIONS:
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(
                    f"Thresholds: {name} is a fraction and must be in [0, 1], got {value!r}."
                )
        for name in _FACTORS_BELOW_ONE:
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ConfigError(
                    f"Thresholds: {name} is a factor below 1 and must be in (0, 1), got {value!r}."
                )
        if not self.exploding > 1:
            raise ConfigError(
                "Thresholds: exploding is a growth factor and must be > 1, "
                f"got {self.exploding!r}."
            )
        if not self.gain_tolerance > 0:
            raise ConfigError(
                f"Thresholds: gain_tolerance must be > 0, got {self.gain_tolerance!r}."
            )
        for name in _COUNTS:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"Thresholds: {name} is a count and must be an integer >= 1, got {value!r}."
                )


_FRACTIONS = ("dead", "collapse", "saturated", "symmetric")
_FACTORS_BELOW_ONE = ("vanishing", "drifting", "mismatch_loss")
_COUNTS = ("min_layers", "mismatch_depth", "mismatch_fan_in")


@dataclass(frozen=True)
class Finding:
    """One problem, in plain words, with the evidence and the fix.

    Attributes:
        code: a stable identifier (``vanishing_forward``, ``dead_relu``...).
        severity: ``info``, ``warning`` or ``critical``.
        title: the problem in one sentence.
        layers: the layers concerned.
        evidence: the numbers behind it.
        fix: what to change, in words.
        expected: what the fix should do, in words.
        plan: the fix as a Plan (``None`` when initialization cannot fix it).
    """

    code: str
    severity: Severity
    title: str
    layers: tuple[str, ...]
    evidence: str
    fix: str
    expected: str
    plan: Plan | None = field(default=None, compare=False)


def trend(values: Sequence[float]) -> tuple[float, float]:
    """(per-layer factor, compound factor over the sequence) of a log-linear fit."""
    points = [(i, math.log(v)) for i, v in enumerate(values) if v > 0 and math.isfinite(v)]
    if len(points) < 2:
        return 1.0, 1.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var_x = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var_x
    span = points[-1][0] - points[0][0]
    return math.exp(slope), math.exp(slope * span)


def fix_plan(layers: Sequence[str]) -> Plan:
    """Re-initialize ``layers`` by the activation that follows each ("auto"), the rest kept."""
    rules = [rule(f"{layer}.*" if layer else "*", "auto") for layer in dict.fromkeys(layers)]
    return Plan(rules, default="keep", name="doctor-fix", warn_unused=False)


def merged_plan(findings: Sequence[Finding]) -> Plan:
    """One Plan from the findings' own plans: their rules in order (most severe finding first,
    so its rule wins where two match), every other parameter kept.

    The findings' plans are what each finding proposes (a saturation's targets the layers
    *before* the tanh, not the tanh), so the whole fix is exactly their union. Without any
    (a healthy model, or findings initialization cannot fix) it is the empty plan: no rules,
    every parameter kept, so applying it changes nothing.
    """
    rules = [item for f in findings if f.plan is not None for item in f.plan.rules]
    return Plan(list(dict.fromkeys(rules)), default="keep", name="doctor-fix", warn_unused=False)
