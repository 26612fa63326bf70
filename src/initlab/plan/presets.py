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
``hf-bert``           ``BertPreTrainedModel._init_weights``: Linear/Embedding N(0, r^2), biases 0,
                      LayerNorm 1/0, the MLM head's bias 0; ``r`` from ``model.config``
                      (Devlin et al., 2019; :mod:`~initlab.plan.recipes.families`)
``hf-llama``          LLaMA's (the base) ``PreTrainedModel._init_weights``: Linear/Embedding
                      N(0, r^2), RMSNorm 1 (Touvron et al., 2023)
``torchtitan-llama``  torchtitan's Llama: q/k/v and w1 TN(0.02), wo/w2/w3 TN(0.02/sqrt(2(l+1)))
                      (``depth_init``) or TN(0.02/sqrt(2L)), embeddings N(0, 1), output
                      TN(dim^-1/2) cut at +-3 std (pytorch/torchtitan ``llama3/model.py``)
``olmo``              OLMo's ``init_fn``: ``normal``, ``mitchell`` (TN(1/sqrt(d)) at +-3 std,
                      outputs 1/sqrt(2d(l+1))), ``full_megatron`` (outputs s/sqrt(2L));
                      ``init_cutoff_factor``, small-init embeddings (Groeneveld et al., 2024)
``megatron``          Megatron-LM: every weight N(0, s^2) (``init_method_normal``), attention and
                      MLP output projections N(0, (s/sqrt(2L))^2) (``scaled_init_method_normal``;
                      Shoeybi et al., 2019)
``mamba``             Mamba: dt_proj U(+-dt_rank^-1/2), dt bias softplus^-1 of a log-uniform step
                      in [dt_min, dt_max] (``mamba_dt_bias``), A_log = log(1..d_state)
                      (``s4d_real_log``), D = 1, out_proj/fc2 torch's / sqrt(kL) (Gu & Dao, 2023)
``timm-vit``          timm's ViT ``init_weights`` modes: ``""`` TN(0.02) Linears, ``jax`` (Xavier
                      Linears, LeCun patch conv, zero head), ``jax_nlhb`` (head bias -log C),
                      ``moco`` (qkv Xavier with one projection's fans); ``fix_init``
``t-fixup``           T-Fixup (Huang et al., 2020): Xavier, then the encoder's v/out/MLP weights
                      times 0.67 N_e^-1/4, the decoder's (9 N_d)^-1/4, embeddings (9 N)^-1/4
``deepnet``           DeepNet/DeepNorm (Wang et al., 2022): Xavier, v/out/MLP weights times the
                      beta gain of Table 1 (alpha, a forward change, from ``deepnet_constants``)
``rezero``            ReZero (Bachlechner et al., 2020): every residual gain (``resweight``,
                      ``alpha``...) 0; the rest kept
``skipinit``          SkipInit (De & Smith, 2020): the residual branch's scalar multiplier 0
``zero``              ZerO (Zhao et al., 2022): identity weights, ``partial_hadamard`` for the
                      layers that widen, ``dirac`` convolutions, biases 0; deterministic
``small-init-emb``    SmallInitEmb (BlinkDL, RWKV): embeddings U(+-1e-4) (``bound``); rest kept
===================== =========================================================================

The field's recipes (``hf-gpt2`` and the rows after it) live in :mod:`initlab.plan.recipes`,
each with its source file and its law per parameter in its docstring. The presets set norm
scales to 1 and norm shifts to 0, except ``rezero``, ``skipinit`` and ``small-init-emb``, which
change only their own parameters and keep the rest. Residual blocks are found by name: a module
whose qualified name ends in an integer (``layer1.0``, ``blocks.3``) and that holds at least two
weight layers; sub-modules named ``downsample`` or ``shortcut`` are the skip
path. Fixup's scalar biases and multipliers are architecture, not initialization: the preset
does the initialization part only.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from initlab.arguments import describe_value
from initlab.errors import ConfigError, UnknownNameError, did_you_mean
from initlab.layers import LAYER_TYPES, is_hf_conv1d, is_norm
from initlab.plan.plan import Plan
from initlab.plan.recipes import RECIPES
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
    if isinstance(n_layer, bool) or not isinstance(n_layer, int) or n_layer < 1:
        raise ConfigError(f"gpt2 preset: n_layer must be an integer >= 1, got {n_layer!r}.")
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
    **RECIPES,
}
PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def preset(name: str, model: nn.Module | None = None, **options: Any) -> Plan:
    """The plan called ``name`` (see the module docstring), built for ``model`` if it needs one.

    Args:
        name: a preset name (``_`` and ``-`` are interchangeable).
        model: the model, for presets that read its structure (every preset but ``auto``,
            ``xavier``, ``kaiming``, ``lecun`` and ``orthogonal`` reads it; ``zero``,
            ``zero-init-residual``, ``fixup``, ``t-fixup``, ``deepnet``, ``timm-vit``'s ``moco``
            and ``jax_nlhb`` need it).
        **options: preset options, each named in the preset's docstring:

            * ``gpt2``: ``n_layer``, ``std``;
            * ``hf-gpt2``: ``n_layer``, ``initializer_range``; ``hf-bert``, ``hf-llama``:
              ``initializer_range``;
            * ``torchtitan-llama``: ``depth_init``, ``n_layers``, ``dim``;
            * ``olmo``: ``init_fn``, ``init_std``, ``init_cutoff_factor``, ``emb_init_std``,
              ``scale_emb_init``, ``n_layers``, ``d_model``;
            * ``megatron``: ``init_method_std``, ``num_layers``, ``embedding_init_method_std``,
              ``multiplier``;
            * ``mamba``: ``n_layer``, ``initializer_range``, ``rescale_prenorm_residual``,
              ``n_residuals_per_layer``, ``dt_init``, ``dt_scale``, ``dt_min``, ``dt_max``,
              ``dt_init_floor``;
            * ``timm-vit``: ``mode``, ``fix_init``;
            * ``t-fixup``: ``encoder_layers``, ``decoder_layers``, ``stack``; ``deepnet``:
              ``encoder_layers``, ``decoder_layers``;
            * ``rezero``, ``skipinit``: ``names``; ``small-init-emb``: ``bound``.

    Raises:
        UnknownNameError: an unknown preset.
        ConfigError: an option the preset does not take (the message lists the ones it takes),
            or a model it cannot read.
    """
    if not isinstance(name, str):
        raise UnknownNameError(did_you_mean("preset", repr(name), PRESET_NAMES))
    key = name.strip().lower().replace("_", "-")
    if key not in _PRESETS:
        raise UnknownNameError(did_you_mean("preset", name, PRESET_NAMES))
    builder = _PRESETS[key]
    _check_options(key, builder, model, options)
    return builder(model, **options)


def _option_names(builder: Callable[..., Plan]) -> list[str]:
    return [
        name
        for name, parameter in inspect.signature(builder).parameters.items()
        if name != "model" and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]


def _check_options(
    key: str, builder: Callable[..., Plan], model: nn.Module | None, options: dict[str, Any]
) -> None:
    """Options the builder's signature does not take raise here, before it runs: a TypeError
    from inside a builder is a bug to see, not a user's wrong option."""
    try:
        inspect.signature(builder).bind(model, **options)
    except TypeError as error:
        known = _option_names(builder)
        unknown = [option for option in options if option not in known]
        what = (
            f"unknown option {', '.join(map(repr, unknown))}"
            if unknown
            else str(error).split("() ", 1)[-1]
        )
        takes = ", ".join(known) or "none"
        raise ConfigError(f"preset {key!r}: {what}. Options: {takes}.") from None


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
