"""`init_model`: initialize a whole model in one line, with a preset name, ``"auto"`` or a Plan."""

from __future__ import annotations

from typing import Any

from torch import nn

from initlab.arguments import check_module, check_seed
from initlab.plan.assignments import Assignments
from initlab.plan.plan import Plan
from initlab.plan.presets import as_plan

__all__ = ["init_model"]


def init_model(
    model: nn.Module,
    plan: str | Plan = "auto",
    seed: int = 0,
    *,
    example: Any = None,
    **options: Any,
) -> Assignments:
    """Initialize ``model`` with a preset name, ``"auto"``, or a :class:`Plan`; returns the table.

    ``example`` (an input batch) lets ``auto`` run the model once to see each layer's
    activation where ``torch.fx`` cannot trace it (see :meth:`Plan.resolve`); ``options`` go to
    the preset.

    Example:
        >>> initlab.init_model(model, "kaiming", seed=0)
        >>> initlab.init_model(gpt, "gpt2")            # n_layer read from the model
    """
    check_module("init_model", model)
    seed = check_seed("init_model", seed)
    return as_plan(plan, model, **options).apply(model, seed=seed, example=example)
