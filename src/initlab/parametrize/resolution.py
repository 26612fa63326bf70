r"""`parametrize`: a width/depth parametrization of an unmodified model, as plain data.

.. code-block:: python

    model, small = make_mlp(width=1024), make_mlp(width=64)
    p = initlab.parametrize(model, "mup", base=small, optimizer="adam")
    p.plan.apply(model, seed=0)                        # the init
    optimizer = torch.optim.Adam(p.param_groups(lr=3e-3))  # per-parameter learning rates
    print(p)                                           # the table: role, multipliers, std, lr

A :class:`Parametrization` holds a :class:`~initlab.Plan` (one rule per parameter: its init),
one :class:`ParameterRow` per parameter (role by width, width multipliers, init std,
learning-rate and weight-decay multipliers, the rule and its source) and notes: the forward
changes a parametrization needs that initlab does not make (attention logits :math:`1/d_{head}`,
a tied readout's multiplier, and when depth-muP's folded branch multiplier is exact). The
model is never modified and needs no special layers. The rules: :mod:`initlab.parametrize.rules`
(sp, mup, spectral) and :mod:`initlab.parametrize.depth` (depth-mup).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from initlab.arguments import check_module
from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.layers import activation_kind
from initlab.parametrize import rules
from initlab.parametrize.attention import attention_heads, attention_notes
from initlab.parametrize.depth import DepthScaling, depth_scalings
from initlab.parametrize.parametrization import ParameterRow, Parametrization
from initlab.parametrize.rules import InitScale, Optimizer, Readout, Scaling
from initlab.parametrize.widths import (
    ParameterWidths,
    counterpart,
    detect_width,
    widths_from_base,
    widths_from_base_width,
)
from initlab.parametrize.zero_query import zero_query as zeroed_query
from initlab.plan.activations import detect_activations
from initlab.plan.plan import Plan
from initlab.plan.rules import Rule, rule
from initlab.plan.sites import ParameterSite, parameter_sites

__all__ = ["PARAMETRIZATIONS", "parametrize"]

#: The parametrizations :func:`parametrize` knows.
PARAMETRIZATIONS: tuple[str, ...] = ("sp", "mup", "spectral", "depth-mup")


@dataclass(frozen=True)
class _Options:
    """The checked options of one :func:`parametrize` call.

    Attributes:
        name: the parametrization.
        optimizer: ``adam`` or ``sgd``.
        readout: muP's output init, ``scaled`` or ``zero``.
        std: the constant base std for weights and embeddings, or ``None``.
    """

    name: str
    optimizer: Optimizer
    readout: Readout
    std: float | None


def _check_options(name: object, optimizer: object, readout: object, std: object) -> _Options:
    if not isinstance(name, str) or name not in PARAMETRIZATIONS:
        raise UnknownNameError(did_you_mean("parametrization", str(name), PARAMETRIZATIONS))
    if std is not None and (
        isinstance(std, bool) or not isinstance(std, int | float) or not 0 < std < math.inf
    ):
        raise ConfigError(f"parametrize: std must be a positive finite number, got {std!r}.")
    return _Options(
        name,
        rules.check_optimizer(optimizer),
        rules.check_readout(readout),
        None if std is None else float(std),
    )


def _gains(model: nn.Module, sites: Sequence[ParameterSite], example: Any) -> dict[str, float]:
    """The gain of the activation after each layer weight (1 for a stacked q/k/v weight)."""
    activations = detect_activations(model, example=example)
    gains = {}
    for site in sites:
        found = activations.get(site.module_name)
        if site.role == "weight" and not site.blocks and found is not None:
            gains[site.name] = activation_kind(found.name).gain(found.param)
    return gains


def _scaling(item: ParameterWidths, init: InitScale, options: _Options) -> Scaling:
    if options.name == "sp":
        return rules.sp(item, init, options.optimizer)
    if options.name == "spectral":
        return rules.spectral(item, init, options.optimizer)
    return rules.mup(item, init, options.optimizer, options.readout)


def _row(item: ParameterWidths, scaling: Scaling, depth: DepthScaling | None) -> ParameterRow:
    std, lr, source = scaling.std, scaling.lr_multiplier, scaling.source
    if depth is not None and depth.source(item.site):
        std = None if std is None else std * depth.std_factor(item.site)
        lr *= depth.lr_factor(item.site)
        source = f"{source}; {depth.source(item.site)}"
    site = item.site
    return ParameterRow(
        name=site.name,
        shape=site.shape,
        layer_role=site.role,
        role=item.role,
        fan_in=item.fan_in,
        fan_out=item.fan_out,
        base_fan_in=item.base_fan_in,
        base_fan_out=item.base_fan_out,
        init=scaling.init,
        init_std=std,
        lr_multiplier=lr,
        source=source,
    )


def _plan_rule(row: ParameterRow) -> Rule | None:
    """The plan's rule for ``row`` (``None`` for a kept parameter: the plan's default)."""
    name = f"^{re.escape(row.name)}$"
    if row.init == "normal":
        return rule(regex=name, scheme="normal", std=row.init_std)
    if row.init in ("zeros", "ones"):
        return rule(regex=name, scheme=row.init)
    return None


def _widths(
    sites: Sequence[ParameterSite],
    base_sites: Sequence[ParameterSite] | None,
    *,
    base_width: int | None,
    width: int | None,
    name: str,
) -> list[ParameterWidths]:
    """Each parameter's fans against the base (the model itself when there is none)."""
    if base_sites is not None:
        return widths_from_base(sites, base_sites, allow_blocks=name == "depth-mup")
    if base_width is not None:
        model_width = detect_width(sites) if width is None else width
        return widths_from_base_width(sites, width=model_width, base_width=base_width)
    if name in ("mup", "spectral"):
        raise ConfigError(
            f"parametrize {name!r} scales with width relative to a base model: pass base= (a "
            "smaller instance of the same model, e.g. width 64) or base_width= (the width the "
            "hyperparameters were tuned at)."
        )
    return widths_from_base(sites, sites, allow_blocks=False)


def _base_head_dims(
    model: nn.Module, base: nn.Module | None, width: int | None, base_width: int | None
) -> dict[str, float] | None:
    """The base's head dimension per attention module (``None``: no base to compare with)."""
    if base is not None:
        base_heads = attention_heads(base)
        found = {}
        for name in attention_heads(model):
            match = counterpart(name, base_heads.keys(), allow_blocks=True)
            if match is not None:
                found[name] = float(base_heads[match].head_dim)
        return found
    if base_width is None or width is None:
        return None
    # With base_width only, the number of heads is assumed fixed: d_head scales with width.
    return {name: head.head_dim * base_width / width
            for name, head in attention_heads(model).items()}  # fmt: skip


def _tied_notes(rows: Sequence[ParameterRow], sites: Sequence[ParameterSite]) -> list[str]:
    """A tied embedding/readout whose width grows: muP's readout multiplier is a forward change."""
    tied = {site.name: site.tied_to for site in sites if site.tied_to}
    notes = []
    for row in rows:
        if row.name in tied and row.width_multiplier_out != 1.0:
            factor = 1.0 / row.width_multiplier_out
            notes.append(
                f"{row.name!r} is tied to {', '.join(tied[row.name])}: initialized and trained "
                f"as an input weight; muP's readout then needs its logits multiplied by "
                f"1/m = {factor:.6g} in the forward (Tensor Programs V, Table 8; mup's "
                "MuSharedReadout), which initlab does not add."
            )
    return notes


def parametrize(
    model: nn.Module,
    name: str = "mup",
    *,
    base: nn.Module | None = None,
    base_width: int | None = None,
    width: int | None = None,
    optimizer: Optimizer = "adam",
    std: float | None = None,
    readout: Readout = "scaled",
    base_depth: int | None = None,
    branch_outputs: Sequence[str] | None = None,
    example: Any = None,
    zero_query: bool = False,
) -> Parametrization:
    r"""The init and per-parameter learning rates of a parametrization, for an unmodified model.

    Rules (:math:`\sigma_b` the std at the base shapes, :math:`g` the activation's gain,
    :math:`m_{in}, m_{out}` the width multipliers of fan-in and fan-out, :math:`r = L_b/L`):

    =========  ==================  ========================================  ===================
    name       role                init std                                  lr x (Adam / SGD)
    =========  ==================  ========================================  ===================
    sp         layer weight        :math:`g/\sqrt{n_{in}}` (or ``std``)      1 / 1
    mup        input, embedding    :math:`\sigma_b`                          1 / m_out
    mup        hidden              :math:`\sigma_b/\sqrt{m_{in}}`            1/m_in / m_out/m_in
    mup        output              :math:`\sigma_b/m_{in}` (or 0)            1/m_in / 1/m_in
    mup        bias, norm, vector  0, 1, kept                                1 / m_out
    spectral   layer weight        :math:`\sigma_b \cdot s / s_{base}`       1/m_in / m_out/m_in
    depth-mup  branch output       muP :math:`\times\sqrt r`                 muP x r / x r
    depth-mup  rest of a block     muP                                       muP x sqrt(r) / x 1
    =========  ==================  ========================================  ===================

    with :math:`s = \min(1, \sqrt{n_{out}/n_{in}})/\sqrt{n_{in}}` (spectral). At the base
    shapes every multiplier is 1 and every rule gives the base model's init.

    Sources: Yang et al. 2022 ("Tensor Programs V", Table 3), Yang, Simon & Bernstein 2023 ("A
    Spectral Condition for Feature Learning"), Yang et al. 2023 ("Tensor Programs VI") and
    Bordelon et al. 2023; details in :mod:`initlab.parametrize.rules` and
    :mod:`initlab.parametrize.depth`.

    Args:
        model: the model (left unchanged).
        name: ``sp``, ``mup``, ``spectral`` or ``depth-mup``.
        base: a smaller instance of the same model: a dimension that differs from the base's
            is a width dimension (as ``mup``'s ``set_base_shapes``); for ``depth-mup`` it may
            also have fewer blocks.
        base_width: instead of ``base``: the width the base had; channel counts that are
            multiples of the model's width scale (:mod:`initlab.parametrize.widths`).
        width: the model's width, with ``base_width`` (default: the most common channel count).
        optimizer: ``adam`` (Adam, AdamW, RMSprop...) or ``sgd`` (with or without momentum).
        std: a constant std for weights and embeddings at the base (GPT-2's 0.02); default
            :math:`g/\sqrt{n_{in}}` with the gain of the activation after each layer.
        readout: muP's output weights ``scaled`` (:math:`\sigma_b/m_{in}`) or ``zero``.
        base_depth: ``depth-mup``'s :math:`L_b` (default: the base's blocks, else 1).
        branch_outputs: ``depth-mup``'s branch output layers, as glob patterns.
        example: an input batch, for finding the activations of a model fx cannot trace.
        zero_query: initialize every attention's query projection to 0 (Tensor Programs V,
            Appendix D.2: logits 0 at init, whatever the width): a separate ``q_proj`` whole,
            the ``q`` block of ``nn.MultiheadAttention.in_proj_weight`` or GPT-2's ``c_attn``
            (:mod:`initlab.parametrize.zero_query`).

    Raises:
        UnknownNameError: an unknown parametrization.
        ConfigError: a bad option, no base for ``mup``/``spectral``, or a base that does not
            match the model (the message names the parameter).

    Example:
        >>> p = parametrize(nn.Sequential(nn.Linear(8, 256), nn.ReLU(), nn.Linear(256, 2)),
        ...                 "mup", base_width=64)
        >>> p.row("2.weight").role, p.row("2.weight").lr_multiplier
        ('output', 0.25)
    """
    check_module("parametrize", model)
    options = _check_options(name, optimizer, readout, std)
    if base is not None and base_width is not None:
        raise ConfigError("parametrize: pass base= or base_width=, not both.")
    sites = parameter_sites(model)
    base_sites = None if base is None else parameter_sites(check_module("parametrize", base,
                                                                        name="base"))  # fmt: skip
    widths = _widths(sites, base_sites, base_width=base_width, width=width, name=options.name)
    depth = None
    if options.name == "depth-mup":
        depth = depth_scalings(sites, optimizer=options.optimizer, branch_outputs=branch_outputs,
                               base_sites=base_sites, base_depth=base_depth)  # fmt: skip
    gains = _gains(model, sites, example) if options.std is None else {}
    rows = tuple(
        _row(item, _scaling(item, InitScale(options.std, gains.get(item.site.name, 1.0)),
                            options), depth)
        for item in widths
    )  # fmt: skip
    query = zeroed_query(model, rows, sites) if _flag(zero_query, "zero_query") else None
    rows = query.rows if query is not None else rows
    block_rules = query.block_rules if query is not None else {}
    plan_rules = [
        r for row in rows for r in (block_rules.get(row.name), _plan_rule(row)) if r is not None
    ]
    notes = _notes(model, base, rows, sites, depth, width=width, base_width=base_width,
                   name=options.name)  # fmt: skip
    return Parametrization(
        name=options.name,
        optimizer=options.optimizer,
        plan=Plan(plan_rules, "keep", name=f"parametrize {options.name}", warn_unused=False),
        rows=rows,
        notes=notes + (query.notes if query is not None else ()),
        parameters=dict(model.named_parameters()),
    )  # fmt: skip


def _flag(value: object, option: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"parametrize: {option} must be True or False, got {value!r}.")
    return value


def _notes(
    model: nn.Module,
    base: nn.Module | None,
    rows: Sequence[ParameterRow],
    sites: Sequence[ParameterSite],
    depth: DepthScaling | None,
    *,
    width: int | None,
    base_width: int | None,
    name: str,
) -> tuple[str, ...]:
    """What the parametrization assumed, and the forward changes it needs but does not make."""
    notes: list[str] = []
    if base_width is not None:
        model_width = detect_width(sites) if width is None else width
        how = "given" if width is not None else "the most common channel count"
        notes.append(
            f"width {model_width} ({how}), base width {base_width}: channel counts that are "
            "multiples of the width scale with it; pass base= if a fixed dimension is one too."
        )
        width = model_width
    if name != "sp":
        heads = attention_heads(model)
        notes.extend(attention_notes(heads, _base_head_dims(model, base, width, base_width)))
        notes.extend(_tied_notes(rows, sites))
    if depth is not None:
        notes.extend(depth.notes())
    return tuple(notes)
