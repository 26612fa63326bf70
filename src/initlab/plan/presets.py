r"""Named plans: the recipes of PyTorch, the papers and the model families.

===================== =========================================================================
preset                what it does
===================== =========================================================================
``auto``              activation-aware: each weight He, LeCun or Xavier by the activation that
                      follows its layer, biases 0, norms 1/0 (``Plan(default="auto")``)
``torch-default``     what PyTorch's ``reset_parameters`` does: Linear/Conv weights
                      ``he_uniform(a=sqrt 5)`` = :math:`U(\pm 1/\sqrt{fan_{in}})`, biases
                      :math:`U(\pm 1/\sqrt{fan_{in}})` (torch's array fans), embeddings N(0, 1),
                      RNN parameters :math:`U(\pm 1/\sqrt{hidden})`, norms 1/0; the rest kept
``xavier``            weights ``xavier_uniform`` (gain 1; Glorot & Bengio, 2010), biases 0
``kaiming``           weights ``he_normal(nonlinearity="relu")`` (fan_in; He et al., 2015),
                      biases 0
``lecun``             weights ``lecun_normal`` (LeCun et al., 1998), biases 0
``orthogonal``        weights ``orthogonal`` (gain 1; Saxe et al., 2014), biases 0
``gpt2``              Linear/Conv1D/Embedding N(0, 0.02); residual projections ``*c_proj.weight``
                      N(0, (0.02 / sqrt(2 n_layer))^2) (Radford et al., 2019; nanoGPT); biases 0
``zero-init-residual`` ``kaiming`` with fan_out (torchvision ResNet), and the last norm scale of
                      every residual branch 0 (Goyal et al., 2017), or its last weight if the
                      branch has no norm
``fixup``             Zhang et al. (2019): branch layers He (fan_out) times
                      :math:`L^{-1/(2m-2)}`, the last layer of each branch 0, the classifier 0
``hf-gpt2``           Hugging Face's ``GPT2PreTrainedModel._init_weights`` (transformers 5.x),
                      law for law: Conv1D and ``nn.Linear``/Conv weights
                      N(0, initializer_range^2), the ``c_proj`` weights of ``GPT2Attention`` /
                      ``GPT2MLP`` N(0, (initializer_range / sqrt(2 n_layer))^2), embeddings
                      N(0, initializer_range^2), biases 0, LayerNorm 1/0; ``n_layer`` and
                      ``initializer_range`` read from ``model.config``
===================== =========================================================================

Every preset also sets norm scales to 1 and norm shifts to 0. Residual blocks are found by
name: a module whose qualified name ends in an integer (``layer1.0``, ``blocks.3``) and that
holds at least two weight layers; sub-modules named ``downsample`` or ``shortcut`` are the skip
path. Fixup's scalar biases and multipliers are architecture, not initialization: the preset
does the initialization part only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from initlab.arguments import describe_value
from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.layers import LAYER_TYPES, is_hf_conv1d, is_norm
from initlab.plan.plan import Plan
from initlab.plan.rules import Rule, rule
from initlab.plan.sites import parameter_sites

__all__ = ["PRESET_NAMES", "as_plan", "preset", "residual_blocks"]

_SKIP_NAMES = ("downsample", "shortcut", "skip")


def _norm_rules() -> list[Rule]:
    return [rule(role="norm_weight", scheme="ones"), rule(role="norm_bias", scheme="zeros")]


def _weights_then_zero_bias(scheme: str, **params: Any) -> list[Rule]:
    return [
        rule(role="weight", scheme=scheme, **params),
        rule(role="bias", scheme="zeros"),
        *_norm_rules(),
    ]


def _weights_only(name: str, scheme: str, **params: Any) -> Plan:
    return Plan(_weights_then_zero_bias(scheme, **params), "keep", name=name, warn_unused=False)


def _under(module_name: str, pattern: str) -> str:
    return f"{module_name}.{pattern}" if module_name else pattern


def _torch_default(model: nn.Module | None) -> Plan:
    rules = []
    if model is not None:
        for name, module in model.named_modules():
            if isinstance(module, nn.RNNBase | nn.RNNCellBase):
                bound = 1.0 / math.sqrt(module.hidden_size)
                rules.append(rule(_under(name, "*"), "uniform", a=-bound, b=bound))
            if isinstance(module, nn.MultiheadAttention):
                rules += [
                    # torch draws the stacked (3d, d) matrix as one: its fans, not q/k/v's
                    rule(_under(name, "in_proj_weight"), "xavier_uniform", fans="torch"),
                    rule(_under(name, "in_proj_bias"), "zeros"),
                    rule(_under(name, "out_proj.bias"), "zeros"),
                    rule(_under(name, "bias_k"), "xavier_normal"),
                    rule(_under(name, "bias_v"), "xavier_normal"),
                ]
    layers = ("Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
              "ConvTranspose3d")  # fmt: skip
    rules += [
        rule(types=layers, role="weight", scheme="he_uniform", a=math.sqrt(5.0), fans="torch"),
        rule(
            types=layers,
            role="bias",
            scheme="variance_scaling",
            scale=1.0 / 3.0,
            distribution="uniform",
            fans="torch",
        ),
        rule(role="embedding", scheme="normal"),
        *_norm_rules(),
    ]
    return Plan(rules, default="keep", name="torch-default", warn_unused=False)


def _gpt2(model: nn.Module | None, n_layer: int | None = None, std: float = 0.02) -> Plan:
    if n_layer is None:
        n_layer = _count_layers(model)
    if n_layer < 1:
        raise ConfigError(f"gpt2 preset: n_layer must be >= 1, got {n_layer}.")
    return Plan(
        [
            rule("*c_proj.weight", "normal", std=std / math.sqrt(2 * n_layer)),
            rule(types=("Linear", "Conv1D"), role="weight", scheme="normal", std=std),
            rule(role="embedding", scheme="normal", std=std),
            rule(role="bias", scheme="zeros"),
            *_norm_rules(),
        ],
        default="keep",
        name="gpt2",
        warn_unused=False,
    )


def _count_layers(model: nn.Module | None) -> int:
    if model is None:
        raise ConfigError("gpt2 preset: pass n_layer=... or a model to count its blocks in.")
    config = getattr(model, "config", None)
    for attribute in ("n_layer", "num_hidden_layers"):
        if isinstance(getattr(config, attribute, None), int):
            return int(getattr(config, attribute))
    depths = {site.depth for site in parameter_sites(model) if site.name.endswith("c_proj.weight")}
    depths.discard(None)
    if not depths:
        raise ConfigError(
            "gpt2 preset: no '*c_proj.weight' parameters with a block index in this model; "
            "pass n_layer=... explicitly."
        )
    return len(depths)


# The module classes HF's base ``PreTrainedModel._init_weights`` draws N(0, std) for.
_HF_LAYER_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d")
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


def _hf_gpt2(
    model: nn.Module | None, n_layer: int | None = None, initializer_range: float | None = None
) -> Plan:
    r"""``GPT2PreTrainedModel._init_weights`` of transformers 5.x as rules, in the same law.

    HF runs ``_init_weights`` on every module, children before parents; the last write wins:

    * ``PreTrainedModel._init_weights`` (base): ``nn.Linear``/Conv weights and ``nn.Embedding``
      N(0, s^2) with :math:`s` = ``initializer_range or 0.02``, their biases 0; modules whose
      class name holds ``LayerNorm``/``RMSNorm`` and Group/BatchNorm: weight 1, bias 0 (the
      preset sets every norm layer's scale 1 and shift 0: torch's own default for the rest);
    * GPT-2's override: ``Conv1D`` weight N(0, r^2) (:math:`r` = ``initializer_range``), bias 0;
      then on each ``GPT2Attention``/``GPT2MLP``, its ``c_proj.weight``
      :math:`\mathcal N(0, (r/\sqrt{2 n_{layer}})^2)` (the parent runs after its Conv1D child).

    An embedding's ``padding_idx`` row (HF zeros it) is a row, not a parameter, so a Plan
    cannot say it; GPT-2's embeddings have none. ``initlab.integrations.hf.init_pretrained``
    zeros padding rows after drawing, as HF and torch do.
    """
    layers = int(_hf_config_value(model, "n_layer", n_layer))
    std = float(_hf_config_value(model, "initializer_range", initializer_range))
    if layers < 1:
        raise ConfigError(f"hf-gpt2 preset: n_layer must be >= 1, got {layers}.")
    base_std = std or 0.02  # the base class's `initializer_range or 0.02`
    # The attribute names GPT2Attention/GPT2MLP live under (attn, crossattention, mlp).
    owners = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in (model.named_modules() if model is not None else ())
            if type(module).__name__ in _HF_GPT2_RESIDUAL_OWNERS
        }
    ) or ["attn", "crossattention", "mlp"]
    residual = rule(
        regex=rf"(^|\.)({'|'.join(map(re.escape, owners))})\.c_proj\.weight$",
        scheme="normal",
        std=std / math.sqrt(2 * layers),
    )
    return Plan(
        [
            residual,
            rule(types="Conv1D", role="weight", scheme="normal", std=std),
            rule(types="Conv1D", role="bias", scheme="zeros"),
            rule(types=_HF_LAYER_TYPES, role="weight", scheme="normal", std=base_std),
            rule(types=_HF_LAYER_TYPES, role="bias", scheme="zeros"),
            rule(types="Embedding", role="embedding", scheme="normal", std=base_std),
            *_norm_rules(),
        ],
        default="keep",
        name="hf-gpt2",
        warn_unused=False,
    )


def residual_blocks(model: nn.Module) -> dict[str, list[str]]:
    """Residual blocks by name -> the qualified names of their branch's weight layers, in order."""
    layers = [
        name
        for name, module in model.named_modules()
        if isinstance(module, LAYER_TYPES) or is_hf_conv1d(module)
    ]
    blocks: dict[str, list[str]] = {}
    for name, _ in model.named_modules():
        if not re.search(r"(^|\.)\d+$", name):
            continue
        branch = [
            layer
            for layer in layers
            if layer.startswith(name + ".")
            and not any(part in _SKIP_NAMES for part in layer[len(name) + 1 :].split("."))
        ]
        if len(branch) >= 2 and not any(name.startswith(b + ".") for b in blocks):
            blocks[name] = branch
    return blocks


def _last_norm(model: nn.Module, block: str) -> str | None:
    last = None
    for name, module in model.named_modules():
        inside = name.startswith(block + ".")
        skip = any(part in _SKIP_NAMES for part in name[len(block) + 1 :].split("."))
        if inside and not skip and is_norm(module) and getattr(module, "weight", None) is not None:
            last = name
    return last


def _zero_init_residual(model: nn.Module | None) -> Plan:
    if model is None:
        raise ConfigError(
            "zero-init-residual preset needs the model, to find its residual blocks."
        )
    rules = []
    for block, branch in residual_blocks(model).items():
        norm = _last_norm(model, block)
        target = f"{norm}.weight" if norm else f"{branch[-1]}.weight"
        rules.append(rule(target, "zeros"))
    rules += _weights_then_zero_bias("he_normal", mode="fan_out", nonlinearity="relu")
    return Plan(rules, default="keep", name="zero-init-residual", warn_unused=False)


def _fixup(model: nn.Module | None) -> Plan:
    if model is None:
        raise ConfigError("fixup preset needs the model, to find its residual blocks.")
    blocks = residual_blocks(model)
    if not blocks:
        raise ConfigError(
            "fixup preset: found no residual blocks (modules named like 'layer1.0' holding >= 2 "
            "weight layers). Name your blocks by index, or build the plan from rules."
        )
    depth = len(blocks)
    rules = []
    for branch in blocks.values():
        m = len(branch)
        scale = depth ** (-1.0 / (2 * m - 2))
        rules.append(rule(f"{branch[-1]}.weight", "zeros"))
        for layer in branch[:-1]:
            rules.append(rule(f"{layer}.weight", "he_normal", mode="fan_out",
                              nonlinearity="relu", multiplier=scale))  # fmt: skip
    in_blocks = {layer for branch in blocks.values() for layer in branch}
    top = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in in_blocks
    ]
    if top:
        rules += [rule(f"{top[-1]}.weight", "zeros"), rule(f"{top[-1]}.bias", "zeros")]
    rules += _weights_then_zero_bias("he_normal", mode="fan_out", nonlinearity="relu")
    return Plan(rules, default="keep", name="fixup", warn_unused=False)


def _auto(model: nn.Module | None) -> Plan:
    return Plan(default="auto", name="auto")


_PRESETS: dict[str, Callable[..., Plan]] = {
    "auto": _auto,
    "torch-default": _torch_default,
    "xavier": lambda model: _weights_only("xavier", "xavier_uniform"),
    "kaiming": lambda model: _weights_only("kaiming", "he_normal", nonlinearity="relu"),
    "lecun": lambda model: _weights_only("lecun", "lecun_normal"),
    "orthogonal": lambda model: _weights_only("orthogonal", "orthogonal"),
    "gpt2": _gpt2,
    "zero-init-residual": _zero_init_residual,
    "fixup": _fixup,
    "hf-gpt2": _hf_gpt2,
}
PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def preset(name: str, model: nn.Module | None = None, **options: Any) -> Plan:
    """The plan called ``name`` (see the module docstring), built for ``model`` if it needs one.

    Args:
        name: a preset name (``_`` and ``-`` are interchangeable).
        model: the model, for presets that read its structure (gpt2, hf-gpt2,
            zero-init-residual, fixup, torch-default's RNN/attention rules).
        **options: preset options (gpt2: ``n_layer``, ``std``; hf-gpt2: ``n_layer``,
            ``initializer_range``).

    Raises:
        UnknownNameError: an unknown preset.
        ConfigError: an option the preset does not take, or a model it cannot read.
    """
    if not isinstance(name, str):
        raise UnknownNameError(did_you_mean("preset", repr(name), PRESET_NAMES))
    key = name.strip().lower().replace("_", "-")
    if key not in _PRESETS:
        raise UnknownNameError(did_you_mean("preset", name, PRESET_NAMES))
    try:
        return _PRESETS[key](model, **options)
    except TypeError as error:
        raise ConfigError(
            f"preset {key!r}: {error}. Options: gpt2 takes n_layer and std; hf-gpt2 takes "
            "n_layer and initializer_range; the others take none."
        ) from None


def as_plan(plan_or_name: Plan | str, model: nn.Module | None = None, **options: Any) -> Plan:
    """``plan_or_name`` itself if it is a :class:`Plan`, else the preset it names.

    Every function that takes "a Plan or a preset name" resolves it here.

    Args:
        plan_or_name: a :class:`Plan`, or a preset name (``"auto"`` among them).
        model: the model, for presets that read its structure.
        **options: preset options; a Plan takes none.

    Raises:
        UnknownNameError: an unknown preset name.
        ConfigError: neither a Plan nor a string, options given with a Plan, or options the
            preset does not take.

    Example:
        >>> as_plan("kaiming")
        >>> as_plan("gpt2", model, std=0.01)
    """
    if isinstance(plan_or_name, Plan):
        if options:
            raise ConfigError(
                f"options {sorted(options)} go to a preset; a Plan takes none. Drop them, or "
                "pass the preset's name."
            )
        return plan_or_name
    if not isinstance(plan_or_name, str):
        raise ConfigError(
            f"plan must be an initlab.Plan or a preset name ({', '.join(PRESET_NAMES)}), got "
            f"{describe_value(plan_or_name)}; e.g. 'kaiming'."
        )
    return preset(plan_or_name, model, **options)
