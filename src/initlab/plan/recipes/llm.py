r"""Presets: the init recipes of the large-language-model codebases, law for law.

=====================  ========================================================================
preset                 source
=====================  ========================================================================
``torchtitan-llama``   pytorch/torchtitan ``torchtitan/models/llama3/model/model.py``
                       (``Transformer.init_weights``; since 2026 the same laws as
                       ``param_init`` in ``torchtitan/models/llama3/__init__.py``)
``megatron``           NVIDIA/Megatron-LM ``megatron/core/utils.py`` (``init_method_normal``,
                       ``scaled_init_method_normal``), ``megatron/core/transformer/
                       transformer_config.py``; Shoeybi et al. (2019)
``mamba``              state-spaces/mamba (see :mod:`initlab.plan.recipes.state_space`)
=====================  ========================================================================

OLMo's preset is in :mod:`initlab.plan.recipes.olmo`. Layers are found by role
(:mod:`initlab.plan.recipes.transformer_layers`): torchtitan's ``wo`` and HF's ``o_proj`` are
both an attention output projection (:mod:`initlab.plan.recipes.role_rules` turns laws by role
into rules). Given the model, a preset writes one rule
per recognized layer (``'layers.3.attention.wo.weight'``), so the dry-run table names the rule
each parameter got; without a model it writes rules by role and block index (``--show``).
Parameters no rule matches are kept, and the table says ``default keep``: a model whose names
the preset does not know shows there (and the preset warns).
"""

from __future__ import annotations

import glob
import math
from collections.abc import Callable

from torch import nn

from initlab.plan.plan import Plan
from initlab.plan.recipes.role_rules import (
    RoleLaw,
    check_flag,
    check_std,
    count_layers,
    layer_width,
    norm_and_bias_rules,
    role_rules,
    warn_unrecognized,
)
from initlab.plan.recipes.state_space import mamba
from initlab.plan.recipes.transformer_layers import (
    RESIDUAL_OUTPUTS,
    RoleLayer,
    find_layers,
)
from initlab.plan.rules import Rule, rule
from initlab.schemes import Normal, Scheme, TruncatedNormal

__all__ = ["RECIPES", "megatron", "torchtitan_llama"]


def _titan_normal(std: float) -> Scheme:
    # torchtitan's trunc_normal_ keeps torch's default cut a=-2, b=2 in *absolute* units: at
    # std 0.02 that is +-100 std, a normal law in all but name. It is drawn as written.
    return TruncatedNormal(0.0, std, -2.0, 2.0)


def torchtitan_llama(
    model: nn.Module | None,
    depth_init: bool = True,
    n_layers: int | None = None,
    dim: int | None = None,
) -> Plan:
    r"""torchtitan's Llama 3 init (pytorch/torchtitan ``torchtitan/models/llama3/model/model.py``).

    With :math:`\mathrm{TN}(\sigma; a, b)` the normal law of std :math:`\sigma` truncated to
    :math:`[a, b]` and :math:`\ell` the block index (``layer_id``):

    ======================================  ================================================
    parameter                               law
    ======================================  ================================================
    ``wq`` ``wk`` ``wv`` (``wqkv``), ``w1``  :math:`\mathrm{TN}(0.02; -2, 2)`
    ``wo``, ``w2``, ``w3``                  :math:`\mathrm{TN}(s_\ell; -2, 2)`, ``depth_init``:
                                            :math:`s_\ell = 0.02/\sqrt{2(\ell+1)}`, else
                                            :math:`0.02/\sqrt{2 L}`
    ``tok_embeddings``                      :math:`\mathcal N(0, 1)`
    ``output`` / ``lm_head``                :math:`\mathrm{TN}(d^{-1/2}; \pm 3 d^{-1/2})`,
                                            :math:`d` = ``dim`` (its input width)
    norms (RMSNorm)                         1; biases 0
    ======================================  ================================================

    The cut at :math:`\pm 2` is absolute (torch's ``trunc_normal_`` default), i.e. :math:`\pm
    100\sigma`. An embedding tied to the output layer gets the output layer's law (torchtitan
    skips the embedding's init when tied).

    Args:
        model: the model (its layers found by role), or ``None`` to list rules by block index.
        depth_init: scale by the block's own index (default, as torchtitan) or by the depth.
        n_layers: :math:`L` (read from the model when not given; needed without a model).
        dim: the model width, for the output layer without a model.
    """
    depth_init = check_flag("torchtitan-llama", "depth_init", depth_init)
    depth = None
    if not depth_init or model is None:
        depth = count_layers(model, n_layers, preset="torchtitan-llama", option="n_layers")

    def scaled(layer: RoleLayer) -> Scheme:
        if depth_init:
            assert layer.layer is not None  # the projection roles hold inside blocks only
            return _titan_normal(0.02 / math.sqrt(2 * (layer.layer + 1)))
        assert depth is not None
        return _titan_normal(0.02 / math.sqrt(2 * depth))

    def head(layer: RoleLayer) -> Scheme:
        std = layer_width(layer, dim, "torchtitan-llama", "dim") ** -0.5
        return TruncatedNormal(0.0, std, -3.0, 3.0, unit="std")

    laws = [
        RoleLaw(("attention_output", "mlp_output", "mlp_up"), scaled, by_layer=depth_init),
        RoleLaw(("attention_input", "mlp_input"), lambda layer: _titan_normal(0.02)),
        RoleLaw(("head",), head),
    ]
    warn_unrecognized(model, "torchtitan-llama", RESIDUAL_OUTPUTS, "their weights are kept")
    rules = role_rules(model, laws, depth)
    rules += _tied_head_rules(model, head)
    rules += [rule(role="embedding", scheme="normal", std=1.0), *norm_and_bias_rules()]
    return Plan(rules, default="keep", name="torchtitan-llama", warn_unused=False)


def _tied_head_rules(model: nn.Module | None, head: Callable[[RoleLayer], Scheme]) -> list[Rule]:
    """The head's law for an embedding that shares its tensor (listed under the embedding)."""
    if model is None:
        return []
    modules = dict(model.named_modules())
    rules = []
    for layer in find_layers(model, "head"):
        weight = modules[layer.name].weight
        for name, module in modules.items():
            if isinstance(module, nn.Embedding) and module.weight is weight:
                rules.append(rule(f"{glob.escape(name)}.weight", head(layer)))
    return rules


# --- Megatron-LM -------------------------------------------------------------------------------
_MEGATRON_EMBEDDINGS = r"(^|\.)(word_embeddings|position_embeddings|tokentype_embeddings)\.weight$"


def megatron(
    model: nn.Module | None,
    init_method_std: float = 0.02,
    num_layers: int | None = None,
    embedding_init_method_std: float | None = None,
    multiplier: float = 2.0,
) -> Plan:
    r"""Megatron-LM's init (NVIDIA/Megatron-LM ``megatron/core/utils.py``,
    ``megatron/core/transformer/transformer_config.py``; Shoeybi et al., 2019).

    =========================================  ==============================================
    parameter                                  law
    =========================================  ==============================================
    residual outputs: ``linear_proj``,         ``scaled_init_method_normal``:
    ``linear_fc2`` (core), ``dense``,          :math:`\mathcal N(0, (\sigma/\sqrt{mL})^2)`
    ``dense_4h_to_h`` (legacy), any name of
    the roles ``attention_output`` /
    ``mlp_output``
    every other weight (``linear_qkv``,        ``init_method_normal``: :math:`\mathcal N(0,
    ``linear_fc1``, ``output_layer``)          \sigma^2)`
    ``word_embeddings``, ``position_           :math:`\mathcal N(0, \sigma_e^2)`,
    embeddings``, any ``nn.Embedding``         :math:`\sigma_e` = ``embedding_init_method_std``
                                               or :math:`\sigma`
    biases; norms (``layer_norm_weight`` of    0; 1 / 0
    TE's fused linears too)
    =========================================  ==============================================

    Args:
        model: the model, or ``None`` (then ``num_layers`` is needed).
        init_method_std: :math:`\sigma`.
        num_layers: :math:`L`, read from the model when not given.
        embedding_init_method_std: :math:`\sigma_e`.
        multiplier: :math:`m`: 2 (Megatron's default), 1 for its hybrid (Mamba) models.
    """
    sigma = check_std("megatron", "init_method_std", init_method_std)
    embedding = check_std(
        "megatron", "embedding_init_method_std", embedding_init_method_std, optional=True
    )
    factor = check_std("megatron", "multiplier", multiplier)
    assert sigma is not None
    assert factor is not None
    depth = count_layers(model, num_layers, preset="megatron", option="num_layers")
    scaled = Normal(0.0, sigma / math.sqrt(factor * depth))
    warn_unrecognized(model, "megatron", RESIDUAL_OUTPUTS, "they get the unscaled init_method")
    rules = role_rules(model, [RoleLaw(RESIDUAL_OUTPUTS, lambda layer: scaled)], depth)
    rules += [
        rule(regex=_MEGATRON_EMBEDDINGS, scheme="normal", std=embedding or sigma),
        rule(role="embedding", scheme="normal", std=embedding or sigma),
        rule(role="weight", scheme="normal", std=sigma),
        rule(regex=r"(^|\.)layer_norm_weight$", scheme="ones"),
        rule(regex=r"(^|\.)layer_norm_bias$", scheme="zeros"),
        *norm_and_bias_rules(),
    ]
    return Plan(rules, default="keep", name="megatron", warn_unused=False)


RECIPES: dict[str, Callable[..., Plan]] = {
    "torchtitan-llama": torchtitan_llama,
    "megatron": megatron,
    "mamba": mamba,
}
"""Preset name -> builder (model, **options) -> Plan."""
