r"""Presets for very deep or normalization-free transformers: T-Fixup and DeepNet.

====================  ===========================================================================
preset                source
====================  ===========================================================================
``t-fixup``           Huang, Perez, Ba & Volkovs (2020), "Improving Transformer Optimization
                      Through Better Initialization" (ICML); ``layer6ai-labs/T-Fixup``,
                      ``fairseq/modules/transformer_layer.py`` (``fixup_initialization``) and
                      ``fairseq/models/transformer.py`` (embeddings)
``deepnet``           Wang et al. (2022), "DeepNet: Scaling Transformers to 1,000 Layers",
                      Figure 2 (``deepnorm_init``) and Table 1 (alpha, beta);
                      ``microsoft/torchscale`` ``torchscale/architecture/encoder.py`` /
                      ``decoder.py``
====================  ===========================================================================

Both scale the value, attention-output and MLP projections of every block and not the query and
key ones. They find those projections by their part in the block
(:mod:`.transformer_layers`: fairseq's ``v_proj``/``out_proj``/``fc1``, Hugging Face's
``value``/``attention.output.dense``, torch's ``nn.MultiheadAttention``/``linear1``...), and
count the blocks of each side (encoder, decoder) from the model. Each part gets one rule, so the
dry-run table (``plan.resolve(model)``) names the rule of every parameter, and a parameter the
preset did not recognize shows as ``default keep``.

A layer that holds q, k and v in one weight (``nn.MultiheadAttention.in_proj_weight``, GPT-2's
``c_attn``) is drawn block by block, and the preset gives its blocks their own rules
(``rule(..., blocks=("v",))``, :mod:`initlab.plan.rules`): the ``v`` block is scaled like
``v_proj``, the ``q`` and ``k`` blocks are drawn like ``q_proj`` and ``k_proj``, and the table
notes which rule drew each block. A fused projection initlab does not know as stacked (timm's
``attn.qkv``, ``query_key_value``...) has no blocks to tell apart: it is scaled whole, like
``v``, which only shrinks its attention logits at init (the papers' bounds do not involve them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from initlab.errors import ConfigError
from initlab.plan.plan import Plan
from initlab.plan.recipes.name_patterns import names_regex
from initlab.plan.recipes.transformer_layers import LayerPart, PartKind, Side, transformer_parts
from initlab.plan.rules import Rule, rule
from initlab.plan.sites import ParameterSite, parameter_sites

__all__ = ["RECIPES", "DeepNetConstants", "deepnet_constants", "t_fixup_scales"]

_SCALED: tuple[PartKind, ...] = (
    "value", "qkv", "attention_output", "mlp_in", "mlp_up", "mlp_out"
)  # fmt: skip
_QUERY_KEY: tuple[PartKind, ...] = ("query", "key")


def _norm_rules() -> list[Rule]:
    return [rule(role="norm_weight", scheme="ones"), rule(role="norm_bias", scheme="zeros")]


def _layer_count(value: Any, option: str, preset: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{preset} preset: {option} must be an integer >= 1, got {value!r}.")
    return value


def _found_parts(model: nn.Module | None, preset: str) -> tuple[LayerPart, ...]:
    if model is None:
        raise ConfigError(
            f"{preset} preset needs the model: it finds the value, attention-output and MLP "
            "projections of each block and counts the blocks. Pass the model."
        )
    parts = transformer_parts(model)
    if not any(part.kind in _SCALED for part in parts):
        raise ConfigError(
            f"{preset} preset found no attention or MLP projections in {type(model).__name__} "
            "(names such as v_proj, out_proj, fc1, fc2, linear1, attention.output.dense). Build "
            "the plan from rules for this model, or name its layers so."
        )
    return parts


def _blocks(parts: Iterable[LayerPart], side: Side) -> int:
    """How many blocks of ``side`` hold a projection (1 for a model without block indices)."""
    return len({part.block for part in parts if part.side == side})


@dataclass(frozen=True)
class _Group:
    """The parameters one rule of a recipe covers.

    Attributes:
        weights: their qualified names.
        multiplier: the factor on the drawn values.
        params: the scheme's parameters.
        blocks: the blocks of stacked weights it draws (empty: whole parameters).
    """

    weights: tuple[str, ...]
    multiplier: float = 1.0
    params: tuple[tuple[str, Any], ...] = ()
    blocks: tuple[str, ...] = ()


def _rules(groups: Iterable[_Group], scheme: str, among: Sequence[str]) -> list[Rule]:
    return [
        rule(
            regex=names_regex(group.weights, among),
            scheme=scheme,
            multiplier=group.multiplier,
            blocks=group.blocks,
            **dict(group.params),
        )
        for group in groups
        if group.weights
    ]


def _stacked_values(parts: Iterable[LayerPart], sites: Iterable[ParameterSite]) -> set[str]:
    """The packed q/k/v weights initlab draws block by block (a ``v`` block among them)."""
    packed = {part.weight for part in parts if part.kind == "qkv"}
    return {
        site.name
        for site in sites
        if site.name in packed and any(block.label == "v" for block in site.blocks)
    }


def _weights(parts: Iterable[LayerPart], kinds: Sequence[PartKind], side: Side) -> tuple[str, ...]:
    return tuple(p.weight for p in parts if p.kind in kinds and p.side == side)


def _biases(parts: Iterable[LayerPart]) -> tuple[str, ...]:
    return tuple(re.sub(r"weight$", "bias", part.weight) for part in parts)


# --- T-Fixup ------------------------------------------------------------------------------------
def t_fixup_scales(encoder_layers: int, decoder_layers: int) -> dict[str, float]:
    r"""T-Fixup's factors (Huang et al., 2020, Algorithm 1, and the reference code).

    .. math::

        s_{enc} = 0.67\, N_e^{-1/4}, \qquad s_{dec} = (9 N_d)^{-1/4}, \qquad
        e_{enc} = (9 N_e)^{-1/4}, \qquad e_{dec} = (9 N_d)^{-1/4}

    ``s``: the value, attention-output and MLP weights of the side's blocks; ``e``: the side's
    token embeddings. A side with 0 layers has no entry.
    """
    scales: dict[str, float] = {}
    if encoder_layers:
        scales["encoder"] = 0.67 * encoder_layers**-0.25
        scales["encoder_embedding"] = (9 * encoder_layers) ** -0.25
    if decoder_layers:
        scales["decoder"] = (9 * decoder_layers) ** -0.25
        scales["decoder_embedding"] = (9 * decoder_layers) ** -0.25
    return scales


def _embedding_groups(model: nn.Module, scales: dict[str, float], stack: Side) -> list[_Group]:
    """Token embeddings N(0, d^-1/2) times their side's ``e``; positional ones unscaled."""
    groups: dict[tuple[float, float], list[str]] = {}
    for site in parameter_sites(model):
        if site.role != "embedding":
            continue
        words = site.name.lower()
        side = "decoder" if "decoder" in words else "encoder" if "encoder" in words else stack
        if side not in scales:  # a shared embedding of an encoder-decoder: the encoder's
            side = "encoder" if "encoder" in scales else "decoder"
        owner = site.module_name.rsplit(".", 1)[-1].lower()
        positional = "pos" in owner or owner == "wpe"
        factor = 1.0 if positional else scales[f"{side}_embedding"]
        groups.setdefault((site.shape[-1] ** -0.5, factor), []).append(site.name)
    return [_Group(tuple(n), m, (("std", std),)) for (std, m), n in groups.items()]


def _t_fixup(
    model: nn.Module | None,
    encoder_layers: int | None = None,
    decoder_layers: int | None = None,
    stack: str = "encoder",
) -> Plan:
    r"""T-Fixup (Huang et al., 2020; ``layer6ai-labs/T-Fixup``), law per parameter.

    With :math:`N_e`, :math:`N_d` the encoder and decoder blocks and the factors of
    :func:`t_fixup_scales` (:math:`s` for the parameter's side):

    * value weights (``v_proj``, the ``v`` block of a packed q/k/v): ``xavier_uniform`` (gain
      1) times :math:`s` (fairseq draws ``v_proj`` with gain :math:`1/\sqrt 2` and the
      reference multiplies it by :math:`s\sqrt 2`); a fused q/k/v initlab does not know as
      stacked: the same, whole;
    * query and key weights (and the ``q``, ``k`` blocks of a packed q/k/v):
      ``xavier_uniform(gain=1/sqrt 2)`` (fairseq's ``MultiheadAttention``, unscaled);
    * attention-output (``out_proj``, cross-attention's too) and MLP (``fc1``, ``fc2``) weights:
      ``xavier_uniform`` times :math:`s`;
    * token embeddings :math:`\mathcal N(0, d^{-1})` times :math:`(9N)^{-1/4}` of their side
      (the encoder's for one shared by both); positional embeddings (a name holding ``pos``)
      :math:`\mathcal N(0, d^{-1})` unscaled (fairseq's ``Embedding``);
    * every other ``nn.Linear`` weight ``xavier_uniform`` (fairseq's ``Linear``), biases 0,
      norms 1/0 (T-Fixup removes the LayerNorms: that is the model's part).

    Options:
        encoder_layers, decoder_layers: :math:`N_e`, :math:`N_d` (default: counted).
        stack: the formula for a model whose blocks are neither ``encoder`` nor ``decoder``
            by name (one stack): ``"encoder"`` (default) or ``"decoder"``.
    """
    if stack not in ("encoder", "decoder"):
        raise ConfigError(f"t-fixup preset: stack must be 'encoder' or 'decoder', got {stack!r}.")
    parts = _found_parts(model, "t-fixup")
    assert model is not None  # _found_parts refuses None
    single: Side = "encoder" if stack == "encoder" else "decoder"
    counts = {
        "encoder": _layer_count(encoder_layers, "encoder_layers", "t-fixup")
        or _blocks(parts, "encoder") + (_blocks(parts, "") if single == "encoder" else 0),
        "decoder": _layer_count(decoder_layers, "decoder_layers", "t-fixup")
        or _blocks(parts, "decoder") + (_blocks(parts, "") if single == "decoder" else 0),
    }
    scales = t_fixup_scales(counts["encoder"], counts["decoder"])
    sites = parameter_sites(model)
    among = [site.name for site in sites]
    stacked = _stacked_values(parts, sites)
    scaled = []
    for side in ("encoder", "decoder"):
        weights = _weights(parts, _SCALED, side) + (
            _weights(parts, _SCALED, "") if side == single else ()
        )
        if weights:
            values = tuple(w for w in weights if w in stacked)
            scaled.append(_Group(values, scales[side], blocks=("v",)))
            scaled.append(_Group(tuple(w for w in weights if w not in stacked), scales[side]))
    query_key = [
        _Group(
            tuple(p.weight for p in parts if p.kind in _QUERY_KEY) + tuple(sorted(stacked)),
            params=(("gain", 2**-0.5),),
        )
    ]
    rules = _rules(scaled, "xavier_uniform", among)
    rules += _rules(query_key, "xavier_uniform", among)
    rules += _rules(_embedding_groups(model, scales, single), "normal", among)
    rules += [
        rule(types=nn.Linear, role="weight", scheme="xavier_uniform"),
        rule(role="bias", scheme="zeros"),
        *_norm_rules(),
    ]
    return Plan(rules, default="keep", name="t-fixup", warn_unused=False)


# --- DeepNet ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeepNetConstants:
    r"""DeepNorm's constants (Wang et al., 2022, Table 1 / Figure 2).

    ``alpha`` is a change of the forward pass, not of the initialization: each residual
    connection becomes :math:`x_{l+1} = \mathrm{LN}(\alpha x_l + G_l(x_l))`. A plan cannot make
    it; the model must (``torchscale``: ``deepnorm=True``). ``beta`` is the gain of the value,
    attention-output and MLP weights.

    Attributes:
        encoder_alpha, encoder_beta: for the encoder's blocks (0 when it has none).
        decoder_alpha, decoder_beta: for the decoder's blocks (0 when it has none).
    """

    encoder_alpha: float
    encoder_beta: float
    decoder_alpha: float
    decoder_beta: float


def deepnet_constants(encoder_layers: int = 0, decoder_layers: int = 0) -> DeepNetConstants:
    r"""DeepNorm's :math:`\alpha` and :math:`\beta` for :math:`N` encoder and :math:`M`
    decoder blocks (Wang et al., 2022, Table 1):

    ==================  ==============================  ===============================
    architecture        encoder                         decoder
    ==================  ==============================  ===============================
    encoder only        :math:`\alpha = (2N)^{1/4}`,
                        :math:`\beta = (8N)^{-1/4}`
    decoder only                                        :math:`\alpha = (2M)^{1/4}`,
                                                        :math:`\beta = (8M)^{-1/4}`
    encoder-decoder     :math:`\alpha = 0.81 (N^4 M)^{1/16}`,  :math:`\alpha = (3M)^{1/4}`,
                        :math:`\beta = 0.87 (N^4 M)^{-1/16}`   :math:`\beta = (12M)^{-1/4}`
    ==================  ==============================  ===============================
    """
    n, m = encoder_layers, decoder_layers
    if n and m:
        mixed = (n**4 * m) ** (1 / 16)
        return DeepNetConstants(0.81 * mixed, 0.87 / mixed, (3 * m) ** 0.25, (12 * m) ** -0.25)
    encoder = ((2 * n) ** 0.25, (8 * n) ** -0.25) if n else (0.0, 0.0)
    decoder = ((2 * m) ** 0.25, (8 * m) ** -0.25) if m else (0.0, 0.0)
    return DeepNetConstants(*encoder, *decoder)


def _deepnet(
    model: nn.Module | None, encoder_layers: int | None = None, decoder_layers: int | None = None
) -> Plan:
    r"""DeepNet's initialization (Wang et al., 2022, Figure 2 ``deepnorm_init``), per parameter:

    * value, attention-output and MLP weights (and the ``v`` block of a packed q/k/v; a fused
      q/k/v initlab does not know as stacked, whole): ``xavier_normal(gain=beta)`` with the
      side's :math:`\beta` (:func:`deepnet_constants`);
    * query and key weights (and the ``q``, ``k`` blocks of a packed q/k/v): ``xavier_normal``
      (gain 1);
    * their biases 0, norms 1/0; everything else kept.

    A model with blocks named neither encoder nor decoder is one stack: :math:`(8N)^{-1/4}`.
    torchscale itself divides its own init (``xavier_uniform`` with gain :math:`1/\sqrt 2` for
    q/k/v, torch's default for the MLP) by :math:`1/\beta`; the paper's pseudo-code above is
    what this preset follows. :math:`\alpha` changes the forward pass: see
    :class:`DeepNetConstants`.

    Options:
        encoder_layers, decoder_layers: :math:`N`, :math:`M` (default: counted).
    """
    parts = _found_parts(model, "deepnet")
    assert model is not None  # _found_parts refuses None
    n = _layer_count(encoder_layers, "encoder_layers", "deepnet") or _blocks(parts, "encoder")
    m = _layer_count(decoder_layers, "decoder_layers", "deepnet") or _blocks(parts, "decoder")
    constants = deepnet_constants(n, m)
    single = deepnet_constants(_blocks(parts, "")).encoder_beta if _blocks(parts, "") else 0.0
    betas: dict[Side, float] = {
        "encoder": constants.encoder_beta,
        "decoder": constants.decoder_beta,
        "": single,
    }
    sites = parameter_sites(model)
    among = [site.name for site in sites]
    stacked = _stacked_values(parts, sites)
    scaled = []
    for side, beta in betas.items():
        weights = _weights(parts, _SCALED, side) if beta else ()
        gain = (("gain", beta),)
        values = tuple(w for w in weights if w in stacked)
        scaled.append(_Group(values, params=gain, blocks=("v",)))
        scaled.append(_Group(tuple(w for w in weights if w not in stacked), params=gain))
    query_key = [
        _Group(tuple(p.weight for p in parts if p.kind in _QUERY_KEY) + tuple(sorted(stacked)))
    ]
    biases = _Group(tuple(b for b in _biases(parts) if b in among))
    return Plan(
        _rules(scaled, "xavier_normal", among)
        + _rules(query_key, "xavier_normal", among)
        + _rules([biases], "zeros", among)
        + _norm_rules(),
        default="keep",
        name="deepnet",
        warn_unused=False,
    )


RECIPES: dict[str, Callable[..., Plan]] = {"t-fixup": _t_fixup, "deepnet": _deepnet}
"""Preset name -> builder (model, **options) -> Plan."""
