r"""Which layer of a transformer is which: the one table of names the init recipes read.

Recipes treat layers by what they do: GPT-2, Megatron-LM and OLMo shrink the residual output
projections by depth, torchtitan the up projection of a gated MLP too, T-Fixup and DeepNet scale
the value projection and not the query and key ones, everyone treats the head apart. Every
codebase names those layers differently; this module is the one place their names are kept.
A layer's *kind* is read from the end of its qualified module name:

===================  ===============  ==================  ===============  ===============  ======
codebase             q / k / v        attention output    MLP in (up)      MLP out          head
===================  ===============  ==================  ===============  ===============  ======
torchtitan Llama     wq wk wv         attention.wo        w1 (w3)          w2               output
HF LLaMA, Mistral    q/k/v_proj       o_proj              gate_proj        down_proj        lm_head
                                                          (up_proj)
GPT-2, nanoGPT       c_attn (packed)  attn.c_proj         c_fc             mlp.c_proj       lm_head
OLMo                 att_proj         attn_out            ff_proj          ff_out (block)   ff_out
                     (packed)
Megatron legacy,     query_key_value  self_attention      dense_h_to_4h    dense_4h_to_h    output
GPT-NeoX             (packed)         .dense
Megatron core        linear_qkv       linear_proj         linear_fc1       linear_fc2       output
                     (packed)                                                               _layer
BERT (HF)            query key value  attention.output    intermediate     output.dense
                                      .dense              .dense
timm ViT             qkv (packed)     attn.proj           fc1              fc2              head
fairseq, torch       q/k/v_proj,      out_proj            fc1, linear1     fc2, linear2
                     in_proj_weight
T5                   q k v            SelfAttention.o     wi (wi_0 wi_1)   DenseReluDense
                                                                           .wo
DistilBERT           q/k/v_lin        out_lin             lin1             lin2
diffusers            to_q to_k to_v   to_out              fc_in            fc_out
Mamba                                 mixer.out_proj      fc1              fc2
===================  ===============  ==================  ===============  ===============  ======

``proj``, ``c_proj``, ``wo``, ``dense`` and ``o`` mean the attention's output under an attention
module (a name holding ``attn`` or ``attention``) and the MLP's under an MLP (``mlp``, ``ffn``,
``feed_forward``, ``DenseReluDense``); ``dense`` under ``intermediate`` is BERT's MLP input and
under an ``output`` outside the attention its MLP output. The projections hold only inside an
indexed block (a path component that is an integer, ``layers.3.attention.wo``), the head only
outside every block.

Two readers of the one table:

* by *role* (:data:`LAYER_ROLES`; Megatron, OLMo, torchtitan, Mamba): q/k/v are one role,
  ``attention_input``; :func:`role_regex` turns roles into a pattern over qualified names (a
  plan without a model), :func:`find_layers` lists a model's layers of some roles with their
  block index (:mod:`.role_rules` counts blocks with it and warns when a model has none);
* by *part* (:func:`transformer_parts`; T-Fixup, DeepNet): q, k and v apart, with the stack
  each sits in (``encoder``, ``decoder`` or ``""``, from a name or an ancestor's class) and its
  block. A part reads the module itself and its ancestors' classes too (``*Attention*``,
  ``*MLP*``), and ``nn.MultiheadAttention``'s ``in_proj_weight`` (packed) and
  ``q/k/v_proj_weight``.

Only names and module classes are read: no forward pass, and it works on the meta device. A model
whose layers carry none of these names is *not recognized*: recipes then warn or refuse, and the
dry-run table's ``source`` column shows the rule each parameter got.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from torch import nn

from initlab.errors import ConfigError
from initlab.layers import is_hf_conv1d
from initlab.plan.sites import block_depth

__all__ = [
    "LAYER_NAMES",
    "LAYER_ROLES",
    "RESIDUAL_OUTPUTS",
    "LayerPart",
    "LayerRole",
    "PartKind",
    "RoleLayer",
    "Side",
    "block_of",
    "find_layers",
    "known_names",
    "role_regex",
    "transformer_parts",
]

PartKind = Literal[
    "query", "key", "value", "qkv", "attention_output", "mlp_in", "mlp_up", "mlp_out"
]
LayerRole = Literal[
    "attention_input", "attention_output", "mlp_input", "mlp_up", "mlp_output", "head"
]
Side = Literal["encoder", "decoder", ""]
LAYER_ROLES: tuple[LayerRole, ...] = get_args(LayerRole)
#: The roles whose output is added to the residual stream (the ones depth-scaled recipes shrink).
RESIDUAL_OUTPUTS: tuple[LayerRole, ...] = ("attention_output", "mlp_output")

#: Kind -> the last name components that have it wherever they sit (the table above).
_NAMES: Mapping[PartKind, tuple[str, ...]] = {
    "query": ("wq", "q_proj", "query", "q", "to_q", "q_lin", "q_linear"),
    "key": ("wk", "k_proj", "key", "k", "to_k", "k_lin", "k_linear"),
    "value": ("wv", "v_proj", "value", "v", "to_v", "v_lin", "v_linear"),
    "qkv": ("wqkv", "qkv_proj", "qkv", "c_attn", "query_key_value", "linear_qkv", "att_proj"),
    "attention_output": ("o_proj", "out_proj", "attn_out", "linear_proj", "out_lin", "to_out"),
    "mlp_in": ("w1", "gate_proj", "gate_up_proj", "fc1", "c_fc", "ff_proj", "dense_h_to_4h",
               "linear_fc1", "linear1", "lin1", "fc_in", "wi", "wi_0", "wi_1"),
    "mlp_up": ("w3", "up_proj"),
    "mlp_out": ("w2", "down_proj", "fc2", "dense_4h_to_h", "linear_fc2", "linear2", "lin2",
                "fc_out"),
}  # fmt: skip
_ROLE_OF: Mapping[PartKind, LayerRole] = {
    "query": "attention_input",
    "key": "attention_input",
    "value": "attention_input",
    "qkv": "attention_input",
    "attention_output": "attention_output",
    "mlp_in": "mlp_input",
    "mlp_up": "mlp_up",
    "mlp_out": "mlp_output",
}
#: Names whose kind is the module they sit in: an attention's output or an MLP's.
_IN_CONTEXT = ("proj", "c_proj", "wo", "dense", "o")
_BLOCK_MLP_OUT = "ff_out"  # OLMo: the MLP output inside a block, the head outside
_HEAD_NAMES = ("output", "lm_head", "ff_out", "output_layer", "head")
_ATTENTION_WORDS = ("attn", "attention")
_MLP_WORDS = ("mlp", "ffn", "feed_forward", "feedforward", "densereludense")


def _role_patterns() -> dict[LayerRole, tuple[str, ...]]:
    """Role -> regular expressions over the end of a module name, from the one table."""
    patterns: dict[LayerRole, list[str]] = {role: [] for role in LAYER_ROLES}
    for kind, names in _NAMES.items():
        patterns[_ROLE_OF[kind]] += [re.escape(name) for name in names]
    context = "|".join(_IN_CONTEXT)
    attention = rf"(?i:[^.]*(?:{'|'.join(_ATTENTION_WORDS)})[^.]*)"
    mlp = rf"(?i:[^.]*(?:{'|'.join(_MLP_WORDS)})[^.]*)"
    patterns["attention_output"] += [rf"{attention}\.(?:{context})", r"attention\.output\.dense"]
    patterns["mlp_input"].append(r"intermediate\.dense")
    patterns["mlp_output"] += [
        _BLOCK_MLP_OUT,
        rf"{mlp}\.(?:{context})",
        r"(?<!attention\.)output\.dense",
    ]
    patterns["head"] = [re.escape(name) for name in _HEAD_NAMES]
    return {role: tuple(names) for role, names in patterns.items()}


#: Role -> the module-name endings that have it (regular expressions).
LAYER_NAMES: Mapping[LayerRole, tuple[str, ...]] = _role_patterns()

_IN_BLOCK = r"(?:^|.*\.)\d+\.(?:.*\.)?"  # some earlier path component is an integer
_OUTSIDE_BLOCKS = r"^(?:[^.\d][^.]*\.)*"  # no path component is an integer


# --- by role ------------------------------------------------------------------------------------
def role_regex(*roles: LayerRole, parameter: str = "weight") -> str:
    """A regular expression matching the qualified name of ``parameter`` of a layer of ``roles``.

    Example:
        >>> bool(re.search(role_regex("attention_output"), "layers.3.attention.wo.weight"))
        True
        >>> bool(re.search(role_regex("head"), "output.weight"))
        True

    Raises:
        ConfigError: an unknown role.
    """
    for role in roles:
        if role not in LAYER_NAMES:
            raise ConfigError(f"Unknown layer role {role!r}. Known: {', '.join(LAYER_ROLES)}.")
    blocks = [r for r in roles if r != "head"]
    parts = []
    if blocks:
        names = "|".join(name for role in blocks for name in LAYER_NAMES[role])
        parts.append(rf"{_IN_BLOCK}(?:{names})\.{re.escape(parameter)}$")
    if "head" in roles:
        parts.append(
            rf"{_OUTSIDE_BLOCKS}(?:{'|'.join(LAYER_NAMES['head'])})\.{re.escape(parameter)}$"
        )
    return "|".join(f"(?:{part})" for part in parts) if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class RoleLayer:
    """A layer whose role a recipe recognized.

    Attributes:
        name: the module's qualified name (``layers.3.attention.wo``).
        role: its role.
        layer: its block index: the ``layer_id`` / ``layer_idx`` / ``layer_number`` of the
            nearest enclosing module that has one (OLMo, Mamba, Megatron keep it), else the
            first integer of its name; ``None`` outside every block.
        in_features: the size of its input (the weight's last axis), ``None`` if it has no
            matrix weight.
    """

    name: str
    role: LayerRole
    layer: int | None
    in_features: int | None


_LAYER_ATTRIBUTES = ("layer_id", "layer_idx", "layer_number")


def _block_index(modules: Mapping[str, nn.Module], name: str) -> int | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        owner = modules.get(".".join(parts[:end]))
        for attribute in _LAYER_ATTRIBUTES:
            value = getattr(owner, attribute, None)
            if isinstance(value, int) and not isinstance(value, bool):
                # Megatron's layer_number counts from 1; the others from 0.
                return value - 1 if attribute == "layer_number" else value
    return block_depth(name)


def find_layers(model: nn.Module, *roles: LayerRole) -> tuple[RoleLayer, ...]:
    """The layers of ``model`` with one of ``roles`` (all roles if none given), in model order.

    A layer is a module with a ``weight`` of two or more dimensions, of any class (Megatron's
    parallel linears and Transformer Engine's layers included).
    """
    wanted = roles or LAYER_ROLES
    patterns = [(role, re.compile(role_regex(role))) for role in wanted]
    modules = dict(model.named_modules())
    found = []
    for name, module in modules.items():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or weight.dim() < 2:
            continue
        role = next((r for r, p in patterns if p.search(f"{name}.weight")), None)
        if role is not None:
            found.append(RoleLayer(name, role, _block_index(modules, name), weight.shape[-1]))
    return tuple(found)


def known_names(roles: Iterable[LayerRole]) -> str:
    """The names of the layers of ``roles`` as plain text, for a message."""
    kinds = [kind for kind, role in _ROLE_OF.items() if role in roles]
    names = [name for kind in kinds for name in _NAMES[kind]]
    if "head" in roles:
        names += _HEAD_NAMES
    if {"attention_output", "mlp_output"} & set(roles):
        names.append(f"{'/'.join(_IN_CONTEXT)} under an attention or MLP module")
    return ", ".join(dict.fromkeys(names))


# --- by part ------------------------------------------------------------------------------------
_KIND_BY_NAME: dict[str, PartKind] = {
    name: kind for kind, names in _NAMES.items() for name in names
}
_MHA_ATTRIBUTES: dict[str, PartKind] = {
    "in_proj_weight": "qkv",
    "q_proj_weight": "query",
    "k_proj_weight": "key",
    "v_proj_weight": "value",
}


@dataclass(frozen=True)
class LayerPart:
    """One projection of a transformer block.

    Attributes:
        weight: the qualified name of its weight parameter.
        kind: which projection it is (see the module docstring).
        side: ``encoder``, ``decoder`` or ``""``.
        block: the block it belongs to (its name up to the first integer component).
    """

    weight: str
    kind: PartKind
    side: Side
    block: str


def _is_attention(name: str, module: nn.Module) -> bool:
    last = name.rsplit(".", 1)[-1].lower()
    return any(w in last for w in _ATTENTION_WORDS) or "Attention" in type(module).__name__


def _is_mlp(name: str, module: nn.Module) -> bool:
    last = name.rsplit(".", 1)[-1].lower()
    kind = type(module).__name__
    return any(w in last for w in _MLP_WORDS) or "MLP" in kind or "FeedForward" in kind


def _in_context(last: str, ancestors: Sequence[tuple[str, nn.Module]]) -> PartKind | None:
    """The kind of a layer named ``proj``/``c_proj``/``wo``/``dense``/``o`` from its
    ancestors, nearest first."""
    for name, module in ancestors:
        if _is_attention(name, module):
            return "attention_output"
        if _is_mlp(name, module):
            return "mlp_out"
        tail = name.rsplit(".", 1)[-1]
        if last == "dense" and tail == "intermediate":
            return "mlp_in"
        # BERT: layer.N.output.dense is the MLP's; attention.output.dense is the attention's,
        # recognized at its next ancestor.
        outside_attention = not any(_is_attention(n, m) for n, m in ancestors[1:])
        if last == "dense" and tail == "output" and outside_attention:
            return "mlp_out"
    return None


def _side(name: str, ancestors: Iterable[tuple[str, nn.Module]]) -> Side:
    words = [part.lower() for part in name.split(".")]
    words += [type(module).__name__.lower() for _, module in ancestors]
    if any("decoder" in word for word in words):
        return "decoder"
    if any("encoder" in word for word in words):
        return "encoder"
    return ""


def block_of(name: str) -> str:
    """``name`` up to and including its first integer component (``""`` if it has none)."""
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: index + 1])
    return ""


def _ancestors(name: str, modules: dict[str, nn.Module]) -> list[tuple[str, nn.Module]]:
    parts = name.split(".")
    chain = [".".join(parts[:depth]) for depth in range(len(parts) - 1, -1, -1)]
    return [(item, modules[item]) for item in chain if item in modules]


def _part(name: str, weight: str, kind: PartKind, modules: dict[str, nn.Module]) -> LayerPart:
    ancestors = _ancestors(name, modules)
    return LayerPart(
        weight, kind, _side(name, [(name, modules[name]), *ancestors]), block_of(name)
    )


def _kind(name: str, modules: dict[str, nn.Module]) -> PartKind | None:
    last = name.rsplit(".", 1)[-1].lower()
    if last in _IN_CONTEXT:
        return _in_context(last, _ancestors(name, modules))
    if last == _BLOCK_MLP_OUT:
        return "mlp_out" if block_of(name) else None
    return _KIND_BY_NAME.get(last)


def transformer_parts(model: nn.Module) -> tuple[LayerPart, ...]:
    """Every q/k/v, packed qkv, attention output and MLP projection of ``model``, in order."""
    modules = dict(model.named_modules())
    found: list[LayerPart] = []
    for name, module in modules.items():
        if isinstance(module, nn.MultiheadAttention):
            for attribute, kind in _MHA_ATTRIBUTES.items():
                if isinstance(getattr(module, attribute, None), nn.Parameter):
                    found.append(_part(name, f"{name}.{attribute}", kind, modules))
            continue
        if not (isinstance(module, nn.Linear) or is_hf_conv1d(module)) or not name:
            continue
        found_kind = _kind(name, modules)
        if found_kind is not None:
            found.append(_part(name, f"{name}.weight", found_kind, modules))
    return tuple(found)
