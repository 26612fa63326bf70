r"""From measurements to findings in plain words, each with its fix.

All thresholds live in :class:`Thresholds`, with the reasoning beside each. Depth trends are
judged from a least-squares line through :math:`\log(\text{std})` against layer index, so one
noisy layer neither raises nor hides a finding: the *trend* factor per layer :math:`r` and its
compound :math:`r^{L-1}` over the :math:`L` weight layers are what the thresholds see.

Vanishing or exploding gradients are judged from :math:`\partial L/\partial h` at each layer's
output (its norm per example), not from weight-gradient norms: those stay nearly flat across
depth even when the backward signal dies (Glorot & Bengio, 2010, eq. 14). A hundredfold change
over the depth is critical; a tenfold change of the forward signal is a warning.

Depth is read on the signal path. A model built as a stack of repeated blocks (a transformer's
layers, a ResNet's residual blocks; see :mod:`initlab.doctor.signal_path`) is judged on what
its blocks output, the residual stream, one point per block call; the layers inside a block
are not a chain (:math:`\partial L/\partial h` at an attention query is tiny at init by
construction). Weight layers outside any stack are judged one point per layer call, as in a
plain MLP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from initlab.doctor.finding import (
    Finding,
    Severity,
    Thresholds,
    fix_plan,
    trend,
)
from initlab.doctor.metrics import WeightRecord
from initlab.doctor.mismatch import mismatch_findings, normalized_layers
from initlab.doctor.probe import LayerRecord
from initlab.doctor.signal_path import block_stacks, within
from initlab.doctor.weight_findings import (
    clone_findings,
    norm_scale_findings,
    symmetry_findings,
)
from initlab.plan.activations import ActivationMap

__all__ = ["find"]


def _names(records: Sequence[LayerRecord]) -> tuple[str, ...]:
    """Module names in call order, each once (a module may be called several times)."""
    return tuple(dict.fromkeys(r.name for r in records))


def _nonfinite(records: Sequence[LayerRecord]) -> list[Finding]:
    for record in records:
        if record.forward["nonfinite"] > 0:
            return [
                Finding(
                    "nonfinite",
                    "critical",
                    f"NaN or inf values appear first at layer {record.name!r}.",
                    (record.name,),
                    f"{record.forward['nonfinite']:.0f} units of its output are not finite.",
                    "Check the input batch for NaN/inf, then the scale of the weights up to "
                    "this layer (an exploding init overflows).",
                    "Finite activations everywhere.",
                )
            ]
    # Finite forward, non-finite backward: the first module the gradient reaches going wrong
    # is the deepest one (the backward pass runs from the output).
    for record in reversed(records):
        if record.grad_std is not None and not math.isfinite(record.grad_std):
            return [
                Finding(
                    "nonfinite",
                    "critical",
                    f"NaN or inf gradients appear first at layer {record.name!r} (going back "
                    "from the output).",
                    (record.name,),
                    f"dL/dh std at its output is {record.grad_std}.",
                    "Check the loss and the target for NaN/inf, then the scale of the weights "
                    "after this layer (an exploding backward pass overflows).",
                    "Finite gradients everywhere.",
                )
            ]
    return []


def _forward_trend(layers: list[LayerRecord], unit: str, limits: Thresholds) -> list[Finding]:
    if len(layers) < limits.min_layers:
        return []
    stds = [r.forward["std"] for r in layers]
    per_layer, total = trend(stds)
    names = _names(layers)
    evidence = (
        f"output std {'falls' if total < 1.0 else 'grows'} from {stds[0]:.3g} to "
        f"{stds[-1]:.3g} over {len(layers)} {unit}s "
        f"(trend x{per_layer:.3g} per {unit}, x{total:.3g} overall)"
    )
    verdict = _forward_verdict(per_layer, total, unit, limits)
    if verdict is None:
        return []
    return [
        Finding(
            verdict.code,
            verdict.severity,
            verdict.title,
            names,
            evidence,
            verdict.fix,
            verdict.expected,
            fix_plan(names),
        )
    ]


@dataclass(frozen=True)
class _Verdict:
    """What a trend means: a finding's code, severity, title, fix and expected effect."""

    code: str
    severity: Severity
    title: str
    fix: str
    expected: str


def _forward_verdict(
    per_layer: float, total: float, unit: str, limits: Thresholds
) -> _Verdict | None:
    """The verdict on a forward trend (``None``: within the thresholds)."""
    if total < limits.vanishing:
        return _Verdict(
            "vanishing_forward",
            "critical",
            f"The forward signal vanishes with depth: later {unit}s see almost nothing.",
            "Scale each layer's weights to its activation: He for ReLU-family, Xavier "
            "(with the tanh gain) for tanh/sigmoid, LeCun for SELU.",
            "A per-layer std factor near 1 (the He/Xavier variance-preserving conditions).",
        )
    if total > limits.exploding:
        return _Verdict(
            "exploding_forward",
            "critical",
            "The forward signal explodes with depth.",
            "Use a variance-preserving init (He/Xavier/LeCun by activation) instead of a "
            "fixed large std such as N(0, 1).",
            "A per-layer std factor near 1.",
        )
    if limits.drifting <= total <= 1.0 / limits.drifting:
        return None
    shrinks = total < 1.0
    residual = (
        " Residual blocks without normalization add their branch's variance to the stream at "
        "every block: scale the branches down (the 'fixup' or 'zero-init-residual' presets) "
        "or add normalization."
        if unit == "block" and not shrinks
        else ""
    )
    return _Verdict(
        "vanishing_forward" if shrinks else "exploding_forward",
        "warning",
        f"The forward signal {'shrinks' if shrinks else 'grows'} with depth, "
        f"x{per_layer:.2g} per {unit}: not yet {'vanished' if shrinks else 'exploded'}"
        ", but a deeper stack of the same would be.",
        "Check each layer's fans and gain against the activation after it (the plan table "
        "shows both): He for ReLU-family, Xavier with the gain for tanh/sigmoid." + residual,
        "A per-layer std factor near 1.",
    )


def _gradient_trend(
    layers: list[LayerRecord], unit: str, limits: Thresholds, *, cut_by_design: bool = False
) -> list[Finding]:
    r"""Vanishing or exploding :math:`\partial L/\partial h`, judged on its norm per example,
    :math:`\text{rms}(\partial L/\partial h)\sqrt{n}` with :math:`n` values per example.

    A gradient exactly 0 at the first layers while the last is not has vanished outright
    (every path back to the input crosses a unit that is off for the whole batch), which the
    log-linear trend cannot see; unless some weight of the model is all zero
    (``cut_by_design``), which stops the gradient on purpose.

    The norm, not the per-value std: a fan_in-scaled layer (He, LeCun) keeps the gradient's norm
    from its output to its input, not its per-value scale, which changes with the widths; and
    where a stride or a pooling maps :math:`n` values onto :math:`n/T`, each value's gradient
    is divided by :math:`T` (a mean over :math:`T` positions) while the norm changes by
    :math:`\sqrt T` only. In a plain stack of equal widths the two are the same trend.
    """
    grads = [
        r.grad_rms * math.sqrt(r.values_per_example) for r in layers if r.grad_rms is not None
    ]
    if len(grads) < limits.min_layers or len(grads) != len(layers):
        return []
    names = _names(layers)
    cut = next((index for index, grad in enumerate(grads) if grad != 0.0), len(grads))
    if 0 < cut < len(grads) and not cut_by_design:
        return [_vanished(layers[:cut], unit, grads[-1], names)]
    # Toward the input: reversed order, so the compound factor is first / last layer.
    per_layer, total = trend(list(reversed(grads)))
    evidence = (
        f"the norm of dL/dh per example is {grads[-1]:.3g} at the last {unit} and "
        f"{grads[0]:.3g} at the first "
        f"(trend x{per_layer:.3g} per {unit} toward the input, x{total:.3g} overall)"
    )
    if total < limits.vanishing:
        return [
            Finding(
                "vanishing_gradients",
                "critical",
                f"Gradients vanish toward the input: the first {unit}s will barely learn.",
                names,
                evidence,
                "Use a variance-preserving init for the activation (He for ReLU), or add "
                "normalization / residual connections.",
                "dL/dh of similar scale at every depth.",
                fix_plan(names),
            )
        ]
    if total > limits.exploding:
        return [
            Finding(
                "exploding_gradients",
                "critical",
                "Gradients explode toward the input.",
                names,
                evidence,
                "Use a variance-preserving init for the activation; gradient clipping treats "
                "the symptom, not the cause.",
                "dL/dh of similar scale at every depth.",
                fix_plan(names),
            )
        ]
    return []


def _vanished(
    silent: list[LayerRecord], unit: str, last: float, names: tuple[str, ...]
) -> Finding:
    """The finding for a gradient that is exactly 0 on the first ``silent`` records."""
    return Finding(
        "vanishing_gradients",
        "critical",
        f"Gradients vanish toward the input: the first {unit}s get none and will not learn.",
        names,
        f"dL/dh is exactly 0 at the first {len(silent)} {unit}s (up to "
        f"{silent[-1].label!r}) and its norm per example is {last:.3g} at the last: every "
        "path back to the input crosses a unit that is off for the whole batch",
        "Use a variance-preserving init for the activation (He for ReLU) with zero biases, so "
        "that about half of each unit's outputs are positive; or add normalization / "
        "residual connections.",
        "dL/dh of similar scale at every depth.",
        fix_plan(names),
    )


def _depth(
    records: Sequence[LayerRecord],
    weights: Sequence[WeightRecord],
    stacks: Sequence[Sequence[str]],
    blocks: set[str],
    limits: Thresholds,
) -> list[Finding]:
    """Forward and gradient trends along each signal path (see the module docstring).

    The paths are the calls of each stack of blocks that ran at least ``min_layers`` times,
    and each run of weight layers that no block interrupts. The layers inside a block are not
    a chain (their q/k gradients would read as vanishing), whether its stack ran twice but is
    too shallow to judge (BART's or Whisper's two layers) or holds one block that ran once
    (CANINE's character encoders, one layer in a list); and a block splits the layers around
    it (a conv stem and a head are not one chain).
    """
    weight_layers = {w.layer for w in weights}
    # An all-zero weight (a zero head, a Fixup branch end) stops the gradient by design: then
    # an exactly-0 gradient before it says nothing.
    cut_by_design = any(w.zero_rows == 1.0 for w in weights)
    paths: list[tuple[list[LayerRecord], str]] = []
    repeated: set[str] = set()
    for stack in stacks:  # outermost first: a stack inside a repeated one is on its path
        members = set(stack)
        calls = [r for r in records if r.name in members]
        if len(calls) < 2 or any(within(name, repeated) for name in stack):
            continue
        repeated |= members
        if len(calls) >= limits.min_layers:
            paths.append((calls, "block"))
    run: list[LayerRecord] = []
    for record in records:  # every block, whatever it ran, splits the runs: no chain inside
        if record.name in blocks or within(record.name, blocks):
            if run:
                paths.append((run, "layer"))
            run = []
        elif record.name in weight_layers:
            run.append(record)
    paths.append((run, "layer"))
    return [
        finding
        for path, unit in paths
        for finding in (
            *_forward_trend(path, unit, limits),
            *_gradient_trend(path, unit, limits, cut_by_design=cut_by_design),
        )
    ]


def _input_cosine(records: Sequence[LayerRecord], index: int) -> float:
    """Between-example cosine of what the layer feeding ``records[index]`` received.

    The feeding layer's own output is skipped: a large negative bias makes its outputs point
    the same way (cosine ~1) while its inputs are still diverse, and that is a dead layer, not
    a collapse. Collapse is when the layer already *receives* near-identical examples.
    """
    measured = [
        r.forward["cosine"] for r in records[:index] if not math.isnan(r.forward["cosine"])
    ]
    return measured[-2] if len(measured) >= 2 else math.nan


def _dead_and_collapse(records: Sequence[LayerRecord], limits: Thresholds) -> list[Finding]:
    dead, collapsed = [], []
    worst_dead, worst_cosine = 0.0, 0.0
    for index, record in enumerate(records):
        fraction = record.forward["dead_fraction"]
        if math.isnan(fraction) or fraction <= limits.dead:
            continue
        cosine = _input_cosine(records, index)
        if cosine > limits.collapse:
            collapsed.append(record)
            worst_cosine = max(worst_cosine, cosine)
        else:
            dead.append(record)
            worst_dead = max(worst_dead, fraction)
    findings = []
    if dead:
        findings.append(
            Finding(
                "dead_relu",
                "warning",
                f"{len(_names(dead))} rectifier layer(s) have most units dead for the whole "
                "batch.",
                _names(dead),
                f"up to {worst_dead:.0%} of units output exactly 0 on every example",
                "Re-initialize with He (zero biases); negative-biased or badly scaled layers "
                "kill ReLUs. LeakyReLU/GELU avoid hard zeros.",
                "Roughly half of each unit's outputs positive, no unit off for the whole batch.",
                fix_plan(_layers_before(records, dead)),
            )
        )
    if collapsed:
        findings.append(
            Finding(
                "inputs_collapse",
                "info",
                "Different inputs collapse to one direction: units are off for the whole batch "
                "because every example looks the same, not because the units are dead.",
                _names(collapsed),
                f"mean cosine similarity between examples reaches {worst_cosine:.3f}",
                "Deep plain ReLU nets do this at init; normalization layers or residual "
                "connections with a scaled init (Fixup, zero-init-residual) keep inputs apart.",
                "Cosine similarity between examples that stays well below 1 with depth.",
            )
        )
    return findings


def _saturation(records: Sequence[LayerRecord], limits: Thresholds) -> list[Finding]:
    hit = [r for r in records if r.forward["saturated_fraction"] > limits.saturated]
    if not hit:
        return []
    worst = max(r.forward["saturated_fraction"] for r in hit)
    return [
        Finding(
            "saturated",
            "critical" if worst > 0.6 else "warning",
            f"{len(_names(hit))} tanh/sigmoid layer(s) are saturated: their gradients are near "
            "zero.",
            _names(hit),
            f"up to {worst:.0%} of outputs beyond 0.99 (tanh) / outside [0.01, 0.99] (sigmoid)",
            "Shrink the weights before saturating activations: Xavier (Glorot) with the tanh "
            "gain instead of a fixed std such as N(0, 1).",
            "Pre-activations of std near 1, almost no saturated outputs.",
            fix_plan(_layers_before(records, hit)),
        )
    ]


def _layers_before(records: Sequence[LayerRecord], hits: Sequence[LayerRecord]) -> list[str]:
    """The layer that fed each hit: the last record before it that measured its input."""
    position = {id(record): index for index, record in enumerate(records)}
    names = []
    for hit in hits:
        for record in reversed(records[: position[id(hit)]]):
            if not math.isnan(record.forward["input_std"]):
                names.append(record.name)
                break
    return list(dict.fromkeys(names))


def find(
    records: Sequence[LayerRecord],
    weights: Sequence[WeightRecord],
    activations: ActivationMap | None,
    limits: Thresholds,
    *,
    model: nn.Module | None = None,
) -> list[Finding]:
    """Every finding the measurements support, most severe first.

    Args:
        records: the probe's records, one per module call, in call order.
        weights: the weight measurements.
        activations: the activation after each layer (``None`` when unknown).
        limits: the thresholds.
        model: the model measured. With it, depth is judged along its stacks of repeated
            blocks (:func:`~initlab.doctor.signal_path.block_stacks`), norms are recognised by
            behaviour, and layers cloned across depth are reported; without it, on the
            weight layers alone.
    """
    stacks = block_stacks(model) if model is not None else ()
    blocks = {name for stack in stacks for name in stack}
    findings = [
        *_nonfinite(records),
        *symmetry_findings(weights, limits, model),
        *_depth(records, weights, stacks, blocks, limits),
        *_saturation(records, limits),
        *_dead_and_collapse(records, limits),
        *mismatch_findings(
            weights, activations, limits, normalized_layers(records, model, blocks)
        ),
        *(clone_findings(model) if model is not None else ()),
        *(norm_scale_findings(model) if model is not None else ()),
    ]
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: order[f.severity])
