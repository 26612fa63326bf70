"""Findings about the weights themselves: symmetric units, layers cloned across depth, and
normalization scales drawn like weights."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from initlab.doctor.finding import Finding, Thresholds, fix_plan
from initlab.doctor.metrics import WeightRecord
from initlab.doctor.signal_path import cloned_weights
from initlab.plan.plan import Plan
from initlab.plan.presets import residual_blocks
from initlab.plan.rules import rule
from initlab.plan.sites import parameter_sites

__all__ = ["clone_findings", "norm_scale_findings", "symmetry_findings"]


def symmetry_findings(
    weights: Sequence[WeightRecord], limits: Thresholds, model: nn.Module | None
) -> list[Finding]:
    """Units that start equal and get equal gradients (see :class:`WeightRecord`).

    The last layer of a residual branch is spared when it is zero (Fixup, zero-init
    residual): its output joins the skip path, whose later layers tell its units apart as soon
    as a zero classifier head (which blocks every gradient at the first step) has moved.
    """
    branch_ends = (
        {branch[-1] for branch in residual_blocks(model).values()} if model is not None else set()
    )
    hit = [
        w
        for w in weights
        if w.symmetric_rows >= limits.symmetric
        and not (w.layer in branch_ends and w.zero_rows == 1.0)
    ]
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
                f"{w.name}: {w.symmetric_rows:.0%} of its rows equal another row, and so do "
                f"their gradients ({w.zero_rows:.0%} zero rows)"
                for w in hit[:4]
            ),
            "Break the symmetry with a random init (He/Xavier/orthogonal); constant and zero "
            "init are for biases and norm scales (a zero last layer of a residual branch or a "
            "zero classifier head is fine: its units get different gradients).",
            "Distinct rows in every weight.",
            fix_plan([w.layer for w in hit]),
        )
    ]


def clone_findings(model: nn.Module) -> list[Finding]:
    groups = cloned_weights(model)
    if not groups:
        return []
    layer_groups = list(
        dict.fromkeys(tuple(dict.fromkeys(layer for _, layer in group)) for group in groups)
    )
    copies = [layer for layers in layer_groups for layer in layers[1:]]
    evidence = "bit-identical weights in distinct tensors: " + "; ".join(
        f"{' = '.join(name for name, _ in group[:3])}{' = ...' if len(group) > 3 else ''} "
        f"({len(group)} tensors)"
        for group in groups[:4]
    )
    return [
        Finding(
            "cloned_layers",
            "warning",
            f"{len(copies)} layer(s) start as exact copies of another layer (copy.deepcopy of "
            "one initialized layer, or nn.TransformerEncoder(layer, n), which deep-copies it).",
            tuple(layer for layers in layer_groups for layer in layers),
            evidence,
            "Copies start fully correlated and only their different inputs tell them apart: "
            "the randomness the depth should have is wasted, and it is almost always a "
            "mistake. Give every copy its own draw: apply the plan (it keeps the first of each "
            "group and re-draws the others), call reset_parameters() on each copy, or build "
            "each layer fresh. Deliberate sharing (ALBERT, tied embeddings) is one tensor and "
            "is never reported.",
            "Distinct weights in every layer.",
            fix_plan(copies),
        )
    ]


def norm_scale_findings(model: nn.Module) -> list[Finding]:
    """Norm scales drawn at random around 0 (e.g. N(0, 0.02), as for a Linear weight).

    A norm's scale starts at 1 (or 0 at the end of a residual branch, on purpose): then the
    norm hands on a unit-scale signal. Scales of random sign and size ~0.02 shrink every
    normalized signal 50-fold and flip channels at random; no recipe does that on purpose,
    it is a weight rule that reached the norms. Said of vectors of at least 8 scales whose
    mean is within one std of 0 (constant vectors, whatever their value, are deliberate).
    """
    parameters = dict(model.named_parameters())
    hit: list[tuple[str, float, float]] = []
    for site in parameter_sites(model):
        tensor = parameters.get(site.name)
        if site.role != "norm_weight" or tensor is None or tensor.is_meta:
            continue
        if tensor.dim() != 1 or tensor.numel() < 8:
            continue
        values = tensor.detach().float()
        std, mean = float(values.std()), float(values.mean())
        if std > 0 and abs(mean) < std:
            hit.append((site.module_name, mean, std))
    if not hit:
        return []
    layers = tuple(name for name, _, _ in hit)
    shown = "; ".join(f"{name}: mean {mean:.2g}, std {std:.2g}" for name, mean, std in hit[:3])
    return [
        Finding(
            "random_norm_scales",
            "warning",
            f"{len(hit)} normalization layer(s) have scales drawn at random around 0: each "
            "shrinks the signal it normalizes and flips channels at random.",
            layers,
            shown + (f"; and {len(hit) - 3} more" if len(hit) > 3 else ""),
            "Start norm scales at 1 (a weight rule such as normal(std=0.02) probably reached "
            "them; rules by role keep them apart: role='norm_weight' -> ones).",
            "Norm outputs of unit scale.",
            Plan(
                [rule(f"{name}.weight", "ones") for name in layers],
                "keep",
                name="doctor-fix",
                warn_unused=False,
            ),
        )
    ]
