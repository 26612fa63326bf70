"""Init scales that do not fit the activation after the layer: torch's default or a gain-1
scheme before a rectifier, a He-scaled weight before a saturating activation.

A mis-scaled layer matters only where the error compounds: a norm right after the layer (or
after the layer it feeds) resets the scale, and a loss that stays above :attr:`Thresholds.
mismatch_loss` across the mismatched layers is no finding.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from initlab.doctor.finding import Finding, Severity, Thresholds, fix_plan
from initlab.doctor.metrics import WeightRecord
from initlab.doctor.probe import LayerRecord
from initlab.errors import InitlabError
from initlab.layers import activation_kind, is_norm
from initlab.plan.activations import ActivationMap

__all__ = ["mismatch_findings", "normalized_layers"]


def normalized_layers(
    records: Sequence[LayerRecord], model: nn.Module | None, blocks: set[str]
) -> set[str]:
    """Layers whose output goes straight into a normalization layer (which rescales it).

    With the model, norms are recognised by type or behaviour (:func:`initlab.layers.is_norm`:
    LLaMA's and T5's RMSNorm classes too); without it the class name is all there is. A block's
    own record (its output, recorded when it returns) is not a step on that path: in a pre-norm
    transformer the branch's last layer is followed by the block's end, then the next norm.
    """
    path = [r for r in records if r.name not in blocks]
    if model is None:
        norms = {r.name for r in path if "norm" in r.kind.lower()}
    else:
        modules = dict(model.named_modules())
        names = {r.name for r in path if r.name in modules}
        norms = {name for name in names if is_norm(modules[name])}
    return {
        record.name for record, following in itertools.pairwise(path) if following.name in norms
    }


@dataclass
class _Mismatched:
    """The weights whose scale does not fit the activation after them, by kind, and each
    rectifier layer's variance ratio to He's (``gain_sq / he``)."""

    default_relu: list[WeightRecord] = field(default_factory=list)
    xavier_relu: list[WeightRecord] = field(default_factory=list)
    he_tanh: list[WeightRecord] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)


def _classify(
    weights: Sequence[WeightRecord],
    activations: ActivationMap,
    limits: Thresholds,
    normalized: set[str],
) -> _Mismatched:
    def near(value: float, target: float) -> bool:
        return abs(value - target) <= limits.gain_tolerance * target

    found = _Mismatched()
    # The first layer reads the raw input, not a previous activation's output: the
    # variance-preserving gain argument (He et al., 2015, eq. 7) does not constrain it.
    # A mis-scaled layer matters when the error compounds: a norm right after it, or right
    # after the layer it feeds (a transformer's MLP: Linear, GELU, Linear, add & LayerNorm),
    # resets the scale before it does.
    for w, following in zip(weights[1:], [*weights[2:], None], strict=True):
        activation = activations.get(w.layer)
        if activation is None or w.layer in normalized or w.fan_in < limits.mismatch_fan_in:
            continue
        if following is not None and following.layer in normalized:
            continue
        try:
            kind = activation_kind(activation.name)
        except InitlabError:  # an activation initlab cannot judge is not called a mismatch
            continue
        xavier = 2.0 * w.fan_in / (w.fan_in + w.fan_out)
        # Only rectifiers (hard or leaky) zero part of their input, which is what He's gain 2
        # restores (He et al., 2015). GELU/SiLU ("smooth") pass small negatives, their gain is
        # a second-moment one, and PyTorch's default before them is not "the ReLU mistake".
        if kind.is_rectifier:
            he = kind.gain(activation.param) ** 2
            if near(w.gain_sq, 1.0 / 3.0) and not near(w.gain_sq, he):
                found.default_relu.append(w)
            elif (near(w.gain_sq, xavier) or near(w.gain_sq, 1.0)) and not near(w.gain_sq, he):
                found.xavier_relu.append(w)
            found.losses[w.name] = w.gain_sq / he
        elif kind.family == "saturating" and near(w.gain_sq, 2.0):
            found.he_tanh.append(w)
    return found


def mismatch_findings(
    weights: Sequence[WeightRecord],
    activations: ActivationMap | None,
    limits: Thresholds,
    normalized: set[str],
) -> list[Finding]:
    """The init-scale mismatches that compound (see the module docstring).

    A group of rectifier layers is reported only when the product of their variance ratios
    to He's falls below :attr:`Thresholds.mismatch_loss`.
    """
    if activations is None or len(weights) < limits.mismatch_depth:
        return []
    found = _classify(weights, activations, limits, normalized)
    default_relu, xavier_relu = found.default_relu, found.xavier_relu
    if math.prod(found.losses[w.name] for w in default_relu) > limits.mismatch_loss:
        default_relu = []
    if math.prod(found.losses[w.name] for w in xavier_relu) > limits.mismatch_loss:
        xavier_relu = []
    relu_evidence = "effective gain^2 = Var(W) * fan_in of {:.3g} where ReLU needs 2"
    return [
        *_finding(
            default_relu,
            "torch_default_relu",
            "critical",
            "PyTorch's default init (U(+-1/sqrt(fan_in)), 1/6 of He's variance) in a deep "
            "ReLU net: the signal shrinks by sqrt(1/6) per layer.",
            relu_evidence,
            "Use He (kaiming_normal_, nonlinearity='relu') for layers followed by ReLU.",
            "A per-layer std factor near 1 instead of ~0.41.",
        ),
        *_finding(
            xavier_relu,
            "xavier_before_relu",
            "warning",
            "Gain-1 weights (Xavier, LeCun, plain orthogonal) before ReLU: half the "
            "variance is lost per layer (ReLU zeroes half its input; He et al., 2015).",
            relu_evidence,
            "Use He (gain sqrt 2) for layers followed by ReLU.",
            "A per-layer std factor near 1 instead of ~0.71.",
        ),
        *_finding(
            found.he_tanh,
            "he_before_tanh",
            "warning",
            "He-scaled weights before tanh/sigmoid: the ReLU gain sqrt 2 pushes saturating "
            "activations toward saturation and the chaotic regime (Poole et al., 2016).",
            "effective gain^2 of {:.3g} (He's 2) before a saturating activation",
            "Use Xavier (Glorot) with the activation's gain for tanh/sigmoid layers.",
            "Pre-activations of std near 1 and correlations that neither vanish nor blow up.",
        ),
    ]


def _finding(
    hit: Sequence[WeightRecord],
    code: str,
    severity: Severity,
    title: str,
    evidence: str,
    fix: str,
    expected: str,
) -> list[Finding]:
    """The finding about the mis-scaled weights ``hit`` (none when there are none); the
    evidence gives their mean effective gain^2, the fix plan re-draws their layers."""
    if not hit:
        return []
    layers = tuple(w.layer for w in hit)
    mean_gain_sq = sum(w.gain_sq for w in hit) / len(hit)
    return [
        Finding(
            code,
            severity,
            title,
            layers,
            evidence.format(mean_gain_sq),
            fix,
            expected,
            fix_plan(list(layers)),
        )
    ]
