r"""The ``olmo`` preset: OLMo's init, law for law (Groeneveld et al., 2024).

Source: allenai/OLMo ``olmo/model.py`` (``OLMoBlock.reset_parameters``,
``OLMo.reset_parameters``), ``olmo/initialization.py`` (``init_normal``). Layers are found by role
(:mod:`initlab.plan.recipes.transformer_layers`: OLMo's ``att_proj``, ``attn_out``,
``ff_proj``, ``ff_out``), as in :mod:`initlab.plan.recipes.llm`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from initlab.errors import ConfigError, did_you_mean
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
from initlab.plan.recipes.transformer_layers import RESIDUAL_OUTPUTS, RoleLayer
from initlab.plan.rules import Rule, rule
from initlab.schemes import Normal, Scheme, TruncatedNormal

__all__ = ["RECIPES", "olmo"]

_OLMO_INIT_FNS = ("normal", "mitchell", "full_megatron")
_POSITIONAL = r"(^|\.)(wpe|position_embeddings)\.weight$"


@dataclass(frozen=True)
class _OlmoOptions:
    """OLMo's ``ModelConfig`` init fields, checked.

    Attributes:
        init_fn: ``normal``, ``mitchell`` or ``full_megatron``.
        init_std: the std of the fixed-distribution inits.
        cutoff: the truncation in stds (``None``: an untruncated normal).
        emb_init_std: the token embedding's std override.
        scale_emb_init: ``full_megatron``: the token embedding's std times sqrt(d_model).
    """

    init_fn: str
    init_std: float
    cutoff: float | None
    emb_init_std: float | None
    scale_emb_init: bool

    def law(self, std: float) -> Scheme:
        """OLMo's ``init_normal``: normal, truncated at +-cutoff std when there is a cutoff."""
        if self.cutoff is None:
            return Normal(0.0, std)
        return TruncatedNormal(0.0, std, -self.cutoff, self.cutoff, unit="std")


def _olmo_options(
    *,
    init_fn: Any,
    init_std: Any,
    init_cutoff_factor: Any,
    emb_init_std: Any,
    scale_emb_init: Any,
) -> _OlmoOptions:
    if init_fn not in _OLMO_INIT_FNS:
        raise ConfigError("olmo preset: " + did_you_mean("init_fn", str(init_fn), _OLMO_INIT_FNS))
    std = check_std("olmo", "init_std", init_std)
    assert std is not None
    factor = check_std("olmo", "init_cutoff_factor", init_cutoff_factor, optional=True)
    return _OlmoOptions(
        init_fn=init_fn,
        init_std=std,
        cutoff=factor if init_fn == "normal" else (factor or 3.0),
        emb_init_std=check_std("olmo", "emb_init_std", emb_init_std, optional=True),
        scale_emb_init=check_flag("olmo", "scale_emb_init", scale_emb_init),
    )


def olmo(
    model: nn.Module | None,
    init_fn: str = "normal",
    init_std: float = 0.02,
    init_cutoff_factor: float | None = None,
    emb_init_std: float | None = None,
    scale_emb_init: bool = False,
    n_layers: int | None = None,
    d_model: int | None = None,
) -> Plan:
    r"""OLMo's init (allenai/OLMo ``olmo/model.py``, ``olmo/initialization.py``).

    Every weight is drawn by ``init_normal``: :math:`\mathcal N(0, \sigma^2)` truncated to
    :math:`\pm c\,\sigma` (:math:`c` = ``init_cutoff_factor``; ``normal`` without it draws
    untruncated, the others cut at 3 by default). d = ``d_model``, l the block's
    ``layer_id``, n the layer's input width, s = ``init_std``, L the number of blocks:

    ==============================  ========  ========================  ====================
    parameter                       normal    mitchell                  full_megatron
    ==============================  ========  ========================  ====================
    ``att_proj``, ``q/k/v_proj``,   s         1 / sqrt(d)               s
    ``ff_proj``
    ``attn_out``, block ``ff_out``  s         1 / sqrt(2 n (l + 1))     s / sqrt(2 L)
    ``wte``                         e or s    e or 1 / sqrt(d)          e, else s (times
                                                                        sqrt(d) if scaled)
    ``wpe``                         s         1 / sqrt(d)               s
    head ``ff_out``                 s         1 / sqrt(d)               1 / sqrt(d)
    ==============================  ========  ========================  ====================

    (e = ``emb_init_std``, the small-init embedding option.) Biases 0, norms 1/0.

    Args:
        model: the model, or ``None`` to list rules by role and block index.
        init_fn: ``normal`` (OLMo's default), ``mitchell`` or ``full_megatron``.
        init_std: :math:`s`.
        init_cutoff_factor: :math:`c`.
        emb_init_std: the token embedding's std.
        scale_emb_init: ``full_megatron`` without ``emb_init_std``: token embedding std
            :math:`s\sqrt d`.
        n_layers: :math:`L` (``full_megatron``), read from the model when not given.
        d_model: :math:`d`, read from the model when not given.
    """
    found = _olmo_options(
        init_fn=init_fn,
        init_std=init_std,
        init_cutoff_factor=init_cutoff_factor,
        emb_init_std=emb_init_std,
        scale_emb_init=scale_emb_init,
    )
    if found.init_fn == "mitchell" and model is None:
        raise ConfigError(
            "olmo preset: init_fn='mitchell' scales each output projection by its own input "
            "width and block index: pass the model."
        )
    depth = None
    if found.init_fn == "full_megatron":
        depth = count_layers(model, n_layers, preset="olmo", option="n_layers")
    width = _olmo_width(model, d_model) if found.init_fn != "normal" else None
    warn_unrecognized(model, "olmo", RESIDUAL_OUTPUTS, "their weights are kept")
    rules = role_rules(model, _olmo_laws(found, width, depth), depth)
    rules += _olmo_embedding_rules(found, width)
    return Plan([*rules, *norm_and_bias_rules()], default="keep", name="olmo", warn_unused=False)


def _olmo_width(model: nn.Module | None, given: int | None) -> int:
    """``d_model``: given, else ``model.config.d_model``/``hidden_size``, else the embedding's."""
    if given is not None:
        return layer_width(RoleLayer("", "head", None, None), given, "olmo", "d_model")
    config = getattr(model, "config", None)
    for attribute in ("d_model", "hidden_size"):
        if isinstance(getattr(config, attribute, None), int):
            return int(getattr(config, attribute))
    for module in model.modules() if model is not None else ():
        if isinstance(module, nn.Embedding):
            return module.embedding_dim
    raise ConfigError("olmo preset: pass d_model=... or a model with an embedding to read it.")


def _olmo_laws(found: _OlmoOptions, width: int | None, depth: int | None) -> list[RoleLaw]:
    if found.init_fn == "normal":
        same = found.law(found.init_std)
        return [RoleLaw((*RESIDUAL_OUTPUTS, "attention_input", "mlp_input", "mlp_up", "head"),
                        lambda layer: same)]  # fmt: skip
    assert width is not None
    if found.init_fn == "mitchell":

        def output(layer: RoleLayer) -> Scheme:
            # attn_out: 1/sqrt(2 d (l+1)); ff_out: 1/sqrt(2 ff_out.in_features (l+1)); an
            # attention output's input width is d, so both read the layer's own.
            assert layer.layer is not None
            assert layer.in_features is not None
            return found.law(1.0 / math.sqrt(2 * layer.in_features * (layer.layer + 1)))

        inputs = found.law(1.0 / math.sqrt(width))
    else:
        assert depth is not None
        scaled = found.law(found.init_std / math.sqrt(2.0 * depth))
        inputs = found.law(found.init_std)

        def output(layer: RoleLayer) -> Scheme:
            return scaled

    return [
        RoleLaw(RESIDUAL_OUTPUTS, output, by_layer=found.init_fn == "mitchell"),
        RoleLaw(("attention_input", "mlp_input", "mlp_up"), lambda layer: inputs),
        RoleLaw(("head",), lambda layer: found.law(1.0 / math.sqrt(width))),
    ]


def _olmo_embedding_rules(found: _OlmoOptions, width: int | None) -> list[Rule]:
    if found.init_fn == "normal":
        token, position = found.emb_init_std or found.init_std, found.init_std
    elif found.init_fn == "mitchell":
        assert width is not None
        token = found.emb_init_std or 1.0 / math.sqrt(width)
        position = 1.0 / math.sqrt(width)
    else:
        assert width is not None
        token = found.init_std * (math.sqrt(width) if found.scale_emb_init else 1.0)
        token = found.emb_init_std if found.emb_init_std is not None else token
        position = found.init_std
    return [
        rule(regex=_POSITIONAL, scheme=found.law(position)),
        rule(role="embedding", scheme=found.law(token)),
    ]


RECIPES: dict[str, Callable[..., Plan]] = {"olmo": olmo}
"""Preset name -> builder (model, **options) -> Plan."""
