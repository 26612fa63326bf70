r"""Presets: Hugging Face model families, each equal to its ``_init_weights`` (transformers 5.x).

=============  ===================================================================================
preset         source
=============  ===================================================================================
``hf-bert``    ``transformers/models/bert/modeling_bert.py`` ``BertPreTrainedModel._init_weights``
               over ``transformers/modeling_utils.py`` ``PreTrainedModel._init_weights``
               (Devlin et al., 2019)
``hf-llama``   ``transformers/models/llama/modeling_llama.py`` ``LlamaPreTrainedModel`` (no
               override: the base ``PreTrainedModel._init_weights``; Touvron et al., 2023)
``hf-gpt2``    ``transformers/models/gpt2/modeling_gpt2.py`` ``GPT2PreTrainedModel._init_weights``
               over the base one (Radford et al., 2019): :func:`hf_gpt2`
=============  ===================================================================================

The base ``_init_weights`` draws by module *type*, so these presets match by type too (any
names); :math:`r` = ``initializer_range or 0.02``, read from ``model.config`` (0.02 when the
model has none, as HF's base class):

=====================================================  ========================================
parameter                                              law
=====================================================  ========================================
``nn.Linear`` / ``nn.Conv{1,2,3}d`` /                  :math:`\mathcal N(0, r^2)`; bias 0
``nn.ConvTranspose{1,2}d`` weight
``nn.Embedding`` weight                                :math:`\mathcal N(0, r^2)`, the
                                                       ``padding_idx`` row 0 (see below)
``nn.LSTM`` weights; biases                            ``xavier_uniform`` (torch's fans); 0
LayerNorm / RMSNorm (any class so named), Group- and   weight 1, bias 0
BatchNorm
BERT: ``BertLMPredictionHead.bias`` (tied to the       0
decoder's bias)
=====================================================  ========================================

The **padding row**. HF (and torch's ``nn.Embedding``) zero the ``padding_idx`` row after the
draw; so does every initlab plan (``Assignment.zero_rows``, shown in the table's notes), so these
presets match HF through ``Plan.apply`` / ``init_model`` as well as through
:func:`initlab.integrations.hf.init_pretrained`. Buffers HF also resets (BERT's ``position_ids``,
rotary ``inv_freq``) are not parameters and are never touched.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

from initlab.errors import ConfigError
from initlab.plan.plan import Plan
from initlab.plan.rules import Rule, rule

__all__ = ["RECIPES", "hf_bert", "hf_gpt2", "hf_llama", "pretrained_base_rules"]

# The module classes the base ``PreTrainedModel._init_weights`` draws N(0, r^2) for.
_HF_LAYER_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d")


def _initializer_range(model: nn.Module | None, given: Any, preset: str) -> float:
    """``given``, else ``model.config.initializer_range``, else 0.02; HF's ``or 0.02`` applied
    (the base class reads ``initializer_range`` with 0.02 as its default, as here)."""
    if given is None:
        given = getattr(getattr(model, "config", None), "initializer_range", None)
        if given is None:
            return 0.02
    if isinstance(given, bool) or not isinstance(given, int | float) or not math.isfinite(given):
        raise ConfigError(
            f"{preset} preset: initializer_range must be a finite number >= 0, got {given!r}."
        )
    if given < 0:
        raise ConfigError(f"{preset} preset: initializer_range must be >= 0, got {given!r}.")
    return float(given) or 0.02  # the base class's `initializer_range or 0.02`


def _warn_other_family(model: nn.Module | None, preset: str, model_types: tuple[str, ...]) -> None:
    found = getattr(getattr(model, "config", None), "model_type", None)
    if found is not None and found not in model_types:
        warnings.warn(
            f"{preset} preset on a {type(model).__name__} (config.model_type {found!r}, not "
            f"{' or '.join(model_types)}): it reproduces that family's _init_weights only; "
            "another family may override it. The dry-run table shows each parameter's law.",
            stacklevel=4,
        )


def pretrained_base_rules(std: float) -> list[Rule]:
    """``PreTrainedModel._init_weights`` (transformers 5.x) as rules, for any family."""
    return [
        rule(types=_HF_LAYER_TYPES, role="weight", scheme="normal", std=std),
        rule(types=_HF_LAYER_TYPES, role="bias", scheme="zeros"),
        # torch's xavier_uniform_ reads the stacked (4h, in) matrix whole: torch's fans
        rule(types="LSTM", role="weight", scheme="xavier_uniform", fans="torch"),
        rule(types="LSTM", role="bias", scheme="zeros"),
        rule(types="Embedding", role="embedding", scheme="normal", std=std),
        rule(role="norm_weight", scheme="ones"),
        rule(role="norm_bias", scheme="zeros"),
    ]


def hf_bert(model: nn.Module | None, initializer_range: float | None = None) -> Plan:
    """``BertPreTrainedModel._init_weights`` (see the module docstring for the laws).

    Args:
        model: a Hugging Face BERT model (its ``config`` gives ``initializer_range``).
        initializer_range: :math:`r`, instead of ``model.config.initializer_range``.
    """
    std = _initializer_range(model, initializer_range, "hf-bert")
    _warn_other_family(model, "hf-bert", ("bert",))
    rules = [rule(types="BertLMPredictionHead", role="bias", scheme="zeros")]
    return Plan([*rules, *pretrained_base_rules(std)], default="keep", name="hf-bert",
                warn_unused=False)  # fmt: skip


def hf_llama(model: nn.Module | None, initializer_range: float | None = None) -> Plan:
    """``LlamaPreTrainedModel._init_weights``: the base one (see the module docstring).

    Args:
        model: a Hugging Face LLaMA model (its ``config`` gives ``initializer_range``).
        initializer_range: :math:`r`, instead of ``model.config.initializer_range``.
    """
    std = _initializer_range(model, initializer_range, "hf-llama")
    _warn_other_family(model, "hf-llama", ("llama",))
    return Plan(pretrained_base_rules(std), default="keep", name="hf-llama", warn_unused=False)


_HF_GPT2_RESIDUAL_OWNERS = ("GPT2Attention", "GPT2MLP")


def _hf_config_value(model: nn.Module | None, attribute: str, given: Any) -> Any:
    if given is not None:
        return given
    value = getattr(getattr(model, "config", None), attribute, None)
    if value is None:
        raise ConfigError(
            f"hf-gpt2 preset: no {attribute} (model.config.{attribute} is missing); pass a "
            f"Hugging Face GPT-2 model or {attribute}=... explicitly."
        )
    return value


def hf_gpt2(
    model: nn.Module | None, n_layer: int | None = None, initializer_range: float | None = None
) -> Plan:
    r"""``GPT2PreTrainedModel._init_weights`` of transformers 5.x as rules, in the same law.

    HF runs ``_init_weights`` on every module, children before parents; the last write wins:

    * ``PreTrainedModel._init_weights`` (base, :func:`pretrained_base_rules`): ``nn.Linear``/Conv
      weights and ``nn.Embedding`` N(0, s^2) with :math:`s` = ``initializer_range or 0.02``,
      their biases 0; norms 1/0;
    * GPT-2's override: ``Conv1D`` weight N(0, r^2) (:math:`r` = ``initializer_range``), bias 0;
      then on each ``GPT2Attention``/``GPT2MLP``, its ``c_proj.weight``
      :math:`\mathcal N(0, (r/\sqrt{2 n_{layer}})^2)` (the parent runs after its Conv1D child).

    GPT-2's embeddings have no ``padding_idx`` row (see the module docstring).

    Args:
        model: a Hugging Face GPT-2 model (its ``config`` gives both options).
        n_layer: :math:`n_{layer}`, instead of ``model.config.n_layer``.
        initializer_range: :math:`r`, instead of ``model.config.initializer_range``.

    Raises:
        ConfigError: an option neither given nor in ``model.config``, or ``n_layer`` < 1.
    """
    layers = int(_hf_config_value(model, "n_layer", n_layer))
    std = float(_hf_config_value(model, "initializer_range", initializer_range))
    if layers < 1:
        raise ConfigError(f"hf-gpt2 preset: n_layer must be >= 1, got {layers}.")
    # The attribute names GPT2Attention/GPT2MLP live under (attn, crossattention, mlp).
    owners = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in (model.named_modules() if model is not None else ())
            if type(module).__name__ in _HF_GPT2_RESIDUAL_OWNERS
        }
    ) or ["attn", "crossattention", "mlp"]
    rules = [
        rule(
            regex=rf"(^|\.)({'|'.join(map(re.escape, owners))})\.c_proj\.weight$",
            scheme="normal",
            std=std / math.sqrt(2 * layers),
        ),
        rule(types="Conv1D", role="weight", scheme="normal", std=std),
        rule(types="Conv1D", role="bias", scheme="zeros"),
    ]
    # the base class's `initializer_range or 0.02`
    return Plan([*rules, *pretrained_base_rules(std or 0.02)], default="keep", name="hf-gpt2",
                warn_unused=False)  # fmt: skip


RECIPES: dict[str, Callable[..., Plan]] = {
    "hf-gpt2": hf_gpt2,
    "hf-bert": hf_bert,
    "hf-llama": hf_llama,
}
"""Preset name -> builder (model, **options) -> Plan."""
