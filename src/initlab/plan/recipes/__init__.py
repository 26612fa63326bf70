"""The field's init recipes as presets, one module per family of sources.

* :mod:`~initlab.plan.recipes.llm`: torchtitan, Megatron-LM, Mamba
  (:mod:`~initlab.plan.recipes.state_space`);
* :mod:`~initlab.plan.recipes.olmo`: OLMo;
* :mod:`~initlab.plan.recipes.families`: Hugging Face model families (GPT-2, BERT, LLaMA);
* :mod:`~initlab.plan.recipes.vision`: timm's ViT modes;
* :mod:`~initlab.plan.recipes.deep_transformers`: T-Fixup and DeepNet;
* :mod:`~initlab.plan.recipes.deep`: ReZero/SkipInit, ZerO
  (:mod:`~initlab.plan.recipes.zero_init`), SmallInitEmb.

What they share: :mod:`~initlab.plan.recipes.transformer_layers` (which layer of a transformer
is which, by name, for every codebase), :mod:`~initlab.plan.recipes.role_rules` (laws by layer
role as rules) and :mod:`~initlab.plan.recipes.name_patterns` (short patterns for found names).

Each module exports ``RECIPES``: preset name -> builder ``(model, **options) -> Plan``;
:mod:`initlab.plan.presets` merges them with its own.
"""

from __future__ import annotations

from collections.abc import Callable

from initlab.plan.plan import Plan
from initlab.plan.recipes import deep, deep_transformers, families, llm, olmo, vision

__all__ = ["RECIPES"]

RECIPES: dict[str, Callable[..., Plan]] = {
    **llm.RECIPES,
    **olmo.RECIPES,
    **families.RECIPES,
    **vision.RECIPES,
    **deep_transformers.RECIPES,
    **deep.RECIPES,
}
