r"""From measurements to findings in plain words, each with its fix.

All thresholds live in :class:`Thresholds`, with the reasoning beside each. Depth trends are
judged from a least-squares line through :math:`\log(\text{std})` against layer index, so one
noisy layer neither raises nor hides a finding: the *trend* factor per layer :math:`r` and its
compound :math:`r^{L-1}` over the :math:`L` weight layers are what the thresholds see.

Vanishing or exploding gradients are judged from :math:`\partial L/\partial h` at each layer's
output, not from weight-gradient norms: those stay nearly flat across depth even when the
backward signal dies (Glorot & Bengio, 2010, eq. 14).

Depth is read on the signal path. A model built as a stack of repeated blocks (a transformer's
layers, a ResNet's residual blocks; see :mod:`initlab.doctor.signal_path`) is judged on what
its blocks output, the residual stream, one point per block call; the layers inside a block
are not a chain (:math:`\partial L/\partial h` at an attention query is tiny at init by
construction). Weight layers outside any stack are judged one point per layer call, as in a
plain MLP.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from initlab.doctor.metrics import WeightRecord
from initlab.doctor.probe import LayerRecord
from initlab.doctor.signal_path import block_stacks, cloned_weights, within
from initlab.errors import InitlabError
from initlab.layers import activation_kind, is_norm
from initlab.plan.activations import ActivationMap
from initlab.plan.plan import Plan
from initlab.plan.rules import rule

__all__ = ["Finding", "Severity", "Thresholds", "find", "fix_plan", "merged_plan", "trend"]

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class Thresholds:
    """Where a measurement becomes a finding.

    Attributes:
        vanishing: compound forward (or backward) factor over the stack below which the
            signal is said to vanish. 1e-2: a hundredfold loss of scale is far outside what
            normalization-free training recovers from in its first steps.
        exploding: compound factor above which it explodes (1e2, symmetric to ``vanishing``).
        min_layers: weight layers needed before a depth trend is judged (3: a line through two
            points is no trend).
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
        mismatch_fan_in: the smallest fan_in whose gain is judged (16). The gain argument is
            about sums of many terms; a depthwise conv (Mamba's, ConvNeXt's, MobileNet's) sums
            ``kernel`` terms per unit, so each channel's own gain^2 is a chi-square with
            fan_in degrees of freedom (relative spread sqrt(2/fan_in): 71% at 4, 35% at 16)
            and the pointwise layers around it set the scale.
    """

    vanishing: float = 1e-2
    exploding: float = 1e2
    min_layers: int = 3
    dead: float = 0.5
    collapse: float = 0.9
    saturated: float = 0.3
    symmetric: float = 0.5
    gain_tolerance: float = 0.15
    mismatch_depth: int = 6
    mismatch_fan_in: int = 16


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


def merged_plan(findings: Sequence[Finding]) -> Plan | None:
    """One Plan from the findings' own plans: their rules in order (most severe finding first,
    so its rule wins where two match), every other parameter kept; ``None`` without any.

    The findings' plans are what each finding proposes (a saturation's targets the layers
    *before* the tanh, not the tanh), so the whole fix is exactly their union.
    """
    rules = [item for f in findings if f.plan is not None for item in f.plan.rules]
    if not rules:
        return None
    return Plan(list(dict.fromkeys(rules)), default="keep", name="doctor-fix", warn_unused=False)


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
        f"output std falls from {stds[0]:.3g} to {stds[-1]:.3g} over {len(layers)} {unit}s "
        f"(trend x{per_layer:.3g} per {unit}, x{total:.3g} overall)"
    )
    if total < limits.vanishing:
        return [
            Finding(
                "vanishing_forward",
                "critical",
                f"The forward signal vanishes with depth: later {unit}s see almost nothing.",
                names,
                evidence,
                "Scale each layer's weights to its activation: He for ReLU-family, Xavier "
                "(with the tanh gain) for tanh/sigmoid, LeCun for SELU.",
                "A per-layer std factor near 1 (the He/Xavier variance-preserving conditions).",
                fix_plan(names),
            )
        ]
    if total > limits.exploding:
        return [
            Finding(
                "exploding_forward",
                "critical",
                "The forward signal explodes with depth.",
                names,
                evidence.replace("falls", "grows"),
                "Use a variance-preserving init (He/Xavier/LeCun by activation) instead of a "
                "fixed large std such as N(0, 1).",
                "A per-layer std factor near 1.",
                fix_plan(names),
            )
        ]
    return []


def _gradient_trend(layers: list[LayerRecord], unit: str, limits: Thresholds) -> list[Finding]:
    grads = [r.grad_std for r in layers if r.grad_std is not None]
    if len(grads) < limits.min_layers or len(grads) != len(layers):
        return []
    # Toward the input: reversed order, so the compound factor is first / last layer.
    per_layer, total = trend(list(reversed(grads)))
    names = _names(layers)
    evidence = (
        f"dL/dh std is {grads[-1]:.3g} at the last {unit} and {grads[0]:.3g} at the first "
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


def _depth(
    records: Sequence[LayerRecord],
    weight_layers: set[str],
    stacks: Sequence[Sequence[str]],
    limits: Thresholds,
) -> list[Finding]:
    """Forward and gradient trends along each signal path (see the module docstring)."""
    paths: list[tuple[list[LayerRecord], str]] = []
    judged: set[str] = set()
    for stack in stacks:
        blocks = set(stack)
        calls = [r for r in records if r.name in blocks]
        if len(calls) >= limits.min_layers:
            paths.append((calls, "block"))
            judged |= blocks
    layers = [r for r in records if r.name in weight_layers and not within(r.name, judged)]
    paths.append((layers, "layer"))
    return [
        finding
        for path, unit in paths
        for finding in (*_forward_trend(path, unit, limits), *_gradient_trend(path, unit, limits))
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


def _symmetry(weights: Sequence[WeightRecord], limits: Thresholds) -> list[Finding]:
    hit = [w for w in weights if max(w.duplicate_rows, w.zero_rows) >= limits.symmetric]
    if not hit:
        return []
    return [
        Finding(
            "symmetric_weights",
            "critical",
            "Weights are symmetric: units of a layer are identical (or zero) and will stay "
            "identical through training, since they receive identical gradients.",
            tuple(w.layer for w in hit),
            "; ".join(
                f"{w.name}: {w.duplicate_rows:.0%} duplicate rows, {w.zero_rows:.0%} zero rows"
                for w in hit[:4]
            ),
            "Break the symmetry with a random init (He/Xavier/orthogonal); constant and zero "
            "init are for biases and norm scales only.",
            "Distinct rows in every weight.",
            fix_plan([w.layer for w in hit]),
        )
    ]


def _normalized_layers(records: Sequence[LayerRecord], model: nn.Module | None) -> set[str]:
    """Layers whose output goes straight into a normalization layer (which rescales it).

    With the model, norms are recognised by type or behaviour (:func:`initlab.layers.is_norm`:
    LLaMA's and T5's RMSNorm classes too); without it the class name is all there is.
    """
    if model is None:
        norms = {r.name for r in records if "norm" in r.kind.lower()}
    else:
        modules = dict(model.named_modules())
        names = {r.name for r in records if r.name in modules}
        norms = {name for name in names if is_norm(modules[name])}
    return {
        record.name for record, following in itertools.pairwise(records) if following.name in norms
    }


def _mismatch(
    weights: Sequence[WeightRecord],
    activations: ActivationMap | None,
    limits: Thresholds,
    normalized: set[str],
) -> list[Finding]:
    if activations is None or len(weights) < limits.mismatch_depth:
        return []

    def near(value: float, target: float) -> bool:
        return abs(value - target) <= limits.gain_tolerance * target

    xavier_relu, default_relu, he_tanh = [], [], []
    # The first layer reads the raw input, not a previous activation's output: the
    # variance-preserving gain argument (He et al., 2015, eq. 7) does not constrain it.
    # A mis-scaled layer matters when the error compounds: a norm right after it, or right
    # after the layer it feeds (a transformer's MLP: Linear, GELU, Linear, add & LayerNorm),
    # resets the scale before it does.
    for w, following in zip(weights[1:], [*weights[2:], None], strict=True):
        found = activations.get(w.layer)
        if found is None or w.layer in normalized or w.fan_in < limits.mismatch_fan_in:
            continue
        if following is not None and following.layer in normalized:
            continue
        try:
            kind = activation_kind(found.name)
        except InitlabError:  # an activation initlab cannot judge is not called a mismatch
            continue
        xavier = 2.0 * w.fan_in / (w.fan_in + w.fan_out)
        # Only rectifiers (hard or leaky) zero part of their input, which is what He's gain 2
        # restores (He et al., 2015). GELU/SiLU ("smooth") pass small negatives, their gain is
        # a second-moment one, and PyTorch's default before them is not "the ReLU mistake".
        if kind.is_rectifier:
            he = kind.gain(found.param) ** 2
            if near(w.gain_sq, 1.0 / 3.0) and not near(w.gain_sq, he):
                default_relu.append(w)
            elif (near(w.gain_sq, xavier) or near(w.gain_sq, 1.0)) and not near(w.gain_sq, he):
                xavier_relu.append(w)
        elif kind.family == "saturating" and near(w.gain_sq, 2.0):
            he_tanh.append(w)
    findings = []
    relu_evidence = "effective gain^2 = Var(W) * fan_in of {:.3g} where ReLU needs 2"
    if default_relu:
        findings.append(
            Finding(
                "torch_default_relu",
                "critical",
                "PyTorch's default init (U(+-1/sqrt(fan_in)), 1/6 of He's variance) in a deep "
                "ReLU net: the signal shrinks by sqrt(1/6) per layer.",
                tuple(w.layer for w in default_relu),
                relu_evidence.format(sum(w.gain_sq for w in default_relu) / len(default_relu)),
                "Use He (kaiming_normal_, nonlinearity='relu') for layers followed by ReLU.",
                "A per-layer std factor near 1 instead of ~0.41.",
                fix_plan([w.layer for w in default_relu]),
            )
        )
    if xavier_relu:
        findings.append(
            Finding(
                "xavier_before_relu",
                "warning",
                "Gain-1 weights (Xavier, LeCun, plain orthogonal) before ReLU: half the "
                "variance is lost per layer (ReLU zeroes half its input; He et al., 2015).",
                tuple(w.layer for w in xavier_relu),
                relu_evidence.format(sum(w.gain_sq for w in xavier_relu) / len(xavier_relu)),
                "Use He (gain sqrt 2) for layers followed by ReLU.",
                "A per-layer std factor near 1 instead of ~0.71.",
                fix_plan([w.layer for w in xavier_relu]),
            )
        )
    if he_tanh:
        findings.append(
            Finding(
                "he_before_tanh",
                "warning",
                "He-scaled weights before tanh/sigmoid: the ReLU gain sqrt 2 pushes saturating "
                "activations toward saturation and the chaotic regime (Poole et al., 2016).",
                tuple(w.layer for w in he_tanh),
                f"effective gain^2 of {sum(w.gain_sq for w in he_tanh) / len(he_tanh):.3g} "
                "(He's 2) before a saturating activation",
                "Use Xavier (Glorot) with the activation's gain for tanh/sigmoid layers.",
                "Pre-activations of std near 1 and correlations that neither vanish nor blow up.",
                fix_plan([w.layer for w in he_tanh]),
            )
        )
    return findings


def _clones(model: nn.Module) -> list[Finding]:
    groups = cloned_weights(model)
    if not groups:
        return []
    layer_groups = list(dict.fromkeys(tuple(dict.fromkeys(l for _, l in g)) for g in groups))
    copies = [layer for layers in layer_groups for layer in layers[1:]]
    evidence = "; ".join(
        f"{' = '.join(name for name, _ in group[:3])}{' = ...' if len(group) > 3 else ''} "
        f"({len(group)} copies)"
        for group in groups[:4]
    )
    return [
        Finding(
            "cloned_layers",
            "warning",
            f"{len(copies)} layer(s) start as exact copies of another layer: the same weights, "
            "in distinct tensors. Copying one initialized layer (copy.deepcopy in a loop, "
            "nn.TransformerEncoder(layer, n), which deep-copies layer) does this; the copies "
            "start fully correlated and only their different inputs tell them apart, which "
            "wastes the randomness the depth should have.",
            tuple(layer for layers in layer_groups for layer in layers),
            evidence,
            "Give every copy its own draw: re-initialize the copies (the plan keeps the first "
            "of each group and re-draws the others), call reset_parameters() on each copy, or "
            "build each layer fresh. Sharing one layer on purpose (ALBERT, tied embeddings) "
            "is one tensor, which this finding never reports.",
            "Distinct weights in every layer.",
            fix_plan(copies),
        )
    ]


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
    findings = [
        *_nonfinite(records),
        *_symmetry(weights, limits),
        *_depth(records, {w.layer for w in weights}, stacks, limits),
        *_saturation(records, limits),
        *_dead_and_collapse(records, limits),
        *_mismatch(weights, activations, limits, _normalized_layers(records, model)),
        *(_clones(model) if model is not None else ()),
    ]
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: order[f.severity])
