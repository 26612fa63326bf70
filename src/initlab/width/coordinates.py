"""What a coordinate check measured, as plain data: activation scales per layer, width and step,
their log-log slopes against width, and the findings in plain words.

The coordinate check (Yang et al., "Tensor Programs V", 2022, section 7 and appendix D.1) asks
one question: does the typical size of each layer's output coordinates depend on the width
:math:`n`? For a layer output :math:`h \\in \\mathbb R^{B \\times \\dots}` it measures

.. math::

    \\mathrm{rms}(h_t) = \\sqrt{\\operatorname{mean}(h_t^2)},\\qquad
    \\Delta_t = \\mathrm{rms}(h_t - h_0)

after :math:`t` optimizer steps (:math:`t = 0` is the initialization), on the same probe
batch. Over the widths it fits :math:`\\log \\mathrm{rms} = a \\log n + c` (``np.polyfit`` on
log widths): the slope :math:`a` is the exponent of the power law
:math:`\\mathrm{rms} \\propto n^a`. A parametrization meant to transfer hyperparameters across
widths keeps :math:`a \\approx 0` for every hidden layer and every update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "SLOPE_THRESHOLD",
    "CoordCheck",
    "CoordinateRecord",
    "Quantity",
    "WidthFinding",
    "WidthSlope",
    "width_slope",
]

Quantity = Literal["rms", "delta"]  # the scale of h_t, or of its change h_t - h_0
# The scales a parametrization gives a layer are powers n^a whose exponents are multiples of
# 1/2 (SP with Adam: output updates ~ n; muP's readout at init ~ n^-1/2; flat: n^0). 0.25 is
# halfway between flat and the smallest non-zero exponent: a slope beyond it is closer to a
# growing (or shrinking) law than to a flat one. Over widths 64..512 the finite-width noise of
# a fitted slope is a few hundredths (the rms of B x n coordinates), far below it.
SLOPE_THRESHOLD = 0.25
_QUANTITIES: tuple[Quantity, ...] = ("rms", "delta")
_QUANTITY_WORDS = {"rms": "scale", "delta": "change from init"}


@dataclass(frozen=True)
class CoordinateRecord:
    """One layer's output scale at one width after ``step`` optimizer steps.

    Attributes:
        layer: the module's qualified name (``"output"``: the model's output, when no leaf
            module returns it).
        width: the width the factory was called with.
        step: optimizer steps taken (0: at initialization).
        rms: :math:`\\sqrt{\\operatorname{mean}(h_t^2)}` on the probe batch.
        delta_rms: :math:`\\sqrt{\\operatorname{mean}((h_t - h_0)^2)}` (0 at step 0).
    """

    layer: str
    width: int
    step: int
    rms: float
    delta_rms: float


@dataclass(frozen=True)
class WidthSlope:
    """The exponent :math:`a` of :math:`\\text{quantity} \\propto \\text{width}^a` for one
    layer and step (``None`` where a value is zero or not finite: no power law to fit)."""

    layer: str
    step: int
    quantity: Quantity
    slope: float | None

    @property
    def direction(self) -> Literal["grows", "shrinks", "flat", "undefined"]:
        """``grows``/``shrinks`` when ``|slope|`` exceeds :data:`SLOPE_THRESHOLD`."""
        if self.slope is None:
            return "undefined"
        if self.slope > SLOPE_THRESHOLD:
            return "grows"
        if self.slope < -SLOPE_THRESHOLD:
            return "shrinks"
        return "flat"


@dataclass(frozen=True)
class WidthFinding:
    """A layer whose scale depends on width, in plain words.

    Attributes:
        layer: the layer.
        step: the step it was measured at (0: initialization).
        quantity: ``"rms"`` (the output's scale) or ``"delta"`` (its change from init).
        slope: the fitted exponent :math:`a` (:math:`\\propto \\text{width}^a`).
        direction: ``"grows"`` or ``"shrinks"``.
        message: one sentence saying so.
    """

    layer: str
    step: int
    quantity: Quantity
    slope: float
    direction: Literal["grows", "shrinks"]
    message: str


def width_slope(widths: Sequence[int], values: Sequence[float]) -> float | None:
    """The least-squares slope of :math:`\\log v` against :math:`\\log n`.

    .. math::

        a = \\arg\\min_{a, c} \\sum_i (\\log v_i - a \\log n_i - c)^2

    Returns ``None`` when a value is zero, negative or not finite (a zero-initialized readout
    has no scale at init to fit).
    """
    if any(not math.isfinite(v) or v <= 0.0 for v in values):
        return None
    slope, _ = np.polyfit(np.log(np.asarray(widths, float)), np.log(np.asarray(values)), 1)
    return float(slope)


def _finding(slope: WidthSlope, steps: int) -> WidthFinding | None:
    direction = slope.direction
    if slope.slope is None or direction == "flat" or direction == "undefined":
        return None
    when = "at init" if slope.step == 0 else f"after {slope.step} of {steps} steps"
    message = (
        f"{slope.layer}: the {_QUANTITY_WORDS[slope.quantity]} {direction} with width "
        f"{when} (proportional to width^{slope.slope:+.2f}; flat is |slope| <= "
        f"{SLOPE_THRESHOLD})."
    )
    return WidthFinding(slope.layer, slope.step, slope.quantity, slope.slope, direction, message)


@dataclass(frozen=True)
class CoordCheck:
    """A coordinate check: every layer's output scale across widths for the first steps.

    Attributes:
        widths: the widths, ascending.
        steps: optimizer steps taken at each width.
        layers: the measured layers in the order the forward pass reached them.
        output_layer: the layer whose output is the model's output.
        records: one :class:`CoordinateRecord` per (layer, width, step).
        parametrization, optimizer, lr, seed: how the models were set up and trained.

    ``slopes`` and ``findings`` are derived from the records.
    """

    widths: tuple[int, ...]
    steps: int
    layers: tuple[str, ...]
    output_layer: str
    records: tuple[CoordinateRecord, ...]
    parametrization: str
    optimizer: str
    lr: float
    seed: int

    def values(self, layer: str, step: int, quantity: Quantity) -> list[float]:
        """``rms`` or ``delta_rms`` of ``layer`` after ``step`` steps, one per width."""
        by_width = {
            r.width: (r.rms if quantity == "rms" else r.delta_rms)
            for r in self.records
            if r.layer == layer and r.step == step
        }
        return [by_width[width] for width in self.widths]

    def slope(self, layer: str, step: int, quantity: Quantity) -> WidthSlope:
        """The fitted exponent of one layer's ``quantity`` after ``step`` steps."""
        values = self.values(layer, step, quantity)
        return WidthSlope(layer, step, quantity, width_slope(self.widths, values))

    @property
    def slopes(self) -> tuple[WidthSlope, ...]:
        """Every layer's exponent at every step: ``rms`` from step 0, ``delta`` from step 1."""
        return tuple(
            self.slope(layer, step, quantity)
            for layer in self.layers
            for step in range(self.steps + 1)
            for quantity in _QUANTITIES
            if not (quantity == "delta" and step == 0)
        )

    @property
    def findings(self) -> tuple[WidthFinding, ...]:
        """Layers whose scale at init, scale after the last step, or change from init after
        the last step grows or shrinks with width (``|slope| >`` :data:`SLOPE_THRESHOLD`)."""
        checked: tuple[tuple[int, Quantity], ...] = (
            (0, "rms"),
            (self.steps, "rms"),
            (self.steps, "delta"),
        )
        found = (
            _finding(self.slope(layer, step, quantity), self.steps)
            for layer in self.layers
            for step, quantity in checked
        )
        return tuple(finding for finding in found if finding is not None)

    @property
    def grows(self) -> bool:
        """Whether some layer's scale grows with width (the instability the check is for)."""
        return any(finding.direction == "grows" for finding in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a JSON file: the settings, the records, the slopes, the findings."""
        return {
            "widths": list(self.widths),
            "steps": self.steps,
            "layers": list(self.layers),
            "output_layer": self.output_layer,
            "parametrization": self.parametrization,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "seed": self.seed,
            "slope_threshold": SLOPE_THRESHOLD,
            "records": [vars(record) for record in self.records],
            "slopes": [vars(slope) for slope in self.slopes],
            "findings": [vars(finding) for finding in self.findings],
        }

    def __str__(self) -> str:
        """The setup, then one line per finding (or that every layer stayed flat)."""
        widths = ", ".join(str(width) for width in self.widths)
        lines = [
            f"coordinate check ({self.parametrization}, {self.optimizer}, lr {self.lr:g}, "
            f"{self.steps} steps) over widths {widths}: {len(self.layers)} layers"
        ]
        findings = self.findings
        lines.extend(f"  {finding.message}" for finding in findings)
        if not findings:
            lines.append(
                f"  every layer's scale is width-independent (|slope| <= {SLOPE_THRESHOLD})."
            )
        return "\n".join(lines)
