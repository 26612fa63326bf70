r"""muP's zero-initialized query: :math:`W_Q = 0` at init (Tensor Programs V, Appendix D.2).

Yang et al. (2022) recommend initializing the query projection to zero: the attention logits
:math:`q^\top k / d_{head}` are then 0 at init, every position attends uniformly, and nothing
about the attention depends on the width at step 0; the query's learning rate is muP's hidden
one as before. :func:`zero_query` applies it to a :class:`~initlab.parametrize.ParameterRow`
table and the plan's rules:

================================================  ============================================
query projection                                  what is zero
================================================  ============================================
a separate Linear (``q_proj``, ``query``, ``wq``  the whole weight (``init="zeros"``)
... :mod:`initlab.plan.recipes.transformer_layers`)
a stacked weight initlab knows
(``nn.MultiheadAttention.in_proj_weight``,        its ``q`` block (a rule with
GPT-2's ``c_attn``)                               ``blocks=("q",)``); k and v keep their rule
a fused q/k/v initlab does not know (timm's       nothing: a note says so
``attn.qkv``, ``query_key_value``)
================================================  ============================================

The query's bias (0 under muP) is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from torch import nn

from initlab.parametrize.parametrization import ParameterRow
from initlab.plan.recipes.transformer_layers import transformer_parts
from initlab.plan.rules import Rule, rule
from initlab.plan.sites import ParameterSite

__all__ = ["ZeroQuery", "zero_query"]

_SOURCE = "zero query (Tensor Programs V, D.2)"


@dataclass(frozen=True)
class ZeroQuery:
    """The table and rules with the query zeroed.

    Attributes:
        rows: the rows, a separate query's with ``init="zeros"`` and a stacked one's with the
            ``q`` block named in its ``source``.
        block_rules: the rules that zero the ``q`` block of stacked weights, by parameter name
            (the plan puts each before the parameter's own rule).
        notes: the fused q/k/v weights whose query could not be zeroed.
    """

    rows: tuple[ParameterRow, ...]
    block_rules: dict[str, Rule]
    notes: tuple[str, ...]


def zero_query(
    model: nn.Module, rows: Sequence[ParameterRow], sites: Sequence[ParameterSite]
) -> ZeroQuery:
    """``rows`` with every query projection of ``model`` zero at init (module docstring).

    Example:
        >>> p = parametrize(model, "mup", base=small, zero_query=True)  # doctest: +SKIP
    """
    parts = transformer_parts(model)
    separate = {part.weight for part in parts if part.kind == "query"}
    fused = [part.weight for part in parts if part.kind == "qkv"]
    blocked = {site.name for site in sites if site.blocks}
    stacked = {
        site.name
        for site in sites
        if site.role == "weight" and any(block.label == "q" for block in site.blocks)
    }
    updated, block_rules = [], {}
    for row in rows:
        if row.name in separate and row.init != "keep":
            row = replace(row, init="zeros", init_std=0.0, source=f"{row.source}; {_SOURCE}")
        elif row.name in stacked and row.init != "keep":
            block_rules[row.name] = rule(
                regex=f"^{re.escape(row.name)}$", scheme="zeros", blocks=("q",)
            )
            row = replace(row, source=f"{row.source}; q block 0: {_SOURCE}")
        updated.append(row)
    notes = tuple(
        f"zero_query: {name!r} holds q, k and v in one weight whose blocks initlab does not "
        "know, so its query is not zeroed; split the layer into q/k/v projections to zero it."
        for name in fused
        if name not in blocked
    )
    return ZeroQuery(tuple(updated), block_rules, notes)
