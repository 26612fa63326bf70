"""The one table of transformer layer names, read by role and by part, on every codebase's names.

Each codebase of the module docstring's table is mirrored by one block with its module names;
both readers (``find_layers`` by role, ``transformer_parts`` by part) must put every projection
where the codebase means it, and agree with each other.
"""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn

from initlab.errors import ConfigError
from initlab.plan.recipes.transformer_layers import (
    LAYER_ROLES,
    find_layers,
    role_regex,
    transformer_parts,
)


def build(spec: dict[str, Any]) -> nn.Module:
    """Nested ModuleDicts from a dict; a leaf ``None`` is an ``nn.Linear(4, 4)``."""
    return nn.ModuleDict(
        {name: build(child) if isinstance(child, dict) else nn.Linear(4, 4)
         for name, child in spec.items()}
    )  # fmt: skip


def leaves(*names: str) -> dict[str, None]:
    return dict.fromkeys(names)


# codebase -> (its model, {layer name: (kind, role)})
CODEBASES: dict[str, tuple[dict[str, Any], dict[str, tuple[str, str]]]] = {
    "torchtitan": (
        {"layers": {"0": {"attention": leaves("wq", "wk", "wv", "wo"),
                          "feed_forward": leaves("w1", "w2", "w3")}}},
        {"layers.0.attention.wq": ("query", "attention_input"),
         "layers.0.attention.wk": ("key", "attention_input"),
         "layers.0.attention.wv": ("value", "attention_input"),
         "layers.0.attention.wo": ("attention_output", "attention_output"),
         "layers.0.feed_forward.w1": ("mlp_in", "mlp_input"),
         "layers.0.feed_forward.w3": ("mlp_up", "mlp_up"),
         "layers.0.feed_forward.w2": ("mlp_out", "mlp_output")},
    ),
    "gpt2": (
        {"h": {"0": {"attn": leaves("c_attn", "c_proj"), "mlp": leaves("c_fc", "c_proj")}}},
        {"h.0.attn.c_attn": ("qkv", "attention_input"),
         "h.0.attn.c_proj": ("attention_output", "attention_output"),
         "h.0.mlp.c_fc": ("mlp_in", "mlp_input"),
         "h.0.mlp.c_proj": ("mlp_out", "mlp_output")},
    ),
    "bert": (
        {"layer": {"0": {"attention": {"self": leaves("query", "key", "value"),
                                       "output": leaves("dense")},
                         "intermediate": leaves("dense"), "output": leaves("dense")}}},
        {"layer.0.attention.self.query": ("query", "attention_input"),
         "layer.0.attention.self.key": ("key", "attention_input"),
         "layer.0.attention.self.value": ("value", "attention_input"),
         "layer.0.attention.output.dense": ("attention_output", "attention_output"),
         "layer.0.intermediate.dense": ("mlp_in", "mlp_input"),
         "layer.0.output.dense": ("mlp_out", "mlp_output")},
    ),
    "t5": (
        {"block": {"0": {"layer": {"0": {"SelfAttention": leaves("q", "k", "v", "o")},
                                   "1": {"DenseReluDense": leaves("wi", "wo")}}}}},
        {"block.0.layer.0.SelfAttention.q": ("query", "attention_input"),
         "block.0.layer.0.SelfAttention.k": ("key", "attention_input"),
         "block.0.layer.0.SelfAttention.v": ("value", "attention_input"),
         "block.0.layer.0.SelfAttention.o": ("attention_output", "attention_output"),
         "block.0.layer.1.DenseReluDense.wi": ("mlp_in", "mlp_input"),
         "block.0.layer.1.DenseReluDense.wo": ("mlp_out", "mlp_output")},
    ),
    "megatron-legacy": (
        {"layers": {"0": {"self_attention": leaves("query_key_value", "dense"),
                          "mlp": leaves("dense_h_to_4h", "dense_4h_to_h")}}},
        {"layers.0.self_attention.query_key_value": ("qkv", "attention_input"),
         "layers.0.self_attention.dense": ("attention_output", "attention_output"),
         "layers.0.mlp.dense_h_to_4h": ("mlp_in", "mlp_input"),
         "layers.0.mlp.dense_4h_to_h": ("mlp_out", "mlp_output")},
    ),
    "olmo": (
        {"blocks": {"0": leaves("att_proj", "attn_out", "ff_proj", "ff_out")},
         "ff_out": None},
        {"blocks.0.att_proj": ("qkv", "attention_input"),
         "blocks.0.attn_out": ("attention_output", "attention_output"),
         "blocks.0.ff_proj": ("mlp_in", "mlp_input"),
         "blocks.0.ff_out": ("mlp_out", "mlp_output")},
    ),
    "timm": (
        {"blocks": {"0": {"attn": leaves("qkv", "proj"), "mlp": leaves("fc1", "fc2")}},
         "head": None},
        {"blocks.0.attn.qkv": ("qkv", "attention_input"),
         "blocks.0.attn.proj": ("attention_output", "attention_output"),
         "blocks.0.mlp.fc1": ("mlp_in", "mlp_input"),
         "blocks.0.mlp.fc2": ("mlp_out", "mlp_output")},
    ),
}  # fmt: skip


@pytest.mark.parametrize("codebase", CODEBASES)
def test_both_readers_put_every_projection_where_its_codebase_means_it(codebase: str) -> None:
    spec, expected = CODEBASES[codebase]
    model = build(spec)
    roles = {layer.name: layer.role for layer in find_layers(model) if layer.role != "head"}
    kinds = {part.weight.removesuffix(".weight"): part.kind for part in transformer_parts(model)}
    assert roles == {name: role for name, (_, role) in expected.items()}
    assert kinds == {name: kind for name, (kind, _) in expected.items()}


def test_the_head_is_recognized_outside_the_blocks_only() -> None:
    olmo = build(CODEBASES["olmo"][0])
    assert [layer.name for layer in find_layers(olmo, "head")] == ["ff_out"]
    assert "ff_out" not in {part.weight for part in transformer_parts(olmo)}


def test_every_role_has_a_pattern_and_an_unknown_role_is_refused() -> None:
    for role in LAYER_ROLES:
        assert role_regex(role)
    with pytest.raises(ConfigError, match="Unknown layer role 'mlp'"):
        role_regex("mlp")  # type: ignore[arg-type]
