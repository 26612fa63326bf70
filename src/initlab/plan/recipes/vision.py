r"""timm's Vision Transformer initializations as one preset, ``timm-vit``, with its ``mode``.

Source: ``huggingface/pytorch-image-models``, ``timm/models/vision_transformer.py``:
``VisionTransformer.init_weights(mode)``, which draws the position embedding and the class and
register tokens, then ``named_apply``-s one of ``init_weights_vit_timm`` (``mode=""``),
``init_weights_vit_jax`` (``"jax"``, ``"jax_nlhb"``) or ``init_weights_vit_moco``
(``"moco"``), and ``fix_init_weight`` when ``fix_init=True``; ``trunc_normal_`` and
``lecun_normal_`` are ``timm/layers/weight_init.py``'s. The law per parameter:

================================  ===============================================================
parameter                         law
================================  ===============================================================
``pos_embed``                     truncated normal, std 0.02 cut at :math:`\pm 2` (absolute,
                                  as timm's ``trunc_normal_``), every mode
``cls_token``, ``reg_token``      :math:`\mathcal N(0, 10^{-12})` (std 1e-6), every mode
``mode=""``: ``nn.Linear``        weight truncated normal std 0.02 cut at :math:`\pm 2`; bias 0
``mode=""``: ``nn.Conv2d``        torch's default, which timm keeps (``needs_reset=False``):
(``patch_embed.proj``)            weight :math:`U(\pm 1/\sqrt{fan_{in}})`, bias the same
``jax``: ``nn.Linear`` ``head*``  weight 0; bias 0 (``jax_nlhb``: :math:`-\log C`, ``C`` the
                                  head's outputs)
``jax``: other ``nn.Linear``      weight ``xavier_uniform``; bias :math:`\mathcal N(0, 10^{-12})`
                                  in a module whose name holds ``mlp``, else 0
``jax``: ``nn.Conv2d``            weight ``lecun_normal`` (truncated at :math:`\pm 2\sigma`,
                                  :math:`\sigma = 1/(0.8796\sqrt{fan_{in}})`); bias 0
``moco``: ``nn.Linear`` ``*qkv*`` weight :math:`U(\pm\sqrt{6/(out/3 + in)})`: Xavier with the
                                  fans of one of q, k, v (``split=3``: 3 row blocks); bias 0
``moco``: other ``nn.Linear``     weight ``xavier_uniform``; bias 0
``moco``: ``nn.Conv2d``           torch's default, as ``mode=""``
``LayerScale`` ``gamma``          its ``init_values`` (timm's ``reset_parameters``)
``SwiGLU`` ``fc1_g``              weight :math:`\mathcal N(0, 10^{-12})`, bias 1 (its
                                  ``init_weights``, every mode); ``GluMlp``'s half-row gate
                                  init is not expressible per parameter and is not done
norms                             weight 1, bias 0
``fix_init=True``                 block ``i``'s ``attn.proj`` and ``mlp.fc2`` weights, after
                                  their mode's law, times :math:`1/\sqrt{2(i+1)}`
================================  ===============================================================

timm decides by module type (``nn.Linear``, ``nn.Conv2d``) and module name (``head``, ``mlp``,
``qkv``): the rules below say the same, so the dry-run table shows each parameter's rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

from initlab.errors import ConfigError
from initlab.plan.plan import Plan
from initlab.plan.recipes.name_patterns import names_regex
from initlab.plan.rules import Rule, rule
from initlab.plan.sites import parameter_sites

__all__ = ["RECIPES", "TIMM_VIT_MODES"]

TIMM_VIT_MODES = ("", "jax", "jax_nlhb", "moco")
_TRUNC_002: dict[str, Any] = {
    "std": 0.02,
    "a": -2.0,
    "b": 2.0,
}  # timm's trunc_normal_: the cut is absolute
_HEAD = r"^head"  # timm: the Linear's module name starts with 'head'


def _tokens() -> list[Rule]:
    return [
        rule(regex=r"(^|\.)pos_embed$", scheme="truncated_normal", **_TRUNC_002),
        rule(regex=r"(^|\.)(cls_token|reg_token)$", scheme="normal", std=1e-6),
        # timm's SwiGLU.init_weights (every mode): the gate starts near 0 with bias 1.
        rule(regex=r"(^|\.)fc1_g\.weight$", types=nn.Linear, scheme="normal", std=1e-6),
        rule(regex=r"(^|\.)fc1_g\.bias$", types=nn.Linear, scheme="ones"),
    ]


def _torch_conv() -> list[Rule]:
    """``nn.Conv2d`` as its constructor leaves it (``reset_parameters``), torch's array fans."""
    return [
        rule(types=nn.Conv2d, role="weight", scheme="he_uniform", a=math.sqrt(5.0), fans="torch"),
        rule(
            types=nn.Conv2d,
            role="bias",
            scheme="variance_scaling",
            scale=1.0 / 3.0,
            distribution="uniform",
            fans="torch",
        ),
    ]


def _head_bias(model: nn.Module | None, mode: str) -> float:
    """0, or :math:`-\\log C` for ``jax_nlhb`` with ``C`` the head's outputs (timm's
    ``num_classes``)."""
    if mode != "jax_nlhb":
        return 0.0
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise ConfigError(
            "timm-vit preset, mode 'jax_nlhb': the head bias is -log(num_classes), read from the "
            "model's 'head' nn.Linear; pass a model that has one."
        )
    return -math.log(head.out_features)


def _moco_qkv() -> Rule:
    """timm's ``init_weights_vit_moco`` on a Linear whose name holds ``qkv``: Xavier uniform
    with the fans of one of q, k, v, i.e. the weight split in 3 row blocks of ``(out/3, in)``:
    :math:`U(\\pm\\sqrt{6/(out/3 + in)})` (timm: ``val = sqrt(6 / (shape[0] // 3 +
    shape[1]))``)."""
    return rule(types=nn.Linear, regex=r"qkv", role="weight", scheme="xavier_uniform", split=3)


def _mode_rules(model: nn.Module | None, mode: str) -> list[Rule]:
    if mode == "":
        return [
            rule(types=nn.Linear, role="weight", scheme="truncated_normal", **_TRUNC_002),
            rule(types=nn.Linear, role="bias", scheme="zeros"),
            *_torch_conv(),
        ]
    if mode == "moco":
        return [
            _moco_qkv(),
            rule(types=nn.Linear, role="weight", scheme="xavier_uniform", fans="torch"),
            rule(types=nn.Linear, role="bias", scheme="zeros"),
            *_torch_conv(),
        ]
    head_bias = _head_bias(model, mode)
    return [
        rule(types=nn.Linear, regex=_HEAD, role="weight", scheme="zeros"),
        rule(types=nn.Linear, regex=_HEAD, role="bias", scheme="constant", value=head_bias),
        rule(types=nn.Linear, role="weight", scheme="xavier_uniform", fans="torch"),
        rule(types=nn.Linear, regex=r"mlp.*\.bias$", role="bias", scheme="normal", std=1e-6),
        rule(types=nn.Linear, role="bias", scheme="zeros"),
        rule(
            types=nn.Conv2d,
            role="weight",
            scheme="lecun_normal",
            distribution="truncated_normal",
            fans="torch",
        ),
        rule(types=nn.Conv2d, role="bias", scheme="zeros"),
    ]


def _fix_init(model: nn.Module | None, mode: str) -> list[Rule]:
    r"""``fix_init_weight``: block ``i``'s ``attn.proj``/``mlp.fc2`` weight times
    :math:`1/\sqrt{2(i+1)}`, drawn by its mode's law for a Linear that is neither head nor qkv."""
    if model is None:
        raise ConfigError("timm-vit preset, fix_init=True: pass the model to count its blocks.")
    depths = sorted(
        {
            site.depth
            for site in parameter_sites(model)
            if site.name.startswith("blocks.") and site.depth is not None
        }
    )
    law: dict[str, Any] = (
        {"scheme": "truncated_normal", **_TRUNC_002}
        if mode == ""
        else {"scheme": "xavier_uniform", "fans": "torch"}
    )
    return [
        rule(
            regex=rf"^blocks\.{i}\.(attn\.proj|mlp\.fc2)\.weight$",
            types=nn.Linear,
            multiplier=1.0 / math.sqrt(2.0 * (i + 1)),
            **law,
        )
        for i in depths
    ]


def _layer_scale(model: nn.Module | None) -> list[Rule]:
    """Each ``LayerScale``'s ``gamma`` = its ``init_values``, one rule per distinct value."""
    values: dict[float, list[str]] = {}
    for name, module in model.named_modules() if model is not None else ():
        init_values = getattr(module, "init_values", None)
        if type(module).__name__.startswith("LayerScale") and isinstance(init_values, float):
            values.setdefault(init_values, []).append(f"{name}.gamma")
    gammas = [name for names in values.values() for name in names]
    return [
        rule(regex=names_regex(names, gammas), scheme="constant", value=value)
        for value, names in values.items()
    ]


def _timm_vit(model: nn.Module | None, mode: str = "", fix_init: bool = False) -> Plan:
    """timm's ``VisionTransformer.init_weights(mode)`` (see the module docstring for the law).

    Options:
        mode: ``""`` (timm's default), ``"jax"``, ``"jax_nlhb"`` or ``"moco"``.
        fix_init: also ``fix_init_weight``'s depth scaling of ``attn.proj``/``mlp.fc2``.
    """
    if mode not in TIMM_VIT_MODES:
        raise ConfigError(
            f"timm-vit preset: mode must be one of {', '.join(map(repr, TIMM_VIT_MODES))} "
            f"(timm's weight_init), got {mode!r}."
        )
    if not isinstance(fix_init, bool):
        raise ConfigError(f"timm-vit preset: fix_init must be True or False, got {fix_init!r}.")
    rules = [
        *_tokens(),
        *(_fix_init(model, mode) if fix_init else []),
        *_mode_rules(model, mode),
        *_layer_scale(model),
        rule(role="norm_weight", scheme="ones"),
        rule(role="norm_bias", scheme="zeros"),
    ]
    return Plan(rules, default="keep", name="timm-vit", warn_unused=False)


RECIPES: dict[str, Callable[..., Plan]] = {"timm-vit": _timm_vit}
"""Preset name -> builder (model, **options) -> Plan."""
